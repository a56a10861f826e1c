//! Fault injection: latency, 5xx answers, throttling and dropped connections
//! at configured rates, changeable while the simulator runs.

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::seed::FaultConfig;

/// What to do to one request instead of (or before) serving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    None,
    /// Answer with this 5xx status (500 or 503).
    ServerError(u16),
    Throttle,
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultDecision {
    pub latency: Duration,
    pub action: FaultAction,
}

pub struct FaultInjector {
    config: RwLock<FaultConfig>,
    rng: Mutex<StdRng>,
}

fn rng_for(config: &FaultConfig) -> StdRng {
    match config.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    }
}

impl FaultInjector {
    pub fn new(config: FaultConfig) -> Self {
        let rng = rng_for(&config);
        FaultInjector {
            config: RwLock::new(config),
            rng: Mutex::new(rng),
        }
    }

    pub fn config(&self) -> FaultConfig {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the configuration; a new `seed` restarts the random sequence.
    pub fn set(&self, config: FaultConfig) -> Result<(), String> {
        config.validate()?;
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let mut current = self.config.write().unwrap_or_else(|e| e.into_inner());
        if config.seed.is_some() && config.seed != current.seed {
            *rng = rng_for(&config);
        }
        *current = config;
        Ok(())
    }

    /// Draws the fate of one request. Drop wins over a 5xx, which wins over
    /// throttling, so each rate is the probability of that fault on its own
    /// when the others are zero.
    pub fn decide(&self) -> FaultDecision {
        let config = self
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let latency = Duration::from_millis(config.latency_ms);
        if config.drop_rate == 0.0 && config.server_error_rate == 0.0 && config.throttle_rate == 0.0
        {
            return FaultDecision {
                latency,
                action: FaultAction::None,
            };
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let action = if rng.random_bool(config.drop_rate) {
            FaultAction::Drop
        } else if rng.random_bool(config.server_error_rate) {
            FaultAction::ServerError(if rng.random_bool(0.5) { 500 } else { 503 })
        } else if rng.random_bool(config.throttle_rate) {
            FaultAction::Throttle
        } else {
            FaultAction::None
        };
        FaultDecision { latency, action }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(injector: &FaultInjector, n: usize) -> (usize, usize, usize, usize) {
        let (mut none, mut server, mut throttle, mut drop) = (0, 0, 0, 0);
        for _ in 0..n {
            match injector.decide().action {
                FaultAction::None => none += 1,
                FaultAction::ServerError(s) => {
                    assert!(s == 500 || s == 503);
                    server += 1
                }
                FaultAction::Throttle => throttle += 1,
                FaultAction::Drop => drop += 1,
            }
        }
        (none, server, throttle, drop)
    }

    #[test]
    fn zero_rates_inject_nothing_and_full_rates_always_do() {
        let f = FaultInjector::new(FaultConfig {
            latency_ms: 7,
            ..Default::default()
        });
        assert_eq!(count(&f, 1000), (1000, 0, 0, 0));
        assert_eq!(f.decide().latency, Duration::from_millis(7));
        f.set(FaultConfig {
            drop_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(count(&f, 100), (0, 0, 0, 100));
        f.set(FaultConfig {
            throttle_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(count(&f, 100), (0, 0, 100, 0));
    }

    #[test]
    fn rates_are_roughly_honoured_and_seeded_runs_repeat() {
        let config = FaultConfig {
            server_error_rate: 0.2,
            seed: Some(42),
            ..Default::default()
        };
        let a = FaultInjector::new(config.clone());
        let (_, server, _, _) = count(&a, 10_000);
        assert!(
            (1700..2300).contains(&server),
            "{server} server errors in 10000 at rate 0.2"
        );
        let b = FaultInjector::new(config.clone());
        let c = FaultInjector::new(config);
        let seq_b: Vec<_> = (0..200).map(|_| b.decide()).collect();
        let seq_c: Vec<_> = (0..200).map(|_| c.decide()).collect();
        assert_eq!(seq_b, seq_c);
    }

    #[test]
    fn rejects_out_of_range_rates() {
        let f = FaultInjector::new(FaultConfig::default());
        assert!(
            f.set(FaultConfig {
                throttle_rate: -0.1,
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            f.set(FaultConfig {
                drop_rate: f64::NAN,
                ..Default::default()
            })
            .is_err()
        );
        assert_eq!(f.config(), FaultConfig::default());
    }
}
