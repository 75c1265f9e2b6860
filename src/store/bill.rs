//! Reading the spend ledger as a bill: `runner spend` (grouped by day,
//! model, phase or paper), the spend of one paper's executions, and which
//! phases finished when (for the averages and the forecast of `status`).
//!
//! A row is billed when it was (or may have been) sent: `ok`, `error` or
//! `reserved`. Tokens are the reported ones; cost is the known one (the
//! provider's figure or the price table's). Rows whose cost is unknown and
//! rows still reserved are counted apart, never summed as 0.

use super::db::Store;
use super::error::StoreError;
use super::ledger::ledger_time;
use super::phase::Phase;
use chrono::{DateTime, Utc};
use rusqlite::{named_params, params};

/// Ledger rows of one (day, model, profile, execution, currency) group.
#[derive(Debug, Clone, PartialEq)]
pub struct BillRow {
    /// `YYYY-MM-DD` (UTC) of `reserved_at`.
    pub day: String,
    pub model: String,
    pub profile: Option<String>,
    pub execution_id: String,
    /// Currency of the known costs (None: no known cost in the group).
    pub currency: Option<String>,
    /// Requests sent (or possibly sent): ok, error, reserved.
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Sum of the known costs.
    pub cost: f64,
    /// Settled rows whose cost is unknown.
    pub unknown_cost: u64,
    /// Rows still reserved (in flight, or left by a crash).
    pub unsettled: u64,
    /// Their worst case (priced ones only).
    pub unsettled_worst_cost: f64,
}

/// The whole ledger's spend of one (model, profile, currency).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpend {
    pub model: String,
    pub profile: Option<String>,
    pub currency: Option<String>,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
}

/// The spend of a set of executions under one profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileSpend {
    pub profile: Option<String>,
    pub requests: u64,
    pub tokens: u64,
    pub cost: f64,
    pub unknown_cost: u64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

const BILL_SQL: &str = "SELECT SUBSTR(reserved_at, 1, 10) AS day, model, profile, execution_id,
        currency,
        COUNT(*) AS requests,
        COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,
        COALESCE(SUM(completion_tokens), 0) AS completion_tokens,
        COALESCE(SUM(cost), 0) AS cost,
        SUM(CASE WHEN cost_source = 'unknown' THEN 1 ELSE 0 END) AS unknown_cost,
        SUM(CASE WHEN status = 'reserved' THEN 1 ELSE 0 END) AS unsettled,
        COALESCE(SUM(CASE WHEN status = 'reserved' THEN worst_cost ELSE 0 END), 0) AS unsettled_worst
     FROM llm_calls
     WHERE reserved_at >= :since AND status IN ('reserved', 'ok', 'error')
     GROUP BY SUBSTR(reserved_at, 1, 10), model, profile, execution_id, currency
     ORDER BY day, model, execution_id";

impl Store {
    /// The ledger since `since` (all of it for None), one row per (day,
    /// model, profile, execution, currency); callers group further.
    pub fn spend_bill(&self, since: Option<DateTime<Utc>>) -> Result<Vec<BillRow>, StoreError> {
        let since = since.map(ledger_time).unwrap_or_default();
        let mut guard = self.conn()?;
        let conn = guard.db();
        let e = |err| self.err("reading the bill", err);
        let rows = conn
            .all(BILL_SQL, named_params! {":since": since}, |r| {
                Ok(BillRow {
                    day: r.get("day")?,
                    model: r.get("model")?,
                    profile: r.get("profile")?,
                    execution_id: r.get("execution_id")?,
                    currency: r.get("currency")?,
                    requests: count(r.get("requests")?),
                    prompt_tokens: count(r.get("prompt_tokens")?),
                    completion_tokens: count(r.get("completion_tokens")?),
                    cost: super::round_money(r.get("cost")?),
                    unknown_cost: count(r.get::<Option<i64>>("unknown_cost")?.unwrap_or(0)),
                    unsettled: count(r.get::<Option<i64>>("unsettled")?.unwrap_or(0)),
                    unsettled_worst_cost: super::round_money(r.get("unsettled_worst")?),
                })
            })
            .map_err(e)?;
        Ok(rows)
    }

    /// The whole ledger's requests sent, tokens and known cost per model,
    /// profile and currency (for `/metrics`).
    pub fn spend_by_model(&self) -> Result<Vec<ModelSpend>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let e = |err| self.err("reading spend per model", err);
        // Grouped in the order of `llm_calls_totals` (an index-only scan,
        // no sort), then merged per (model, profile, currency) here.
        let rows = conn
            .all(
                "SELECT model, status, cost_source, currency, profile, COUNT(*) AS requests,
                        COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,
                        COALESCE(SUM(completion_tokens), 0) AS completion_tokens,
                        COALESCE(SUM(cost), 0) AS cost
                 FROM llm_calls
                 GROUP BY model, status, cost_source, currency, profile
                 ORDER BY model, status, cost_source, currency, profile",
                params![],
                |r| {
                    Ok((
                        r.get::<String>("status")?,
                        ModelSpend {
                            model: r.get("model")?,
                            profile: r.get("profile")?,
                            currency: r.get("currency")?,
                            requests: count(r.get("requests")?),
                            prompt_tokens: count(r.get("prompt_tokens")?),
                            completion_tokens: count(r.get("completion_tokens")?),
                            cost: r.get("cost")?,
                        },
                    ))
                },
            )
            .map_err(e)?;
        let mut merged: std::collections::BTreeMap<
            (String, Option<String>, Option<String>),
            ModelSpend,
        > = std::collections::BTreeMap::new();
        for (status, row) in rows {
            if !matches!(status.as_str(), "reserved" | "ok" | "error") {
                continue;
            }
            let key = (row.model.clone(), row.profile.clone(), row.currency.clone());
            match merged.get_mut(&key) {
                Some(m) => {
                    m.requests += row.requests;
                    m.prompt_tokens += row.prompt_tokens;
                    m.completion_tokens += row.completion_tokens;
                    m.cost += row.cost;
                }
                None => {
                    merged.insert(key, row);
                }
            }
        }
        let rows: Vec<ModelSpend> = merged
            .into_values()
            .map(|mut m| {
                m.cost = super::round_money(m.cost);
                m
            })
            .collect();
        Ok(rows)
    }

    /// What the executions under `prefix` (a paper id, or `<paper>/<phase>`)
    /// spent, per profile: every attempt and child, whenever it ran. The
    /// prefix is matched as a range on the execution id (index-friendly):
    /// ids from `prefix/` up to, not including, `prefix0` (`0` sorts right
    /// after `/`).
    pub fn spend_under(&self, prefix: &str) -> Result<Vec<ProfileSpend>, StoreError> {
        let mut all = self.spend_under_each(&[prefix])?;
        Ok(all.pop().unwrap_or_default())
    }

    /// [`Store::spend_under`] for each prefix (the forecast asks for
    /// hundreds): one statement per hundred prefixes, each prefix a range
    /// of a `VALUES` list joined to the ledger by execution id, so the cost
    /// is a few round trips on PostgreSQL, not one per prefix.
    pub fn spend_under_each(
        &self,
        prefixes: &[&str],
    ) -> Result<Vec<Vec<ProfileSpend>>, StoreError> {
        const CHUNK: usize = 100;
        let mut guard = self.conn()?;
        let conn = guard.db();
        let e = |err| self.err("reading papers' spend", err);
        let mut by_prefix: std::collections::HashMap<String, Vec<ProfileSpend>> =
            std::collections::HashMap::new();
        for chunk in prefixes.chunks(CHUNK) {
            let bounds: Vec<String> = chunk
                .iter()
                .flat_map(|p| [format!("{p}/"), format!("{p}0")])
                .collect();
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("(?{}, ?{})", 2 * i + 1, 2 * i + 2))
                .collect();
            // PostgreSQL estimates a range join of a hundred prefixes as
            // millions of rows and scans the ledger; LATERAL keeps it one
            // index range per prefix, as SQLite's nested loop does anyway.
            let sql = match conn.dialect() {
                super::sql::Dialect::Sqlite => format!(
                    "WITH r(lo, hi) AS (VALUES {})
                     SELECT r.lo AS lo, c.profile AS profile, COUNT(*) AS requests,
                            COALESCE(SUM(c.total_tokens), 0) AS tokens,
                            COALESCE(SUM(c.cost), 0) AS cost,
                            SUM(CASE WHEN c.cost_source = 'unknown' THEN 1 ELSE 0 END) AS unknown_cost
                     FROM r JOIN llm_calls c ON c.execution_id >= r.lo AND c.execution_id < r.hi
                     WHERE c.status IN ('reserved', 'ok', 'error')
                     GROUP BY r.lo, c.profile",
                    values.join(", ")
                ),
                super::sql::Dialect::Postgres => format!(
                    "SELECT r.lo AS lo, s.profile AS profile, s.requests AS requests,
                            s.tokens AS tokens, s.cost AS cost, s.unknown_cost AS unknown_cost
                     FROM (VALUES {}) AS r(lo, hi)
                     CROSS JOIN LATERAL (
                        SELECT c.profile AS profile, COUNT(*) AS requests,
                               COALESCE(SUM(c.total_tokens), 0) AS tokens,
                               COALESCE(SUM(c.cost), 0) AS cost,
                               SUM(CASE WHEN c.cost_source = 'unknown' THEN 1 ELSE 0 END) AS unknown_cost
                        FROM llm_calls c
                        WHERE c.execution_id >= r.lo AND c.execution_id < r.hi
                          AND c.status IN ('reserved', 'ok', 'error')
                        GROUP BY c.profile) s",
                    values.join(", ")
                ),
            };
            let args: Vec<&dyn rusqlite::ToSql> =
                bounds.iter().map(|b| b as &dyn rusqlite::ToSql).collect();
            let rows = conn
                .all(&sql, &args[..], |r| {
                    Ok((
                        r.get::<String>("lo")?,
                        ProfileSpend {
                            profile: r.get("profile")?,
                            requests: count(r.get("requests")?),
                            tokens: count(r.get("tokens")?),
                            cost: super::round_money(r.get("cost")?),
                            unknown_cost: count(r.get::<Option<i64>>("unknown_cost")?.unwrap_or(0)),
                        },
                    ))
                })
                .map_err(e)?;
            for (lo, spend) in rows {
                by_prefix.entry(lo).or_default().push(spend);
            }
        }
        Ok(prefixes
            .iter()
            .map(|p| {
                let mut v = by_prefix.get(&format!("{p}/")).cloned().unwrap_or_default();
                v.sort_by(|a, b| a.profile.cmp(&b.profile));
                v
            })
            .collect())
    }

    /// Tokens (prompt + completion) of `model`'s rows settled in
    /// `[from, to)` (benchmarks: tokens per minute at a limit).
    pub fn tokens_settled_between(
        &self,
        model: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        conn.row(
            "SELECT COALESCE(SUM(total_tokens), 0) AS tokens FROM llm_calls
             WHERE model = ?1 AND settled_at >= ?2 AND settled_at < ?3",
            params![model, ledger_time(from), ledger_time(to)],
            |r| r.get::<i64>("tokens"),
        )
        .map(count)
        .map_err(|e| self.err("reading tokens per minute", e))
    }

    /// Phases that finished at or after `since` (timeline text), most
    /// recent first, at most `limit`: (paper id, phase).
    pub fn finished_phases_since(
        &self,
        since: &str,
        limit: u64,
    ) -> Result<Vec<(String, Phase)>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let e = |err| self.err("reading finished phases", err);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // One index range per phase (`execution_events_finished`), each
        // newest first and cut at `limit`, merged here.
        let mut rows: Vec<(String, i64, String, String)> = Vec::new();
        for phase in Phase::ALL {
            rows.extend(
                conn.all(
                    "SELECT execution_id, phase, at, id FROM execution_events
                     WHERE kind = 'finished' AND phase = ?1 AND at >= ?2
                     ORDER BY at DESC, id DESC LIMIT ?3",
                    params![phase.name(), since, limit],
                    |r| {
                        Ok((
                            r.get::<String>("at")?,
                            r.get::<i64>("id")?,
                            r.get::<String>("execution_id")?,
                            r.get::<String>("phase")?,
                        ))
                    },
                )
                .map_err(e)?,
            );
        }
        rows.sort_by(|a, b| (&b.0, b.1).cmp(&(&a.0, a.1)));
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let rows = rows.into_iter().map(|(_, _, id, phase)| (id, phase));
        let mut out = Vec::new();
        for (id, phase) in rows {
            if let Some(p) = Phase::parse(&phase) {
                out.push((id, p));
            }
        }
        Ok(out)
    }
}

/// The paper id and phase a ledger row's execution id belongs to
/// (`<paper id>/<phase>/<attempt>…`; an arXiv id may contain `/`, so the
/// first `/<phase>/` segment after the `paper:` prefix decides). None for
/// executions outside the queue (`runner machine run`).
pub fn paper_phase_of(execution_id: &str) -> Option<(&str, Phase)> {
    if !execution_id.starts_with("paper:") {
        return None;
    }
    let mut best: Option<(usize, Phase)> = None;
    for p in Phase::ALL {
        let seg = format!("/{}/", p.name());
        if let Some(i) = execution_id.find(&seg) {
            if best.is_none_or(|(j, _)| i < j) {
                best = Some((i, p));
            }
        }
    }
    best.map(|(i, p)| (&execution_id[..i], p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids_name_their_paper_and_phase() {
        assert_eq!(
            paper_phase_of("paper:2401.00001/expensive/1/analyse@1/mechanism"),
            Some(("paper:2401.00001", Phase::Expensive))
        );
        assert_eq!(
            paper_phase_of("paper:hep-th/9901001/prep/2"),
            Some(("paper:hep-th/9901001", Phase::Prep))
        );
        assert_eq!(
            paper_phase_of("paper:x/wrap/1-r7/judge@3/wrap/1"),
            Some(("paper:x", Phase::Wrap))
        );
        assert_eq!(paper_phase_of("run-123"), None);
        assert_eq!(paper_phase_of("paper:x"), None);
    }
}
