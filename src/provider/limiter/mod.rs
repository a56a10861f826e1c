//! Client-side budgets, one per (provider, main account, region, API), so
//! many sets reconciling at once stay under the cloud's flow control instead
//! of discovering it through throttling errors.
//!
//! Alibaba Cloud publishes AIWorkSpace flow control per region, per API and
//! per main account (all AccessKeys, RAM users and STS tokens of the account
//! share it). Each budget's ceiling is the published rate times
//! [`BudgetConfig::quota_share`] (default one half: the other half stays free
//! for people and other tools), unless [`BudgetConfig::quotas`] names an
//! absolute rate for the API. Below the ceiling the rate adapts (AIMD): a
//! throttling answer halves it, then it recovers linearly.
//!
//! Calls made inside [`as_check`] (periodic drift checks) also pass a second
//! bucket at [`BudgetConfig::check_share`] of the current rate, so checks
//! never take the whole budget and changes always find room.

use std::future::Future;
use std::sync::Arc;

use super::account::MainAccount;
use super::{CloudError, ErrorKind};

mod budgets;
mod config;
mod rate;
#[cfg(test)]
mod tests;

pub use budgets::*;
pub use config::*;
pub use rate::*;

/// How urgent a cloud call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Applying a change (the default).
    Change,
    /// A periodic drift check: may use at most `check_share` of a budget.
    Check,
}

tokio::task_local! {
    static PRIORITY: Priority;
}

/// Runs `f` with every cloud call it makes counted as a background check.
/// The priority is task-local: tasks `f` spawns run as [`Priority::Change`]
/// unless wrapped again.
pub async fn as_check<F: Future>(f: F) -> F::Output {
    PRIORITY.scope(Priority::Check, f).await
}

/// The priority of calls made here: [`Priority::Change`] outside [`as_check`].
pub(crate) fn current_priority() -> Priority {
    PRIORITY.try_with(|p| *p).unwrap_or(Priority::Change)
}

/// What a client draws from: the budgets of its (provider, region), for the
/// main account of its credentials, one budget per API.
#[derive(Clone, Debug)]
pub struct BudgetHandle {
    budgets: Arc<Budgets>,
    provider: &'static str,
    region: String,
    account: Arc<MainAccount>,
}

impl BudgetHandle {
    pub fn new(
        budgets: Arc<Budgets>,
        provider: &'static str,
        region: &str,
        account: Arc<MainAccount>,
    ) -> Self {
        BudgetHandle {
            budgets,
            provider,
            region: region.to_string(),
            account,
        }
    }

    /// Budgets of their own under `config`, with a fixed account (no
    /// lookup), for tests.
    #[cfg(test)]
    pub(crate) fn standalone(provider: &'static str, region: &str, config: BudgetConfig) -> Self {
        BudgetHandle::new(
            Arc::new(Budgets::new(config)),
            provider,
            region,
            Arc::new(MainAccount::fixed("standalone")),
        )
    }

    /// The budget of `api` for the main account (looked up once per
    /// credential, see [`MainAccount`]).
    pub(crate) async fn budget(&self, api: &str) -> Arc<Budget> {
        let account = self.account.get().await;
        self.budgets.get(self.provider, &account, &self.region, api)
    }

    /// Waits for a slot of `api` at the task's [`current_priority`]; returns
    /// the budget, to report a throttling answer to.
    pub async fn acquire(&self, api: &str) -> Arc<Budget> {
        let budget = self.budget(api).await;
        budget.acquire(current_priority()).await;
        budget
    }

    /// Sends one HTTP attempt of `api` through its budget: waits for a
    /// slot, then reports a throttling answer so the budget slows down.
    pub async fn send<T>(
        &self,
        api: &str,
        attempt: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<T, CloudError> {
        let budget = self.acquire(api).await;
        let result = attempt.await;
        if result
            .as_ref()
            .is_err_and(|e| e.kind == ErrorKind::Throttled)
        {
            budget.throttled();
        }
        result
    }
}
