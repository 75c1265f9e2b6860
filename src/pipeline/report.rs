//! Reports: the required section list, YAML frontmatter, and the atomic
//! save that refuses an incomplete report.
//!
//! A report is written only when every required section is present and has
//! content: the Python original marked papers done with missing or empty
//! sections (and sometimes without a file at all).

use super::acquire::{safe_id, write_atomic};
use crate::engine::{ErrorKind, ExecError};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Sections every report must have, in order.
pub const REQUIRED_SECTIONS: [&str; 11] = [
    "Quick Facts",
    "Executive Summary",
    "Method Summary",
    "Key Results",
    "Why This Works (Mechanism)",
    "Foundational Learning",
    "Architecture Onboarding",
    "Open Questions",
    "Limitations",
    "Confidence",
    "Next Checks",
];

/// Phrases that mean a model gave up; a section made of them is empty.
pub const PLACEHOLDER_PHRASES: [&str; 8] = [
    "insufficient context",
    "unable to determine",
    "not enough information",
    "cannot be determined",
    "no information provided",
    "n/a",
    "to be determined",
    "tbd",
];

/// Frontmatter fields (serialised with serde_yaml, so values are escaped).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Frontmatter {
    pub title: String,
    pub arxiv_id: String,
    pub source_url: String,
    pub models: Vec<String>,
    pub tags: Vec<String>,
    pub domain_tags: Vec<String>,
    pub core_contribution: String,
    pub generated_at: String,
    pub runner_version: String,
}

/// `---\n<yaml>---\n`.
pub fn render_frontmatter(fm: &Frontmatter) -> Result<String, ExecError> {
    let yaml = serde_yaml::to_string(fm).map_err(|e| {
        ExecError::new(
            ErrorKind::ActionError,
            format!("cannot write frontmatter: {e}"),
        )
    })?;
    Ok(format!("---\n{yaml}---\n"))
}

/// Split `---` frontmatter from a report; the value is None when absent or
/// unreadable.
pub fn split_frontmatter(text: &str) -> (Option<serde_yaml::Value>, &str) {
    let Some(rest) = text.strip_prefix("---\n") else {
        return (None, text);
    };
    match rest.find("\n---\n") {
        Some(end) => {
            let yaml = &rest[..end + 1];
            let body = &rest[end + 5..];
            (serde_yaml::from_str(yaml).ok(), body)
        }
        None => (None, text),
    }
}

/// Normalise a heading for comparison: lower case, no numbering or
/// punctuation, parenthesised suffix dropped ("Why This Works (Mechanism)"
/// matches "why this works").
fn heading_key(h: &str) -> String {
    let h = h.split('(').next().unwrap_or(h);
    let words: Vec<String> = h
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !w.chars().all(|c| c.is_ascii_digit()))
        .map(str::to_lowercase)
        .collect();
    words.join(" ")
}

/// `## Heading` → section text, in order (`#`/`###` levels are content).
pub fn parse_sections(body: &str) -> IndexMap<String, String> {
    let mut out: IndexMap<String, String> = IndexMap::new();
    let mut current: Option<String> = None;
    for line in body.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            let name = h.trim().to_string();
            out.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        if let Some(name) = &current {
            if let Some(text) = out.get_mut(name) {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    out
}

/// True when text has no real content (blank, or only placeholder phrases).
pub fn is_empty_content(text: &str) -> bool {
    let t = text
        .trim()
        .trim_matches(|c: char| c == '-' || c == '*' || c == '.' || c.is_whitespace());
    if t.is_empty() {
        return true;
    }
    let lower = t.to_lowercase();
    let lower = lower.trim_end_matches('.');
    PLACEHOLDER_PHRASES.contains(&lower)
}

/// Required sections that are missing or empty.
pub fn missing_sections(body: &str) -> Vec<String> {
    missing_of(body, &REQUIRED_SECTIONS)
}

/// Which of `required` are missing from `body` or have no real content.
pub fn missing_of<S: AsRef<str>>(body: &str, required: &[S]) -> Vec<String> {
    let sections = parse_sections(body);
    let by_key: IndexMap<String, &String> =
        sections.iter().map(|(k, v)| (heading_key(k), v)).collect();
    required
        .iter()
        .map(AsRef::as_ref)
        .filter(|req| match by_key.get(&heading_key(req)) {
            None => true,
            Some(text) => is_empty_content(text),
        })
        .map(str::to_string)
        .collect()
}

/// A URL- and file-safe slug of at most `max` characters.
pub fn slug(title: &str, max: usize) -> String {
    let mut s = String::new();
    for c in title.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c);
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    let mut s: String = s.trim_matches('-').chars().take(max).collect();
    while s.ends_with('-') {
        s.pop();
    }
    if s.is_empty() {
        "paper".into()
    } else {
        s
    }
}

/// Write `<dir>/<safe_id>-<slug>.md` atomically after checking every
/// required section, and remove any earlier report of the same paper (a
/// rerun replaces the file, never duplicates it).
pub fn save_report(
    dir: &Path,
    arxiv_id: &str,
    title: &str,
    content: &str,
) -> Result<PathBuf, ExecError> {
    let (_, body) = split_frontmatter(content);
    let missing = missing_sections(body);
    if !missing.is_empty() {
        return Err(ExecError::new(
            ErrorKind::ActionError,
            format!(
                "report for {arxiv_id} is incomplete; missing or empty sections: {}",
                missing.join(", ")
            ),
        ));
    }
    let safe = safe_id(arxiv_id)?;
    let path = dir.join(format!("{safe}-{}.md", slug(title, 80)));
    write_atomic(&path, content.as_bytes())?;
    remove_older_reports(dir, &safe, &path);
    Ok(path)
}

fn remove_older_reports(dir: &Path, safe: &str, keep: &Path) {
    let prefix = format!("{safe}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&prefix) && name.ends_with(".md") && p != keep {
            if let Err(err) = std::fs::remove_file(&p) {
                tracing::warn!(file = %p.display(), error = %err, "could not remove an older report");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn full_body() -> String {
        REQUIRED_SECTIONS
            .iter()
            .map(|s| format!("## {s}\n\nContent for {s}, grounded in \"the paper\".\n"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn complete_reports_pass_and_gaps_are_named() {
        assert!(missing_sections(&full_body()).is_empty());
        let gap = full_body().replace(
            "Content for Key Results, grounded in \"the paper\".",
            "Insufficient context.",
        );
        assert_eq!(missing_sections(&gap), vec!["Key Results"]);
        let without = full_body().replace("## Next Checks", "## Something Else");
        assert_eq!(missing_sections(&without), vec!["Next Checks"]);
        let numbered = full_body().replace("## Why This Works (Mechanism)", "## 5. Why this works");
        assert!(missing_sections(&numbered).is_empty());
    }

    #[test]
    fn frontmatter_round_trips_and_escapes() {
        let fm = Frontmatter {
            title: "A: \"quoted\" title\n--- with dashes".into(),
            arxiv_id: "2401.01234".into(),
            source_url: "https://arxiv.org/abs/2401.01234".into(),
            models: vec!["m1".into()],
            tags: vec!["transformer".into()],
            domain_tags: vec!["nlp".into()],
            core_contribution: "x: y # z".into(),
            generated_at: "2026-11-22T00:00:00Z".into(),
            runner_version: "0.1.0".into(),
        };
        let text = format!("{}\n{}", render_frontmatter(&fm).unwrap(), full_body());
        let (v, body) = split_frontmatter(&text);
        let back: Frontmatter = serde_yaml::from_value(v.unwrap()).unwrap();
        assert_eq!(back, fm);
        assert!(body.contains("## Quick Facts"));
    }

    #[test]
    fn slugs() {
        assert_eq!(
            slug("Attention Is All You Need!", 80),
            "attention-is-all-you-need"
        );
        assert_eq!(slug("", 80), "paper");
        assert!(slug(&"word ".repeat(50), 80).len() <= 80);
        assert!(!slug(&"ab ".repeat(50), 80).ends_with('-'));
    }

    #[test]
    fn saving_refuses_incomplete_reports_and_replaces_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let err = save_report(dir.path(), "2401.01234", "T", "## Quick Facts\n\nx\n").unwrap_err();
        assert!(err.message.contains("Executive Summary"), "{}", err.message);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let a = save_report(dir.path(), "2401.01234", "Old Title", &full_body()).unwrap();
        let b = save_report(dir.path(), "2401.01234", "New Title", &full_body()).unwrap();
        assert_ne!(a, b);
        assert!(!a.exists());
        assert!(b.exists());
        save_report(dir.path(), "hep-th/9901001", "Other", &full_body()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    /// Issue 12, B.7: a daemon out of file descriptors failed every paper
    /// at `save` for good. The save must report `resource_exhausted` (the
    /// runner retries it), write nothing half, and keep the older report.
    ///
    /// Lowering the descriptor limit would starve the other tests, so this
    /// test runs itself again in a child process (marked by an environment
    /// variable) that fills its descriptor table and then saves.
    #[test]
    fn a_save_out_of_descriptors_is_resource_exhausted() {
        const CHILD: &str = "PAPER_RUNNER_TEST_FD_EXHAUSTION_DIR";
        if let Ok(dir) = std::env::var(CHILD) {
            let dir = std::path::PathBuf::from(dir);
            let lim = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            // SAFETY: setrlimit reads the struct we pass.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
            let mut held = Vec::new();
            loop {
                match std::fs::File::open("/dev/null") {
                    Ok(f) => held.push(f),
                    Err(e) => {
                        assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
                        break;
                    }
                }
            }
            let err = save_report(&dir, "2401.01234", "New Title", &full_body()).unwrap_err();
            drop(held);
            assert_eq!(err.kind, ErrorKind::ResourceExhausted, "{err}");
            println!("CHILD-OK {err}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let old = save_report(dir.path(), "2401.01234", "Old Title", &full_body()).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pipeline::report::tests::a_save_out_of_descriptors_is_resource_exhausted",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("CHILD-OK resource_exhausted"),
            "child: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The earlier report is untouched and nothing else was left behind.
        assert!(old.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
