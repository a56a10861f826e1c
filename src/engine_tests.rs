//! The engine against an in-memory provider.

use std::sync::Mutex;

use futures::future::BoxFuture;

use super::*;

use crate::provider::{ErrorKind, WriteOutcome};

#[test]
fn the_shared_reserved_matcher_matches_as_a_fresh_one() {
    for provider in [Provider::Pai, Provider::HuaweicloudIms] {
        let shared = protected_keys(provider, &Policy::default()).unwrap();
        let fresh = KeyMatcher::new(reserved_patterns(provider)).unwrap();
        for key in [
            "acs:x",
            "aliyun.a",
            "https://k",
            "_sys_k",
            "system.a",
            "team",
        ] {
            assert_eq!(
                shared.matches(key),
                fresh.matches(key),
                "{provider:?} {key}"
            );
        }
    }
    let ignoring = Policy {
        ignore_keys: vec!["team*".into()],
        ..Default::default()
    };
    assert!(
        protected_keys(Provider::Pai, &ignoring)
            .unwrap()
            .matches("team")
    );
    assert!(
        !protected_keys(Provider::Pai, &Policy::default())
            .unwrap()
            .matches("team")
    );
}

/// Records calls and keeps labels in memory; fails the n-th call when asked.
struct Recorder {
    labels: Mutex<Labels>,
    calls: Mutex<Vec<String>>,
    fail_at: Option<usize>,
    limits: CallLimits,
}

impl Recorder {
    fn new(labels: Labels, limits: CallLimits) -> Self {
        Recorder {
            labels: Mutex::new(labels),
            calls: Mutex::new(vec![]),
            fail_at: None,
            limits,
        }
    }
    fn call(&self, what: String) -> Result<WriteOutcome, CloudError> {
        let mut calls = self.calls.lock().unwrap();
        calls.push(what);
        if Some(calls.len()) == self.fail_at {
            return Err(CloudError::new(ErrorKind::Server, "Test", "boom"));
        }
        Ok(WriteOutcome {
            request_id: Some(format!("req-{}", calls.len())),
        })
    }
}

impl LabelProvider for Recorder {
    fn limits(&self, _: &Target) -> CallLimits {
        self.limits
    }
    fn observe<'a>(&'a self, _: &'a Target) -> BoxFuture<'a, Result<Labels, CloudError>> {
        Box::pin(async move { Ok(self.labels.lock().unwrap().clone()) })
    }
    fn add<'a>(
        &'a self,
        _: &'a Target,
        labels: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        Box::pin(async move {
            let out = self.call(format!("add {}", labels.len()))?;
            let mut l = self.labels.lock().unwrap();
            let min_before = l.len();
            l.extend(labels.iter().cloned());
            assert!(l.len() >= min_before);
            Ok(out)
        })
    }
    fn remove<'a>(
        &'a self,
        _: &'a Target,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        Box::pin(async move {
            let out = self.call(format!("remove {}", keys.len()))?;
            let mut l = self.labels.lock().unwrap();
            for k in keys {
                l.remove(k);
            }
            Ok(out)
        })
    }
}

fn target() -> Target {
    Target::PaiImage {
        image_id: "image-1".into(),
        workspace_id: None,
    }
}

fn plan_of(add: &[(&str, &str)], remove: &[&str]) -> Plan {
    Plan {
        add: add
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        remove: remove.iter().map(|k| k.to_string()).collect(),
        ..Default::default()
    }
}

const PAI: CallLimits = CallLimits {
    add_per_call: 2,
    remove_per_call: 1,
    max_labels_on_object: None,
};

#[tokio::test]
async fn adds_go_first_in_batches() {
    let p = Recorder::new(Labels::new(), PAI);
    let plan = plan_of(&[("a", "1"), ("b", "1"), ("c", "1")], &["x", "y"]);
    let applied = execute(&p, &target(), &plan, Order::AddsFirst).await;
    assert!(applied.is_complete());
    assert_eq!(
        *p.calls.lock().unwrap(),
        vec!["add 2", "add 1", "remove 1", "remove 1"]
    );
    assert_eq!(applied.last_request_id.as_deref(), Some("req-4"));
}

#[tokio::test]
async fn stops_at_the_first_failure_and_reports_progress() {
    let mut p = Recorder::new(Labels::new(), PAI);
    p.fail_at = Some(2);
    let plan = plan_of(&[("a", "1"), ("b", "1"), ("c", "1")], &["x"]);
    let applied = execute(&p, &target(), &plan, Order::AddsFirst).await;
    assert_eq!(applied.added.len(), 2);
    assert!(applied.removed.is_empty(), "no remove after a failed add");
    assert_eq!(applied.error.unwrap().kind, ErrorKind::Server);
}

#[test]
fn cap_is_checked_before_any_write() {
    let ims = CallLimits {
        add_per_call: 10,
        remove_per_call: 10,
        max_labels_on_object: Some(3),
    };
    let observed: Labels = [("a", "1"), ("b", "1"), ("c", "1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let err = check_limits(
        &observed,
        &plan_of(&[("d", "1")], &[]),
        &ims,
        Provider::HuaweicloudIms,
    )
    .unwrap_err();
    assert!(err.0.contains("at most 3"), "{}", err.0);
    assert_eq!(
        check_limits(
            &observed,
            &plan_of(&[("d", "1")], &["a"]),
            &ims,
            Provider::HuaweicloudIms
        ),
        Ok(Order::RemovesFirst)
    );
    assert_eq!(
        check_limits(
            &observed,
            &plan_of(&[("a", "2")], &[]),
            &ims,
            Provider::HuaweicloudIms
        ),
        Ok(Order::AddsFirst)
    );
}

#[test]
fn resolve_names_every_bad_field() {
    let spec = ImageLabelSetSpec {
        image_id: "".into(),
        labels: [("team".to_string(), "x".to_string())].into(),
        ..Default::default()
    };
    let errs = resolve_image(&spec, "cn-shanghai").unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert!(fields.contains(&"spec.imageId"));
    assert!(fields.contains(&"spec.labels[\"team\"]"));
}

#[test]
fn resolve_adds_reserved_patterns() {
    let spec = ImageLabelSetSpec {
        image_id: "image-1".into(),
        ..Default::default()
    };
    let set = resolve_image(&spec, "cn-hangzhou").unwrap();
    assert!(set.protected.matches("acs:ack"));
    assert_eq!(set.region, "cn-hangzhou");
    assert_eq!(set.object_key(), "pai/cn-hangzhou/image/image-1");
}
