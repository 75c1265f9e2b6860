//! Key-phrase mining from the title and abstract, for papers the vocabulary
//! does not cover: runs of words between punctuation and function words,
//! with crude evidence that a phrase is a noun phrase, counted through the
//! body.

use super::vocab::Terminology;
use super::words::{slugify, stem, token_key, words, GENERIC, STOP, URL_PARTS};
use super::{Candidate, TagInput, BODY_WEIGHT, NEIGHBOR_WEIGHT, TITLE_ABSTRACT_WEIGHT};
use indexmap::IndexMap;
use regex::Regex;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// Mined single words count this much of their mentions.
const UNIGRAM_WEIGHT: f64 = 0.5;

static WORD: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern: compiling it cannot fail.
    Regex::new(r"[\p{L}\p{N}]+(?:['’\-][\p{L}\p{N}]+)*").expect("constant regex")
});

static PHRASE_BREAK: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern: compiling it cannot fail. Punctuation and URLs
    // end a run of words.
    Regex::new(r#"https?://\S*|www\.\S*|\S+@\S+|\S*/\S*|[.,;:!?()\[\]{}"“”—]|\s-\s"#)
        .expect("constant regex")
});

/// Is `word` usable at the edge of a phrase: not a function word, generic
/// filler, URL part or number ("128k" neither), at least three
/// characters, and not shaped
/// like an adverb ("-ly"), a third-person verb ("-izes") or, at the end, a
/// past participle ("-ed")?
fn edge_word_ok(word: &str, last: bool) -> bool {
    inner_word_ok(word)
        && !word.starts_with(|c: char| c.is_ascii_digit())
        && !STOP.contains(word)
        && !GENERIC.contains(word)
        && !word.ends_with("ly")
        && !["izes", "ises", "ifies", "ates"]
            .iter()
            .any(|s| word.ends_with(s))
        && !(last && word.ends_with("ed"))
}

/// Any word of a phrase: three or more characters with a letter, not a URL
/// part.
fn inner_word_ok(word: &str) -> bool {
    word.chars().count() >= 3
        && word.chars().any(char::is_alphabetic)
        && !word.split('-').any(|p| URL_PARTS.contains(&p))
}

/// Candidate key phrases: runs of 1–3 words in the title and abstract,
/// inside stretches free of punctuation, URLs and vocabulary terms (which
/// are scored as terms), whose first and last words pass [`edge_word_ok`]
/// (a middle word may be "of": "mixture of experts"). Hyphenated words
/// count as one word ("self-supervised"). Each is scored like a term,
/// counting its mentions by word sequence, so separators and case do not
/// matter. Single words must be used as nouns and phrases must not end in
/// a verb (see [`NounEvidence`]); single words count half, being vaguer
/// than phrases.
pub(super) fn mine_phrases(input: &TagInput, terms: &Terminology) -> Vec<Candidate> {
    let found = candidate_phrases(input, terms);
    let keys: Vec<&str> = found.keys().map(String::as_str).collect();
    let counter = PhraseCounter::new(keys.iter().copied());
    let title = counter.count(input.title);
    let abs = counter.count(input.abstract_text);
    let body = counter.count(input.body);
    let mut neighbors: HashMap<&str, usize> = HashMap::new();
    for text in input.neighbor_texts {
        for (k, n) in counter.count(text) {
            *neighbors.entry(k).or_default() += n;
        }
    }
    let mut checked: Vec<String> = Vec::new();
    for words in found.values() {
        if let Some(last) = words.last() {
            checked.push(last.clone());
            checked.push(stem(last));
        }
    }
    let nouns = NounEvidence::new(&[input.title, input.abstract_text, input.body], &checked);
    let usable = |words: &[String]| match words {
        [word] => nouns.is_noun(word),
        [.., last] => nouns.can_head(last),
        [] => false,
    };
    let get = |m: &HashMap<&str, usize>, key: &str| m.get(key).copied().unwrap_or(0) as f64;
    found
        .iter()
        .filter(|(_, words)| usable(words))
        .map(|(key, words)| {
            let weight = if words.len() == 1 {
                UNIGRAM_WEIGHT
            } else {
                1.0
            };
            let own = TITLE_ABSTRACT_WEIGHT * (get(&title, key) + get(&abs, key))
                + BODY_WEIGHT * get(&body, key);
            Candidate {
                slug: slugify(&words.join(" ")),
                tokens: key.split(' ').map(stem).collect(),
                score: weight * (own + NEIGHBOR_WEIGHT * get(&neighbors, key)),
                own: weight * own,
                body_mentions: get(&body, key) as usize,
                from_vocabulary: false,
            }
        })
        .collect()
}

/// Mined phrase key (see [`token_key`]) → its words, in order of first
/// appearance.
fn candidate_phrases(input: &TagInput, terms: &Terminology) -> IndexMap<String, Vec<String>> {
    let mut found: IndexMap<String, Vec<String>> = IndexMap::new();
    for text in [input.title, input.abstract_text] {
        for run in free_runs(text, terms) {
            let ws: Vec<String> = WORD
                .find_iter(run)
                .map(|m| m.as_str().to_lowercase().replace('’', "'"))
                .collect();
            for n in 1..=3 {
                for window in ws.windows(n).filter(|w| phrase_ok(w)) {
                    let key = token_key(&window.join(" "));
                    if terms.canonical(&key).is_none() {
                        found.entry(key).or_insert_with(|| window.to_vec());
                    }
                }
            }
        }
    }
    found
}

/// Stretches of `text` between punctuation, URLs and vocabulary matches.
fn free_runs<'t>(text: &'t str, terms: &Terminology) -> Vec<&'t str> {
    let mut spans: Vec<(usize, usize)> = terms
        .terms
        .iter()
        .flat_map(|t| t.matcher.find_iter(text).map(|m| (m.start(), m.end())))
        .collect();
    spans.sort_unstable();
    let mut pieces = Vec::new();
    let mut at = 0;
    for (start, end) in spans {
        if start > at {
            pieces.push(&text[at..start]);
        }
        at = at.max(end);
    }
    pieces.push(&text[at..]);
    pieces
        .into_iter()
        .flat_map(|p| PHRASE_BREAK.split(p))
        .collect()
}

/// How a word is used in the paper, to tell nouns from verbs and
/// adjectives without a tagger.
#[derive(Debug, Clone, Copy, Default)]
struct Uses {
    /// After a determiner or number ("the router", "64 experts").
    after_determiner: usize,
    /// After a copula ("is sparse").
    after_copula: usize,
    /// Before a function word, punctuation, the end ("the router is") or
    /// a verb ("the router keeps the"): the end of a noun phrase.
    before_break: usize,
    /// Directly before a determiner ("resolves the"): a verb.
    before_determiner: usize,
    total: usize,
}

/// Evidence of how words are used, which no regex can tell: verbs
/// ("keeps", "recovers") never follow a determiner but precede articles,
/// and adjectives ("sparse", "nonparametric") follow copulas and hardly
/// ever end a noun phrase.
struct NounEvidence {
    uses: HashMap<String, Uses>,
}

impl NounEvidence {
    fn new(texts: &[&str], words: &[String]) -> NounEvidence {
        let mut uses: HashMap<String, Uses> =
            words.iter().map(|w| (w.clone(), Uses::default())).collect();
        for text in texts {
            let tokens = tokens_with_breaks(text);
            for (i, (word, break_before)) in tokens.iter().enumerate() {
                let Some(entry) = uses.get_mut(word) else {
                    continue;
                };
                let prev = (i > 0 && !break_before)
                    .then(|| tokens.get(i - 1))
                    .flatten()
                    .map(|(p, _)| p.as_str());
                let next = tokens.get(i + 1);
                let after_next = tokens.get(i + 2);
                let head = next.is_none_or(|(n, brk)| *brk || STOP.contains(n.as_str()));
                let verb = next.is_some_and(|(n, brk)| !brk && is_article(n));
                // "the halo resolves the ...": a subject before its verb.
                let subject = next.is_some_and(|(n, brk)| !brk && looks_plural(n))
                    && after_next.is_some_and(|(n, brk)| !brk && is_article(n));
                entry.after_determiner += usize::from(prev.is_some_and(is_determiner));
                entry.after_copula += usize::from(prev.is_some_and(is_copula));
                entry.before_break += usize::from(head || subject);
                entry.before_determiner += usize::from(verb);
                entry.total += 1;
            }
        }
        NounEvidence { uses }
    }

    fn get(&self, word: &str) -> Uses {
        self.uses.get(word).copied().unwrap_or_default()
    }

    /// A single word is a noun when it follows a determiner at least once,
    /// never a copula, ends its phrase in at least a third of its uses and
    /// has no adjective suffix.
    fn is_noun(&self, word: &str) -> bool {
        const ADJECTIVE_ENDINGS: [&str; 6] = ["ous", "ive", "ful", "less", "able", "ible"];
        let u = self.get(word);
        u.after_determiner >= 1
            && u.after_copula == 0
            && u.before_break * 3 >= u.total
            && !ADJECTIVE_ENDINGS.iter().any(|e| word.ends_with(e))
    }

    /// Can a phrase end in this word? Not when it looks like a verb: a
    /// plural-looking word seen before a determiner ("resolves the") but
    /// never, nor its singular, after one ("stellar stream resolves").
    fn can_head(&self, word: &str) -> bool {
        if !looks_plural(word) {
            return true;
        }
        let as_noun = self.get(word).after_determiner + self.get(&stem(word)).after_determiner;
        as_noun >= 1 || self.get(word).before_determiner == 0
    }
}

/// Ends in "s" but not "ss": a plural noun or a third-person verb.
fn looks_plural(word: &str) -> bool {
    word.ends_with('s') && !word.ends_with("ss")
}

/// Articles and possessives: a verb is followed by these ("resolves the"),
/// a noun hardly ever. Not "that"/"this", which often follow nouns.
fn is_article(word: &str) -> bool {
    ["the", "a", "an", "every", "each", "our", "its", "their"].contains(&word)
}

fn is_copula(word: &str) -> bool {
    const COPULAS: [&str; 10] = [
        "is", "are", "was", "were", "be", "been", "remains", "remain", "becomes", "stays",
    ];
    COPULAS.contains(&word)
}

fn is_determiner(word: &str) -> bool {
    const DETERMINERS: [&str; 21] = [
        "the", "a", "an", "each", "every", "our", "its", "their", "this", "these", "that", "those",
        "per", "any", "no", "some", "all", "both", "such", "your", "his",
    ];
    DETERMINERS.contains(&word) || word.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Lower-case words of `text`, each with whether punctuation separates it
/// from the word before.
fn tokens_with_breaks(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut prev_end = 0;
    for m in WORD.find_iter(text) {
        let gap = &text[prev_end..m.start()];
        let brk = gap.chars().any(|c| !c.is_whitespace());
        out.push((m.as_str().to_lowercase().replace('’', "'"), brk));
        prev_end = m.end();
    }
    out
}

fn phrase_ok(window: &[String]) -> bool {
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return false;
    };
    let middle_ok = window.len() < 3 || window[1] == "of" || inner_word_ok(&window[1]);
    let middle_stop = window.len() == 3 && window[1] != "of" && STOP.contains(window[1].as_str());
    edge_word_ok(first, window.len() == 1) && edge_word_ok(last, true) && middle_ok && !middle_stop
}

/// Counts occurrences of a fixed set of phrases (as word sequences) in
/// texts, in one pass per text.
struct PhraseCounter<'k> {
    phrases: HashSet<&'k str>,
    /// Every leading word sequence of a phrase ("a", "a b" of "a b c"), so
    /// a start position is given up as soon as it cannot become a phrase.
    prefixes: HashSet<&'k str>,
    longest: usize,
}

impl<'k> PhraseCounter<'k> {
    fn new(keys: impl Iterator<Item = &'k str>) -> PhraseCounter<'k> {
        let phrases: HashSet<&str> = keys.collect();
        let mut prefixes = HashSet::new();
        for p in &phrases {
            for (i, _) in p.match_indices(' ') {
                prefixes.insert(&p[..i]);
            }
            prefixes.insert(*p);
        }
        let longest = phrases
            .iter()
            .map(|k| k.split(' ').count())
            .max()
            .unwrap_or(0);
        PhraseCounter {
            phrases,
            prefixes,
            longest,
        }
    }

    fn count(&self, text: &str) -> HashMap<&'k str, usize> {
        let tokens: Vec<Cow<'_, str>> = words(text).collect();
        let mut counts = HashMap::new();
        let mut key = String::new();
        for start in 0..tokens.len() {
            key.clear();
            for token in tokens[start..].iter().take(self.longest) {
                if !key.is_empty() {
                    key.push(' ');
                }
                key.push_str(token);
                if !self.prefixes.contains(key.as_str()) {
                    break;
                }
                if let Some(&k) = self.phrases.get(key.as_str()) {
                    *counts.entry(k).or_default() += 1;
                }
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{tag, terms};
    use super::super::words::tag_allowed;
    use super::super::{TagInput, MIN_TAGS};
    use super::*;

    #[test]
    fn phrase_counter_counts_every_start_including_nested_phrases() {
        let c = PhraseCounter::new(
            ["sparse attention", "attention", "sparse attention head"].into_iter(),
        );
        let n =
            c.count("Sparse attention, sparse-attention heads; attention. Sparse attention head!");
        assert_eq!(n.get("sparse attention"), Some(&3));
        assert_eq!(n.get("attention"), Some(&4));
        assert_eq!(
            n.get("sparse attention head"),
            Some(&1),
            "'heads' is another word"
        );
    }

    #[test]
    fn phrases_are_mined_for_papers_outside_the_vocabulary() {
        let t = terms("terms:\n  transformer: []\n");
        let tags = tag(
            "Conflict-Free Replicated Workflows for Offline Scientific Pipelines",
            "We describe replicated workflows that let offline sites reconcile. See https://www.example.com/x and arXiv 2401.01234.",
            "replicated workflows and offline sites. Replicated workflows reconcile. offline sites, scientific pipelines; scientific pipelines. \
             The vector clock orders the vector clock. these these these https https www com 2024 2024.",
            &t,
        );
        assert!(tags.tags.len() >= MIN_TAGS, "{:?}", tags.tags);
        assert_eq!(tags.tags[0], "replicated-workflows");
        assert!(
            tags.tags.contains(&"offline-sites".to_string()),
            "{:?}",
            tags.tags
        );
        assert!(
            tags.tags.contains(&"scientific-pipelines".to_string()),
            "{:?}",
            tags.tags
        );
        for t in &tags.tags {
            assert!(tag_allowed(t), "{t}");
            for bad in ["these", "https", "www", "com", "arxiv", "2024", "the"] {
                assert!(!t.split('-').any(|p| p == bad), "{t}");
            }
        }
    }

    #[test]
    fn verbs_and_adjectives_are_not_tags() {
        let t = terms("terms:\n  transformer: []\n");
        let input = TagInput {
            title: "",
            abstract_text: "The halo resolves the satellite. The model is sparse. The router keeps the load.",
            body: "the halo resolves the satellite; the halo resolves every satellite. \
                   the model is sparse. a sparse model. the router keeps the load. the router keeps the load.",
            neighbor_texts: &[],
        };
        let mined: Vec<String> = mine_phrases(&input, &t)
            .into_iter()
            .map(|c| c.slug)
            .collect();
        for bad in [
            "resolves",
            "halo-resolves",
            "sparse",
            "keeps",
            "router-keeps",
        ] {
            assert!(!mined.contains(&bad.to_string()), "{bad} in {mined:?}");
        }
        for good in ["halo", "satellite", "router", "load"] {
            assert!(mined.contains(&good.to_string()), "{good} not in {mined:?}");
        }
    }

    #[test]
    fn mined_phrases_the_vocabulary_covers_use_the_canonical_slug() {
        let t = terms("terms:\n  large-language-model: [large language models, LLM]\n");
        let tags = tag(
            "Large Language Models",
            "",
            "large language models and large language models",
            &t,
        );
        assert_eq!(
            tags.tags.first().map(String::as_str),
            Some("large-language-model")
        );
        assert!(!tags.tags.contains(&"large-language-models".to_string()));
    }
}
