//! The controller end to end: a real kube-apiserver + etcd, `kubectl`, the
//! simulator, and `imagelabel run` as a separate process.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use imagelabel::api::{READY, STALLED};
use imagelabel::provider::Target;
use imagelabel::sim::{FaultConfig, FlowControlSeed, ImsImageSeed, PaiImageSeed, SeedConfig};
use kube::ResourceExt;
use support::cluster::assert_success;
use support::operator::{Env, ready, reason, sum_metric};

const WAIT: Duration = Duration::from_secs(90);

fn pai_image(id: &str) -> Target {
    Target::PaiImage {
        image_id: id.into(),
        workspace_id: None,
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A PAI image named after its ID, outside any workspace.
fn pai_seed(id: &str, pairs: &[(&str, &str)]) -> PaiImageSeed {
    PaiImageSeed {
        id: id.to_string(),
        name: id.to_string(),
        workspace_id: None,
        labels: labels(pairs),
    }
}

/// A seed with the demo credentials and the given PAI images.
fn seed_with(images: &[(&str, &[(&str, &str)])]) -> SeedConfig {
    let mut seed = SeedConfig::demo();
    seed.pai.images = images.iter().map(|(id, l)| pai_seed(id, l)).collect();
    seed
}

/// An ImageLabelSet manifest. `extra` is added under `spec` verbatim (indented by the caller).
fn image_set(name: &str, image: &str, pairs: &[(&str, &str)], extra: &str) -> String {
    let mut s = format!(
        "apiVersion: imagelabel.io/v1alpha1\nkind: ImageLabelSet\nmetadata:\n  name: {name}\nspec:\n  imageId: {image}\n{extra}  labels:\n"
    );
    if pairs.is_empty() {
        s = s.replace("  labels:\n", "  labels: {}\n");
    }
    for (k, v) in pairs {
        s.push_str(&format!("    {k}: {v:?}\n"));
    }
    s
}

fn annotate_resume(env: &Env, kind: &str, name: &str) {
    let stamp = format!(
        "imagelabel.io/reconcile-requested-at={}",
        Instant::now().elapsed().as_nanos() + std::process::id() as u128 + rand_suffix()
    );
    assert_success(
        "annotate",
        &env.cluster
            .kubectl(["annotate", "-n", &env.ns, kind, name, &stamp, "--overwrite"]),
    );
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_converge_and_edits_prune_and_observe_behave() {
    let env = Env::start("ml-platform", SeedConfig::demo()).await;
    let _op = env.operator("op", &[]);
    env.apply_examples_and_wait_ready();
    // The cloud holds exactly what the manifests declare, plus keys nobody owns.
    let xgb = pai_image("image-4c62abc53uor");
    assert_eq!(
        env.labels(&xgb),
        labels(&[
            ("system.chipType", "GPU"),
            ("system.framework", "XGBoost 2.0.3"),
            ("system.pythonVersion", "3.11"),
            ("system.supported.dlc", "true")
        ])
    );
    let ms = pai_image("image-9f1e2d3c4b5a");
    assert_eq!(
        env.labels(&ms),
        labels(&[
            ("system.chipType", "GPU"),
            ("system.dsw.os", "ubuntu22.04"),
            ("system.framework", "ModelScope 1.10"),
            ("system.supported.dsw", "true")
        ])
    );
    let ims = Target::ImsImage {
        project_id: "fd73a4a14a4a4dfb9771a8475e5198ea".into(),
        image_id: "67e17426-359e-49fb-aa12-0bd1756ec240".into(),
    };
    assert_eq!(
        env.labels(&ims),
        labels(&[
            ("cuda", "12.4"),
            ("env", "prod"),
            ("owner", "ml-platform"),
            ("team", "ml-platform")
        ])
    );
    let v2 = Target::PaiDatasetVersion {
        dataset_id: "d-ml6k2q9h3v7x".into(),
        version: "v2".into(),
    };
    assert_eq!(
        env.labels(&v2),
        labels(&[("quality", "reviewed"), ("split", "train")])
    );

    // Status: owned keys are exactly the keys written (chipType was already right, so not owned).
    let st = env.wait_image("xgboost-gpu", "Ready", WAIT, ready).await;
    assert_eq!(
        st.owned_keys.iter().cloned().collect::<BTreeSet<_>>(),
        [
            "system.framework",
            "system.pythonVersion",
            "system.supported.dlc"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
    assert!(
        st.last_request_id.is_some(),
        "lastRequestId recorded: {st:?}"
    );
    assert_eq!(st.label_count, Some(4));
    let listed = env
        .cluster
        .kubectl_ok(["get", "imagelabel", "-n", "ml-platform"]);
    assert!(
        listed.contains("xgboost-gpu")
            && listed.contains("imagenet-v2")
            && listed.contains("InSync"),
        "{listed}"
    );
    let events = env
        .cluster
        .kubectl_ok(["get", "events", "-n", "ml-platform", "-o", "json"]);
    assert!(events.contains("LabelsApplied"), "events for changes");

    // Edit: change one key, add one, drop an owned key and an unowned one.
    let edited = image_set(
        "xgboost-gpu",
        "image-4c62abc53uor",
        &[
            ("system.framework", "XGBoost 2.1.0"),
            ("system.supported.dlc", "true"),
            ("system.new", "1"),
        ],
        "  region: cn-shanghai\n",
    );
    env.apply("xgb.yaml", &edited);
    env.wait_cloud("the edit to reach the cloud", WAIT, |s| {
        s.labels_of(&xgb)
            == Some(labels(&[
                ("system.chipType", "GPU"),
                ("system.framework", "XGBoost 2.1.0"),
                ("system.new", "1"),
                ("system.supported.dlc", "true"),
            ]))
    })
    .await;

    // prune All removes a key added behind our back (protected keys stay).
    env.sim
        .sim()
        .set_label_out_of_band(&ms, "system.extra", "x")
        .unwrap();
    annotate_resume(&env, "ils", "modelscope-dsw");
    env.wait_cloud("prune All to remove system.extra", WAIT, |s| {
        s.labels_of(&ms)
            .is_some_and(|l| !l.contains_key("system.extra") && l.contains_key("system.dsw.os"))
    })
    .await;

    // Observe: reports drift, changes nothing.
    env.sim.sim().reset_counters();
    assert_success(
        "patch observe",
        &env.cluster.kubectl([
            "patch",
            "-n",
            "ml-platform",
            "dls",
            "imagenet",
            "--type=merge",
            "-p",
            r#"{"spec":{"mode":"Observe","labels":{"team":"vision","tier":"platinum"}}}"#,
        ]),
    );
    let ds = Target::PaiDataset {
        dataset_id: "d-ml6k2q9h3v7x".into(),
    };
    let deadline = Instant::now() + WAIT;
    let status = loop {
        let obj = env.datasets().get("imagenet").await.unwrap();
        let st = obj.status.clone().unwrap_or_default();
        if st.observed_generation == obj.metadata.generation && !st.drift.is_empty() {
            break st;
        }
        assert!(Instant::now() < deadline, "no drift reported: {st:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(reason(&status, READY).as_deref(), Some("DriftDetected"));
    assert_eq!(status.drift[0].key, "tier");
    assert_eq!(status.drift[0].desired.as_deref(), Some("platinum"));
    assert_eq!(status.drift[0].actual.as_deref(), Some("gold"));
    assert_eq!(
        env.labels(&ds).get("tier").map(String::as_str),
        Some("gold")
    );
    assert_eq!(env.sim.sim().counters().writes, 0, "Observe writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_repaired_and_counted_then_a_fight_is_detected() {
    let env = Env::start("e2e", seed_with(&[("image-drift", &[])])).await;
    let op = env.operator("op", &["--fight-threshold", "2"]);
    let target = pai_image("image-drift");
    env.apply(
        "s.yaml",
        &image_set(
            "drift",
            "image-drift",
            &[("system.a", "1")],
            "  resyncInterval: 10s\n",
        ),
    );
    env.wait_image("drift", "Ready", WAIT, ready).await;

    for round in 1..=2 {
        env.sim
            .sim()
            .set_label_out_of_band(&target, "system.a", &format!("changed-{round}"))
            .unwrap();
        env.wait_cloud("drift repaired at resync", Duration::from_secs(40), |s| {
            s.labels_of(&target)
                .and_then(|l| l.get("system.a").cloned())
                .as_deref()
                == Some("1")
        })
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while op
        .metric("imagelabel_drift_repaired_total", &["ImageLabelSet"])
        .await
        < 2.0
    {
        assert!(
            Instant::now() < deadline,
            "drift metric: {}",
            op.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A third out-of-band change within the window: stop repairing, say so.
    env.sim
        .sim()
        .set_label_out_of_band(&target, "system.a", "theirs")
        .unwrap();
    let st = env
        .wait_image("drift", "FightDetected", Duration::from_secs(40), |s| {
            reason(s, STALLED).as_deref() == Some("FightDetected")
        })
        .await;
    assert_eq!(st.fights[0].key, "system.a");
    assert_eq!(st.fights[0].last_seen.as_deref(), Some("theirs"));
    env.sim.sim().reset_counters();
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        env.labels(&target).get("system.a").map(String::as_str),
        Some("theirs"),
        "held key not repaired"
    );
    assert_eq!(env.sim.sim().counters().writes, 0, "no write loop");
    let events = env
        .cluster
        .kubectl_ok(["get", "events", "-n", "e2e", "-o", "json"]);
    assert!(events.contains("FightDetected"));

    // The resume annotation repairs again.
    annotate_resume(&env, "ils", "drift");
    env.wait_cloud("repair after resume", WAIT, |s| {
        s.labels_of(&target)
            .and_then(|l| l.get("system.a").cloned())
            .as_deref()
            == Some("1")
    })
    .await;
    env.wait_image("drift", "Ready after resume", WAIT, ready)
        .await;

    // Paused: no cloud call at all, not even the drift check; status says so.
    let pause = |on: bool| {
        let arg = if on {
            "imagelabel.io/paused=true"
        } else {
            "imagelabel.io/paused-"
        };
        assert_success(
            "pause",
            &env.cluster
                .kubectl(["annotate", "-n", "e2e", "ils", "drift", arg, "--overwrite"]),
        );
    };
    pause(true);
    env.wait_image("drift", "Paused", WAIT, |s| {
        s.condition(READY)
            .is_some_and(|c| c.status == "True" && c.reason == "Paused")
    })
    .await;
    env.sim.sim().reset_counters();
    env.sim
        .sim()
        .set_label_out_of_band(&target, "system.a", "while-paused")
        .unwrap();
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert_eq!(
        env.sim.sim().counters().total,
        0,
        "a paused set makes no cloud call, even past its 10 s resync"
    );
    pause(false);
    env.wait_cloud("repair after unpause", WAIT, |s| {
        s.labels_of(&target)
            .and_then(|l| l.get("system.a").cloned())
            .as_deref()
            == Some("1")
    })
    .await;
    let st = env
        .wait_image("drift", "Ready after unpause", WAIT, ready)
        .await;
    assert!(st.last_sync_time.is_some() && st.synced_generation.is_some());

    // Probes answer.
    for path in ["healthz", "readyz"] {
        let url = format!("http://127.0.0.1:{}/{path}", op.metrics_port);
        let r = reqwest::get(&url).await.expect(path);
        assert_eq!(r.status(), 200, "/{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_sets_older_wins_without_flapping_and_deletion_hands_over() {
    let env = Env::start(
        "e2e",
        seed_with(&[("image-shared", &[("system.vendor", "acme")])]),
    )
    .await;
    let _op = env.operator("op", &[]);

    // Two sets applied in one go: the loser must never write the key, even
    // when it happens to be reconciled first. (Same creation second: the
    // name breaks the tie, so "pair-a" wins.)
    let together = pai_image("image-together");
    env.sim.sim().add_pai_image(pai_seed("image-together", &[]));
    env.sim.sim().reset_counters();
    env.apply(
        "pair.yaml",
        &format!(
            "{}---\n{}",
            image_set("pair-b", "image-together", &[("system.team", "b")], ""),
            image_set("pair-a", "image-together", &[("system.team", "a")], "")
        ),
    );
    env.wait_image("pair-a", "Ready", WAIT, ready).await;
    let st = env
        .wait_image("pair-b", "KeyConflict", WAIT, |s| {
            reason(s, STALLED).as_deref() == Some("KeyConflict")
        })
        .await;
    assert!(st.owned_keys.is_empty(), "the loser owns nothing: {st:?}");
    assert_eq!(env.labels(&together), labels(&[("system.team", "a")]));
    let adds = env.sim.sim().counters().api("AddImageLabels");
    assert_eq!(
        adds.ok, 1,
        "one write, by the winner; the loser never wrote: {adds:?}"
    );

    let target = pai_image("image-shared");
    env.apply(
        "older.yaml",
        &image_set(
            "older",
            "image-shared",
            &[("system.owner", "team-a"), ("system.a", "1")],
            "",
        ),
    );
    env.wait_image("older", "Ready", WAIT, ready).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // creationTimestamp has 1 s resolution
    env.apply(
        "newer.yaml",
        &image_set(
            "newer",
            "image-shared",
            &[("system.owner", "team-b"), ("system.b", "2")],
            "",
        ),
    );
    let st = env
        .wait_image("newer", "KeyConflict", WAIT, |s| {
            reason(s, STALLED).as_deref() == Some("KeyConflict")
        })
        .await;
    assert_eq!(st.conflicts[0].key, "system.owner");
    assert_eq!(st.conflicts[0].winner, "e2e/older");
    assert!(!st.owned_keys.contains(&"system.owner".to_string()));
    env.wait_cloud("b written", WAIT, |s| {
        s.labels_of(&target)
            .is_some_and(|l| l.get("system.b").map(String::as_str) == Some("2"))
    })
    .await;
    assert_eq!(
        env.labels(&target),
        labels(&[
            ("system.a", "1"),
            ("system.b", "2"),
            ("system.owner", "team-a"),
            ("system.vendor", "acme")
        ])
    );

    // Both reconcile again and again: nobody writes.
    env.sim.sim().reset_counters();
    for _ in 0..3 {
        annotate_resume(&env, "ils", "older");
        annotate_resume(&env, "ils", "newer");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let c = env.sim.sim().counters();
    assert!(c.reads >= 2, "the sets did reconcile: {c:?}");
    assert_eq!(c.writes, 0, "no flapping: {c:?}");

    // Deleting the older set removes its own key but not the one the newer set wants; the newer set then takes it.
    assert_success(
        "delete older",
        &env.cluster
            .kubectl(["delete", "-n", "e2e", "ils", "older", "--timeout=60s"]),
    );
    env.wait_cloud("handover", WAIT, |s| {
        s.labels_of(&target)
            == Some(labels(&[
                ("system.b", "2"),
                ("system.owner", "team-b"),
                ("system.vendor", "acme"),
            ]))
    })
    .await;
    env.wait_image("newer", "Ready after handover", WAIT, ready)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_orphan_policies() {
    let env = Env::start("e2e", seed_with(&[("image-del", &[("system.keep", "1")])])).await;
    let _op = env.operator("op", &[]);
    let target = pai_image("image-del");
    env.apply(
        "d.yaml",
        &image_set(
            "deleter",
            "image-del",
            &[("system.d", "1"), ("system.shared", "s")],
            "",
        ),
    );
    env.apply(
        "o.yaml",
        &image_set(
            "orphaner",
            "image-del",
            &[("system.o", "1")],
            "  deletionPolicy: Orphan\n",
        ),
    );
    env.apply(
        "k.yaml",
        &image_set(
            "keeper",
            "image-del",
            &[("system.shared", "s")],
            "  mode: Observe\n",
        ),
    );
    env.wait_image("deleter", "Ready", WAIT, ready).await;
    env.wait_image("orphaner", "Ready", WAIT, ready).await;
    env.wait_image("keeper", "observed", WAIT, |s| s.last_sync_time.is_some())
        .await;

    // Moving a set to another image would carry its ownership there: the
    // API server refuses it, naming the field.
    // (Adding a region the set did not name is a target change too.)
    for (patch, field) in [
        (r#"{"spec":{"imageId":"image-elsewhere"}}"#, "spec.imageId"),
        (r#"{"spec":{"region":"cn-beijing"}}"#, "spec.region"),
    ] {
        let moved = env.cluster.kubectl([
            "patch",
            "-n",
            "e2e",
            "ils",
            "deleter",
            "--type=merge",
            "-p",
            patch,
        ]);
        let err = String::from_utf8_lossy(&moved.stderr);
        assert!(!moved.status.success(), "{patch} refused");
        assert!(err.contains(field) && err.contains("immutable"), "{err}");
    }
    assert_success(
        "delete",
        &env.cluster.kubectl([
            "delete",
            "-n",
            "e2e",
            "ils",
            "deleter",
            "orphaner",
            "--timeout=60s",
        ]),
    );
    // Delete removed its own keys, also the one an Observe set declares
    // (observing keeps nothing alive); Orphan kept everything.
    assert_eq!(
        env.labels(&target),
        labels(&[("system.keep", "1"), ("system.o", "1")])
    );
    let left = env
        .cluster
        .kubectl_ok(["get", "ils", "-n", "e2e", "-o", "name"]);
    assert_eq!(
        left.trim(),
        "imagelabelset.imagelabel.io/keeper",
        "finalizers released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_reconcile_of_200_sets_converges_with_no_orphaned_keys() {
    const N: usize = 200;
    let ids: Vec<String> = (0..N).map(|i| format!("image-bulk{i:03}")).collect();
    let images: Vec<(&str, &[(&str, &str)])> = ids
        .iter()
        .map(|id| (id.as_str(), &[("system.seeded", "keep")][..]))
        .collect();
    let mut seed = seed_with(&images);
    seed.flow_control = FlowControlSeed::off();
    seed.faults = FaultConfig {
        latency_ms: 15,
        ..Default::default()
    };
    let env = Env::start("e2e", seed).await;
    let manifests: String = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            format!(
                "---\n{}",
                image_set(
                    &format!("bulk{i:03}"),
                    id,
                    &[
                        ("system.a", "1"),
                        ("system.b", "2"),
                        ("system.c", &i.to_string())
                    ],
                    ""
                )
            )
        })
        .collect();
    env.apply("bulk.yaml", &manifests);

    let mut op = env.operator("first", &["--concurrency", "8"]);
    let deadline = Instant::now() + WAIT;
    while env.sim.sim().counters().writes < 40 {
        assert!(Instant::now() < deadline, "operator made no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    op.kill();
    let writes_at_kill = env.sim.sim().counters().writes;
    assert!(
        writes_at_kill < N as u64,
        "killed mid-way ({writes_at_kill} writes)"
    );

    let _op2 = env.operator("second", &["--concurrency", "8"]);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let list = env.images().list(&Default::default()).await.unwrap();
        let ready_count = list
            .items
            .iter()
            .filter(|o| {
                o.status
                    .as_ref()
                    .is_some_and(|s| s.is_ready() && s.observed_generation == o.metadata.generation)
            })
            .count();
        if ready_count == N {
            for o in &list.items {
                let st = o.status.as_ref().unwrap();
                let cloud = env.labels(&pai_image(&o.spec.image_id));
                let owned: BTreeSet<&String> = st.owned_keys.iter().collect();
                for (k, v) in &o.spec.labels {
                    assert_eq!(cloud.get(k), Some(v), "{}: {k}", o.spec.image_id);
                }
                assert_eq!(
                    cloud.get("system.seeded").map(String::as_str),
                    Some("keep"),
                    "unowned key removed on {}",
                    o.spec.image_id
                );
                for k in cloud.keys().filter(|k| *k != "system.seeded") {
                    assert!(
                        owned.contains(k),
                        "{}: key {k} in the cloud but owned by no set",
                        o.spec.image_id
                    );
                }
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {ready_count}/{N} sets Ready after restart"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_the_standby_takes_over() {
    let env = Env::start("e2e", seed_with(&[("image-l1", &[]), ("image-l2", &[])])).await;
    let mut a = env.operator("replica-a", &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut b = env.operator("replica-b", &[]);
    env.apply(
        "l1.yaml",
        &image_set("l1", "image-l1", &[("system.x", "1")], ""),
    );
    env.wait_image("l1", "Ready", WAIT, ready).await;

    let (la, lb) = (
        a.metric("imagelabel_leader", &[]).await,
        b.metric("imagelabel_leader", &[]).await,
    );
    assert_eq!(la + lb, 1.0, "exactly one leader: a={la} b={lb}");
    let (leader, standby) = if la == 1.0 {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let standby_text = standby.metrics().await;
    assert!(
        standby_text.contains("imagelabel_leader 0"),
        "the standby serves metrics and is not the leader: {standby_text}"
    );
    assert_eq!(
        sum_metric(&standby_text, "imagelabel_cloud_requests_total", &[]),
        0.0,
        "the standby sends no cloud request"
    );
    assert_eq!(
        leader
            .metric("imagelabel_cloud_calls_total", &["api=\"add\""])
            .await,
        env.sim.sim().counters().api("AddImageLabels").ok as f64,
        "every write the simulator saw came from the leader"
    );
    let writers = env.sim.sim().counters().writes_by_agent;
    assert!(
        !writers.is_empty()
            && writers
                .keys()
                .all(|agent| agent.ends_with(&format!("({})", leader.name))),
        "the simulator saw writes from the leader only: {writers:?}"
    );
    assert!(leader.metric("imagelabel_reconciles_total", &[]).await >= 1.0);
    assert_eq!(
        standby.metric("imagelabel_reconciles_total", &[]).await,
        0.0,
        "the standby reconciles nothing"
    );
    assert_eq!(
        standby.metric("imagelabel_cloud_calls_total", &[]).await,
        0.0,
        "the standby calls no cloud"
    );

    leader.kill();
    env.apply(
        "l2.yaml",
        &image_set("l2", "image-l2", &[("system.y", "2")], ""),
    );
    env.wait_image("l2", "Ready after failover", Duration::from_secs(60), ready)
        .await;
    assert_eq!(
        env.labels(&pai_image("image-l2")),
        labels(&[("system.y", "2")])
    );
    assert_eq!(standby.metric("imagelabel_leader", &[]).await, 1.0);

    // SIGTERM in the middle of a write: the reconcile in flight finishes
    // (labels and status), then the process exits 0.
    env.sim
        .sim()
        .set_faults(FaultConfig {
            latency_ms: 1500,
            ..Default::default()
        })
        .unwrap();
    env.sim.sim().add_pai_image(pai_seed("image-l3", &[]));
    env.apply(
        "l3.yaml",
        &image_set("l3", "image-l3", &[("system.z", "3")], ""),
    );
    env.wait_image("l3", "Applying", WAIT, |s| {
        reason(s, "Reconciling").as_deref() == Some("Applying")
    })
    .await;
    let status = standby.terminate().expect("operator was running");
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    assert_eq!(
        env.labels(&pai_image("image-l3")),
        labels(&[("system.z", "3")]),
        "the write in flight completed"
    );
    let st = env.wait_image("l3", "Ready", WAIT, ready).await;
    assert_eq!(st.owned_keys, vec!["system.z".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_unknown_image_and_throttling_stall_or_back_off_then_recover() {
    let env = Env::start("e2e", seed_with(&[("image-ok", &[])])).await;
    let op = env.operator("op", &["--secret-poll-interval", "1s"]);

    // A Secret with a wrong secret: Stalled, and no retry storm even with the
    // shortest resync (10 s): the cloud is not called again until the Secret
    // changes.
    env.apply("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: pai-creds}\nstringData: {accessKeyId: testAK, accessKeySecret: Wr0ngS3cretValue}\n");
    env.apply(
        "bad.yaml",
        &image_set(
            "badcreds",
            "image-ok",
            &[("system.a", "1")],
            "  credentialsRef: {name: pai-creds}\n  resyncInterval: 10s\n",
        ),
    );
    let st = env
        .wait_image("badcreds", "InvalidCredentials", WAIT, |s| {
            reason(s, STALLED).as_deref() == Some("InvalidCredentials")
        })
        .await;
    let msg = &st.condition(STALLED).unwrap().message;
    assert!(
        !msg.contains("Wr0ngS3cretValue"),
        "no secret in status: {msg}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = env.sim.sim().counters().total;
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert_eq!(
        env.sim.sim().counters().total - before,
        0,
        "a terminal error is not retried while nothing changed (a resync period passed)"
    );
    // Fixing the Secret alone is enough: no annotation, no spec change.
    env.apply("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: pai-creds}\nstringData: {accessKeyId: testAK, accessKeySecret: testSecret}\n");
    env.wait_image("badcreds", "Ready once the Secret is fixed", WAIT, ready)
        .await;
    // Its 10 s resyncs would blur the call counts below.
    assert_success(
        "delete badcreds",
        &env.cluster
            .kubectl(["delete", "-n", "e2e", "ils", "badcreds", "--timeout=60s"]),
    );

    // An unknown image: Stalled NotFound, then Ready once it exists.
    env.apply(
        "missing.yaml",
        &image_set(
            "missing",
            "image-missing",
            &[("system.a", "1")],
            "  resyncInterval: 10s\n",
        ),
    );
    env.wait_image("missing", "NotFound", WAIT, |s| {
        reason(s, STALLED).as_deref() == Some("NotFound")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = env.sim.sim().counters().api("ListImageLabels").total();
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert_eq!(
        env.sim.sim().counters().api("ListImageLabels").total() - before,
        0,
        "an unknown image is not looked up again until something changes"
    );
    env.sim.sim().add_pai_image(pai_seed("image-missing", &[]));
    annotate_resume(&env, "ils", "missing");
    env.wait_image("missing", "Ready once the image exists", WAIT, ready)
        .await;
    // Its 10 s resyncs would blur the storm's call count.
    assert_success(
        "delete missing",
        &env.cluster
            .kubectl(["delete", "-n", "e2e", "ils", "missing", "--timeout=60s"]),
    );

    // A throttling storm: backing off, bounded call rate, recovery.
    env.sim
        .sim()
        .set_faults(FaultConfig {
            throttle_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
    env.sim.sim().reset_counters();
    env.apply(
        "storm.yaml",
        &image_set("storm", "image-ok", &[("system.s", "1")], ""),
    );
    env.wait_image("storm", "BackingOff", WAIT, |s| {
        reason(s, "Reconciling").as_deref() == Some("BackingOff")
    })
    .await;
    let started = Instant::now();
    let before = env.sim.sim().counters().total;
    let sent_before = op.metric("imagelabel_cloud_requests_total", &[]).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let calls = env.sim.sim().counters().total - before;
    let sent = op.metric("imagelabel_cloud_requests_total", &[]).await - sent_before;
    let per_second = calls as f64 / started.elapsed().as_secs_f64();
    assert!(
        per_second < 4.0,
        "throttled calls stay bounded: {calls} in 10 s"
    );
    assert!(
        (sent - calls as f64).abs() <= 4.0,
        "the operator counts every HTTP request, retries included: metric {sent}, simulator {calls}"
    );
    env.sim.sim().set_faults(FaultConfig::default()).unwrap();
    env.wait_image("storm", "Ready after the storm", WAIT, ready)
        .await;
    assert!(
        op.metric("imagelabel_cloud_calls_total", &["outcome=\"throttled\""])
            .await
            >= 1.0,
        "throttled calls are counted"
    );
    // Secrets never reach logs or events.
    let logs = op.log_text();
    let events = env
        .cluster
        .kubectl_ok(["get", "events.events.k8s.io", "-n", "e2e", "-o", "json"]);
    for secret in ["Wr0ngS3cretValue", "testSecret"] {
        assert!(
            !logs.contains(secret),
            "secret {secret} in the operator log"
        );
        assert!(!events.contains(secret), "secret {secret} in an event");
    }
    assert!(
        logs.contains("\"request_id\""),
        "JSON logs carry the cloud RequestId"
    );
    assert!(
        sum_metric(
            &op.metrics().await,
            "imagelabel_reconciles_total",
            &["result=\"error\""]
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ims_sets_reconcile_and_a_set_past_ten_tags_stalls_without_writing() {
    let mut seed = SeedConfig::demo();
    let project = "fd73a4a14a4a4dfb9771a8475e5198ea";
    let full: BTreeMap<String, String> =
        (0..8).map(|i| (format!("t{i}"), "x".to_string())).collect();
    seed.ims.images = vec![
        ImsImageSeed {
            id: "11111111-0000-4000-8000-000000000001".into(),
            project_id: project.into(),
            tags: full.clone(),
        },
        ImsImageSeed {
            id: "11111111-0000-4000-8000-000000000002".into(),
            project_id: project.into(),
            tags: labels(&[("env", "dev")]),
        },
    ];
    let env = Env::start("e2e", seed).await;
    let _op = env.operator("op", &["--default-region", "cn-north-4"]);
    let ims =
        || format!("  provider: huaweicloud-ims\n  projectId: {project}\n  region: cn-north-4\n");

    env.sim.sim().reset_counters();
    env.apply(
        "full.yaml",
        &image_set(
            "too-many",
            "11111111-0000-4000-8000-000000000001",
            &[("a", "1"), ("b", "2"), ("c", "3")],
            &ims(),
        ),
    );
    let st = env
        .wait_image("too-many", "LimitExceeded", WAIT, |s| {
            reason(s, STALLED).as_deref() == Some("LimitExceeded")
        })
        .await;
    let msg = &st.condition(STALLED).unwrap().message;
    assert!(
        msg.contains("11 labels") && msg.contains("at most 10"),
        "{msg}"
    );
    assert_eq!(env.sim.sim().counters().writes, 0, "no write call was made");

    // IMS write calls since the last reset: (AddImageTag, BatchAddOrDeleteTags, DeleteImageTag).
    let ims_writes = || {
        let c = env.sim.sim().counters();
        (
            c.api("AddImageTag").total(),
            c.api("BatchAddOrDeleteTags").total(),
            c.api("DeleteImageTag").total(),
        )
    };
    let one_batch = (0, 1, 0);

    env.sim.sim().reset_counters();

    env.apply(
        "ok.yaml",
        &image_set(
            "fits",
            "11111111-0000-4000-8000-000000000002",
            &[("env", "prod"), ("team", "ml")],
            &ims(),
        ),
    );
    env.wait_image("fits", "Ready", WAIT, ready).await;
    let target = Target::ImsImage {
        project_id: project.into(),
        image_id: "11111111-0000-4000-8000-000000000002".into(),
    };
    assert_eq!(
        env.labels(&target),
        labels(&[("env", "prod"), ("team", "ml")])
    );
    assert_eq!(
        ims_writes(),
        one_batch,
        "the add pass (env changed, team added) is one BatchAddOrDeleteTags create"
    );

    // Dropping an owned key removes it with one batch delete.
    env.sim.sim().reset_counters();
    env.apply(
        "ok.yaml",
        &image_set(
            "fits",
            "11111111-0000-4000-8000-000000000002",
            &[("env", "prod")],
            &ims(),
        ),
    );
    env.wait_image("fits", "Ready without owning team", WAIT, |s| {
        ready(s) && s.owned_keys.iter().all(|k| k != "team")
    })
    .await;
    assert_eq!(env.labels(&target), labels(&[("env", "prod")]));
    assert_eq!(
        ims_writes(),
        one_batch,
        "the remove pass is one BatchAddOrDeleteTags delete"
    );

    // Shrinking the first set to fit makes it converge.
    env.sim.sim().reset_counters();
    env.apply(
        "full.yaml",
        &image_set(
            "too-many",
            "11111111-0000-4000-8000-000000000001",
            &[("a", "1"), ("b", "2")],
            &ims(),
        ),
    );
    env.wait_image("too-many", "Ready once it fits", WAIT, ready)
        .await;
    let mut ten = full;
    ten.extend(labels(&[("a", "1"), ("b", "2")]));
    assert_eq!(
        env.labels(&Target::ImsImage {
            project_id: project.into(),
            image_id: "11111111-0000-4000-8000-000000000001".into(),
        }),
        ten,
        "the seed's 8 tags (not owned, kept) plus the 2 declared: exactly 10"
    );
    assert_eq!(ims_writes(), one_batch, "the two adds in one batch create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_restart_loses_nothing() {
    let env = Env::start(
        "e2e",
        seed_with(&[("image-r1", &[("system.base", "1")]), ("image-r2", &[])]),
    )
    .await;
    // A lease that outlives the outage: a leader that cannot confirm its
    // Lease before it expires exits (as kube-controller-manager does), which
    // is not what this test is about.
    let mut op = env.operator("op", &["--lease-duration", "30s"]);
    env.apply(
        "r1.yaml",
        &image_set("r1", "image-r1", &[("system.a", "1")], ""),
    );
    env.wait_image("r1", "Ready", WAIT, ready).await;

    env.cluster.kill_apiserver();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The cloud changes while the API server is down.
    env.sim
        .sim()
        .set_label_out_of_band(&pai_image("image-r1"), "system.a", "changed")
        .unwrap();
    env.cluster.start_apiserver().await;

    assert!(
        op.is_running(),
        "the operator survives an API server restart"
    );
    env.apply(
        "r2.yaml",
        &image_set("r2", "image-r2", &[("system.b", "2")], ""),
    );
    env.wait_image("r2", "Ready after restart", WAIT, ready)
        .await;
    annotate_resume(&env, "ils", "r1");
    env.wait_cloud("r1 repaired after restart", WAIT, |s| {
        s.labels_of(&pai_image("image-r1"))
            == Some(labels(&[("system.a", "1"), ("system.base", "1")]))
    })
    .await;
    let st = env.wait_image("r1", "Ready", WAIT, ready).await;
    assert_eq!(
        st.owned_keys,
        vec!["system.a".to_string()],
        "ownership survived"
    );

    // A leader whose (6 s) Lease cannot be confirmed before it expires stops
    // at once, since a standby may take over while it is cut off; the one
    // with the 30 s Lease rides the same outage out.
    let mut short = env.operator("short", &["--lease-name", "short-lease"]);
    let deadline = Instant::now() + WAIT;
    while short.metric("imagelabel_leader", &[]).await != 1.0 {
        assert!(Instant::now() < deadline, "short-lease replica never led");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.cluster.kill_apiserver();
    let deadline = Instant::now() + Duration::from_secs(15);
    while short.is_running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stopped = !short.is_running();
    env.cluster.start_apiserver().await;
    assert!(
        stopped,
        "a leader that cannot confirm its Lease exits: {}",
        short.log_text()
    );
    assert!(short.log_text().contains("leadership lost"));
    assert!(op.is_running(), "the 30 s lease outlived the outage");
}

/// The three leaks of issue 12, on the real control plane: a set A writes
/// `system.chipType`; B declares the same key (Sync with the same value,
/// Observe with the same value, Observe with another value); A is deleted,
/// then B goes or drops the key. The key must end gone, never left with
/// nobody answerable for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_owner_hands_its_keys_over_and_leaves_nothing_behind() {
    let images = ["image-h1", "image-h1b", "image-h2", "image-h3"];
    let seed: Vec<(&str, &[(&str, &str)])> = images
        .iter()
        .map(|i| (*i, &[("system.origin", "by-hand")][..]))
        .collect();
    let env = Env::start("e2e", seed_with(&seed)).await;
    let _op = env.operator("op", &[]);
    let x = ("system.chipType", "GPU");
    for img in images {
        env.apply(
            &format!("a-{img}.yaml"),
            &image_set(&format!("a-{img}"), img, &[x], ""),
        );
    }
    for img in images {
        env.wait_image(&format!("a-{img}"), "Ready", WAIT, ready)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await; // B is strictly newer
    let b_sets = [
        ("image-h1", vec![x, ("system.framework", "XGBoost")], ""),
        ("image-h1b", vec![x, ("system.framework", "XGBoost")], ""),
        ("image-h2", vec![x], "  mode: Observe\n"),
        (
            "image-h3",
            vec![("system.chipType", "CPU")],
            "  mode: Observe\n",
        ),
    ];
    for (img, pairs, extra) in &b_sets {
        env.apply(
            &format!("b-{img}.yaml"),
            &image_set(&format!("b-{img}"), img, pairs, extra),
        );
    }
    // The Sync heirs own the key they never wrote: it was a set's.
    for img in ["image-h1", "image-h1b"] {
        env.wait_image(
            &format!("b-{img}"),
            "Ready owning the inherited key",
            WAIT,
            |s| ready(s) && s.owned_keys.iter().any(|k| k == "system.chipType"),
        )
        .await;
    }
    env.wait_image("b-image-h3", "KeyConflict", WAIT, |s| {
        s.conflicts.iter().any(|c| c.key == "system.chipType")
    })
    .await;

    let a_sets: Vec<String> = images.iter().map(|i| format!("a-{i}")).collect();
    let mut delete = vec!["delete", "-n", "e2e", "ils", "--timeout=60s"];
    delete.extend(a_sets.iter().map(String::as_str));
    assert_success("delete the owners", &env.cluster.kubectl(delete));
    // A Sync heir keeps the key; an Observe set, whatever its value, does not.
    let origin = ("system.origin", "by-hand");
    for img in ["image-h1", "image-h1b"] {
        assert_eq!(
            env.labels(&pai_image(img)),
            labels(&[x, ("system.framework", "XGBoost"), origin])
        );
    }
    for img in ["image-h2", "image-h3"] {
        assert_eq!(env.labels(&pai_image(img)), labels(&[origin]), "{img}");
    }

    // The heirs go (h1) or drop the key (h1b): it goes with them; the
    // label set by hand stays through all of it.
    env.apply(
        "b-image-h1b.yaml",
        &image_set(
            "b-image-h1b",
            "image-h1b",
            &[("system.framework", "XGBoost")],
            "",
        ),
    );
    assert_success(
        "delete the heirs",
        &env.cluster.kubectl([
            "delete",
            "-n",
            "e2e",
            "ils",
            "b-image-h1",
            "b-image-h2",
            "b-image-h3",
            "--timeout=60s",
        ]),
    );
    assert_eq!(env.labels(&pai_image("image-h1")), labels(&[origin]));
    env.wait_cloud("h1b drops chipType", WAIT, |s| {
        s.labels_of(&pai_image("image-h1b"))
            == Some(labels(&[("system.framework", "XGBoost"), origin]))
    })
    .await;
}

/// Settled sets of one PAI workspace: their drift checks read the workspace
/// whole (ListImages pages) instead of each image, write nothing to the API
/// server while nothing changes, and drift found there is still repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_checks_of_a_workspace_read_it_whole_and_write_nothing() {
    const N: usize = 12;
    let mut seed = SeedConfig::demo();
    seed.pai.images = (0..N)
        .map(|i| PaiImageSeed {
            id: format!("image-ws{i:02}"),
            name: format!("ws{i:02}"),
            workspace_id: Some("12345".into()),
            labels: labels(&[("system.base", "1")]),
        })
        .collect();
    const D: usize = 4;
    seed.pai.datasets = (0..D)
        .map(|i| imagelabel::sim::DatasetSeed {
            id: format!("d-ws{i}"),
            name: format!("data{i}"),
            workspace_id: Some("12345".into()),
            labels: labels(&[("owner", "seed")]),
            versions: vec![],
        })
        .collect();
    let env = Env::start("e2e", seed).await;
    let _op = env.operator("op", &[]);
    for i in 0..D {
        env.apply(
            &format!("d{i}.yaml"),
            &format!(
                "apiVersion: imagelabel.io/v1alpha1\nkind: DatasetLabelSet\nmetadata:\n  name: d{i}\nspec:\n  datasetId: d-ws{i}\n  workspaceId: \"12345\"\n  resyncInterval: 10s\n  labels:\n    team: t{i}\n"
            ),
        );
    }
    for i in 0..N {
        env.apply(
            &format!("w{i}.yaml"),
            &image_set(
                &format!("w{i}"),
                &format!("image-ws{i:02}"),
                &[("system.a", "1")],
                "  workspaceId: \"12345\"\n  resyncInterval: 10s\n",
            ),
        );
    }
    for i in 0..N {
        env.wait_image(&format!("w{i}"), "Ready", WAIT, ready).await;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let list = env.datasets().list(&Default::default()).await.unwrap();
        let settled = list
            .items
            .iter()
            .filter(|o| {
                o.status
                    .as_ref()
                    .is_some_and(|s| s.is_ready() && s.synced_generation == o.metadata.generation)
            })
            .count();
        if settled == D {
            break;
        }
        assert!(Instant::now() < deadline, "{settled}/{D} datasets Ready");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let versions = |list: Vec<(String, Option<String>)>| -> BTreeMap<String, Option<String>> {
        list.into_iter().collect()
    };
    let all = || async {
        let mut v: Vec<(String, Option<String>)> = env
            .images()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|o| (o.name_any(), o.metadata.resource_version.clone()))
            .collect();
        v.extend(
            env.datasets()
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|o| (o.name_any(), o.metadata.resource_version.clone())),
        );
        v
    };
    let before = versions(all().await);
    env.sim.sim().reset_counters();
    // Two to three checks per set (10 s ±20%).
    tokio::time::sleep(Duration::from_secs(25)).await;
    let c = env.sim.sim().counters();
    let after = versions(all().await);
    assert_eq!(before, after, "quiet drift checks write no status");
    assert_eq!(c.writes, 0, "nothing to repair");
    let per_image = c.api("ListImageLabels").total();
    let pages = c.api("ListImages").total();
    assert!(pages >= 1, "the workspace was read whole: {c:?}");
    assert!(
        per_image < N as u64 / 2 && pages <= 8,
        "{per_image} ListImageLabels and {pages} ListImages for ~{} checks",
        2 * N
    );
    let per_dataset = c.api("GetDataset").total();
    let dataset_pages = c.api("ListDatasets").total();
    assert!(
        dataset_pages >= 1 && per_dataset < D as u64 && dataset_pages <= 8,
        "{per_dataset} GetDataset and {dataset_pages} ListDatasets for ~{} checks",
        2 * D
    );

    // Drift on one image: the snapshot shows it, the set re-reads and repairs.
    let target = pai_image("image-ws03");
    env.sim
        .sim()
        .set_label_out_of_band(&target, "system.a", "changed")
        .unwrap();
    env.wait_cloud("drift repaired", Duration::from_secs(40), |s| {
        s.labels_of(&target)
            .and_then(|l| l.get("system.a").cloned())
            .as_deref()
            == Some("1")
    })
    .await;
}
