//! The daily budget — requests, tokens and money, per class and over all —
//! counted from the spend ledger and the holds of the phases in flight
//! (see `store::spend` for the counting rules), and the worst case of one
//! phase: the most requests its machine can send, and what they can cost.
//!
//! Counting rules, in short: a request counts when it was (or may have
//! been) sent — ledger rows `ok`, `error` and `reserved` (in flight, or left
//! by a crash: counted at their worst case until settled); `reused` rows
//! sent nothing. Each row belongs to the budget day in which it was
//! reserved; the day starts at `day_start_utc` ("HH:MM", UTC). A row's class
//! comes from its `profile` through [`BudgetSettings::class_of`]; a row
//! without a profile (the catalog default was used) is "cheap".
//!
//! The worst case of a phase ([`PhasePlan`]): for every agent call its
//! machine can make (retries, samples, fallbacks and one pass round a loop,
//! as [`worst_case_calls`] counts them), the prompt bounded from the
//! agent's templates plus the paper's stored input a prompt carries (its
//! text once and the small fields, see `Store::next_phase_input_bytes`;
//! for prep, whose text does not exist yet, the most paper text a prompt
//! may hold, `prompt_token_budget`), plus the profile's `max_tokens` of
//! output, at the profile's price (`llm::estimate`). A phase is claimed
//! only when that fits beside everything committed today
//! (`Store::claim_within_budget`), and each request is checked again with
//! its real rendered size when it is reserved (`Store::reserve_llm_call`):
//! the claim-time prompt is an estimate, the request-time one is the
//! request itself, so spend stays within the limits either way.
//!
//! Because the budget is read from the ledger rather than from estimates, a
//! crash or a restart can never make it forget what was spent.

use super::config::{BudgetSettings, ModelClass};
use crate::llm::{estimate, ModelProfile, Price};
use crate::spec::model::{AgentDef, Bundle, MachineDef, PromptDef};
use crate::store::{ClassNeed, Need, Refusal, SpendPolicy, SpendUsage, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Retry backoffs a `retry` execution uses when it lists none. Must match
/// the engine's default (`engine::agent_call::DEFAULT_BACKOFFS`).
pub const DEFAULT_RETRY_BACKOFFS: usize = 4;
/// Samples of a `parallel` execution without `n_samples` (engine default).
pub const DEFAULT_SAMPLES: u64 = 3;
/// Bytes a request adds around the prompt templates: the JSON envelope,
/// the model name, the "respond with only a JSON object" instruction.
const REQUEST_ENVELOPE_BYTES: u64 = 256;

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
}

/// What the current budget day has committed (ledger and holds).
pub type BudgetUsage = SpendUsage;

/// The daily budget.
#[derive(Debug, Clone)]
pub struct Budget {
    cfg: BudgetSettings,
    policy: SpendPolicy,
}

impl Budget {
    /// The budget of the resolved `[budget]` settings. A malformed day
    /// start or class never gets here: [`Config::resolve`] refuses it,
    /// naming the key, so the daemon cannot start and then stop on it.
    ///
    /// [`Config::resolve`]: super::config::Config::resolve
    pub fn new(cfg: BudgetSettings) -> Budget {
        let policy = cfg.policy();
        Budget { cfg, policy }
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &BudgetSettings {
        &self.cfg
    }

    /// What the store counts and admits with.
    pub fn policy(&self) -> &SpendPolicy {
        &self.policy
    }

    /// Whether any limit (requests, tokens or money) is set.
    pub fn limited(&self) -> bool {
        self.policy.limits.any()
    }

    /// The budget day containing `now`: [start, next start).
    pub fn day_bounds(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        self.policy.day_bounds(now)
    }

    /// What the budget day containing `now` has committed: its ledger rows
    /// and the holds of every phase in flight. Blocking (a store read):
    /// async code calls it through `Store::run`.
    pub fn usage(&self, store: &Store, now: DateTime<Utc>) -> Result<BudgetUsage, StoreError> {
        store.spend_usage_at(&self.policy, now)
    }

    /// Whether `need` (a phase's worst case) fits in what is left of every
    /// limit: its classes' and the daily ones.
    pub fn check(&self, usage: &BudgetUsage, need: &ClassNeed) -> Result<(), Refusal> {
        usage.check(need)
    }

    /// [`worst_case_calls`] with this budget's classes.
    pub fn worst_case(&self, bundle: &Bundle) -> ClassCalls {
        worst_case_calls(bundle, |p| self.cfg.class_of(p).to_string())
    }
}

/// "<scope> budget spent for today (resets …): <detail>" — the line the
/// mode, the log and `status` show for a refusal.
pub fn refusal_text(r: &Refusal) -> String {
    let scope = r.class.map_or("daily", ModelClass::as_str);
    let resets = DateTime::<Utc>::from_timestamp_millis(r.resets_at_ms)
        .map(|t| t.format(" (resets %Y-%m-%d %H:%MZ)").to_string())
        .unwrap_or_default();
    format!("{scope} budget spent for today{resets}: {r}")
}

/// One kind of agent call a phase can make, and how often at most.
#[derive(Debug, Clone, PartialEq)]
struct PlanSlot {
    class: ModelClass,
    times: u64,
    /// The prompt's templates and output schema, in bytes, plus the
    /// request envelope.
    template_bytes: u64,
    output_tokens: u64,
    price: Option<Price>,
}

/// The worst case of one run of a phase's machine, as a function of the
/// size of the phase's stored input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhasePlan {
    slots: Vec<PlanSlot>,
    /// Every prompt is taken to carry at least this many bytes of input
    /// (the paper text a prompt may hold: `prompt_token_budget` × 4).
    floor_bytes: u64,
}

impl PhasePlan {
    /// The plan of `bundle`'s root machine with `cfg`'s classes; prompts
    /// carry at least `floor_bytes` of input.
    pub fn of(bundle: &Bundle, cfg: &BudgetSettings, floor_bytes: u64) -> PhasePlan {
        let mut slots: Vec<PlanSlot> = Vec::new();
        for call in agent_calls(bundle) {
            let profile = ModelProfile::from_config(call.model).ok();
            let slot = PlanSlot {
                class: call.profile.map_or(ModelClass::Cheap, |p| cfg.class_of(p)),
                times: call.times,
                template_bytes: template_bytes(call.prompt),
                output_tokens: estimate::output_tokens_bound(
                    profile.as_ref().and_then(|p| p.max_tokens),
                ),
                price: profile.and_then(|p| p.price),
            };
            match slots.iter_mut().find(|s| {
                (&s.class, s.template_bytes, s.output_tokens, &s.price)
                    == (
                        &slot.class,
                        slot.template_bytes,
                        slot.output_tokens,
                        &slot.price,
                    )
            }) {
                Some(s) => s.times = s.times.saturating_add(slot.times),
                None => slots.push(slot),
            }
        }
        PhasePlan { slots, floor_bytes }
    }

    /// The worst case for a paper whose prompts carry `input_bytes` of
    /// stored input (the floor when that is less: prep's text is not
    /// stored yet when it is claimed).
    pub fn need(&self, input_bytes: u64) -> ClassNeed {
        let input = input_bytes.max(self.floor_bytes);
        let mut out = ClassNeed::default();
        for s in &self.slots {
            let prompt = estimate::prompt_tokens_bound(s.template_bytes.saturating_add(input));
            let w = estimate::worst(prompt, s.output_tokens, s.price.as_ref());
            let one = Need {
                requests: 1,
                tokens: w.tokens,
                usd: w.usd,
            };
            let n = out.of_mut(s.class);
            *n = n.plus(&one.times(s.times));
        }
        out
    }

    /// The most requests per class.
    pub fn calls(&self) -> ClassCalls {
        let mut c = ClassCalls::default();
        for s in &self.slots {
            c.add(s.class.as_str(), s.times);
        }
        c
    }

    /// Profiles' classes that have calls without a price (a money budget
    /// on them refuses the phase).
    pub fn unpriced_classes(&self) -> Vec<ModelClass> {
        let mut v: Vec<ModelClass> = self
            .slots
            .iter()
            .filter(|s| s.price.is_none())
            .map(|s| s.class)
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Bytes of a prompt's templates (system, user, suffix) and output schema,
/// plus the request envelope.
fn template_bytes(p: &PromptDef) -> u64 {
    let text = p.system.as_deref().map_or(0, str::len)
        + p.user.len()
        + p.instruction_suffix.as_deref().map_or(0, str::len);
    let schema = p
        .output
        .as_ref()
        .map_or(0, |o| crate::llm::client::json_schema(o).to_string().len());
    (text + schema) as u64 + REQUEST_ENVELOPE_BYTES
}

/// One agent (or its fallback) a machine can call, and how many times.
struct AgentCall<'a> {
    profile: Option<&'a str>,
    model: &'a Map<String, Value>,
    prompt: &'a PromptDef,
    times: u64,
}

/// Every agent call one run of `bundle`'s root machine can make, with the
/// counting rules of [`worst_case_calls`].
fn agent_calls(bundle: &Bundle) -> Vec<AgentCall<'_>> {
    let mut out = Vec::new();
    let mut stack = Vec::new();
    machine_calls(bundle, bundle.root, 1, &mut stack, &mut out);
    out
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
    let mut total = ClassCalls::default();
    for call in agent_calls(bundle) {
        let class = call.profile.map_or_else(|| "cheap".to_string(), &class_of);
        total.add(&class, call.times);
    }
    total
}

fn machine_calls<'a>(
    bundle: &'a Bundle,
    idx: usize,
    outer: u64,
    stack: &mut Vec<usize>,
    out: &mut Vec<AgentCall<'a>>,
) {
    let Some(m) = bundle.machines.get(idx) else {
        return;
    };
    if stack.contains(&idx) {
        return;
    }
    stack.push(idx);
    let cyclic = states_on_cycles(m);
    for (name, st) in &m.states {
        let times = outer.saturating_mul(if cyclic.contains(name.as_str()) { 2 } else { 1 });
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
            let a: &AgentDef = agent;
            out.push(AgentCall {
                profile: a.profile_name.as_deref(),
                model: &a.model,
                prompt: &a.prompt,
                times: attempts.saturating_mul(times),
            });
            if let Some(fb) = &a.fallback {
                out.push(AgentCall {
                    profile: Some(&fb.name),
                    model: &fb.model,
                    prompt: &a.prompt,
                    times: attempts.saturating_mul(times),
                });
            }
        }
        if let Some(target) = &st.machine {
            for item in target.items() {
                if let Some(&child) = m.machines.get(item.name()) {
                    machine_calls(bundle, child, times, stack, out);
                }
            }
        }
    }
    stack.pop();
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
    use crate::store::Unit;
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

    /// A ledger row reserved at `reserved_at` with a worst case of 100
    /// tokens and $1, settled with `status` (ok: 10 tokens at $0.01).
    fn insert(
        (store, clock): (&Store, &crate::store::ManualClock),
        reserved_at: DateTime<Utc>,
        profile: Option<&str>,
        status: &str,
    ) {
        use crate::store::{CallStatus, CallWorst, CostSource, LlmReservation, LlmSettlement};
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
        let worst = CallWorst {
            tokens: 100,
            usd: Some(1.0),
        };
        let id = store.reserve_llm_call(&r, &worst, None).unwrap().unwrap();
        if let Some(status) = settled {
            let ok = status == CallStatus::Ok;
            let row = LlmSettlement {
                status,
                http_status: Some(if ok { 200 } else { 500 }),
                error_kind: None,
                error_message: None,
                prompt_tokens: ok.then_some(6),
                completion_tokens: ok.then_some(4),
                total_tokens: ok.then_some(10),
                cost: Some(if ok { 0.01 } else { 0.0 }),
                cost_source: if ok {
                    CostSource::PriceTable
                } else {
                    CostSource::None
                },
                currency: Some("USD".into()),
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
        let (cheap, expensive) = (u.ledger.cheap, u.ledger.expensive);
        assert_eq!((cheap.requests, expensive.requests), (3, 2));
        // Settled ok rows at their reported figures, errors the provider
        // refused at nothing, the reserved row at its worst case.
        assert_eq!(cheap.tokens, 10 + 100);
        assert!((cheap.usd - (0.01 + 1.0)).abs() < 1e-9, "{cheap:?}");
        assert_eq!(expensive.tokens, 10);
        assert_eq!(u.committed().total().requests, 5);
        assert_eq!(u.day_started_at, at("2024-05-10T06:30:00Z"));
        assert_eq!(u.resets_at, at("2024-05-11T06:30:00Z"));
        let one = |class| {
            ClassNeed::one(
                class,
                Need {
                    requests: 1,
                    tokens: 0,
                    usd: Some(0.0),
                },
            )
        };
        assert!(u.check(&one(ModelClass::Expensive)).is_ok());

        // Just before the boundary the earlier row belongs to the previous day.
        let prev = b.usage(&store, at("2024-05-10T06:29:59.999999Z")).unwrap();
        assert_eq!(
            (prev.ledger.cheap.requests, prev.ledger.expensive.requests),
            (1, 0)
        );
        let next = b.usage(&store, at("2024-05-11T07:00:00Z")).unwrap();
        assert_eq!(next.ledger.total().requests, 1);
    }

    #[test]
    fn check_covers_each_class_and_the_total_in_every_unit() {
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
        let need = |cheap: u64, expensive: u64| ClassNeed {
            cheap: Need {
                requests: cheap,
                tokens: 0,
                usd: Some(0.0),
            },
            expensive: Need {
                requests: expensive,
                tokens: 0,
                usd: Some(0.0),
            },
        };
        let fits = |b: &Budget, u: &BudgetUsage, n: ClassNeed| b.check(u, &n).is_ok();
        assert!(fits(&b, &u, need(2, 0)));
        assert!(!fits(&b, &u, need(3, 0)), "cheap limit");
        assert!(fits(&b, &u, need(0, 3)));
        assert!(!fits(&b, &u, need(0, 4)), "expensive limit");
        assert!(fits(&b, &u, need(1, 3)), "exactly the daily total");
        assert!(!fits(&b, &u, need(2, 3)), "daily total");
        let r = b.check(&u, &need(2, 3)).unwrap_err();
        assert_eq!(
            (r.class, r.unit, r.need, r.left),
            (None, Unit::Requests, 5.0, 4.0)
        );
        let unlimited = budget(|_| {});
        let u = unlimited.usage(&store, now).unwrap();
        assert!(fits(&unlimited, &u, need(1_000_000, 1_000_000)));
        // A spent class blocks only work that needs it.
        let spent = budget(|c| c.expensive = Some(2));
        let u = spent.usage(&store, now).unwrap();
        assert!(!fits(&spent, &u, need(0, 1)));
        assert!(fits(&spent, &u, need(5, 0)));

        // Money: 4 × $0.01 spent of a $0.05 cheap budget.
        let money = budget(|c| c.cheap_usd = Some(0.05));
        let u = money.usage(&store, now).unwrap();
        let usd = |x: Option<f64>| {
            ClassNeed::one(
                ModelClass::Cheap,
                Need {
                    requests: 1,
                    tokens: 10,
                    usd: x,
                },
            )
        };
        assert!(money.check(&u, &usd(Some(0.01))).is_ok());
        let r = money.check(&u, &usd(Some(0.011))).unwrap_err();
        assert_eq!((r.class, r.unit), (Some(ModelClass::Cheap), Unit::Usd));
        assert!((r.left - 0.01).abs() < 1e-9);
        // Without a price the cost cannot be bounded under a money limit…
        let r = money.check(&u, &usd(None)).unwrap_err();
        assert_eq!(r.unit, Unit::Unpriced);
        // …but it fits where no money limit applies.
        assert!(money
            .check(
                &u,
                &ClassNeed::one(
                    ModelClass::Expensive,
                    Need {
                        requests: 1,
                        tokens: 10,
                        usd: None
                    }
                )
            )
            .is_ok());
        // Tokens: 40 + 20 reported of a 100-token daily budget.
        let tokens = budget(|c| c.daily_tokens = Some(100));
        let u = tokens.usage(&store, now).unwrap();
        let t = |n: u64| {
            ClassNeed::one(
                ModelClass::Expensive,
                Need {
                    requests: 1,
                    tokens: n,
                    usd: None,
                },
            )
        };
        assert!(tokens.check(&u, &t(40)).is_ok());
        assert_eq!(tokens.check(&u, &t(41)).unwrap_err().unit, Unit::Tokens);
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

    /// The worst case of the expensive phase with priced profiles: every
    /// attempt of every child at its prompt bound and its output cap.
    #[test]
    fn phase_plans_price_every_attempt_of_every_call() {
        let mut b = load("expensive.yml");
        for m in &mut b.machines {
            for a in m.agents.values_mut() {
                a.model.insert("max_tokens".into(), serde_json::json!(1000));
                a.model.insert(
                    "price".into(),
                    serde_json::json!({"input_per_mtok": 3.0, "output_per_mtok": 15.0}),
                );
            }
        }
        let settings = BudgetSettings::default();
        let plan = PhasePlan::of(&b, &settings, 3000);
        assert_eq!(
            plan.calls(),
            ClassCalls {
                cheap: 0,
                expensive: 15
            }
        );
        assert!(plan.unpriced_classes().is_empty());
        let small = plan.need(0);
        let big = plan.need(30_000);
        assert_eq!(small.expensive.requests, 15);
        assert!(small.cheap.is_zero());
        // Below the floor the floor counts; above it, the input.
        assert_eq!(plan.need(2999), small);
        // 27 000 more bytes in each of 15 prompts: 9000 more tokens each.
        assert_eq!(big.expensive.tokens - small.expensive.tokens, 15 * 9000);
        let (s, g) = (small.expensive.usd.unwrap(), big.expensive.usd.unwrap());
        assert!((g - s - 15.0 * 9000.0 * 3.0 / 1e6).abs() < 1e-9, "{s} {g}");
        // Output: 15 × 1000 tokens at $15 per million at least.
        assert!(s > 15.0 * 1000.0 * 15.0 / 1e6);
        // Without prices the money has no bound.
        let unpriced = PhasePlan::of(&load("expensive.yml"), &settings, 3000);
        assert_eq!(unpriced.need(0).expensive.usd, None);
        assert_eq!(unpriced.unpriced_classes(), vec![ModelClass::Expensive]);
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
