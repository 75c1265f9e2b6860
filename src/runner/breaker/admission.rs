//! Admission: waiting while a breaker is open or a provider pause runs,
//! choosing exactly one half-open probe, and the [`CallGate`] the LLM
//! client calls before every real request.

use super::state::{block_reason, BreakerState, Source};
use super::{lock, Breakers, CallOutcome};
use crate::llm::gate::{BlockReason, Blocked, CallGate, CallPermit};
use async_trait::async_trait;
use std::time::Duration;

impl Breakers {
    /// Wait until a call to `model_key` may be sent. Returns at once while
    /// closed; while open, sleeps until the period ends (or the state
    /// changes); then exactly one caller becomes the half-open probe and the
    /// others wait for its outcome. Cancellation-safe: nothing is held while
    /// waiting, and a dropped probe admission hands the probe on.
    pub async fn admit(&self, model_key: &str, provider: &str) -> Admission {
        loop {
            if let Ok(a) = self.admit_within(model_key, provider, None).await {
                return a;
            }
        }
    }

    /// Like [`admit`](Self::admit), but wait at most `max_wait` (tokio
    /// time): an open period ending later, or a probe still out when it
    /// runs out, is reported as [`Blocked`] at once so the caller can park
    /// instead of holding a worker slot. A probe in flight is waited for up
    /// to `max_wait` because its outcome usually comes within a call's
    /// latency (and parking the probe's siblings would abort the probe).
    pub async fn try_admit(
        &self,
        model_key: &str,
        provider: &str,
        max_wait: Duration,
    ) -> Result<Admission, Blocked> {
        let deadline = tokio::time::Instant::now() + max_wait;
        self.admit_within(model_key, provider, Some(deadline)).await
    }

    async fn admit_within(
        &self,
        model_key: &str,
        provider: &str,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Admission, Blocked> {
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            // Register before looking, so a change between the look and the
            // wait is not missed.
            notified.as_mut().enable();
            let now = self.now();
            // A provider's pause holds the model whatever the breaker's
            // state (checked first: no probe is sent into a pause).
            if let Some(u) = self.paused_until(model_key) {
                let wait = Duration::from_millis(u64::try_from(u - now).unwrap_or(1).max(1));
                if deadline.is_some_and(|d| tokio::time::Instant::now() + wait > d) {
                    return Err(Blocked {
                        reason: BlockReason::RateLimited,
                        until_ms: Some(u),
                    });
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = notified => {}
                }
                continue;
            }
            let mut changed = Vec::new();
            let decision = {
                let mut map = lock(&self.inner.entries);
                self.ensure(&mut map, model_key, provider, now, &mut changed);
                match map.get_mut(model_key) {
                    None => Ok(None),
                    Some(e) => match e.state {
                        BreakerState::Closed => Ok(None),
                        BreakerState::Open if e.open_until.is_none_or(|u| now >= u) => {
                            let id = self
                                .inner
                                .next_probe
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            e.state = BreakerState::HalfOpen;
                            e.probe = Some(id);
                            tracing::info!(
                                model = model_key,
                                "circuit breaker half-open: sending one probe"
                            );
                            changed.push(model_key.to_string());
                            Ok(Some(id))
                        }
                        BreakerState::Open => Err((e.open_until, block_reason(e))),
                        BreakerState::HalfOpen => Err((None, block_reason(e))),
                    },
                }
            };
            self.changed(&changed);
            let (until, reason) = match decision {
                Ok(probe) => {
                    // Made before the write is awaited: if this future is
                    // dropped meanwhile, dropping the admission hands the
                    // probe on.
                    let admission = Admission {
                        breakers: self.clone(),
                        key: model_key.to_string(),
                        provider: provider.to_string(),
                        probe,
                        done: false,
                    };
                    if !changed.is_empty() {
                        self.flush().await;
                    }
                    return Ok(admission);
                }
                Err(x) => {
                    if !changed.is_empty() {
                        self.flush().await;
                    }
                    x
                }
            };
            let blocked = Blocked {
                reason,
                until_ms: until,
            };
            // How long until the open period ends (None: a probe is out).
            let wait = until.map(|u| {
                Duration::from_millis(u64::try_from(u.saturating_sub(now).max(1)).unwrap_or(1))
            });
            match (deadline, wait) {
                (Some(d), Some(w)) if tokio::time::Instant::now() + w > d => return Err(blocked),
                (Some(d), None) if tokio::time::Instant::now() >= d => return Err(blocked),
                _ => {}
            }
            match (wait, deadline) {
                (Some(w), _) => {
                    tokio::select! {
                        _ = tokio::time::sleep(w) => {}
                        _ = notified => {}
                    }
                }
                (None, Some(d)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(d) => {}
                        _ = notified => {}
                    }
                }
                (None, None) => notified.await,
            }
        }
    }

    /// A probe admission was dropped without an outcome: open and due again.
    fn abandon_probe(&self, key: &str, id: u64) {
        let changed = {
            let mut map = lock(&self.inner.entries);
            match map.get_mut(key) {
                Some(e) if e.state == BreakerState::HalfOpen && e.probe == Some(id) => {
                    e.state = BreakerState::Open;
                    e.probe = None;
                    tracing::info!(
                        model = key,
                        "circuit breaker probe abandoned; next caller probes"
                    );
                    true
                }
                _ => false,
            }
        };
        if changed {
            self.changed(&[key.to_string()]);
            self.write_later();
        }
    }
}

/// Permission to send one call, from [`Breakers::admit`]. Report the call's
/// outcome with [`record`](Self::record); dropping a probe admission
/// without an outcome hands the probe to the next caller.
#[must_use = "record the call's outcome on the admission"]
pub struct Admission {
    breakers: Breakers,
    key: String,
    provider: String,
    probe: Option<u64>,
    done: bool,
}

impl Admission {
    /// Whether this call is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe.is_some()
    }

    /// Report the outcome of the admitted call.
    ///
    /// Synchronous: what it changes is written by a blocking task the
    /// breakers own. Async callers use [`CallPermit::complete`], which
    /// waits for the write.
    pub fn record(mut self, outcome: &CallOutcome) {
        self.record_only(outcome);
        self.breakers.write_later();
    }

    fn record_only(&mut self, outcome: &CallOutcome) {
        self.done = true;
        let source = self.probe.map_or(Source::Ordinary, Source::Probe);
        self.breakers
            .record_from(&self.key, &self.provider, outcome, source);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let (false, Some(id)) = (self.done, self.probe) {
            self.breakers.abandon_probe(&self.key, id);
        }
    }
}

#[async_trait]
impl CallPermit for Admission {
    async fn complete(mut self: Box<Self>, outcome: &CallOutcome) {
        self.record_only(outcome);
        let breakers = self.breakers.clone();
        drop(self);
        breakers.flush().await;
    }
}

#[async_trait]
impl CallGate for Breakers {
    async fn before_call(&self, model_key: &str, provider: &str) -> Box<dyn CallPermit> {
        Box::new(self.admit(model_key, provider).await)
    }

    async fn try_before_call(
        &self,
        model_key: &str,
        provider: &str,
        max_wait: Duration,
    ) -> Result<Box<dyn CallPermit>, Blocked> {
        let a = self.try_admit(model_key, provider, max_wait).await?;
        Ok(Box::new(a))
    }
}
