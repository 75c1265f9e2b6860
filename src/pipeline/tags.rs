//! Terminology tags without an LLM: a curated vocabulary (canonical term →
//! aliases, `machines/terminology.yml`) matched on word boundaries, plus key
//! phrases mined from the title and abstract so that papers outside the
//! vocabulary still get tags, plus coarse domain tags.
//!
//! Every alias is regex-escaped and every tag passes one guard
//! ([`tag_allowed`]): the Python original built patterns from unescaped
//! aliases and produced tags like "these" and "https".

use indexmap::IndexMap;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// The built-in terminology file.
const BUILTIN_YAML: &str = include_str!("../../machines/terminology.yml");

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
/// A vocabulary term needs this score to be a first-choice tag: one
/// mention in the title or abstract, or two in the body.
const STRONG_SCORE: f64 = 2.0;
/// Mined single words count this much of their mentions.
const UNIGRAM_WEIGHT: f64 = 0.5;
/// A mined phrase needs this many body mentions to be a first-choice tag.
const MIN_BODY_MENTIONS: usize = 2;
/// Domain tags need this score and this share of the best domain's score.
const DOMAIN_MIN_SCORE: f64 = 4.0;
const DOMAIN_MIN_SHARE: f64 = 0.3;
const MAX_DOMAINS: usize = 3;

/// Separators that are interchangeable inside a phrase.
const SEPARATOR: &str = r"[\s_\-\u{2010}\u{2011}]+";

/// URL and identifier fragments, never a tag or part of one.
pub const URL_PARTS: [&str; 14] = [
    "http", "https", "www", "com", "org", "net", "edu", "html", "htm", "pdf", "arxiv", "doi",
    "github", "abs",
];

/// English function words (and the commonest verbs and adverbs): never a
/// tag, never at either end of a mined phrase.
pub const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "according",
    "across",
    "actually",
    "after",
    "afterwards",
    "again",
    "against",
    "all",
    "almost",
    "alone",
    "along",
    "already",
    "also",
    "although",
    "always",
    "am",
    "among",
    "amongst",
    "an",
    "and",
    "another",
    "any",
    "anyhow",
    "anyone",
    "anything",
    "anyway",
    "anywhere",
    "are",
    "around",
    "as",
    "at",
    "back",
    "be",
    "became",
    "because",
    "become",
    "becomes",
    "becoming",
    "been",
    "before",
    "beforehand",
    "behind",
    "being",
    "below",
    "beside",
    "besides",
    "between",
    "beyond",
    "both",
    "but",
    "by",
    "can",
    "cannot",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "done",
    "down",
    "due",
    "during",
    "each",
    "either",
    "else",
    "elsewhere",
    "enough",
    "especially",
    "etc",
    "even",
    "ever",
    "every",
    "everyone",
    "everything",
    "everywhere",
    "except",
    "few",
    "fewer",
    "for",
    "former",
    "formerly",
    "from",
    "further",
    "furthermore",
    "get",
    "gets",
    "getting",
    "give",
    "given",
    "gives",
    "go",
    "goes",
    "had",
    "has",
    "have",
    "having",
    "he",
    "hence",
    "her",
    "here",
    "hereby",
    "herein",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "however",
    "i",
    "ie",
    "if",
    "in",
    "indeed",
    "instead",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "last",
    "latter",
    "least",
    "less",
    "let",
    "like",
    "likely",
    "made",
    "mainly",
    "make",
    "makes",
    "many",
    "may",
    "me",
    "meanwhile",
    "might",
    "more",
    "moreover",
    "most",
    "mostly",
    "much",
    "must",
    "my",
    "myself",
    "namely",
    "neither",
    "never",
    "nevertheless",
    "next",
    "no",
    "nobody",
    "none",
    "nor",
    "not",
    "nothing",
    "now",
    "nowhere",
    "of",
    "off",
    "often",
    "on",
    "once",
    "one",
    "only",
    "onto",
    "or",
    "other",
    "others",
    "otherwise",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "overall",
    "own",
    "per",
    "perhaps",
    "please",
    "put",
    "quite",
    "rather",
    "really",
    "regarding",
    "same",
    "see",
    "seem",
    "seemed",
    "seems",
    "several",
    "shall",
    "she",
    "should",
    "show",
    "showed",
    "shown",
    "shows",
    "since",
    "so",
    "some",
    "somehow",
    "someone",
    "something",
    "sometimes",
    "somewhere",
    "still",
    "such",
    "take",
    "takes",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "thence",
    "there",
    "thereafter",
    "thereby",
    "therefore",
    "therein",
    "these",
    "they",
    "this",
    "those",
    "though",
    "through",
    "throughout",
    "thus",
    "to",
    "together",
    "too",
    "toward",
    "towards",
    "two",
    "three",
    "under",
    "unless",
    "until",
    "up",
    "upon",
    "us",
    "use",
    "used",
    "uses",
    "using",
    "very",
    "via",
    "was",
    "we",
    "well",
    "were",
    "what",
    "whatever",
    "when",
    "whence",
    "whenever",
    "where",
    "whereas",
    "whereby",
    "wherein",
    "whether",
    "which",
    "while",
    "whilst",
    "who",
    "whoever",
    "whole",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "within",
    "without",
    "would",
    "yet",
    "you",
    "your",
    "yours",
    "yourself",
    "able",
    "allow",
    "allows",
    "achieve",
    "achieves",
    "achieved",
    "apply",
    "applied",
    "based",
    "called",
    "consider",
    "considered",
    "contrast",
    "demonstrate",
    "demonstrates",
    "describe",
    "describes",
    "enable",
    "enables",
    "find",
    "finds",
    "found",
    "first",
    "second",
    "third",
    "following",
    "help",
    "helps",
    "include",
    "includes",
    "including",
    "introduce",
    "introduces",
    "lead",
    "leads",
    "mean",
    "means",
    "need",
    "needs",
    "new",
    "novel",
    "observe",
    "obtain",
    "obtained",
    "offer",
    "offers",
    "particular",
    "present",
    "presents",
    "propose",
    "proposed",
    "proposes",
    "provide",
    "provides",
    "reach",
    "reaches",
    "require",
    "requires",
    "respectively",
    "result",
    "results",
    "similar",
    "similarly",
    "specifically",
    "suggest",
    "suggests",
    "typically",
    "usually",
    "various",
    "via",
    "ways",
    "whose",
    "yield",
    "yields",
    "notably",
    "consequently",
    "additionally",
    "finally",
    "recently",
    "approximately",
    "significantly",
    "substantially",
    "considerably",
    "simultaneously",
    "independently",
    "systematically",
    "surprisingly",
    "consistently",
    "remain",
    "remains",
    "suffice",
    "suffices",
    "estimate",
    "estimates",
    "characterization",
];

/// Academic filler: fine inside a phrase ("language model"), never a tag
/// on its own or at either end of a mined phrase.
pub const GENERIC_WORDS: &[&str] = &[
    "paper",
    "papers",
    "work",
    "works",
    "study",
    "studies",
    "approach",
    "approaches",
    "method",
    "methods",
    "model",
    "models",
    "framework",
    "frameworks",
    "system",
    "systems",
    "task",
    "tasks",
    "problem",
    "problems",
    "performance",
    "results",
    "experiments",
    "experiment",
    "experimental",
    "extensive",
    "analysis",
    "state-of-the-art",
    "art",
    "state",
    "existing",
    "prior",
    "previous",
    "current",
    "recent",
    "simple",
    "strong",
    "better",
    "best",
    "good",
    "large",
    "small",
    "high",
    "low",
    "key",
    "main",
    "important",
    "effective",
    "efficient",
    "general",
    "specific",
    "significant",
    "improve",
    "improves",
    "improved",
    "improvement",
    "improvements",
    "outperform",
    "outperforms",
    "outperforming",
    "benchmark",
    "benchmarks",
    "dataset",
    "datasets",
    "data",
    "code",
    "available",
    "percent",
    "table",
    "quality",
    "cost",
    "costs",
    "accuracy",
    "efficiency",
    "scale",
    "number",
    "amount",
    "fraction",
    "order",
    "case",
    "cases",
    "example",
    "examples",
    "value",
    "values",
    "type",
    "types",
    "level",
    "levels",
    "implementation",
    "reports",
    "sufficient",
    "fewer",
    "parameters",
    "setting",
    "settings",
    "terms",
    "time",
    "times",
    "step",
    "steps",
    "part",
    "parts",
    "way",
    "figure",
    "section",
];

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

static STOP: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| STOP_WORDS.iter().copied().collect());
static GENERIC: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| GENERIC_WORDS.iter().copied().collect());

/// A curated vocabulary: canonical term → aliases, and domain → triggers.
#[derive(Debug, Clone)]
pub struct Terminology {
    terms: Vec<Term>,
    domains: Vec<Domain>,
    /// Token key of every alias → the terms (indexes, ascending) that have
    /// it, so [`Terminology::canonical`] tests a handful of terms instead
    /// of running all of their matchers.
    by_key: HashMap<String, Vec<usize>>,
}

#[derive(Debug, Clone)]
struct Term {
    slug: String,
    /// Lower-case token sequences of the slug and aliases, to recognise a
    /// mined phrase the vocabulary already covers.
    keys: HashSet<String>,
    matcher: Regex,
}

#[derive(Debug, Clone)]
struct Domain {
    slug: String,
    triggers: Vec<Trigger>,
}

#[derive(Debug, Clone)]
enum Trigger {
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

/// Lower-case words joined by single spaces: "Self-Attention" → "self
/// attention". Phrases compare equal under this key whatever their
/// separators.
fn token_key(text: &str) -> String {
    words(text).collect::<Vec<_>>().join(" ")
}

/// Lower-case words of `text`, split at anything not a letter or digit.
/// Words already in lower case are borrowed (most of a paper's words).
fn words(text: &str) -> impl Iterator<Item = Cow<'_, str>> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            if w.chars().any(char::is_uppercase) {
                Cow::Owned(w.to_lowercase())
            } else {
                Cow::Borrowed(w)
            }
        })
}

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

/// Weighted mentions of one term.
#[derive(Debug, Clone, Copy, Default)]
struct TermScore {
    total: f64,
    own: f64,
    body: usize,
}

fn score_terms(input: &TagInput, terms: &Terminology) -> Vec<TermScore> {
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
fn count_terms(text: &str, terms: &[Term]) -> Vec<usize> {
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
fn mine_phrases(input: &TagInput, terms: &Terminology) -> Vec<Candidate> {
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

/// "Sparse Attention" → "sparse-attention".
fn slugify(text: &str) -> String {
    words(text).collect::<Vec<_>>().join("-")
}

/// Crude singular: "models" → "model", "kernels" → "kernel" (not "loss").
fn stem(word: &str) -> String {
    match word.strip_suffix('s') {
        Some(w) if w.chars().count() >= 3 && !w.ends_with('s') => w.to_string(),
        _ => word.to_string(),
    }
}

/// Split off mined phrases that sit inside a longer candidate with at
/// least half their score and half their body mentions (they are mostly
/// used as part of it), or that are a vocabulary term in other words
/// ("diffusion models"). Returns (kept, nested); nested ones are only a
/// last resort.
fn split_nested(candidates: Vec<Candidate>) -> (Vec<Candidate>, Vec<Candidate>) {
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
fn choose(candidates: Vec<Candidate>, nested: Vec<Candidate>) -> Vec<Candidate> {
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

/// The guard every tag passes: a slug of lower-case words with a letter,
/// not a function word, generic filler or number, with no URL part and no
/// function word at either end.
pub fn tag_allowed(slug: &str) -> bool {
    let parts: Vec<&str> = slug.split('-').collect();
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    slug.chars().count() >= 3
        && slug.chars().any(|c| c.is_alphabetic())
        && parts
            .iter()
            .all(|p| !p.is_empty() && !URL_PARTS.contains(p))
        && !STOP.contains(first)
        && !STOP.contains(last)
        && !(parts.len() == 1 && GENERIC.contains(first))
        && !parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit()))
}

/// Coarse areas whose triggers score at least [`DOMAIN_MIN_SCORE`] and
/// [`DOMAIN_MIN_SHARE`] of the best area, best first, at most
/// [`MAX_DOMAINS`]. Trigger phrases are scored like terms.
fn domain_tags(terms: &Terminology, term_scores: &[TermScore], input: &TagInput) -> Vec<String> {
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
    use super::*;

    fn terms(yaml: &str) -> Terminology {
        Terminology::from_yaml(yaml).unwrap()
    }

    fn tag(title: &str, abs: &str, body: &str, t: &Terminology) -> Tags {
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
    fn bad_files_are_rejected() {
        assert!(Terminology::from_yaml("terms: [a]").is_err());
        assert!(Terminology::from_yaml("terms:\n  Bad Slug: []\n").is_err());
        assert!(Terminology::from_yaml("terms:\n  ok: [\"--\"]\n").is_err());
        assert!(Terminology::from_yaml("terms: {}\nextra: 1\n").is_err());
        assert!(
            Terminology::from_yaml("terms:\n  ok:\ndomains:\n  d: [ok, some phrase]\n").is_ok()
        );
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

    #[test]
    fn at_most_fifteen_tags() {
        let yaml: String = (0..30).fold("terms:\n".to_string(), |s, i| {
            s + &format!("  term{i}x: []\n")
        });
        let t = terms(&yaml);
        let body: String = (0..30).map(|i| format!("term{i}x term{i}x ")).collect();
        assert_eq!(tag("", "", &body, &t).tags.len(), MAX_TAGS);
    }

    #[test]
    fn the_guard_refuses_function_words_urls_and_numbers() {
        for bad in [
            "these",
            "https",
            "www-example-com",
            "2024",
            "12-3",
            "the-model",
            "model",
            "of-x",
            "ab",
        ] {
            assert!(!tag_allowed(bad), "{bad}");
        }
        for good in [
            "mixture-of-experts",
            "3d-reconstruction",
            "dark-matter",
            "gpt-4",
        ] {
            assert!(tag_allowed(good), "{good}");
        }
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

    #[test]
    fn empty_input_gives_no_tags() {
        let tags = tag("", "", "", &Terminology::builtin());
        assert!(tags.tags.is_empty() && tags.domain_tags.is_empty());
    }
}
