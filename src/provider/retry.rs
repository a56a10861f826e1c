//! Retry policy for cloud calls: only retryable [`ErrorKind`]s, jittered
//! exponential backoff, and the cloud's own Retry-After when it sends one.
//!
//! Every label call we make is idempotent at the API level (adding a label
//! that is already there, removing one that is gone), so writes are retried
//! like reads; each attempt is rebuilt and re-signed by the caller.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::CloudError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included; 1 disables retries.
    pub max_attempts: u32,
    /// Backoff before the first retry (before jitter); doubles each time.
    pub base: Duration,
    /// Upper bound of the exponential backoff.
    pub cap: Duration,
    /// Upper bound on a server-requested pause, so one misbehaving answer
    /// cannot park a reconcile for an hour.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        }
    }

    /// The exponential backoff ceiling before retry number `retry` (0-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// "Equal jitter": half the ceiling plus a random part of the other half,
    /// so concurrent callers spread out but never retry immediately.
    pub fn backoff(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(retry);
        let half = ceiling / 2;
        let spread = ceiling.saturating_sub(half);
        let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
        let extra = if nanos == 0 {
            0
        } else {
            rng.random_range(0..=nanos)
        };
        half + Duration::from_nanos(extra)
    }

    /// How long to wait before the next attempt after `err` on attempt
    /// `attempt` (0-based), or `None` when the call must not be retried.
    pub(crate) fn delay_for(
        &self,
        err: &CloudError,
        attempt: u32,
        rng: &mut impl Rng,
    ) -> Option<Duration> {
        if !err.kind.is_retryable() || attempt.saturating_add(1) >= self.max_attempts {
            return None;
        }
        let backoff = self.backoff(attempt, rng);
        Some(match err.retry_after {
            // The server's pause wins, but never less than our own backoff
            // (a 0 ms hint would otherwise make us hammer it).
            Some(after) => after
                .min(self.max_retry_after)
                .max(backoff.min(self.max_retry_after)),
            None => backoff,
        })
    }

    /// Runs `op` (given the 0-based attempt number) until it succeeds, fails
    /// with a non-retryable error, or attempts run out; sleeps with tokio.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, CloudError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        self.run_with_sleep(op, tokio::time::sleep).await
    }

    /// [`RetryPolicy::run`] with an injectable sleep, so tests need no clock.
    pub(crate) async fn run_with_sleep<T, F, Fut, S, SFut>(
        &self,
        mut op: F,
        mut sleep: S,
    ) -> Result<T, CloudError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
        S: FnMut(Duration) -> SFut,
        SFut: Future<Output = ()>,
    {
        let mut attempt = 0u32;
        loop {
            match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(err) => {
                    // Thread-local RNG is not Send; keep it out of the await.
                    let delay = self.delay_for(&err, attempt, &mut rand::rng());
                    let Some(delay) = delay else { return Err(err) };
                    tracing::debug!(
                        api = err.api,
                        kind = err.kind.as_str(),
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        "retrying cloud call"
                    );
                    sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// PAI's `x-acs-retry-after`: a positive integer of milliseconds.
pub(crate) fn parse_retry_after_millis(value: &str) -> Option<Duration> {
    let ms: u64 = value.trim().parse().ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// HTTP `Retry-After` as delta-seconds (the HTTP-date form is not used by
/// these APIs and is ignored).
pub(crate) fn parse_retry_after_secs(value: &str) -> Option<Duration> {
    let s: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::provider::ErrorKind;

    fn err(kind: ErrorKind, retry_after: Option<Duration>) -> CloudError {
        CloudError {
            retry_after,
            ..CloudError::new(kind, "Test", "boom")
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(5),
        }
    }

    #[test]
    fn ceiling_doubles_and_caps() {
        let p = policy();
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
        assert_eq!(p.ceiling(1), Duration::from_millis(200));
        assert_eq!(p.ceiling(3), Duration::from_millis(800));
        assert_eq!(p.ceiling(4), Duration::from_millis(1000));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn backoff_is_within_half_and_ceiling() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::BTreeSet::new();
        for retry in 0..6 {
            for _ in 0..200 {
                let d = p.backoff(retry, &mut rng);
                assert!(
                    d >= p.ceiling(retry) / 2 && d <= p.ceiling(retry),
                    "{d:?} at {retry}"
                );
                seen.insert(d);
            }
        }
        assert!(seen.len() > 100, "backoff is not jittered");
    }

    #[test]
    fn only_retryable_kinds() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(1);
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::AccessDenied,
            ErrorKind::Unauthenticated,
            ErrorKind::Invalid,
        ] {
            assert_eq!(p.delay_for(&err(kind, None), 0, &mut rng), None, "{kind:?}");
        }
        for kind in [ErrorKind::Throttled, ErrorKind::Server, ErrorKind::Network] {
            assert!(
                p.delay_for(&err(kind, None), 0, &mut rng).is_some(),
                "{kind:?}"
            );
        }
        // Attempts run out.
        assert_eq!(
            p.delay_for(&err(ErrorKind::Server, None), 3, &mut rng),
            None
        );
        assert_eq!(
            RetryPolicy::none().delay_for(&err(ErrorKind::Server, None), 0, &mut rng),
            None
        );
    }

    #[test]
    fn retry_after_is_honoured_and_bounded() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            p.delay_for(
                &err(ErrorKind::Throttled, Some(Duration::from_secs(3))),
                0,
                &mut rng
            ),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            p.delay_for(
                &err(ErrorKind::Throttled, Some(Duration::from_secs(3600))),
                0,
                &mut rng
            ),
            Some(Duration::from_secs(5))
        );
        let tiny = p
            .delay_for(
                &err(ErrorKind::Throttled, Some(Duration::from_millis(1))),
                0,
                &mut rng,
            )
            .unwrap();
        assert!(tiny >= Duration::from_millis(50), "{tiny:?}");
    }

    #[test]
    fn parse_headers() {
        assert_eq!(
            parse_retry_after_millis("1500"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after_millis(" 20 "),
            Some(Duration::from_millis(20))
        );
        assert_eq!(parse_retry_after_millis("0"), None);
        assert_eq!(parse_retry_after_millis("-1"), None);
        assert_eq!(parse_retry_after_millis("soon"), None);
        assert_eq!(parse_retry_after_secs("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after_secs("Wed, 21 Oct 2015 07:28:00 GMT"),
            None
        );
    }

    #[tokio::test]
    async fn run_retries_then_succeeds_and_records_sleeps() {
        let p = policy();
        let sleeps = Arc::new(Mutex::new(Vec::new()));
        let s = sleeps.clone();
        let mut attempts = Vec::new();
        let out = p
            .run_with_sleep(
                |attempt| {
                    attempts.push(attempt);
                    async move {
                        match attempt {
                            0 => Err(err(ErrorKind::Throttled, Some(Duration::from_millis(700)))),
                            1 => Err(err(ErrorKind::Network, None)),
                            _ => Ok("done"),
                        }
                    }
                },
                move |d| {
                    s.lock().unwrap().push(d);
                    async {}
                },
            )
            .await;
        assert_eq!(out, Ok("done"));
        assert_eq!(attempts, vec![0, 1, 2]);
        let sleeps = sleeps.lock().unwrap().clone();
        assert_eq!(sleeps.len(), 2);
        assert_eq!(sleeps[0], Duration::from_millis(700));
        assert!(sleeps[1] >= Duration::from_millis(100) && sleeps[1] <= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn run_gives_up_on_permanent_error_and_after_max_attempts() {
        let p = policy();
        let mut calls = 0;
        let out: Result<(), _> = p
            .run_with_sleep(
                |_| {
                    calls += 1;
                    async { Err(err(ErrorKind::Invalid, None)) }
                },
                |_| async {},
            )
            .await;
        assert_eq!(out.unwrap_err().kind, ErrorKind::Invalid);
        assert_eq!(calls, 1);

        let mut calls = 0;
        let out: Result<(), _> = p
            .run_with_sleep(
                |_| {
                    calls += 1;
                    async { Err(err(ErrorKind::Server, None)) }
                },
                |_| async {},
            )
            .await;
        assert_eq!(out.unwrap_err().kind, ErrorKind::Server);
        assert_eq!(calls, 4);
    }
}
