//! Files compiled into the binary so `runner demo` works from the binary
//! alone: the pipeline's machines (with their agents, prompts, profiles and
//! terminology) and the sample papers with their manifest.

/// `machines/` (path relative to it, content).
pub const MACHINES: &[(&str, &str)] = &[
    (
        "agents/assemble.yml",
        include_str!("../../machines/agents/assemble.yml"),
    ),
    (
        "agents/judge.yml",
        include_str!("../../machines/agents/judge.yml"),
    ),
    (
        "agents/key_outcome.yml",
        include_str!("../../machines/agents/key_outcome.yml"),
    ),
    (
        "agents/limitations.yml",
        include_str!("../../machines/agents/limitations.yml"),
    ),
    (
        "agents/mechanism.yml",
        include_str!("../../machines/agents/mechanism.yml"),
    ),
    (
        "agents/open_questions.yml",
        include_str!("../../machines/agents/open_questions.yml"),
    ),
    (
        "agents/repair.yml",
        include_str!("../../machines/agents/repair.yml"),
    ),
    (
        "agents/reproduction.yml",
        include_str!("../../machines/agents/reproduction.yml"),
    ),
    (
        "children/mechanism.yml",
        include_str!("../../machines/children/mechanism.yml"),
    ),
    (
        "children/open_questions.yml",
        include_str!("../../machines/children/open_questions.yml"),
    ),
    (
        "children/reproduction.yml",
        include_str!("../../machines/children/reproduction.yml"),
    ),
    (
        "expensive.yml",
        include_str!("../../machines/expensive.yml"),
    ),
    ("prep.yml", include_str!("../../machines/prep.yml")),
    ("profiles.yml", include_str!("../../machines/profiles.yml")),
    (
        "prompts/assemble.yml",
        include_str!("../../machines/prompts/assemble.yml"),
    ),
    (
        "prompts/judge.yml",
        include_str!("../../machines/prompts/judge.yml"),
    ),
    (
        "prompts/key_outcome.yml",
        include_str!("../../machines/prompts/key_outcome.yml"),
    ),
    (
        "prompts/limitations.yml",
        include_str!("../../machines/prompts/limitations.yml"),
    ),
    (
        "prompts/mechanism.yml",
        include_str!("../../machines/prompts/mechanism.yml"),
    ),
    (
        "prompts/open_questions.yml",
        include_str!("../../machines/prompts/open_questions.yml"),
    ),
    (
        "prompts/repair.yml",
        include_str!("../../machines/prompts/repair.yml"),
    ),
    (
        "prompts/reproduction.yml",
        include_str!("../../machines/prompts/reproduction.yml"),
    ),
    (
        "terminology.yml",
        include_str!("../../machines/terminology.yml"),
    ),
    ("wrap.yml", include_str!("../../machines/wrap.yml")),
];

/// `examples/papers/*.pdf` (file name, bytes).
pub const EXAMPLE_PDFS: &[(&str, &[u8])] = &[
    (
        "curvature-gated-message-passing.pdf",
        include_bytes!("../../examples/papers/curvature-gated-message-passing.pdf"),
    ),
    (
        "pulsar-timing-ultralight-dark-matter.pdf",
        include_bytes!("../../examples/papers/pulsar-timing-ultralight-dark-matter.pdf"),
    ),
    (
        "return-anchored-offline-rl.pdf",
        include_bytes!("../../examples/papers/return-anchored-offline-rl.pdf"),
    ),
    (
        "routed-sparse-attention.pdf",
        include_bytes!("../../examples/papers/routed-sparse-attention.pdf"),
    ),
];

/// `examples/papers.yml`: arxiv_id, title and pdf of each sample paper.
pub const EXAMPLE_MANIFEST: &str = include_str!("../../examples/papers.yml");

/// Write the embedded machines under `dir` (overwriting what is there).
pub fn write_machines(dir: &std::path::Path) -> std::io::Result<()> {
    for (rel, text) in MACHINES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `machines/` is embedded (a new prompt must be added here).
    #[test]
    fn embedded_machines_match_the_machines_folder() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("machines");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    on_disk.push(p.strip_prefix(&root).unwrap().to_string_lossy().to_string());
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = MACHINES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
        for (rel, text) in MACHINES {
            assert_eq!(
                std::fs::read_to_string(root.join(rel)).unwrap(),
                *text,
                "{rel}"
            );
        }
    }

    #[test]
    fn every_manifest_pdf_is_embedded() {
        let m: serde_yaml::Value = serde_yaml::from_str(EXAMPLE_MANIFEST).unwrap();
        let papers = m["papers"].as_sequence().unwrap();
        assert!(papers.len() >= 3);
        for p in papers {
            let file = p["pdf"].as_str().unwrap().trim_start_matches("papers/");
            assert!(
                EXAMPLE_PDFS
                    .iter()
                    .any(|(n, b)| *n == file && b.starts_with(b"%PDF")),
                "{file}"
            );
        }
    }
}
