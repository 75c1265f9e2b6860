//! The text pipeline end to end on a synthetic four-page, two-column-like
//! paper as a PDF extractor would hand it over: running header and footer,
//! page numbers in three styles, an arXiv stamp, ligatures, curly quotes,
//! hard and soft hyphenated line breaks, a paragraph and a reference
//! continuing across page breaks, numbered references and an appendix.

use paper_runner::pipeline::clean::{self, CleanOptions, Cleaned, CUT_MARK};
use paper_runner::pipeline::judge::{self, Verdict};
use paper_runner::pipeline::tags::{self, TagInput, Terminology, STOP_WORDS, URL_PARTS};

const PAGE_1: &str = "arXiv:2405.01234v2 [cs.CL] 14 May 2024
Preprint. Under review.

Routing Sparse Experts for Efficient
Long-Context Language Models

Mara Quint1, Tomas Feld2, Ana Ruiz1
1Northfield University, 2Lakeside AI Lab
{mquint,aruiz}@northfield.edu

Abstract
We present a sparse mixture-of-experts (MoE)
language model whose learned router lets large
language models read contexts of 128k tokens at
a fraction of the usual cost. Each token is sent
to two of 64 experts, and an auxiliary balancing
loss keeps the expert load even. On long-document
question answering, our model matches a dense
transformer while using 3.1\u{00D7} fewer FLOPs per
token, and it keeps the quality of the dense
model on short-context benchmarks.

1 Introduction
Large language models (LLMs) are now asked to
read whole books, code repositories and long
conversations. The cost of self-attention over
such contexts grows quadratically, and the
feed-forward layers dominate the remaining
compute. A mixture-of-experts layer replaces
one feed-forward block with many experts and
activates only a few of them per token, which
makes the model far more e\u{FB03}-
cient per token. We \u{FB01}nd that the router is
the weak point of such models. Our router is
trained with a

1";

const PAGE_2: &str = "Preprint. Under review.

balancing loss that spreads tokens evenly, and
it reaches state-of-the-
art accuracy on three long-document benchmarks.
Our contributions are a \u{201C}top-2\u{201D} router with
capacity-aware dispatch and a lightweight recur\u{00AD}
rent state that remembers earlier routing.

2 Related Work
Sparse experts were introduced for machine
translation [3] and scaled to trillion-parameter
models with simple top-1 routing [4]. Long-context
transformers reduce the cost of self-attention
with sparse or linear attention patterns [5, 6].
Retrieval-augmented generation [7] avoids long
inputs altogether but needs an external index.

3 Method
Our model is a decoder-only transformer in which
every second feed-forward block is a mixture-of-
experts layer with 64 experts.
3.1 Token Router
The router scores each token against a learned
embedding of every expert and sends the token to
the two best experts. We add a small amount of
noise during training so that the router keeps
exploring experts it has not yet used.
3.2 Load Balancing
The balancing loss penalises the squared
deviation of each expert\u{2019}s load from the mean
load. It is weighted by 0.01, which we \u{FB01}nd
enough to keep every expert busy without
hurting the language modelling loss.

Quint, Feld and Ruiz
Page 2";

const PAGE_3: &str = "Preprint. Under review.

4 Experiments
We train models with 1.3B and 7B parameters on
400B tokens of web text and code, and extend
the context to 128k tokens in a final stage.
4.1 Setup
We evaluate on long-document question answering
(NarrativeQA, QuALITY) and on long-context
summarization (GovReport), comparing against a
dense transformer of equal quality.

5 Results
Table 2 shows that the sparse model matches the
dense baseline on question answering while using
3.1\u{00D7} fewer FLOPs per token. The router keeps the
expert load within 4% of the mean, and without the
balancing loss it collapses onto six experts.
Long-context summarization improves by 1.2 ROUGE
points over the dense transformer.

6 Limitations
All experiments use English text, and we have not
studied how the router behaves under fine-tuning.

7 Conclusion
Routing sparse experts with a balancing loss makes
long-context language models cheaper without loss
of quality. We will release code and checkpoints.

References
[1] N. Shazeer, A. Mirhoseini, K. Maziarz, et al.
Outrageously large neural networks: the sparsely-
gated mixture-of-experts layer. In ICLR, 2017.
[2] W. Fedus, B. Zoph, and N. Shazeer. Switch
transformers: scaling to trillion parameter

Quint, Feld and Ruiz
- 3 -";

const PAGE_4: &str = "Preprint. Under review.

models. JMLR, 23(120):1\u{2013}39, 2022.
[3] D. Lepikhin, H. Lee, Y. Xu, et al. GShard:
scaling giant models with conditional
computation. In ICLR, 2021.
[4] I. Beltagy, M. E. Peters, and A. Cohan.
Longformer: the long-document transformer.
arXiv:2004.05150, 2020.
[5] T. Dao. FlashAttention-2: faster attention
with better parallelism. In ICLR, 2024.
[6] P. Lewis, E. Perez, A. Piktus, et al.
Retrieval-augmented generation for
knowledge-intensive NLP tasks. In NeurIPS, 2020.
[7]
A. Vaswani, N. Shazeer, N. Parmar, et al.
Attention is all you need. In NeurIPS, 2017.
[8] A. Gu and T. Dao. Mamba: linear-time sequence
modeling with selective state spaces. 2023.
Appendix A: Proof of Lemma 1
The balancing loss is minimised exactly when
every expert receives the same share of tokens.
B Additional Results
Routing entropy stays above 5.9 bits throughout
training for both model sizes.

Quint, Feld and Ruiz
4 of 4";

fn pages() -> Vec<String> {
    [PAGE_1, PAGE_2, PAGE_3, PAGE_4]
        .iter()
        .map(|p| p.to_string())
        .collect()
}

fn cleaned() -> Cleaned {
    clean::clean_pages(&pages(), &CleanOptions::default())
}

#[test]
fn page_furniture_is_removed() {
    let c = cleaned();
    assert_eq!(c.pages, 4);
    for furniture in [
        "Preprint",
        "Under review",
        "Quint, Feld and Ruiz",
        "Page 2",
        "- 3 -",
        "4 of 4",
        "arXiv:2405",
    ] {
        assert!(!c.paper_text.contains(furniture), "{furniture} left in");
        assert!(!c.appendix_text.contains(furniture), "{furniture} left in");
    }
    assert!(c.paper_text.lines().all(|l| l.trim() != "1"));
}

#[test]
fn characters_are_normalised() {
    let c = cleaned();
    let all = format!("{}{}", c.paper_text, c.appendix_text);
    assert!(!all
        .chars()
        .any(|ch| ('\u{FB00}'..='\u{FB06}').contains(&ch)));
    assert!(!all.contains(['\u{00AD}', '\u{201C}', '\u{201D}', '\u{2019}']));
    assert!(c.paper_text.contains("We find that the router"));
    assert!(c.paper_text.contains("\"top-2\" router"));
    assert!(c.paper_text.contains("each expert's load"));
}

#[test]
fn line_breaks_are_joined_and_paragraphs_reflowed() {
    let c = cleaned();
    let text = &c.paper_text;
    // Hyphenated break (inside a ligature) joined; compounds kept.
    assert!(text.contains("far more efficient per token"));
    assert!(!text.contains("effi-"));
    assert!(text.contains("reaches state-of-the-art accuracy"));
    assert!(text.contains("a mixture-of-experts layer with 64 experts"));
    assert!(text.contains("lightweight recurrent state"));
    // A paragraph continues across the page break.
    assert!(text.contains("Our router is trained with a balancing loss that spreads tokens"));
    // Headings stand alone.
    assert!(text.contains("\n\n1 Introduction\n\n"));
    assert!(text.contains("\n\n3.1 Token Router\n\n"));
}

#[test]
fn title_sections_references_and_appendix_are_found() {
    let c = cleaned();
    assert_eq!(
        c.title_guess.as_deref(),
        Some("Routing Sparse Experts for Efficient Long-Context Language Models")
    );
    let keys: Vec<&str> = c.sections.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "abstract",
            "introduction",
            "related_work",
            "method",
            "experiments",
            "results",
            "other:limitations",
            "conclusion"
        ]
    );
    assert!(c.sections["abstract"].starts_with("We present a sparse mixture-of-experts (MoE)"));
    assert!(c.sections["method"].contains("3.2 Load Balancing"));
    assert!(c.sections["conclusion"].ends_with("We will release code and checkpoints."));

    assert_eq!(c.reference_count, 8);
    assert!(!c.paper_text.contains("Outrageously"));
    assert!(!c.paper_text.contains("References"));

    assert!(c
        .appendix_text
        .starts_with("Appendix A: Proof of Lemma 1\n\n"));
    assert!(c.appendix_text.contains("\n\nB Additional Results\n\n"));
    assert!(!c.appendix_text.contains("Vaswani"));
    assert!(!c.paper_text.contains("Routing entropy"));
}

#[test]
fn trimming_keeps_priority_sections_within_budget() {
    let c = cleaned();
    let everything = clean::trim_for_prompt(&c, 100_000);
    assert!(!everything.contains(CUT_MARK));
    assert!(everything.contains("## Related work"));
    assert!(everything.contains("trillion-parameter"));

    let budget = 400;
    let out = clean::trim_for_prompt(&c, budget);
    assert!(
        out.chars().count() <= budget * 4,
        "{} chars",
        out.chars().count()
    );
    assert!(out.starts_with("Title: Routing Sparse Experts"));
    for heading in [
        "Abstract",
        "Introduction",
        "Method",
        "Results",
        "Conclusion",
    ] {
        assert!(
            out.contains(&format!("## {heading}\n\n")),
            "{heading} missing:\n{out}"
        );
    }
    assert!(out.contains(CUT_MARK));
    for first_words in [
        "We present a sparse mixture-of-experts (MoE)",
        "Large language models (LLMs) are now asked",
        "Our model is a decoder-only transformer",
        "Table 2 shows that the sparse model",
        "We will release code and checkpoints.",
    ] {
        assert!(out.contains(first_words), "{first_words} missing:\n{out}");
    }
    // Lower-priority sections give way first; cuts end a sentence and
    // never leave a dangling subsection heading.
    for dropped in ["400B tokens", "English text", "Setup"] {
        assert!(!out.contains(dropped), "{dropped} kept:\n{out}");
    }
    assert!(!out.contains("3.1 Token Router\n\n[…]"), "{out}");
    for chunk in out
        .split("\n\n")
        .filter(|c| !c.starts_with("## ") && *c != CUT_MARK)
    {
        assert!(
            chunk.ends_with('.') || chunk.starts_with("Title:"),
            "{chunk:?}"
        );
    }
}

#[test]
fn tags_are_sensible_and_clean() {
    let c = cleaned();
    let neighbors = vec![
        "Switch Transformers: scaling to trillion parameter models with simple and efficient sparsity".to_string(),
        "Mixtral of experts https://arxiv.org/abs/2401.04088".to_string(),
    ];
    let input = TagInput {
        title: c.title_guess.as_deref().unwrap_or(""),
        abstract_text: c.sections.get("abstract").map_or("", String::as_str),
        body: &c.paper_text,
        neighbor_texts: &neighbors,
    };
    let t = tags::terminology_tags(&input, &Terminology::builtin());
    assert!((5..=15).contains(&t.tags.len()), "{:?}", t.tags);
    for want in ["mixture-of-experts", "large-language-model", "long-context"] {
        assert!(
            t.tags.contains(&want.to_string()),
            "{want} missing from {:?}",
            t.tags
        );
    }
    assert_eq!(
        t.tags.first().map(String::as_str),
        Some("mixture-of-experts")
    );
    for tag in &t.tags {
        let parts: Vec<&str> = tag.split('-').collect();
        assert!(!STOP_WORDS.contains(&tag.as_str()), "{tag}");
        assert!(!parts.iter().any(|p| URL_PARTS.contains(p)), "{tag}");
        assert!(
            !parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())),
            "{tag}"
        );
        assert!(tags::tag_allowed(tag), "{tag}");
    }
    assert_eq!(t.scores.len(), t.tags.len());
    assert!(t
        .scores
        .windows(2)
        .all(|w| w[0].1 >= w[1].1 || w[1].1 > 0.0));
    assert!(
        t.domain_tags.contains(&"nlp".to_string()),
        "{:?}",
        t.domain_tags
    );
    assert!(!t.domain_tags.contains(&"astrophysics".to_string()));
}

#[test]
fn judge_answers_are_normalised() {
    let answer = "## Verdict\n\n**REPAIR**\n\n- Missing: Key Results\n- Limitations: too thin\n\nOtherwise the report would PASS.";
    assert_eq!(judge::normalize_judge(answer), Verdict::Repair);
    assert_eq!(
        judge::repair_targets(answer),
        ["Key Results", "Limitations"]
    );
    assert_eq!(judge::normalize_judge("Verdict: pass"), Verdict::Pass);
    assert_eq!(
        judge::normalize_judge("FAIL: the paper text was empty"),
        Verdict::Fail
    );
    assert_eq!(judge::normalize_judge("I am not sure."), Verdict::Repair);
    assert_eq!(Verdict::Pass.to_string(), "PASS");
}
