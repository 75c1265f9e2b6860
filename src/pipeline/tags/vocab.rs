//! The curated vocabulary: parsing `terminology.yml` (canonical term →
//! aliases, domain → triggers) and compiling each term into one escaped,
//! word-bounded matcher.
//!
//! Loading is the only fallible part of tagging, so it is kept apart from
//! scoring: a bad file is refused here, before any paper is tagged.

use super::words::token_key;
use indexmap::IndexMap;
use regex::Regex;
use serde::Deserialize;
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

/// The built-in terminology file.
const BUILTIN_YAML: &str = include_str!("../../../machines/terminology.yml");

/// Separators that are interchangeable inside a phrase.
const SEPARATOR: &str = r"[\s_\-\u{2010}\u{2011}]+";

/// A curated vocabulary: canonical term → aliases, and domain → triggers.
#[derive(Debug, Clone)]
pub struct Terminology {
    pub(super) terms: Vec<Term>,
    pub(super) domains: Vec<Domain>,
    /// Token key of every alias → the terms (indexes, ascending) that have
    /// it, so [`Terminology::canonical`] tests a handful of terms instead
    /// of running all of their matchers.
    pub(super) by_key: HashMap<String, Vec<usize>>,
}

#[derive(Debug, Clone)]
pub(super) struct Term {
    pub(super) slug: String,
    /// Lower-case token sequences of the slug and aliases, to recognise a
    /// mined phrase the vocabulary already covers.
    pub(super) keys: HashSet<String>,
    pub(super) matcher: Regex,
}

#[derive(Debug, Clone)]
pub(super) struct Domain {
    pub(super) slug: String,
    pub(super) triggers: Vec<Trigger>,
}

#[derive(Debug, Clone)]
pub(super) enum Trigger {
    /// Index into `terms`.
    Term(usize),
    Phrase(Regex),
}

/// The file format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TerminologyFile {
    terms: IndexMap<String, Option<Vec<String>>>,
    #[serde(default)]
    domains: IndexMap<String, Vec<String>>,
}

impl Terminology {
    /// Parse a terminology file (see `machines/terminology.yml`). Slugs
    /// must be lower-case words joined by hyphens; aliases and triggers
    /// must have at least one letter or digit.
    pub fn from_yaml(text: &str) -> Result<Terminology, String> {
        let file: TerminologyFile =
            serde_yaml::from_str(text).map_err(|e| format!("invalid terminology file: {e}"))?;
        let mut terms = Vec::with_capacity(file.terms.len());
        for (slug, aliases) in &file.terms {
            check_slug(slug)?;
            terms.push(Term::new(slug, aliases.as_deref().unwrap_or_default())?);
        }
        let by_slug: HashMap<&str, usize> = terms
            .iter()
            .enumerate()
            .map(|(i, t)| (t.slug.as_str(), i))
            .collect();
        let mut domains = Vec::with_capacity(file.domains.len());
        for (slug, triggers) in &file.domains {
            check_slug(slug)?;
            let triggers = triggers
                .iter()
                .map(|t| match by_slug.get(t.as_str()) {
                    Some(&i) => Ok(Trigger::Term(i)),
                    None => phrase_matcher(&[t.as_str()])
                        .map(Trigger::Phrase)
                        .map_err(|e| format!("domain '{slug}': {e}")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            domains.push(Domain {
                slug: slug.clone(),
                triggers,
            });
        }
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, t) in terms.iter().enumerate() {
            for k in &t.keys {
                by_key.entry(k.clone()).or_default().push(i);
            }
        }
        Ok(Terminology {
            terms,
            domains,
            by_key,
        })
    }

    /// The terminology shipped in `machines/terminology.yml`. A unit test
    /// parses it, so the empty fallback only guards against a broken build.
    pub fn builtin() -> Terminology {
        Terminology::from_yaml(BUILTIN_YAML).unwrap_or_else(|e| {
            tracing::error!("built-in terminology is invalid: {e}");
            Terminology {
                terms: Vec::new(),
                domains: Vec::new(),
                by_key: HashMap::new(),
            }
        })
    }

    /// Canonical term slugs, in file order.
    pub fn term_slugs(&self) -> Vec<&str> {
        self.terms.iter().map(|t| t.slug.as_str()).collect()
    }

    /// Domain slugs, in file order.
    pub fn domain_slugs(&self) -> Vec<&str> {
        self.domains.iter().map(|d| d.slug.as_str()).collect()
    }

    /// The canonical slug for `text` if the whole of it is one of the
    /// vocabulary's terms or aliases.
    pub fn canonical(&self, text: &str) -> Option<&str> {
        let key = token_key(text);
        // A term matches the whole text only if the text's key is one of
        // its keys, or one with a plural "s"/"es" added (its matcher
        // accepts those): only such terms are tested, in file order.
        let mut candidates: Vec<usize> = [
            Some(key.as_str()),
            key.strip_suffix('s'),
            key.strip_suffix("es"),
        ]
        .into_iter()
        .flatten()
        .filter_map(|k| self.by_key.get(k))
        .flatten()
        .copied()
        .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .map(|i| &self.terms[i])
            .find(|t| {
                t.keys.contains(&key)
                    || t.matcher
                        .find(text)
                        .is_some_and(|m| m.start() == 0 && m.end() == text.len())
            })
            .map(|t| t.slug.as_str())
    }
}

impl Term {
    fn new(slug: &str, aliases: &[String]) -> Result<Term, String> {
        let mut all: Vec<&str> = vec![slug];
        all.extend(aliases.iter().map(String::as_str));
        let matcher = phrase_matcher(&all).map_err(|e| format!("term '{slug}': {e}"))?;
        let keys = all.iter().map(|a| token_key(a)).collect();
        Ok(Term {
            slug: slug.to_string(),
            keys,
            matcher,
        })
    }
}

fn check_slug(slug: &str) -> Result<(), String> {
    let ok = !slug.is_empty()
        && slug.split('-').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{slug}' is not a slug (lower-case letters and digits joined by '-')"
        ))
    }
}

/// One regex matching any of `phrases` (see [`phrase_pattern`]), longest
/// first so the longest alias wins at a position.
fn phrase_matcher(phrases: &[&str]) -> Result<Regex, String> {
    let mut sorted: Vec<&str> = phrases.to_vec();
    sorted.sort_by_key(|p| Reverse(p.chars().count()));
    let patterns = sorted
        .iter()
        .map(|p| phrase_pattern(p).ok_or_else(|| format!("alias '{p}' has no letters or digits")))
        .collect::<Result<Vec<_>, _>>()?;
    Regex::new(&patterns.join("|")).map_err(|e| format!("cannot compile aliases: {e}"))
}

/// The pattern for one phrase: its words regex-escaped and joined by any
/// run of spaces, hyphens or underscores, an optional plural "s"/"es",
/// word boundaries where the phrase starts or ends with a word character,
/// case-insensitive unless the phrase has a capital letter.
fn phrase_pattern(phrase: &str) -> Option<String> {
    let words: Vec<String> = phrase
        .split(|c: char| c.is_whitespace() || c == '-' || c == '_')
        .filter(|w| !w.is_empty())
        .map(regex::escape)
        .collect();
    if !phrase.chars().any(char::is_alphanumeric) || words.is_empty() {
        return None;
    }
    let flags = if phrase.chars().any(char::is_uppercase) {
        "-i"
    } else {
        "i"
    };
    let start = boundary(phrase.trim().chars().next());
    let end = boundary(phrase.trim().chars().last());
    let plural = if end.is_empty() { "" } else { "(?:e?s)?" };
    Some(format!(
        "{start}(?{flags}:{}{plural}){end}",
        words.join(SEPARATOR)
    ))
}

/// The word boundary to put next to an edge character: none for
/// punctuation ("C++"), an ASCII one for ASCII letters and digits (the
/// regex engine's fast path cannot do Unicode boundaries on non-ASCII
/// text), a Unicode one otherwise.
fn boundary(edge: Option<char>) -> &'static str {
    match edge {
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => r"(?-u:\b)",
        Some(c) if c.is_alphanumeric() => r"\b",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::super::scoring::count_terms;
    use super::super::tests::terms;
    use super::super::words::token_key;
    use super::*;

    /// What `canonical` computes, the slow way: every term in order.
    fn canonical_by_scan<'t>(t: &'t Terminology, text: &str) -> Option<&'t str> {
        let key = token_key(text);
        t.terms
            .iter()
            .find(|term| {
                term.keys.contains(&key)
                    || term
                        .matcher
                        .find(text)
                        .is_some_and(|m| m.start() == 0 && m.end() == text.len())
            })
            .map(|term| term.slug.as_str())
    }

    #[test]
    fn canonical_lookup_agrees_with_a_scan_of_every_term() {
        let t = Terminology::builtin();
        let file: TerminologyFile = serde_yaml::from_str(BUILTIN_YAML).unwrap();
        let mut texts = vec!["".to_string(), "attention".into(), "models".into()];
        for (slug, aliases) in &file.terms {
            for a in std::iter::once(slug).chain(aliases.iter().flatten()) {
                for v in [
                    a.clone(),
                    a.to_lowercase(),
                    a.to_uppercase(),
                    format!("{a}s"),
                    format!("{a}es"),
                    format!("{}s", a.to_lowercase()),
                    a.replace(' ', "-"),
                    a.replace('-', " "),
                    format!("{a} extra"),
                    token_key(a),
                    format!("{}s", token_key(a)),
                ] {
                    texts.push(v);
                }
            }
        }
        for text in &texts {
            assert_eq!(t.canonical(text), canonical_by_scan(&t, text), "{text:?}");
        }
    }

    #[test]
    fn builtin_terminology_parses_and_is_big_enough() {
        let t = Terminology::from_yaml(BUILTIN_YAML).unwrap();
        assert!(t.term_slugs().len() >= 60, "{}", t.term_slugs().len());
        for slug in [
            "transformer",
            "self-attention",
            "diffusion-model",
            "reinforcement-learning",
            "large-language-model",
            "retrieval-augmented-generation",
            "mixture-of-experts",
            "chain-of-thought",
            "contrastive-learning",
            "graph-neural-network",
            "dark-matter",
            "exoplanet",
        ] {
            assert!(t.term_slugs().contains(&slug), "{slug}");
        }
        for d in [
            "nlp",
            "computer-vision",
            "reinforcement-learning",
            "robotics",
            "astrophysics",
            "theory",
            "systems",
            "biology",
        ] {
            assert!(t.domain_slugs().contains(&d), "{d}");
        }
        assert_eq!(Terminology::builtin().term_slugs(), t.term_slugs());
    }

    #[test]
    fn hyphen_space_and_underscore_variants_match() {
        let t = terms("terms:\n  self-attention: [self attention]\n");
        for text in [
            "self attention",
            "Self-Attention",
            "self_attention",
            "self-attentions",
        ] {
            assert_eq!(count_terms(text, &t.terms), vec![1], "{text}");
        }
        assert_eq!(count_terms("selfattention", &t.terms), vec![0]);
    }

    #[test]
    fn matching_is_word_bounded() {
        let t = terms("terms:\n  transformer: []\n");
        assert_eq!(
            count_terms("transformers and a Transformer", &t.terms),
            vec![2]
        );
        assert_eq!(
            count_terms("transformerless autotransformer", &t.terms),
            vec![0]
        );
    }

    #[test]
    fn capitalised_aliases_are_case_sensitive() {
        let t = terms("terms:\n  retrieval-augmented-generation: [RAG]\n");
        assert_eq!(count_terms("RAG and RAGs", &t.terms), vec![2]);
        assert_eq!(count_terms("a rag doll, drag, Rag", &t.terms), vec![0]);
    }

    #[test]
    fn aliases_are_escaped() {
        let t = terms("terms:\n  cpp: [\"C++\", \"a.b\"]\n");
        assert_eq!(count_terms("we use C++ here", &t.terms), vec![1]);
        assert_eq!(count_terms("C and axb", &t.terms), vec![0]);
    }

    #[test]
    fn bad_files_are_rejected() {
        assert!(Terminology::from_yaml("terms: [a]").is_err());
        assert!(Terminology::from_yaml("terms:\n  Bad Slug: []\n").is_err());
        assert!(Terminology::from_yaml("terms:\n  ok: [\"--\"]\n").is_err());
        assert!(Terminology::from_yaml("terms: {}\nextra: 1\n").is_err());
        assert!(
            Terminology::from_yaml("terms:\n  ok:\ndomains:\n  d: [ok, some phrase]\n").is_ok()
        );
    }
}
