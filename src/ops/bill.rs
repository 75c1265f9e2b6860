//! `runner spend`: the bill, from the spend ledger, grouped by day, model,
//! phase or paper, as a table, JSON or CSV.
//!
//! What is counted (`store::bill`): every request that was or may have been
//! sent (ok, error, reserved), its reported tokens and its known cost.
//! Unknown costs are never summed as 0: each group says how many of its
//! calls have no known cost, and how many are still reserved (in flight or
//! left by a crash) with their worst case.

use super::{fit, OpsError};
use crate::store::{paper_phase_of, BillRow, Store};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How the bill is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BillBy {
    /// UTC day the request was reserved.
    #[default]
    Day,
    /// Model id as sent.
    Model,
    /// Pipeline phase (prep, expensive, wrap); `-` for machine runs.
    Phase,
    /// Paper (queue id); `-` for machine runs.
    Paper,
}

impl BillBy {
    pub fn as_str(self) -> &'static str {
        match self {
            BillBy::Day => "day",
            BillBy::Model => "model",
            BillBy::Phase => "phase",
            BillBy::Paper => "paper",
        }
    }
}

/// One group of the bill.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BillGroup {
    pub key: String,
    /// Requests sent (or possibly sent).
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Known cost; in `currency` when every known cost shares one.
    pub cost: f64,
    pub currency: Option<String>,
    /// Known cost per currency (one entry unless profiles mix them).
    pub costs: BTreeMap<String, f64>,
    /// Settled calls whose cost is unknown (not in `cost`).
    pub unknown_cost: u64,
    /// Calls still reserved (in flight, or left by a crash).
    pub unsettled: u64,
    /// Their worst-case cost (priced ones).
    pub unsettled_worst_cost: f64,
}

impl BillGroup {
    fn add(&mut self, r: &BillRow) {
        self.requests += r.requests;
        self.prompt_tokens += r.prompt_tokens;
        self.completion_tokens += r.completion_tokens;
        self.total_tokens += r.prompt_tokens + r.completion_tokens;
        self.cost += r.cost;
        if let Some(c) = &r.currency {
            *self.costs.entry(c.clone()).or_insert(0.0) += r.cost;
        }
        self.unknown_cost += r.unknown_cost;
        self.unsettled += r.unsettled;
        self.unsettled_worst_cost += r.unsettled_worst_cost;
    }

    fn finish(&mut self) {
        let round = crate::store::round_money;
        self.cost = round(self.cost);
        self.unsettled_worst_cost = round(self.unsettled_worst_cost);
        for v in self.costs.values_mut() {
            *v = round(*v);
        }
        self.currency = match self.costs.len() {
            1 => self.costs.keys().next().cloned(),
            _ => None,
        };
    }
}

/// The bill.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bill {
    /// The first moment counted (RFC 3339), None: the whole ledger.
    pub since: Option<String>,
    pub by: BillBy,
    /// Groups in key order.
    pub groups: Vec<BillGroup>,
    pub total: BillGroup,
}

/// `--since`: a UTC day (`2024-05-10`) or an RFC 3339 time.
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{s:?} is not a date: use YYYY-MM-DD (UTC) or an RFC 3339 time"))
}

/// The bill since `since` (all of the ledger for None), grouped `by`.
pub fn bill(store: &Store, since: Option<DateTime<Utc>>, by: BillBy) -> Result<Bill, OpsError> {
    let rows = store.spend_bill(since)?;
    let mut groups: BTreeMap<String, BillGroup> = BTreeMap::new();
    let mut total = BillGroup {
        key: "total".into(),
        ..BillGroup::default()
    };
    for r in &rows {
        let key = match by {
            BillBy::Day => r.day.clone(),
            BillBy::Model => r.model.clone(),
            BillBy::Phase => paper_phase_of(&r.execution_id)
                .map_or_else(|| "-".to_string(), |(_, p)| p.name().to_string()),
            BillBy::Paper => paper_phase_of(&r.execution_id)
                .map_or_else(|| "-".to_string(), |(id, _)| id.to_string()),
        };
        let g = groups.entry(key.clone()).or_insert_with(|| BillGroup {
            key,
            ..BillGroup::default()
        });
        g.add(r);
        total.add(r);
    }
    let mut groups: Vec<BillGroup> = groups.into_values().collect();
    for g in &mut groups {
        g.finish();
    }
    total.finish();
    Ok(Bill {
        since: since.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        by,
        groups,
        total,
    })
}

fn money(g: &BillGroup) -> String {
    match (&g.currency, g.costs.len()) {
        (Some(c), _) => format!("{:.6} {c}", g.cost),
        (None, 0) => format!("{:.6}", g.cost),
        (None, _) => g
            .costs
            .iter()
            .map(|(c, v)| format!("{v:.6} {c}"))
            .collect::<Vec<_>>()
            .join(" + "),
    }
}

/// The bill for a terminal (lines of at most 80 columns).
pub fn render_human(b: &Bill) -> String {
    let mut o = String::new();
    let since = b
        .since
        .as_deref()
        .map_or_else(|| "the whole ledger".to_string(), |s| format!("since {s}"));
    let _ = writeln!(o, "spend by {}, {since}", b.by.as_str());
    let _ = writeln!(
        o,
        "  {:<24} {:>6} {:>10} {:>10} {:>20}",
        b.by.as_str().to_uppercase(),
        "CALLS",
        "TOKENS IN",
        "TOKENS OUT",
        "COST"
    );
    for g in b.groups.iter().chain(std::iter::once(&b.total)) {
        let key = if std::ptr::eq(g, &b.total) {
            "TOTAL".to_string()
        } else {
            g.key.clone()
        };
        let line = format!(
            "  {:<24} {:>6} {:>10} {:>10} {:>20}",
            fit(&key, 24),
            g.requests,
            g.prompt_tokens,
            g.completion_tokens,
            money(g)
        );
        let _ = writeln!(o, "{}", fit(&line, 80));
    }
    let t = &b.total;
    if t.unknown_cost > 0 {
        let calls = if t.unknown_cost == 1 { "call" } else { "calls" };
        let _ = writeln!(
            o,
            "{}",
            fit(
                &format!(
                    "unknown cost: {} {calls} not in the totals (no price, or no usage reported)",
                    t.unknown_cost
                ),
                80
            )
        );
    }
    if t.unsettled > 0 {
        let calls = if t.unsettled == 1 { "call" } else { "calls" };
        let _ = writeln!(
            o,
            "{}",
            fit(
                &format!(
                    "unsettled: {} {calls} still reserved (worst case {:.6}), not in the totals",
                    t.unsettled, t.unsettled_worst_cost
                ),
                80
            )
        );
    }
    o
}

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote, a line
/// break or surrounding spaces; quotes doubled.
fn csv_field(s: &str) -> String {
    let needs = s.contains([',', '"', '\n', '\r']) || s.trim() != s;
    if needs {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The bill as CSV: a header, then one line per group (no total line, so
/// summing a column gives the total). Lines end with CRLF (RFC 4180).
pub fn render_csv(b: &Bill) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "{},requests,prompt_tokens,completion_tokens,total_tokens,cost,currency,unknown_cost_calls,unsettled_calls,unsettled_worst_cost\r\n",
        b.by.as_str()
    ));
    for g in &b.groups {
        let currency = match (&g.currency, g.costs.len()) {
            (Some(c), _) => c.clone(),
            (None, 0) => String::new(),
            (None, _) => "mixed".into(),
        };
        let fields = [
            csv_field(&g.key),
            g.requests.to_string(),
            g.prompt_tokens.to_string(),
            g.completion_tokens.to_string(),
            g.total_tokens.to_string(),
            format!("{:.9}", g.cost),
            csv_field(&currency),
            g.unknown_cost.to_string(),
            g.unsettled.to_string(),
            format!("{:.9}", g.unsettled_worst_cost),
        ];
        o.push_str(&fields.join(","));
        o.push_str("\r\n");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("gpt-4o"), "gpt-4o");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(" pad"), "\" pad\"");
    }

    #[test]
    fn since_takes_a_day_or_a_time() {
        assert_eq!(
            parse_since("2024-05-10").unwrap().to_rfc3339(),
            "2024-05-10T00:00:00+00:00"
        );
        assert_eq!(
            parse_since("2024-05-10T06:30:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2024-05-10T04:30:00+00:00"
        );
        assert!(parse_since("yesterday").is_err());
        assert!(parse_since("2024-13-01").is_err());
    }
}
