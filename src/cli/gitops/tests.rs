use std::path::Path;

use futures::future::BoxFuture;

use super::*;
use crate::provider::{CallLimits, CloudError, Target, WriteOutcome};

/// A cloud object without labels; `plan` never writes.
struct Empty;

impl LabelProvider for Empty {
    fn limits(&self, _: &Target) -> CallLimits {
        CallLimits {
            add_per_call: 100,
            remove_per_call: 100,
            max_labels_on_object: None,
        }
    }
    fn observe<'a>(&'a self, _: &'a Target) -> BoxFuture<'a, Result<Labels, CloudError>> {
        Box::pin(async { Ok(Labels::new()) })
    }
    fn add<'a>(
        &'a self,
        _: &'a Target,
        _: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        unreachable!("plan does not write")
    }
    fn remove<'a>(
        &'a self,
        _: &'a Target,
        _: &'a [String],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        unreachable!("plan does not write")
    }
}

/// An ImageLabelSet on `image-1` declaring `system.chipType`.
fn doc(name: &str, chip: &str, created: Option<&str>) -> String {
    let created = created
        .map(|t| format!(", creationTimestamp: \"{t}\""))
        .unwrap_or_default();
    format!(
        "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\n\
         metadata: {{name: {name}{created}}}\n\
         spec: {{imageId: image-1, labels: {{system.chipType: {chip}}}}}\n"
    )
}

/// `(set, key, winner)` of every conflict a plan of `docs` reports.
fn conflicts(docs: &[String]) -> Vec<(String, String, String)> {
    let mut found = vec![];
    let mut errors = vec![];
    let text = docs.join("---\n");
    crate::cli::manifest::parse_text(
        Path::new("m.yaml"),
        &text,
        "cn-shanghai",
        &mut found,
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:?}");
    let lookup = |_: &ResolvedSet| Ok(Arc::new(Empty) as Arc<dyn LabelProvider>);
    let results = futures::executor::block_on(run(&found, "cn-shanghai", &lookup, false, None, 4))
        .expect("plan runs");
    results
        .into_iter()
        .flat_map(|r| {
            r.conflicts
                .into_iter()
                .map(move |c| (r.name.clone(), c.key, c.winner))
        })
        .collect()
}

#[test]
fn conflicts_go_to_the_older_set_then_the_smaller_name_as_in_the_cluster() {
    let loser = |set: &str, winner: &str| {
        vec![(
            set.to_string(),
            "system.chipType".to_string(),
            format!("ImageLabelSet/default/{winner}"),
        )]
    };
    // No creation times (manifests as written): the smaller name wins.
    let a = doc("a", "GPU", None);
    let b = doc("b", "CPU", None);
    assert_eq!(conflicts(&[a.clone(), b.clone()]), loser("default/b", "a"));
    assert_eq!(conflicts(&[b, a.clone()]), loser("default/b", "a"));
    // Saved from the cluster (`kubectl get -o yaml`): the older set wins,
    // and one without a creation time is the newest.
    let old_b = doc("b", "CPU", Some("2026-01-01T00:00:00Z"));
    assert_eq!(
        conflicts(&[a.clone(), old_b.clone()]),
        loser("default/a", "b")
    );
    let new_a = doc("a", "GPU", Some("2026-01-02T00:00:00Z"));
    assert_eq!(conflicts(&[new_a, old_b]), loser("default/a", "b"));
    // The same second: the smaller name, as the cluster breaks the tie.
    let a = doc("a", "GPU", Some("2026-01-01T00:00:00Z"));
    let b = doc("b", "CPU", Some("2026-01-01T00:00:00Z"));
    assert_eq!(conflicts(&[b, a]), loser("default/b", "a"));
}
