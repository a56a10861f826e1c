//! One budget's adaptive rate: a GCRA bucket whose rate halves on a
//! throttling answer and climbs back linearly to the ceiling (AIMD), with a
//! second bucket that keeps drift checks to their share.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Priority;

/// A throttling answer halves the rate.
pub(crate) const DECREASE_FACTOR: f64 = 0.5;
/// Throttling answers within this window after a decrease count once.
pub(crate) const DECREASE_WINDOW: Duration = Duration::from_secs(1);
/// After a decrease the rate grows by this share of the ceiling per second.
/// Slow on purpose: each climb past what the account has left ends in a
/// throttled answer, so the slower the climb the fewer of them (at 5%/s
/// the convergence bench saw 1.3% of calls throttled beside a client
/// taking half of AddImageLabels; see the README's benchmarks).
pub(crate) const RECOVERY_PER_SECOND: f64 = 0.02;
/// The rate never falls below this share of the ceiling…
pub(crate) const FLOOR_SHARE: f64 = 0.05;
/// …nor below this many calls per second (unless the ceiling is lower).
pub(crate) const FLOOR_MIN: f64 = 1.0;

/// How much of the rate may go at once. Small on purpose: the cloud's own
/// bucket holds a second of the rate, and at `--quota-share 1` a client
/// bursting a whole second leaves no room for network jitter, so calls
/// that left evenly spaced would arrive bunched and be throttled.
pub(crate) const BURST: Duration = Duration::from_millis(100);

/// A variable-rate GCRA bucket: the theoretical arrival time of the next
/// call. The burst is [`BURST`] of the current rate (at least one call).
#[derive(Debug)]
struct Gcra {
    tat: Option<Instant>,
}

impl Gcra {
    /// Reserves one slot at `rate` for a caller arriving at `now`; returns
    /// how long it must wait before sending.
    fn reserve(&mut self, now: Instant, rate: f64) -> Duration {
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
        let burst = BURST.saturating_sub(interval);
        let tat = self.tat.map_or(now, |t| t.max(now));
        let wait = tat.saturating_duration_since(now).saturating_sub(burst);
        self.tat = Some(tat + interval);
        wait
    }
}

#[derive(Debug)]
struct RateState {
    rate: f64,
    /// When `rate` was last brought up to date.
    at: Instant,
    last_decrease: Option<Instant>,
    /// Decreases so far: a caller that reserved before one re-reserves.
    decreases: u64,
    main: Gcra,
    check: Gcra,
}

/// One budget: (provider, main account, region, API).
pub struct Budget {
    ceiling: f64,
    floor: f64,
    check_share: f64,
    state: Mutex<RateState>,
    throttled: AtomicU64,
    waited_nanos: AtomicU64,
    /// Slots handed out: one per HTTP request, retries included.
    pub(super) granted: AtomicU64,
    born: Instant,
    /// Nanoseconds after `born` of the last slot asked for.
    last_used: AtomicU64,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("ceiling", &self.ceiling)
            .field("rate", &self.rate())
            .field("total_wait", &self.total_wait())
            .finish()
    }
}

impl Budget {
    /// A budget of `ceiling` calls per second, starting at the ceiling.
    pub fn new(ceiling: f64, check_share: f64) -> Self {
        Self::new_at(ceiling, check_share, Instant::now())
    }

    pub(crate) fn new_at(ceiling: f64, check_share: f64, now: Instant) -> Self {
        let ceiling = if ceiling.is_finite() && ceiling > 0.0 {
            ceiling
        } else {
            1.0
        };
        Budget {
            ceiling,
            floor: (ceiling * FLOOR_SHARE).max(FLOOR_MIN).min(ceiling),
            check_share: check_share.clamp(0.01, 1.0),
            state: Mutex::new(RateState {
                rate: ceiling,
                at: now,
                last_decrease: None,
                decreases: 0,
                main: Gcra { tat: None },
                check: Gcra { tat: None },
            }),
            throttled: AtomicU64::new(0),
            waited_nanos: AtomicU64::new(0),
            granted: AtomicU64::new(0),
            born: now,
            last_used: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the additive recovery up to `now`.
    fn recover(&self, s: &mut RateState, now: Instant) {
        let dt = now.saturating_duration_since(s.at).as_secs_f64();
        s.rate = (s.rate + RECOVERY_PER_SECOND * self.ceiling * dt).min(self.ceiling);
        s.at = s.at.max(now);
    }

    pub fn ceiling(&self) -> f64 {
        self.ceiling
    }

    #[cfg(test)]
    pub(crate) fn floor(&self) -> f64 {
        self.floor
    }

    /// The current rate.
    pub fn rate(&self) -> f64 {
        self.rate_at(Instant::now())
    }

    pub(crate) fn rate_at(&self, now: Instant) -> f64 {
        let mut s = self.lock();
        self.recover(&mut s, now);
        s.rate
    }

    /// A throttling answer: halves the rate (not below the floor), at most
    /// once per [`DECREASE_WINDOW`]. Returns whether the rate went down.
    pub fn throttled(&self) -> bool {
        self.throttled_at(Instant::now())
    }

    pub(crate) fn throttled_at(&self, now: Instant) -> bool {
        self.throttled.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        self.recover(&mut s, now);
        if s.last_decrease
            .is_some_and(|t| now.saturating_duration_since(t) < DECREASE_WINDOW)
        {
            return false;
        }
        s.last_decrease = Some(now);
        s.rate = (s.rate * DECREASE_FACTOR).max(self.floor);
        // Slots handed out at the old rate are void: callers still waiting
        // for theirs re-reserve at the new one ([`Self::acquire`]), or a
        // queue of them would keep sending at the rate the cloud refused.
        s.decreases += 1;
        // The next slot is one interval of the new rate away, burst spent.
        let interval = Duration::from_secs_f64(1.0 / s.rate);
        let check_interval = interval.mul_f64(1.0 / self.check_share.max(1e-3));
        s.main.tat = Some(now + BURST.max(interval));
        s.check.tat = Some(now + BURST.max(check_interval));
        true
    }

    /// Decreases so far (see [`RateState::decreases`]).
    pub(super) fn decreases(&self) -> u64 {
        self.lock().decreases
    }

    /// Throttling answers reported so far.
    pub(crate) fn throttled_total(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Reserves a slot at the current rate; the wait before sending.
    pub(crate) fn reserve_at(&self, now: Instant) -> Duration {
        let mut s = self.lock();
        self.recover(&mut s, now);
        let rate = s.rate;
        s.main.reserve(now, rate)
    }

    /// Reserves a slot in the check bucket (`check_share` of the current
    /// rate); a check then also reserves a slot with [`Self::reserve_at`].
    pub(crate) fn reserve_check_at(&self, now: Instant) -> Duration {
        let mut s = self.lock();
        self.recover(&mut s, now);
        let rate = s.rate * self.check_share;
        s.check.reserve(now, rate)
    }

    pub(super) fn touch(&self) {
        let nanos = u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_used.fetch_max(nanos, Ordering::Relaxed);
    }

    /// When a slot was last asked for (creation if never).
    pub(crate) fn last_used(&self) -> Instant {
        self.born + Duration::from_nanos(self.last_used.load(Ordering::Relaxed))
    }

    /// Waits for a slot at `priority`; the time spent waiting is added to
    /// [`Self::total_wait`].
    pub async fn acquire(&self, priority: Priority) {
        self.touch();
        self.granted.fetch_add(1, Ordering::Relaxed);
        let mut waited = Duration::ZERO;
        if priority == Priority::Check {
            let w = self.reserve_check_at(Instant::now());
            if !w.is_zero() {
                tokio::time::sleep(w).await;
                waited += w;
            }
        }
        loop {
            let before = self.decreases();
            let w = self.reserve_at(Instant::now());
            if w.is_zero() {
                break;
            }
            tokio::time::sleep(w).await;
            waited += w;
            if self.decreases() == before {
                break;
            }
        }
        if !waited.is_zero() {
            let n = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
            self.waited_nanos.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Requests let through so far: with retries, more than logical calls.
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }

    /// Cumulative time callers spent waiting (for a metric).
    pub(crate) fn total_wait(&self) -> Duration {
        Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed))
    }
}
