//! A soak on the real control plane: two operator replicas under SIGKILL,
//! API-server restarts and a faulty cloud, while sets are created, edited,
//! paused, switched between Sync and Observe and deleted, and people change
//! labels behind the operator's back. Shared by `tests/chaos_e2e.rs` (a
//! bounded run in the suite) and `benches/soak.rs` (a long one).
//!
//! What must hold: only one replica writes at any time (the simulator tells
//! writers apart by User-Agent); once the faults stop, every key a live Sync
//! set wins holds the winner's value; once every set is deleted, no key any
//! set declared is left on any object, and the labels people set are still
//! there (unless a `prune: All` set was on that object).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use imagelabel::api::{DatasetLabelSet, ImageLabelSet, Mode};
use imagelabel::provider::Target;
use imagelabel::sim::{DatasetSeed, FaultConfig, PaiImageSeed, SeedConfig};
use kube::api::ListParams;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::operator::{Env, Operator};

const IMAGE_KEYS: [&str; 4] = [
    "system.chipType",
    "system.framework",
    "system.pythonVersion",
    "system.supported.dsw",
];
const DATASET_KEYS: [&str; 3] = ["team", "stage", "tier"];
const VALUES: [&str; 2] = ["a", "b"];
/// Out-of-band changes are only seen at a resync: keep it short.
const REPLICA_FLAGS: &[&str] = &["--lease-duration=15s", "--resync-interval=15s"];
/// Set by a person on every object; no set declares it.
const BY_HAND: (&str, &str) = ("system.origin", "by-hand");
const DATASET_BY_HAND: (&str, &str) = ("owner", "by-hand");

/// What a run did, for the report.
#[derive(Debug, Default)]
pub struct Report {
    pub steps: usize,
    pub kills: usize,
    pub apiserver_restarts: usize,
    pub writes: u64,
    pub writers: BTreeSet<String>,
    pub converge: Duration,
    pub drain: Duration,
}

#[derive(Clone, Copy)]
struct Obj {
    index: usize,
    dataset: bool,
}

impl Obj {
    fn id(self) -> String {
        if self.dataset {
            format!("d-chaos{}", self.index)
        } else {
            format!("image-chaos{}", self.index)
        }
    }

    fn target(self) -> Target {
        if self.dataset {
            Target::PaiDataset {
                dataset_id: self.id(),
            }
        } else {
            Target::PaiImage {
                image_id: self.id(),
                workspace_id: None,
            }
        }
    }

    fn keys(self) -> &'static [&'static str] {
        if self.dataset {
            &DATASET_KEYS
        } else {
            &IMAGE_KEYS
        }
    }

    fn by_hand(self) -> (&'static str, &'static str) {
        if self.dataset {
            DATASET_BY_HAND
        } else {
            BY_HAND
        }
    }
}

fn objects(images: usize, datasets: usize) -> Vec<Obj> {
    (0..images)
        .map(|index| Obj {
            index,
            dataset: false,
        })
        .chain((0..datasets).map(|index| Obj {
            index,
            dataset: true,
        }))
        .collect()
}

pub fn seed(images: usize, datasets: usize) -> SeedConfig {
    let mut seed = SeedConfig::demo();
    let hand = |(k, v): (&str, &str)| [(k.to_string(), v.to_string())].into();
    for o in objects(images, datasets) {
        if o.dataset {
            seed.pai.datasets.push(DatasetSeed {
                id: o.id(),
                name: o.id(),
                workspace_id: None,
                labels: hand(o.by_hand()),
                versions: vec![],
            });
        } else {
            seed.pai.images.push(PaiImageSeed {
                id: o.id(),
                name: o.id(),
                workspace_id: None,
                labels: hand(o.by_hand()),
            });
        }
    }
    seed
}

struct SetSpec {
    object: Obj,
    labels: BTreeMap<String, String>,
    mode: &'static str,
    prune: &'static str,
    paused: bool,
    /// The API server took the last apply of this spec.
    applied: bool,
}

fn manifest(name: &str, s: &SetSpec) -> String {
    let paused = s.paused;
    let (kind, id_field) = if s.object.dataset {
        ("DatasetLabelSet", "datasetId")
    } else {
        ("ImageLabelSet", "imageId")
    };
    let mut out = format!(
        "apiVersion: imagelabel.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n  annotations:\n    imagelabel.io/paused: \"{paused}\"\nspec:\n  {id_field}: {}\n  mode: {}\n  prune: {}\n  labels:\n",
        s.object.id(),
        s.mode,
        s.prune
    );
    if s.labels.is_empty() {
        out = out.replace("  labels:\n", "  labels: {}\n");
    }
    for (k, v) in &s.labels {
        out.push_str(&format!("    {k}: {v:?}\n"));
    }
    out
}

fn random_labels(rng: &mut StdRng, o: Obj) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for k in o.keys() {
        if rng.random_bool(0.5) {
            out.insert(
                k.to_string(),
                VALUES[rng.random_range(0..VALUES.len())].to_string(),
            );
        }
    }
    out
}

/// Samples which replicas wrote in each interval; two at once is a breach
/// of leader election.
async fn watch_writers(env: &Env, stop: &AtomicBool) -> Result<BTreeSet<String>, String> {
    let mut last = env.sim.sim().counters().writes_by_agent;
    let mut writers = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = env.sim.sim().counters().writes_by_agent;
        let active: Vec<&String> = now
            .iter()
            .filter(|(agent, n)| last.get(*agent) != Some(*n))
            .map(|(agent, _)| agent)
            .collect();
        if active.len() > 1 {
            return Err(format!("two replicas wrote within 250 ms: {active:?}"));
        }
        writers.extend(active.into_iter().cloned());
        last = now;
    }
    Ok(writers)
}

/// Runs the soak for `duration` of chaos, then checks the end state.
pub async fn run(
    env: &Env,
    duration: Duration,
    seed: u64,
    images: usize,
    datasets: usize,
) -> Report {
    let stop = AtomicBool::new(false);
    let (mut report, writers) = tokio::join!(
        chaos(env, duration, seed, images, datasets, &stop),
        watch_writers(env, &stop)
    );
    report.writers = writers.unwrap_or_else(|e| panic!("{e}"));
    report
}

async fn chaos(
    env: &Env,
    duration: Duration,
    seed: u64,
    images: usize,
    datasets: usize,
    stop: &AtomicBool,
) -> Report {
    let mut rng = StdRng::seed_from_u64(seed);
    let objs = objects(images, datasets);
    let mut report = Report::default();
    let mut replicas: Vec<Operator> = vec![
        env.operator("replica-a", REPLICA_FLAGS),
        env.operator("replica-b", REPLICA_FLAGS),
    ];
    env.sim
        .sim()
        .set_faults(FaultConfig {
            server_error_rate: 0.1,
            throttle_rate: 0.05,
            drop_rate: 0.05,
            seed: Some(seed),
            ..FaultConfig::default()
        })
        .expect("faults");

    let mut live: BTreeMap<String, SetSpec> = BTreeMap::new();
    let mut story: Vec<String> = vec![];
    let mut pruned_all: BTreeSet<String> = BTreeSet::new();
    let started = Instant::now();
    let mut next_kill = Instant::now() + Duration::from_secs(rng.random_range(4..10));
    let restart_at = started + duration / 2;
    let mut restarted = false;
    let mut n = 0;
    while started.elapsed() < duration {
        report.steps += 1;
        let roll = rng.random_range(0..100);
        if roll < 30 || live.is_empty() {
            n += 1;
            let name = format!("c{n}");
            let object = objs[rng.random_range(0..objs.len())];
            let spec = SetSpec {
                object,
                labels: random_labels(&mut rng, object),
                mode: if rng.random_bool(0.85) {
                    "Sync"
                } else {
                    "Observe"
                },
                prune: if rng.random_bool(0.15) {
                    "All"
                } else {
                    "Owned"
                },
                paused: false,
                applied: false,
            };
            if spec.prune == "All" {
                pruned_all.insert(object.id());
            }
            let mut spec = spec;
            spec.applied = env
                .try_apply(&format!("{name}.yaml"), &manifest(&name, &spec))
                .is_ok();
            story.push(format!(
                "{:?} create {name} on {} {} {} {:?} applied={}",
                started.elapsed(),
                object.id(),
                spec.mode,
                spec.prune,
                spec.labels,
                spec.applied
            ));
            live.insert(name, spec);
        } else {
            let names: Vec<String> = live.keys().cloned().collect();
            let name = names[rng.random_range(0..names.len())].clone();
            let spec = live.get_mut(&name).expect("live");
            match roll {
                30..=54 => {
                    spec.labels = random_labels(&mut rng, spec.object);
                    spec.paused = false;
                }
                55..=61 => {
                    spec.mode = if spec.mode == "Sync" {
                        "Observe"
                    } else {
                        "Sync"
                    };
                    spec.paused = false;
                }
                62..=67 => spec.paused = true,
                // Deleting an Observe or paused set leaves its keys on
                // purpose; the end check could not tell that from a leak.
                68..=84 if spec.mode == "Sync" && !spec.paused && spec.applied => {
                    let kind = if spec.object.dataset { "dls" } else { "ils" };
                    let out =
                        env.cluster
                            .kubectl(["delete", "-n", &env.ns, kind, &name, "--wait=false"]);
                    story.push(format!(
                        "{:?} delete {name} on {}: {}",
                        started.elapsed(),
                        spec.object.id(),
                        out.status.success()
                    ));
                    if out.status.success() {
                        live.remove(&name);
                    }
                    continue;
                }
                68..=84 => continue,
                _ => {
                    // A person changes or removes a key the sets declare.
                    let o = spec.object;
                    let key = o.keys()[rng.random_range(0..o.keys().len())];
                    let sim = env.sim.sim();
                    story.push(format!(
                        "{:?} person touches {key} on {}",
                        started.elapsed(),
                        o.id()
                    ));
                    if rng.random_bool(0.5) {
                        let _ = sim.remove_label_out_of_band(&o.target(), key);
                    } else if sim
                        .labels_of(&o.target())
                        .is_some_and(|l| l.contains_key(key))
                    {
                        let _ = sim.set_label_out_of_band(&o.target(), key, "by-someone");
                    }
                    continue;
                }
            }
            spec.applied = env
                .try_apply(&format!("{name}.yaml"), &manifest(&name, spec))
                .is_ok();
            story.push(format!(
                "{:?} edit {name} on {}: {} paused={} {:?} applied={}",
                started.elapsed(),
                spec.object.id(),
                spec.mode,
                spec.paused,
                spec.labels,
                spec.applied
            ));
        }
        if Instant::now() >= next_kill {
            let i = rng.random_range(0..replicas.len());
            replicas[i].kill();
            report.kills += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let name = replicas[i].name.clone();
            replicas[i] = env.operator(&name, REPLICA_FLAGS);
            next_kill = Instant::now() + Duration::from_secs(rng.random_range(4..10));
        }
        if !restarted && Instant::now() >= restart_at {
            env.cluster.restart_apiserver().await;
            report.apiserver_restarts += 1;
            restarted = true;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
    }

    // The faults stop; every set goes back to Sync and unpaused, so the
    // end state is fully determined by the specs.
    env.sim
        .sim()
        .set_faults(FaultConfig::default())
        .expect("faults");
    for r in &mut replicas {
        if !r.is_running() {
            let name = r.name.clone();
            *r = env.operator(&name, REPLICA_FLAGS);
        }
    }
    for (name, spec) in live.iter_mut() {
        spec.mode = "Sync";
        spec.paused = false;
        apply_until_accepted(env, name, spec).await;
    }
    // People stopped too: resume keys held after fights with them.
    let stamp = format!("imagelabel.io/reconcile-requested-at=end-{seed}");
    for kind in ["ils", "dls"] {
        let out = env.cluster.kubectl([
            "annotate",
            "-n",
            &env.ns,
            kind,
            "--all",
            &stamp,
            "--overwrite",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let converging = Instant::now();
    wait_converged(env, &objs).await;
    report.converge = converging.elapsed();

    // Everything goes: nothing any set declared may stay behind.
    let draining = Instant::now();
    for kind in ["ils", "dls"] {
        let out = env
            .cluster
            .kubectl(["delete", "-n", &env.ns, kind, "--all", "--timeout=180s"]);
        assert!(
            out.status.success(),
            "deleting every {kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    report.drain = draining.elapsed();
    stop.store(true, Ordering::Relaxed);
    report.writes = env.sim.sim().counters().writes;
    for o in &objs {
        let labels = env.sim.sim().labels_of(&o.target()).expect("object");
        let left: Vec<&String> = labels
            .keys()
            .filter(|k| o.keys().contains(&k.as_str()))
            .collect();
        assert!(
            left.is_empty(),
            "{}: keys declared by sets outlived every set: {left:?} in {labels:?}; what happened there:\n{}",
            o.id(),
            story
                .iter()
                .filter(
                    |l| l.contains(&format!("{} ", o.id())) || l.contains(&format!("{}:", o.id()))
                )
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        let (k, v) = o.by_hand();
        if !pruned_all.contains(&o.id()) {
            assert_eq!(
                labels.get(k).map(String::as_str),
                Some(v),
                "{}: a label set by hand was touched without prune All: {labels:?}",
                o.id()
            );
        }
    }
    drop(replicas);
    report
}

async fn apply_until_accepted(env: &Env, name: &str, spec: &SetSpec) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while env
        .try_apply(&format!("{name}.yaml"), &manifest(name, spec))
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the API server never took {name}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every key a live Sync set wins holds the winner's value, on every object.
async fn wait_converged(env: &Env, objs: &[Obj]) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let problems = unconverged(env, objs).await;
        if problems.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not converged after the faults stopped: {problems:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A live Sync set's creation second, name and labels (the conflict order).
type Declared = (i64, String, BTreeMap<String, String>);

async fn unconverged(env: &Env, objs: &[Obj]) -> Vec<String> {
    let lp = ListParams::default();
    let mut declared: BTreeMap<String, Vec<Declared>> = BTreeMap::new();
    let Ok(images) = env.images().list(&lp).await else {
        return vec!["API server not answering".into()];
    };
    let Ok(datasets) = env.datasets().list(&lp).await else {
        return vec!["API server not answering".into()];
    };
    let created =
        |m: &kube::api::ObjectMeta| m.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second());
    let live = |m: &kube::api::ObjectMeta| m.deletion_timestamp.is_none();
    for s in images
        .items
        .iter()
        .filter(|s: &&ImageLabelSet| live(&s.metadata))
    {
        if s.spec.mode == Mode::Sync {
            declared.entry(s.spec.image_id.clone()).or_default().push((
                created(&s.metadata),
                s.metadata.name.clone().unwrap_or_default(),
                s.spec.labels.clone(),
            ));
        }
    }
    for s in datasets
        .items
        .iter()
        .filter(|s: &&DatasetLabelSet| live(&s.metadata))
    {
        if s.spec.mode == Mode::Sync {
            declared
                .entry(s.spec.dataset_id.clone())
                .or_default()
                .push((
                    created(&s.metadata),
                    s.metadata.name.clone().unwrap_or_default(),
                    s.spec.labels.clone(),
                ));
        }
    }
    let mut out = vec![];
    for o in objs {
        let labels = env.sim.sim().labels_of(&o.target()).unwrap_or_default();
        let mut sets = declared.remove(&o.id()).unwrap_or_default();
        sets.sort();
        for k in o.keys() {
            // The oldest declaring set wins (then the smaller name).
            if let Some((_, winner, l)) = sets.iter().find(|(_, _, l)| l.contains_key(*k))
                && labels.get(*k) != l.get(*k)
            {
                out.push(format!(
                    "{}: {k} is {:?}, {winner} wants {:?}",
                    o.id(),
                    labels.get(*k),
                    l.get(*k)
                ));
            }
        }
    }
    out
}
