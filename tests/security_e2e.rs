//! Issue 14 on a real control plane: who may use the operator's own
//! credentials, hostile IDs at admission, and claims that must not outlive
//! a Delete the operator never saw.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use imagelabel::api::{ImageLabelSet, LabelSetStatus, STALLED};
use imagelabel::provider::Target;
use imagelabel::sim::{PaiImageSeed, SeedConfig};
use kube::Api;
use support::cluster::assert_success;
use support::operator::{Env, ready, reason};

const WAIT: Duration = Duration::from_secs(90);

fn pai_image(id: &str) -> Target {
    Target::PaiImage {
        image_id: id.into(),
        workspace_id: None,
    }
}

fn seed_with(ids: &[&str]) -> SeedConfig {
    let mut seed = SeedConfig::demo();
    seed.pai.images = ids
        .iter()
        .map(|id| PaiImageSeed {
            id: id.to_string(),
            name: id.to_string(),
            workspace_id: None,
            labels: BTreeMap::new(),
        })
        .collect();
    seed
}

fn image_set(name: &str, ns: &str, image: &str, key: &str, value: &str) -> String {
    format!(
        "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  imageId: {image}\n  labels:\n    {key}: {value:?}\n"
    )
}

/// Polls a set in any namespace until `check` holds on its status.
async fn wait_set(
    env: &Env,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&LabelSetStatus) -> bool,
) -> LabelSetStatus {
    let api: Api<ImageLabelSet> = Api::namespaced(env.cluster.client(), ns);
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(Some(obj)) = api.get_opt(name).await {
            let status = obj.status.unwrap_or_default();
            if check(&status) {
                return status;
            }
            last = Some(status);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("{ns}/{name}: timed out waiting for {what}; last status: {last:#?}");
}

fn apply(env: &Env, file: &str, yaml: &str) {
    let path = env.cluster.write_file(file, yaml);
    assert_success(
        file,
        &env.cluster.kubectl(["apply", "-f", path.to_str().unwrap()]),
    );
}

#[tokio::test]
async fn default_credentials_only_in_allowed_namespaces() {
    let allowed = "sec-allowed";
    let denied = "sec-denied";
    let env = Env::start(allowed, seed_with(&["image-tenant", "image-own"])).await;
    env.create_namespace(denied).await;
    let _op = env.operator(
        "op",
        &[
            "--watch-namespace=",
            &format!("--default-credentials-namespaces={allowed}"),
        ],
    );

    env.sim.sim().reset_counters();
    apply(
        &env,
        "denied.yaml",
        &image_set("grab", denied, "image-tenant", "system.chipType", "GPU"),
    );
    let st = wait_set(&env, denied, "grab", "InvalidCredentials", |s| {
        reason(s, STALLED).as_deref() == Some("InvalidCredentials")
    })
    .await;
    let msg = &st.condition(STALLED).unwrap().message;
    assert!(
        msg.contains("spec.credentialsRef") && msg.contains("--default-credentials-namespaces"),
        "the message names the way out: {msg}"
    );
    // Long enough for a reconcile that did call the cloud to have shown it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = env.sim.sim().counters();
    assert_eq!(c.total, 0, "no cloud call for a refused set: {c:?}");
    assert!(env.labels(&pai_image("image-tenant")).is_empty());

    apply(
        &env,
        "allowed.yaml",
        &image_set("own", allowed, "image-own", "system.chipType", "GPU"),
    );
    wait_set(&env, allowed, "own", "Ready", ready).await;
    assert_eq!(
        env.labels(&pai_image("image-own")).get("system.chipType"),
        Some(&"GPU".to_string())
    );
    assert!(
        env.labels(&pai_image("image-tenant")).is_empty(),
        "still nothing on the refused set's image"
    );
}

#[tokio::test]
async fn hostile_ids_are_refused_at_admission_naming_the_field() {
    let env = Env::start("sec-admission", SeedConfig::demo()).await;
    let cases = [
        (
            "spec.version",
            "kind: DatasetLabelSet\nmetadata: {name: v}\nspec:\n  datasetId: d-ml6k2q9h3v7x\n  version: \"..\"\n  labels: {team: ml}\n",
        ),
        (
            "spec.version",
            "kind: DatasetLabelSet\nmetadata: {name: v2}\nspec:\n  datasetId: d-ml6k2q9h3v7x\n  version: \"v1/../..\"\n  labels: {team: ml}\n",
        ),
        (
            "spec.datasetId",
            "kind: DatasetLabelSet\nmetadata: {name: d}\nspec:\n  datasetId: \".\"\n  labels: {team: ml}\n",
        ),
        (
            "spec.imageId",
            "kind: ImageLabelSet\nmetadata: {name: i}\nspec:\n  imageId: \"image-a/../../x\"\n  labels: {system.chipType: GPU}\n",
        ),
        (
            "spec.imageId",
            "kind: ImageLabelSet\nmetadata: {name: ims}\nspec:\n  provider: huaweicloud-ims\n  projectId: fd73a4a14a4a4dfb9771a8475e5198ea\n  imageId: \"..\"\n  labels: {team: ml}\n",
        ),
        (
            "spec.projectId",
            "kind: ImageLabelSet\nmetadata: {name: p}\nspec:\n  provider: huaweicloud-ims\n  projectId: \"..\"\n  imageId: 67e17426-359e-49fb-aa12-0bd1756ec240\n  labels: {team: ml}\n",
        ),
        (
            "spec.workspaceId",
            "kind: ImageLabelSet\nmetadata: {name: w}\nspec:\n  imageId: image-abc\n  workspaceId: \"..\"\n  labels: {system.chipType: GPU}\n",
        ),
        (
            "spec.credentialsRef.name",
            "kind: ImageLabelSet\nmetadata: {name: c}\nspec:\n  imageId: image-abc\n  credentialsRef: {name: \"../x\"}\n  labels: {system.chipType: GPU}\n",
        ),
    ];
    for (i, (field, body)) in cases.iter().enumerate() {
        let yaml = format!("apiVersion: imagelabel.io/v1alpha1\n{body}");
        let err = env
            .try_apply(&format!("hostile-{i}.yaml"), &yaml)
            .expect_err(body);
        assert!(
            err.contains(field),
            "case {i}: the refusal names {field}: {err}"
        );
    }
    let ok = "apiVersion: imagelabel.io/v1alpha1\nkind: DatasetLabelSet\nmetadata: {name: fine}\nspec:\n  datasetId: d-ml6k2q9h3v7x\n  version: v2\n  labels: {team: ml}\n";
    env.try_apply("fine.yaml", ok)
        .expect("a well-formed set is admitted");
}

/// "older" declares `system.owner` first and wins it; "newer" then loses it.
async fn older_wins_over_newer(env: &Env, ns: &str, image: &str) {
    apply(
        env,
        "older.yaml",
        &image_set("older", ns, image, "system.owner", "team-a"),
    );
    env.wait_image("older", "Ready", WAIT, ready).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // creationTimestamp has 1 s resolution
    apply(
        env,
        "newer.yaml",
        &image_set("newer", ns, image, "system.owner", "team-b"),
    );
    env.wait_image("newer", "KeyConflict", WAIT, |s| {
        reason(s, STALLED).as_deref() == Some("KeyConflict")
    })
    .await;
}

#[tokio::test]
async fn a_set_deleted_unseen_no_longer_wins_its_keys_after_a_relist() {
    let ns = "sec-ghost";
    let env = Env::start(ns, seed_with(&["image-ghost"])).await;
    let target = pai_image("image-ghost");
    let mut op = env.operator("op1", &[]);
    older_wins_over_newer(&env, ns, "image-ghost").await;

    // The operator cannot see the Delete: it is down while the older set
    // goes away without its cleanup (finalizer removed by hand).
    op.kill();
    assert_success(
        "delete older",
        &env.cluster
            .kubectl(["delete", "-n", ns, "ils", "older", "--wait=false"]),
    );
    assert_success(
        "drop the finalizer",
        &env.cluster.kubectl([
            "patch",
            "-n",
            ns,
            "ils",
            "older",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ]),
    );
    let gone = env.cluster.kubectl(["get", "-n", ns, "ils", "older"]);
    assert!(!gone.status.success(), "older is gone: {gone:?}");

    let _op = env.operator("op2", &[]);
    let st = env.wait_image("newer", "Ready", WAIT, ready).await;
    assert!(
        st.conflicts.is_empty(),
        "no claim of the deleted set: {st:?}"
    );
    assert!(st.owned_keys.contains(&"system.owner".to_string()));
    assert_eq!(
        env.labels(&target).get("system.owner"),
        Some(&"team-b".to_string())
    );
}

/// The same ghost with the operator running: its watch breaks (API server
/// restarted while the operator is frozen) and the Delete happens in the
/// gap. When the operator resumes, its watch resumes from a version the new
/// API server no longer serves, so it lists again; the claim of the set
/// that list lacks must go.
#[tokio::test]
async fn a_set_deleted_in_a_watch_gap_no_longer_wins_its_keys() {
    let ns = "sec-gap";
    let env = Env::start(ns, seed_with(&["image-gap"])).await;
    let target = pai_image("image-gap");
    let op = env.operator("op", &["--leader-election=false"]);
    older_wins_over_newer(&env, ns, "image-gap").await;

    let signal = |sig| {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(op.pid() as i32, sig) }, 0);
    };
    signal(libc::SIGSTOP);
    env.cluster.restart_apiserver().await;
    assert_success(
        "delete older",
        &env.cluster
            .kubectl(["delete", "-n", ns, "ils", "older", "--wait=false"]),
    );
    assert_success(
        "drop the finalizer",
        &env.cluster.kubectl([
            "patch",
            "-n",
            ns,
            "ils",
            "older",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ]),
    );
    signal(libc::SIGCONT);

    let st = env.wait_image("newer", "Ready", WAIT, ready).await;
    assert!(st.conflicts.is_empty(), "{st:?}");
    assert_eq!(
        env.labels(&target).get("system.owner"),
        Some(&"team-b".to_string())
    );
    // The minute-by-minute check would also drop it, later; this test is
    // about the re-list, which the restarted API server forces.
    let log = op.log_text();
    assert!(
        log.contains("re-list: claims of sets that no longer exist dropped"),
        "the ghost claim was not dropped by the re-list:\n{log}"
    );
}
