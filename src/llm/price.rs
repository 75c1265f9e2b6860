//! What a call costs: a profile's `price` (per million tokens), the cost
//! of one answered call from it or from the provider's own figure, and
//! the `cost_source` every settled ledger row records.
//!
//! Precedence: a provider that reports the cost itself (OpenRouter's
//! `usage.cost`) is the one that bills, so its figure wins over the price
//! table; the table only fills in for providers that report tokens alone.
//! When neither is available the row says `unknown` rather than 0, so a
//! missing price shows up in `runner status` instead of as free spend.

use crate::store::CostSource;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

/// Highest price per million tokens a profile may set. The dearest models
/// cost a few hundred dollars per million tokens; a larger figure is a
/// typo (a price per token or per thousand written as per million).
pub const MAX_PRICE_PER_MTOK: f64 = 10_000.0;
/// Currency of a `price` that names none.
pub const DEFAULT_CURRENCY: &str = "USD";
/// Currency of a provider-reported cost: OpenRouter's `usage.cost` is in
/// credits, which are US dollars.
pub const PROVIDER_CURRENCY: &str = "USD";
/// Costs are rounded to this many decimal places (the store's
/// [`MONEY_DECIMALS`](crate::store::MONEY_DECIMALS), so budget sums and
/// stored figures agree).
pub const COST_DECIMALS: i32 = crate::store::MONEY_DECIMALS;

/// A profile's prices, per million tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// ISO 4217 code, upper case.
    pub currency: String,
}

/// Round a cost to [`COST_DECIMALS`] places.
pub fn round_cost(x: f64) -> f64 {
    crate::store::round_money(x)
}

impl Price {
    /// Read a profile's `price` value (`None`/null: no price). Errors name
    /// the profile and the field.
    pub fn from_config(profile: &str, v: Option<&Value>) -> Result<Option<Price>, String> {
        let m: &Map<String, Value> = match v {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(format!(
                    "model profile for '{profile}': `price` must be a mapping like \
                     {{input_per_mtok: 3.0, output_per_mtok: 15.0, currency: USD}} (got {other})"
                ))
            }
        };
        if let Some(k) = m.keys().find(|k| {
            !matches!(
                k.as_str(),
                "input_per_mtok" | "output_per_mtok" | "currency"
            )
        }) {
            return Err(format!(
                "model profile for '{profile}': unknown `price` field `{k}` \
                 (use input_per_mtok, output_per_mtok, currency)"
            ));
        }
        let per_mtok = |k: &str| -> Result<f64, String> {
            let v = m.get(k).ok_or_else(|| {
                format!("model profile for '{profile}': `price` needs `{k}` (per million tokens)")
            })?;
            v.as_f64()
                .filter(|p| p.is_finite() && (0.0..=MAX_PRICE_PER_MTOK).contains(p))
                .ok_or_else(|| {
                    format!(
                        "model profile for '{profile}': `price.{k}` must be a number from 0 to \
                         {MAX_PRICE_PER_MTOK} (per million tokens; got {v})"
                    )
                })
        };
        let input_per_mtok = per_mtok("input_per_mtok")?;
        let output_per_mtok = per_mtok("output_per_mtok")?;
        let currency = match m.get("currency") {
            None | Some(Value::Null) => DEFAULT_CURRENCY.to_string(),
            Some(Value::String(c))
                if c.len() == 3 && c.chars().all(|c| c.is_ascii_alphabetic()) =>
            {
                c.to_ascii_uppercase()
            }
            Some(other) => {
                return Err(format!(
                    "model profile for '{profile}': `price.currency` must be a three-letter \
                     code such as USD (got {other})"
                ))
            }
        };
        Ok(Some(Price {
            input_per_mtok,
            output_per_mtok,
            currency,
        }))
    }

    /// The cost of `prompt` input and `completion` output tokens, rounded.
    pub fn cost(&self, prompt: u64, completion: u64) -> f64 {
        round_cost(
            (prompt as f64 * self.input_per_mtok + completion as f64 * self.output_per_mtok)
                / 1_000_000.0,
        )
    }
}

/// Tokens a provider reported for one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenUsage {
    pub prompt: u64,
    pub completion: u64,
}

/// The cost columns of one settled ledger row.
#[derive(Debug, Clone, PartialEq)]
pub struct CallCost {
    /// None exactly when `source` is `Unknown`.
    pub cost: Option<f64>,
    pub source: CostSource,
    pub currency: Option<String>,
}

impl CallCost {
    /// Nothing was billed.
    pub fn none() -> CallCost {
        CallCost {
            cost: Some(0.0),
            source: CostSource::None,
            currency: None,
        }
    }

    pub fn unknown() -> CallCost {
        CallCost {
            cost: None,
            source: CostSource::Unknown,
            currency: None,
        }
    }

    /// The cost of an answered call. `usage`: the tokens the provider
    /// reported (None: it sent no `usage`); `provider_cost`: its own figure.
    /// A provider figure that is not a finite non-negative number is
    /// ignored (a broken provider must not write NaN into the ledger).
    pub fn answered(
        price: Option<&Price>,
        usage: Option<TokenUsage>,
        provider_cost: Option<f64>,
    ) -> CallCost {
        if let Some(c) = provider_cost.filter(|c| c.is_finite() && *c >= 0.0) {
            return CallCost {
                cost: Some(round_cost(c)),
                source: CostSource::Provider,
                currency: Some(PROVIDER_CURRENCY.to_string()),
            };
        }
        match (price, usage) {
            (Some(p), Some(u)) => CallCost {
                cost: Some(p.cost(u.prompt, u.completion)),
                source: CostSource::PriceTable,
                currency: Some(p.currency.clone()),
            },
            _ => CallCost::unknown(),
        }
    }

    /// The cost of a failed attempt: an HTTP error status from the provider
    /// means the request was refused and billed nothing; a failure with no
    /// status (timeout, broken connection) or a 2xx that could not be used
    /// may still have been billed, at a cost nobody told us.
    pub fn failed(http_status: Option<u16>) -> CallCost {
        match http_status {
            Some(s) if (400..600).contains(&s) => CallCost::none(),
            _ => CallCost::unknown(),
        }
    }
}

/// Models whose provider-vs-table difference was already logged by this
/// process.
static COMPARED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

/// Whether `model` has not been compared yet in this process (and mark it).
fn first_comparison(model: &str) -> bool {
    match COMPARED.lock() {
        Ok(mut seen) => seen.insert(model.to_string()),
        // A poisoned set only costs a repeated log line.
        Err(poisoned) => poisoned.into_inner().insert(model.to_string()),
    }
}

/// When the provider reported a cost and the profile has a price in the
/// same currency, log the difference once per model per process, so an
/// out-of-date price table is noticed without a line per call. A
/// difference above 5% (and above a millionth) is a warning.
pub fn log_difference(
    model: &str,
    price: Option<&Price>,
    usage: Option<TokenUsage>,
    cost: &CallCost,
) {
    let (Some(p), Some(u), Some(provider)) = (price, usage, cost.cost) else {
        return;
    };
    if cost.source != CostSource::Provider || p.currency != PROVIDER_CURRENCY {
        return;
    }
    if !first_comparison(model) {
        return;
    }
    let table = p.cost(u.prompt, u.completion);
    let diff = round_cost(provider - table);
    let large = diff.abs() > 1e-6 && diff.abs() > 0.05 * table.max(provider);
    if large {
        tracing::warn!(%model, provider_cost = provider, price_table_cost = table, difference = diff,
            "the provider's cost differs from the profile's price (using the provider's; logged once per model)");
    } else {
        tracing::info!(%model, provider_cost = provider, price_table_cost = table, difference = diff,
            "the provider's cost vs the profile's price (using the provider's; logged once per model)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn price(v: Value) -> Result<Option<Price>, String> {
        Price::from_config("p", Some(&v))
    }

    #[test]
    fn prices_parse_with_a_default_currency() {
        let p = price(json!({"input_per_mtok": 3.0, "output_per_mtok": 15}))
            .unwrap()
            .unwrap();
        assert_eq!(p.input_per_mtok, 3.0);
        assert_eq!(p.output_per_mtok, 15.0);
        assert_eq!(p.currency, "USD");
        let eur = price(json!({"input_per_mtok": 0, "output_per_mtok": 0, "currency": "eur"}))
            .unwrap()
            .unwrap();
        assert_eq!(eur.currency, "EUR");
        assert_eq!(Price::from_config("p", None).unwrap(), None);
        assert_eq!(Price::from_config("p", Some(&Value::Null)).unwrap(), None);
    }

    #[test]
    fn bad_prices_are_errors_naming_the_field() {
        for (v, field) in [
            (json!("3/15"), "price"),
            (json!({"input_per_mtok": 3.0}), "output_per_mtok"),
            (
                json!({"input_per_mtok": -1, "output_per_mtok": 1}),
                "input_per_mtok",
            ),
            (
                json!({"input_per_mtok": 1, "output_per_mtok": 1e9}),
                "output_per_mtok",
            ),
            (
                json!({"input_per_mtok": "3", "output_per_mtok": 1}),
                "input_per_mtok",
            ),
            (
                json!({"input_per_mtok": 1, "output_per_mtok": 1, "currency": "dollars"}),
                "currency",
            ),
            (
                json!({"input_per_mtok": 1, "output_per_mtok": 1, "currency": "U$D"}),
                "currency",
            ),
            (
                json!({"input_per_mtok": 1, "output_per_mtok": 1, "currency": 840}),
                "currency",
            ),
            (json!({"input": 1, "output_per_mtok": 1}), "input"),
        ] {
            let e = price(v.clone()).unwrap_err();
            assert!(e.contains(field) && e.contains("'p'"), "{v}: {e}");
        }
        // Not finite: JSON cannot carry NaN, YAML can (`.nan`, `.inf`).
        let nan: Value =
            serde_yaml::from_str("{input_per_mtok: .nan, output_per_mtok: 1}").unwrap();
        assert!(price(nan).is_err());
        let inf: Value =
            serde_yaml::from_str("{input_per_mtok: 1, output_per_mtok: .inf}").unwrap();
        assert!(price(inf).is_err());
    }

    #[test]
    fn costs_round_to_nano_units() {
        let p = Price {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
            currency: "USD".into(),
        };
        assert_eq!(p.cost(1000, 200), 0.006);
        assert_eq!(p.cost(0, 0), 0.0);
        assert_eq!(p.cost(1, 0), 0.000003);
        // 0.1 + 0.2 noise does not reach the ledger.
        let q = Price {
            input_per_mtok: 0.1,
            output_per_mtok: 0.2,
            currency: "USD".into(),
        };
        assert_eq!(q.cost(1_000_000, 1_000_000), 0.3);
        assert_eq!(q.cost(1, 0), 0.0000001);
        // Below half a nano-unit rounds to zero, above it up.
        let tiny = Price {
            input_per_mtok: 0.0004,
            output_per_mtok: 0.0,
            currency: "USD".into(),
        };
        assert_eq!(tiny.cost(1, 1_000_000), 0.0);
        assert_eq!(round_cost(0.0000000016), 0.000000002);
    }

    #[test]
    fn provider_cost_wins_then_the_price_table_then_unknown() {
        let p = Price {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
            currency: "EUR".into(),
        };
        let u = Some(TokenUsage {
            prompt: 1000,
            completion: 100,
        });
        let c = CallCost::answered(Some(&p), u, Some(0.01));
        assert_eq!(
            (c.cost, c.source, c.currency.as_deref()),
            (Some(0.01), CostSource::Provider, Some("USD"))
        );
        let c = CallCost::answered(Some(&p), u, None);
        assert_eq!(
            (c.cost, c.source, c.currency.as_deref()),
            (Some(0.0045), CostSource::PriceTable, Some("EUR"))
        );
        // A broken provider figure is ignored, not stored.
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            let c = CallCost::answered(Some(&p), u, Some(bad));
            assert_eq!(c.source, CostSource::PriceTable, "{bad}");
        }
        // Zero tokens cost zero, from the table.
        let zero = Some(TokenUsage {
            prompt: 0,
            completion: 0,
        });
        let c = CallCost::answered(Some(&p), zero, None);
        assert_eq!((c.cost, c.source), (Some(0.0), CostSource::PriceTable));
        // No usage reported, or no price: unknown, never 0.
        assert_eq!(
            CallCost::answered(Some(&p), None, None),
            CallCost::unknown()
        );
        assert_eq!(CallCost::answered(None, u, None), CallCost::unknown());
        assert_eq!(CallCost::unknown().cost, None);
        // Failures: an HTTP refusal billed nothing; a timeout may have.
        assert_eq!(CallCost::failed(Some(429)), CallCost::none());
        assert_eq!(CallCost::failed(Some(500)), CallCost::none());
        assert_eq!(CallCost::failed(None), CallCost::unknown());
        assert_eq!(CallCost::failed(Some(200)), CallCost::unknown());
    }

    #[test]
    fn each_model_is_compared_once_per_process() {
        assert!(first_comparison("price-test|model-a"));
        assert!(!first_comparison("price-test|model-a"));
        assert!(first_comparison("price-test|model-b"));
    }
}
