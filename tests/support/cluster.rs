//! A real Kubernetes control plane for integration tests: etcd and
//! kube-apiserver built from their Go modules by `scripts/controlplane.sh`,
//! plus the matching `kubectl` and `helm`.
//!
//! There is no kubelet, scheduler or kube-controller-manager: pods never run,
//! namespaces are never finalized, nothing is garbage-collected and no
//! `default` ServiceAccount appears. Create every object a test needs, or
//! use `support::node` for a cluster with a node.
//!
//! ```ignore
//! let cluster = TestCluster::start().await;
//! let out = cluster.kubectl(["get", "namespaces"]);
//! let sa_kubeconfig = cluster.kubeconfig_for_service_account("ns", "sa").await;
//! ```
//!
//! Environment:
//! - `IMAGELABEL_CP_BIN_DIR`: use binaries from this directory instead of
//!   running the build script.
//! - `IMAGELABEL_CP_CACHE`: cache root of the build script.
//! - `IMAGELABEL_CP_KEEP=1`: keep the cluster's temp dir (certs, logs, etcd
//!   data) after the test instead of removing it.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use tempfile::TempDir;

/// How long kube-apiserver may take to report ready. Generous because the
/// test machines have two cores shared with parallel builds.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_GRACE: Duration = Duration::from_secs(15);
const LOG_TAIL_LINES: usize = 40;
/// Port collisions with other processes are possible between picking a free
/// port and the server binding it; such a start is retried with new ports.
const START_ATTEMPTS: usize = 3;
const DIR_PREFIX: &str = "imagelabel-cp-";
const OWNER_FILE: &str = "owner.pid";
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Paths of the control-plane binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub dir: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kubectl: PathBuf,
    pub etcd: PathBuf,
    pub helm: PathBuf,
}

impl Binaries {
    fn in_dir(dir: PathBuf) -> Result<Binaries> {
        let bins = Binaries {
            kube_apiserver: dir.join("kube-apiserver"),
            kubectl: dir.join("kubectl"),
            etcd: dir.join("etcd"),
            helm: dir.join("helm"),
            dir,
        };
        for b in [&bins.kube_apiserver, &bins.kubectl, &bins.etcd, &bins.helm] {
            if !b.is_file() {
                bail!("control-plane binary {} is missing", b.display());
            }
        }
        Ok(bins)
    }
}

/// Runs `script build` (the cached builds of scripts/controlplane.sh and
/// scripts/gitops-check.sh) and returns the path it prints last. stderr is
/// inherited so that a long first build shows its progress.
pub fn run_build_script(script: &Path) -> std::result::Result<PathBuf, String> {
    let out = Command::new("bash")
        .arg(script)
        .arg("build")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} build failed ({})",
            script.display(),
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| format!("{} printed no path", script.display()))
}

/// The control-plane binaries, built (or found in the cache) once per test
/// process; the build script's lock serializes concurrent test processes.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();
    let result = BINARIES.get_or_init(|| locate_or_build().map_err(|e| format!("{e:#}")));
    match result {
        Ok(b) => b,
        Err(e) => panic!("control plane unavailable: {e}"),
    }
}

fn locate_or_build() -> Result<Binaries> {
    if let Some(dir) = std::env::var_os("IMAGELABEL_CP_BIN_DIR") {
        return Binaries::in_dir(PathBuf::from(dir)).context("IMAGELABEL_CP_BIN_DIR");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/controlplane.sh");
    let started = Instant::now();
    let dir = run_build_script(&script).map_err(|e| anyhow!("{e}; see its output above"))?;
    let dir = dir.display().to_string();
    eprintln!(
        "control plane binaries ready in {:.1?}: {dir}",
        started.elapsed()
    );
    Binaries::in_dir(PathBuf::from(dir))
}

// ---------------------------------------------------------------------------
// Child processes that cannot outlive the test process.

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` in its own process group, with SIGKILL as its parent-death
/// signal.
///
/// The parent-death signal fires when the spawning *thread* exits, not the
/// process, so all spawns go through one thread that lives as long as the
/// test process: a test thread or a tokio blocking thread that ends early
/// must not take a shared cluster down with it.
fn spawn_supervised(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("controlplane-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the control-plane spawner thread");
        tx
    });

    let parent = std::process::id();
    cmd.process_group(0);
    // SAFETY: between fork and exec only async-signal-safe calls are
    // allowed: the closure makes two syscalls and builds errors from raw
    // errno values, which does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner
        .send((cmd, tx))
        .map_err(|_| io::Error::other("control-plane spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("control-plane spawner thread is gone"))?
}

/// A running server process with its output in a log file.
pub struct Proc {
    name: &'static str,
    child: Child,
    reaped: bool,
}

impl Proc {
    pub fn spawn(name: &'static str, program: &Path, args: &[String], log: &Path) -> Result<Proc> {
        // Appending keeps the log of earlier runs across an API server restart.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child =
            spawn_supervised(cmd).with_context(|| format!("spawn {}", program.display()))?;
        Ok(Proc {
            name,
            child,
            reaped: false,
        })
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.reaped {
            return None;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.reaped = true;
                Some(status)
            }
            _ => None,
        }
    }

    fn signal_group(&self, signal: libc::c_int) {
        // Only before reaping: afterwards the group id could belong to
        // someone else.
        if !self.reaped {
            // SAFETY: plain kill(2) on the process group we created.
            unsafe {
                libc::kill(-(self.child.id() as libc::pid_t), signal);
            }
        }
    }

    pub fn kill(&mut self) {
        self.signal_group(libc::SIGKILL);
        if !self.reaped {
            let _ = self.child.wait();
            self.reaped = true;
        }
    }

    /// SIGTERM, then SIGKILL when the process has not exited within `grace`.
    /// Async so that tasks sharing the test's runtime (an operator under
    /// test) keep running while the server drains.
    async fn terminate(&mut self, grace: Duration) {
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.reaped || self.exit_status().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("{} did not stop within {grace:?}; killing it", self.name);
        self.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// The cluster.

/// How a cluster differs from the default kubelet-less one.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// The address the API server publishes in the `kubernetes` Endpoints
    /// (default 127.0.0.1). A node needs one its pods can route to.
    pub advertise_address: Option<std::net::Ipv4Addr>,
    /// More IP SANs for the serving certificate.
    pub extra_ip_sans: Vec<std::net::Ipv4Addr>,
    /// Keep the ServiceAccount admission plugin: it refuses pods whose
    /// ServiceAccount does not exist, and only kube-controller-manager
    /// creates each namespace's `default`.
    pub service_account_admission: bool,
    /// Let the API server call kubelets (logs, exec) with the admin certificate.
    pub kubelet_client: bool,
}

/// etcd + kube-apiserver on random loopback ports, with their own PKI, torn
/// down on drop (also when the test panics).
pub struct TestCluster {
    bins: &'static Binaries,
    apiserver: Mutex<Option<Proc>>,
    etcd: Proc,
    apiserver_args: Vec<String>,
    api_port: u16,
    kubeconfig: PathBuf,
    client: kube::Client,
    // Last, so the processes are gone before their files are removed.
    dir: Option<TempDir>,
}

impl TestCluster {
    /// Builds the binaries if needed, starts etcd and kube-apiserver and
    /// waits until `/readyz` passes. Panics with the servers' log tails when
    /// they do not come up.
    pub async fn start() -> TestCluster {
        match Self::try_start().await {
            Ok(c) => c,
            Err(e) => panic!("test control plane failed to start: {e:#}"),
        }
    }

    pub async fn try_start() -> Result<TestCluster> {
        Self::try_start_with(&ClusterOptions::default()).await
    }

    pub async fn start_with(options: &ClusterOptions) -> TestCluster {
        match Self::try_start_with(options).await {
            Ok(c) => c,
            Err(e) => panic!("test control plane failed to start: {e:#}"),
        }
    }

    pub async fn try_start_with(options: &ClusterOptions) -> Result<TestCluster> {
        let bins = binaries();
        let mut attempt = 1;
        loop {
            match Self::start_once(bins, options).await {
                Ok(c) => return Ok(c),
                Err(StartError {
                    port_clash: true,
                    error,
                }) if attempt < START_ATTEMPTS => {
                    eprintln!(
                        "control plane start attempt {attempt} lost a port race, retrying: {error:#}"
                    );
                    attempt += 1;
                }
                Err(StartError { error, .. }) => return Err(error),
            }
        }
    }

    async fn start_once(
        bins: &'static Binaries,
        options: &ClusterOptions,
    ) -> Result<TestCluster, StartError> {
        let started = Instant::now();
        sweep_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .context("create cluster temp dir")?;
        let root = dir.path().to_path_buf();
        fs::write(root.join(OWNER_FILE), std::process::id().to_string())
            .context("write owner pid")?;
        let pki = Pki::generate(&root.join("pki"), &options.extra_ip_sans)
            .context("generate certificates")?;

        let (etcd_client_port, etcd_peer_port, api_port) =
            (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_client_port}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd_args = vec![
            "--name=test".to_string(),
            format!("--data-dir={}", root.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=test={peer_url}"),
            "--unsafe-no-fsync=true".to_string(),
        ];
        let mut etcd = Proc::spawn("etcd", &bins.etcd, &etcd_args, &root.join("etcd.log"))?;

        let advertise = options
            .advertise_address
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        let mut apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--cert-dir={}", root.join("apiserver-certs").display()),
            format!("--secure-port={api_port}"),
            "--bind-address=127.0.0.1".to_string(),
            // Needed on hosts without a default route.
            format!("--advertise-address={advertise}"),
            "--service-cluster-ip-range=10.0.0.0/24".to_string(),
            "--authorization-mode=RBAC".to_string(),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
            format!("--service-account-key-file={}", pki.sa_public_key.display()),
            format!(
                "--service-account-signing-key-file={}",
                pki.sa_private_key.display()
            ),
        ];
        if !options.service_account_admission {
            // Without a token controller it would reject every pod.
            apiserver_args.push("--disable-admission-plugins=ServiceAccount".to_string());
        }
        if options.kubelet_client {
            apiserver_args.push(format!(
                "--kubelet-client-certificate={}",
                pki.admin_cert.display()
            ));
            apiserver_args.push(format!("--kubelet-client-key={}", pki.admin_key.display()));
            // The node's hostname resolves nowhere; its IP is on the bridge.
            apiserver_args.push("--kubelet-preferred-address-types=InternalIP".to_string());
        }
        let apiserver = Proc::spawn(
            "kube-apiserver",
            &bins.kube_apiserver,
            &apiserver_args,
            &root.join("apiserver.log"),
        )?;

        let kubeconfig = root.join("admin.kubeconfig");
        let server = format!("https://127.0.0.1:{api_port}");
        let admin_user = serde_json::json!({
            "client-certificate": pki.admin_cert,
            "client-key": pki.admin_key,
        });
        write_kubeconfig(
            &kubeconfig,
            &server,
            &pki.ca_cert,
            "admin",
            admin_user,
            "default",
        )
        .map_err(StartError::from)?;

        let mut apiserver = Some(apiserver);
        let client = match wait_ready(&kubeconfig, &mut apiserver, &mut etcd).await {
            Ok(client) => client,
            Err(error) => {
                let logs = format!(
                    "{}\n{}",
                    log_tail("kube-apiserver", &root.join("apiserver.log")),
                    log_tail("etcd", &root.join("etcd.log"))
                );
                let port_clash = logs.contains("address already in use");
                keep_if_requested(dir);
                return Err(StartError {
                    port_clash,
                    error: anyhow!("{error:#}\n{logs}\n(IMAGELABEL_CP_KEEP=1 keeps the whole dir)"),
                });
            }
        };
        eprintln!(
            "control plane ready in {:.1?} at {server} (dir {})",
            started.elapsed(),
            root.display()
        );

        Ok(TestCluster {
            bins,
            apiserver: Mutex::new(apiserver),
            etcd,
            apiserver_args,
            api_port,
            kubeconfig,
            client,
            dir: Some(dir),
        })
    }

    /// A client with cluster-admin rights (client certificate in
    /// `system:masters`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A client for any kubeconfig, for example one from
    /// [`TestCluster::kubeconfig_for_service_account`].
    pub async fn client_for(&self, kubeconfig: &Path) -> kube::Client {
        client_from_kubeconfig(kubeconfig, None)
            .await
            .unwrap_or_else(|e| panic!("client for {}: {e:#}", kubeconfig.display()))
    }

    pub fn binaries(&self) -> &'static Binaries {
        self.bins
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn api_port(&self) -> u16 {
        self.api_port
    }

    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// The cluster's temp dir (certificates, logs, kubeconfigs, etcd data).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("temp dir lives as long as the cluster")
            .path()
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir().join("pki/ca.crt")
    }

    /// Writes `contents` to `name` inside the cluster's temp dir.
    pub fn write_file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir().join(name);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Runs kubectl as cluster admin.
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_with(&self.kubeconfig, args)
    }

    /// Runs kubectl with another kubeconfig (for example a ServiceAccount's).
    pub fn kubectl_with<I, S>(&self, kubeconfig: &Path, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.bins.kubectl);
        cmd.args(args)
            .env("KUBECONFIG", kubeconfig)
            // Keep the discovery cache out of the user's ~/.kube.
            .env("KUBECACHEDIR", self.dir().join("kubectl-cache"));
        run(cmd)
    }

    /// Runs kubectl as admin and returns its stdout; panics with stderr when
    /// it fails.
    pub fn kubectl_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let out = self.kubectl(&args);
        assert_success(&format!("kubectl {args:?}"), &out)
    }

    /// Runs helm as cluster admin, with helm's config, cache and data dirs
    /// inside the cluster's temp dir.
    pub fn helm<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let home = self.dir().join("helm");
        let mut cmd = Command::new(&self.bins.helm);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
        run(cmd)
    }

    /// Issues a token for the ServiceAccount `namespace/name` (which must
    /// exist) through the TokenRequest API and writes a kubeconfig that
    /// authenticates with it, so a client or process acts as that account
    /// and RBAC applies for real.
    pub async fn kubeconfig_for_service_account(&self, namespace: &str, name: &str) -> PathBuf {
        let api: Api<ServiceAccount> = Api::namespaced(self.client(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let issued = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for serviceaccount {namespace}/{name}: {e}"));
        let token = issued
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| panic!("TokenRequest for {namespace}/{name} returned no token"));
        let path = self.dir().join(format!("sa-{namespace}-{name}.kubeconfig"));
        let user = format!("system:serviceaccount:{namespace}:{name}");
        write_kubeconfig(
            &path,
            &self.server_url(),
            &self.ca_cert(),
            &user,
            serde_json::json!({ "token": token }),
            // A ServiceAccount mostly works in its own namespace.
            namespace,
        )
        .unwrap_or_else(|e| panic!("write {}: {e:#}", path.display()));
        path
    }

    /// Stops kube-apiserver gracefully (SIGTERM, then SIGKILL after a grace
    /// period). etcd keeps running.
    pub async fn stop_apiserver(&self) {
        let running = self
            .apiserver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut p) = running {
            let started = Instant::now();
            p.terminate(STOP_GRACE).await;
            eprintln!("kube-apiserver stopped in {:.1?}", started.elapsed());
        }
    }

    /// Kills kube-apiserver with SIGKILL, as a crash would.
    pub fn kill_apiserver(&self) {
        if let Some(mut p) = self
            .apiserver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            p.kill();
        }
    }

    /// Starts kube-apiserver again on the same port with the same etcd,
    /// certificates and service-account keys, and waits until it is ready.
    /// Existing clients and tokens keep working once it is back.
    pub async fn start_apiserver(&self) {
        assert!(
            self.apiserver
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none(),
            "kube-apiserver is already running"
        );
        let log = self.dir().join("apiserver.log");
        let started = Instant::now();
        let proc = Proc::spawn(
            "kube-apiserver",
            &self.bins.kube_apiserver,
            &self.apiserver_args,
            &log,
        )
        .unwrap_or_else(|e| panic!("restart kube-apiserver: {e:#}"));
        // Polled outside the lock, which must not be held across awaits.
        let mut proc = Some(proc);
        if let Err(e) =
            wait_ready_with(&self.kubeconfig, &mut proc, &mut EtcdProbe(&self.etcd)).await
        {
            panic!(
                "kube-apiserver did not come back: {e:#}\n{}",
                log_tail("kube-apiserver", &log)
            );
        }
        eprintln!("kube-apiserver restarted in {:.1?}", started.elapsed());
        *self.apiserver.lock().unwrap_or_else(|e| e.into_inner()) = proc;
    }

    /// Graceful stop followed by a start.
    pub async fn restart_apiserver(&self) {
        self.stop_apiserver().await;
        self.start_apiserver().await;
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // The API server before etcd, so it does not log a storm of etcd
        // connection errors into a file about to be removed anyway.
        if let Some(mut p) = self
            .apiserver
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            p.kill();
        }
        self.etcd.kill();
        if let Some(dir) = self.dir.take() {
            keep_if_requested(dir);
        }
    }
}

struct StartError {
    port_clash: bool,
    error: anyhow::Error,
}

impl From<anyhow::Error> for StartError {
    fn from(error: anyhow::Error) -> Self {
        StartError {
            port_clash: false,
            error,
        }
    }
}

impl From<io::Error> for StartError {
    fn from(error: io::Error) -> Self {
        StartError {
            port_clash: false,
            error: error.into(),
        }
    }
}

/// Something whose early exit means the API server can never get ready.
trait Liveness {
    fn check(&mut self) -> Result<()>;
}

impl Liveness for Proc {
    fn check(&mut self) -> Result<()> {
        match self.exit_status() {
            Some(status) => bail!("{} exited during startup: {status}", self.name),
            None if self.reaped => bail!("{} is not running", self.name),
            None => Ok(()),
        }
    }
}

/// etcd seen through a shared reference: a restart only needs to know it
/// still runs, and `Child::try_wait` would need `&mut`.
struct EtcdProbe<'a>(&'a Proc);

impl Liveness for EtcdProbe<'_> {
    fn check(&mut self) -> Result<()> {
        // SAFETY: signal 0 only checks that the process exists.
        let alive =
            !self.0.reaped && unsafe { libc::kill(self.0.child.id() as libc::pid_t, 0) } == 0;
        if alive {
            Ok(())
        } else {
            bail!("etcd is not running")
        }
    }
}

async fn wait_ready(
    kubeconfig: &Path,
    apiserver: &mut Option<Proc>,
    etcd: &mut Proc,
) -> Result<kube::Client> {
    wait_ready_with(kubeconfig, apiserver, etcd).await?;
    client_from_kubeconfig(kubeconfig, None).await
}

/// Polls `/readyz` until it answers `ok`, failing fast when a server exits.
async fn wait_ready_with(
    kubeconfig: &Path,
    apiserver: &mut Option<Proc>,
    etcd: &mut impl Liveness,
) -> Result<()> {
    // Short timeouts: a poll must not hang on a server that is still binding.
    let client = client_from_kubeconfig(kubeconfig, Some(Duration::from_secs(2))).await?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last: String;
    loop {
        apiserver
            .as_mut()
            .ok_or_else(|| anyhow!("kube-apiserver is not running"))?
            .check()?;
        etcd.check()?;
        let request = http::Request::get("/readyz").body(Vec::new())?;
        match tokio::time::timeout(Duration::from_secs(5), client.request_text(request)).await {
            Ok(Ok(body)) if body.trim() == "ok" => return Ok(()),
            Ok(Ok(body)) => last = body,
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
        if Instant::now() > deadline {
            bail!("kube-apiserver not ready after {READY_TIMEOUT:?}; last /readyz answer: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn client_from_kubeconfig(path: &Path, timeout: Option<Duration>) -> Result<kube::Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("read {}", path.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("load {}", path.display()))?;
    if let Some(t) = timeout {
        config.connect_timeout = Some(t);
        config.read_timeout = Some(t);
    }
    kube::Client::try_from(config).context("build kube client")
}

/// Writes a single-context kubeconfig. JSON is valid YAML, and serde_json
/// takes care of quoting paths and tokens.
fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_cert: &Path,
    user: &str,
    auth: serde_json::Value,
    namespace: &str,
) -> Result<()> {
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "test", "cluster": { "server": server, "certificate-authority": ca_cert } }],
        "users": [{ "name": user, "user": auth }],
        "contexts": [{ "name": "test", "context": { "cluster": "test", "user": user, "namespace": namespace } }],
        "current-context": "test",
    });
    write_private(path, &serde_json::to_vec_pretty(&doc)?)
}

/// Credentials are written owner-only, as kubectl would.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    f.write_all(contents)?;
    Ok(())
}

/// Drops (removes) `dir` unless `IMAGELABEL_CP_KEEP` asks to keep it.
fn keep_if_requested(dir: TempDir) {
    if std::env::var_os("IMAGELABEL_CP_KEEP").is_some() {
        // Without an owner file the stale-dir sweep leaves it alone.
        let _ = fs::remove_file(dir.path().join(OWNER_FILE));
        eprintln!("IMAGELABEL_CP_KEEP: leaving {}", dir.keep().display());
    }
}

/// Removes cluster dirs left behind by test processes that were killed
/// (their servers died with them, but no destructor ran to remove the dir).
fn sweep_stale_dirs() {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
                continue;
            }
            // Dirs without an owner file are not ours to judge.
            let Some(pid) = fs::read_to_string(entry.path().join(OWNER_FILE))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    });
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn log_tail(name: &str, path: &Path) -> String {
    match fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            format!(
                "--- last {} lines of {name} log ({}) ---\n{}",
                tail.len(),
                path.display(),
                tail.join("\n")
            )
        }
        Err(e) => format!("--- {name} log {} unreadable: {e} ---", path.display()),
    }
}

/// Runs `cmd` to completion with no stdin; panics if it cannot start.
pub fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null());
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

/// Panics with both streams unless `out` is a success; returns stdout.
pub fn assert_success(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The documents of a YAML stream (`helm template` output), empty ones dropped.
pub fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(text)
        .expect("a YAML stream")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

// ---------------------------------------------------------------------------
// Certificates and keys, fresh for every cluster.

struct Pki {
    ca_cert: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    admin_cert: PathBuf,
    admin_key: PathBuf,
    sa_private_key: PathBuf,
    sa_public_key: PathBuf,
}

impl Pki {
    fn generate(dir: &Path, extra_ip_sans: &[std::net::Ipv4Addr]) -> Result<Pki> {
        fs::create_dir_all(dir)?;
        let pki = Pki {
            ca_cert: dir.join("ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_private_key: dir.join("sa.key"),
            sa_public_key: dir.join("sa.pub"),
        };

        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "imagelabel-test-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        fs::write(&pki.ca_cert, ca.pem())?;

        // The in-cluster names too, so a client that dials the service name
        // through a port-forward or proxy still verifies the certificate.
        let mut serving = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ])?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        serving
            .subject_alt_names
            .push(SanType::IpAddress([10, 0, 0, 1].into()));
        for ip in extra_ip_sans {
            serving
                .subject_alt_names
                .push(SanType::IpAddress((*ip).into()));
        }
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_key = KeyPair::generate()?;
        fs::write(
            &pki.serving_cert,
            serving.signed_by(&serving_key, &ca)?.pem(),
        )?;
        write_private(&pki.serving_key, serving_key.serialize_pem().as_bytes())?;

        // The API server maps the certificate's O to groups; system:masters
        // bypasses RBAC.
        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin
            .distinguished_name
            .push(DnType::CommonName, "imagelabel-test-admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_key = KeyPair::generate()?;
        fs::write(&pki.admin_cert, admin.signed_by(&admin_key, &ca)?.pem())?;
        write_private(&pki.admin_key, admin_key.serialize_pem().as_bytes())?;

        // ES256: the API server signs service-account tokens with the
        // private key and verifies them with the public one.
        let sa_key = KeyPair::generate()?;
        write_private(&pki.sa_private_key, sa_key.serialize_pem().as_bytes())?;
        fs::write(&pki.sa_public_key, sa_key.public_key_pem())?;
        Ok(pki)
    }
}
