//! Nothing left behind, under any history: seeded random histories of label
//! sets run through the engine against the simulator, checked against the
//! ownership rules of `src/plan` (module docs).
//!
//! A history creates (some with `adopt: true`), edits, pauses, switches and deletes sets (either
//! policy) on PAI images, a PAI dataset and an IMS image (10-tag cap); people
//! change labels out of band; the cloud fails calls (5xx, throttling, an
//! answer lost after the write was made); the operator is killed between any
//! two effects of a reconcile (status writes, cloud calls, the finalizer's
//! removal); its watch delivers late; it restarts. Then the faults stop, the
//! operator catches up, and the model says what must hold:
//!
//! - a key some set wrote is in the cloud only while a live Sync set wins it
//!   (and then a winner owns it) or a set keeps it there on purpose
//!   (`prune: None`, paused, Observe, ignored, fight-held, or stalled on the
//!   IMS cap); what an Orphan-like deletion left is the person's from then on;
//! - every key a live, active Sync set wins holds the winner's value;
//! - at every write: the writer owned the key first (write-ahead), removed
//!   only keys it owned or, with `prune: All`, a key nobody wrote; Observe
//!   and paused sets never wrote; no deletion hangs; a converged world makes
//!   no call that writes.
//!
//! The small controller below makes the same decisions in the same order as
//! `src/controller/reconcile.rs` (pause, inheritance, fight holds, stalls,
//! write-ahead, hand-over on deletion), from the same library functions.
//!
//! `IMAGELABEL_MODEL_HISTORIES` (default 4000) sets the budget and
//! `IMAGELABEL_MODEL_SEED` the first seed; a failure prints its seed and a
//! shrunk history, replayable with `IMAGELABEL_MODEL_SEED=<seed>
//! IMAGELABEL_MODEL_HISTORIES=1`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::executor::block_on;
use futures::future::BoxFuture;
use imagelabel::api::{
    DatasetLabelSetSpec, DeletionPolicy, ImageLabelSetSpec, Mode, Provider, Prune,
};
use imagelabel::controller::fights::FightDetector;
use imagelabel::engine::{
    Order, ResolvedSet, SyncError, SyncRequest, carry_out, check_limits, observe_and_plan,
    plan_for, resolve_dataset, resolve_image,
};
use imagelabel::plan::{self, Claim, OnDeletion, Role, SetId};
use imagelabel::provider::{
    CallLimits, CloudError, ErrorKind, LabelProvider, Labels, Target, WriteOutcome,
};
use imagelabel::sim::{DatasetSeed, DirectProvider, ImsImageSeed, PaiImageSeed, SeedConfig, Sim};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const REGION: &str = "cn-shanghai";
const VALUES: [&str; 2] = ["v1", "v2"];
const SETS: u8 = 7;
const FIGHT_THRESHOLD: usize = 3;

/// One cloud object of the model and the keys sets may declare on it.
struct ObjectDef {
    target: Target,
    dataset: bool,
    provider: Provider,
    keys: &'static [&'static str],
    /// Keys only people set (never declared); some are provider-reserved.
    foreign: &'static [&'static str],
}

fn objects() -> Vec<ObjectDef> {
    let image_keys: &'static [&'static str] = &[
        "system.chipType",
        "system.framework",
        "system.origin",
        "system.supported.dsw",
    ];
    vec![
        ObjectDef {
            target: Target::PaiImage {
                image_id: "image-m0".into(),
                workspace_id: None,
            },
            dataset: false,
            provider: Provider::Pai,
            keys: image_keys,
            foreign: &["system.byhand", "acs:owner"],
        },
        ObjectDef {
            target: Target::PaiImage {
                image_id: "image-m1".into(),
                workspace_id: None,
            },
            dataset: false,
            provider: Provider::Pai,
            keys: image_keys,
            foreign: &["system.byhand"],
        },
        ObjectDef {
            target: Target::PaiDataset {
                dataset_id: "d-m0".into(),
            },
            dataset: true,
            provider: Provider::Pai,
            keys: &["team", "stage", "owner", "tier"],
            foreign: &["cost", "aliyun.meta"],
        },
        ObjectDef {
            target: Target::ImsImage {
                project_id: "0123456789abcdef0123456789abcdef".into(),
                image_id: "00000000-0000-4000-8000-0000000000a0".into(),
            },
            dataset: false,
            provider: Provider::HuaweicloudIms,
            keys: &["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"],
            foreign: &["f0", "f1", "f2", "_sys_x"],
        },
    ]
}

fn sim_for(objects: &[ObjectDef]) -> Sim {
    let sim = Sim::from_seed(SeedConfig::default()).expect("empty seed");
    for o in objects {
        match &o.target {
            Target::PaiImage { image_id, .. } => sim.add_pai_image(PaiImageSeed {
                id: image_id.clone(),
                name: image_id.clone(),
                workspace_id: None,
                labels: Labels::new(),
            }),
            Target::PaiDataset { dataset_id } => sim.add_dataset(DatasetSeed {
                id: dataset_id.clone(),
                name: dataset_id.clone(),
                workspace_id: None,
                labels: Labels::new(),
                versions: vec![],
            }),
            Target::ImsImage {
                project_id,
                image_id,
            } => sim.add_ims_image(ImsImageSeed {
                id: image_id.clone(),
                project_id: project_id.clone(),
                tags: Labels::new(),
            }),
            Target::PaiDatasetVersion { .. } => unreachable!("not in the model"),
        }
    }
    sim
}

// ---------------------------------------------------------------- history

#[derive(Clone, Debug, PartialEq, Eq)]
struct Spec {
    object: usize,
    /// Key index → value index, into the object's keys and [`VALUES`].
    labels: BTreeMap<usize, usize>,
    prune: Prune,
    mode: Mode,
    policy: DeletionPolicy,
    /// A key index the set ignores (`ignoreKeys`).
    ignore: Option<usize>,
    /// `spec.adopt`: take over declared keys that are already right.
    adopt: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// 5xx: nothing changed.
    Server,
    /// Flow control: nothing changed.
    Throttled,
    /// The write was made, the answer never arrived.
    LostAnswer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    /// The n-th effect never happens.
    Before(u32),
    /// The n-th effect happens, then the process dies.
    After(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum OutOfBand {
    /// A new value for a key that is there.
    Change {
        key: usize,
        value: usize,
    },
    Remove {
        key: usize,
    },
    /// A declared-space key nobody owns, added by hand.
    Add {
        key: usize,
        value: usize,
    },
    Foreign {
        key: usize,
        value: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Create {
        set: u8,
        spec: Spec,
        same_second: bool,
    },
    EditLabels {
        set: u8,
        labels: BTreeMap<usize, usize>,
    },
    SetPrune {
        set: u8,
        prune: Prune,
    },
    SetMode {
        set: u8,
        mode: Mode,
    },
    SetPolicy {
        set: u8,
        policy: DeletionPolicy,
    },
    SetIgnore {
        set: u8,
        ignore: Option<usize>,
    },
    Pause {
        set: u8,
        paused: bool,
    },
    Delete {
        set: u8,
    },
    Reconcile {
        set: u8,
        kill: Option<Kill>,
        fault: Option<(u32, Fault)>,
    },
    Deliver {
        n: u8,
    },
    /// Someone changes a key the set declares, the set repairs it, again
    /// and again: fight detection's ground.
    Tamper {
        set: u8,
        key: usize,
        rounds: u8,
    },
    Restart,
    OutOfBand {
        object: usize,
        change: OutOfBand,
    },
}

fn gen_labels(rng: &mut StdRng, keys: usize) -> BTreeMap<usize, usize> {
    // The IMS pool is larger: fuller sets reach its 10-tag cap.
    let p = if keys > 4 { 0.6 } else { 0.45 };
    let mut out = BTreeMap::new();
    for k in 0..keys {
        if rng.random_bool(p) {
            out.insert(k, rng.random_range(0..VALUES.len()));
        }
    }
    out
}

fn gen_prune(rng: &mut StdRng) -> Prune {
    match rng.random_range(0..10) {
        0..=5 => Prune::Owned,
        6..=7 => Prune::All,
        _ => Prune::None,
    }
}

fn gen_mode(rng: &mut StdRng) -> Mode {
    if rng.random_bool(0.8) {
        Mode::Sync
    } else {
        Mode::Observe
    }
}

fn gen_policy(rng: &mut StdRng) -> DeletionPolicy {
    if rng.random_bool(0.8) {
        DeletionPolicy::Delete
    } else {
        DeletionPolicy::Orphan
    }
}

fn gen_history(seed: u64, objects: &[ObjectDef]) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let steps = rng.random_range(20..90);
    let mut out = Vec::with_capacity(steps);
    for _ in 0..steps {
        let set = rng.random_range(0..SETS);
        let ev = match rng.random_range(0..100) {
            0..=13 => {
                // The IMS image (last) twice as often: its cap needs company.
                let object = rng.random_range(0..=objects.len()).min(objects.len() - 1);
                let keys = objects[object].keys.len();
                Event::Create {
                    set,
                    spec: Spec {
                        object,
                        labels: gen_labels(&mut rng, keys),
                        prune: gen_prune(&mut rng),
                        mode: gen_mode(&mut rng),
                        policy: gen_policy(&mut rng),
                        ignore: rng.random_bool(0.15).then(|| rng.random_range(0..keys)),
                        adopt: rng.random_bool(0.25),
                    },
                    same_second: rng.random_bool(0.25),
                }
            }
            14..=21 => Event::EditLabels {
                set,
                // Key indices beyond an object's pool are dropped on use.
                labels: gen_labels(&mut rng, 8),
            },
            22..=23 => Event::SetPrune {
                set,
                prune: gen_prune(&mut rng),
            },
            24..=25 => Event::SetMode {
                set,
                mode: gen_mode(&mut rng),
            },
            26 => Event::SetPolicy {
                set,
                policy: gen_policy(&mut rng),
            },
            27 => Event::SetIgnore {
                set,
                ignore: rng.random_bool(0.5).then(|| rng.random_range(0..8)),
            },
            28..=30 => Event::Pause {
                set,
                paused: rng.random_bool(0.5),
            },
            31..=38 => Event::Delete { set },
            39..=72 => Event::Reconcile {
                set,
                kill: rng.random_bool(0.12).then(|| {
                    let n = rng.random_range(1..6);
                    if rng.random_bool(0.5) {
                        Kill::Before(n)
                    } else {
                        Kill::After(n)
                    }
                }),
                fault: rng.random_bool(0.15).then(|| {
                    let f = match rng.random_range(0..3) {
                        0 => Fault::Server,
                        1 => Fault::Throttled,
                        _ => Fault::LostAnswer,
                    };
                    (rng.random_range(1..6), f)
                }),
            },
            73..=84 => Event::Deliver {
                n: rng.random_range(1..6),
            },
            85..=86 => Event::Restart,
            87..=88 => Event::Tamper {
                set,
                key: rng.random_range(0..8),
                rounds: rng.random_range(2..5),
            },
            _ => {
                let object = rng.random_range(0..objects.len());
                let o = &objects[object];
                let value = rng.random_range(0..VALUES.len());
                let foreign_first = o.provider == Provider::HuaweicloudIms && rng.random_bool(0.5);
                let change = match if foreign_first {
                    3
                } else {
                    rng.random_range(0..4)
                } {
                    0 => OutOfBand::Change {
                        key: rng.random_range(0..o.keys.len()),
                        value,
                    },
                    1 => OutOfBand::Remove {
                        key: rng.random_range(0..o.keys.len()),
                    },
                    2 => OutOfBand::Add {
                        key: rng.random_range(0..o.keys.len()),
                        value,
                    },
                    _ => OutOfBand::Foreign {
                        key: rng.random_range(0..o.foreign.len()),
                        value,
                    },
                };
                Event::OutOfBand { object, change }
            }
        };
        out.push(ev);
    }
    out
}

// ------------------------------------------------------------ the cluster

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Status {
    owned: BTreeSet<String>,
    fights: BTreeSet<String>,
    observed_generation: Option<i64>,
    synced_generation: Option<i64>,
    /// The generation a terminal stall holds on (no cloud call until it changes).
    stalled_generation: Option<i64>,
}

#[derive(Clone, Debug)]
struct SetObj {
    name: String,
    created: i64,
    generation: i64,
    spec: Spec,
    paused: bool,
    status: Status,
    deleting: bool,
    finalizer: bool,
}

impl SetObj {
    fn id(&self) -> SetId {
        SetId::new(self.created, format!("ns/{}", self.name))
    }
}

/// Who is calling the cloud, as the reconcile sees the set.
#[derive(Clone)]
struct Acting {
    name: String,
    object: usize,
    spec: Spec,
    paused: bool,
    deleting: bool,
}

/// Kills and faults of the reconcile under way.
#[derive(Default)]
struct Effects {
    count: u32,
    kill: Option<Kill>,
    fault: Option<(u32, Fault)>,
    dead: bool,
}

enum Tick {
    Go,
    GoThenDie,
    Die,
    Fail(Fault),
}

impl Effects {
    fn tick(&mut self) -> Tick {
        if self.dead {
            return Tick::Die;
        }
        self.count += 1;
        match self.kill {
            Some(Kill::Before(n)) if n == self.count => {
                self.dead = true;
                return Tick::Die;
            }
            Some(Kill::After(n)) if n == self.count => {
                self.dead = true;
                return Tick::GoThenDie;
            }
            _ => {}
        }
        match self.fault {
            Some((n, f)) if n == self.count => Tick::Fail(f),
            _ => Tick::Go,
        }
    }
}

/// Everything the "API server", the operator's memory and the cloud's
/// provenance hold. One lock: the engine runs to completion between effects.
struct State {
    persisted: BTreeMap<String, SetObj>,
    /// What the operator's watch has delivered.
    view: BTreeMap<String, SetObj>,
    pending: VecDeque<(String, Option<SetObj>)>,
    /// The claim index: set name → object and claim.
    index: BTreeMap<String, (usize, Claim)>,
    /// Keys whose current incarnation a set wrote.
    written: BTreeSet<(usize, String)>,
    acting: Option<Acting>,
    effects: Effects,
    clock: i64,
    cloud_writes: u64,
    /// How often each rarely reached path ran, so the generator can be
    /// held to reaching them.
    seen: BTreeMap<&'static str, u64>,
    violations: Vec<String>,
}

struct World {
    objects: Vec<ObjectDef>,
    sim: Sim,
    cloud: DirectProvider,
    fights: Mutex<FightDetector>,
    t0: Instant,
    minutes: Mutex<u64>,
    /// `Ctx::written_owned`: the ownership this process last wrote, by uid.
    memo: Mutex<BTreeMap<(String, i64), BTreeSet<String>>>,
    resolved: Mutex<std::collections::HashMap<String, ResolvedSet>>,
    state: Mutex<State>,
}

impl World {
    fn new() -> World {
        let objects = objects();
        let sim = sim_for(&objects);
        World {
            cloud: DirectProvider::new(sim.clone()),
            sim,
            objects,
            fights: Mutex::new(new_fights()),
            t0: Instant::now(),
            minutes: Mutex::new(0),
            memo: Mutex::new(BTreeMap::new()),
            resolved: Mutex::default(),
            state: Mutex::new(State {
                persisted: BTreeMap::new(),
                view: BTreeMap::new(),
                pending: VecDeque::new(),
                index: BTreeMap::new(),
                written: BTreeSet::new(),
                acting: None,
                effects: Effects::default(),
                clock: 1_000,
                cloud_writes: 0,
                seen: BTreeMap::new(),
                violations: vec![],
            }),
        }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_secs(60 * *self.minutes.lock().unwrap())
    }

    fn labels_of(&self, object: usize) -> Labels {
        self.sim
            .labels_of(&self.objects[object].target)
            .expect("model object exists")
    }

    fn resolve(&self, spec: &Spec) -> ResolvedSet {
        // Compiling ignore patterns dominates a history's time otherwise.
        let key = format!("{spec:?}");
        if let Some(r) = self.resolved.lock().unwrap().get(&key) {
            return r.clone();
        }
        let r = self.resolve_uncached(spec);
        self.resolved.lock().unwrap().insert(key, r.clone());
        r
    }

    fn resolve_uncached(&self, spec: &Spec) -> ResolvedSet {
        let o = &self.objects[spec.object];
        let labels: BTreeMap<String, String> = spec
            .labels
            .iter()
            .filter(|(k, _)| **k < o.keys.len())
            .map(|(k, v)| (o.keys[*k].to_string(), VALUES[*v].to_string()))
            .collect();
        let ignore_keys: Vec<String> = spec
            .ignore
            .filter(|k| *k < o.keys.len())
            .map(|k| o.keys[k].to_string())
            .into_iter()
            .collect();
        let resolved = if o.dataset {
            let Target::PaiDataset { dataset_id } = &o.target else {
                unreachable!()
            };
            resolve_dataset(
                &DatasetLabelSetSpec {
                    dataset_id: dataset_id.clone(),
                    labels,
                    prune: spec.prune,
                    mode: spec.mode,
                    deletion_policy: spec.policy,
                    ignore_keys,
                    adopt: spec.adopt,
                    ..Default::default()
                },
                REGION,
            )
        } else {
            let (image_id, project_id) = match &o.target {
                Target::PaiImage { image_id, .. } => (image_id.clone(), None),
                Target::ImsImage {
                    project_id,
                    image_id,
                } => (image_id.clone(), Some(project_id.clone())),
                _ => unreachable!(),
            };
            resolve_image(
                &ImageLabelSetSpec {
                    provider: o.provider,
                    image_id,
                    project_id,
                    labels,
                    prune: spec.prune,
                    mode: spec.mode,
                    deletion_policy: spec.policy,
                    ignore_keys,
                    adopt: spec.adopt,
                    ..Default::default()
                },
                REGION,
            )
        };
        resolved.unwrap_or_else(|e| panic!("the model made an invalid spec {spec:?}: {e:?}"))
    }

    fn owned_of(&self, obj: &SetObj) -> BTreeSet<String> {
        let memo = self.memo.lock().unwrap();
        memo.get(&(obj.name.clone(), obj.created))
            .cloned()
            .unwrap_or_else(|| obj.status.owned.clone())
    }

    fn claim_of(&self, obj: &SetObj) -> Claim {
        let set = self.resolve(&obj.spec);
        Claim {
            set: obj.id(),
            labels: plan::managed(&set.desired, &set.protected),
            owned: self.owned_of(obj),
            role: Role::of(obj.spec.mode, obj.deleting),
        }
    }

    fn index_claim(&self, st: &mut State, obj: &SetObj) {
        let claim = self.claim_of(obj);
        st.index.insert(obj.name.clone(), (obj.spec.object, claim));
    }

    fn claims(&self, name: &str, object: usize) -> Vec<Claim> {
        self.st()
            .index
            .iter()
            .filter(|(n, (o, _))| n.as_str() != name && *o == object)
            .map(|(_, (_, c))| c.clone())
            .collect()
    }

    /// Applies one watch event to the operator's caches, as
    /// `claims_from_watch` and the reflector do.
    fn deliver(&self, n: usize) {
        let mut st = self.st();
        for _ in 0..n {
            let Some((name, obj)) = st.pending.pop_front() else {
                break;
            };
            match obj {
                Some(o) => {
                    self.index_claim(&mut st, &o);
                    st.view.insert(name, o);
                }
                None => {
                    st.index.remove(&name);
                    if let Some(gone) = st.view.remove(&name) {
                        self.memo.lock().unwrap().remove(&(name, gone.created));
                    }
                }
            }
        }
    }

    fn publish(st: &mut State, name: &str) {
        let obj = st.persisted.get(name).cloned();
        st.pending.push_back((name.to_string(), obj));
    }

    /// A status write (server-side apply of the whole status): an effect.
    fn write_status(&self, name: &str, generation: i64, status: &Status) -> Result<(), ()> {
        let mut st = self.st();
        let tick = st.effects.tick();
        // An API error (5xx, throttling) changes nothing; a lost answer
        // changed it; a kill may have come before or after.
        if matches!(
            tick,
            Tick::Die | Tick::Fail(Fault::Server | Fault::Throttled)
        ) {
            if matches!(tick, Tick::Fail(_)) {
                *st.seen.entry("status write refused").or_default() += 1;
            }
            return Err(());
        }
        let Some(before) = st.persisted.get(name).map(|p| p.status.owned.clone()) else {
            return Err(());
        };
        // Adoption: the person said the key is the set's; from now on it
        // counts as written by a set (src/plan rule 6), by the spec the
        // reconcile acted on.
        if let Some(a) = st
            .acting
            .clone()
            .filter(|a| a.name == name && a.spec.adopt && a.spec.mode == Mode::Sync && !a.deleting)
        {
            let object = a.object;
            let present = self.labels_of(object);
            let new: Vec<String> = status
                .owned
                .difference(&before)
                .filter(|k| present.contains_key(*k))
                .cloned()
                .collect();
            for k in new {
                if st.written.insert((object, k)) {
                    *st.seen.entry("adopted a key set by hand").or_default() += 1;
                }
            }
        }
        let Some(p) = st.persisted.get_mut(name) else {
            return Err(());
        };
        p.status = status.clone();
        p.status.observed_generation = Some(generation);
        let uid = (name.to_string(), p.created);
        Self::publish(&mut st, name);
        match tick {
            Tick::Go => {
                // `Ctx::written_owned`: only what the API server took.
                self.memo.lock().unwrap().insert(uid, status.owned.clone());
                Ok(())
            }
            _ => Err(()),
        }
    }

    fn saw(&self, what: &'static str) {
        *self.st().seen.entry(what).or_default() += 1;
    }

    fn is_dead(&self) -> bool {
        self.st().effects.dead
    }

    /// Ends a deletion: the finalizer goes, and the object with it.
    fn release(&self, obj: &SetObj, set: &ResolvedSet, leave: bool) -> Result<(), ()> {
        let mut st = self.st();
        if !matches!(st.effects.tick(), Tick::Go | Tick::GoThenDie) {
            return Err(());
        }
        st.persisted.remove(&obj.name);
        st.index.remove(&obj.name);
        self.memo
            .lock()
            .unwrap()
            .remove(&(obj.name.clone(), obj.created));
        Self::publish(&mut st, &obj.name);
        self.fights.lock().unwrap().reset(&obj.name);
        // What is left by intent (Orphan-like, or ignored) and owned by no
        // other set is the person's from now on.
        let present = self.labels_of(obj.spec.object);
        for k in &obj.status.owned {
            let intent = leave || set.protected.matches(k);
            let owned_elsewhere = st
                .persisted
                .values()
                .any(|o| o.spec.object == obj.spec.object && o.status.owned.contains(k));
            if intent && present.contains_key(k) && !owned_elsewhere {
                st.written.remove(&(obj.spec.object, k.clone()));
            }
        }
        Ok(())
    }
}

/// The simulator's futures are ready at once: no executor inside the engine's.
fn ready<T>(f: BoxFuture<'_, T>) -> T {
    f.now_or_never().expect("the direct provider never waits")
}

/// Each set's (name, status, deleting, finalizer), and each object's labels.
type Snapshot = (Vec<(String, Status, bool, bool)>, Vec<Labels>);

fn new_fights() -> FightDetector {
    FightDetector::new(FIGHT_THRESHOLD, Duration::from_secs(3600))
}

// --------------------------------------------------------------- the cloud

/// The simulator behind the reconcile under way: faults, kills, and the
/// per-write checks of the rules.
struct Cloud<'w> {
    world: &'w World,
}

impl Cloud<'_> {
    fn check_writer(&self, st: &mut State, what: &str) -> Option<Acting> {
        let acting = st.acting.clone().expect("a cloud call outside a reconcile");
        if acting.paused || acting.spec.mode == Mode::Observe {
            st.violations.push(format!(
                "{} ({:?}, paused {}) made a {what} call",
                acting.name, acting.spec.mode, acting.paused
            ));
        }
        Some(acting)
    }

    fn write(
        &self,
        target: &Target,
        what: &'static str,
        keys: Vec<(String, Option<String>)>,
    ) -> Result<WriteOutcome, CloudError> {
        let w = self.world;
        let mut st = w.st();
        let tick = st.effects.tick();
        let acting = self.check_writer(&mut st, what).expect("acting");
        let apply = match tick {
            Tick::Die | Tick::Fail(Fault::Server) | Tick::Fail(Fault::Throttled) => false,
            Tick::Fail(Fault::LostAnswer) => {
                *st.seen.entry("answer lost after the write").or_default() += 1;
                true
            }
            Tick::Go | Tick::GoThenDie => true,
        };
        if apply {
            let owned = st
                .persisted
                .get(&acting.name)
                .map(|o| o.status.owned.clone())
                .unwrap_or_default();
            let set = w.resolve(&acting.spec);
            for (k, v) in &keys {
                let written = st.written.contains(&(acting.object, k.clone()));
                match v {
                    Some(_) if !owned.contains(k) => st.violations.push(format!(
                        "{} wrote {k} without owning it first (owned {owned:?})",
                        acting.name
                    )),
                    None if !owned.contains(k)
                        && (set.policy.prune != Prune::All || acting.deleting) =>
                    {
                        st.violations.push(format!(
                            "{} removed {k}, which it does not own, without prune All",
                            acting.name
                        ))
                    }
                    None if !written && !owned.contains(k) && set.policy.prune != Prune::All => st
                        .violations
                        .push(format!("{} removed {k}, set by hand", acting.name)),
                    _ => {}
                }
                match v {
                    Some(_) => st.written.insert((acting.object, k.clone())),
                    None => st.written.remove(&(acting.object, k.clone())),
                };
            }
            st.cloud_writes += 1;
            drop(st);
            let adds: Vec<(String, String)> = keys
                .iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                .collect();
            let removes: Vec<String> = keys
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            let done = if adds.is_empty() {
                ready(w.cloud.remove(target, &removes))
            } else {
                ready(w.cloud.add(target, &adds))
            };
            if let Err(e) = done {
                // The cloud refused: undo the provenance guess.
                let mut st = w.st();
                for (k, v) in &keys {
                    if v.is_some() && !w.labels_of(acting.object).contains_key(k) {
                        st.written.remove(&(acting.object, k.clone()));
                    }
                }
                return Err(e);
            }
        }
        match tick {
            Tick::Go => Ok(WriteOutcome::default()),
            Tick::Fail(Fault::Server) => {
                Err(CloudError::new(ErrorKind::Server, what, "injected 5xx"))
            }
            Tick::Fail(Fault::Throttled) => Err(CloudError::new(
                ErrorKind::Throttled,
                what,
                "injected throttling",
            )),
            _ => Err(CloudError::new(ErrorKind::Network, what, "connection lost")),
        }
    }
}

impl LabelProvider for Cloud<'_> {
    fn limits(&self, target: &Target) -> CallLimits {
        self.world.cloud.limits(target)
    }

    fn observe<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Labels, CloudError>> {
        let out = {
            let mut st = self.world.st();
            let tick = st.effects.tick();
            if let Some(a) = st.acting.clone()
                && a.paused
            {
                st.violations
                    .push(format!("{} is paused but read the cloud", a.name));
            }
            drop(st);
            match tick {
                Tick::Go => ready(self.world.cloud.observe(target)),
                Tick::Fail(Fault::Throttled) => Err(CloudError::new(
                    ErrorKind::Throttled,
                    "Observe",
                    "injected throttling",
                )),
                Tick::Fail(_) => Err(CloudError::new(
                    ErrorKind::Server,
                    "Observe",
                    "injected 5xx",
                )),
                Tick::Die | Tick::GoThenDie => {
                    Err(CloudError::new(ErrorKind::Network, "Observe", "killed"))
                }
            }
        };
        Box::pin(async move { out })
    }

    fn add<'a>(
        &'a self,
        target: &'a Target,
        labels: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        let keys = labels
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        let out = self.write(target, "add", keys);
        Box::pin(async move { out })
    }

    fn remove<'a>(
        &'a self,
        target: &'a Target,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<WriteOutcome, CloudError>> {
        let keys = keys.iter().map(|k| (k.clone(), None)).collect();
        let out = self.write(target, "remove", keys);
        Box::pin(async move { out })
    }
}

// ---------------------------------------------- the controller, in small

impl World {
    fn reconcile(&self, name: &str, kill: Option<Kill>, fault: Option<(u32, Fault)>) {
        let obj = {
            let mut st = self.st();
            let (Some(mut obj), true) =
                (st.view.get(name).cloned(), st.persisted.contains_key(name))
            else {
                return;
            };
            if st
                .persisted
                .get(name)
                .is_some_and(|p| p.status != obj.status)
            {
                *st.seen.entry("reconciled a stale object").or_default() += 1;
            }
            obj.status.owned = self.owned_of(&obj);
            st.effects = Effects {
                kill,
                fault,
                ..Default::default()
            };
            st.acting = Some(Acting {
                name: name.to_string(),
                object: obj.spec.object,
                spec: obj.spec.clone(),
                paused: obj.paused,
                deleting: obj.deleting,
            });
            obj
        };
        if !obj.finalizer && !obj.deleting {
            // kube's finalizer helper adds it first and returns.
            let mut st = self.st();
            if matches!(st.effects.tick(), Tick::Go | Tick::GoThenDie) {
                st.persisted.get_mut(name).unwrap().finalizer = true;
                Self::publish(&mut st, name);
            }
        } else if obj.deleting {
            let _ = self.cleanup(&obj);
        } else {
            let _ = self.apply(&obj);
        }
        let killed = {
            let mut st = self.st();
            st.acting = None;
            st.effects.dead
        };
        if killed {
            // A new process: no memory, a fresh list.
            self.saw("killed mid-reconcile");
            self.restart();
        }
    }

    fn restart(&self) {
        *self.fights.lock().unwrap() = new_fights();
        self.memo.lock().unwrap().clear();
        let mut st = self.st();
        st.pending.clear();
        st.view = st.persisted.clone();
        st.index.clear();
        let all: Vec<SetObj> = st.view.values().cloned().collect();
        for o in &all {
            self.index_claim(&mut st, o);
        }
    }

    /// `inherit()` of the controller.
    fn inherit(&self, obj: &SetObj, set: &ResolvedSet, status: &mut Status) -> bool {
        if obj.spec.mode != Mode::Sync {
            return false;
        }
        let claims = self.claims(&obj.name, obj.spec.object);
        let new = plan::inherited(
            &obj.id(),
            &set.desired,
            &set.protected,
            &status.owned,
            &claims,
        );
        status.owned.extend(new.iter().cloned());
        if !new.is_empty() {
            self.saw("inherited without a write");
        }
        !new.is_empty()
    }

    fn apply(&self, obj: &SetObj) -> Result<(), ()> {
        let set = self.resolve(&obj.spec);
        let g = obj.generation;
        let mut status = obj.status.clone();
        if obj.paused {
            self.saw("paused set reconciled");
            self.inherit(obj, &set, &mut status);
            return self.write_status(&obj.name, g, &status);
        }
        {
            let mut st = self.st();
            self.index_claim(&mut st, obj);
        }
        if self.inherit(obj, &set, &mut status) {
            self.write_status(&obj.name, g, &status)?;
        }
        if status.observed_generation != Some(g) {
            self.fights.lock().unwrap().reset(&obj.name);
            status.fights.clear();
        }
        if status.stalled_generation == Some(g) {
            return Ok(());
        }
        let id = obj.id();
        let owned = status.owned.clone();
        let held = status.fights.clone();
        let claims = self.claims(&obj.name, obj.spec.object);
        let cloud = Cloud { world: self };
        let req = SyncRequest {
            set: &set,
            id: &id,
            owned: &owned,
            claims: &claims,
            held: &held,
            deleting: None,
            dry_run: false,
        };
        let mut report = match block_on(observe_and_plan(&cloud, &req)) {
            Ok(r) => r,
            Err((_, e)) => return self.failed(obj, status, e),
        };
        if self.is_dead() {
            return Err(());
        }
        let limits = cloud.limits(&set.target);
        if check_limits(&report.observed, &report.plan, &limits, set.provider)
            == Ok(Order::RemovesFirst)
        {
            self.saw("removes first under the IMS cap");
        }
        if obj.spec.mode == Mode::Observe && !report.plan.drift.is_empty() {
            self.saw("observe set reports drift");
        }
        let was_synced = status.synced_generation == Some(g);
        let drifted: Vec<String> = if was_synced && obj.spec.mode == Mode::Sync {
            report.plan.changed_keys()
        } else {
            vec![]
        };
        let now = self.now();
        let mut more_held = held.clone();
        let mut fought = false;
        for k in &drifted {
            if self.fights.lock().unwrap().is_fighting(&obj.name, k, now) {
                more_held.insert(k.clone());
                status.fights.insert(k.clone());
                fought = true;
                self.saw("fight detected");
            }
        }
        if fought {
            let req = SyncRequest {
                held: &more_held,
                ..req
            };
            report.plan = plan_for(&req, &report.observed);
        }
        let status = RefCell::new(status);
        let outcome = block_on(carry_out(&cloud, &set, report, |ahead| {
            let mut s = status.borrow_mut();
            s.owned = ahead;
            let r = self
                .write_status(&obj.name, g, &s)
                .map_err(|_| "killed".to_string());
            async move { r }
        }));
        let mut status = status.into_inner();
        if self.is_dead() {
            return Err(());
        }
        let report = match outcome {
            Ok(r) => r,
            Err((r, e)) => {
                status.owned = r.owned.clone();
                return self.failed(obj, status, e);
            }
        };
        for k in drifted
            .iter()
            .filter(|k| report.plan.add.contains_key(*k) || report.plan.remove.contains(*k))
        {
            self.fights.lock().unwrap().record(&obj.name, k, now);
        }
        status.owned = report.owned.clone();
        status.synced_generation = Some(g);
        status.stalled_generation = None;
        self.write_status(&obj.name, g, &status)
    }

    fn failed(&self, obj: &SetObj, mut status: Status, e: SyncError) -> Result<(), ()> {
        if self.is_dead() {
            return Err(());
        }
        match &e {
            SyncError::Ownership(_) => return Err(()),
            SyncError::Limit(_) => {
                self.saw("IMS cap stall");
                status.stalled_generation = Some(obj.generation)
            }
            SyncError::Observe(c) | SyncError::Write(c) if !c.kind.is_retryable() => {
                status.stalled_generation = Some(obj.generation)
            }
            _ => {}
        }
        self.write_status(&obj.name, obj.generation, &status)
    }

    fn cleanup(&self, obj: &SetObj) -> Result<(), ()> {
        {
            let mut st = self.st();
            self.index_claim(&mut st, obj);
        }
        self.fights.lock().unwrap().reset(&obj.name);
        let set = self.resolve(&obj.spec);
        if plan::on_deletion(obj.spec.policy, obj.spec.mode, obj.paused) == OnDeletion::Leave
            || obj.status.owned.is_empty()
        {
            if !obj.status.owned.is_empty() {
                self.saw("owned keys left on purpose");
            }
            return self.release(obj, &set, true);
        }
        let id = obj.id();
        let claims = self.claims(&obj.name, obj.spec.object);
        let held = BTreeSet::new();
        let cloud = Cloud { world: self };
        let req = SyncRequest {
            set: &set,
            id: &id,
            owned: &obj.status.owned,
            claims: &claims,
            held: &held,
            deleting: Some(DeletionPolicy::Delete),
            dry_run: false,
        };
        let report = block_on(observe_and_plan(&cloud, &req)).map_err(|_| ())?;
        let report =
            block_on(carry_out(&cloud, &set, report, |_| async { Ok(()) })).map_err(|_| ())?;
        if self.is_dead() {
            return Err(());
        }
        if !report.plan.pending_handover.is_empty() {
            self.saw("deletion waits for a hand-over");
            // The controller writes a HandingOver condition and waits.
            return self.write_status(&obj.name, obj.generation, &obj.status);
        }
        self.release(obj, &set, false)
    }
}

// ----------------------------------------------------------- the history

impl World {
    fn edit(&self, set: u8, f: impl FnOnce(&mut SetObj) -> bool) {
        let mut st = self.st();
        let name = format!("s{set}");
        let Some(obj) = st.persisted.get_mut(&name) else {
            return;
        };
        if f(obj) {
            obj.generation += 1;
        }
        Self::publish(&mut st, &name);
    }

    fn run(&self, ev: &Event) {
        *self.minutes.lock().unwrap() += 1;
        match ev {
            Event::Create {
                set,
                spec,
                same_second,
            } => {
                let mut st = self.st();
                let name = format!("s{set}");
                if st.persisted.contains_key(&name) {
                    return;
                }
                st.clock += i64::from(!same_second);
                let obj = SetObj {
                    name: name.clone(),
                    created: st.clock,
                    generation: 1,
                    spec: spec.clone(),
                    paused: false,
                    status: Status::default(),
                    deleting: false,
                    finalizer: false,
                };
                st.persisted.insert(name.clone(), obj);
                Self::publish(&mut st, &name);
            }
            Event::EditLabels { set, labels } => self.edit(*set, |o| {
                let keys = self.objects[o.spec.object].keys.len();
                o.spec.labels = labels
                    .iter()
                    .filter(|(k, _)| **k < keys)
                    .map(|(k, v)| (*k, *v))
                    .collect();
                true
            }),
            Event::SetPrune { set, prune } => self.edit(*set, |o| {
                o.spec.prune = *prune;
                true
            }),
            Event::SetMode { set, mode } => self.edit(*set, |o| {
                o.spec.mode = *mode;
                true
            }),
            Event::SetPolicy { set, policy } => self.edit(*set, |o| {
                o.spec.policy = *policy;
                true
            }),
            Event::SetIgnore { set, ignore } => self.edit(*set, |o| {
                o.spec.ignore = *ignore;
                true
            }),
            Event::Pause { set, paused } => self.edit(*set, |o| {
                o.paused = *paused;
                false
            }),
            Event::Delete { set } => {
                let mut st = self.st();
                let name = format!("s{set}");
                let Some(obj) = st.persisted.get_mut(&name) else {
                    return;
                };
                if obj.finalizer {
                    obj.deleting = true;
                } else {
                    st.persisted.remove(&name);
                }
                Self::publish(&mut st, &name);
            }
            Event::Reconcile { set, kill, fault } => {
                self.reconcile(&format!("s{set}"), *kill, *fault)
            }
            Event::Deliver { n } => self.deliver(usize::from(*n)),
            Event::Tamper { set, key, rounds } => {
                let name = format!("s{set}");
                let Some(object) = self.st().persisted.get(&name).map(|o| o.spec.object) else {
                    return;
                };
                let o = &self.objects[object];
                let Some(k) = o.keys.get(*key) else {
                    return;
                };
                for _ in 0..*rounds {
                    *self.minutes.lock().unwrap() += 1;
                    if self.labels_of(object).contains_key(*k) {
                        self.sim
                            .set_label_out_of_band(&o.target, k, "tampered")
                            .unwrap();
                    }
                    self.deliver(usize::MAX);
                    self.reconcile(&name, None, None);
                }
            }
            Event::Restart => self.restart(),
            Event::OutOfBand { object, change } => self.out_of_band(*object, change),
        }
    }

    fn out_of_band(&self, object: usize, change: &OutOfBand) {
        let o = &self.objects[object];
        let present = self.labels_of(object);
        let mut st = self.st();
        let owned_by_someone = |st: &State, k: &str| {
            st.persisted
                .values()
                .any(|s| s.spec.object == object && s.status.owned.contains(k))
        };
        match change {
            OutOfBand::Change { key, value } => {
                let k = o.keys[*key];
                if present.contains_key(k) {
                    self.sim
                        .set_label_out_of_band(&o.target, k, VALUES[*value])
                        .unwrap();
                }
            }
            OutOfBand::Remove { key } => {
                let k = o.keys[*key];
                self.sim.remove_label_out_of_band(&o.target, k).unwrap();
                st.written.remove(&(object, k.to_string()));
            }
            OutOfBand::Add { key, value } => {
                // A key an owner may still think is its own would make the
                // owner's later removal ambiguous: people only add keys that
                // nobody owns (see the module docs of src/plan).
                let k = o.keys[*key];
                let cap = o.provider == Provider::HuaweicloudIms && present.len() >= 10;
                if !present.contains_key(k) && !owned_by_someone(&st, k) && !cap {
                    self.sim
                        .set_label_out_of_band(&o.target, k, VALUES[*value])
                        .unwrap();
                    st.written.remove(&(object, k.to_string()));
                }
            }
            OutOfBand::Foreign { key, value } => {
                let k = o.foreign[*key];
                let cap = o.provider == Provider::HuaweicloudIms && present.len() >= 10;
                if !present.contains_key(k) && !cap {
                    self.sim
                        .set_label_out_of_band(&o.target, k, VALUES[*value])
                        .unwrap();
                }
            }
        }
    }

    /// Faults stop, the watch catches up, every set is reconciled until a
    /// whole round changes nothing.
    fn quiesce(&self) -> Result<(), String> {
        for round in 0..12 {
            self.deliver(usize::MAX);
            let before = self.snapshot();
            let writes = self.st().cloud_writes;
            let names: Vec<String> = self.st().persisted.keys().cloned().collect();
            for name in &names {
                // A reconcile triggered by the last write sees it.
                self.reconcile(name, None, None);
                self.deliver(usize::MAX);
            }
            if self.snapshot() == before && self.st().cloud_writes == writes {
                return Ok(());
            }
            let _ = round;
        }
        Err("no fixpoint after 12 rounds of reconciles without faults".into())
    }

    fn snapshot(&self) -> Snapshot {
        let st = self.st();
        let sets = st
            .persisted
            .values()
            .map(|o| (o.name.clone(), o.status.clone(), o.deleting, o.finalizer))
            .collect();
        drop(st);
        (
            sets,
            (0..self.objects.len()).map(|i| self.labels_of(i)).collect(),
        )
    }

    /// The model's verdict on the converged world.
    fn check_end(&self) -> Vec<String> {
        let mut out = self.st().violations.clone();
        let st = self.st();
        let live: Vec<&SetObj> = st.persisted.values().collect();
        for o in &live {
            if o.deleting {
                out.push(format!("{} is still being deleted", o.name));
            }
        }
        for (i, def) in self.objects.iter().enumerate() {
            let cloud = self.labels_of(i);
            let here: Vec<(&SetObj, ResolvedSet)> = live
                .iter()
                .filter(|o| o.spec.object == i && !o.deleting)
                .map(|o| (*o, self.resolve(&o.spec)))
                .collect();
            let stalled = |o: &SetObj| o.status.stalled_generation == Some(o.generation);
            // Contenders and the winning value of each declared key.
            let mut keys: BTreeSet<&str> = def.keys.iter().copied().collect();
            keys.extend(cloud.keys().map(String::as_str));
            for k in keys {
                let contenders: Vec<&(&SetObj, ResolvedSet)> = here
                    .iter()
                    .filter(|(o, s)| {
                        o.spec.mode == Mode::Sync
                            && s.desired.contains_key(k)
                            && !s.protected.matches(k)
                    })
                    .collect();
                let winner = contenders.iter().min_by_key(|(o, _)| o.id());
                let written = st.written.contains(&(i, k.to_string()));
                if let Some((w, ws)) = winner {
                    let value = &ws.desired[k];
                    let winners: Vec<&&(&SetObj, ResolvedSet)> = contenders
                        .iter()
                        .filter(|(_, s)| s.desired.get(k) == Some(value))
                        .collect();
                    if written
                        && cloud.contains_key(k)
                        && !winners.iter().any(|(o, _)| o.status.owned.contains(k))
                    {
                        out.push(format!(
                            "{}: {k} (written by a set) is won by {} but owned by no winner",
                            def.target, w.name
                        ));
                    }
                    let active = winners
                        .iter()
                        .any(|(o, _)| !o.paused && !stalled(o) && !o.status.fights.contains(k));
                    if active && cloud.get(k) != Some(value) {
                        out.push(format!(
                            "{}: {k} is {:?}, but {} wins it with {value:?}",
                            def.target,
                            cloud.get(k),
                            w.name
                        ));
                    }
                } else if written && cloud.contains_key(k) {
                    let kept = here.iter().any(|(o, s)| {
                        o.status.owned.contains(k)
                            && (s.policy.prune == Prune::None
                                || o.paused
                                || o.spec.mode == Mode::Observe
                                || s.protected.matches(k)
                                || o.status.fights.contains(k)
                                || stalled(o))
                    });
                    if !kept {
                        let owners: Vec<&str> = live
                            .iter()
                            .filter(|o| o.spec.object == i && o.status.owned.contains(k))
                            .map(|o| o.name.as_str())
                            .collect();
                        out.push(format!(
                            "{}: {k} was written by a set and is left behind (owners: {owners:?})",
                            def.target
                        ));
                    }
                }
            }
            // No live, active Sync set owns a key that is not there.
            for (o, _) in &here {
                if o.spec.mode != Mode::Sync || o.paused || stalled(o) {
                    continue;
                }
                for k in &o.status.owned {
                    if !cloud.contains_key(k) && !o.status.fights.contains(k) {
                        out.push(format!(
                            "{} owns {k}, which is not on {}",
                            o.name, def.target
                        ));
                    }
                }
            }
        }
        out
    }
}

/// Runs a history; the violations, if any.
fn verdict(history: &[Event]) -> Vec<String> {
    run_history(history).0
}

/// Runs a history; the violations and which rare paths it reached.
fn run_history(history: &[Event]) -> (Vec<String>, BTreeMap<&'static str, u64>) {
    let world = World::new();
    for ev in history {
        world.run(ev);
    }
    let mut out = world.st().violations.clone();
    if out.is_empty() {
        if let Err(e) = world.quiesce() {
            out.push(e);
        }
        out.extend(world.check_end());
        out.dedup();
    }
    if !out.is_empty() {
        let (sets, labels) = world.snapshot();
        for (name, status, deleting, _) in sets {
            out.push(format!(
                "  at the end: {name} deleting={deleting} {status:?}"
            ));
        }
        for (def, l) in world.objects.iter().zip(labels) {
            out.push(format!("  at the end: {} {l:?}", def.target));
        }
    }
    let seen = world.st().seen.clone();
    (out, seen)
}

/// Drops events while the history still fails: the shortest story to read.
fn shrink(mut history: Vec<Event>) -> (Vec<Event>, Vec<String>) {
    let mut failure = verdict(&history);
    let mut i = 0;
    while i < history.len() {
        let mut shorter = history.clone();
        shorter.remove(i);
        let v = verdict(&shorter);
        if v.is_empty() {
            i += 1;
        } else {
            history = shorter;
            failure = v;
        }
    }
    (history, failure)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_histories_leave_nothing_behind() {
    let histories = env_u64("IMAGELABEL_MODEL_HISTORIES", 4000);
    let first = env_u64("IMAGELABEL_MODEL_SEED", 109_537);
    let objects = objects();
    let started = Instant::now();
    let mut events = 0;
    let mut seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    for seed in first..first + histories {
        let history = gen_history(seed, &objects);
        events += history.len();
        let (v, reached) = run_history(&history);
        for (k, n) in reached {
            *seen.entry(k).or_default() += n;
        }
        if !v.is_empty() {
            let (short, why) = shrink(history);
            let story: Vec<String> = short.iter().map(|e| format!("  {e:?}")).collect();
            panic!(
                "seed {seed} breaks the ownership rules:\n{}\nshrunk history ({} events; replay with \
                 IMAGELABEL_MODEL_SEED={seed} IMAGELABEL_MODEL_HISTORIES=1):\n{}",
                why.join("\n"),
                short.len(),
                story.join("\n")
            );
        }
    }
    println!(
        "{histories} histories from seed {first} ({events} events) held in {:.1?}; reached: {seen:?}",
        started.elapsed()
    );
    // A generator that stopped reaching these would pass without testing them.
    if histories >= 1000 {
        for path in [
            "answer lost after the write",
            "killed mid-reconcile",
            "inherited without a write",
            "reconciled a stale object",
            "paused set reconciled",
            "fight detected",
            "IMS cap stall",
            "removes first under the IMS cap",
            "observe set reports drift",
            "owned keys left on purpose",
            "deletion waits for a hand-over",
            "status write refused",
            "adopted a key set by hand",
        ] {
            assert!(
                seen.get(path).copied().unwrap_or(0) > 0,
                "no history reached: {path}; {seen:?}"
            );
        }
    }
}

// ------------------------------------------- the three leaks of issue 12

fn create(set: u8, labels: &[(usize, usize)], mode: Mode) -> Event {
    Event::Create {
        set,
        spec: Spec {
            object: 0,
            labels: labels.iter().copied().collect(),
            prune: Prune::Owned,
            mode,
            policy: DeletionPolicy::Delete,
            ignore: None,
            adopt: false,
        },
        same_second: false,
    }
}

/// A `{x: v1}` writes x; B declares x too; A is deleted; then B goes (or
/// drops x). The world is settled and judged after every phase, so a
/// deletion that waits forever fails as surely as a leak.
fn leak_phases(b_labels: &[(usize, usize)], b_mode: Mode, b_goes: Event) -> Vec<Vec<Event>> {
    vec![
        vec![create(0, &[(0, 0)], Mode::Sync)],
        vec![create(1, b_labels, b_mode)],
        vec![Event::Delete { set: 0 }],
        vec![b_goes],
    ]
}

fn assert_holds(phases: &[Vec<Event>]) {
    let world = World::new();
    for (i, phase) in phases.iter().enumerate() {
        for ev in phase {
            world.run(ev);
        }
        let mut v = world.quiesce().err().into_iter().collect::<Vec<_>>();
        v.extend(world.check_end());
        assert!(v.is_empty(), "after phase {i} {phase:?}:\n{}", v.join("\n"));
    }
    let (sets, labels) = world.snapshot();
    assert!(sets.is_empty(), "every set was deleted: {sets:?}");
    assert!(
        !labels[0].contains_key("system.chipType"),
        "x outlived every set that wrote or declared it: {:?}",
        labels[0]
    );
}

#[test]
fn a_key_declared_by_a_sync_set_with_the_same_value_is_handed_over() {
    // Key 0 = system.chipType, value 0 = v1; key 1 = system.framework.
    let b = [(0, 0), (1, 1)];
    assert_holds(&leak_phases(&b, Mode::Sync, Event::Delete { set: 1 }));
    let mut drops = leak_phases(
        &b,
        Mode::Sync,
        Event::EditLabels {
            set: 1,
            labels: [(1, 1)].into(),
        },
    );
    drops.push(vec![Event::Delete { set: 1 }]);
    assert_holds(&drops);
}

#[test]
fn an_observe_set_with_the_same_value_does_not_keep_the_key() {
    assert_holds(&leak_phases(
        &[(0, 0)],
        Mode::Observe,
        Event::Delete { set: 1 },
    ));
}

#[test]
fn an_observe_set_that_lost_the_key_does_not_keep_it() {
    assert_holds(&leak_phases(
        &[(0, 1)],
        Mode::Observe,
        Event::Delete { set: 1 },
    ));
}
