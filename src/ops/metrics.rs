//! In-process metrics that only the running process can see: transitions
//! and state durations, counted by a `tracing` layer that watches the
//! engine's events. (Everything that is in the database — queue, ledger,
//! breakers, budget — is read at scrape time instead, so it is right even
//! for work other processes did.)
//!
//! The layer carries its own per-layer filter (the engine's target at
//! DEBUG), so it sees state events whatever `RUST_LOG` says: a quiet log
//! must not mean empty metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// Upper bounds (seconds) of the state-duration histogram: from a quick
/// native action to a long LLM call.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0,
];

/// A Prometheus-style histogram: per-bucket counts (not cumulative), sum
/// and count.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub counts: [u64; DURATION_BUCKETS.len()],
    /// Observations above the largest bound.
    pub overflow: u64,
    pub sum: f64,
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; DURATION_BUCKETS.len()],
            overflow: 0,
            sum: 0.0,
            count: 0,
        }
    }
}

impl Histogram {
    pub fn observe(&mut self, v: f64) {
        let v = if v.is_finite() && v > 0.0 { v } else { 0.0 };
        match DURATION_BUCKETS.iter().position(|b| v <= *b) {
            Some(i) => self.counts[i] += 1,
            None => self.overflow += 1,
        }
        self.sum += v;
        self.count += 1;
    }

    /// Cumulative counts per bound (`le`), as the text format wants.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        DURATION_BUCKETS
            .iter()
            .zip(self.counts.iter())
            .map(|(b, n)| {
                acc += n;
                (*b, acc)
            })
            .collect()
    }
}

/// What the layer counted so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Transitions taken (on_error routes included), per machine.
    pub transitions: BTreeMap<String, u64>,
    /// State durations (enter → exit checkpoint), per machine.
    pub state_durations: BTreeMap<String, Histogram>,
    /// Machine executions that ended, per (machine, outcome: done|failed).
    pub machine_ends: BTreeMap<(String, String), u64>,
}

/// The registry the layer writes to and `/metrics` reads; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<MetricsSnapshot>>,
}

/// The metrics layer with its own filter, ready to add to a subscriber.
pub type FilteredMetricsLayer<S> = Filtered<MetricsLayer, Targets, S>;

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// The layer that fills this registry, filtered to the engine's events
    /// and spans at DEBUG whatever the log filter says.
    pub fn layer<S>(&self) -> FilteredMetricsLayer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        MetricsLayer {
            metrics: self.clone(),
        }
        .with_filter(Targets::new().with_target("flatmachines::engine", Level::DEBUG))
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> MetricsSnapshot {
        match self.inner.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut MetricsSnapshot)) {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    pub fn record_transition(&self, machine: &str) {
        self.update(|m| *m.transitions.entry(machine.to_string()).or_default() += 1);
    }

    pub fn record_state(&self, machine: &str, seconds: f64) {
        self.update(|m| {
            m.state_durations
                .entry(machine.to_string())
                .or_default()
                .observe(seconds)
        });
    }

    pub fn record_machine_end(&self, machine: &str, outcome: &str) {
        self.update(|m| {
            *m.machine_ends
                .entry((machine.to_string(), outcome.to_string()))
                .or_default() += 1
        });
    }

    /// A subscriber with only this layer (tests and tools that want metrics
    /// without logs).
    pub fn subscriber(&self) -> impl Subscriber + Send + Sync {
        tracing_subscriber::registry().with(self.layer())
    }
}

/// The machine name of an `execution` span, kept in the span's extensions.
struct MachineName(String);

/// Observes the engine's `execution` spans and `state_exit` / `transition`
/// / `machine_end` / `machine_failed` events (see `engine::exec`).
pub struct MetricsLayer {
    metrics: Metrics,
}

/// Picks the fields the layer needs out of a span or event.
#[derive(Default)]
struct Fields {
    machine: Option<String>,
    event: Option<String>,
    duration_s: Option<f64>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "machine" => self.machine = Some(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "duration_s" {
            self.duration_s = Some(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%x` fields arrive here as Display wrapped in Debug.
        match field.name() {
            "machine" => self.machine = Some(format!("{value:?}")),
            "event" => self.event = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl<S> Layer<S> for MetricsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "execution" {
            return;
        }
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let (Some(machine), Some(span)) = (f.machine, ctx.span(id)) {
            span.extensions_mut().insert(MachineName(machine));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let Some(kind) = f.event.as_deref() else {
            return;
        };
        if !matches!(
            kind,
            "state_exit" | "transition" | "machine_end" | "machine_failed"
        ) {
            return;
        }
        // The innermost execution span names the machine.
        let machine = ctx
            .event_scope(event)
            .and_then(|scope| {
                scope
                    .into_iter()
                    .find_map(|s| s.extensions().get::<MachineName>().map(|m| m.0.clone()))
            })
            .unwrap_or_else(|| "unknown".to_string());
        match kind {
            "state_exit" => self
                .metrics
                .record_state(&machine, f.duration_s.unwrap_or(0.0)),
            "transition" => self.metrics.record_transition(&machine),
            "machine_end" => self.metrics.record_machine_end(&machine, "done"),
            _ => self.metrics.record_machine_end(&machine, "failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        for v in [0.001, 0.02, 0.02, 3.0, 10_000.0, f64::NAN] {
            h.observe(v);
        }
        assert_eq!(h.count, 6);
        assert_eq!(h.overflow, 1);
        let c = h.cumulative();
        assert_eq!(c[0], (0.005, 2)); // 0.001 and NaN (as 0)
        assert_eq!(c[2], (0.025, 4));
        assert_eq!(c.last().unwrap().1, 5);
    }

    #[test]
    fn layer_counts_engine_events_under_execution_spans_only() {
        let metrics = Metrics::new();
        tracing::subscriber::with_default(metrics.subscriber(), || {
            // Events from other targets are filtered out before the layer.
            tracing::debug!(event = "transition", "not the engine");
        });
        assert!(metrics.snapshot().transitions.is_empty());
    }
}
