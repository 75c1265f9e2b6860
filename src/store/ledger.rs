//! The spend ledger's table (`llm_calls`): reserving a row before a request
//! is sent, settling it after, finding a settled response to reuse, and
//! counting what a budget day sent.
//!
//! What a row means (reserve before send, so a crash never under-counts;
//! reuse instead of paying twice) is decided in `llm::ledger` and
//! `runner::budget`; this module only stores and reads rows. Every
//! timestamp (`reserved_at`, `settled_at`) comes from the store's injected
//! clock, so the budget day a row falls in is the one tests set.

use super::db::Store;
use super::error::StoreError;
use super::sql::Db;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::named_params;

/// A ledger row's status, as stored in `llm_calls.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    /// Reserved before sending; in flight, or left by a crash after it.
    Reserved,
    /// The provider answered; `response` holds the result.
    Ok,
    /// The attempt failed; `error_kind`/`error_message` say how.
    Error,
    /// A settled response of an earlier run was reused: nothing was sent.
    Reused,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Reserved => "reserved",
            CallStatus::Ok => "ok",
            CallStatus::Error => "error",
            CallStatus::Reused => "reused",
        }
    }
}

/// Where a settled row's `cost` came from, as stored in
/// `llm_calls.cost_source` (NULL only while a row is reserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// The provider's own figure (OpenRouter's `usage.cost`).
    Provider,
    /// The reported tokens times the profile's `price`.
    PriceTable,
    /// Neither: the profile has no price and the provider sent no cost, or
    /// the provider reported no usage (e.g. the request timed out).
    Unknown,
    /// Nothing billable: a reused response, or a request the provider
    /// refused with an HTTP error status.
    None,
}

impl CostSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CostSource::Provider => "provider",
            CostSource::PriceTable => "price_table",
            CostSource::Unknown => "unknown",
            CostSource::None => "none",
        }
    }
}

/// What is known of a call before its request is sent.
#[derive(Debug, Clone)]
pub struct LlmReservation {
    pub execution_id: String,
    pub machine: String,
    pub state: String,
    pub step: u64,
    pub sample: u32,
    pub attempt: u32,
    pub agent: String,
    pub profile: Option<String>,
    pub provider: String,
    pub model: String,
    pub request_hash: String,
    pub fallback_from: Option<String>,
}

/// The columns a settled row gets.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmSettlement {
    /// [`CallStatus::Ok`] or [`CallStatus::Error`].
    pub status: CallStatus,
    pub http_status: Option<u16>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    pub cost: Option<f64>,
    /// Where `cost` came from.
    pub cost_source: CostSource,
    /// Currency of `cost` (ISO 4217 code); None when the cost is unknown.
    pub currency: Option<String>,
    pub latency_ms: u64,
    pub retry_after: Option<f64>,
    /// The parsed result of a successful call (JSON), for reuse.
    pub response: Option<String>,
}

/// Settled rows of one model whose cost is unknown, for `runner status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnknownCostCalls {
    pub model: String,
    pub profile: Option<String>,
    pub calls: u64,
    /// Of those, answers that reported no token usage (a price would not
    /// help: the provider sent nothing to price).
    pub no_usage: u64,
}

/// Ledger rows per profile (`None`: the catalog default was used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileCalls {
    pub profile: Option<String>,
    pub calls: u64,
}

/// A time in the ledger's text format: fixed-width RFC 3339 UTC with
/// microseconds and `Z`, so text order is time order (the `llm_calls_dash`
/// index serves range queries on it).
pub fn ledger_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// "Now" from the injected clock, in the ledger's format.
    fn ledger_now(&self) -> String {
        let t = DateTime::<Utc>::from_timestamp_millis(self.now_ms()).unwrap_or_default();
        ledger_time(t)
    }

    /// The response (JSON) of the latest successful row for the same
    /// request of the same state run (execution, state, step, request
    /// hash), if one exists.
    pub fn reusable_llm_response(&self, r: &LlmReservation) -> Result<Option<String>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        conn.one(
            "SELECT response FROM llm_calls
             WHERE execution_id = :execution_id AND state = :state AND step = :step
               AND request_hash = :request_hash AND status = 'ok'
             ORDER BY id DESC LIMIT 1",
            named_params! {
                ":execution_id": r.execution_id,
                ":state": r.state,
                ":step": to_i64(r.step),
                ":request_hash": r.request_hash,
            },
            |row| row.get::<Option<String>>("response"),
        )
        .map(Option::flatten)
        .map_err(|e| self.err("reading ledger", e))
    }

    /// Insert a row for `r` with `status` (reserved before sending, or
    /// reused — then settled at once); returns its id.
    pub fn insert_llm_call(
        &self,
        r: &LlmReservation,
        status: CallStatus,
    ) -> Result<i64, StoreError> {
        self.write_locked("reserving ledger row", |tx| {
            self.insert_llm_row(tx, r, status, None)
        })
    }

    /// The insert of [`Store::insert_llm_call`] inside `tx`, with the
    /// request's worst case when it is known (`store::spend`).
    pub(super) fn insert_llm_row(
        &self,
        tx: &Db<'_>,
        r: &LlmReservation,
        status: CallStatus,
        worst: Option<&super::spend::CallWorst>,
    ) -> Result<i64, StoreError> {
        let at = self.ledger_now();
        let settled = (status == CallStatus::Reused).then(|| at.clone());
        // A reused response sent nothing: settled at once, costing nothing.
        let (cost, cost_source) = match status {
            CallStatus::Reused => (Some(0.0), Some(CostSource::None.as_str())),
            _ => (None, None),
        };
        tx.row(
            "INSERT INTO llm_calls(execution_id, machine, state, step, sample, attempt, agent,
                                   profile, provider, model, request_hash, fallback_from,
                                   status, reserved_at, settled_at, cost, cost_source,
                                   worst_tokens, worst_cost)
             VALUES (:execution_id, :machine, :state, :step, :sample, :attempt, :agent,
                     :profile, :provider, :model, :request_hash, :fallback_from,
                     :status, :reserved_at, :settled_at, :cost, :cost_source,
                     :worst_tokens, :worst_cost)
             RETURNING id",
            named_params! {
                ":execution_id": r.execution_id,
                ":machine": r.machine,
                ":state": r.state,
                ":step": to_i64(r.step),
                ":sample": r.sample,
                ":attempt": r.attempt,
                ":agent": r.agent,
                ":profile": r.profile,
                ":provider": r.provider,
                ":model": r.model,
                ":request_hash": r.request_hash,
                ":fallback_from": r.fallback_from,
                ":status": status.as_str(),
                ":reserved_at": at,
                ":settled_at": settled,
                ":cost": cost,
                ":cost_source": cost_source,
                ":worst_tokens": worst.map(|w| to_i64(w.tokens)),
                ":worst_cost": worst.and_then(|w| w.usd),
            },
            |row| row.get::<i64>("id"),
        )
        .map_err(|e| self.err("reserving ledger row", e))
    }

    /// Settle the reserved row `id` with the call's outcome.
    pub fn settle_llm_call(&self, id: i64, s: &LlmSettlement) -> Result<(), StoreError> {
        let at = self.ledger_now();
        self.write_locked("settling ledger row", |tx| {
            tx.exec(
                "UPDATE llm_calls SET status = :status, http_status = :http_status,
                        error_kind = :error_kind, error_message = :error_message,
                        prompt_tokens = :prompt_tokens, completion_tokens = :completion_tokens,
                        total_tokens = :total_tokens, cost = :cost, cost_source = :cost_source,
                        currency = :currency, latency_ms = :latency_ms,
                        retry_after = :retry_after, response = :response, settled_at = :settled_at
                 WHERE id = :id",
                named_params! {
                    ":id": id,
                    ":status": s.status.as_str(),
                    ":http_status": s.http_status,
                    ":error_kind": s.error_kind,
                    ":error_message": s.error_message,
                    ":prompt_tokens": s.prompt_tokens.map(to_i64),
                    ":completion_tokens": s.completion_tokens.map(to_i64),
                    ":total_tokens": s.total_tokens.map(to_i64),
                    ":cost": s.cost,
                    ":cost_source": s.cost_source.as_str(),
                    ":currency": s.currency,
                    ":latency_ms": to_i64(s.latency_ms),
                    ":retry_after": s.retry_after,
                    ":response": s.response,
                    ":settled_at": at,
                },
            )
            .map_err(|e| self.err("settling ledger row", e))?;
            Ok(())
        })
    }

    /// Requests that were (or may have been) sent in `[start, end)`, by
    /// profile: rows `ok`, `error` and `reserved` (in flight, or left by a
    /// crash after the reservation — the request may have reached the
    /// provider), by the time they were reserved. `reused` rows sent
    /// nothing and are not counted.
    pub fn sent_llm_calls(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<ProfileCalls>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all(
                SENT_CALLS_SQL,
                named_params! {":start": ledger_time(start), ":end": ledger_time(end)},
                |r| {
                    Ok(ProfileCalls {
                        profile: r.get("profile")?,
                        calls: u64::try_from(r.get::<i64>("calls")?).unwrap_or(0),
                    })
                },
            )
            .map_err(|e| self.err("reading the budget", e))?;
        Ok(rows)
    }
}

impl Store {
    /// Settled rows reserved in `[start, end)` whose cost is unknown, by
    /// model and profile (most calls first): what `runner status` flags so
    /// an operator adds `price:` to those profiles.
    pub fn unknown_cost_calls(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<UnknownCostCalls>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all(
                "SELECT model, profile, COUNT(*) AS calls,
                        CAST(SUM(CASE WHEN status = 'ok' AND prompt_tokens IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS no_usage
                 FROM llm_calls
                 WHERE reserved_at >= :start AND reserved_at < :end AND cost_source = 'unknown'
                 GROUP BY model, profile ORDER BY calls DESC, model, profile",
                named_params! {":start": ledger_time(start), ":end": ledger_time(end)},
                |r| {
                    Ok(UnknownCostCalls {
                        model: r.get("model")?,
                        profile: r.get("profile")?,
                        calls: u64::try_from(r.get::<i64>("calls")?).unwrap_or(0),
                        no_usage: u64::try_from(r.get::<i64>("no_usage")?).unwrap_or(0),
                    })
                },
            )
            .map_err(|e| self.err("reading unknown-cost calls", e))?;
        Ok(rows)
    }
}

const SENT_CALLS_SQL: &str = "SELECT profile, COUNT(*) AS calls FROM llm_calls
     WHERE reserved_at >= :start AND reserved_at < :end
       AND status IN ('reserved', 'ok', 'error')
     GROUP BY profile";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ManualClock, StoreOptions};
    use std::sync::Arc;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn store(clock: &ManualClock) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            clock: Arc::new(clock.clone()),
            ..Default::default()
        };
        let s = Store::open(&crate::store::pg::test_db(dir.path(), "l.db"), &opts).unwrap();
        (dir, s)
    }

    fn reservation(state: &str, hash: &str, profile: Option<&str>) -> LlmReservation {
        LlmReservation {
            execution_id: "paper:e1/prep".into(),
            machine: "m".into(),
            state: state.into(),
            step: 3,
            sample: 0,
            attempt: 1,
            agent: "a".into(),
            profile: profile.map(str::to_string),
            provider: "p".into(),
            model: "x".into(),
            request_hash: hash.into(),
            fallback_from: None,
        }
    }

    fn settled(status: CallStatus, response: Option<&str>) -> LlmSettlement {
        LlmSettlement {
            status,
            http_status: Some(200),
            error_kind: None,
            error_message: None,
            prompt_tokens: Some(10),
            completion_tokens: Some(5),
            total_tokens: Some(15),
            cost: Some(0.25),
            cost_source: CostSource::PriceTable,
            currency: Some("USD".into()),
            latency_ms: 42,
            retry_after: None,
            response: response.map(str::to_string),
        }
    }

    #[test]
    fn reserve_settle_and_reuse_round_trip() {
        let clock = ManualClock::at(at("2024-05-10T12:00:00Z").timestamp_millis());
        let (_d, s) = store(&clock);
        let r = reservation("s", "h1", Some("cheap"));
        assert_eq!(s.reusable_llm_response(&r).unwrap(), None);
        let id = s.insert_llm_call(&r, CallStatus::Reserved).unwrap();
        // Reserved, not settled: nothing to reuse yet.
        assert_eq!(s.reusable_llm_response(&r).unwrap(), None);
        s.settle_llm_call(id, &settled(CallStatus::Ok, Some("{\"a\":1}")))
            .unwrap();
        assert_eq!(
            s.reusable_llm_response(&r).unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        // Another request hash, state or step is a different request.
        assert_eq!(
            s.reusable_llm_response(&reservation("s", "h2", None))
                .unwrap(),
            None
        );
        assert_eq!(
            s.reusable_llm_response(&reservation("t", "h1", None))
                .unwrap(),
            None
        );
        // A failed settlement is never reused; the latest success is.
        let id2 = s.insert_llm_call(&r, CallStatus::Reserved).unwrap();
        let mut failed = settled(CallStatus::Error, None);
        failed.error_kind = Some("server_error".into());
        s.settle_llm_call(id2, &failed).unwrap();
        assert_eq!(
            s.reusable_llm_response(&r).unwrap().as_deref(),
            Some("{\"a\":1}")
        );
        // The settled columns, read back through the operator view.
        let calls = s.paper_llm_calls("paper:e1").unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].status, "ok");
        assert_eq!(calls[0].total_tokens, Some(15));
        assert_eq!(calls[0].reserved_at, "2024-05-10T12:00:00.000000Z");
        assert_eq!(calls[1].error_kind.as_deref(), Some("server_error"));
    }

    #[test]
    fn sent_calls_count_one_day_window_by_profile() {
        let clock = ManualClock::at(0);
        let (_d, s) = store(&clock);
        let add = |t: &str, profile: Option<&str>, status: CallStatus| {
            clock.set(at(t).timestamp_millis());
            let id = s
                .insert_llm_call(&reservation("s", t, profile), CallStatus::Reserved)
                .unwrap();
            if status != CallStatus::Reserved {
                s.settle_llm_call(id, &settled(status, None)).unwrap();
            }
        };
        add("2024-05-10T06:29:59.999Z", Some("cheap"), CallStatus::Ok);
        add("2024-05-10T06:30:00Z", Some("cheap"), CallStatus::Ok);
        add("2024-05-10T07:00:00Z", Some("cheap"), CallStatus::Error);
        add("2024-05-10T08:00:00Z", None, CallStatus::Reserved);
        add("2024-05-11T06:29:59Z", Some("expensive"), CallStatus::Ok);
        add("2024-05-11T06:30:00Z", Some("cheap"), CallStatus::Ok);
        // Reused rows sent nothing.
        clock.set(at("2024-05-10T09:00:00Z").timestamp_millis());
        s.insert_llm_call(&reservation("s", "r", Some("cheap")), CallStatus::Reused)
            .unwrap();

        let mut got = s
            .sent_llm_calls(at("2024-05-10T06:30:00Z"), at("2024-05-11T06:30:00Z"))
            .unwrap();
        got.sort_by(|a, b| a.profile.cmp(&b.profile));
        let row = |p: Option<&str>, calls| ProfileCalls {
            profile: p.map(str::to_string),
            calls,
        };
        assert_eq!(
            got,
            vec![
                row(None, 1),
                row(Some("cheap"), 2),
                row(Some("expensive"), 1)
            ]
        );
        assert!(s
            .sent_llm_calls(at("2024-05-12T00:00:00Z"), at("2024-05-13T00:00:00Z"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn cost_columns_round_trip_and_unknown_costs_are_counted_by_model() {
        let clock = ManualClock::at(at("2024-05-10T12:00:00Z").timestamp_millis());
        let (_d, s) = store(&clock);
        let settle = |model: &str, profile: Option<&str>, cost: Option<f64>, src: CostSource| {
            let mut r = reservation("s", model, profile);
            r.model = model.into();
            let id = s.insert_llm_call(&r, CallStatus::Reserved).unwrap();
            let mut row = settled(CallStatus::Ok, None);
            row.cost = cost;
            row.cost_source = src;
            row.currency = cost.map(|_| "EUR".to_string());
            s.settle_llm_call(id, &row).unwrap();
        };
        settle(
            "priced",
            Some("cheap"),
            Some(0.0045),
            CostSource::PriceTable,
        );
        settle("free", Some("judge"), None, CostSource::Unknown);
        settle("free", Some("judge"), None, CostSource::Unknown);
        settle("other", None, None, CostSource::Unknown);
        s.insert_llm_call(&reservation("s", "r", Some("cheap")), CallStatus::Reused)
            .unwrap();
        // In flight: no cost source yet, and not counted as unknown.
        s.insert_llm_call(&reservation("s", "q", Some("cheap")), CallStatus::Reserved)
            .unwrap();
        let calls = s.paper_llm_calls("paper:e1").unwrap();
        assert_eq!(calls[0].cost, Some(0.0045));
        assert_eq!(calls[0].cost_source.as_deref(), Some("price_table"));
        assert_eq!(calls[0].currency.as_deref(), Some("EUR"));
        assert_eq!(calls[1].cost, None);
        assert_eq!(calls[1].cost_source.as_deref(), Some("unknown"));
        assert_eq!(calls[1].currency, None);
        assert_eq!(calls[4].status, "reused");
        assert_eq!(calls[4].cost, Some(0.0));
        assert_eq!(calls[4].cost_source.as_deref(), Some("none"));
        assert_eq!(calls[5].cost_source, None);
        let unknown = s
            .unknown_cost_calls(at("2024-05-10T00:00:00Z"), at("2024-05-11T00:00:00Z"))
            .unwrap();
        let row = |m: &str, p: Option<&str>, calls| UnknownCostCalls {
            model: m.into(),
            profile: p.map(str::to_string),
            calls,
            no_usage: 0,
        };
        assert_eq!(
            unknown,
            vec![row("free", Some("judge"), 2), row("other", None, 1)]
        );
        assert!(s
            .unknown_cost_calls(at("2024-05-11T00:00:00Z"), at("2024-05-12T00:00:00Z"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_budget_query_uses_the_time_index() {
        let (_d, s) = store(&ManualClock::at(0));
        let mut guard = s.conn().unwrap();
        let db = guard.db();
        let Some(conn) = db.sqlite() else {
            return; // a SQLite query plan; PostgreSQL plans its own
        };
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {SENT_CALLS_SQL}"))
            .unwrap()
            .query_map(named_params! {":start": "a", ":end": "b"}, |r| {
                r.get::<_, String>("detail")
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            plan.iter().any(|p| p.contains("llm_calls_dash")),
            "{plan:?}"
        );
    }
}
