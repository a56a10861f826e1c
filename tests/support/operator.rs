//! End-to-end fixture: a real control plane with our CRDs, the simulator
//! in-process, and `imagelabel run` as a child process pointed at both.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imagelabel::api::{DatasetLabelSet, ImageLabelSet, LabelSetStatus};
use imagelabel::provider::Target;
use imagelabel::sim::SeedConfig;
use imagelabel::sim::{Sim, SimHandle};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

use super::cluster::{TestCluster, assert_success};

/// Test credentials the simulator accepts (see `SeedConfig::demo`).
pub const PAI_AK: &str = "testAK";
pub const PAI_SECRET: &str = "testSecret";
pub const IMS_AK: &str = "hwAK";
pub const IMS_SK: &str = "hwSK";

/// Short made-up keys the end-to-end tests and the benchmark declare, which
/// AddImageLabels' documented list lacks: the simulated cloud has gained
/// them (its seed) and the operator is told with `--extra-pai-image-keys`,
/// as a deployment would be when the cloud adds keys.
pub const EXTRA_PAI_IMAGE_KEYS: &[&str] = &[
    "system.a",
    "system.b",
    "system.c",
    "system.d",
    "system.e",
    "system.x",
    "system.y",
    "system.z",
    "system.o",
    "system.s",
    "system.base",
    "system.extra",
    "system.keep",
    "system.new",
    "system.owner",
    "system.pre",
    "system.scratch",
    "system.seeded",
    "system.shared",
    "system.team",
    "system.vendor",
];

pub struct Env {
    pub cluster: TestCluster,
    pub sim: SimHandle,
    pub ns: String,
}

impl Env {
    /// A control plane with the CRDs installed, namespace `ns`, and a simulator seeded with `seed`.
    pub async fn start(ns: &str, seed: SeedConfig) -> Env {
        let env = Self::start_without_crds(ns, seed).await;
        env.install_crds();
        env
    }

    /// As [`Env::start`], but the CRDs are not installed: for tests where
    /// something else (`helm install` of the chart's `crds/`) must install them.
    pub async fn start_without_crds(ns: &str, mut seed: SeedConfig) -> Env {
        seed.pai
            .extra_image_label_keys
            .extend(EXTRA_PAI_IMAGE_KEYS.iter().map(|k| k.to_string()));
        let cluster = TestCluster::start().await;
        let env = Env {
            sim: Sim::from_seed(seed)
                .expect("seed is valid")
                .start("127.0.0.1:0".parse().unwrap())
                .await
                .expect("simulator starts"),
            cluster,
            ns: ns.to_string(),
        };
        env.create_namespace(ns).await;
        env
    }

    /// `kubectl apply` of the generated CRDs, then wait until both are Established.
    pub fn install_crds(&self) {
        let cluster = &self.cluster;
        let crds = cluster.write_file("crds.yaml", imagelabel::api::crds_yaml());
        assert_success(
            "kubectl apply crds",
            &cluster.kubectl(["apply", "-f", crds.to_str().unwrap()]),
        );
        assert_success(
            "kubectl wait crds",
            &cluster.kubectl([
                "wait",
                "--for=condition=Established",
                "crd/imagelabelsets.imagelabel.io",
                "crd/datasetlabelsets.imagelabel.io",
                "--timeout=60s",
            ]),
        );
    }

    pub async fn create_namespace(&self, ns: &str) {
        let api: Api<Namespace> = Api::all(self.cluster.client());
        let obj: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("create namespace {ns}: {e}"),
        }
    }

    /// Starts `imagelabel run` as admin with default credentials in its environment.
    pub fn operator(&self, name: &str, extra: &[&str]) -> Operator {
        Operator::start(self, name, self.cluster.kubeconfig(), extra)
    }

    /// `kubectl apply -f examples/`, then `kubectl wait` until every set of both kinds is Ready.
    pub fn apply_examples_and_wait_ready(&self) {
        if let Err((kind, why)) = apply_examples_and_wait_ready(&self.cluster, "90s") {
            panic!("{kind} not Ready: {why}");
        }
    }

    pub fn images(&self) -> Api<ImageLabelSet> {
        Api::namespaced(self.cluster.client(), &self.ns)
    }

    pub fn datasets(&self) -> Api<DatasetLabelSet> {
        Api::namespaced(self.cluster.client(), &self.ns)
    }

    /// `kubectl apply` of a manifest text into the test namespace.
    pub fn apply(&self, name: &str, yaml: &str) {
        let path = self.cluster.write_file(name, yaml);
        assert_success(
            &format!("kubectl apply {name}"),
            &self
                .cluster
                .kubectl(["apply", "-n", &self.ns, "-f", path.to_str().unwrap()]),
        );
    }

    /// [`Env::apply`] that reports a refusal (API server down, say) instead of failing.
    pub fn try_apply(&self, name: &str, yaml: &str) -> Result<(), String> {
        let path = self.cluster.write_file(name, yaml);
        let out = self
            .cluster
            .kubectl(["apply", "-n", &self.ns, "-f", path.to_str().unwrap()]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn labels(&self, target: &Target) -> BTreeMap<String, String> {
        self.sim
            .sim()
            .labels_of(target)
            .unwrap_or_else(|| panic!("simulator has no {target}"))
    }

    /// Polls until the image set's status satisfies `check`, or panics with the last status.
    pub async fn wait_image(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&LabelSetStatus) -> bool,
    ) -> LabelSetStatus {
        let api = self.images();
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(Some(obj)) = api.get_opt(name).await {
                let status = obj.status.clone().unwrap_or_default();
                if check(&status) {
                    return status;
                }
                last = Some(status);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("{name}: timed out after {timeout:?} waiting for {what}; last status: {last:#?}");
    }

    /// Polls until `check` holds on the simulator, or panics.
    pub async fn wait_cloud(&self, what: &str, timeout: Duration, check: impl Fn(&Sim) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check(self.sim.sim()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}; simulator state: {:#}",
            self.sim.sim().state_json()
        );
    }
}

/// `kubectl apply -f examples/`, then `kubectl wait` (up to `timeout` per
/// kind) until every set of both kinds is Ready; the kind that is not, and
/// kubectl's stderr.
pub fn apply_examples_and_wait_ready(
    cluster: &TestCluster,
    timeout: &str,
) -> Result<(), (&'static str, String)> {
    let examples = format!("{}/examples", env!("CARGO_MANIFEST_DIR"));
    assert_success(
        "apply examples",
        &cluster.kubectl(["apply", "-f", &examples]),
    );
    for kind in ["imagelabelsets", "datasetlabelsets"] {
        let out = cluster.kubectl([
            "wait",
            "-n",
            "ml-platform",
            "--for=condition=Ready",
            kind,
            "--all",
            &format!("--timeout={timeout}"),
        ]);
        if !out.status.success() {
            return Err((kind, String::from_utf8_lossy(&out.stderr).into_owned()));
        }
    }
    Ok(())
}

/// The simulator's test credentials as the default chain reads them, and
/// nothing else of this process's cloud environment.
pub fn with_test_credentials(cmd: &mut Command) -> &mut Command {
    cmd.env("ALIBABA_CLOUD_ACCESS_KEY_ID", PAI_AK)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", PAI_SECRET)
        .env("HUAWEICLOUD_SDK_AK", IMS_AK)
        .env("HUAWEICLOUD_SDK_SK", IMS_SK)
        .env_remove("ALIBABA_CLOUD_SECURITY_TOKEN")
        .env_remove("DASHSCOPE_API_KEY")
}

pub fn ready(s: &LabelSetStatus) -> bool {
    s.is_ready()
}

pub fn reason(s: &LabelSetStatus, type_: &str) -> Option<String> {
    s.condition(type_)
        .filter(|c| c.status == "True" || type_ == imagelabel::api::READY)
        .map(|c| c.reason.clone())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `imagelabel run` as a child process; killed on drop.
pub struct Operator {
    child: Option<Child>,
    pub name: String,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(env: &Env, name: &str, kubeconfig: &Path, extra: &[&str]) -> Operator {
        let metrics_port = free_port();
        let log = env.cluster.dir().join(format!("operator-{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("operator log");
        let base = env.sim.base_url();
        let extra_keys = EXTRA_PAI_IMAGE_KEYS.join(",");
        // A profiler in front of the binary (`heaptrack -o /tmp/op`, say):
        // how the footprint figures of the benchmarks were taken apart.
        let wrapper = std::env::var("IMAGELABEL_OPERATOR_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut cmd = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(env!("CARGO_BIN_EXE_imagelabel"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_imagelabel")),
        };
        cmd.args([
            "run",
            "--pai-endpoint",
            &base,
            "--ims-endpoint",
            &base,
            "--sts-endpoint",
            &base,
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args(["--identity", name])
        .args(extra)
        .env("KUBECONFIG", kubeconfig);
        with_test_credentials(&mut cmd)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // Test defaults, each unless the caller passes that flag itself
        // (a chart install leases in its own namespace and watches all).
        let defaults = [
            ("--lease-namespace", env.ns.as_str()),
            ("--watch-namespace", env.ns.as_str()),
            ("--lease-duration", "6s"),
            ("--resync-interval", "1h"),
            ("--backoff-cap", "5s"),
            ("--log-format", "json"),
            ("--log-level", "info,imagelabel=debug"),
            ("--extra-pai-image-keys", extra_keys.as_str()),
            // Tests that are not about tenancy use the default account anywhere.
            ("--default-credentials-namespaces", "*"),
        ];
        for (flag, value) in defaults {
            if !extra.iter().any(|a| a.split('=').next() == Some(flag)) {
                cmd.args([flag, value]);
            }
        }
        let child = cmd.spawn().expect("start imagelabel run");
        Operator {
            child: Some(child),
            name: name.to_string(),
            metrics_port,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (graceful shutdown).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The Prometheus text of /metrics (empty while the server is not up).
    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Sum of a metric's samples whose line contains every `filter` string.
    pub async fn metric(&self, name: &str, filters: &[&str]) -> f64 {
        sum_metric(&self.metrics().await, name, filters)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub fn sum_metric(text: &str, name: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("--- last lines of operator {} log ---", self.name);
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        self.kill();
    }
}
