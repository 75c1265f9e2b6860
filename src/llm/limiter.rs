//! Per-model request pacing shared by every execution in the process.
//!
//! A rate of N requests per window is kept two ways at once:
//!
//! - **exactly per window**: a call starts only when fewer than N calls
//!   started in the last window (plus a small margin for network jitter),
//!   which is how providers count requests per minute;
//! - **smoothly within it** (GCRA): calls are spaced by window/N, with a
//!   burst tolerance of [`BURST`], so calls arriving together after a lull
//!   go out at once instead of queueing at the spacing, while a sustained
//!   stream never exceeds window/N on average.
//!
//! Why both: spacing alone made calls that arrive in bursts (three children
//! of one paper at once, a cohort of papers entering a phase) wait behind
//! each other although the provider's window had room; a window alone
//! would send a whole minute's allowance in the first second.
//!
//! Slots are handed out under a FIFO-fair async mutex, so queued calls wait
//! their turn instead of being refused. A 429 (or `X-RateLimit-Remaining:
//! 0`) pauses the model until the provider's reset.
//!
//! A model with **no configured rate** is not sent an unbounded burst
//! either: it gets an adaptive in-flight window (TCP slow start): at most
//! [`INITIAL_WINDOW`] calls in flight at first, one more per success (never
//! more than the provider's reported `X-RateLimit-Remaining`), back to one
//! on a 429. Why: with no limit known, four phases × three parallel calls
//! sent at once against a provider allowing 2 requests/min collected ten
//! 429s and opened the breaker; with the window the provider's own
//! remaining count stops the model before the first 429.
//!
//! [`RateLimiter::try_acquire`] does not wait out a provider's pause longer
//! than the caller allows: the runner parks the phase instead of holding a
//! worker slot while the model is paused.
//!
//! **Tokens per minute** ([`TokenDemand`]): a model with `tpm` books each
//! call's *estimated* tokens (prompt bytes / [`BYTES_PER_TOKEN`] rounded up,
//! plus the output cap) at its start time; a call starts only when the
//! tokens booked in the last minute plus its estimate fit the limit (FIFO,
//! like requests). When the answer comes back the booking is corrected to
//! the real usage ([`Slot::settle_tokens`]), so an over-estimate delays
//! later calls only until the answer. A call whose estimate alone exceeds
//! the limit goes when the window is empty (it could never fit otherwise).
//! Independently of `tpm`, the provider's own view
//! (`x-ratelimit-remaining-tokens` + `x-ratelimit-reset-tokens`, see
//! [`ProviderTokens`]) holds a call whose estimate exceeds the reported
//! remaining tokens until the reported reset; that hold is a provider pause
//! (it parks a caller that may not wait that long), the TPM window is
//! pacing (it does not park; [`RateLimiter::backlog`] reports it so the
//! scheduler stops claiming work for the model).

use super::profile::Rate;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How far ahead of its smooth schedule a call may start.
pub const BURST: Duration = Duration::from_secs(1);

/// Added to the window so calls that start exactly one window apart are
/// not seen inside one window by the provider after network jitter.
fn window_margin(per: Duration) -> Duration {
    (per / 1000).max(Duration::from_millis(5))
}

#[derive(Debug)]
struct Schedule {
    /// GCRA theoretical arrival time of the next call.
    tat: Instant,
    /// Start times of the last `count` calls (at most).
    starts: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

/// Bytes of the serialized request counted as one token when estimating a
/// prompt. Tokenizers average about 4 characters of English per token and
/// JSON escaping only adds bytes, so bytes / 4 (rounded up) is a
/// conservative bound for prose; the booking is corrected to the provider's
/// reported usage after the answer anyway.
pub const BYTES_PER_TOKEN: u64 = 4;

/// Output tokens assumed for a request that sets no `max_tokens` (neither
/// the call nor its profile): the provider's default output cap is unknown.
pub const UNKNOWN_OUTPUT_TOKENS: u64 = 1024;

/// The window a `tpm` limit counts tokens over.
pub const TOKEN_WINDOW: Duration = Duration::from_secs(60);

/// The estimated tokens of a request: its serialized size in bytes over
/// [`BYTES_PER_TOKEN`] (rounded up) plus its output cap (`max_tokens`, or
/// [`UNKNOWN_OUTPUT_TOKENS`] when none is set).
pub fn estimate_tokens(request_bytes: usize, max_tokens: Option<u64>) -> u64 {
    (request_bytes as u64)
        .div_ceil(BYTES_PER_TOKEN)
        .saturating_add(max_tokens.unwrap_or(UNKNOWN_OUTPUT_TOKENS))
}

/// What one call asks of its model's token budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenDemand {
    /// The profile's tokens-per-minute limit (None: no configured limit).
    pub tpm: Option<u64>,
    /// The call's estimated tokens ([`estimate_tokens`]).
    pub estimate: u64,
    /// The part of `estimate` that is the output cap (`max_tokens`): the
    /// limiter books the model's recent largest reply instead, when it has
    /// seen one (see [`RECENT_OUTPUTS`]).
    pub output_cap: u64,
}

/// Answers whose reply size the limiter remembers per model. Why: booking
/// the full `max_tokens` of every call when replies use a fraction of it
/// left a TPM window part empty until each answer corrected its booking —
/// the pipeline bench held 0.93 of the token-bound throughput with 8 000
/// booked for ~1 000-token replies. A call now books its prompt estimate
/// plus the largest of the last [`RECENT_OUTPUTS`] replies of its model
/// (never more than its cap, the whole cap until a reply was seen); a
/// longer reply is corrected when it settles, and a provider that counts
/// `max_tokens` at admission still holds calls back through its
/// `x-ratelimit-remaining-tokens`.
pub const RECENT_OUTPUTS: usize = 32;

/// The provider's own view of a model's token window, from an answer's
/// `x-ratelimit-remaining-tokens` and `x-ratelimit-reset-tokens`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProviderTokens {
    /// Tokens the provider says are left in its current window.
    pub remaining: u64,
    /// Seconds until that window resets (already capped at the profile's
    /// `max_retry_after`).
    pub reset_in: f64,
}

/// A model's token bookings.
#[derive(Debug, Default)]
struct TokenBook {
    /// Bookings in start order: (id, start, tokens). Kept for one window.
    booked: VecDeque<(u64, Instant, u64)>,
    next_id: u64,
    /// The provider's remaining tokens (less what was booked since it said
    /// so) until its reset.
    provider: Option<(u64, Instant)>,
    /// The latest estimate (what [`RateLimiter::backlog`] assumes the next
    /// call asks for).
    last_estimate: u64,
    /// Reply tokens of the model's last answers (at most [`RECENT_OUTPUTS`]).
    outputs: VecDeque<u64>,
}

impl TokenBook {
    /// `demand` with its output part at the model's recent largest reply
    /// (capped at the call's own cap).
    fn effective(&self, demand: TokenDemand) -> TokenDemand {
        let cap = demand.output_cap.min(demand.estimate);
        let Some(seen) = self.outputs.iter().max() else {
            return demand;
        };
        TokenDemand {
            estimate: demand.estimate - cap + cap.min(*seen),
            ..demand
        }
    }

    /// Remember an answer's reply size.
    fn observe_output(&mut self, tokens: u64) {
        self.outputs.push_back(tokens);
        while self.outputs.len() > RECENT_OUTPUTS {
            self.outputs.pop_front();
        }
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .booked
            .front()
            .is_some_and(|(_, t, _)| *t + TOKEN_WINDOW + window_margin(TOKEN_WINDOW) <= now)
        {
            self.booked.pop_front();
        }
        if self.provider.is_some_and(|(_, reset)| reset <= now) {
            self.provider = None;
        }
    }

    /// The earliest start not before `base` at which `demand` fits: the
    /// provider's hold (returned separately: it is a pause, not pacing),
    /// and the configured window.
    fn earliest(&self, base: Instant, demand: TokenDemand) -> (Instant, Option<Instant>) {
        let mut start = base;
        let hold = self
            .provider
            .filter(|(remaining, _)| *remaining < demand.estimate)
            .map(|(_, reset)| reset);
        if let Some(h) = hold {
            start = start.max(h);
        }
        if let Some(tpm) = demand.tpm {
            // Bookings leave the window oldest first: drop them until the
            // rest plus this call fit; the call starts one window after the
            // last one dropped. With nothing left it goes regardless (an
            // estimate above the limit could never fit).
            let mut sum: u64 = self
                .booked
                .iter()
                .filter(|(_, t, _)| *t + TOKEN_WINDOW + window_margin(TOKEN_WINDOW) > start)
                .map(|(_, _, n)| *n)
                .sum();
            for (_, t, n) in &self.booked {
                if sum.saturating_add(demand.estimate) <= tpm {
                    break;
                }
                let leaves = *t + TOKEN_WINDOW + window_margin(TOKEN_WINDOW);
                if leaves <= start {
                    continue;
                }
                sum = sum.saturating_sub(*n);
                start = leaves;
            }
        }
        (start, hold)
    }
}

/// In-flight calls a model without a configured rate may start with.
pub const INITIAL_WINDOW: u32 = 2;
/// Largest adaptive window (a healthy unlimited provider is never held back
/// by it in practice).
pub const MAX_WINDOW: u32 = 4096;

/// The adaptive in-flight window of a model without a configured rate.
#[derive(Debug)]
struct Window {
    cwnd: u32,
    in_flight: u32,
}

#[derive(Debug)]
struct Bucket {
    rate: Mutex<Option<Rate>>,
    schedule: tokio::sync::Mutex<Schedule>,
    /// When a call asking now would start (copied out of `schedule` on
    /// every change, so [`RateLimiter::backlog`] needs no async lock).
    free_at: Mutex<Instant>,
    window: Mutex<Window>,
    /// Woken when a window slot frees or the window grows.
    window_changed: tokio::sync::Notify,
    /// The model's configured tokens per minute (last seen).
    tpm: Mutex<Option<u64>>,
    tokens: Mutex<TokenBook>,
    /// FIFO turn of calls waiting for their tokens to fit.
    token_turn: Arc<tokio::sync::Mutex<()>>,
    /// Woken when a booking is corrected or the provider reports.
    tokens_changed: tokio::sync::Notify,
    /// When a call of the latest estimate would fit the token limits
    /// (see [`RateLimiter::backlog`]).
    tokens_free_at: Mutex<Instant>,
}

/// The start a call asking at `now` would get: after any pause, on the
/// smooth schedule, and within the exact window.
fn next_start(s: &Schedule, rate: Option<Rate>, now: Instant) -> Instant {
    let mut start = now;
    if let Some(p) = s.paused_until {
        start = start.max(p);
    }
    if let Some(r) = rate {
        let count = r.count.max(1) as usize;
        if let Some(earliest) = s.tat.checked_sub(BURST) {
            start = start.max(earliest);
        }
        if s.starts.len() >= count {
            let oldest = s.starts[s.starts.len() - count];
            start = start.max(oldest + r.per + window_margin(r.per));
        }
    }
    start
}

impl Bucket {
    /// The earliest start the next call could get (the same rule
    /// [`RateLimiter::try_acquire`] books by, so a phase the scheduler may
    /// claim is never parked by the limiter at once).
    fn set_free_at(&self, s: &Schedule, rate: Option<Rate>) {
        let at = next_start(s, rate, Instant::now());
        if let Ok(mut f) = self.free_at.lock() {
            *f = at;
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        match self.window.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, TokenBook> {
        match self.tokens.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn tpm(&self) -> Option<u64> {
        match self.tpm.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        }
    }

    /// Recompute when a call of the latest estimate would fit the token
    /// limits (after a booking, a correction or a provider report).
    fn set_tokens_free_at(&self, book: &mut TokenBook) {
        let now = Instant::now();
        book.forget_before(now);
        let demand = TokenDemand {
            tpm: self.tpm(),
            estimate: book.last_estimate,
            output_cap: 0,
        };
        let (at, _) = book.earliest(now, demand);
        if let Ok(mut f) = self.tokens_free_at.lock() {
            *f = at;
        }
    }
}

/// What a finished call tells the adaptive window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SlotOutcome {
    /// The provider answered; `remaining` is its `X-RateLimit-Remaining`.
    Answered { remaining: Option<f64> },
    /// A 429.
    RateLimited,
    /// Anything else (says nothing about capacity).
    Other,
}

/// A call's place in its model's in-flight window (models without a
/// configured rate only). Dropping it frees the place; [`Slot::finish`]
/// also adapts the window.
#[derive(Debug)]
pub struct Slot {
    window: Option<Arc<Bucket>>,
    /// The call's token booking (bucket, booking id), for the correction.
    booking: Option<(Arc<Bucket>, u64)>,
}

impl Slot {
    /// The answer came back: correct the call's token booking to the
    /// tokens the provider reports it used (`used`; None keeps the
    /// estimate), remember its reply size (`output`, see
    /// [`RECENT_OUTPUTS`]), and take the provider's own view of the token
    /// window (`provider`; None leaves the limiter's view alone). A call
    /// that failed keeps its estimate (the provider may have counted it).
    pub fn settle_tokens(
        &self,
        used: Option<u64>,
        output: Option<u64>,
        provider: Option<ProviderTokens>,
    ) {
        let Some((bucket, id)) = &self.booking else {
            return;
        };
        let mut book = bucket.tokens();
        if let Some(o) = output {
            book.observe_output(o);
        }
        if let Some(used) = used {
            if let Some(b) = book.booked.iter_mut().find(|(i, _, _)| i == id) {
                b.2 = used;
            }
        }
        if let Some(p) = provider {
            if p.reset_in.is_finite() && p.reset_in > 0.0 {
                let reset = Instant::now() + Duration::from_secs_f64(p.reset_in.min(86_400.0));
                book.provider = Some((p.remaining, reset));
            } else {
                book.provider = None;
            }
        }
        bucket.set_tokens_free_at(&mut book);
        drop(book);
        bucket.tokens_changed.notify_waiters();
    }

    /// The call came back with `outcome`: grow the window on an answer (at
    /// most to the provider's remaining count), shrink it to one on a 429.
    pub fn finish(mut self, outcome: SlotOutcome) {
        let Some(b) = self.window.take() else { return };
        {
            let mut w = b.window();
            w.in_flight = w.in_flight.saturating_sub(1);
            match outcome {
                SlotOutcome::Answered { remaining } => {
                    let mut grown = w.cwnd.saturating_add(1).min(MAX_WINDOW);
                    if let Some(r) = remaining.filter(|r| r.is_finite() && *r >= 0.0) {
                        // Never more in flight than the provider says is left
                        // (at least one: a zero pauses the model instead).
                        grown = grown.min((r.min(MAX_WINDOW as f64) as u32).max(1));
                    }
                    w.cwnd = grown;
                }
                SlotOutcome::RateLimited => w.cwnd = 1,
                SlotOutcome::Other => {}
            }
        }
        b.window_changed.notify_waiters();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(b) = self.window.take() {
            {
                let mut w = b.window();
                w.in_flight = w.in_flight.saturating_sub(1);
            }
            b.window_changed.notify_waiters();
        }
    }
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
        let b = map.entry(key.to_string()).or_insert_with(|| {
            Arc::new(Bucket {
                rate: Mutex::new(rate),
                schedule: tokio::sync::Mutex::new(Schedule {
                    tat: Instant::now(),
                    starts: VecDeque::new(),
                    paused_until: None,
                }),
                free_at: Mutex::new(Instant::now()),
                window: Mutex::new(Window {
                    cwnd: INITIAL_WINDOW,
                    in_flight: 0,
                }),
                window_changed: tokio::sync::Notify::new(),
                tpm: Mutex::new(None),
                tokens: Mutex::new(TokenBook::default()),
                token_turn: Arc::new(tokio::sync::Mutex::new(())),
                tokens_changed: tokio::sync::Notify::new(),
                tokens_free_at: Mutex::new(Instant::now()),
            })
        });
        if let Ok(mut r) = b.rate.lock() {
            *r = rate;
        }
        b.clone()
    }

    /// Wait for this model's next slot (however far ahead it is).
    pub async fn acquire(&self, key: &str, rate: Option<Rate>) -> Slot {
        match self.try_acquire(key, rate, None).await {
            Ok(slot) => slot,
            // Unreachable without a limit; never wait forever regardless.
            Err(_) => Slot {
                window: None,
                booking: None,
            },
        }
    }

    /// Wait for this model's next slot unless the model is paused by its
    /// provider (a 429's Retry-After, a zero remaining count) for more than
    /// `max_wait`: then nothing is booked and the wait the call would have
    /// had is returned, so the caller can give its worker back.
    /// Models without a rate first wait for a place in their in-flight
    /// window (bounded by the latency of the calls ahead, not booked).
    pub async fn try_acquire(
        &self,
        key: &str,
        rate: Option<Rate>,
        max_wait: Option<Duration>,
    ) -> Result<Slot, Duration> {
        self.try_acquire_tokens(key, rate, None, max_wait).await
    }

    /// [`try_acquire`](Self::try_acquire) that also books the call's
    /// estimated tokens (`tokens`; None books none): the call starts only
    /// when they fit the model's `tpm` window and the provider's reported
    /// remaining tokens. Waiting for the `tpm` window is pacing (never
    /// parks); a provider's hold longer than `max_wait` parks like a pause.
    pub async fn try_acquire_tokens(
        &self,
        key: &str,
        rate: Option<Rate>,
        tokens: Option<TokenDemand>,
        max_wait: Option<Duration>,
    ) -> Result<Slot, Duration> {
        let bucket = self.bucket(key, rate);
        let tokens = tokens.map(|t| bucket.tokens().effective(t));
        let turn = match tokens {
            Some(t) => Some(Self::wait_for_tokens(&bucket, t, max_wait).await?),
            None => None,
        };
        let rate = bucket.rate.lock().ok().and_then(|r| *r);
        let mut slot = match rate {
            Some(_) => Slot {
                window: None,
                booking: None,
            },
            None => loop {
                let notified = bucket.window_changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let mut w = bucket.window();
                    if w.in_flight < w.cwnd.max(1) {
                        w.in_flight += 1;
                        break Slot {
                            window: Some(bucket.clone()),
                            booking: None,
                        };
                    }
                }
                notified.await;
            },
        };
        let start = {
            let mut s = bucket.schedule.lock().await;
            let now = Instant::now();
            if s.paused_until.is_some_and(|p| p <= now) {
                s.paused_until = None;
            }
            let start = next_start(&s, rate, now);
            // Only a provider's pause parks: waiting for a slot at the
            // configured pace is the steady state (the scheduler's claim
            // backlog bounds it), and parking there would throw away the
            // booked slots of the call's siblings.
            if let (Some(max), Some(p)) = (max_wait, s.paused_until) {
                if p.saturating_duration_since(now) > max {
                    return Err(start.saturating_duration_since(now));
                }
            }
            if let Some(t) = tokens {
                // Booked at the call's real start (>= now, when it was
                // seen to fit; later callers wait for the turn, so nothing
                // was booked in between).
                let mut book = bucket.tokens();
                let id = book.next_id;
                book.next_id += 1;
                book.booked.push_back((id, start, t.estimate));
                if let Some((remaining, _)) = &mut book.provider {
                    *remaining = remaining.saturating_sub(t.estimate);
                }
                book.last_estimate = t.estimate;
                bucket.set_tokens_free_at(&mut book);
                slot.booking = Some((bucket.clone(), id));
            }
            match rate {
                Some(r) => {
                    let count = r.count.max(1) as usize;
                    s.starts.push_back(start);
                    while s.starts.len() > count {
                        s.starts.pop_front();
                    }
                    s.tat = s.tat.max(start) + r.interval();
                }
                None => s.starts.clear(),
            }
            bucket.set_free_at(&s, rate);
            start
        };
        // The next caller's tokens are checked against this booking now.
        drop(turn);
        tokio::time::sleep_until(start).await;
        Ok(slot)
    }

    /// Take the model's token turn (FIFO) and wait, holding it, until
    /// `demand` fits the `tpm` window and the provider's reported remaining
    /// tokens. Re-evaluated whenever a booking is corrected, so a call that
    /// used less than estimated lets the next one go at once. A provider
    /// hold longer than `max_wait` returns the wait instead (park).
    async fn wait_for_tokens(
        bucket: &Arc<Bucket>,
        demand: TokenDemand,
        max_wait: Option<Duration>,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, Duration> {
        if let Ok(mut g) = bucket.tpm.lock() {
            *g = demand.tpm;
        }
        let turn = bucket.token_turn.clone().lock_owned().await;
        loop {
            let changed = bucket.tokens_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = Instant::now();
            let (at, hold) = {
                let mut book = bucket.tokens();
                book.forget_before(now);
                book.earliest(now, demand)
            };
            if let (Some(max), Some(h)) = (max_wait, hold) {
                if h.saturating_duration_since(now) > max {
                    return Err(at.saturating_duration_since(now));
                }
            }
            if at <= now {
                return Ok(turn);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = &mut changed => {}
            }
        }
    }

    /// How long a call to `key` asking now would wait for its slot: how far
    /// ahead the model is booked (zero for an unknown or idle model). The
    /// scheduler does not claim more work for a model booked well ahead:
    /// it would only hold a worker slot while waiting here.
    pub fn backlog(&self, key: &str) -> Duration {
        let Some(bucket) = self.bucket_existing(key) else {
            return Duration::ZERO;
        };
        let free_at = bucket
            .free_at
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|p| *p.into_inner());
        let tokens_free_at = bucket
            .tokens_free_at
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|p| *p.into_inner());
        free_at
            .max(tokens_free_at)
            .saturating_duration_since(Instant::now())
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
        let rate = bucket.rate.lock().ok().and_then(|r| *r);
        bucket.set_free_at(&s, rate);
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

    /// No window of length `per` starting at a call holds more than `n`
    /// calls (`times` sorted).
    fn assert_at_most_per_window(times: &[Duration], n: usize, per: Duration) {
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..].iter().filter(|u| **u < *t + per).count();
            assert!(in_window <= n, "{in_window} calls within {per:?} of {t:?}");
        }
    }

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
        assert_at_most_per_window(&times, 30, Duration::from_secs(60));
        // And the limiter is not idle: 50 calls at 2 s spacing take 98 s
        // (a burst tolerance lets some start earlier).
        let last = times.last().copied().unwrap_or_default();
        assert!(last <= Duration::from_secs(98), "{last:?}");
        assert!(last >= Duration::from_secs(60), "{last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn calls_arriving_together_go_out_together_within_the_rate() {
        // 600/m: spacing 100 ms, burst tolerance 1 s -> 11 at once.
        let limiter = Arc::new(RateLimiter::new());
        let rate = Rate::parse("600/m").unwrap();
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..11 {
            limiter.acquire("m", Some(rate)).await;
            times.push(Instant::now() - start);
        }
        assert!(times.iter().all(|t| t.is_zero()), "{times:?}");
        // Then the smooth schedule: the 12th waits one spacing.
        limiter.acquire("m", Some(rate)).await;
        assert_eq!(Instant::now() - start, Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sustained_stream_never_exceeds_the_window() {
        // 5/s: smooth spacing 200 ms plus 1 s of burst would allow 6-10 in
        // a second; the exact window keeps it at 5.
        let limiter = Arc::new(RateLimiter::new());
        let rate = Rate::parse("5/s").unwrap();
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..40 {
            limiter.acquire("m", Some(rate)).await;
            times.push(Instant::now() - start);
        }
        assert_at_most_per_window(&times, 5, Duration::from_secs(1));
        // Long-run rate is the configured one (40 calls: ~8 s).
        let last = *times.last().unwrap();
        assert!(
            last <= Duration::from_millis(7_900) && last >= Duration::from_secs(7),
            "{last:?}"
        );
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
        // The next one is due at 11 s on the smooth schedule; the burst
        // tolerance lets it start at once.
        limiter.acquire("m", Some(rate)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(10));
        // After that the spacing holds (one per second).
        limiter.acquire("m", Some(rate)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(11));
    }

    #[tokio::test(start_paused = true)]
    async fn backlog_says_how_far_ahead_a_model_is_booked() {
        let limiter = RateLimiter::new();
        let rate = Rate::parse("60/m").unwrap();
        assert_eq!(limiter.backlog("m"), Duration::ZERO, "unknown model");
        // Two calls fit the 1 s burst tolerance; five more book 5 s ahead.
        for _ in 0..2 {
            limiter.acquire("m", Some(rate)).await;
        }
        assert_eq!(limiter.backlog("m"), Duration::from_secs(1));
        let l = Arc::new(limiter);
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move { l.acquire("m", Some(rate)).await })
            })
            .collect();
        tokio::task::yield_now().await;
        while l.backlog("m") < Duration::from_secs(6) {
            tokio::task::yield_now().await;
        }
        assert_eq!(l.backlog("m"), Duration::from_secs(6));
        for w in waiters {
            w.await.unwrap();
        }
        // A pause books the model until it ends.
        l.pause("m", 30.0).await;
        assert_eq!(l.backlog("m"), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_model_parks_callers_and_books_nothing() {
        let limiter = RateLimiter::new();
        let rate = Rate::parse("60/m").ok();
        let _ = limiter.acquire("m", rate).await;
        limiter.pause("m", 60.0).await;
        let before = limiter.backlog("m");
        let start = Instant::now();
        let wait = limiter
            .try_acquire("m", rate, Some(Duration::from_secs(10)))
            .await
            .err()
            .unwrap();
        assert_eq!(Instant::now(), start, "did not wait");
        assert_eq!(wait, Duration::from_secs(60));
        assert_eq!(limiter.backlog("m"), before, "nothing booked");
        // A caller allowed to wait that long gets the slot after the pause.
        let slot = limiter
            .try_acquire("m", rate, Some(Duration::from_secs(61)))
            .await;
        assert!(slot.is_ok());
        assert_eq!(Instant::now() - start, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_at_the_configured_rate_never_parks() {
        let limiter = RateLimiter::new();
        let rate = Rate::parse("60/m").ok();
        let start = Instant::now();
        for _ in 0..5 {
            let r = limiter.try_acquire("m", rate, Some(Duration::ZERO)).await;
            assert!(r.is_ok());
        }
        // Two in the burst, then one a second.
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
    }

    /// Polls `fut` once: whether it finished at once.
    async fn ready_now<F: std::future::Future>(fut: F) -> Option<F::Output> {
        tokio::time::timeout(Duration::from_millis(1), fut)
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn unrated_models_get_a_slow_start_window() {
        let limiter = Arc::new(RateLimiter::new());
        // Two in flight at first; the third waits for one of them.
        let a = limiter.acquire("u", None).await;
        let b = limiter.acquire("u", None).await;
        assert!(ready_now(limiter.acquire("u", None)).await.is_none());
        // An answer grows the window by one: two more may go.
        a.finish(SlotOutcome::Answered { remaining: None });
        let c = ready_now(limiter.acquire("u", None)).await.unwrap();
        let d = ready_now(limiter.acquire("u", None)).await.unwrap();
        assert!(ready_now(limiter.acquire("u", None)).await.is_none());
        // Never more in flight than the provider says is left.
        c.finish(SlotOutcome::Answered {
            remaining: Some(1.0),
        });
        assert!(ready_now(limiter.acquire("u", None)).await.is_none());
        // A 429 shrinks it to one; dropped slots free their place.
        d.finish(SlotOutcome::RateLimited);
        assert!(ready_now(limiter.acquire("u", None)).await.is_none());
        drop(b);
        let e = ready_now(limiter.acquire("u", None)).await.unwrap();
        assert!(ready_now(limiter.acquire("u", None)).await.is_none());
        drop(e);
        // A rated model has no window.
        let rate = Rate::parse("6000/m").ok();
        let held: Vec<Slot> = futures_all(&limiter, rate, 10).await;
        assert_eq!(held.len(), 10);
    }

    async fn futures_all(l: &RateLimiter, rate: Option<Rate>, n: usize) -> Vec<Slot> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(ready_now(l.acquire("rated", rate)).await.unwrap());
        }
        v
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

    fn tokens(tpm: Option<u64>, estimate: u64) -> Option<TokenDemand> {
        Some(TokenDemand {
            tpm,
            estimate,
            output_cap: 0,
        })
    }

    /// A rate too high to matter (a model without one would also get the
    /// slow-start in-flight window, which these tests do not exercise).
    fn fast() -> Option<Rate> {
        Rate::parse("100000/m").ok()
    }

    async fn take(l: &RateLimiter, demand: Option<TokenDemand>) -> Slot {
        l.try_acquire_tokens("m", fast(), demand, None)
            .await
            .unwrap()
    }

    #[test]
    fn estimates_round_prompt_bytes_up_and_add_the_output_cap() {
        assert_eq!(estimate_tokens(10, Some(5)), 3 + 5);
        assert_eq!(estimate_tokens(8, Some(0)), 2);
        assert_eq!(estimate_tokens(0, None), UNKNOWN_OUTPUT_TOKENS);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_whose_estimates_exceed_the_remaining_tpm_wait_for_the_window() {
        let l = Arc::new(RateLimiter::new());
        let start = Instant::now();
        // 1000 tokens a minute, 400 a call: two fit, the third waits until
        // the first booking leaves the window (60 s plus the margin).
        let _a = take(&l, tokens(Some(1000), 400)).await;
        let _b = take(&l, tokens(Some(1000), 400)).await;
        assert_eq!(Instant::now(), start);
        let margin = window_margin(TOKEN_WINDOW);
        assert_eq!(l.backlog("m"), TOKEN_WINDOW + margin, "backlog sees it");
        let _c = take(&l, tokens(Some(1000), 400)).await;
        assert_eq!(Instant::now() - start, TOKEN_WINDOW + margin);
        // Sustained: never more than 1000 booked within any minute.
        let mut times = vec![Duration::ZERO, Duration::ZERO, TOKEN_WINDOW + margin];
        for _ in 0..7 {
            let _s = take(&l, tokens(Some(1000), 400)).await;
            times.push(Instant::now() - start);
        }
        assert_at_most_per_window(&times, 2, TOKEN_WINDOW);
        // The window is used: 10 calls of 400 at 1000/min take 4 minutes.
        assert!(*times.last().unwrap() <= 4 * (TOKEN_WINDOW + margin));
    }

    #[tokio::test(start_paused = true)]
    async fn a_smaller_real_usage_lets_the_next_call_go_sooner() {
        let l = Arc::new(RateLimiter::new());
        let start = Instant::now();
        let a = take(&l, tokens(Some(1000), 800)).await;
        // The next 800 does not fit beside the estimate: it queues.
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move {
                let _s = take(&l, tokens(Some(1000), 800)).await;
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        // The answer says 150 tokens were used: 150 + 800 fit, at once.
        a.settle_tokens(Some(150), None, None);
        let went = waiter.await.unwrap();
        assert_eq!(went - start, Duration::from_secs(5));
        // Usage missing keeps the estimate: the booking of the second
        // call (800) still holds a third of 800 back.
        let third = take(&l, tokens(Some(1000), 800)).await;
        third.settle_tokens(None, None, None);
        assert!(Instant::now() - start >= TOKEN_WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn bookings_use_the_models_recent_largest_reply_not_the_whole_cap() {
        let l = Arc::new(RateLimiter::new());
        let start = Instant::now();
        // 1000 tokens a minute; calls of 100 prompt + a 500 cap.
        let call = || {
            Some(TokenDemand {
                tpm: Some(1000),
                estimate: 600,
                output_cap: 500,
            })
        };
        // Nothing seen yet: the whole cap is booked (600 each), so the
        // second call fits and a third would not.
        let a = take(&l, call()).await;
        a.settle_tokens(Some(150), Some(50), None);
        // Seen a 50-token reply: calls book 100 + 50 = 150 now.
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(take(&l, call()).await);
        }
        assert_eq!(Instant::now(), start, "150 + 5 × 150 fits in 1000");
        // A larger reply raises the booking again (never past the cap).
        held[0].settle_tokens(Some(900), Some(800), None);
        let t = l.bucket("m", None).tokens().effective(call().unwrap());
        assert_eq!(t.estimate, 600);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_remaining_tokens_hold_the_next_call_until_the_reset() {
        let l = RateLimiter::new();
        let start = Instant::now();
        // No configured tpm: only the provider's view limits.
        let a = take(&l, tokens(None, 500)).await;
        a.settle_tokens(
            Some(480),
            None,
            Some(ProviderTokens {
                remaining: 0,
                reset_in: 30.0,
            }),
        );
        assert_eq!(l.backlog("m"), Duration::from_secs(30));
        // A caller that may wait 10 s at most parks and books nothing.
        let wait = l
            .try_acquire_tokens(
                "m",
                fast(),
                tokens(None, 500),
                Some(Duration::from_secs(10)),
            )
            .await
            .err()
            .unwrap();
        assert_eq!(wait, Duration::from_secs(30));
        assert_eq!(Instant::now(), start, "did not wait");
        // One allowed to wait goes at the reset.
        let b = take(&l, tokens(None, 500)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(30));
        // Enough remaining: no hold (what was booked since is subtracted).
        b.settle_tokens(
            Some(500),
            None,
            Some(ProviderTokens {
                remaining: 1200,
                reset_in: 20.0,
            }),
        );
        let _c = take(&l, tokens(None, 500)).await;
        let _d = take(&l, tokens(None, 500)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(30));
        // 1200 - 1000 booked = 200 left < 500: held until that reset.
        let _e = take(&l, tokens(None, 500)).await;
        assert_eq!(Instant::now() - start, Duration::from_secs(50));
    }

    #[tokio::test(start_paused = true)]
    async fn an_estimate_above_the_limit_goes_when_the_window_is_empty() {
        let l = RateLimiter::new();
        let start = Instant::now();
        let _a = take(&l, tokens(Some(100), 50)).await;
        let _b = take(&l, tokens(Some(100), 5000)).await;
        assert_eq!(
            Instant::now() - start,
            TOKEN_WINDOW + window_margin(TOKEN_WINDOW)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_and_tokens_limit_together() {
        // 2 requests a minute and plenty of tokens: requests bind.
        let l = RateLimiter::new();
        let rate = Rate::parse("2/m").ok();
        let start = Instant::now();
        for _ in 0..3 {
            let _s = l
                .try_acquire_tokens("m", rate, tokens(Some(1_000_000), 10), None)
                .await
                .unwrap();
        }
        assert!(Instant::now() - start >= Duration::from_secs(60));
    }
}
