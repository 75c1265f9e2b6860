//! Budgets in money and tokens (#16 item 2): a phase is claimed only when
//! its worst case fits beside everything committed — the ledger (reserved
//! rows at their worst case) and the holds of every process — and each
//! request is checked again when it is reserved.

use crate::support::site::{arxiv, Site};
use crate::support::{signal, stderr};
use paper_runner::store::{
    CallStatus, CallWorst, ClaimRequest, ClassNeed, CostSource, LlmReservation, LlmSettlement,
    ModelClass, Need, NewPaper, Phase, SpendLimits, SpendPolicy, Store, StoreOptions, Unit,
    UnitLimits,
};
use serde_json::json;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn open(path: &Path) -> Store {
    Store::open(path, &StoreOptions::default()).unwrap()
}

/// `n` papers moved to `prepped` (their prep claimed and finished).
fn prepped_papers(store: &Store, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = arxiv(i);
            store
                .add_paper(&NewPaper {
                    arxiv_id: id.clone(),
                    source: "test".into(),
                    ..NewPaper::default()
                })
                .unwrap();
            let c = store
                .claim_paper(&id, "prep-owner", Duration::from_secs(60))
                .unwrap()
                .unwrap();
            assert_eq!(c.phase, Phase::Prep);
            store
                .finish_phase(&c, &json!({"prompt_text": "x".repeat(100)}), None, 1)
                .unwrap();
            c.id
        })
        .collect()
}

fn expensive_usd(limit: f64) -> SpendPolicy {
    SpendPolicy {
        limits: SpendLimits {
            expensive: UnitLimits {
                usd: Some(limit),
                ..UnitLimits::default()
            },
            ..SpendLimits::default()
        },
        ..SpendPolicy::default()
    }
}

/// Every expensive phase may cost $1 at worst.
fn one_dollar(_: Phase, _: u64) -> ClassNeed {
    ClassNeed::one(
        ModelClass::Expensive,
        Need {
            requests: 15,
            tokens: 1000,
            usd: Some(1.0),
        },
    )
}

fn request<'a>(owner: &'a str, phases: &'a [Phase]) -> ClaimRequest<'a> {
    ClaimRequest {
        owner,
        ttl: Duration::from_secs(60),
        phases,
        resumable_only: false,
    }
}

fn reservation(execution_id: &str, profile: &str) -> LlmReservation {
    LlmReservation {
        execution_id: execution_id.into(),
        machine: "mechanism".into(),
        state: "write".into(),
        step: 1,
        sample: 0,
        attempt: 1,
        agent: "writer".into(),
        profile: Some(profile.into()),
        provider: "openai".into(),
        model: "mock/expensive".into(),
        request_hash: "h".into(),
        fallback_from: None,
    }
}

/// Two runners (two connections to one database, as two hosts would have)
/// race for the last dollar: $1.50 left, $1 worst case each — exactly one
/// is admitted, whatever the interleaving, and the other is told why.
#[test]
fn two_runners_racing_for_the_last_dollar_admit_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    prepped_papers(&open(&path), 3);
    let policy = expensive_usd(1.5);
    let barrier = Arc::new(Barrier::new(2));
    let runners: Vec<_> = ["host-a:1:x", "host-b:2:y"]
        .into_iter()
        .map(|owner| {
            let (path, policy, barrier) = (path.clone(), policy.clone(), barrier.clone());
            std::thread::spawn(move || {
                let store = open(&path);
                barrier.wait();
                store
                    .claim_within_budget(&request(owner, &[Phase::Expensive]), &policy, &one_dollar)
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<_> = runners.into_iter().map(|t| t.join().unwrap()).collect();
    let claimed: Vec<_> = results.iter().filter_map(|a| a.claim.clone()).collect();
    assert_eq!(claimed.len(), 1, "{results:?}");
    let refused: Vec<_> = results.iter().flat_map(|a| a.refused.clone()).collect();
    assert_eq!(refused.len(), 1, "{results:?}");
    let (phase, r) = &refused[0];
    assert_eq!(*phase, Phase::Expensive);
    assert_eq!((r.class, r.unit), (Some(ModelClass::Expensive), Unit::Usd));
    assert!(
        (r.need - 1.0).abs() < 1e-9 && (r.left - 0.5).abs() < 1e-9,
        "{r:?}"
    );

    // The winner's hold is what every process sees in flight.
    let store = open(&path);
    let u = store.spend_usage(&policy).unwrap();
    assert!((u.holds.expensive.usd - 1.0).abs() < 1e-9, "{u:?}");
    assert_eq!(u.holds.expensive.requests, 15);
    assert_eq!(u.ledger.total().requests, 0);

    // Once the claim ends its hold counts nothing: the next one fits.
    let c = &claimed[0];
    store.finish_phase(c, &json!({}), None, 1).unwrap();
    assert_eq!(store.spend_usage(&policy).unwrap().holds.expensive.usd, 0.0);
    let next = store
        .claim_within_budget(
            &request("host-b:2:y", &[Phase::Expensive]),
            &policy,
            &one_dollar,
        )
        .unwrap();
    assert!(next.claim.is_some() && next.refused.is_empty(), "{next:?}");
}

/// A phase whose worst case does not fit is passed over; other phases are
/// still claimed (a spent expensive budget leaves prep running).
#[test]
fn a_refused_phase_leaves_the_other_phases_claimable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("p.db"));
    prepped_papers(&store, 1);
    store
        .add_paper(&NewPaper {
            arxiv_id: "2501.99999".into(),
            source: "test".into(),
            ..NewPaper::default()
        })
        .unwrap();
    let need = |phase: Phase, _: u64| match phase {
        Phase::Expensive => one_dollar(phase, 0),
        _ => ClassNeed::one(
            ModelClass::Cheap,
            Need {
                requests: 5,
                tokens: 100,
                usd: None,
            },
        ),
    };
    let a = store
        .claim_within_budget(
            &request("o:1:a", &[Phase::Expensive, Phase::Prep]),
            &expensive_usd(0.5),
            &need,
        )
        .unwrap();
    let c = a.claim.expect("prep is claimed");
    assert_eq!(c.phase, Phase::Prep);
    assert_eq!(a.refused.len(), 1);
    assert_eq!(a.refused[0].0, Phase::Expensive);
    // An unpriced phase under a money limit of its class is refused.
    let unpriced = |_: Phase, _: u64| {
        ClassNeed::one(
            ModelClass::Expensive,
            Need {
                requests: 1,
                tokens: 1,
                usd: None,
            },
        )
    };
    let b = store
        .claim_within_budget(
            &request("o:1:a", &[Phase::Expensive]),
            &expensive_usd(100.0),
            &unpriced,
        )
        .unwrap();
    assert!(b.claim.is_none());
    assert_eq!(b.refused[0].1.unit, Unit::Unpriced);
}

/// Requests draw their worst case from their phase's hold; what the hold
/// does not cover must fit what is left, or the request is refused before
/// anything is written. Reserved rows — in flight, or left by a crash —
/// count at their worst case, so after a kill -9 and a restart the spend is
/// not under-counted.
#[test]
fn requests_draw_on_the_hold_and_reserved_rows_count_at_their_worst_case() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.db");
    let store = open(&path);
    let ids = prepped_papers(&store, 2);
    let policy = expensive_usd(1.5);
    let c = store
        .claim_within_budget(&request("o:1:a", &[Phase::Expensive]), &policy, &one_dollar)
        .unwrap()
        .claim
        .unwrap();
    let exec = format!("{}/expensive/1/analyse@1/mechanism", c.id);
    let worst = |usd: f64| CallWorst {
        tokens: 100,
        usd: Some(usd),
    };
    // $0.40 from the hold: committed stays $1.
    let a = store
        .reserve_llm_call(&reservation(&exec, "expensive"), &worst(0.4), Some(&policy))
        .unwrap()
        .unwrap();
    let u = store.spend_usage(&policy).unwrap();
    assert!((u.ledger.expensive.usd - 0.4).abs() < 1e-9);
    assert!((u.holds.expensive.usd - 0.6).abs() < 1e-9);
    // $0.80: $0.60 from the hold, $0.20 new — fits in $1.50.
    store
        .reserve_llm_call(&reservation(&exec, "expensive"), &worst(0.8), Some(&policy))
        .unwrap()
        .unwrap();
    let u = store.spend_usage(&policy).unwrap();
    assert!((u.committed().expensive.usd - 1.2).abs() < 1e-9, "{u:?}");
    // $0.50 more does not fit ($1.20 + $0.50 > $1.50): refused, no row.
    let rows = |s: &Store| {
        s.spend_bill(None)
            .unwrap()
            .iter()
            .map(|r| r.requests)
            .sum::<u64>()
    };
    let refused = store
        .reserve_llm_call(&reservation(&exec, "expensive"), &worst(0.5), Some(&policy))
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.unit, Unit::Usd);
    assert!((refused.left - 0.3).abs() < 1e-9, "{refused:?}");
    assert_eq!(rows(&store), 2);
    // A cheap request is not held back by the expensive budget.
    store
        .reserve_llm_call(&reservation("run-1", "cheap"), &worst(5.0), Some(&policy))
        .unwrap()
        .unwrap();

    // The first request settles at its real cost.
    store
        .settle_llm_call(
            a,
            &LlmSettlement {
                status: CallStatus::Ok,
                http_status: Some(200),
                error_kind: None,
                error_message: None,
                prompt_tokens: Some(30),
                completion_tokens: Some(20),
                total_tokens: Some(50),
                cost: Some(0.05),
                cost_source: CostSource::Provider,
                currency: Some("USD".into()),
                latency_ms: 1,
                retry_after: None,
                response: None,
            },
        )
        .unwrap();
    // "kill -9": the process is gone with one request still reserved, and
    // its claim is rolled back by the reaper (as a dead owner's would be).
    drop(store);
    let store = open(&path);
    store.release_claim(&c, "owner died").unwrap();
    let u = store.spend_usage(&policy).unwrap();
    // $0.05 settled + $0.80 worst case of the reserved row; no hold left.
    assert!((u.ledger.expensive.usd - 0.85).abs() < 1e-9, "{u:?}");
    assert_eq!(u.holds.expensive.usd, 0.0);
    assert_eq!(u.ledger.expensive.tokens, 50 + 100);
    // So a $1 phase does not fit ($0.85 + $1 > $1.50); counted at 0 the
    // reserved row would have let it through.
    let a = store
        .claim_within_budget(&request("o:2:b", &[Phase::Expensive]), &policy, &one_dollar)
        .unwrap();
    assert!(a.claim.is_none(), "{:?}", a.claim);
    assert_eq!(ids.len(), 2);
    // Tokens limits work the same way.
    let tokens = SpendPolicy {
        limits: SpendLimits {
            daily: UnitLimits {
                tokens: Some(1100),
                ..UnitLimits::default()
            },
            ..SpendLimits::default()
        },
        ..SpendPolicy::default()
    };
    // 150 expensive + 100 cheap tokens counted; 1000 more do not fit.
    let t = store
        .claim_within_budget(&request("o:2:b", &[Phase::Expensive]), &tokens, &one_dollar)
        .unwrap();
    assert_eq!(t.refused[0].1.unit, Unit::Tokens);
    assert_eq!(t.refused[0].1.left, 850.0);
}

/// The profiles of a site with prices, the mock billing the same prices,
/// and an output cap (so the worst case is bounded).
const PRICED_SCRIPT: &str = "models:\n  mock/cheap: {prompt_cost_per_mtok: 0.1, completion_cost_per_mtok: 0.2}\n  mock/expensive: {prompt_cost_per_mtok: 3.0, completion_cost_per_mtok: 15.0}\n";

fn priced_profiles(site: &Site) {
    let profiles = format!(
        "spec: flatprofile\nspec_version: \"4.2.1\"\ndata:\n  model_profiles:\n    cheap: {{provider: openai, name: mock/cheap, base_url: \"{0}\", api_key_env: MOCK_KEY, timeout: 30, max_tokens: 4000, price: {{input_per_mtok: 0.1, output_per_mtok: 0.2}}}}\n    expensive: {{provider: openai, name: mock/expensive, base_url: \"{0}\", api_key_env: MOCK_KEY, timeout: 30, max_tokens: 2000, price: {{input_per_mtok: 3.0, output_per_mtok: 15.0}}}}\n  default: cheap\n",
        site.mock.base_url()
    );
    std::fs::write(site.path().join("machines/profiles.yml"), profiles).unwrap();
}

/// The worst case in money of the expensive phase for the prepped paper
/// claimed next, as the runner computes it.
fn next_expensive_worst(site: &Site) -> f64 {
    let cfg = site.config();
    let settings = cfg.resolve().unwrap();
    let actions = paper_runner::runner::build::pipeline_actions(&cfg).unwrap();
    let bundle =
        paper_runner::runner::build::load_machine(&cfg, Phase::Expensive, &actions).unwrap();
    let plan = paper_runner::runner::budget::PhasePlan::of(&bundle, &settings.budget, 0);
    let bytes = site
        .store()
        .next_phase_input_bytes(Phase::Expensive)
        .unwrap()
        .unwrap();
    let need = plan.need(bytes);
    need.expensive
        .usd
        .unwrap_or_else(|| panic!("{plan:?} {need:?}"))
}

/// A dollar budget stops expensive claims before it is exceeded while prep
/// goes on: the expensive spend never passes it, prep finishes every paper,
/// status says why, and the ledger agrees with the provider's own bill.
#[tokio::test(flavor = "multi_thread")]
async fn a_dollar_budget_stops_expensive_claims_before_it_is_exceeded() {
    let site = Site::new(PRICED_SCRIPT).await;
    priced_profiles(&site);
    site.add_papers(0, 5);
    // Prep everything first, to size the budget from the real worst case.
    let out = tokio::task::block_in_place(|| site.run(&["--prep-only", "--workers", "4"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(site.statuses().values().all(|s| s == "prepped"));
    let worst = next_expensive_worst(&site);
    // Room for one phase's worst case and a little: a second phase is
    // admitted only once the first has settled at its (much lower) cost.
    let budget = worst * 1.2;
    std::fs::write(
        site.path().join("config.toml"),
        format!("[budget]\nexpensive_usd = {budget}\n"),
    )
    .unwrap();
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "4", "--log-level", "info"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let statuses = site.statuses();
    let done = statuses.values().filter(|s| *s == "done").count();
    assert!(
        done >= 1,
        "one phase always fits: {statuses:?}\n{}",
        stderr(&out)
    );
    assert!(done < 5, "the budget stopped some: {statuses:?}");
    assert!(
        statuses.values().all(|s| s == "done" || s == "prepped"),
        "{statuses:?}"
    );
    // Never over the budget, by the provider's own bill.
    let billed = site.mock.stats().billed_by_model["mock/expensive"].clone();
    assert!(billed.cost <= budget, "{} > {budget}", billed.cost);
    let bill = site.json(&["spend", "--by", "model"]);
    let expensive = bill["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["key"] == "mock/expensive")
        .unwrap();
    assert!((expensive["cost"].as_f64().unwrap() - billed.cost).abs() < 1e-9);
    assert!(expensive["cost"].as_f64().unwrap() <= budget);
    // Status: prep-only because the expensive budget cannot take another
    // phase; the forecast names the money limit.
    let s = site.json(&["status"]);
    assert_eq!(s["mode"]["prep_only"], true, "{}", s["mode"]);
    let reason = s["mode"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("expensive budget spent for today"),
        "{reason}"
    );
    let class = &s["budget"]["classes"][1];
    assert_eq!(class["usd"]["limit"].as_f64().unwrap(), budget);
    assert!((class["usd"]["used"].as_f64().unwrap() - billed.cost).abs() < 1e-9);
    assert!(class["usd"]["remaining"].as_f64().unwrap() < worst);
    assert!(
        stderr(&out).contains("expensive budget spent"),
        "{}",
        stderr(&out)
    );
}

/// kill -9 in the middle of expensive calls: the rows left reserved count
/// at their worst case in `status` (and so in every admission) until they
/// are settled; `runner spend` lists them as unsettled, not as spend.
#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_reserved_rows_count_at_their_worst_case() {
    let script = PRICED_SCRIPT.replace("15.0}", "15.0, latency_ms: 30000}");
    let site = Site::new(&script).await;
    priced_profiles(&site);
    site.add_papers(0, 1);
    std::fs::write(
        site.path().join("config.toml"),
        "[budget]\nexpensive_usd = 100.0\n",
    )
    .unwrap();
    let (mut child, log) = site.daemon();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while site.scalar(
        "SELECT COUNT(*) FROM llm_calls WHERE model = 'mock/expensive' AND status = 'reserved'",
    ) < 2
    {
        if std::time::Instant::now() > deadline {
            signal(&child.id().to_string(), "-KILL");
            let _ = child.wait();
            let rows: Vec<(String, String)> = site
                .conn()
                .prepare("SELECT model, status FROM llm_calls")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            panic!(
                "no expensive calls in flight: {rows:?}\n{}",
                log.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child.id().to_string(), "-KILL");
    let _ = child.wait();
    let _ = log.join();
    let worst: f64 = site
        .conn()
        .query_row(
            "SELECT SUM(worst_cost) FROM llm_calls WHERE status = 'reserved'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(worst > 0.0);
    let s = site.json(&["status"]);
    let used = s["budget"]["classes"][1]["usd"]["used"].as_f64().unwrap();
    assert!((used - worst).abs() < 1e-9, "{used} vs {worst}");
    let reserved = site.scalar("SELECT COUNT(*) FROM llm_calls WHERE status = 'reserved'");
    assert!(reserved >= 2);
    let bill = site.json(&["spend"]);
    assert_eq!(bill["total"]["unsettled"], reserved);
    assert!((bill["total"]["unsettled_worst_cost"].as_f64().unwrap() - worst).abs() < 1e-9);
}
