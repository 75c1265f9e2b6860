//! The daily request budget, computed from the spend ledger (`llm_calls`),
//! and the worst-case number of requests a phase's machine can make.
//!
//! Counting rules: a request counts when it was (or may have been) sent —
//! ledger rows with status `ok` or `error`, and also `reserved` rows, which
//! are in flight or were left by a crash after the reservation (the request
//! may well have reached the provider, so it is paid for). `reused` rows are
//! not counted: no request was sent. Each row belongs to the budget day in
//! which it was reserved; the day starts at `day_start_utc` ("HH:MM", UTC).
//! A row's class comes from its `profile` column through
//! [`BudgetSettings::class_of`]; a row without a profile (the catalog default
//! was used) is "cheap".
//!
//! The budget is built from the resolved settings ([`Settings::budget`]):
//! the day start is already a time and the classes an enum, so building
//! cannot fail and nothing here parses a setting.
//!
//! [`Settings::budget`]: super::config::Settings::budget
//!
//! Because the budget is read from the ledger rather than from estimates, a
//! crash or a restart can never make it forget what was spent.

use super::config::{BudgetSettings, ModelClass};
use crate::spec::model::{Bundle, MachineDef};
use crate::store::{Store, StoreError};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use std::collections::HashSet;

/// Retry backoffs a `retry` execution uses when it lists none. Must match
/// the engine's default (`engine::agent_call::DEFAULT_BACKOFFS`).
pub const DEFAULT_RETRY_BACKOFFS: usize = 4;
/// Samples of a `parallel` execution without `n_samples` (engine default).
pub const DEFAULT_SAMPLES: u64 = 3;

/// Requests per class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClassCalls {
    pub cheap: u64,
    pub expensive: u64,
}

impl ClassCalls {
    pub fn total(&self) -> u64 {
        self.cheap.saturating_add(self.expensive)
    }

    /// Add `n` requests of `class` ("expensive", anything else is cheap).
    pub fn add(&mut self, class: &str, n: u64) {
        if class == "expensive" {
            self.expensive = self.expensive.saturating_add(n);
        } else {
            self.cheap = self.cheap.saturating_add(n);
        }
    }

    fn plus(mut self, other: ClassCalls, times: u64) -> ClassCalls {
        self.cheap = self.cheap.saturating_add(other.cheap.saturating_mul(times));
        self.expensive = self
            .expensive
            .saturating_add(other.expensive.saturating_mul(times));
        self
    }
}

/// A daily limit per class and over all classes (None = unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub daily: Option<u64>,
    pub cheap: Option<u64>,
    pub expensive: Option<u64>,
}

/// What the current budget day has used.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetUsage {
    pub used: ClassCalls,
    pub total: u64,
    pub limits: Limits,
    /// Requests left (None = unlimited; never negative).
    pub remaining: Limits,
    pub day_started_at: DateTime<Utc>,
    pub resets_at: DateTime<Utc>,
}

impl BudgetUsage {
    /// Whether any limit is used up.
    pub fn exhausted(&self) -> bool {
        let r = self.remaining;
        [r.daily, r.cheap, r.expensive].contains(&Some(0))
    }
}

/// The daily budget.
#[derive(Debug, Clone)]
pub struct Budget {
    cfg: BudgetSettings,
}

impl Budget {
    /// The budget of the resolved `[budget]` settings. A malformed day
    /// start or class never gets here: [`Config::resolve`] refuses it,
    /// naming the key, so the daemon cannot start and then stop on it.
    ///
    /// [`Config::resolve`]: super::config::Config::resolve
    pub fn new(cfg: BudgetSettings) -> Budget {
        Budget { cfg }
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &BudgetSettings {
        &self.cfg
    }

    /// The budget day containing `now`: [start, next start).
    pub fn day_bounds(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let today = now.date_naive().and_time(self.cfg.day_start).and_utc();
        let start = if today > now {
            today - TimeDelta::days(1)
        } else {
            today
        };
        (start, start + TimeDelta::days(1))
    }

    /// Requests of the current budget day, per class, from the ledger.
    /// Blocking (a store read): async code calls it through `Store::run`.
    pub fn usage(&self, store: &Store, now: DateTime<Utc>) -> Result<BudgetUsage, StoreError> {
        let (start, next) = self.day_bounds(now);
        let mut used = ClassCalls::default();
        for row in store.sent_llm_calls(start, next)? {
            let class = row
                .profile
                .as_deref()
                .map_or(ModelClass::Cheap, |p| self.cfg.class_of(p));
            used.add(class.as_str(), row.calls);
        }
        let limits = Limits {
            daily: self.cfg.daily,
            cheap: self.cfg.cheap,
            expensive: self.cfg.expensive,
        };
        let total = used.total();
        let left = |limit: Option<u64>, u: u64| limit.map(|l| l.saturating_sub(u));
        Ok(BudgetUsage {
            used,
            total,
            limits,
            remaining: Limits {
                daily: left(limits.daily, total),
                cheap: left(limits.cheap, used.cheap),
                expensive: left(limits.expensive, used.expensive),
            },
            day_started_at: start,
            resets_at: next,
        })
    }

    /// Whether `need` more requests (a phase's worst case) fit in what is
    /// left of every limit: its classes' and the daily total.
    pub fn fits(&self, usage: &BudgetUsage, need: &ClassCalls) -> bool {
        let ok = |limit: Option<u64>, used: u64, more: u64| {
            more == 0 || limit.is_none_or(|l| used.saturating_add(more) <= l)
        };
        ok(usage.limits.cheap, usage.used.cheap, need.cheap)
            && ok(usage.limits.expensive, usage.used.expensive, need.expensive)
            && ok(usage.limits.daily, usage.total, need.total())
    }

    /// [`worst_case_calls`] with this budget's classes.
    pub fn worst_case(&self, bundle: &Bundle) -> ClassCalls {
        worst_case_calls(bundle, |p| self.cfg.class_of(p).to_string())
    }
}

/// The most requests one run of `bundle`'s root machine can send, per class
/// (`class_of` maps a profile name to "cheap" or "expensive").
///
/// Per agent state: attempts = 1, or 1 + its backoffs for `retry` (default
/// 4 → 5), × `n_samples` for `parallel` (default 3). An agent with a
/// fallback profile may send the fallback request after each attempt, so
/// the fallback's class gets as many again. An agent without a profile name
/// is "cheap" (as the budget counts ledger rows without one).
///
/// Child machines count once per invocation, with every machine of a
/// parallel list counted; a `foreach` fan-out is counted as one child (its
/// width is data-dependent; the pipeline's machines have none). A machine
/// reached recursively through itself is counted once.
///
/// Loops: a state on a cycle of the state graph (transitions and `on_error`
/// targets) counts twice — the bound for pipelines that allow one repair
/// (judge → repair → judge). Every state on the cycle is doubled, so the
/// bound is not tight (the repair itself runs once) but is never below the
/// truth for a single pass round the loop.
pub fn worst_case_calls(bundle: &Bundle, class_of: impl Fn(&str) -> String) -> ClassCalls {
    let mut stack = Vec::new();
    machine_calls(bundle, bundle.root, &class_of, &mut stack)
}

fn machine_calls(
    bundle: &Bundle,
    idx: usize,
    class_of: &dyn Fn(&str) -> String,
    stack: &mut Vec<usize>,
) -> ClassCalls {
    let Some(m) = bundle.machines.get(idx) else {
        return ClassCalls::default();
    };
    if stack.contains(&idx) {
        return ClassCalls::default();
    }
    stack.push(idx);
    let cyclic = states_on_cycles(m);
    let mut total = ClassCalls::default();
    for (name, st) in &m.states {
        let times = if cyclic.contains(name.as_str()) { 2 } else { 1 };
        if let Some(agent) = st.agent.as_deref().and_then(|a| m.agents.get(a)) {
            let exec = st.execution.as_ref();
            let attempts = match exec.and_then(|e| e.kind.as_deref()) {
                Some("retry") => {
                    let backoffs = exec
                        .and_then(|e| e.backoffs.as_ref())
                        .map_or(DEFAULT_RETRY_BACKOFFS, Vec::len);
                    1 + backoffs as u64
                }
                Some("parallel") => exec
                    .and_then(|e| e.n_samples)
                    .map_or(DEFAULT_SAMPLES, |n| u64::from(n.max(1))),
                _ => 1,
            };
            let mut calls = ClassCalls::default();
            let class = agent
                .profile_name
                .as_deref()
                .map_or_else(|| "cheap".to_string(), class_of);
            calls.add(&class, attempts);
            if let Some(fb) = &agent.fallback {
                calls.add(&class_of(&fb.name), attempts);
            }
            total = total.plus(calls, times);
        }
        if let Some(target) = &st.machine {
            for item in target.items() {
                if let Some(&child) = m.machines.get(item.name()) {
                    let c = machine_calls(bundle, child, class_of, stack);
                    total = total.plus(c, times);
                }
            }
        }
    }
    stack.pop();
    total
}

/// Names of the states that can reach themselves.
fn states_on_cycles(m: &MachineDef) -> HashSet<&str> {
    let next = |s: &str| -> Vec<&str> {
        let Some(st) = m.states.get(s) else {
            return Vec::new();
        };
        let mut v: Vec<&str> = st.transitions.iter().map(|t| t.to.as_str()).collect();
        if let Some(on) = &st.on_error {
            v.extend(on.targets());
        }
        v
    };
    let mut cyclic = HashSet::new();
    for start in m.states.keys() {
        let mut seen = HashSet::new();
        let mut todo = next(start);
        while let Some(s) = todo.pop() {
            if s == start.as_str() {
                cyclic.insert(start.as_str());
                break;
            }
            if seen.insert(s) {
                todo.extend(next(s));
            }
        }
    }
    cyclic
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::config::{BudgetConfig, Config};
    use chrono::TimeZone;
    use std::path::Path;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// The budget of a `[budget]` section as the daemon gets it: written
    /// like the file, then resolved.
    fn budget(f: impl FnOnce(&mut BudgetConfig)) -> Budget {
        let mut cfg = Config::default();
        f(&mut cfg.budget);
        Budget::new(cfg.resolve().unwrap().budget)
    }

    /// The keys `Config::resolve` refuses in a `[budget]` section.
    fn refused(f: impl FnOnce(&mut BudgetConfig)) -> Vec<String> {
        let mut cfg = Config::default();
        f(&mut cfg.budget);
        match cfg.resolve() {
            Err(crate::runner::config::ConfigError::Invalid { problems }) => {
                problems.into_iter().map(|p| p.key).collect()
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// A store whose clock the test sets: ledger rows are stamped with it.
    fn store() -> (tempfile::TempDir, Store, crate::store::ManualClock) {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::store::ManualClock::at(0);
        let opts = crate::store::StoreOptions {
            clock: std::sync::Arc::new(clock.clone()),
            ..Default::default()
        };
        let s = Store::open(&dir.path().join("b.db"), &opts).unwrap();
        (dir, s, clock)
    }

    /// A ledger row reserved at `reserved_at`, settled with `status`.
    fn insert(
        (store, clock): (&Store, &crate::store::ManualClock),
        reserved_at: DateTime<Utc>,
        profile: Option<&str>,
        status: &str,
    ) {
        use crate::store::{CallStatus, LlmReservation, LlmSettlement};
        clock.set(reserved_at.timestamp_millis());
        let r = LlmReservation {
            execution_id: "e".into(),
            machine: "m".into(),
            state: "s".into(),
            step: 1,
            sample: 0,
            attempt: 1,
            agent: "a".into(),
            profile: profile.map(str::to_string),
            provider: "p".into(),
            model: "x".into(),
            request_hash: "h".into(),
            fallback_from: None,
        };
        let settled = match status {
            "reused" => {
                store.insert_llm_call(&r, CallStatus::Reused).unwrap();
                return;
            }
            "reserved" => None,
            "ok" => Some(CallStatus::Ok),
            "error" => Some(CallStatus::Error),
            other => panic!("status {other}"),
        };
        let id = store.insert_llm_call(&r, CallStatus::Reserved).unwrap();
        if let Some(status) = settled {
            let row = LlmSettlement {
                status,
                http_status: None,
                error_kind: None,
                error_message: None,
                prompt_tokens: None,
                completion_tokens: None,
                total_tokens: None,
                cost: None,
                cost_source: crate::store::CostSource::Unknown,
                currency: None,
                latency_ms: 0,
                retry_after: None,
                response: None,
            };
            store.settle_llm_call(id, &row).unwrap();
        }
    }

    #[test]
    fn ledger_times_sort_like_store_now() {
        use crate::store::Clock as _;
        let now = crate::store::timestamp_text(crate::store::SystemClock.now_us());
        let ours = crate::store::ledger_time(Utc::now());
        assert_eq!(now.len(), ours.len());
        assert!(now.ends_with('Z') && ours.ends_with('Z'));
        assert!(DateTime::parse_from_rfc3339(&now).is_ok());
        assert!(
            crate::store::ledger_time(at("2024-05-10T06:30:00Z"))
                > crate::store::ledger_time(at("2024-05-10T06:29:59.999999Z"))
        );
    }

    #[test]
    fn the_day_starts_at_the_configured_utc_time() {
        let b = budget(|c| c.day_start_utc = "06:30".into());
        let (s, n) = b.day_bounds(at("2024-05-10T12:00:00Z"));
        assert_eq!(
            (s, n),
            (at("2024-05-10T06:30:00Z"), at("2024-05-11T06:30:00Z"))
        );
        // One-digit hours too: the config validates "7:00", so the budget
        // must accept it (it once stopped the daemon instead).
        let seven = budget(|c| c.day_start_utc = "7:00".into());
        assert_eq!(
            seven.day_bounds(at("2024-05-10T12:00:00Z")).0,
            at("2024-05-10T07:00:00Z")
        );
        let (s, _) = b.day_bounds(at("2024-05-10T05:00:00Z"));
        assert_eq!(s, at("2024-05-09T06:30:00Z"));
        let (s, _) = b.day_bounds(at("2024-05-10T06:30:00Z"));
        assert_eq!(s, at("2024-05-10T06:30:00Z"));
        let midnight = budget(|_| {});
        assert_eq!(
            midnight.day_bounds(at("2024-03-01T00:00:00Z")).0,
            Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()
        );
    }

    /// A malformed day start or class never reaches a budget: resolving
    /// the settings refuses it, naming the key.
    #[test]
    fn bad_configs_are_refused() {
        for bad in ["24:00", "06:60", "0630", "", "ab:cd", "+6:30", "006:30"] {
            assert_eq!(
                refused(|c| c.day_start_utc = bad.into()),
                ["budget.day_start_utc"],
                "{bad:?}"
            );
        }
        assert_eq!(
            refused(|c| {
                c.classes.insert("big".into(), "pricey".into());
            }),
            ["budget.classes.big"]
        );
    }

    #[test]
    fn usage_counts_sent_requests_of_the_budget_day_by_class() {
        let (_d, store, clock) = store();
        let b = budget(|c| {
            c.day_start_utc = "06:30".into();
            c.daily = Some(10);
            c.expensive = Some(3);
            c.classes.insert("premium".into(), "expensive".into());
        });
        // Before the day started: not counted.
        // (Ledger times come from the store's clock, in milliseconds.)
        insert(
            (&store, &clock),
            at("2024-05-10T06:29:59.999Z"),
            Some("cheap"),
            "ok",
        );
        // Counted: ok, error, reserved (in flight or crashed after send).
        insert(
            (&store, &clock),
            at("2024-05-10T06:30:00Z"),
            Some("cheap"),
            "ok",
        );
        insert(
            (&store, &clock),
            at("2024-05-10T07:00:00Z"),
            Some("cheap"),
            "error",
        );
        insert(
            (&store, &clock),
            at("2024-05-10T08:00:00Z"),
            None,
            "reserved",
        );
        insert(
            (&store, &clock),
            at("2024-05-10T09:00:00Z"),
            Some("expensive"),
            "ok",
        );
        insert(
            (&store, &clock),
            at("2024-05-10T09:30:00Z"),
            Some("premium"),
            "error",
        );
        // Reused: nothing was sent.
        insert(
            (&store, &clock),
            at("2024-05-10T10:00:00Z"),
            Some("expensive"),
            "reused",
        );
        insert(
            (&store, &clock),
            at("2024-05-10T10:00:00Z"),
            Some("cheap"),
            "reused",
        );
        // The next budget day.
        insert(
            (&store, &clock),
            at("2024-05-11T06:30:00Z"),
            Some("cheap"),
            "ok",
        );

        let u = b.usage(&store, at("2024-05-10T12:00:00Z")).unwrap();
        assert_eq!(
            u.used,
            ClassCalls {
                cheap: 3,
                expensive: 2
            }
        );
        assert_eq!(u.total, 5);
        assert_eq!(
            u.remaining,
            Limits {
                daily: Some(5),
                cheap: None,
                expensive: Some(1)
            }
        );
        assert_eq!(u.day_started_at, at("2024-05-10T06:30:00Z"));
        assert_eq!(u.resets_at, at("2024-05-11T06:30:00Z"));
        assert!(!u.exhausted());

        // Just before the boundary the earlier row belongs to the previous day.
        let prev = b.usage(&store, at("2024-05-10T06:29:59.999999Z")).unwrap();
        assert_eq!(
            prev.used,
            ClassCalls {
                cheap: 1,
                expensive: 0
            }
        );
        let next = b.usage(&store, at("2024-05-11T07:00:00Z")).unwrap();
        assert_eq!(next.total, 1);
    }

    #[test]
    fn fits_checks_each_class_and_the_total() {
        let (_d, store, clock) = store();
        let now = at("2024-05-10T12:00:00Z");
        for _ in 0..4 {
            insert((&store, &clock), now, Some("cheap"), "ok");
        }
        for _ in 0..2 {
            insert((&store, &clock), now, Some("expensive"), "ok");
        }
        let b = budget(|c| {
            c.daily = Some(10);
            c.cheap = Some(6);
            c.expensive = Some(5);
        });
        let u = b.usage(&store, now).unwrap();
        let need = |cheap, expensive| ClassCalls { cheap, expensive };
        assert!(b.fits(&u, &need(2, 0)));
        assert!(!b.fits(&u, &need(3, 0)), "cheap limit");
        assert!(b.fits(&u, &need(0, 3)));
        assert!(!b.fits(&u, &need(0, 4)), "expensive limit");
        assert!(b.fits(&u, &need(1, 3)), "exactly the daily total");
        assert!(!b.fits(&u, &need(2, 3)), "daily total");
        let unlimited = budget(|_| {});
        let u = unlimited.usage(&store, now).unwrap();
        assert!(unlimited.fits(&u, &need(1_000_000, 1_000_000)));
        assert_eq!(u.remaining, Limits::default());
        // A spent class blocks only work that needs it.
        let spent = budget(|c| c.expensive = Some(2));
        let u = spent.usage(&store, now).unwrap();
        assert!(u.exhausted());
        assert!(!spent.fits(&u, &need(0, 1)));
        assert!(spent.fits(&u, &need(5, 0)));
    }

    fn load(name: &str) -> Bundle {
        let mut reg = crate::engine::ActionRegistry::with_builtins();
        crate::pipeline::actions::register(&mut reg, Default::default()).unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("machines")
            .join(name);
        let opts = crate::spec::LoadOptions {
            profiles: None,
            actions: reg.names(),
            model_check: Some(crate::llm::ModelProfile::check_config),
            hooks: None,
        };
        let loaded = crate::spec::load(&path, &opts);
        loaded
            .bundle
            .unwrap_or_else(|| panic!("{name}: {:?}", loaded.diagnostics))
    }

    fn by_name(p: &str) -> String {
        BudgetSettings::default().class_of(p).to_string()
    }

    #[test]
    fn worst_case_of_the_pipeline_machines() {
        // key_outcome: retry with 4 backoffs → 5 attempts, cheap.
        assert_eq!(
            worst_case_calls(&load("prep.yml"), by_name),
            ClassCalls {
                cheap: 5,
                expensive: 0
            }
        );
        // Three children in parallel, each one retry agent with 4 backoffs.
        assert_eq!(
            worst_case_calls(&load("expensive.yml"), by_name),
            ClassCalls {
                cheap: 0,
                expensive: 15
            }
        );
        // limits 3 + assemble 3 + (judge 3 + repair 3) × 2 on the repair loop.
        let wrap = load("wrap.yml");
        assert_eq!(
            worst_case_calls(&wrap, by_name),
            ClassCalls {
                cheap: 18,
                expensive: 0
            }
        );
        // Classes come from the given mapping.
        let all_expensive = worst_case_calls(&wrap, |_| "expensive".to_string());
        assert_eq!(
            all_expensive,
            ClassCalls {
                cheap: 0,
                expensive: 18
            }
        );
        assert_eq!(
            budget(|_| {}).worst_case(&wrap),
            ClassCalls {
                cheap: 18,
                expensive: 0
            }
        );
    }

    #[test]
    fn execution_types_and_fallbacks_multiply() {
        use crate::spec::model::{AgentDef, ExecutionDef, FallbackProfile, Transition};
        let mut b = Bundle::single_state("m", "a");
        let m = &mut b.machines[0];
        let agent = |profile: &str, fallback: Option<&str>| AgentDef {
            name: "x".into(),
            file: "inline".into(),
            prompt: Default::default(),
            profile_name: Some(profile.into()),
            model: Default::default(),
            fallback: fallback.map(|f| FallbackProfile {
                name: f.into(),
                model: Default::default(),
            }),
            metadata: serde_json::Value::Null,
        };
        m.agents.insert("par".into(), agent("cheap", None));
        m.agents
            .insert("ret".into(), agent("expensive", Some("cheap")));
        m.agents.insert("one".into(), agent("cheap", None));
        let st = m.states.get_mut("a").unwrap();
        st.agent = Some("par".into());
        st.execution = Some(ExecutionDef {
            kind: Some("parallel".into()),
            n_samples: Some(4),
            ..Default::default()
        });
        st.transitions = vec![Transition {
            condition: None,
            to: "b".into(),
        }];
        let mut s = crate::spec::StateDef {
            agent: Some("ret".into()),
            execution: Some(ExecutionDef {
                kind: Some("retry".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        s.transitions = vec![Transition {
            condition: None,
            to: "c".into(),
        }];
        m.states.insert("b".into(), s);
        let mut c = crate::spec::StateDef {
            agent: Some("one".into()),
            ..Default::default()
        };
        c.transitions = vec![Transition {
            condition: None,
            to: "c".into(),
        }];
        m.states.insert("c".into(), c);
        // par: 4 cheap; ret: 5 expensive + 5 cheap fallbacks; one: 1 on a
        // self-loop → 2.
        assert_eq!(
            worst_case_calls(&b, by_name),
            ClassCalls {
                cheap: 4 + 5 + 2,
                expensive: 5
            }
        );
    }
}
