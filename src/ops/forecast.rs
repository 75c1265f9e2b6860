//! What the queue will cost: the average spend per phase and per done
//! paper, from the ledger, times the papers still to go, and how many days
//! of today's budget that is — `runner status`'s "the 312 papers in the
//! queue will cost about $41 and need 2.3 days at today's budget".
//!
//! Samples: the phases that finished in the last day (the last week when a
//! phase has none in the last day), at most [`MAX_SAMPLES`] of each, each
//! with everything its executions spent (every attempt and child, whenever
//! it ran). A paper in the queue needs the phases it has not finished: a
//! pending (or prepping) paper all three, a prepped (or analysing) one
//! expensive and wrap, an analysed (or wrapping) one wrap.

use super::{fmt_ts, OpsError};
use crate::runner::budget::Budget;
use crate::store::{ModelClass, PaperStatus, PerClass, Phase, Store, UnitLimits};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::Serialize;

/// Finished phases (and done papers) sampled per phase at most: bounds
/// the work of a status report, which `/metrics` builds at every scrape.
pub const MAX_SAMPLES: u64 = 200;

/// Spend in the three units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Amounts {
    /// Known cost (in the profiles' price currency, USD by default).
    pub cost: f64,
    pub tokens: f64,
    pub requests: f64,
}

impl Amounts {
    fn add(&mut self, o: &Amounts, times: f64) {
        self.cost += o.cost * times;
        self.tokens += o.tokens * times;
        self.requests += o.requests * times;
    }

    fn scaled(&self, by: f64) -> Amounts {
        Amounts {
            cost: self.cost * by,
            tokens: self.tokens * by,
            requests: self.requests * by,
        }
    }

    fn rounded(self) -> Amounts {
        Amounts {
            cost: crate::store::round_money(self.cost),
            tokens: (self.tokens * 10.0).round() / 10.0,
            requests: (self.requests * 100.0).round() / 100.0,
        }
    }
}

/// Amounts per class.
pub type ClassAmounts = PerClass<Amounts>;

impl ClassAmounts {
    fn total(&self) -> Amounts {
        let mut t = self.cheap;
        t.add(&self.expensive, 1.0);
        t
    }

    fn add(&mut self, o: &ClassAmounts, times: f64) {
        self.cheap.add(&o.cheap, times);
        self.expensive.add(&o.expensive, times);
    }

    fn rounded(self) -> ClassAmounts {
        ClassAmounts {
            cheap: self.cheap.rounded(),
            expensive: self.expensive.rounded(),
        }
    }
}

/// The average spend of one phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseAverage {
    pub phase: Phase,
    /// Finished phases averaged.
    pub samples: u64,
    /// Hours back the samples were taken from (24, or 168 when the last
    /// day had none).
    pub window_hours: u64,
    pub per_phase: ClassAmounts,
    /// Sampled calls whose cost is unknown (left out of `cost`).
    pub unknown_cost_calls: u64,
}

/// The forecast section of `status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// Papers done (wrap finished) in the last day, averaged below.
    pub done_last_day: u64,
    /// Average spend per done paper over the last day (all its phases).
    pub per_done_paper: Option<Amounts>,
    pub phases: Vec<PhaseAverage>,
    /// Papers still to finish (neither done nor failed).
    pub papers: u64,
    /// What they will spend; None when a phase they need has no average.
    pub spend: Option<ClassAmounts>,
    /// Days of today's budget that takes: the largest ratio over every
    /// limit set (None: no limit, or no forecast).
    pub days: Option<f64>,
    /// The limit that decides `days`, e.g. `expensive_usd`.
    pub binding: Option<String>,
    /// One line for people.
    pub text: String,
}

/// Average spend per phase and per done paper, and what the queue will
/// spend.
pub fn forecast(store: &Store, budget: &Budget, now: DateTime<Utc>) -> Result<Forecast, OpsError> {
    let class_of = |p: Option<&str>| crate::store::spend::class_of(&budget.settings().classes, p);
    let spend_of = |rows: Vec<crate::store::ProfileSpend>| -> (ClassAmounts, u64) {
        let mut a = ClassAmounts::default();
        let mut unknown = 0;
        for row in rows {
            let amounts = Amounts {
                cost: row.cost,
                tokens: row.tokens as f64,
                requests: row.requests as f64,
            };
            a.of_mut(class_of(row.profile.as_deref()))
                .add(&amounts, 1.0);
            unknown += row.unknown_cost;
        }
        (a, unknown)
    };
    let day_ago = fmt_ts(now - ChronoDuration::days(1));
    let week_ago = fmt_ts(now - ChronoDuration::days(7));
    let recent = store.finished_phases_since(&day_ago, MAX_SAMPLES * 3)?;
    let mut phases = Vec::new();
    for phase in Phase::ALL {
        let mut window_hours = 24;
        let mut samples: Vec<String> = recent
            .iter()
            .filter(|(_, p)| *p == phase)
            .map(|(id, _)| id.clone())
            .collect();
        if samples.is_empty() {
            window_hours = 24 * 7;
            samples = store
                .finished_phases_since(&week_ago, MAX_SAMPLES * 3)?
                .into_iter()
                .filter(|(_, p)| *p == phase)
                .map(|(id, _)| id)
                .collect();
        }
        samples.truncate(MAX_SAMPLES as usize);
        if samples.is_empty() {
            continue;
        }
        let mut sum = ClassAmounts::default();
        let mut unknown = 0;
        let prefixes: Vec<String> = samples
            .iter()
            .map(|paper| format!("{paper}/{}", phase.name()))
            .collect();
        let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        for rows in store.spend_under_each(&refs)? {
            let (a, u) = spend_of(rows);
            sum.add(&a, 1.0);
            unknown += u;
        }
        let n = samples.len() as f64;
        phases.push(PhaseAverage {
            phase,
            samples: samples.len() as u64,
            window_hours,
            per_phase: ClassAmounts {
                cheap: sum.cheap.scaled(1.0 / n),
                expensive: sum.expensive.scaled(1.0 / n),
            }
            .rounded(),
            unknown_cost_calls: unknown,
        });
    }
    // Done papers of the last day, all their phases.
    let done: Vec<String> = recent
        .iter()
        .filter(|(_, p)| *p == Phase::Wrap)
        .map(|(id, _)| id.clone())
        .take(MAX_SAMPLES as usize)
        .collect();
    let per_done_paper = if done.is_empty() {
        None
    } else {
        let mut sum = Amounts::default();
        let refs: Vec<&str> = done.iter().map(String::as_str).collect();
        for rows in store.spend_under_each(&refs)? {
            sum.add(&spend_of(rows).0.total(), 1.0);
        }
        Some(sum.scaled(1.0 / done.len() as f64).rounded())
    };
    let done_last_day = store.count_events_since("finished", Phase::Wrap, &day_ago)?;

    // Papers still to go, by the phases they need.
    let counts = store.status_counts()?;
    let n = |s: &[PaperStatus]| -> u64 {
        counts
            .iter()
            .filter(|(st, _)| s.contains(st))
            .map(|(_, n)| *n)
            .sum()
    };
    let needs_all = n(&[PaperStatus::Pending, PaperStatus::Prepping]);
    let needs_two = n(&[PaperStatus::Prepped, PaperStatus::Analyzing]);
    let needs_wrap = n(&[PaperStatus::Analyzed, PaperStatus::Wrapping]);
    let papers = needs_all + needs_two + needs_wrap;
    let avg = |p: Phase| phases.iter().find(|a| a.phase == p).map(|a| a.per_phase);
    let mut spend = Some(ClassAmounts::default());
    for (phase, count) in [
        (Phase::Prep, needs_all),
        (Phase::Expensive, needs_all + needs_two),
        (Phase::Wrap, papers),
    ] {
        if count == 0 {
            continue;
        }
        match (avg(phase), spend.as_mut()) {
            (Some(a), Some(s)) => s.add(&a, count as f64),
            _ => spend = None,
        }
    }
    let spend = spend.map(ClassAmounts::rounded);
    let (days, binding) = match &spend {
        Some(s) => days_of(s, &budget.policy().limits),
        None => (None, None),
    };
    let text = forecast_text(papers, spend.as_ref(), days);
    Ok(Forecast {
        done_last_day,
        per_done_paper,
        phases,
        papers,
        spend,
        days,
        binding,
        text,
    })
}

/// The largest spend / limit over every limit set, and which limit.
fn days_of(s: &ClassAmounts, limits: &crate::store::SpendLimits) -> (Option<f64>, Option<String>) {
    let mut best: Option<(f64, String)> = None;
    let mut consider = |scope: &str, a: &Amounts, l: &UnitLimits| {
        let units = [
            ("usd", a.cost, l.usd),
            ("tokens", a.tokens, l.tokens.map(|t| t as f64)),
            ("requests", a.requests, l.requests.map(|t| t as f64)),
        ];
        for (unit, amount, limit) in units {
            let Some(limit) = limit else { continue };
            let days = if limit > 0.0 {
                amount / limit
            } else if amount > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            if best.as_ref().is_none_or(|(d, _)| days > *d) {
                best = Some((days, format!("{scope}_{unit}")));
            }
        }
    };
    consider("daily", &s.total(), &limits.daily);
    for c in ModelClass::ALL {
        consider(c.as_str(), s.of(c), limits.of(c));
    }
    match best {
        Some((d, b)) => (Some((d * 100.0).round() / 100.0), Some(b)),
        None => (None, None),
    }
}

fn forecast_text(papers: u64, spend: Option<&ClassAmounts>, days: Option<f64>) -> String {
    let noun = if papers == 1 { "paper" } else { "papers" };
    if papers == 0 {
        return "the queue is empty".into();
    }
    let Some(s) = spend else {
        return format!(
            "the {papers} {noun} in the queue: no finished phases in the last week to forecast from"
        );
    };
    let cost = s.total().cost;
    let mut text = format!("the {papers} {noun} in the queue will cost about ${cost:.2}");
    match days {
        Some(d) if d.is_finite() => {
            text.push_str(&format!(" and need {d:.1} days at today's budget"))
        }
        Some(_) => text.push_str(" and will not fit today's budget (a limit is 0)"),
        None => {}
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SpendLimits;

    #[test]
    fn days_follow_the_tightest_limit() {
        let s = ClassAmounts {
            cheap: Amounts {
                cost: 1.0,
                tokens: 1000.0,
                requests: 10.0,
            },
            expensive: Amounts {
                cost: 9.0,
                tokens: 500.0,
                requests: 3.0,
            },
        };
        let mut limits = SpendLimits::default();
        assert_eq!(days_of(&s, &limits), (None, None));
        limits.daily.usd = Some(5.0);
        limits.expensive.usd = Some(3.0);
        limits.cheap.requests = Some(100);
        assert_eq!(
            days_of(&s, &limits),
            (Some(3.0), Some("expensive_usd".into()))
        );
        assert_eq!(
            forecast_text(312, Some(&s), Some(2.34)),
            "the 312 papers in the queue will cost about $10.00 and need 2.3 days at today's budget"
        );
        assert_eq!(forecast_text(0, None, None), "the queue is empty");
    }
}
