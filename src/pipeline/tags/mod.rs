//! Terminology tags without an LLM: a curated vocabulary (canonical term →
//! aliases, `machines/terminology.yml`) matched on word boundaries, plus key
//! phrases mined from the title and abstract so that papers outside the
//! vocabulary still get tags, plus coarse domain tags.
//!
//! Every alias is regex-escaped and every tag passes one guard
//! ([`tag_allowed`]): the Python original built patterns from unescaped
//! aliases and produced tags like "these" and "https".
//!
//! # Layout
//!
//! One job per file, each with its tests: [`vocab`] loads and matches the
//! curated vocabulary ([`Terminology`]); [`scoring`] weighs vocabulary
//! mentions by section and picks domain tags; [`mining`] finds key phrases
//! for papers the vocabulary misses; [`select`] merges and ranks the
//! candidates; [`words`] holds the word lists, tokenising and the
//! [`tag_allowed`] guard every tag passes. This file holds the public types
//! and [`terminology_tags`], which runs them in order; the public API is
//! unchanged by the split.

mod mining;
mod scoring;
mod select;
mod vocab;
mod words;

pub use vocab::Terminology;
pub use words::{tag_allowed, GENERIC_WORDS, STOP_WORDS, URL_PARTS};

use mining::mine_phrases;
use scoring::{domain_tags, score_terms};
use select::{choose, split_nested};
use serde::Serialize;
use words::stem;

/// Weight of a mention in the title or abstract.
pub const TITLE_ABSTRACT_WEIGHT: f64 = 3.0;

/// Weight of a mention in the body.
pub const BODY_WEIGHT: f64 = 1.0;

/// Weight of a mention in a neighbouring paper's text.
pub const NEIGHBOR_WEIGHT: f64 = 0.5;

/// Fewest tags [`terminology_tags`] tries to return.
pub const MIN_TAGS: usize = 5;

/// Most tags [`terminology_tags`] returns.
pub const MAX_TAGS: usize = 15;

/// What [`terminology_tags`] reads.
#[derive(Debug, Clone, Copy)]
pub struct TagInput<'a> {
    pub title: &'a str,
    pub abstract_text: &'a str,
    pub body: &'a str,
    /// Titles and abstracts of related papers (from the corpus).
    pub neighbor_texts: &'a [String],
}

/// Tags for a paper.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tags {
    /// Up to [`MAX_TAGS`] slugs, best first; at least [`MIN_TAGS`] when the
    /// paper has enough text.
    pub tags: Vec<String>,
    /// Coarse areas ("nlp", "astrophysics", ...), best first.
    pub domain_tags: Vec<String>,
    /// The score of each tag in `tags`, in the same order.
    pub scores: Vec<(String, f64)>,
}

/// A scored tag candidate.
#[derive(Debug, Clone)]
struct Candidate {
    slug: String,
    /// Lower-case, crudely singular words ([`stem`]), for nesting checks.
    tokens: Vec<String>,
    score: f64,
    /// Score from the paper itself (no neighbours).
    own: f64,
    body_mentions: usize,
    from_vocabulary: bool,
}

/// Tag a paper. Vocabulary terms are scored by weighted mentions (title
/// and abstract ×3, body ×1, each neighbour ×0.5; overlapping matches count
/// once, for the longest term, so "graph neural network" does not also
/// count as "neural network"). Key phrases are mined from the title and
/// abstract (see [`mine_phrases`]) and scored the same way. A term or
/// phrase only neighbours mention is never a tag.
///
/// First choice: terms scoring at least 2 and phrases mentioned at least
/// twice in the body; a phrase mostly used inside a longer candidate gives
/// way to it (see [`split_nested`]). When that gives fewer than
/// [`MIN_TAGS`], weaker candidates (any mention; phrases seen only in the
/// title or abstract), then the phrases that gave way, fill up.
pub fn terminology_tags(input: &TagInput, terms: &Terminology) -> Tags {
    let term_scores = score_terms(input, terms);
    let mut candidates: Vec<Candidate> = terms
        .terms
        .iter()
        .zip(&term_scores)
        .filter(|(_, s)| s.own > 0.0)
        .map(|(t, s)| Candidate {
            slug: t.slug.clone(),
            tokens: t.slug.split('-').map(stem).collect(),
            score: s.total,
            own: s.own,
            body_mentions: s.body,
            from_vocabulary: true,
        })
        .collect();
    candidates.extend(mine_phrases(input, terms));
    let (candidates, nested) = split_nested(candidates);
    let tags = choose(candidates, nested);
    Tags {
        tags: tags.iter().map(|c| c.slug.clone()).collect(),
        domain_tags: domain_tags(terms, &term_scores, input),
        scores: tags
            .iter()
            .map(|c| (c.slug.clone(), round2(c.score)))
            .collect(),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::vocab::Terminology;
    use super::*;

    pub(super) fn terms(yaml: &str) -> Terminology {
        Terminology::from_yaml(yaml).unwrap()
    }

    pub(super) fn tag(title: &str, abs: &str, body: &str, t: &Terminology) -> Tags {
        terminology_tags(
            &TagInput {
                title,
                abstract_text: abs,
                body,
                neighbor_texts: &[],
            },
            t,
        )
    }

    #[test]
    fn empty_input_gives_no_tags() {
        let tags = tag("", "", "", &Terminology::builtin());
        assert!(tags.tags.is_empty() && tags.domain_tags.is_empty());
    }
}
