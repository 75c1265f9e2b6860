//! Progress bars for long one-shot runs: papers done / total per phase with
//! an ETA, fed by the scheduler's [`Observer`]. Off with `--no-progress` and
//! whenever stderr is not a terminal (logs, CI, systemd), so nothing but
//! plain lines ever reaches a file.
//!
//! While bars are shown, log lines are written through
//! [`suspend_bars`], so a warning does not tear the bars apart.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use paper_runner::runner::scheduler::{Observer, RunnerStats};
use paper_runner::runner::task::{TaskOutcome, TaskReport};
use paper_runner::store::{PaperStatus, Phase, Store};
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The bars on screen now (at most one set per process).
static ACTIVE: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// `--no-progress` (a global flag, recorded by `dispatch`).
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Record `--no-progress`.
pub fn set_disabled(disabled: bool) {
    DISABLED.store(disabled, Ordering::Relaxed);
}

/// Run `f` (a write to stderr) with the bars hidden, if any are shown.
pub fn suspend_bars<R>(f: impl FnOnce() -> R) -> R {
    let active = match ACTIVE.lock() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    };
    match active {
        Some(m) => m.suspend(f),
        None => f(),
    }
}

/// Papers per phase at the start: (done, total) where total counts every
/// paper not failed and done those already past the phase.
pub fn initial_counts(counts: &[(PaperStatus, u64)]) -> Vec<(Phase, u64, u64)> {
    // `PaperStatus` orders in flow order, so "past a phase" is `>=` its
    // done status.
    let live: Vec<(PaperStatus, u64)> = counts
        .iter()
        .filter(|(s, _)| *s != PaperStatus::Failed)
        .copied()
        .collect();
    let total: u64 = live.iter().map(|(_, n)| n).sum();
    Phase::ALL
        .into_iter()
        .map(|p| {
            let past = p.done_status();
            let done = live
                .iter()
                .filter(|(s, _)| *s >= past)
                .map(|(_, n)| n)
                .sum();
            (p, done, total)
        })
        .collect()
}

/// The bars of one run; finishing (or dropping) it leaves them at their
/// final state and routes logs straight to stderr again.
pub struct ProgressHandle {
    multi: MultiProgress,
    bars: Arc<Vec<(Phase, ProgressBar)>>,
}

impl ProgressHandle {
    /// Bars per phase from initial (phase, done, total) counts.
    pub fn new(initial: &[(Phase, u64, u64)]) -> ProgressHandle {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template(
            "{prefix:>9} [{bar:32}] {pos:>5}/{len:<5} {percent:>3}%  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bars = initial
            .iter()
            .map(|(phase, done, total)| {
                let bar = multi.add(
                    ProgressBar::new(*total)
                        .with_style(style.clone())
                        .with_prefix(phase.name()),
                );
                bar.set_position(*done);
                bar.reset_eta();
                (*phase, bar)
            })
            .collect();
        if let Ok(mut g) = ACTIVE.lock() {
            *g = Some(multi.clone());
        }
        ProgressHandle {
            multi,
            bars: Arc::new(bars),
        }
    }

    /// An observer that moves these bars.
    pub fn observer(&self) -> Observer {
        let bars = self.bars.clone();
        Arc::new(move |report: &TaskReport, _stats: &RunnerStats| apply(&bars, report))
    }

    /// Leave the bars at their final state.
    pub fn finish(&self) {
        for (_, b) in self.bars.iter() {
            if !b.is_finished() {
                b.abandon();
            }
        }
        if let Ok(mut g) = ACTIVE.lock() {
            *g = None;
        }
        let _ = self.multi.clear();
    }

    /// (position, length) per phase.
    #[cfg(test)]
    pub fn positions(&self) -> Vec<(Phase, u64, u64)> {
        self.bars
            .iter()
            .map(|(p, b)| (*p, b.position(), b.length().unwrap_or(0)))
            .collect()
    }
}

impl Drop for ProgressHandle {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A finished phase moves its bar; a paper failed for good leaves the
/// totals of its phase and every later one.
fn apply(bars: &[(Phase, ProgressBar)], report: &TaskReport) {
    match &report.outcome {
        TaskOutcome::Finished => {
            for (p, b) in bars {
                if *p == report.phase {
                    b.inc(1);
                }
            }
        }
        TaskOutcome::Failed { .. } => {
            for (p, b) in bars {
                if *p >= report.phase {
                    b.dec_length(1);
                }
            }
        }
        _ => {}
    }
}

/// Progress bars for a run over `store`'s queue, or None when `enabled`
/// is false, `--no-progress` was given or stderr is not a terminal. Keep
/// the handle alive for the run and call `finish()` after it; pass the
/// observer to the scheduler.
pub fn progress_observer(store: &Store, enabled: bool) -> Option<(Observer, ProgressHandle)> {
    if !enabled || DISABLED.load(Ordering::Relaxed) || !std::io::stderr().is_terminal() {
        return None;
    }
    let counts = match store.status_counts() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no progress bars: cannot count papers");
            return None;
        }
    };
    let handle = ProgressHandle::new(&initial_counts(&counts));
    Some((handle.observer(), handle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn counts(pairs: &[(&str, u64)]) -> Vec<(PaperStatus, u64)> {
        pairs
            .iter()
            .map(|(s, n)| (s.parse().unwrap(), *n))
            .collect()
    }

    #[test]
    fn initial_counts_place_papers_past_their_phases() {
        let c = initial_counts(&counts(&[
            ("pending", 3),
            ("prepping", 1),
            ("prepped", 2),
            ("analyzed", 1),
            ("done", 4),
            ("failed", 5),
        ]));
        assert_eq!(
            c,
            vec![
                (Phase::Prep, 7, 11),
                (Phase::Expensive, 5, 11),
                (Phase::Wrap, 4, 11)
            ]
        );
    }

    #[test]
    fn reports_move_bars() {
        let h = ProgressHandle::new(&[
            (Phase::Prep, 0, 2),
            (Phase::Expensive, 0, 2),
            (Phase::Wrap, 0, 2),
        ]);
        let obs = h.observer();
        let report = |phase, outcome| TaskReport {
            id: "paper:x".into(),
            arxiv_id: "x".into(),
            phase,
            outcome,
            duration: Duration::from_millis(5),
        };
        let stats = RunnerStats::default();
        obs(&report(Phase::Prep, TaskOutcome::Finished), &stats);
        obs(
            &report(
                Phase::Expensive,
                TaskOutcome::Failed {
                    kind: "invalid_request".into(),
                },
            ),
            &stats,
        );
        obs(
            &report(
                Phase::Prep,
                TaskOutcome::RetryLater {
                    kind: "timeout".into(),
                },
            ),
            &stats,
        );
        assert_eq!(
            h.positions(),
            vec![
                (Phase::Prep, 1, 2),
                (Phase::Expensive, 0, 1),
                (Phase::Wrap, 0, 1)
            ]
        );
        h.finish();
        assert!(ACTIVE.lock().unwrap().is_none());
    }
}
