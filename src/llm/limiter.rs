//! Per-model request pacing shared by every execution in the process.
//!
//! Each model has a schedule: the next call may start at `next`, and each
//! call pushes `next` forward by the rate's interval. Slots are handed out
//! under a FIFO-fair async mutex, so queued calls wait their turn instead of
//! being refused, and the rate is never exceeded over any window. A 429 (or
//! `X-RateLimit-Remaining: 0`) pauses the model until the provider's reset.

use super::profile::Rate;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
struct Schedule {
    next: Instant,
    paused_until: Option<Instant>,
}

#[derive(Debug)]
struct Bucket {
    interval: Mutex<Duration>,
    schedule: tokio::sync::Mutex<Schedule>,
}

/// The process-wide limiter.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Arc<Bucket>>>,
}

impl RateLimiter {
    pub fn new() -> RateLimiter {
        RateLimiter::default()
    }

    fn bucket(&self, key: &str, rate: Option<Rate>) -> Arc<Bucket> {
        let mut map = match self.buckets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let interval = rate.map(|r| r.interval()).unwrap_or(Duration::ZERO);
        let b = map.entry(key.to_string()).or_insert_with(|| {
            Arc::new(Bucket {
                interval: Mutex::new(interval),
                schedule: tokio::sync::Mutex::new(Schedule {
                    next: Instant::now(),
                    paused_until: None,
                }),
            })
        });
        if let Ok(mut i) = b.interval.lock() {
            *i = interval;
        }
        b.clone()
    }

    /// Wait for this model's next slot.
    pub async fn acquire(&self, key: &str, rate: Option<Rate>) {
        let bucket = self.bucket(key, rate);
        let interval = bucket.interval.lock().map(|i| *i).unwrap_or(Duration::ZERO);
        let slot = {
            let mut s = bucket.schedule.lock().await;
            let now = Instant::now();
            let mut start = s.next.max(now);
            if let Some(p) = s.paused_until {
                if p > start {
                    start = p;
                } else {
                    s.paused_until = None;
                }
            }
            s.next = start + interval;
            start
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Stop handing out slots for `key` for `secs` (a 429's retry_after, or a
    /// reset time when the provider says no requests remain).
    pub async fn pause(&self, key: &str, secs: f64) {
        if !(secs.is_finite() && secs > 0.0) {
            return;
        }
        let bucket = self.bucket_existing(key);
        let Some(bucket) = bucket else { return };
        let until = Instant::now() + Duration::from_secs_f64(secs.min(86400.0));
        let mut s = bucket.schedule.lock().await;
        if s.paused_until.is_none_or(|p| p < until) {
            s.paused_until = Some(until);
        }
        tracing::info!(
            model = key,
            pause_s = secs,
            "rate limiter paused by provider"
        );
    }

    fn bucket_existing(&self, key: &str) -> Option<Arc<Bucket>> {
        let map = match self.buckets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_exceeds_the_rate_with_many_callers() {
        let limiter = Arc::new(RateLimiter::new());
        let rate = Rate::parse("30/m").unwrap();
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..50 {
            let l = limiter.clone();
            handles.push(tokio::spawn(async move {
                l.acquire("m", Some(rate)).await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for h in handles {
            times.push(h.await.unwrap() - start);
        }
        times.sort();
        // In any 60 s window at most 30 calls start.
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .filter(|u| **u < *t + Duration::from_secs(60))
                .count();
            assert!(in_window <= 30, "{in_window} calls within 60 s of {t:?}");
        }
        // And the limiter is not idle: 50 calls at 2 s spacing take 98 s.
        assert_eq!(times.last().copied(), Some(Duration::from_secs(98)));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_delays_the_next_slot() {
        let limiter = RateLimiter::new();
        let rate = Rate::parse("60/m").unwrap();
        let start = Instant::now();
        limiter.acquire("m", Some(rate)).await;
        limiter.pause("m", 10.0).await;
        limiter.acquire("m", Some(rate)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
        limiter.acquire("m", Some(rate)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(11));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_models_do_not_wait() {
        let limiter = RateLimiter::new();
        let start = Instant::now();
        for _ in 0..10 {
            limiter.acquire("free", None).await;
        }
        assert_eq!(Instant::now(), start);
    }
}
