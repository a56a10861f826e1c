//! Per-account QPS limit (token bucket), answered with the documented
//! throttling error. The account is whatever identified the caller: the
//! AccessKeyId, the bearer token or the Huawei AK.

use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct QpsLimiter {
    clock: DefaultClock,
    limiter: RwLock<Option<(u32, Arc<DefaultKeyedRateLimiter<String>>)>>,
}

impl QpsLimiter {
    /// `qps == 0` means no limit.
    pub fn new(qps: u32) -> Self {
        let limiter = QpsLimiter {
            clock: DefaultClock::default(),
            limiter: RwLock::new(None),
        };
        limiter.set_qps(qps);
        limiter
    }

    /// Replaces the limit; buckets start full again.
    pub fn set_qps(&self, qps: u32) {
        let new =
            NonZeroU32::new(qps).map(|n| (qps, Arc::new(RateLimiter::keyed(Quota::per_second(n)))));
        *self.limiter.write().unwrap_or_else(|e| e.into_inner()) = new;
    }

    pub fn qps(&self) -> u32 {
        self.limiter
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |(q, _)| *q)
    }

    /// Takes one token for `account`; when the bucket is empty, returns how
    /// long until the next request would be allowed.
    pub fn check(&self, account: &str) -> Result<(), Duration> {
        let Some((_, limiter)) = self
            .limiter
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return Ok(());
        };
        // Forget idle accounts now and then so a flood of distinct keys
        // cannot grow the map without bound.
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        limiter
            .check_key(&account.to_string())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_of_qps_then_throttles_per_account() {
        let l = QpsLimiter::new(5);
        for _ in 0..5 {
            assert_eq!(l.check("a"), Ok(()));
        }
        let wait = l.check("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        // Another account has its own bucket.
        assert_eq!(l.check("b"), Ok(()));
    }

    #[test]
    fn zero_means_unlimited_and_limit_can_change() {
        let l = QpsLimiter::new(0);
        for _ in 0..10_000 {
            assert_eq!(l.check("a"), Ok(()));
        }
        l.set_qps(1);
        assert_eq!(l.qps(), 1);
        assert_eq!(l.check("a"), Ok(()));
        assert!(l.check("a").is_err());
    }
}
