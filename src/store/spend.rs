//! Budgets in money, tokens and requests (issue #16): what the current
//! budget day has committed — the spend ledger plus the worst case of every
//! phase still in flight, in every process sharing the database — and the
//! one atomic check-and-reserve a request makes against it.
//!
//! Counting rules (one place, used by admission, `status` and `/metrics`):
//! - a ledger row counts in the budget day in which it was reserved, when it
//!   was (or may have been) sent: status `ok`, `error` or `reserved`
//!   (in flight, or left by a crash); `reused` rows sent nothing;
//! - a `reserved` row counts at its worst case (`worst_tokens`,
//!   `worst_cost`, written with the reservation) until it is settled: spend
//!   is never under-counted across a crash;
//! - a settled row counts its reported tokens and its cost; when they are
//!   unknown (no usage reported, a timeout) it keeps counting its worst
//!   case; a request the provider refused with an HTTP error (cost source
//!   `none`) counts as a request only;
//! - a live hold (`budget_holds`, see [`super::holds`]) counts what its
//!   phase may still reserve; a hold whose claim has ended counts nothing.
//!
//! Money is counted in the unit of the profiles' prices (`USD` by default);
//! no exchange rate is applied. A cost that cannot be bounded (a profile
//! without `price:`) is never summed as 0 against a money limit: a phase or
//! a request whose worst case has no price is refused while a money limit
//! applies to its class (`Unit::Unpriced`).

use super::db::Store;
use super::error::StoreError;
use super::ledger::{ledger_time, LlmReservation};
use crate::store::sql::Db;
use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use rusqlite::{named_params, params};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A budget class of model profiles (`budget.classes` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelClass {
    Cheap,
    Expensive,
}

impl ModelClass {
    pub const ALL: [ModelClass; 2] = [ModelClass::Cheap, ModelClass::Expensive];

    /// The name used in the file, the ledger and `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelClass::Cheap => "cheap",
            ModelClass::Expensive => "expensive",
        }
    }
}

impl fmt::Display for ModelClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModelClass {
    type Err = String;

    /// The one parser of a `budget.classes` value.
    fn from_str(s: &str) -> Result<ModelClass, String> {
        match s {
            "cheap" => Ok(ModelClass::Cheap),
            "expensive" => Ok(ModelClass::Expensive),
            _ => Err(format!(
                "{s:?} is not a class: expected \"cheap\" or \"expensive\""
            )),
        }
    }
}

/// The class of a profile: its entry in `classes`, else expensive when the
/// name contains "expensive", else cheap. A call without a profile name
/// (the catalog default) is cheap.
pub fn class_of(classes: &BTreeMap<String, ModelClass>, profile: Option<&str>) -> ModelClass {
    let Some(profile) = profile else {
        return ModelClass::Cheap;
    };
    match classes.get(profile) {
        Some(c) => *c,
        None if profile.contains("expensive") => ModelClass::Expensive,
        None => ModelClass::Cheap,
    }
}

/// The budget day containing `now`: [start, next start), the day starting
/// at `day_start` UTC.
pub fn budget_day(now: DateTime<Utc>, day_start: NaiveTime) -> (DateTime<Utc>, DateTime<Utc>) {
    let today = now.date_naive().and_time(day_start).and_utc();
    let start = if today > now {
        today - TimeDelta::days(1)
    } else {
        today
    };
    (start, start + TimeDelta::days(1))
}

/// One scope's daily limits (None = unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct UnitLimits {
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
    /// In the currency of the profiles' prices (USD by default).
    pub usd: Option<f64>,
}

impl UnitLimits {
    pub fn any(&self) -> bool {
        self.requests.is_some() || self.tokens.is_some() || self.usd.is_some()
    }
}

/// Daily limits over all classes and per class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SpendLimits {
    pub daily: UnitLimits,
    pub cheap: UnitLimits,
    pub expensive: UnitLimits,
}

impl SpendLimits {
    pub fn of(&self, class: ModelClass) -> &UnitLimits {
        match class {
            ModelClass::Cheap => &self.cheap,
            ModelClass::Expensive => &self.expensive,
        }
    }

    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.daily.any() || self.cheap.any() || self.expensive.any()
    }

    /// Whether a money limit applies to `class` (its own or the daily one).
    pub fn money_limits(&self, class: ModelClass) -> bool {
        self.daily.usd.is_some() || self.of(class).usd.is_some()
    }
}

/// What the store needs to count and admit spend: the limits, the day
/// start and the profiles' classes (the resolved `[budget]` settings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpendPolicy {
    pub limits: SpendLimits,
    pub day_start: NaiveTime,
    pub classes: BTreeMap<String, ModelClass>,
}

impl SpendPolicy {
    pub fn class_of(&self, profile: Option<&str>) -> ModelClass {
        class_of(&self.classes, profile)
    }

    pub fn day_bounds(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        budget_day(now, self.day_start)
    }
}

/// An amount in the units a budget counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Spend {
    pub requests: u64,
    pub tokens: u64,
    /// Known (or worst-case) money; rows and holds without a price are
    /// counted in `unpriced` instead.
    pub usd: f64,
    /// Rows and holds whose cost has no bound (their profile has no price).
    pub unpriced: u64,
}

impl Spend {
    pub fn add(&mut self, o: &Spend) {
        self.requests = self.requests.saturating_add(o.requests);
        self.tokens = self.tokens.saturating_add(o.tokens);
        self.usd = round_money(self.usd + o.usd);
        self.unpriced = self.unpriced.saturating_add(o.unpriced);
    }

    pub fn plus(mut self, o: &Spend) -> Spend {
        self.add(o);
        self
    }
}

/// One `T` per budget class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PerClass<T> {
    pub cheap: T,
    pub expensive: T,
}

impl<T> PerClass<T> {
    pub fn of(&self, class: ModelClass) -> &T {
        match class {
            ModelClass::Cheap => &self.cheap,
            ModelClass::Expensive => &self.expensive,
        }
    }

    pub fn of_mut(&mut self, class: ModelClass) -> &mut T {
        match class {
            ModelClass::Cheap => &mut self.cheap,
            ModelClass::Expensive => &mut self.expensive,
        }
    }
}

/// An amount per class.
pub type ClassSpend = PerClass<Spend>;

impl ClassSpend {
    pub fn total(&self) -> Spend {
        self.cheap.plus(&self.expensive)
    }

    pub fn plus(mut self, o: &ClassSpend) -> ClassSpend {
        self.cheap.add(&o.cheap);
        self.expensive.add(&o.expensive);
        self
    }
}

/// A worst case to admit in one class: requests, tokens and money (None:
/// the profile has no price, so the money cannot be bounded). The default
/// is nothing at all: zero requests, tokens and money (a known zero, so
/// adding priced needs to it keeps them priced).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Need {
    pub requests: u64,
    pub tokens: u64,
    pub usd: Option<f64>,
}

impl Default for Need {
    fn default() -> Need {
        Need {
            requests: 0,
            tokens: 0,
            usd: Some(0.0),
        }
    }
}

impl Need {
    pub fn is_zero(&self) -> bool {
        self.requests == 0 && self.tokens == 0 && self.usd.is_none_or(|u| u <= 0.0)
    }

    /// `self` + `o` (the money unknown when either is).
    pub fn plus(self, o: &Need) -> Need {
        Need {
            requests: self.requests.saturating_add(o.requests),
            tokens: self.tokens.saturating_add(o.tokens),
            usd: match (self.usd, o.usd) {
                (Some(a), Some(b)) => Some(round_money(a + b)),
                _ => None,
            },
        }
    }

    /// `self` × `n`.
    pub fn times(self, n: u64) -> Need {
        Need {
            requests: self.requests.saturating_mul(n),
            tokens: self.tokens.saturating_mul(n),
            usd: self.usd.map(|u| round_money(u * n as f64)),
        }
    }
}

/// A worst case per class (a phase's, or one request's).
pub type ClassNeed = PerClass<Need>;

impl ClassNeed {
    /// Only `need`, in `class`.
    pub fn one(class: ModelClass, need: Need) -> ClassNeed {
        let mut c = ClassNeed::default();
        *c.of_mut(class) = need;
        c
    }

    pub fn is_zero(&self) -> bool {
        self.cheap.is_zero() && self.expensive.is_zero()
    }
}

/// A unit of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Requests,
    Tokens,
    Usd,
    /// A money limit applies but the worst case has no price.
    Unpriced,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Requests => "requests",
            Unit::Tokens => "tokens",
            Unit::Usd => "usd",
            Unit::Unpriced => "unpriced",
        }
    }
}

/// Why a worst case does not fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    /// The class whose limit it breaks; None: the daily limit over all.
    pub class: Option<ModelClass>,
    pub unit: Unit,
    /// The worst case asked for, in `unit`.
    pub need: f64,
    /// What is left of the limit (never negative).
    pub left: f64,
    /// When the budget day resets (unix ms).
    pub resets_at_ms: i64,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = self.class.map_or("daily", ModelClass::as_str);
        match self.unit {
            Unit::Unpriced => write!(
                f,
                "{scope} budget is in money but a profile of this work has no `price:` \
                 (its cost cannot be bounded)"
            ),
            Unit::Usd => write!(
                f,
                "{scope} budget: worst case ${:.4} does not fit the ${:.4} left today",
                self.need, self.left
            ),
            Unit::Tokens | Unit::Requests => write!(
                f,
                "{scope} budget: worst case {} {} does not fit the {} left today",
                self.need,
                self.unit.as_str(),
                self.left
            ),
        }
    }
}

/// Money compared with this slack (float sums of rounded costs).
const MONEY_EPSILON: f64 = 1e-9;

/// Check that `need` fits `limits` given `committed`: each class's own
/// limits and the daily ones over every class. A class needing nothing is
/// not checked (a spent expensive budget never blocks cheap work).
pub fn check(
    limits: &SpendLimits,
    committed: &ClassSpend,
    need: &ClassNeed,
    resets_at_ms: i64,
) -> Result<(), Refusal> {
    let refuse = |class, unit, need: f64, left: f64| Refusal {
        class,
        unit,
        need,
        left: left.max(0.0),
        resets_at_ms,
    };
    let fits = |scope: Option<ModelClass>, lim: &UnitLimits, used: &Spend, n: &Need| {
        if let Some(l) = lim.requests {
            if n.requests > 0 && used.requests.saturating_add(n.requests) > l {
                let left = l.saturating_sub(used.requests) as f64;
                return Err(refuse(scope, Unit::Requests, n.requests as f64, left));
            }
        }
        if let Some(l) = lim.tokens {
            if n.tokens > 0 && used.tokens.saturating_add(n.tokens) > l {
                let left = l.saturating_sub(used.tokens) as f64;
                return Err(refuse(scope, Unit::Tokens, n.tokens as f64, left));
            }
        }
        if let Some(l) = lim.usd {
            match n.usd {
                None if !n.is_zero() => return Err(refuse(scope, Unit::Unpriced, 0.0, l)),
                Some(u) if u > 0.0 && used.usd + u > l + MONEY_EPSILON => {
                    return Err(refuse(scope, Unit::Usd, u, l - used.usd));
                }
                _ => {}
            }
        }
        Ok(())
    };
    for class in ModelClass::ALL {
        let n = need.of(class);
        if n.is_zero() {
            continue;
        }
        fits(Some(class), limits.of(class), committed.of(class), n)?;
    }
    if !need.is_zero() {
        let total = need.cheap.plus(&need.expensive);
        // Unknown money of a class that needs nothing does not count.
        let total = Need {
            usd: match (need.cheap.is_zero(), need.expensive.is_zero()) {
                (true, _) => need.expensive.usd,
                (_, true) => need.cheap.usd,
                _ => total.usd,
            },
            ..total
        };
        fits(None, &limits.daily, &committed.total(), &total)?;
    }
    Ok(())
}

/// What the current budget day has committed.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendUsage {
    pub day_started_at: DateTime<Utc>,
    pub resets_at: DateTime<Utc>,
    /// Ledger rows of the day (settled at their actual figures, reserved
    /// ones at their worst case).
    pub ledger: ClassSpend,
    /// What the phases in flight (every process) may still reserve.
    pub holds: ClassSpend,
    pub limits: SpendLimits,
}

impl SpendUsage {
    /// Ledger and holds together: what admission compares with the limits.
    pub fn committed(&self) -> ClassSpend {
        self.ledger.plus(&self.holds)
    }

    /// Whether `need` fits (see [`check`]).
    pub fn check(&self, need: &ClassNeed) -> Result<(), Refusal> {
        check(
            &self.limits,
            &self.committed(),
            need,
            self.resets_at.timestamp_millis(),
        )
    }
}

/// The worst case of one request about to be reserved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallWorst {
    /// Prompt tokens (estimated bound) + the output cap.
    pub tokens: u64,
    /// Those tokens at the profile's price; None: no price.
    pub usd: Option<f64>,
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Per-row figures that count against a budget: settled rows at their
/// reported tokens and cost, unknown ones and reserved ones at their worst
/// case (see the module docs).
const COUNTED_TOKENS: &str = "CASE WHEN status = 'reserved' THEN COALESCE(worst_tokens, 0)
          WHEN total_tokens IS NOT NULL THEN total_tokens
          WHEN cost_source = 'none' THEN 0
          ELSE COALESCE(worst_tokens, 0) END";
const COUNTED_COST: &str = "CASE WHEN status = 'reserved' THEN worst_cost
          WHEN cost IS NOT NULL THEN cost
          ELSE worst_cost END";

fn ledger_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT profile, COUNT(*) AS requests,
                    COALESCE(SUM({COUNTED_TOKENS}), 0) AS tokens,
                    COALESCE(SUM({COUNTED_COST}), 0) AS usd,
                    SUM(CASE WHEN ({COUNTED_COST}) IS NULL THEN 1 ELSE 0 END) AS unpriced
             FROM llm_calls
             WHERE reserved_at >= :start AND reserved_at < :end
               AND status IN ('reserved', 'ok', 'error')
             GROUP BY profile"
        )
    })
}

/// Live holds (their claim still holds the paper row) per class.
///
/// `CROSS JOIN` makes SQLite walk the (few) holds and look each paper up,
/// never the other way round: with a plain join it scanned the whole queue
/// (18 ms at 100,000 papers) on every budget admission. PostgreSQL plans
/// it as the inner join it is.
pub(super) const LIVE_HOLDS_SQL: &str = "SELECT h.class AS class,
        COALESCE(SUM(h.requests), 0) AS requests, COALESCE(SUM(h.tokens), 0) AS tokens,
        COALESCE(SUM(h.cost), 0) AS usd,
        SUM(CASE WHEN h.cost IS NULL AND (h.requests > 0 OR h.tokens > 0) THEN 1 ELSE 0 END) AS unpriced
     FROM budget_holds h CROSS JOIN executions e
     WHERE e.id = h.paper_id AND e.fencing_token = h.fencing_token AND e.status = h.working_status
     GROUP BY h.class";

impl Store {
    /// The day's ledger rows per class (see the module docs), read on
    /// `conn` (a transaction, for admission).
    pub(super) fn ledger_spend_on(
        &self,
        conn: &Db<'_>,
        policy: &SpendPolicy,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<ClassSpend, StoreError> {
        let e = |err| self.err("reading the day's spend", err);
        let rows = conn
            .all(
                ledger_sql(),
                named_params! {":start": ledger_time(start), ":end": ledger_time(end)},
                |r| {
                    Ok((
                        r.get::<Option<String>>("profile")?,
                        Spend {
                            requests: to_u64(r.get("requests")?),
                            tokens: to_u64(r.get("tokens")?),
                            usd: r.get::<Option<f64>>("usd")?.unwrap_or(0.0),
                            unpriced: to_u64(r.get::<Option<i64>>("unpriced")?.unwrap_or(0)),
                        },
                    ))
                },
            )
            .map_err(e)?;
        let mut out = ClassSpend::default();
        for (profile, spend) in rows {
            out.of_mut(policy.class_of(profile.as_deref())).add(&spend);
        }
        Ok(out)
    }

    /// What live holds still reserve, per class, read on `conn`.
    pub(super) fn hold_spend_on(&self, conn: &Db<'_>) -> Result<ClassSpend, StoreError> {
        let e = |err| self.err("reading budget holds", err);
        let rows = conn
            .all(LIVE_HOLDS_SQL, params![], |r| {
                Ok((
                    r.get::<String>("class")?,
                    Spend {
                        requests: to_u64(r.get("requests")?),
                        tokens: to_u64(r.get("tokens")?),
                        usd: r.get::<Option<f64>>("usd")?.unwrap_or(0.0),
                        unpriced: to_u64(r.get::<Option<i64>>("unpriced")?.unwrap_or(0)),
                    },
                ))
            })
            .map_err(e)?;
        let mut out = ClassSpend::default();
        for (class, spend) in rows {
            let class = class.parse::<ModelClass>().map_err(StoreError::Invalid)?;
            out.of_mut(class).add(&spend);
        }
        Ok(out)
    }

    /// The usage of the budget day containing the store's "now", on `conn`.
    pub(super) fn spend_usage_on(
        &self,
        conn: &Db<'_>,
        policy: &SpendPolicy,
    ) -> Result<SpendUsage, StoreError> {
        let now = DateTime::<Utc>::from_timestamp_millis(self.now_ms()).unwrap_or_default();
        self.spend_usage_at_on(conn, policy, now)
    }

    fn spend_usage_at_on(
        &self,
        conn: &Db<'_>,
        policy: &SpendPolicy,
        now: DateTime<Utc>,
    ) -> Result<SpendUsage, StoreError> {
        let (start, end) = policy.day_bounds(now);
        Ok(SpendUsage {
            day_started_at: start,
            resets_at: end,
            ledger: self.ledger_spend_on(conn, policy, start, end)?,
            holds: self.hold_spend_on(conn)?,
            limits: policy.limits,
        })
    }

    /// What the current budget day (by the store's clock) has committed:
    /// its ledger rows and every live hold, of every process.
    pub fn spend_usage(&self, policy: &SpendPolicy) -> Result<SpendUsage, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        self.spend_usage_on(&conn, policy)
    }

    /// [`Store::spend_usage`] of the budget day containing `now` (reports
    /// built for a given time).
    pub fn spend_usage_at(
        &self,
        policy: &SpendPolicy,
        now: DateTime<Utc>,
    ) -> Result<SpendUsage, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        self.spend_usage_at_on(&conn, policy, now)
    }

    /// Reserve a ledger row for `r` — before its request is sent — with its
    /// worst case, in one transaction with the budget check: the worst case
    /// is drawn first from the hold of the claim the call runs under (its
    /// phase's claim-time worst case, see [`super::holds`]); whatever the
    /// hold does not cover must fit what is left of the day's limits, or
    /// nothing is written and the refusal is returned (the caller parks the
    /// call: nothing was sent).
    ///
    /// Without a policy (or without limits) the row is reserved with its
    /// worst case and no check.
    pub fn reserve_llm_call(
        &self,
        r: &LlmReservation,
        worst: &CallWorst,
        policy: Option<&SpendPolicy>,
    ) -> Result<Result<i64, Refusal>, StoreError> {
        self.write("reserving ledger row", |tx| {
            if let Some(policy) = policy.filter(|p| p.limits.any()) {
                let class = policy.class_of(r.profile.as_deref());
                let usage = self.spend_usage_on(tx, policy)?;
                let call = Need {
                    requests: 1,
                    tokens: worst.tokens,
                    usd: worst.usd,
                };
                let hold = self.hold_of_execution(tx, &r.execution_id, class)?;
                // The part the hold does not cover is new spend.
                let excess = match &hold {
                    Some(h) => Need {
                        requests: call.requests.saturating_sub(h.left.requests),
                        tokens: call.tokens.saturating_sub(h.left.tokens),
                        usd: match (call.usd, h.left.usd) {
                            (Some(c), Some(l)) => Some(round_money((c - l).max(0.0))),
                            (c, _) => c,
                        },
                    },
                    None => call,
                };
                if let Err(refusal) = usage.check(&ClassNeed::one(class, excess)) {
                    return Ok(Err(refusal));
                }
                if let Some(h) = hold {
                    self.draw_hold(tx, &h, &call)?;
                }
            }
            self.insert_llm_row(tx, r, super::ledger::CallStatus::Reserved, Some(worst))
                .map(Ok)
        })
    }

    /// The worst case a ledger row was reserved with (None: no such row,
    /// or one reserved before worst cases were recorded).
    pub fn llm_call_worst(&self, id: i64) -> Result<Option<CallWorst>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let row: Option<(Option<i64>, Option<f64>)> = conn
            .one(
                "SELECT worst_tokens, worst_cost FROM llm_calls WHERE id = ?1",
                params![id],
                |r| Ok((r.get("worst_tokens")?, r.get("worst_cost")?)),
            )
            .map_err(|e| self.err("reading ledger row", e))?;
        Ok(row.and_then(|(tokens, usd)| {
            tokens.map(|t| CallWorst {
                tokens: to_u64(t),
                usd,
            })
        }))
    }
}

/// Money is rounded to this many decimal places (a billionth of the
/// currency unit): below any provider's billing granularity, and it keeps
/// float noise (0.1 + 0.2) out of stored figures and sums.
pub const MONEY_DECIMALS: i32 = 9;

/// Round money to [`MONEY_DECIMALS`] places.
pub fn round_money(x: f64) -> f64 {
    let scale = 10f64.powi(MONEY_DECIMALS);
    (x * scale).round() / scale
}
