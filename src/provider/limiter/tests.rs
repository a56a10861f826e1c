use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;

fn t0() -> Instant {
    Instant::now()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn ceilings_from_published_rates_share_and_quotas() {
    let c = BudgetConfig::default();
    assert_eq!(c.ceiling("pai", "ListImageLabels"), 25.0);
    assert_eq!(c.ceiling("pai", "AddImageLabels"), 10.0);
    assert_eq!(c.ceiling("huaweicloud-ims", "BatchAddOrDeleteTags"), 10.0);
    assert_eq!(c.ceiling("pai", "GetSomethingNew"), 25.0);
    assert_eq!(c.ceiling("pai", "TagSomethingNew"), 10.0);
    let c = BudgetConfig {
        quota_share: 1.0,
        quotas: BTreeMap::from([("AddImageLabels".to_string(), 3.0)]),
        ..Default::default()
    };
    assert_eq!(
        c.ceiling("pai", "AddImageLabels"),
        3.0,
        "absolute, not shared"
    );
    assert_eq!(c.ceiling("pai", "RemoveImageLabels"), 20.0);
    assert!(c.validate().is_ok());
    for bad in [0.0, -0.5, 1.5, f64::NAN] {
        let c = BudgetConfig {
            quota_share: bad,
            ..Default::default()
        };
        assert!(c.validate().is_err(), "{bad}");
    }
}

#[test]
fn helm_schema_accepts_exactly_the_known_apis() {
    let schema: serde_json::Value = serde_json::from_str(include_str!(
        "../../../deploy/helm/imagelabel-operator/values.schema.json"
    ))
    .unwrap();
    let names: Vec<&str> = schema["properties"]["quotas"]["propertyNames"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, known_apis());
}

#[test]
fn quota_flags_are_checked() {
    assert_eq!(
        parse_quota("AddImageLabels=5").unwrap(),
        ("AddImageLabels".to_string(), 5.0)
    );
    assert_eq!(parse_quota("ListImageTags=2.5").unwrap().1, 2.5);
    let e = parse_quota("AddImageLabel=5").unwrap_err();
    assert!(
        e.contains("unknown API") && e.contains("AddImageLabels"),
        "{e}"
    );
    for bad in [
        "AddImageLabels",
        "AddImageLabels=0",
        "AddImageLabels=-1",
        "AddImageLabels=x",
        "AddImageLabels=inf",
    ] {
        assert!(parse_quota(bad).is_err(), "{bad}");
    }
}

#[test]
fn gcra_burst_then_paces() {
    let now = t0();
    let b = Budget::new_at(100.0, 0.5, now);
    // 100 ms of the rate goes at once…
    for _ in 0..10 {
        assert_eq!(b.reserve_at(now), Duration::ZERO);
    }
    // …then one call per 10 ms.
    let w = b.reserve_at(now);
    assert!(w > secs(0.005) && w <= secs(0.01), "{w:?}");
    let w2 = b.reserve_at(now);
    assert!(w2 > w, "{w2:?}");
    // After the bucket drains, a burst is allowed again.
    assert_eq!(b.reserve_at(now + secs(3.0)), Duration::ZERO);
}

#[test]
fn halves_on_throttling_once_per_window() {
    let now = t0();
    let b = Budget::new_at(20.0, 0.5, now);
    assert_eq!(b.rate_at(now), 20.0);
    assert!(b.throttled_at(now));
    assert_eq!(b.rate_at(now), 10.0);
    // A burst of concurrent throttled answers counts once.
    for i in 1..10 {
        assert!(!b.throttled_at(now + secs(0.05 * f64::from(i))));
    }
    assert_eq!(b.throttled_total(), 10);
    let r = b.rate_at(now + secs(0.5));
    assert!((r - 10.2).abs() < 1e-9, "{r}");
    // The next window allows another decrease.
    assert!(b.throttled_at(now + secs(1.0)));
    let r = b.rate_at(now + secs(1.0));
    assert!((r - 5.2).abs() < 1e-9, "{r}");
}

#[test]
fn never_below_the_floor() {
    let now = t0();
    let b = Budget::new_at(100.0, 0.5, now);
    assert_eq!(b.floor(), 5.0);
    for i in 0..20 {
        // Far enough apart to each count, too close to recover much.
        b.throttled_at(now + secs(1.0 * f64::from(i)));
    }
    let r = b.rate_at(now + secs(19.0));
    assert!((5.0..10.0 + 1e-9).contains(&r), "{r}");
    let small = Budget::new_at(0.5, 0.5, now);
    assert_eq!(small.floor(), 0.5, "the floor never exceeds the ceiling");
    small.throttled_at(now);
    assert_eq!(small.rate_at(now), 0.5);
}

#[test]
fn recovers_linearly_to_the_ceiling_never_above() {
    let now = t0();
    let b = Budget::new_at(20.0, 0.5, now);
    b.throttled_at(now);
    assert_eq!(b.rate_at(now), 10.0);
    // +2% of the ceiling (0.4/s) per second.
    for s in 1..=25 {
        let r = b.rate_at(now + secs(f64::from(s)));
        assert!((r - (10.0 + 0.4 * f64::from(s))).abs() < 1e-9, "{s}: {r}");
    }
    assert!((b.rate_at(now + secs(25.0)) - 20.0).abs() < 1e-9);
    assert_eq!(
        b.rate_at(now + secs(100.0)),
        20.0,
        "never above the ceiling"
    );
    // An untouched budget stays at its ceiling.
    let c = Budget::new_at(20.0, 0.5, now);
    assert_eq!(c.rate_at(now + secs(60.0)), 20.0);
}

#[test]
fn slower_rate_after_throttling_paces_calls() {
    let now = t0();
    let b = Budget::new_at(100.0, 0.5, now);
    b.throttled_at(now);
    // 50/s, burst spent by the decrease: 20 ms, then 20 ms apart.
    for i in 1..=5 {
        let w = b.reserve_at(now);
        let want = 0.02 * f64::from(i);
        assert!((w.as_secs_f64() - want).abs() < 1e-6, "{i}: {w:?}");
    }
}

#[test]
fn a_decrease_voids_slots_reserved_at_the_old_rate() {
    let now = t0();
    let b = Budget::new_at(20.0, 0.5, now);
    // A queue of callers: the last one's slot is half a second out.
    let waits: Vec<Duration> = (0..12).map(|_| b.reserve_at(now)).collect();
    assert!(waits[11] > secs(0.45), "{waits:?}");
    let before = b.decreases();
    assert!(b.throttled_at(now));
    assert_eq!(b.decreases(), before + 1, "waiters see the decrease");
    // Re-reserving starts from now at the new rate (10/s), not behind
    // the voided queue: one pause of 100 ms, then 100 ms apart.
    let w1 = b.reserve_at(now);
    let w2 = b.reserve_at(now);
    assert!((w1.as_secs_f64() - 0.1).abs() < 1e-6, "{w1:?}");
    assert!((w2.as_secs_f64() - 0.2).abs() < 1e-6, "{w2:?}");
    // A throttled answer inside the window changes nothing more.
    assert!(!b.throttled_at(now + secs(0.5)));
    assert_eq!(b.decreases(), before + 1);
}

#[test]
fn checks_get_only_their_share() {
    let now = t0();
    let b = Budget::new_at(100.0, 0.5, now);
    // The check bucket runs at 50/s: 5 at once, then 20 ms apart.
    for _ in 0..5 {
        assert_eq!(b.reserve_check_at(now), Duration::ZERO);
    }
    let w = b.reserve_check_at(now);
    assert!(w > secs(0.015) && w <= secs(0.02), "{w:?}");
    // Changes do not pass through the check bucket: the main bucket
    // still has room for them.
    for _ in 0..10 {
        assert_eq!(b.reserve_at(now), Duration::ZERO);
    }
}

#[tokio::test]
async fn priority_is_task_local() {
    assert_eq!(current_priority(), Priority::Change);
    let p = as_check(async { current_priority() }).await;
    assert_eq!(p, Priority::Check);
    assert_eq!(current_priority(), Priority::Change);
}

#[tokio::test]
async fn waiting_is_accounted() {
    let b = Budget::new(1.0, 0.5);
    b.acquire(Priority::Change).await;
    assert_eq!(b.total_wait(), Duration::ZERO);
    b.acquire(Priority::Change).await;
    assert!(b.total_wait() > Duration::ZERO);
    assert_eq!(b.granted(), 2, "every request is counted, waited or not");
}

#[test]
fn shared_per_key() {
    let bs = Budgets::default();
    let a = bs.get("pai", "acct", "cn-hangzhou", "AddImageLabels");
    let b = bs.get("pai", "acct", "cn-hangzhou", "AddImageLabels");
    let c = bs.get("pai", "acct", "cn-shanghai", "AddImageLabels");
    let d = bs.get("pai", "other", "cn-hangzhou", "AddImageLabels");
    let e = bs.get("pai", "acct", "cn-hangzhou", "ListImageLabels");
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!Arc::ptr_eq(&a, &c));
    assert!(!Arc::ptr_eq(&a, &d));
    assert!(!Arc::ptr_eq(&a, &e));
    assert_eq!(a.ceiling(), 10.0);
    assert_eq!(e.ceiling(), 25.0);
    let stats = bs.stats();
    assert_eq!(stats.len(), 3);
    let add = stats
        .iter()
        .find(|s| s.region == "cn-hangzhou" && s.api == "AddImageLabels")
        .unwrap();
    assert_eq!(add.ceiling, 20.0, "summed over the two accounts");
    a.throttled();
    let add = bs
        .stats()
        .into_iter()
        .find(|s| s.region == "cn-hangzhou" && s.api == "AddImageLabels")
        .unwrap();
    assert_eq!(add.throttled, 1);
    assert!(add.rate < 20.0);
}

#[test]
fn idle_unheld_budgets_expire_after_churn_and_totals_stay() {
    let bs = Budgets::new(BudgetConfig::all_at(1000.0));
    let held = bs.get("pai", "kept", "cn-hangzhou", "GetImage");
    assert_eq!(held.reserve_at(Instant::now()), Duration::ZERO);
    held.granted.fetch_add(1, Ordering::Relaxed);
    for i in 0..10_000 {
        let b = bs.get("pai", &format!("LTAI{i}"), "cn-hangzhou", "GetImage");
        b.granted.fetch_add(1, Ordering::Relaxed);
        b.throttled();
    }
    assert_eq!(bs.len(), 10_001);
    let before = bs.total_granted();
    assert_eq!(before, 10_001);
    assert_eq!(bs.sweep(Instant::now()), 10_001);
    let later = Instant::now() + LIMITER_IDLE_TTL + Duration::from_secs(1);
    assert_eq!(bs.sweep(later), 1, "only the budget a caller holds stays");
    assert_eq!(bs.total_granted(), before, "totals survive the sweep");
    let stats = bs.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].throttled, 10_000);
    assert_eq!(stats[0].ceiling, 1000.0, "only the live budget counts");
    assert!(Arc::ptr_eq(
        &held,
        &bs.get("pai", "kept", "cn-hangzhou", "GetImage")
    ));
}
