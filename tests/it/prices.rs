//! Prices (#16 item 1): a small machine against the mock provider with a
//! priced profile, a profile whose provider reports the cost itself, an
//! unpriced one and a priced one whose provider reports no usage. The
//! ledger rows say where each cost came from; `runner show` prints each
//! call's tokens and cost and the paper's total; `runner status` flags the
//! calls of unknown cost.

use crate::support::{self, arxiv, Site};
use paper_runner::llm::{HttpAgent, Ledger};
use paper_runner::store::ops::LlmCallRow;
use std::sync::Arc;

const SCRIPT: &str = r#"
models:
  priced: {omit_cost: true}
  provided: {cost_per_mtok: 2.0}
  free: {omit_cost: true}
  nousage: {omit_usage: true}
"#;

fn profiles(url: &str) -> String {
    let p = |name: &str, price: &str| {
        format!("    {name}: {{provider: mock, name: {name}, base_url: \"{url}\", api_key_env: null{price}}}\n")
    };
    format!(
        "spec: flatprofile\nspec_version: \"4.2.1\"\ndata:\n  model_profiles:\n{}{}{}{}  default: free\n",
        p("priced", ", price: {input_per_mtok: 3.0, output_per_mtok: 15.0}"),
        // A price far from what the provider charges: the provider wins.
        p("provided", ", price: {input_per_mtok: 100.0, output_per_mtok: 100.0, currency: usd}"),
        p("free", ""),
        p("nousage", ", price: {input_per_mtok: 1.0, output_per_mtok: 1.0}"),
    )
}

const MACHINE: &str = r#"spec: flatmachine
spec_version: "4.2.1"
data:
  name: priced-calls
  agents:
    a_priced: {spec: flatagent, spec_version: "4.2.1", data: {prompt: {user: "Summarise attention in two words."}, profile: priced}}
    a_provided: {spec: flatagent, spec_version: "4.2.1", data: {prompt: {user: "Summarise convolution in two words."}, profile: provided}}
    a_free: {spec: flatagent, spec_version: "4.2.1", data: {prompt: {user: "Summarise recurrence in two words."}, profile: free}}
    a_nousage: {spec: flatagent, spec_version: "4.2.1", data: {prompt: {user: "Summarise pooling in two words."}, profile: nousage}}
  states:
    start: {type: initial, agent: a_priced, transitions: [{to: two}]}
    two: {agent: a_provided, transitions: [{to: three}]}
    three: {agent: a_free, transitions: [{to: four}]}
    four: {agent: a_nousage, transitions: [{to: done}]}
    done: {type: final, output: {cost: context.machine.total_cost}}
"#;

fn call<'a>(calls: &'a [LlmCallRow], model: &str) -> &'a LlmCallRow {
    calls
        .iter()
        .find(|c| c.model == model)
        .unwrap_or_else(|| panic!("no call to {model}: {calls:?}"))
}

fn round9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_is_costed_from_the_provider_the_price_table_or_marked_unknown() {
    let site = Site::new(SCRIPT).await;
    site.add_papers(0, 1);
    let store = site.store();
    let paper = store.paper(&arxiv(0)).unwrap().unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("profiles.yml"),
        profiles(&site.mock.base_url()),
    )
    .unwrap();
    std::fs::write(dir.path().join("machine.yml"), MACHINE).unwrap();
    let bundle = support::load(&dir.path().join("machine.yml"));
    let agent = Arc::new(HttpAgent::new(Some(Ledger::new(store.clone()))).unwrap());
    let engine = support::engine(bundle, agent);
    let out = engine
        .run(&format!("{}/prep/1", paper.id), Default::default())
        .await
        .unwrap();

    let calls = store.paper_llm_calls(&paper.id).unwrap();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(calls.iter().all(|c| c.status == "ok"), "{calls:?}");

    // Priced, provider silent on cost: tokens × the profile's price.
    let priced = call(&calls, "priced");
    let (pin, pout) = (
        priced.prompt_tokens.unwrap(),
        priced.completion_tokens.unwrap(),
    );
    assert!(pin > 0 && pout > 0);
    let table = round9((pin as f64 * 3.0 + pout as f64 * 15.0) / 1e6);
    assert_eq!(priced.cost, Some(table));
    assert_eq!(priced.cost_source.as_deref(), Some("price_table"));
    assert_eq!(priced.currency.as_deref(), Some("USD"));

    // The provider's own figure wins over the (very different) price.
    let provided = call(&calls, "provided");
    let total = provided.total_tokens.unwrap();
    assert_eq!(provided.cost, Some(round9(total as f64 * 2.0 / 1e6)));
    assert_eq!(provided.cost_source.as_deref(), Some("provider"));
    assert_eq!(provided.currency.as_deref(), Some("USD"));

    // No price, no provider cost: unknown (not zero), tokens still kept.
    let free = call(&calls, "free");
    assert_eq!(free.cost, None);
    assert_eq!(free.cost_source.as_deref(), Some("unknown"));
    assert!(free.prompt_tokens.is_some_and(|n| n > 0));

    // A price but no usage reported: tokens and cost unknown.
    let nousage = call(&calls, "nousage");
    assert_eq!(nousage.cost, None);
    assert_eq!(nousage.cost_source.as_deref(), Some("unknown"));
    assert_eq!(nousage.prompt_tokens, None);

    // `/metrics` totals: known spend per model and currency; unknown
    // costs counted apart, never as 0.
    let totals = store.llm_totals().unwrap();
    let of = |m: &str| {
        let model = &call(&calls, m).model;
        totals.iter().find(|t| &t.model == model).unwrap().clone()
    };
    assert_eq!(of("priced").costs, vec![("USD".to_string(), table)]);
    assert_eq!(of("priced").unknown_cost, 0);
    assert_eq!(of("free").costs, Vec::<(String, f64)>::new());
    assert_eq!(of("free").unknown_cost, 1);
    assert_eq!(of("nousage").unknown_cost, 1);

    // The machine's running total sees the same known costs.
    let known = round9(priced.cost.unwrap() + provided.cost.unwrap());
    assert_eq!(out["cost"].as_f64().map(round9), Some(known), "{out}");

    // `runner show`: the paper's totals and each call's cost.
    let show = site.json(&["show", &arxiv(0)]);
    let t = &show["llm_totals"];
    assert_eq!(t["calls"], 4);
    assert_eq!(t["unknown_cost"], 2);
    assert_eq!(t["cost"].as_f64(), Some(known));
    assert_eq!(t["currency"], "USD");
    let tokens_in: u64 = calls.iter().filter_map(|c| c.prompt_tokens).sum();
    assert_eq!(t["prompt_tokens"], tokens_in);
    let text = site.ok(&["show", &arxiv(0)]);
    assert!(
        text.contains(&format!("cost: {known:.6} USD (2 calls of unknown cost)")),
        "{text}"
    );
    assert!(text.contains(&format!("{table:.6}")), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");

    // `runner status`: today's calls of unknown cost, by model.
    let status = site.json(&["status"]);
    let u = &status["unknown_cost"];
    assert_eq!(u["calls"], 2, "{u}");
    let mut models: Vec<&str> = u["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    models.sort();
    assert_eq!(models, ["free", "nousage"]);
    let text = site.ok(&["status"]);
    assert!(
        text.contains("unknown cost: 2 calls today; add `price:` to the profiles of:"),
        "{text}"
    );
    assert!(text.contains("  free: free (1 call)"), "{text}");
    assert!(
        text.contains("  nousage: nousage (1 call, 1 with no usage reported)"),
        "{text}"
    );
}

#[test]
fn machine_check_reports_a_bad_price() {
    let dir = tempfile::tempdir().unwrap();
    let bad = profiles("http://127.0.0.1:9/v1").replace(
        "price: {input_per_mtok: 3.0, output_per_mtok: 15.0}",
        "price: {input_per_mtok: 3.0, output_per_mtok: 1e9}",
    );
    std::fs::write(dir.path().join("profiles.yml"), bad).unwrap();
    std::fs::write(dir.path().join("machine.yml"), MACHINE).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["machine", "check", "machine.yml"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = support::stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("price.output_per_mtok"), "{stdout}");
}
