//! `runner spend` (the bill from the ledger, in every format) and the
//! averages and queue forecast of `runner status` (#16 items 4 and 5).

use crate::support::site::Site;
use crate::support::stderr;
use chrono::{DateTime, TimeDelta, Utc};
use paper_runner::ops::status::status_report;
use paper_runner::runner::Config;
use paper_runner::store::{
    CallStatus, CallWorst, CostSource, LlmReservation, LlmSettlement, ManualClock, NewPaper, Store,
    StoreOptions,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const SCRIPT: &str = "models:\n  mock/cheap: {prompt_cost_per_mtok: 0.1, completion_cost_per_mtok: 0.2}\n  mock/expensive: {prompt_cost_per_mtok: 3.0, completion_cost_per_mtok: 15.0}\n";

fn reservation(execution_id: &str, profile: &str, model: &str) -> LlmReservation {
    LlmReservation {
        execution_id: execution_id.into(),
        machine: "m".into(),
        state: "s".into(),
        step: 1,
        sample: 0,
        attempt: 1,
        agent: "a".into(),
        profile: Some(profile.into()),
        provider: "openai".into(),
        model: model.into(),
        request_hash: "h".into(),
        fallback_from: None,
    }
}

fn settled(tokens: (u64, u64), cost: Option<f64>) -> LlmSettlement {
    LlmSettlement {
        status: CallStatus::Ok,
        http_status: Some(200),
        error_kind: None,
        error_message: None,
        prompt_tokens: Some(tokens.0),
        completion_tokens: Some(tokens.1),
        total_tokens: Some(tokens.0 + tokens.1),
        cost,
        cost_source: if cost.is_some() {
            CostSource::Provider
        } else {
            CostSource::Unknown
        },
        currency: cost.map(|_| "USD".into()),
        latency_ms: 1,
        retry_after: None,
        response: None,
    }
}

/// One settled call of `cost` under `execution_id`.
fn call(store: &Store, execution_id: &str, profile: &str, model: &str, cost: Option<f64>) {
    let worst = CallWorst {
        tokens: 1000,
        usd: Some(1.0),
    };
    let id = store
        .reserve_llm_call(&reservation(execution_id, profile, model), &worst, None)
        .unwrap()
        .unwrap();
    store
        .settle_llm_call(id, &settled((100, 10), cost))
        .unwrap();
}

fn sum(groups: &Value, field: &str) -> f64 {
    groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g[field].as_f64().unwrap())
        .sum()
}

/// The bill of a real run equals the provider's own count of tokens and
/// cost, whatever the grouping and format.
#[tokio::test(flavor = "multi_thread")]
async fn the_bill_matches_the_providers_own_count_in_every_format() {
    let site = Site::new(SCRIPT).await;
    let profiles = format!(
        "spec: flatprofile\nspec_version: \"4.2.1\"\ndata:\n  model_profiles:\n    cheap: {{provider: openai, name: mock/cheap, base_url: \"{0}\", api_key_env: MOCK_KEY, timeout: 30, max_tokens: 4000}}\n    expensive: {{provider: openai, name: mock/expensive, base_url: \"{0}\", api_key_env: MOCK_KEY, timeout: 30, max_tokens: 4000}}\n  default: cheap\n",
        site.mock.base_url()
    );
    std::fs::write(site.path().join("machines/profiles.yml"), profiles).unwrap();
    site.add_papers(0, 2);
    let out = tokio::task::block_in_place(|| site.run(&["--workers", "2"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(site.statuses().values().all(|s| s == "done"));
    let mock = site.mock.stats();
    let billed = &mock.billed;

    let day = site.json(&["spend"]);
    assert_eq!(day["by"], "day");
    assert_eq!(day["since"], Value::Null);
    let t = &day["total"];
    assert_eq!(t["requests"].as_u64().unwrap(), mock.requests);
    assert_eq!(t["prompt_tokens"].as_u64().unwrap(), billed.prompt_tokens);
    assert_eq!(
        t["completion_tokens"].as_u64().unwrap(),
        billed.completion_tokens
    );
    assert_eq!(
        t["total_tokens"].as_u64().unwrap(),
        billed.prompt_tokens + billed.completion_tokens
    );
    assert!(
        (t["cost"].as_f64().unwrap() - billed.cost).abs() < 1e-9,
        "{t}"
    );
    assert_eq!(t["currency"], "USD");
    assert_eq!(t["unknown_cost"], 0);
    assert_eq!(t["unsettled"], 0);

    let by_model = site.json(&["spend", "--by", "model"]);
    let groups = by_model["groups"].as_array().unwrap();
    let keys: Vec<&str> = groups.iter().map(|g| g["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["mock/cheap", "mock/expensive"]);
    for g in groups {
        let b = &mock.billed_by_model[g["key"].as_str().unwrap()];
        assert_eq!(g["prompt_tokens"].as_u64().unwrap(), b.prompt_tokens);
        assert!((g["cost"].as_f64().unwrap() - b.cost).abs() < 1e-9);
    }
    let by_phase = site.json(&["spend", "--by", "phase"]);
    let keys: Vec<&str> = by_phase["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["expensive", "prep", "wrap"]);
    assert!((sum(&by_phase["groups"], "cost") - billed.cost).abs() < 1e-9);
    // Each paper: 1 prep call, 3 expensive, 3 wrap (a PASS verdict).
    let by_paper = site.json(&["spend", "--by", "paper"]);
    for g in by_paper["groups"].as_array().unwrap() {
        assert!(g["key"].as_str().unwrap().starts_with("paper:2501.0000"));
        assert_eq!(g["requests"], 7, "{g}");
    }

    // CSV: a header and one line per group whose columns sum to the total.
    let csv = site.ok(&["spend", "--by", "phase", "--csv"]);
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "phase,requests,prompt_tokens,completion_tokens,total_tokens,cost,currency,unknown_cost_calls,unsettled_calls,unsettled_worst_cost"
    );
    assert_eq!(lines.len(), 4);
    let cost: f64 = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(5).unwrap().parse::<f64>().unwrap())
        .sum();
    assert!((cost - billed.cost).abs() < 1e-8);
    let tokens: u64 = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(tokens, billed.prompt_tokens);

    // The table for people.
    let human = site.ok(&["spend", "--by", "model"]);
    assert!(human.contains("TOTAL"), "{human}");
    assert!(human.contains("mock/expensive"), "{human}");
    assert!(human.lines().all(|l| l.chars().count() <= 80), "{human}");

    // --since: nothing after tomorrow; a malformed date is a usage error.
    let tomorrow = (Utc::now() + TimeDelta::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let none = site.json(&["spend", "--since", &tomorrow]);
    assert_eq!(none["groups"], json!([]));
    assert_eq!(none["total"]["requests"], 0);
    let bad = site.run(&["spend", "--since", "last tuesday"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

/// CSV quotes what needs quoting; unknown costs and unsettled calls are
/// counted apart, never summed as 0.
#[test]
fn csv_is_quoted_and_unknown_costs_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Store::open(&path, &StoreOptions::default()).unwrap();
    call(
        &store,
        "paper:x/prep/1",
        "cheap",
        "weird, \"model\"",
        Some(0.5),
    );
    call(&store, "paper:x/prep/1", "cheap", "plain", None);
    store
        .reserve_llm_call(
            &reservation("paper:x/wrap/1", "cheap", "plain"),
            &CallWorst {
                tokens: 10,
                usd: Some(0.25),
            },
            None,
        )
        .unwrap()
        .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(args)
            .args(["--db", path.to_str().unwrap()])
            .env_remove("RUNNER_CONFIG")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let csv = run(&["spend", "--by", "model", "--csv"]);
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(lines[1], "plain,2,100,10,110,0.000000000,,1,1,0.250000000");
    assert_eq!(
        lines[2],
        "\"weird, \"\"model\"\"\",1,100,10,110,0.500000000,USD,0,0,0.000000000"
    );
    let human = run(&["spend", "--by", "phase"]);
    assert!(
        human.contains("unknown cost: 1 call not in the totals"),
        "{human}"
    );
    assert!(
        human.contains("unsettled: 1 call still reserved (worst case 0.250000)"),
        "{human}"
    );
    let json: Value = serde_json::from_str(&run(&["spend", "--json"])).unwrap();
    assert_eq!(json["total"]["cost"], 0.5);
    assert_eq!(json["total"]["unknown_cost"], 1);
    assert_eq!(json["total"]["unsettled"], 1);
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The averages and the forecast on a ledger whose every figure is known.
#[test]
fn the_forecast_of_a_known_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(at("2026-03-02T10:00:00Z").timestamp_millis());
    let store = Store::open(
        &dir.path().join("f.db"),
        &StoreOptions {
            clock: Arc::new(clock.clone()),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let add = |id: &str| {
        store
            .add_paper(&NewPaper {
                arxiv_id: id.into(),
                source: "test".into(),
                ..NewPaper::default()
            })
            .unwrap();
    };
    // Run paper `id` through `phases` (in order from its current one):
    // prep 1 call of $0.01, expensive 3 of $0.10, wrap 2 of $0.01.
    let run = |id: &str, phases: &[&str]| {
        for phase in phases {
            let (calls, cost, profile, model) = match *phase {
                "prep" => (1, 0.01, "cheap", "c"),
                "expensive" => (3, 0.10, "expensive", "e"),
                _ => (2, 0.01, "cheap", "c"),
            };
            let c = store
                .claim_paper(id, "o:1:a", Duration::from_secs(60))
                .unwrap()
                .unwrap();
            assert_eq!(c.phase.name(), *phase);
            for i in 0..calls {
                let exec = format!("paper:{id}/{phase}/1/s@1/child{i}");
                call(&store, &exec, profile, model, Some(cost));
            }
            store.finish_phase(&c, &json!({}), None, 1).unwrap();
        }
    };
    // Two done papers (their prep two days ago, the rest today), one
    // prepped today, one pending.
    for id in ["2601.00001", "2601.00002", "2601.00003", "2601.00004"] {
        add(id);
    }
    clock.set(at("2026-02-28T10:00:00Z").timestamp_millis());
    run("2601.00001", &["prep"]);
    run("2601.00002", &["prep"]);
    clock.set(at("2026-03-02T09:00:00Z").timestamp_millis());
    for id in ["2601.00001", "2601.00002"] {
        run(id, &["expensive", "wrap"]);
    }
    run("2601.00003", &["prep"]);
    clock.set(at("2026-03-02T10:00:00Z").timestamp_millis());

    let mut cfg = Config {
        db: dir.path().join("f.db"),
        machines_dir: dir.path().join("no-machines"),
        ..Config::default()
    };
    cfg.budget.expensive_usd = Some(0.9);
    cfg.budget.daily_usd = Some(2.0);
    let settings = cfg.resolve().unwrap();
    let r = status_report(&store, &settings, None, at("2026-03-02T10:00:00Z")).unwrap();
    let f = &r.forecast;
    // Last day: 2 done papers, each $0.01 prep (two days ago, still its
    // paper's) + $0.30 expensive + $0.02 wrap.
    assert_eq!(f.done_last_day, 2);
    let per_paper = f.per_done_paper.unwrap();
    assert!((per_paper.cost - 0.33).abs() < 1e-9, "{per_paper:?}");
    assert_eq!(per_paper.requests, 6.0);
    assert_eq!(per_paper.tokens, 6.0 * 110.0);
    let avg = |p: &str| {
        f.phases
            .iter()
            .find(|a| a.phase.name() == p)
            .unwrap_or_else(|| panic!("{p}: {f:?}"))
    };
    // Prep: only paper 3 finished it in the last day.
    assert_eq!((avg("prep").samples, avg("prep").window_hours), (1, 24));
    assert!((avg("prep").per_phase.cheap.cost - 0.01).abs() < 1e-9);
    assert_eq!(avg("expensive").samples, 2);
    assert!((avg("expensive").per_phase.expensive.cost - 0.30).abs() < 1e-9);
    assert!((avg("wrap").per_phase.cheap.cost - 0.02).abs() < 1e-9);
    // The queue: one pending (all three phases) and one prepped.
    assert_eq!(f.papers, 2);
    let s = f.spend.unwrap();
    assert!((s.expensive.cost - 0.60).abs() < 1e-9, "{s:?}");
    assert!((s.cheap.cost - 0.05).abs() < 1e-9, "{s:?}");
    // $0.60 of a $0.90 expensive budget is the tightest: 0.67 days.
    assert_eq!(f.days, Some(0.67));
    assert_eq!(f.binding.as_deref(), Some("expensive_usd"));
    assert_eq!(
        f.text,
        "the 2 papers in the queue will cost about $0.65 and need 0.7 days at today's budget"
    );
    // The spend of today in every unit, per class.
    let e = &r.budget.classes[1];
    assert!((e.usd.used - 0.60).abs() < 1e-9, "{e:?}");
    assert_eq!(e.usd.limit, Some(0.9));
    assert!((e.usd.remaining.unwrap() - 0.30).abs() < 1e-9);
    assert_eq!(e.used, 6);
    assert_eq!(e.tokens.used, 6 * 110);
    let text = paper_runner::ops::status::render_human(&r);
    assert!(
        text.contains("forecast: the 2 papers in the queue will cost about $0.65"),
        "{text}"
    );
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
}
