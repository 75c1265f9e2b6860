//! Fitting a cleaned paper into a prompt's token budget: caps, sentence cuts
//! and the section priority used by [`trim_for_prompt`].
//!
//! Runs after cleaning (the engine calls it per prompt with that prompt's
//! budget), so it depends only on [`super::Cleaned`], not on the cleaning steps.

use super::{Cleaned, CHARS_PER_TOKEN, CUT_MARK, MAX_HEADING_CHARS};

/// Cut `text` to at most `max` characters at a paragraph boundary, ending
/// with [`CUT_MARK`]. `max == 0` means no limit.
pub(super) fn cap_text(text: &str, max: usize) -> String {
    if max == 0 || text.chars().count() <= max {
        return text.to_string();
    }
    let mark = CUT_MARK.chars().count() + 2;
    let mut out = String::new();
    let mut used = 0;
    for para in text.split("\n\n") {
        let cost = para.chars().count() + 2;
        if used + cost + mark > max {
            break;
        }
        out.push_str(para);
        out.push_str("\n\n");
        used += cost;
    }
    if used == 0 {
        out = cut_sentence(text, max.saturating_sub(mark));
        if !out.is_empty() {
            out.push_str("\n\n");
        }
    }
    out.push_str(CUT_MARK);
    out
}

/// The longest prefix of `para` of at most `max` characters that ends a
/// sentence, else ends a word; empty when not even a word fits.
fn cut_sentence(para: &str, max: usize) -> String {
    let prefix: String = para.chars().take(max).collect();
    if prefix.chars().count() == para.chars().count() {
        return prefix;
    }
    if let Some(i) = prefix.rfind(". ") {
        return prefix[..=i].to_string();
    }
    match prefix.rfind(char::is_whitespace) {
        Some(i) => prefix[..i].to_string(),
        None => String::new(),
    }
}

/// Sections a prompt needs most, in priority order.
const PRIORITY: [&str; 5] = [
    "abstract",
    "introduction",
    "method",
    "results",
    "conclusion",
];

/// One section as the prompt sees it.
#[derive(Debug)]
struct Part<'a> {
    /// Canonical section name ("" for the whole body).
    key: &'a str,
    heading: String,
    paras: Vec<&'a str>,
    /// Whole paragraphs kept.
    kept: usize,
    /// A sentence-cut first paragraph, when not even one whole fitted.
    partial: Option<String>,
}

impl Part<'_> {
    fn heading_cost(&self) -> usize {
        self.heading.chars().count() + 2
    }

    fn full_cost(&self) -> usize {
        self.heading_cost()
            + self
                .paras
                .iter()
                .map(|p| p.chars().count() + 2)
                .sum::<usize>()
    }

    fn is_whole(&self) -> bool {
        self.kept == self.paras.len()
    }

    fn is_empty(&self) -> bool {
        self.kept == 0 && self.partial.is_none()
    }

    /// Keep as many leading paragraphs as fit in `allowance` characters,
    /// not ending on a subsection heading; if none fits, the first
    /// paragraph cut at a sentence end (or, when `word_cut`, at a word).
    /// Returns the characters used.
    fn fill(&mut self, allowance: usize, word_cut: bool) -> usize {
        if self.full_cost() <= allowance {
            self.kept = self.paras.len();
            return self.full_cost();
        }
        let mut used = self.heading_cost();
        if used >= allowance {
            return 0;
        }
        for para in &self.paras {
            let cost = para.chars().count() + 2;
            if used + cost > allowance {
                break;
            }
            used += cost;
            self.kept += 1;
        }
        while self.kept > 0 && is_heading_like(self.paras[self.kept - 1]) {
            self.kept -= 1;
            used -= self.paras[self.kept].chars().count() + 2;
        }
        if self.kept > 0 {
            return used;
        }
        let first = self.paras.first().copied().unwrap_or("");
        let cut = cut_sentence(first, allowance.saturating_sub(used + 2));
        if cut.chars().count() < 40 || !(word_cut || cut.ends_with('.')) {
            return 0;
        }
        used += cut.chars().count() + 2;
        self.partial = Some(cut);
        used
    }
}

/// A subsection heading kept inside a section's text: short, no full stop.
fn is_heading_like(para: &str) -> bool {
    para.chars().count() < MAX_HEADING_CHARS && !para.contains(". ") && !para.ends_with('.')
}

/// Trim a cleaned paper to about `token_budget` tokens for a prompt.
///
/// Everything fits → every section in order. Otherwise the priority
/// sections (abstract, introduction, method, results, conclusion) share the
/// budget first by water-filling — smallest first, each up to an equal
/// share of what is left, so one long section cannot starve the others —
/// then the other sections take what remains in document order. Sections
/// are cut at paragraph boundaries (a sentence boundary when not even one
/// paragraph fits, or for a priority section a word boundary) and never
/// end on a subsection heading; every cut or left-out run is marked with
/// [`CUT_MARK`]. The output stays in document order and within
/// `token_budget * 4` characters. Without detected sections the body is
/// trimmed as one.
pub fn trim_for_prompt(c: &Cleaned, token_budget: usize) -> String {
    let budget = token_budget.saturating_mul(CHARS_PER_TOKEN);
    if budget == 0 {
        return String::new();
    }
    let title = c
        .title_guess
        .as_ref()
        .map(|t| format!("Title: {t}"))
        .filter(|t| t.chars().count() + 2 <= budget / 4);
    let mut parts = prompt_parts(c);
    let mark = CUT_MARK.chars().count() + 2;
    let title_cost = title.as_ref().map_or(0, |t| t.chars().count() + 2);
    let full: usize = parts.iter().map(Part::full_cost).sum::<usize>() + title_cost;
    if full <= budget {
        parts.iter_mut().for_each(|p| p.kept = p.paras.len());
    } else {
        let reserve = title_cost + mark * (parts.len() + 1);
        allocate(&mut parts, budget.saturating_sub(reserve));
    }
    let out = render_parts(title.as_deref(), &parts);
    cap_text(&out, budget)
}

fn prompt_parts(c: &Cleaned) -> Vec<Part<'_>> {
    if c.sections.is_empty() {
        return vec![Part::new("", String::new(), &c.paper_text)];
    }
    c.sections
        .iter()
        .map(|(key, text)| Part::new(key, format!("## {}", display_name(key)), text))
        .collect()
}

impl<'a> Part<'a> {
    fn new(key: &'a str, heading: String, text: &'a str) -> Part<'a> {
        Part {
            key,
            heading,
            paras: text
                .split("\n\n")
                .filter(|p| !p.trim().is_empty())
                .collect(),
            kept: 0,
            partial: None,
        }
    }
}

/// Water-fill the priority sections, then the rest in order.
fn allocate(parts: &mut [Part<'_>], budget: usize) {
    let is_priority = |p: &Part<'_>| PRIORITY.contains(&p.key);
    let mut priority: Vec<usize> = (0..parts.len())
        .filter(|&i| is_priority(&parts[i]))
        .collect();
    priority.sort_by_key(|&i| parts[i].full_cost());
    let mut left = budget;
    for (n, &i) in priority.iter().enumerate() {
        let share = left / (priority.len() - n);
        left -= parts[i].fill(share, true);
    }
    for part in parts.iter_mut().filter(|p| !is_priority(p)) {
        left -= part.fill(left, false);
    }
}

fn render_parts(title: Option<&str>, parts: &[Part<'_>]) -> String {
    let mut chunks: Vec<String> = title.map(str::to_string).into_iter().collect();
    let mut marked = false;
    for part in parts.iter().filter(|p| !p.paras.is_empty()) {
        if part.is_empty() {
            if !marked {
                chunks.push(CUT_MARK.to_string());
                marked = true;
            }
            continue;
        }
        if !part.heading.is_empty() {
            chunks.push(part.heading.clone());
        }
        chunks.extend(part.paras[..part.kept].iter().map(|p| p.to_string()));
        if let Some(cut) = &part.partial {
            chunks.push(cut.clone());
        }
        marked = !part.is_whole();
        if marked {
            chunks.push(CUT_MARK.to_string());
        }
    }
    chunks.join("\n\n")
}

/// "related_work" → "Related work", "other:limitations" → "Limitations".
fn display_name(key: &str) -> String {
    let name = key.strip_prefix("other:").unwrap_or(key).replace('_', " ");
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::clean;
    use super::super::{Cleaned, CUT_MARK};
    use super::*;
    use indexmap::IndexMap;

    fn sample() -> Cleaned {
        let mut sections = IndexMap::new();
        for (k, n) in [
            ("abstract", 2),
            ("introduction", 8),
            ("related_work", 8),
            ("method", 8),
            ("experiments", 8),
            ("results", 8),
            ("conclusion", 2),
        ] {
            let paras: Vec<String> = (0..n)
                .map(|i| format!("{k} paragraph {i}. {}", "filler text ".repeat(30)))
                .collect();
            sections.insert(k.to_string(), paras.join("\n\n"));
        }
        Cleaned {
            title_guess: Some("T".into()),
            paper_text: String::new(),
            sections,
            reference_count: 0,
            appendix_text: String::new(),
            pages: 1,
        }
    }

    #[test]
    fn trim_keeps_everything_when_it_fits() {
        let c = sample();
        let out = trim_for_prompt(&c, 1_000_000);
        assert!(!out.contains(CUT_MARK));
        assert!(out.contains("related_work paragraph 7"));
    }

    #[test]
    fn trim_prefers_priority_sections_and_stays_in_budget() {
        let c = sample();
        let out = trim_for_prompt(&c, 1500);
        assert!(out.chars().count() <= 6000);
        for k in PRIORITY {
            assert!(out.contains(&format!("{k} paragraph 0")), "{k} missing");
        }
        assert!(out.contains("conclusion paragraph 1"));
        assert!(!out.contains("related_work paragraph 1"));
        assert!(out.contains(CUT_MARK));
        let intro = out.find("## Introduction").unwrap_or(usize::MAX);
        let method = out.find("## Method").unwrap_or(0);
        assert!(intro < method, "document order kept");
    }

    #[test]
    fn trim_cuts_a_giant_paragraph_at_a_sentence() {
        let mut c = sample();
        c.sections = IndexMap::from([("abstract".to_string(), "One sentence here. ".repeat(500))]);
        let out = trim_for_prompt(&c, 200);
        assert!(out.chars().count() <= 800);
        assert!(out.contains("## Abstract\n\nOne sentence here."));
        assert!(out.ends_with(CUT_MARK));
    }

    #[test]
    fn trim_without_sections_uses_the_body() {
        let c = clean(&[&"Plain words here. ".repeat(10)]);
        assert!(c.sections.is_empty());
        let out = trim_for_prompt(&c, 10_000);
        assert!(out.starts_with("Plain words here."));
    }
}
