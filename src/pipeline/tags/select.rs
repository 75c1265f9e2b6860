//! Choosing the final tags from scored candidates: nested phrases give way
//! to longer ones, strong candidates first, weaker ones only to reach
//! [`super::MIN_TAGS`].

use super::words::tag_allowed;
use super::{Candidate, MAX_TAGS, MIN_TAGS};
use std::collections::HashSet;

/// A vocabulary term needs this score to be a first-choice tag: one
/// mention in the title or abstract, or two in the body.
const STRONG_SCORE: f64 = 2.0;

/// A mined phrase needs this many body mentions to be a first-choice tag.
const MIN_BODY_MENTIONS: usize = 2;

/// Split off mined phrases that sit inside a longer candidate with at
/// least half their score and half their body mentions (they are mostly
/// used as part of it), or that are a vocabulary term in other words
/// ("diffusion models"). Returns (kept, nested); nested ones are only a
/// last resort.
pub(super) fn split_nested(candidates: Vec<Candidate>) -> (Vec<Candidate>, Vec<Candidate>) {
    let nested: Vec<bool> = candidates
        .iter()
        .map(|c| {
            !c.from_vocabulary
                && candidates.iter().any(|o| {
                    (o.from_vocabulary && o.tokens == c.tokens)
                        || (o.tokens.len() > c.tokens.len()
                            && contains_run(&o.tokens, &c.tokens)
                            && o.score >= 0.5 * c.score
                            && o.body_mentions * 2 >= c.body_mentions)
                })
        })
        .collect();
    let (nested, kept): (Vec<_>, Vec<_>) =
        candidates.into_iter().zip(nested).partition(|(_, n)| *n);
    (
        kept.into_iter().map(|(c, _)| c).collect(),
        nested.into_iter().map(|(c, _)| c).collect(),
    )
}

/// Does `long` contain `short` as a contiguous run?
fn contains_run(long: &[String], short: &[String]) -> bool {
    !short.is_empty() && long.windows(short.len()).any(|w| w == short)
}

/// Strong candidates first, then weak ones and then nested ones up to
/// [`MIN_TAGS`], each group best first; no more than [`MAX_TAGS`].
pub(super) fn choose(candidates: Vec<Candidate>, nested: Vec<Candidate>) -> Vec<Candidate> {
    let strong = |c: &Candidate| {
        if c.from_vocabulary {
            c.own >= STRONG_SCORE
        } else {
            c.body_mentions >= MIN_BODY_MENTIONS
        }
    };
    let (first, rest): (Vec<Candidate>, Vec<Candidate>) =
        candidates.into_iter().partition(|c| strong(c));
    // Keyed by singular words, so "graph" and "graphs" are one tag.
    let mut seen = HashSet::new();
    let mut out: Vec<Candidate> = Vec::new();
    for (tier, limit) in [(first, MAX_TAGS), (rest, MIN_TAGS), (nested, MIN_TAGS)] {
        for c in best_first(tier) {
            if out.len() < limit && seen.insert(c.tokens.join(" ")) {
                out.push(c);
            }
        }
    }
    out
}

/// Usable candidates by score; ties go to vocabulary terms, then longer
/// phrases, then alphabetical order (so output is deterministic).
fn best_first(tier: Vec<Candidate>) -> Vec<Candidate> {
    let mut tier: Vec<Candidate> = tier
        .into_iter()
        .filter(|c| c.own > 0.0 && tag_allowed(&c.slug))
        .collect();
    tier.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.from_vocabulary.cmp(&a.from_vocabulary))
            .then(b.tokens.len().cmp(&a.tokens.len()))
            .then(a.slug.cmp(&b.slug))
    });
    tier
}

#[cfg(test)]
mod tests {
    use super::super::mining::mine_phrases;
    use super::super::tests::{tag, terms};
    use super::super::{terminology_tags, TagInput, MAX_TAGS};
    use super::*;

    #[test]
    fn a_phrase_inside_a_longer_one_gives_way() {
        let t = terms("terms:\n  transformer: []\n");
        let input = TagInput {
            title: "Sparse Attention Kernels",
            abstract_text: "",
            body: "sparse attention kernels beat sparse attention kernels and sparse attention kernels",
            neighbor_texts: &[],
        };
        let (kept, nested) = split_nested(mine_phrases(&input, &t));
        let kept: Vec<&str> = kept.iter().map(|c| c.slug.as_str()).collect();
        assert_eq!(kept, ["sparse-attention-kernels"]);
        assert!(nested.iter().any(|c| c.slug == "sparse-attention"));
        // Nested phrases only fill up, after the long one.
        let tags = terminology_tags(&input, &t);
        assert_eq!(
            tags.tags.first().map(String::as_str),
            Some("sparse-attention-kernels")
        );
        assert!(tags.tags.contains(&"sparse-attention".to_string()));
    }

    #[test]
    fn a_longer_phrase_seen_once_does_not_swallow_a_frequent_one() {
        let t = terms("terms:\n  transformer: []\n");
        let input = TagInput {
            title: "",
            abstract_text: "offline sites reconcile",
            body: "offline sites and offline sites",
            neighbor_texts: &[],
        };
        let (kept, _) = split_nested(mine_phrases(&input, &t));
        assert!(kept.iter().any(|c| c.slug == "offline-sites"));
    }

    #[test]
    fn at_most_fifteen_tags() {
        let yaml: String = (0..30).fold("terms:\n".to_string(), |s, i| {
            s + &format!("  term{i}x: []\n")
        });
        let t = terms(&yaml);
        let body: String = (0..30).map(|i| format!("term{i}x term{i}x ")).collect();
        assert_eq!(tag("", "", &body, &t).tags.len(), MAX_TAGS);
    }
}
