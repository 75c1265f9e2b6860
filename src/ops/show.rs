//! `runner show ID`: one paper's whole story — phase attempts (from the
//! queue's timeline), every state of every phase machine execution and its
//! children (from checkpoints: `state_enter`/`state_exit` pairs), every LLM
//! request (from the ledger) and every error, with the report path.
//!
//! The timeline survives checkpoint pruning only in part: phase attempts,
//! execution rows and ledger rows stay, per-state spans go with their
//! checkpoints.

use super::text::escape_control;
use super::{human_duration_ms, ms_between, parse_ts, OpsError};
use crate::store::ops::{CheckpointMark, LlmCallRow, MachineExecutionRow};
use crate::store::{PaperEvent, PaperRow, Store};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Everything `runner show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct PaperTimeline {
    pub paper: PaperRow,
    pub phases: Vec<PhaseAttempt>,
    pub executions: Vec<ExecutionTimeline>,
    pub llm_calls: Vec<LlmCallRow>,
    pub llm_totals: CallTotals,
    pub errors: Vec<ErrorEntry>,
    pub report_path: Option<String>,
    /// The raw queue timeline (claims, finishes, retries, cancels, …).
    pub events: Vec<PaperEvent>,
    /// Machine executions of the paper parked on a `wait_for` state.
    pub waiting: Vec<crate::store::signals::WaitRow>,
}

/// One claim of one phase and how it ended.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhaseAttempt {
    pub phase: String,
    pub attempt: Option<u32>,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// finished, failed, retry_later, released, reaped — or running.
    pub outcome: String,
    pub owner: Option<String>,
    pub error_kind: Option<String>,
    pub message: Option<String>,
}

/// One machine execution of the paper (a phase's root or a child).
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionTimeline {
    pub execution_id: String,
    pub phase: Option<String>,
    pub attempt: Option<u32>,
    pub machine: String,
    pub parent_id: Option<String>,
    pub child: bool,
    /// 0 for a phase's root, 1 for its children, …
    pub depth: usize,
    pub status: String,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub states: Vec<StateSpan>,
}

/// One run of one state.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StateSpan {
    pub state: String,
    pub step: u64,
    /// None when the enter checkpoint was pruned.
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// ok, error (routed through on_error), failed (the machine failed in
    /// it), interrupted (the process stopped; it re-ran later), running.
    pub outcome: String,
    pub next_state: Option<String>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
}

/// Ledger totals of the paper.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CallTotals {
    pub calls: u64,
    pub ok: u64,
    pub errors: u64,
    pub reused: u64,
    /// Reserved and never settled (the process died mid-request).
    pub unsettled: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Sum of the known costs (in `currency` when every known cost shares
    /// one; see `costs` otherwise).
    pub cost: f64,
    /// The currency of `cost` when all known costs share one.
    pub currency: Option<String>,
    /// Known costs per currency (one entry unless profiles mix them).
    pub costs: std::collections::BTreeMap<String, f64>,
    /// Settled calls whose cost is unknown (no price, no provider figure,
    /// or no usage reported): `cost` leaves them out.
    pub unknown_cost: u64,
}

/// An error from any source, in time order.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorEntry {
    pub at: String,
    /// phase (a failed attempt), state (routed on_error), execution (a
    /// failed machine), llm (a failed request).
    pub source: String,
    pub execution_id: Option<String>,
    pub kind: Option<String>,
    pub message: Option<String>,
}

/// The timeline of one paper by queue id or arXiv id.
pub fn paper_timeline(store: &Store, id_or_arxiv: &str) -> Result<PaperTimeline, OpsError> {
    let Some(paper) = store.paper(id_or_arxiv)? else {
        return Err(OpsError::NotFound(format!(
            "no paper {id_or_arxiv} in the queue (try `runner status` or `runner add {id_or_arxiv}`)"
        )));
    };
    let events = store.paper_events(&paper.id)?;
    let machine_rows = store.paper_machine_executions(&paper.id)?;
    let marks = store.paper_checkpoints(&paper.id)?;
    let llm_calls = store.paper_llm_calls(&paper.id)?;
    let phases = phase_attempts(&events);
    let executions = executions(&paper.id, machine_rows, &marks);
    let llm_totals = call_totals(&llm_calls);
    let errors = errors(&phases, &executions, &llm_calls);
    let prefix = format!("{}/", paper.id);
    let waiting = store
        .waits()?
        .into_iter()
        .filter(|w| w.execution_id.starts_with(&prefix))
        .collect();
    Ok(PaperTimeline {
        waiting,
        report_path: paper.report_path.clone(),
        paper,
        phases,
        executions,
        llm_calls,
        llm_totals,
        errors,
        events,
    })
}

/// Pair each `claimed` event with the event that ended that claim.
pub fn phase_attempts(events: &[PaperEvent]) -> Vec<PhaseAttempt> {
    let mut out: Vec<PhaseAttempt> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    for e in events {
        let Some(phase) = e.phase.clone() else {
            continue;
        };
        match e.kind.as_str() {
            "claimed" => {
                open.insert(phase.clone(), out.len());
                out.push(PhaseAttempt {
                    phase,
                    attempt: e.attempt,
                    started_at: e.at.clone(),
                    ended_at: None,
                    duration_ms: None,
                    outcome: "running".into(),
                    owner: e.owner_id.clone(),
                    error_kind: None,
                    message: None,
                });
            }
            "finished" | "failed" | "retry_later" | "released" | "reaped" => {
                let Some(i) = open.remove(&phase) else {
                    continue;
                };
                let a = &mut out[i];
                a.ended_at = Some(e.at.clone());
                a.duration_ms = e.duration_ms.or_else(|| ms_between(&a.started_at, &e.at));
                a.outcome = e.kind.clone();
                a.error_kind = e.error_kind.clone();
                a.message = e.message.clone();
            }
            _ => {}
        }
    }
    out
}

/// `(phase, attempt)` of a machine execution id `<paper>/<phase>/<attempt>[/…]`.
fn phase_of(paper_id: &str, execution_id: &str) -> (Option<String>, Option<u32>) {
    let rest = execution_id
        .strip_prefix(paper_id)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or("");
    let mut parts = rest.split('/');
    let phase = parts.next().filter(|p| !p.is_empty()).map(str::to_string);
    // Leading digits only, so a suffixed attempt segment still reads.
    let attempt = parts.next().and_then(|a| {
        let digits: String = a.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    (phase, attempt)
}

fn executions(
    paper_id: &str,
    rows: Vec<MachineExecutionRow>,
    marks: &[CheckpointMark],
) -> Vec<ExecutionTimeline> {
    let parents: HashMap<String, Option<String>> = rows
        .iter()
        .map(|r| (r.execution_id.clone(), r.parent_id.clone()))
        .collect();
    let depth = |id: &str| {
        let mut d = 0;
        let mut cur = parents.get(id).cloned().flatten();
        while let Some(p) = cur {
            d += 1;
            if d > 64 {
                break;
            }
            cur = parents.get(&p).cloned().flatten();
        }
        d
    };
    let mut by_exec: HashMap<&str, Vec<&CheckpointMark>> = HashMap::new();
    for m in marks {
        by_exec.entry(m.execution_id.as_str()).or_default().push(m);
    }
    let mut out: Vec<ExecutionTimeline> = rows
        .iter()
        .map(|r| {
            let (phase, attempt) = phase_of(paper_id, &r.execution_id);
            let states = state_spans(
                by_exec
                    .get(r.execution_id.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                &r.status,
            );
            ExecutionTimeline {
                execution_id: r.execution_id.clone(),
                phase,
                attempt,
                machine: r.machine_name.clone(),
                parent_id: r.parent_id.clone(),
                child: r.parent_id.is_some(),
                depth: depth(&r.execution_id),
                status: r.status.clone(),
                error_kind: r.error_kind.clone(),
                error_message: r.error_message.clone(),
                created_at: r.created_at.clone(),
                updated_at: r.updated_at.clone(),
                states,
            }
        })
        .collect();
    // Each root followed by its descendants (ids of children extend their
    // parent's id, so sorting by id groups them).
    out.sort_by(|a, b| {
        let root = |e: &ExecutionTimeline| (e.phase.clone(), e.attempt);
        root(a)
            .cmp(&root(b))
            .then_with(|| a.created_at.cmp(&b.created_at))
            .then_with(|| a.execution_id.cmp(&b.execution_id))
    });
    // Phases in flow order, not alphabetical.
    out.sort_by_key(|e| {
        e.phase
            .as_deref()
            .and_then(crate::store::Phase::parse)
            .map_or(3, |p| p as u8)
    });
    out
}

/// Pair `state_enter` / `state_exit` checkpoints of one execution.
pub fn state_spans(marks: &[&CheckpointMark], exec_status: &str) -> Vec<StateSpan> {
    let mut out: Vec<StateSpan> = Vec::new();
    let mut open: Option<usize> = None;
    for m in marks {
        match m.event.as_str() {
            "state_enter" => {
                if let Some(i) = open.take() {
                    // Entered again without an exit: the process stopped
                    // and the state re-ran on resume.
                    out[i].outcome = "interrupted".into();
                }
                open = Some(out.len());
                out.push(StateSpan {
                    state: m.state.clone().unwrap_or_default(),
                    step: m.step,
                    started_at: Some(m.created_at.clone()),
                    ended_at: None,
                    duration_ms: None,
                    outcome: "running".into(),
                    next_state: None,
                    error_kind: None,
                    error_message: None,
                });
            }
            "state_exit" => {
                let state = m.state.clone().unwrap_or_default();
                let i = match open.take() {
                    Some(i) if out[i].state == state => i,
                    other => {
                        if let Some(i) = other {
                            out[i].outcome = "interrupted".into();
                        }
                        // The enter checkpoint was pruned.
                        out.push(StateSpan {
                            state: state.clone(),
                            step: m.step,
                            started_at: None,
                            ended_at: None,
                            duration_ms: None,
                            outcome: "running".into(),
                            next_state: None,
                            error_kind: None,
                            error_message: None,
                        });
                        out.len() - 1
                    }
                };
                let s = &mut out[i];
                s.ended_at = Some(m.created_at.clone());
                s.duration_ms = s
                    .started_at
                    .as_deref()
                    .and_then(|a| ms_between(a, &m.created_at));
                s.next_state = m.next_state.clone();
                s.outcome = if m.error_kind.is_some() {
                    "error"
                } else {
                    "ok"
                }
                .into();
                s.error_kind = m.error_kind.clone();
                s.error_message = m.error_message.clone();
            }
            "machine_failed" => {
                if let Some(i) = open.take() {
                    let s = &mut out[i];
                    s.ended_at = Some(m.created_at.clone());
                    s.duration_ms = s
                        .started_at
                        .as_deref()
                        .and_then(|a| ms_between(a, &m.created_at));
                    s.outcome = "failed".into();
                    s.error_kind = m.error_kind.clone();
                    s.error_message = m.error_message.clone();
                }
            }
            _ => {}
        }
    }
    if let Some(i) = open {
        if exec_status != "running" {
            out[i].outcome = "interrupted".into();
        }
    }
    out
}

fn call_totals(calls: &[LlmCallRow]) -> CallTotals {
    let mut t = CallTotals::default();
    for c in calls {
        t.calls += 1;
        match c.status.as_str() {
            "ok" => t.ok += 1,
            "error" => t.errors += 1,
            "reused" => t.reused += 1,
            _ => t.unsettled += 1,
        }
        t.prompt_tokens += c.prompt_tokens.unwrap_or(0);
        t.completion_tokens += c.completion_tokens.unwrap_or(0);
        t.total_tokens += c.total_tokens.unwrap_or(0);
        t.cost += c.cost.unwrap_or(0.0);
        if c.cost_source.as_deref() == Some("unknown") {
            t.unknown_cost += 1;
        }
        if let (Some(cost), Some(cur)) = (c.cost, &c.currency) {
            *t.costs.entry(cur.clone()).or_insert(0.0) += cost;
        }
    }
    for v in t.costs.values_mut() {
        *v = crate::llm::price::round_cost(*v);
    }
    t.cost = crate::llm::price::round_cost(t.cost);
    if t.costs.len() == 1 {
        t.currency = t.costs.keys().next().cloned();
    }
    t
}

/// A cost for the call table: six decimals, `unknown` when not known.
pub(crate) fn money(cost: Option<f64>, source: Option<&str>) -> String {
    match (cost, source) {
        (_, Some("unknown")) => "unknown".into(),
        (Some(c), _) => format!("{c:.6}"),
        (None, _) => "-".into(),
    }
}

fn errors(
    phases: &[PhaseAttempt],
    execs: &[ExecutionTimeline],
    calls: &[LlmCallRow],
) -> Vec<ErrorEntry> {
    let mut out = Vec::new();
    for p in phases {
        if p.error_kind.is_some() || p.outcome == "reaped" {
            out.push(ErrorEntry {
                at: p.ended_at.clone().unwrap_or_else(|| p.started_at.clone()),
                source: "phase".into(),
                execution_id: None,
                kind: p.error_kind.clone().or_else(|| Some("reaped".into())),
                message: p.message.clone(),
            });
        }
    }
    for e in execs {
        for s in &e.states {
            if s.outcome == "error" {
                out.push(ErrorEntry {
                    at: s.ended_at.clone().unwrap_or_default(),
                    source: "state".into(),
                    execution_id: Some(format!("{} ({})", e.execution_id, s.state)),
                    kind: s.error_kind.clone(),
                    message: s.error_message.clone(),
                });
            }
        }
        if e.status == "failed" {
            out.push(ErrorEntry {
                at: e.updated_at.clone(),
                source: "execution".into(),
                execution_id: Some(e.execution_id.clone()),
                kind: e.error_kind.clone(),
                message: e.error_message.clone(),
            });
        }
    }
    for c in calls.iter().filter(|c| c.status == "error") {
        out.push(ErrorEntry {
            at: c
                .settled_at
                .clone()
                .unwrap_or_else(|| c.reserved_at.clone()),
            source: "llm".into(),
            execution_id: Some(c.execution_id.clone()),
            kind: c.error_kind.clone(),
            message: c.error_message.clone(),
        });
    }
    out.sort_by(|a, b| a.at.cmp(&b.at));
    out
}

fn clock(ts: &str) -> String {
    parse_ts(ts).map_or_else(
        || ts.to_string(),
        |t| t.format("%m-%d %H:%M:%S%.3f").to_string(),
    )
}

fn dur(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), human_duration_ms)
}

/// Every line and column of the human timeline goes through here: fields
/// from outside (titles, state names, models, error messages) have their
/// control characters escaped before being cut to width, so a title with
/// ESC sequences cannot drive the operator's terminal.
fn fit(s: &str, width: usize) -> String {
    super::fit(&escape_control(s), width)
}

/// The timeline for a terminal (lines at most 80 columns, messages cut).
pub fn render_human(t: &PaperTimeline) -> String {
    let mut o = String::new();
    let p = &t.paper;
    let title = p.title.clone().unwrap_or_default();
    let _ = writeln!(o, "{}", fit(&format!("{}  {title}", p.id), 80));
    let mut status = format!(
        "status {} · attempts prep {} / expensive {} / wrap {}",
        p.status, p.attempts_prep, p.attempts_expensive, p.attempts_wrap
    );
    if p.cancel_requested {
        status.push_str(" · cancel requested");
    }
    let _ = writeln!(o, "{}", fit(&status, 80));
    if let Some(r) = &t.report_path {
        let _ = writeln!(o, "{}", fit(&format!("report {r}"), 80));
    }
    for w in &t.waiting {
        let line = format!(
            "waiting: {} waits for signal '{}' (send it with `runner signal {} {}`)",
            w.execution_id, w.signal, w.execution_id, w.signal
        );
        let _ = writeln!(o, "{}", fit(&line, 120));
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "phases:");
    if t.phases.is_empty() {
        let _ = writeln!(o, "  none claimed yet");
    }
    for a in &t.phases {
        let line = format!(
            "  {:<9} #{:<2} {:<18} {:>8}  {}{}",
            a.phase,
            a.attempt.map_or_else(|| "?".into(), |n| n.to_string()),
            clock(&a.started_at),
            dur(a.duration_ms),
            a.outcome,
            a.error_kind
                .as_deref()
                .map(|k| format!(" ({k})"))
                .unwrap_or_default()
        );
        let _ = writeln!(o, "{}", fit(&line, 80));
    }
    for e in &t.executions {
        let _ = writeln!(o);
        let indent = "  ".repeat(e.depth);
        let label = if e.child {
            format!("child {}", e.machine)
        } else {
            let phase = e.phase.as_deref().unwrap_or("?");
            let attempt = e.attempt.map_or_else(|| "?".into(), |n| n.to_string());
            if e.machine == phase {
                format!("{phase} #{attempt}")
            } else {
                format!("{phase} #{attempt} ({})", e.machine)
            }
        };
        let _ = writeln!(
            o,
            "{}",
            fit(
                &format!("{indent}{label}: {}  [{}]", e.status, e.execution_id),
                80
            )
        );
        for s in &e.states {
            let mut line = format!(
                "{indent}  {:<18} {:<18} {:>8}  {}",
                s.started_at
                    .as_deref()
                    .map(clock)
                    .unwrap_or_else(|| "-".into()),
                fit(&s.state, 18),
                dur(s.duration_ms),
                s.outcome
            );
            if let Some(k) = &s.error_kind {
                line.push_str(&format!(" {k}"));
            }
            if let Some(n) = &s.next_state {
                line.push_str(&format!(" → {n}"));
            }
            let _ = writeln!(o, "{}", fit(&line, 80));
        }
    }
    let _ = writeln!(o);
    let c = &t.llm_totals;
    let _ = writeln!(
        o,
        "{}",
        fit(
            &format!(
                "llm calls: {} ({} ok, {} errors, {} reused); tokens {} in, {} out",
                c.calls, c.ok, c.errors, c.reused, c.prompt_tokens, c.completion_tokens
            ),
            80
        )
    );
    let spent = match (&c.currency, c.costs.is_empty()) {
        (Some(cur), _) => format!("{:.6} {cur}", c.cost),
        (None, true) => "none known".into(),
        (None, false) => c
            .costs
            .iter()
            .map(|(cur, v)| format!("{v:.6} {cur}"))
            .collect::<Vec<_>>()
            .join(" + "),
    };
    let unknown = match c.unknown_cost {
        0 => String::new(),
        1 => " (1 call of unknown cost)".into(),
        n => format!(" ({n} calls of unknown cost)"),
    };
    if c.calls > 0 {
        let _ = writeln!(o, "{}", fit(&format!("cost: {spent}{unknown}"), 80));
    }
    if !t.llm_calls.is_empty() {
        let _ = writeln!(
            o,
            "  {:<18} {:<12} {:<10} {:<6} {:>6} {:>5} {:>9} {:>5}",
            "TIME", "MODEL", "STATE", "STATUS", "IN", "OUT", "COST", "LAT"
        );
    }
    for call in &t.llm_calls {
        let tokens = |n: Option<u64>| n.map_or_else(|| "-".into(), |n| n.to_string());
        let mut line = format!(
            "  {:<18} {:<12} {:<10} {:<6} {:>6} {:>5} {:>9} {:>5}",
            clock(&call.reserved_at),
            fit(&call.model, 12),
            fit(&call.state, 10),
            call.status,
            tokens(call.prompt_tokens),
            tokens(call.completion_tokens),
            money(call.cost, call.cost_source.as_deref()),
            dur(call.latency_ms.map(|l| l as i64)),
        );
        if let Some(h) = call.http_status.filter(|_| call.status == "error") {
            line.push_str(&format!(" {h}"));
        }
        if let Some(k) = &call.error_kind {
            line.push_str(&format!(" {k}"));
        }
        if let Some(r) = call.retry_after {
            line.push_str(&format!(" retry {r}s"));
        }
        let _ = writeln!(o, "{}", fit(&line, 80));
    }
    let _ = writeln!(o);
    if t.errors.is_empty() {
        let _ = writeln!(o, "errors: none");
    } else {
        let _ = writeln!(o, "errors: {}", t.errors.len());
        for e in &t.errors {
            let line = format!(
                "  {:<18} {:<9} {}: {}",
                clock(&e.at),
                e.source,
                e.kind.as_deref().unwrap_or("?"),
                e.message.as_deref().unwrap_or("").replace('\n', " ")
            );
            let _ = writeln!(o, "{}", fit(&line, 80));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(event: &str, state: Option<&str>, next: Option<&str>, at: &str) -> CheckpointMark {
        CheckpointMark {
            execution_id: "paper:x/prep/1".into(),
            step: 1,
            event: event.into(),
            state: state.map(str::to_string),
            next_state: next.map(str::to_string),
            created_at: format!("2026-01-01T00:00:{at}Z"),
            error_kind: None,
            error_message: None,
        }
    }

    #[test]
    fn enter_exit_pairs_become_spans_and_reentries_are_interruptions() {
        let mut routed = mark("state_exit", Some("b"), Some("recover"), "05.000");
        routed.error_kind = Some("timeout".into());
        let marks = [
            mark("machine_start", None, Some("a"), "00.000"),
            mark("state_enter", Some("a"), None, "00.000"),
            mark("state_exit", Some("a"), Some("b"), "01.500"),
            mark("state_enter", Some("b"), None, "01.500"),
            mark("state_enter", Some("b"), None, "03.000"),
            routed,
            mark("state_enter", Some("recover"), None, "05.000"),
        ];
        let refs: Vec<&CheckpointMark> = marks.iter().collect();
        let spans = state_spans(&refs, "running");
        let summary: Vec<(&str, &str, Option<i64>)> = spans
            .iter()
            .map(|s| (s.state.as_str(), s.outcome.as_str(), s.duration_ms))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", "ok", Some(1500)),
                ("b", "interrupted", None),
                ("b", "error", Some(2000)),
                ("recover", "running", None),
            ]
        );
        assert_eq!(spans[2].next_state.as_deref(), Some("recover"));
        // A stopped execution's open state was interrupted.
        assert_eq!(state_spans(&refs, "failed")[3].outcome, "interrupted");
    }

    #[test]
    fn phase_and_attempt_come_from_the_execution_id() {
        assert_eq!(
            phase_of("paper:2401.1", "paper:2401.1/expensive/2/analyse@1/m"),
            (Some("expensive".into()), Some(2))
        );
        assert_eq!(phase_of("paper:a", "other"), (None, None));
        assert_eq!(
            phase_of("paper:a", "paper:a/prep/3-r2"),
            (Some("prep".into()), Some(3))
        );
    }

    #[test]
    fn claims_pair_with_their_endings() {
        let ev = |kind: &str, phase: &str, at: &str| PaperEvent {
            at: format!("2026-01-01T00:00:{at}Z"),
            phase: Some(phase.into()),
            kind: kind.into(),
            from_status: None,
            to_status: None,
            attempt: Some(1),
            machine_execution: None,
            owner_id: None,
            error_kind: (kind == "retry_later").then(|| "timeout".to_string()),
            message: None,
            duration_ms: None,
        };
        let a = phase_attempts(&[
            ev("claimed", "prep", "00.000"),
            ev("retry_later", "prep", "02.000"),
            ev("claimed", "prep", "03.000"),
        ]);
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].outcome.as_str(), a[0].duration_ms),
            ("retry_later", Some(2000))
        );
        assert_eq!(a[0].error_kind.as_deref(), Some("timeout"));
        assert_eq!(a[1].outcome, "running");
    }
}
