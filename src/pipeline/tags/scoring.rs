//! Scoring vocabulary terms: weighted mentions by section (overlaps count
//! once, for the longest term) and the coarse domain tags derived from them.

use super::vocab::{Term, Terminology, Trigger};
use super::{TagInput, BODY_WEIGHT, NEIGHBOR_WEIGHT, TITLE_ABSTRACT_WEIGHT};
use regex::Regex;
use std::cmp::Reverse;

/// Domain tags need this score and this share of the best domain's score.
const DOMAIN_MIN_SCORE: f64 = 4.0;
const DOMAIN_MIN_SHARE: f64 = 0.3;
const MAX_DOMAINS: usize = 3;

/// Weighted mentions of one term.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TermScore {
    pub(super) total: f64,
    pub(super) own: f64,
    pub(super) body: usize,
}

pub(super) fn score_terms(input: &TagInput, terms: &Terminology) -> Vec<TermScore> {
    let title = count_terms(input.title, &terms.terms);
    let abs = count_terms(input.abstract_text, &terms.terms);
    let body = count_terms(input.body, &terms.terms);
    let mut neighbors = vec![0usize; terms.terms.len()];
    for text in input.neighbor_texts {
        for (n, c) in neighbors.iter_mut().zip(count_terms(text, &terms.terms)) {
            *n += c;
        }
    }
    (0..terms.terms.len())
        .map(|i| {
            let own =
                TITLE_ABSTRACT_WEIGHT * (title[i] + abs[i]) as f64 + BODY_WEIGHT * body[i] as f64;
            TermScore {
                total: own + NEIGHBOR_WEIGHT * neighbors[i] as f64,
                own,
                body: body[i],
            }
        })
        .collect()
}

/// Mentions of each term in `text`; where matches of different terms
/// overlap, only the leftmost-longest counts.
pub(super) fn count_terms(text: &str, terms: &[Term]) -> Vec<usize> {
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    for (i, term) in terms.iter().enumerate() {
        spans.extend(
            term.matcher
                .find_iter(text)
                .map(|m| (m.start(), m.end(), i)),
        );
    }
    spans.sort_by_key(|&(start, end, _)| (start, Reverse(end)));
    let mut counts = vec![0; terms.len()];
    let mut covered = 0;
    for (start, end, i) in spans {
        if start >= covered {
            counts[i] += 1;
            covered = end;
        }
    }
    counts
}

/// Coarse areas whose triggers score at least [`DOMAIN_MIN_SCORE`] and
/// [`DOMAIN_MIN_SHARE`] of the best area, best first, at most
/// [`MAX_DOMAINS`]. Trigger phrases are scored like terms.
pub(super) fn domain_tags(
    terms: &Terminology,
    term_scores: &[TermScore],
    input: &TagInput,
) -> Vec<String> {
    let phrase_score = |re: &Regex| {
        let count = |t: &str| re.find_iter(t).count() as f64;
        TITLE_ABSTRACT_WEIGHT * (count(input.title) + count(input.abstract_text))
            + BODY_WEIGHT * count(input.body)
    };
    let mut scored: Vec<(&str, f64)> = terms
        .domains
        .iter()
        .map(|d| {
            let score = d
                .triggers
                .iter()
                .map(|t| match t {
                    Trigger::Term(i) => term_scores.get(*i).map_or(0.0, |s| s.own),
                    Trigger::Phrase(re) => phrase_score(re),
                })
                .sum::<f64>();
            (d.slug.as_str(), score)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let best = scored.first().map_or(0.0, |s| s.1);
    scored
        .into_iter()
        .filter(|(_, s)| *s >= DOMAIN_MIN_SCORE && *s >= DOMAIN_MIN_SHARE * best)
        .take(MAX_DOMAINS)
        .map(|(slug, _)| slug.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{tag, terms};
    use super::super::{terminology_tags, TagInput};
    use super::*;

    #[test]
    fn aliases_count_for_the_canonical_slug() {
        let t = terms("terms:\n  large-language-model: [LLM, large language models]\n");
        assert_eq!(
            count_terms("LLMs are large language models", &t.terms),
            vec![2]
        );
    }

    #[test]
    fn overlapping_terms_count_once_for_the_longest() {
        let t = terms("terms:\n  neural-network: []\n  graph-neural-network: []\n");
        assert_eq!(count_terms("a graph neural network", &t.terms), vec![0, 1]);
        assert_eq!(count_terms("a neural network", &t.terms), vec![1, 0]);
    }

    #[test]
    fn section_weights_apply() {
        let t = terms("terms:\n  dark-matter: []\n");
        let input = TagInput {
            title: "Dark matter",
            abstract_text: "dark matter",
            body: "dark matter dark matter",
            neighbor_texts: &["dark matter".to_string(), "dark matter".to_string()],
        };
        let tags = terminology_tags(&input, &t);
        assert_eq!(tags.scores.first(), Some(&("dark-matter".to_string(), 9.0)));
    }

    #[test]
    fn neighbours_alone_never_make_a_tag() {
        let t = terms("terms:\n  exoplanet: []\n");
        let input = TagInput {
            title: "",
            abstract_text: "",
            body: "",
            neighbor_texts: &["exoplanet exoplanet exoplanet".to_string()],
        };
        assert!(terminology_tags(&input, &t).tags.is_empty());
    }

    #[test]
    fn domains_come_from_triggers() {
        let t = terms(
            "terms:\n  dark-matter: []\n  transformer: []\ndomains:\n  astrophysics: [dark-matter, galaxy]\n  nlp: [transformer]\n",
        );
        let tags = tag(
            "Dark Matter Halos of Galaxies",
            "dark matter",
            "galaxy galaxy dark matter transformer",
            &t,
        );
        assert_eq!(tags.domain_tags, ["astrophysics"]);
    }
}
