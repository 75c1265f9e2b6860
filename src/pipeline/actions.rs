//! The paper actions, registered by name for `machines/*.yml`.
//!
//! Each action reads what it needs from the context, does one job with a
//! pipeline module, and writes its results back; CPU-heavy work (PDF parsing,
//! cleaning, FTS queries) runs on the blocking pool.

use super::acquire::{AcquireConfig, Acquirer};
use super::pdf_child::{PdfConfig, PdfWorker};
use super::report::{self, Frontmatter};
use super::{clean, corpus, judge, tags};
use crate::engine::{Action, ActionArgs, ActionRegistry, ErrorKind, ExecError};
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the pipeline reads and writes, and its budgets.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub acquire: AcquireConfig,
    /// Reports go to `<reports_dir>/<safe_id>-<slug>.md`.
    pub reports_dir: PathBuf,
    /// Optional arxiv-crawler corpus database (read-only).
    pub corpus_db: Option<PathBuf>,
    /// Approximate tokens of paper text given to each prompt.
    pub prompt_token_budget: usize,
    /// Terminology file (canonical term → aliases); None = built-in.
    pub terminology: Option<PathBuf>,
    /// Limits on each PDF extraction (run in a worker process).
    pub pdf: PdfConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            acquire: AcquireConfig::default(),
            reports_dir: PathBuf::from("reports"),
            corpus_db: None,
            prompt_token_budget: 24_000,
            terminology: None,
            pdf: PdfConfig::default(),
        }
    }
}

/// Largest terminology file read (the built-in list is ~20 KiB).
const TERMINOLOGY_MAX_BYTES: u64 = 4 << 20;

/// Register every paper action.
pub fn register(registry: &mut ActionRegistry, cfg: PipelineConfig) -> Result<(), ExecError> {
    let terms = match &cfg.terminology {
        None => tags::Terminology::builtin(),
        Some(p) => {
            let text = crate::fsx::read_text_capped(p, TERMINOLOGY_MAX_BYTES).map_err(|e| {
                ExecError::new(
                    ErrorKind::ActionError,
                    format!("cannot read terminology file {}: {e}", p.display()),
                )
            })?;
            tags::Terminology::from_yaml(&text).map_err(|e| {
                ExecError::new(ErrorKind::ActionError, format!("{}: {e}", p.display()))
            })?
        }
    };
    let cfg = Arc::new(cfg);
    let acquirer = Arc::new(Acquirer::new(cfg.acquire.clone())?);
    registry.register("acquire_pdf", Arc::new(AcquirePdf { acquirer }));
    registry.register(
        "extract_text",
        Arc::new(ExtractText {
            worker: PdfWorker::new(cfg.pdf.clone()),
        }),
    );
    registry.register("clean_text", Arc::new(CleanText { cfg: cfg.clone() }));
    registry.register(
        "corpus_signals",
        Arc::new(CorpusSignals { cfg: cfg.clone() }),
    );
    registry.register(
        "terminology_tags",
        Arc::new(TerminologyTags {
            terms: Arc::new(terms),
        }),
    );
    registry.register("normalize_judge", Arc::new(NormalizeJudge));
    registry.register("check_sections", Arc::new(CheckSections));
    registry.register("frontmatter", Arc::new(MakeFrontmatter));
    registry.register("save_report", Arc::new(SaveReport { cfg }));
    Ok(())
}

/// The names `register` adds (for validation without building the actions).
pub const ACTION_NAMES: [&str; 9] = [
    "acquire_pdf",
    "extract_text",
    "clean_text",
    "corpus_signals",
    "terminology_tags",
    "normalize_judge",
    "check_sections",
    "frontmatter",
    "save_report",
];

fn text(ctx: &Map<String, Value>, key: &str) -> String {
    match ctx.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn need(ctx: &Map<String, Value>, key: &str, action: &str) -> Result<String, ExecError> {
    let v = text(ctx, key);
    if v.trim().is_empty() {
        return Err(ExecError::new(
            ErrorKind::ActionError,
            format!("{action} needs context.{key}"),
        ));
    }
    Ok(v)
}

fn input_text(args: &ActionArgs<'_>, key: &str) -> String {
    text(&args.input, key)
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        // A panic is a bug of ours, not the paper's; a cancelled task means
        // the runtime is going down. Both are retried at phase level.
        let message = format!("{what} task failed: {e}");
        if e.is_panic() {
            ExecError::new(ErrorKind::Internal, message).with_source(e)
        } else {
            ExecError::stopped(crate::engine::Stop::Shutdown, message).with_source(e)
        }
    })
}

struct AcquirePdf {
    acquirer: Arc<Acquirer>,
}

#[async_trait]
impl Action for AcquirePdf {
    async fn run(
        &self,
        ctx: &mut Map<String, Value>,
        _args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        let id = need(ctx, "arxiv_id", "acquire_pdf")?;
        let local = text(ctx, "pdf_path");
        let local = (!local.trim().is_empty()).then(|| PathBuf::from(local));
        let path = self.acquirer.acquire(&id, local.as_deref()).await?;
        ctx.insert("pdf_path".into(), json!(path.display().to_string()));
        Ok(None)
    }
}

/// Extracts in a worker process (see `pdf_child`): a hostile PDF can cost
/// this paper its phase, never the daemon its memory, a slot or a lease.
struct ExtractText {
    worker: PdfWorker,
}

#[async_trait]
impl Action for ExtractText {
    async fn run(
        &self,
        ctx: &mut Map<String, Value>,
        _args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        let path = PathBuf::from(need(ctx, "pdf_path", "extract_text")?);
        let shown = path.display().to_string();
        let pages = self
            .worker
            .extract(&path)
            .await
            .map_err(|e| ExecError::new(e.kind(), format!("{shown}: {e}")))?;
        ctx.insert("pages".into(), json!(pages.pages.len()));
        ctx.insert("raw_pages".into(), json!(pages.pages));
        Ok(None)
    }
}

struct CleanText {
    cfg: Arc<PipelineConfig>,
}

#[async_trait]
impl Action for CleanText {
    async fn run(
        &self,
        ctx: &mut Map<String, Value>,
        _args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        // The raw pages are consumed here: only the clean text is carried on.
        let raw = ctx.remove("raw_pages").unwrap_or(Value::Null);
        let pages: Vec<String> = serde_json::from_value(raw).map_err(|_| {
            ExecError::new(
                ErrorKind::ActionError,
                "clean_text needs context.raw_pages (run extract_text first)",
            )
        })?;
        let budget = self.cfg.prompt_token_budget;
        let (cleaned, prompt) = blocking("clean_text", move || {
            let c = clean::clean_pages(
                &pages,
                &clean::CleanOptions {
                    token_budget: budget,
                },
            );
            let p = clean::trim_for_prompt(&c, budget);
            (c, p)
        })
        .await?;
        if cleaned.paper_text.trim().is_empty() {
            return Err(ExecError::new(
                ErrorKind::PdfUnreadable,
                "the PDF has no extractable text (scanned images?)",
            ));
        }
        let sections: Map<String, Value> = cleaned
            .sections
            .iter()
            .map(|(k, v)| (k.clone(), json!(v.chars().count())))
            .collect();
        if text(ctx, "title").trim().is_empty() {
            if let Some(t) = &cleaned.title_guess {
                ctx.insert("title".into(), json!(t));
            }
        }
        if text(ctx, "abstract").trim().is_empty() {
            if let Some(a) = cleaned.sections.get("abstract") {
                ctx.insert("abstract".into(), json!(a));
            }
        }
        ctx.insert("paper_text".into(), json!(cleaned.paper_text));
        ctx.insert("prompt_text".into(), json!(prompt));
        ctx.insert("sections".into(), Value::Object(sections));
        ctx.insert("reference_count".into(), json!(cleaned.reference_count));
        ctx.insert("appendix_text".into(), json!(cleaned.appendix_text));
        Ok(None)
    }
}

struct CorpusSignals {
    cfg: Arc<PipelineConfig>,
}

#[async_trait]
impl Action for CorpusSignals {
    async fn run(
        &self,
        ctx: &mut Map<String, Value>,
        _args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        let id = text(ctx, "arxiv_id");
        let title = text(ctx, "title");
        let abs = text(ctx, "abstract");
        let db = self.cfg.corpus_db.clone();
        // No corpus configured (or a missing/foreign one) still gives
        // `db_unavailable` signals; only host exhaustion is an error, and a
        // retryable one.
        let signals = blocking("corpus_signals", move || {
            corpus::corpus_lookup(db.as_deref(), &id, &title, &abs)
        })
        .await??;
        let v = serde_json::to_value(&signals)
            .map_err(|e| ExecError::new(ErrorKind::ActionError, format!("corpus signals: {e}")))?;
        ctx.insert("corpus".into(), v);
        Ok(None)
    }
}

struct TerminologyTags {
    terms: Arc<tags::Terminology>,
}

#[async_trait]
impl Action for TerminologyTags {
    async fn run(
        &self,
        ctx: &mut Map<String, Value>,
        _args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        let neighbors: Vec<String> = ctx
            .get("corpus")
            .and_then(|c| c.get("neighbors"))
            .and_then(Value::as_array)
            .map(|ns| {
                ns.iter()
                    .map(|n| format!("{} {}", text_of(n, "title"), text_of(n, "abstract_snippet")))
                    .collect()
            })
            .unwrap_or_default();
        let input = tags::TagInput {
            title: &text(ctx, "title"),
            abstract_text: &text(ctx, "abstract"),
            body: &text(ctx, "paper_text"),
            neighbor_texts: &neighbors,
        };
        let t = tags::terminology_tags(&input, &self.terms);
        ctx.insert("tags".into(), json!(t.tags));
        ctx.insert("domain_tags".into(), json!(t.domain_tags));
        Ok(None)
    }
}

fn text_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// `normalize_judge`: `input.text` → `context.verdict` (PASS/REPAIR/FAIL,
/// default REPAIR) and `context.repair_targets`. A judge that passes a
/// report with missing sections is overruled to REPAIR.
struct NormalizeJudge;

#[async_trait]
impl Action for NormalizeJudge {
    async fn run(
        &self,
        ctx: &mut Map<String, Value>,
        args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        let said = input_text(args, "text");
        let mut verdict = judge::normalize_judge(&said);
        let mut targets = judge::repair_targets(&said);
        let report_text = input_text(args, "report");
        if !report_text.is_empty() {
            let missing = report::missing_sections(&report_text);
            if !missing.is_empty() && verdict == judge::Verdict::Pass {
                verdict = judge::Verdict::Repair;
            }
            for m in missing {
                if !targets.contains(&m) {
                    targets.push(m);
                }
            }
        }
        ctx.insert("verdict".into(), json!(verdict.to_string()));
        ctx.insert("repair_targets".into(), json!(targets));
        Ok(None)
    }
}

/// `check_sections`: fail when `input.text` lacks any of `input.sections`
/// or one of them is empty — an empty section must never reach a report.
/// `input.text` is a string or a list of strings (joined; nulls skipped),
/// and `input.what` names what is checked in the error message (default
/// "the model's answer").
struct CheckSections;

#[async_trait]
impl Action for CheckSections {
    async fn run(
        &self,
        _ctx: &mut Map<String, Value>,
        args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        let body = match args.input.get("text") {
            Some(Value::Array(parts)) => parts
                .iter()
                .filter(|p| !p.is_null())
                .map(|p| match p {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n\n"),
            _ => input_text(args, "text"),
        };
        let what = match input_text(args, "what") {
            w if w.trim().is_empty() => "the model's answer".to_string(),
            w => w,
        };
        let wanted: Vec<String> = args
            .input
            .get("sections")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if body.trim().is_empty() {
            return Err(ExecError::new(
                ErrorKind::EmptyResponse,
                format!("{what} has no text"),
            ));
        }
        let missing = report::missing_of(&body, &wanted);
        if missing.is_empty() {
            Ok(None)
        } else {
            Err(ExecError::new(
                ErrorKind::EmptyResponse,
                format!("{what}: missing or empty sections: {}", missing.join(", ")),
            ))
        }
    }
}

/// The model ids for the frontmatter: `input.models` when the state gives
/// it, else `context.models`; a list of strings or one string, trimmed,
/// without blanks or repeats, in the order given. Anything else is an
/// `action_error` rather than a silently empty list.
fn model_ids(ctx: &Map<String, Value>, args: &ActionArgs<'_>) -> Result<Vec<String>, ExecError> {
    let given = match args.input.get("models") {
        Some(v) if !v.is_null() => Some(v),
        _ => ctx.get("models"),
    };
    let bad = |v: &Value| {
        ExecError::new(
            ErrorKind::ActionError,
            format!("frontmatter: models must be a list of model ids, got {v}"),
        )
    };
    let items: Vec<&str> = match given {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().ok_or_else(|| bad(v)))
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(bad(v)),
    };
    let mut out: Vec<String> = Vec::new();
    for m in items.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
        if !out.iter().any(|o| o == m) {
            out.push(m.to_string());
        }
    }
    Ok(out)
}

/// `frontmatter`: YAML frontmatter for the report into `context.frontmatter`.
/// `models` (see [`model_ids`]) names the models that wrote the report.
struct MakeFrontmatter;

#[async_trait]
impl Action for MakeFrontmatter {
    async fn run(
        &self,
        ctx: &mut Map<String, Value>,
        args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        let id = need(ctx, "arxiv_id", "frontmatter")?;
        let models = model_ids(ctx, args)?;
        let list = |k: &str| -> Vec<String> {
            ctx.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let fm = Frontmatter {
            title: text(ctx, "title"),
            source_url: format!("https://arxiv.org/abs/{id}"),
            arxiv_id: id,
            models,
            tags: list("tags"),
            domain_tags: list("domain_tags"),
            core_contribution: text(ctx, "core_contribution"),
            generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            runner_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        ctx.insert(
            "frontmatter".into(),
            json!(report::render_frontmatter(&fm)?),
        );
        ctx.insert("models".into(), json!(fm.models));
        Ok(None)
    }
}

/// `save_report`: frontmatter + report body, checked and written atomically;
/// `context.report_path` is set only once the file exists.
struct SaveReport {
    cfg: Arc<PipelineConfig>,
}

#[async_trait]
impl Action for SaveReport {
    async fn run(
        &self,
        ctx: &mut Map<String, Value>,
        _args: &ActionArgs<'_>,
    ) -> Result<Option<Value>, ExecError> {
        let id = need(ctx, "arxiv_id", "save_report")?;
        let body = need(ctx, "report", "save_report")?;
        let content = format!("{}\n{}\n", text(ctx, "frontmatter"), body.trim());
        let title = text(ctx, "title");
        let dir: PathBuf = self.cfg.reports_dir.clone();
        let path = blocking("save_report", move || {
            report::save_report(&dir, &id, &title, &content)
        })
        .await??;
        // Absolute, so `runner show` and the dashboard find the report
        // whatever directory they run from.
        let path = std::path::absolute(&path).unwrap_or(path);
        ctx.insert("report_path".into(), json!(path.display().to_string()));
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::StateDef;
    use std::path::Path;

    async fn frontmatter(ctx: Value, input: Value) -> Result<Map<String, Value>, ExecError> {
        let mut ctx = ctx.as_object().cloned().unwrap_or_default();
        let state = StateDef::default();
        let args = ActionArgs {
            execution_id: "x",
            state_name: "frontmatter",
            state: &state,
            input: input.as_object().cloned().unwrap_or_default(),
            machine_dir: Path::new("."),
        };
        MakeFrontmatter.run(&mut ctx, &args).await?;
        Ok(ctx)
    }

    fn models_of(ctx: &Map<String, Value>) -> Vec<String> {
        let (fm, _) = report::split_frontmatter(ctx["frontmatter"].as_str().unwrap());
        let fm: Frontmatter = serde_yaml::from_value(fm.unwrap()).unwrap();
        assert_eq!(ctx["models"], json!(fm.models));
        fm.models
    }

    async fn check(input: Value) -> Result<(), ExecError> {
        let state = StateDef::default();
        let args = ActionArgs {
            execution_id: "x",
            state_name: "check",
            state: &state,
            input: input.as_object().cloned().unwrap_or_default(),
            machine_dir: Path::new("."),
        };
        CheckSections.run(&mut Map::new(), &args).await.map(|_| ())
    }

    #[tokio::test]
    async fn check_sections_joins_lists_and_names_what_it_checked() {
        let sections = json!(["A", "B"]);
        check(
            json!({"text": ["## A\n\nreal text\n", null, "## B\n\nmore\n"], "sections": sections}),
        )
        .await
        .unwrap();
        let err = check(json!({
            "what": "wrap input",
            "text": ["## A\n\nInsufficient context.\n", "## B\n\n   \n"],
            "sections": sections,
        }))
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::EmptyResponse);
        assert_eq!(err.message, "wrap input: missing or empty sections: A, B");
        let err = check(json!({"text": [null, "  "], "sections": sections}))
            .await
            .unwrap_err();
        assert_eq!(err.message, "the model's answer has no text");
    }

    #[tokio::test]
    async fn frontmatter_lists_the_models_given() {
        let ctx = json!({"arxiv_id": "2601.00101", "title": "T", "models": ["from-context"]});
        let out = frontmatter(
            ctx.clone(),
            json!({"models": [" cheap/a ", "exp/b", "", "cheap/a"]}),
        )
        .await
        .unwrap();
        assert_eq!(models_of(&out), ["cheap/a", "exp/b"]);
        // No state input (or a null one): the context's list.
        let out = frontmatter(ctx.clone(), json!({"models": null}))
            .await
            .unwrap();
        assert_eq!(models_of(&out), ["from-context"]);
        let out = frontmatter(json!({"arxiv_id": "1", "models": "one"}), json!({}))
            .await
            .unwrap();
        assert_eq!(models_of(&out), ["one"]);
        let out = frontmatter(json!({"arxiv_id": "1"}), json!({}))
            .await
            .unwrap();
        assert!(models_of(&out).is_empty());
    }

    #[tokio::test]
    async fn frontmatter_refuses_models_that_are_not_ids() {
        for bad in [json!([1, 2]), json!({"m": "x"}), json!(3)] {
            let err = frontmatter(json!({"arxiv_id": "1"}), json!({"models": bad}))
                .await
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::ActionError);
            assert!(err.message.contains("models"), "{}", err.message);
        }
    }
}
