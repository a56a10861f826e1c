//! A node for the test control plane: kube-controller-manager,
//! kube-scheduler and a kubelet (built with the API server by
//! `scripts/controlplane.sh`) on containerd + runc from Debian packages, with
//! a bridge pod network that reaches only this host.
//!
//! A node changes the host: a bridge, iptables rules, sysctls (some set by
//! the kubelet and the CNI bridge plugin themselves), mounts, cgroups and
//! paths under /run, /var/log and /var/lib. Everything is snapshotted before
//! the first change and written to a record file; teardown (drop, also after
//! a panic) undoes every difference from the snapshot, and the next start
//! does the same from the record file if a test process died without
//! running its destructors. [`Node::teardown`] returns what is still
//! different afterwards, so a test can assert the host is as before.
//!
//! One node per machine at a time (the bridge and /run/containerd are
//! host-wide): a lock file serializes test processes.
//!
//! [`Node::start`] returns `None`, after printing why, where the machine
//! cannot run pods (not root, no overlayfs, no cgroups, packages not
//! installable).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cluster::{ClusterOptions, Proc, TestCluster, assert_success, binaries, log_tail, run};

pub const BRIDGE: &str = "ilbr0";
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
pub const NODE_NAME: &str = "imagelabel-node";
const POD_SUBNET: &str = "10.244.0.0/24";
/// The `kubernetes` Service address (first of 10.0.0.0/24).
const SERVICE_IP: &str = "10.0.0.1";
const RECORD_FILE: &str = "imagelabel-node-record.json";
const LOCK_FILE: &str = "imagelabel-node.lock";
const DIR_PREFIX: &str = "imagelabel-node-";
const DEBIAN_PACKAGES: &[&str] = &[
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "iproute2",
    "gcc",
    "libc6-dev",
    "ca-certificates",
];
const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// Global sysctls the node tier may change: the kubelet sets the vm/kernel
/// ones at start; the CNI bridge plugin turns on forwarding when it is a
/// gateway (it is not configured as one, and the test checks).
const SYSCTLS: &[&str] = &[
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/default/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv4/conf/default/route_localnet",
    "net/ipv6/conf/all/forwarding",
    "net/ipv6/conf/default/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// Host paths containerd, the CNI plugins and the kubelet use whatever
/// their configuration says; removed at teardown when they did not exist.
const HOST_PATHS: &[&str] = &[
    "/run/containerd",
    "/run/netns",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/var/lib/containerd",
    "/opt/containerd",
    "/etc/cni",
    "/opt/cni",
    "/run/runc",
];

/// What the node tier may change on the host, as it was.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostState {
    sysctls: BTreeMap<String, String>,
    /// Per command (iptables, ip6tables): "table rule" lines (`-A …`) and
    /// "table :CHAIN POLICY" for custom chains and changed policies.
    iptables: BTreeMap<String, Vec<String>>,
    mounts: Vec<String>,
    links: BTreeSet<String>,
    paths: BTreeMap<String, bool>,
    /// First-level directories of every cgroup hierarchy.
    cgroups: BTreeSet<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    owner_pid: u32,
    dir: PathBuf,
    before: HostState,
}

impl HostState {
    fn capture() -> HostState {
        let mut sysctls = BTreeMap::new();
        for s in SYSCTLS {
            if let Ok(v) = fs::read_to_string(Path::new("/proc/sys").join(s)) {
                sysctls.insert(s.to_string(), v.trim().to_string());
            }
        }
        let mut iptables = BTreeMap::new();
        for cmd in ["iptables", "ip6tables"] {
            if let Some(lines) = iptables_state(cmd) {
                iptables.insert(cmd.to_string(), lines);
            }
        }
        let mut mounts = mount_points();
        mounts.sort();
        let paths = HOST_PATHS
            .iter()
            .map(|p| (p.to_string(), Path::new(p).exists()))
            .collect();
        HostState {
            sysctls,
            iptables,
            mounts,
            links: links(),
            paths,
            cgroups: cgroup_dirs(),
        }
    }

    /// Human-readable differences from `before` (empty: the same).
    pub fn differences(&self, before: &HostState) -> Vec<String> {
        let mut out = vec![];
        for (k, v) in &self.sysctls {
            if before.sysctls.get(k) != Some(v) {
                out.push(format!(
                    "sysctl {k} = {v} (was {:?})",
                    before.sysctls.get(k)
                ));
            }
        }
        for (cmd, lines) in &self.iptables {
            let empty = vec![];
            let was = before.iptables.get(cmd).unwrap_or(&empty);
            for l in multiset_minus(lines, was) {
                out.push(format!("{cmd}: added {l}"));
            }
            for l in multiset_minus(was, lines) {
                out.push(format!("{cmd}: removed {l}"));
            }
        }
        for m in multiset_minus(&self.mounts, &before.mounts) {
            out.push(format!("mount {m}"));
        }
        for l in self.links.difference(&before.links) {
            out.push(format!("link {l}"));
        }
        for (p, exists) in &self.paths {
            if before.paths.get(p) != Some(exists) {
                out.push(format!("path {p} exists={exists}"));
            }
        }
        for c in self.cgroups.difference(&before.cgroups) {
            out.push(format!("cgroup {c}"));
        }
        out
    }
}

fn multiset_minus(a: &[String], b: &[String]) -> Vec<String> {
    let mut left: BTreeMap<&String, usize> = BTreeMap::new();
    for x in b {
        *left.entry(x).or_default() += 1;
    }
    let mut out = vec![];
    for x in a {
        match left.get_mut(x) {
            Some(n) if *n > 0 => *n -= 1,
            _ => out.push(x.clone()),
        }
    }
    out
}

fn iptables_state(cmd: &str) -> Option<Vec<String>> {
    let out = Command::new(format!("{cmd}-save"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let builtin = ["INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"];
    let mut table = String::new();
    let mut lines = vec![];
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(t) = l.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(chain) = l.strip_prefix(':') {
            // An empty built-in chain with policy ACCEPT is the same as a
            // table nobody created (listing a table creates it with nft).
            let mut parts = chain.split_whitespace();
            let (name, policy) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if !builtin.contains(&name) || policy != "ACCEPT" {
                lines.push(format!("{table} :{name} {policy}"));
            }
        } else if l.starts_with("-A ") {
            lines.push(format!("{table} {l}"));
        }
    }
    Some(lines)
}

fn mount_points() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .collect()
}

fn links() -> BTreeSet<String> {
    fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return vec![];
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect();
    // cgroup v2 only: the root itself is the hierarchy.
    if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
        out.push(PathBuf::from("/sys/fs/cgroup"));
    }
    out
}

fn cgroup_dirs() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for h in cgroup_hierarchies() {
        if let Ok(entries) = fs::read_dir(&h) {
            for e in entries.flatten() {
                if e.path().is_dir() && e.path().join("cgroup.procs").exists() {
                    out.insert(e.path().display().to_string());
                }
            }
        }
    }
    out
}

fn sh(program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args);
    run(cmd)
}

fn sh_ok(program: &str, args: &[&str]) -> String {
    assert_success(&format!("{program} {args:?}"), &sh(program, args))
}

fn write_sysctl(name: &str, value: &str) -> std::io::Result<()> {
    fs::write(Path::new("/proc/sys").join(name), value)
}

// ---------------------------------------------------------------------------
// Restoring the host.

/// Makes the host equal to `before` again in everything the node tier
/// touches. Processes first (they hold mounts, cgroups and network
/// namespaces), then mounts, links, rules, sysctls, cgroups and paths.
fn restore(record: &Record) {
    let before = &record.before;
    let dir = record.dir.display().to_string();
    // Containers live in cgroups created after the snapshot.
    let new_cgroups: Vec<String> = cgroup_dirs().difference(&before.cgroups).cloned().collect();
    for _ in 0..20 {
        let mut killed = 0;
        for pid in processes_of(&dir) {
            kill(pid);
            killed += 1;
        }
        for c in &new_cgroups {
            for pid in cgroup_pids(Path::new(c)) {
                kill(pid);
                killed += 1;
            }
        }
        if killed == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    // Deepest first, and again for mounts stacked on one point.
    for _ in 0..3 {
        let mut extra = multiset_minus(&mount_points(), &before.mounts);
        if extra.is_empty() {
            break;
        }
        extra.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in extra {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: umount2 on a path string we own.
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }

    for l in links().difference(&before.links) {
        if l == BRIDGE || l.starts_with("veth") {
            let _ = sh("ip", &["link", "delete", l]);
        }
    }

    for (cmd, was) in &before.iptables {
        restore_iptables(cmd, was);
    }

    for (k, v) in &before.sysctls {
        let now = fs::read_to_string(Path::new("/proc/sys").join(k)).unwrap_or_default();
        if now.trim() != v
            && let Err(e) = write_sysctl(k, v)
        {
            eprintln!("node teardown: restoring sysctl {k}={v}: {e}");
        }
    }

    for c in &new_cgroups {
        remove_cgroup(Path::new(c));
    }

    for (p, existed) in &before.paths {
        if !existed && Path::new(p).exists() {
            let _ = fs::remove_dir_all(p).or_else(|_| fs::remove_file(p));
        }
    }
    // The kubelet recreates /var/log/containers symlinks as pods start;
    // dangling ones left in a directory that existed before are ours.
    if before.paths.get("/var/log/containers") == Some(&true)
        && let Ok(entries) = fs::read_dir("/var/log/containers")
    {
        for e in entries.flatten() {
            if fs::read_link(e.path()).is_ok_and(|t| t.starts_with(&record.dir)) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let _ = fs::remove_dir_all(&record.dir);
}

fn restore_iptables(cmd: &str, was: &[String]) {
    let Some(now) = iptables_state(cmd) else {
        return;
    };
    let added = multiset_minus(&now, was);
    if added.is_empty() {
        return;
    }
    // Rules before chains: a chain can be deleted only when nothing jumps to it.
    let mut per_table: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for l in added {
        let (table, rest) = l.split_once(' ').unwrap_or(("filter", &l));
        let entry = per_table.entry(table.to_string()).or_default();
        if let Some(rule) = rest.strip_prefix("-A ") {
            entry.0.push(format!("-D {rule}"));
        } else if let Some(chain) = rest.strip_prefix(':') {
            let name = chain.split_whitespace().next().unwrap_or("");
            if ["INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"].contains(&name) {
                entry.1.push(format!("-P {name} ACCEPT"));
            } else {
                entry.1.push(format!("-F {name}"));
                entry.1.push(format!("-X {name}"));
            }
        }
    }
    let mut input = String::new();
    for (table, (rules, chains)) in per_table {
        input.push_str(&format!("*{table}\n"));
        for l in rules.iter().chain(chains.iter()) {
            input.push_str(l);
            input.push('\n');
        }
        input.push_str("COMMIT\n");
    }
    let child = Command::new(format!("{cmd}-restore"))
        .args(["--noflush", "-w"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    if let Ok(mut child) = child {
        use std::io::Write;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes());
        }
        if let Ok(out) = child.wait_with_output()
            && !out.status.success()
        {
            eprintln!(
                "node teardown: {cmd}-restore failed: {}\n{input}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Processes whose command line names the node's directory: containerd,
/// its shims, the kubelet and the controllers.
fn processes_of(dir: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(dir))
        })
        .collect()
}

fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut out = vec![];
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(cgroup_pids(&e.path()));
            }
        }
    }
    out
}

fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

fn kill(pid: i32) {
    // SAFETY: kill(2) with a pid read from /proc or a cgroup.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

fn record_path() -> PathBuf {
    std::env::temp_dir().join(RECORD_FILE)
}

/// A record left by a test process that died before its teardown ran.
fn restore_leftovers() {
    let path = record_path();
    let Ok(text) = fs::read_to_string(&path) else {
        return;
    };
    match serde_json::from_str::<Record>(&text) {
        Ok(record) => {
            eprintln!(
                "node: restoring the host after an earlier run (pid {}) that did not tear down",
                record.owner_pid
            );
            restore(&record);
        }
        Err(e) => eprintln!("node: ignoring unreadable {}: {e}", path.display()),
    }
    let _ = fs::remove_file(&path);
}

// ---------------------------------------------------------------------------
// Preconditions.

/// Why this machine cannot run the node, or None.
fn unsupported() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (the kubelet, containerd and the bridge need root)".into());
    }
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("overlay"))
    {
        return Some("the kernel has no overlay filesystem (containerd's snapshotter)".into());
    }
    let hierarchies = cgroup_hierarchies();
    let has = |c: &str| {
        hierarchies.iter().any(|h| h.ends_with(c))
            || fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                .is_ok_and(|s| s.split_whitespace().any(|x| x == c))
    };
    if !has("memory") || !has("cpu") || !has("pids") {
        return Some(format!(
            "no usable cgroup hierarchy with memory, cpu and pids controllers (found {hierarchies:?})"
        ));
    }
    if !Path::new("/sys/class/net").exists() {
        return Some("no /sys/class/net".into());
    }
    None
}

/// Installs the Debian packages the node needs when a program is missing.
fn ensure_packages() -> Result<(), String> {
    let missing = |p: &str| {
        !["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|d| Path::new(d).join(p).exists())
    };
    if !missing("containerd")
        && !missing("runc")
        && !missing("iptables")
        && !missing("ip")
        && !missing("gcc")
        && Path::new(CNI_BIN_DIR).join("bridge").exists()
    {
        return Ok(());
    }
    if missing("apt-get") {
        return Err("containerd/runc/CNI plugins are missing and there is no apt-get".into());
    }
    eprintln!("node: installing {DEBIAN_PACKAGES:?} with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(DEBIAN_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
    };
    let mut out = install().map_err(|e| format!("apt-get: {e}"))?;
    if !out.status.success() {
        let _ = Command::new("apt-get")
            .arg("update")
            .stdin(Stdio::null())
            .output();
        out = install().map_err(|e| format!("apt-get: {e}"))?;
    }
    if !out.status.success() {
        return Err(format!(
            "apt-get install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The node.

/// Images built by `scripts/image.sh` and imported into containerd.
#[derive(Debug, Clone)]
pub struct Images {
    /// Full name of the operator image (docker.io/library/…:dev-…).
    pub operator: String,
    pub pause: String,
}

pub struct Node {
    pub cluster: TestCluster,
    pub images: Images,
    procs: Vec<Proc>,
    record: Option<Record>,
    dir: PathBuf,
    // Held for the node's lifetime; released when the file closes.
    _lock: File,
}

impl Node {
    /// Builds the images, installs what is missing, starts the control
    /// plane, containerd, the kubelet and the controllers, and waits until
    /// the node is Ready. `None` (after printing why) where this machine
    /// cannot run pods.
    pub async fn start() -> Option<Node> {
        if let Some(why) = unsupported() {
            eprintln!("SKIPPED: no node on this machine: {why}");
            return None;
        }
        if let Err(why) = ensure_packages() {
            eprintln!("SKIPPED: no node on this machine: {why}");
            return None;
        }
        let bins = binaries();
        for b in ["kubelet", "kube-controller-manager", "kube-scheduler"] {
            assert!(
                bins.dir.join(b).is_file(),
                "{} has no {b}: the control-plane build predates the node tier (unset IMAGELABEL_CP_BIN_DIR)",
                bins.dir.display()
            );
        }
        let images = build_images();

        let lock = File::create(std::env::temp_dir().join(LOCK_FILE)).expect("node lock file");
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            eprintln!("node: another test process has a node; waiting for it");
            // SAFETY: as above, blocking.
            unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        }
        restore_leftovers();
        sweep_stale_dirs();

        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .expect("node temp dir")
            .keep();
        let record = Record {
            owner_pid: std::process::id(),
            dir: dir.clone(),
            before: HostState::capture(),
        };
        fs::write(
            record_path(),
            serde_json::to_vec_pretty(&record).expect("record"),
        )
        .expect("write the node record");

        // From here on, drop restores the host whatever fails.
        let started = Instant::now();
        let mut node = NodeSetup {
            record: Some(record),
            procs: vec![],
            dir: dir.clone(),
        };
        node.network();
        let cluster = TestCluster::start_with(&ClusterOptions {
            advertise_address: Some(NODE_IP),
            extra_ip_sans: vec![NODE_IP],
            service_account_admission: true,
            kubelet_client: true,
        })
        .await;
        node.service_nat(cluster.api_port());
        node.containerd(&images);
        node.import(&images);
        node.controllers(&cluster);
        node.kubelet(&cluster);
        let node = Node {
            cluster,
            images,
            procs: std::mem::take(&mut node.procs),
            record: node.record.take(),
            dir,
            _lock: lock,
        };
        node.wait_ready().await;
        eprintln!("node ready in {:.1?}", started.elapsed());
        Some(node)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn kubectl_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cluster.kubectl_ok(args)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let out = self.cluster.kubectl([
                "get",
                "node",
                NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            if String::from_utf8_lossy(&out.stdout).trim() == "True" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {NODE_NAME} not Ready after 180 s: {}\n{}\n{}",
                self.cluster.kubectl_ok(["get", "node", "-o", "yaml"]),
                log_tail("kubelet", &self.dir.join("kubelet.log")),
                log_tail("containerd", &self.dir.join("containerd.log")),
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Log tails of the node's processes, for failure messages.
    pub fn logs(&self) -> String {
        [
            "kubelet",
            "containerd",
            "kube-controller-manager",
            "kube-scheduler",
        ]
        .iter()
        .map(|n| log_tail(n, &self.dir.join(format!("{n}.log"))))
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// Stops everything and restores the host; returns what still differs
    /// from before the node started (empty: nothing).
    pub fn teardown(mut self) -> Vec<String> {
        self.stop()
    }

    fn stop(&mut self) -> Vec<String> {
        // The kubelet first, so it does not restart what is being removed.
        for p in self.procs.iter_mut().rev() {
            p.kill();
        }
        self.procs.clear();
        let Some(record) = self.record.take() else {
            return vec![];
        };
        restore(&record);
        let _ = fs::remove_file(record_path());
        let mut left = HostState::capture().differences(&record.before);
        for pid in processes_of(&record.dir.display().to_string()) {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            left.push(format!(
                "process {pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
        left
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let left = self.stop();
        if !left.is_empty() {
            eprintln!("node teardown left host changes behind: {left:#?}");
        }
    }
}

/// A node being set up: restores the host if setup panics halfway.
struct NodeSetup {
    record: Option<Record>,
    procs: Vec<Proc>,
    dir: PathBuf,
}

impl Drop for NodeSetup {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            p.kill();
        }
        if let Some(record) = self.record.take() {
            if std::thread::panicking() {
                for n in ["containerd", "kubelet", "kube-controller-manager"] {
                    eprintln!("{}", log_tail(n, &self.dir.join(format!("{n}.log"))));
                }
            }
            restore(&record);
            let _ = fs::remove_file(record_path());
        }
    }
}

impl NodeSetup {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    fn spawn(&mut self, name: &'static str, program: &Path, args: Vec<String>) {
        let log = self.path(&format!("{name}.log"));
        let p = Proc::spawn(name, program, &args, &log)
            .unwrap_or_else(|e| panic!("start {name}: {e:#}"));
        self.procs.push(p);
    }

    /// The bridge with the node IP, and rules that keep pods on this host:
    /// nothing is forwarded to or from the bridge.
    fn network(&mut self) {
        sh_ok("ip", &["link", "add", BRIDGE, "type", "bridge"]);
        sh_ok(
            "ip",
            &["addr", "add", &format!("{NODE_IP}/24"), "dev", BRIDGE],
        );
        sh_ok("ip", &["link", "set", BRIDGE, "up"]);
        let _ = write_sysctl("net/ipv4/ip_forward", "0");
        for dir in ["-i", "-o"] {
            sh_ok(
                "iptables",
                &[
                    "-w",
                    "-I",
                    "FORWARD",
                    dir,
                    BRIDGE,
                    "-m",
                    "comment",
                    "--comment",
                    "imagelabel-node: no egress",
                    "-j",
                    "DROP",
                ],
            );
        }
    }

    /// Pods reach the API server at the `kubernetes` Service address (there
    /// is no kube-proxy): DNAT to its loopback port, which the kernel routes
    /// from the bridge only with route_localnet.
    fn service_nat(&mut self, api_port: u16) {
        write_sysctl(&format!("net/ipv4/conf/{BRIDGE}/route_localnet"), "1")
            .expect("route_localnet on the bridge");
        sh_ok(
            "iptables",
            &[
                "-w",
                "-t",
                "nat",
                "-I",
                "PREROUTING",
                "-i",
                BRIDGE,
                "-d",
                &format!("{SERVICE_IP}/32"),
                "-p",
                "tcp",
                "--dport",
                "443",
                "-m",
                "comment",
                "--comment",
                "imagelabel-node: kubernetes service",
                "-j",
                "DNAT",
                "--to-destination",
                &format!("127.0.0.1:{api_port}"),
            ],
        );
    }

    fn containerd(&mut self, images: &Images) {
        let d = self.path("containerd");
        let cni = self.path("cni");
        fs::create_dir_all(&cni).expect("cni conf dir");
        fs::write(
            cni.join("10-imagelabel.conflist"),
            serde_json::to_string_pretty(&serde_json::json!({
                "cniVersion": "0.4.0",
                "name": "imagelabel",
                "plugins": [{
                    "type": "bridge",
                    "bridge": BRIDGE,
                    // As a gateway the plugin would turn on ip_forward for
                    // every pod; the bridge already has the node IP, and the
                    // default route comes from IPAM instead.
                    "isGateway": false,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{
                            "subnet": POD_SUBNET,
                            "rangeStart": "10.244.0.10",
                            "rangeEnd": "10.244.0.250",
                            "gateway": NODE_IP.to_string(),
                        }]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": self.path("cni-ipam"),
                    },
                }],
            }))
            .unwrap(),
        )
        .expect("cni config");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{ttrpc}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # The VM lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Network namespaces in our state dir rather than /run/netns.
  netns_mounts_under_state_dir = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni}"
    max_conf_num = 1
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
            ttrpc = d.join("containerd.sock.ttrpc").display(),
            opt = d.join("opt").display(),
            pause = images.pause,
            cni_bin = CNI_BIN_DIR,
            cni = cni.display(),
        );
        fs::create_dir_all(&d).expect("containerd dir");
        let config_path = d.join("config.toml");
        fs::write(&config_path, config).expect("containerd config");
        self.spawn(
            "containerd",
            Path::new("/usr/bin/containerd"),
            vec![format!("--config={}", config_path.display())],
        );
        let sock = d.join("containerd.sock");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ctr(&sock, &["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer within 60 s\n{}",
                log_tail("containerd", &self.path("containerd.log"))
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn import(&mut self, images: &Images) {
        let sock = self.path("containerd/containerd.sock");
        for (name, tar) in [
            (&images.operator, image_tarball(&images.operator)),
            (&images.pause, image_tarball(&images.pause)),
        ] {
            let out = ctr(
                &sock,
                &[
                    "-n",
                    "k8s.io",
                    "images",
                    "import",
                    &tar.display().to_string(),
                ],
            );
            assert_success(&format!("ctr images import {}", tar.display()), &out);
            let list = assert_success(
                "ctr images ls",
                &ctr(&sock, &["-n", "k8s.io", "images", "ls", "-q"]),
            );
            assert!(
                list.lines().any(|l| l.trim() == name),
                "{name} not among the imported images: {list}"
            );
        }
    }

    fn controllers(&mut self, cluster: &TestCluster) {
        let bins = binaries();
        let kubeconfig = cluster.kubeconfig().display().to_string();
        let pki = cluster.dir().join("pki");
        self.spawn(
            "kube-controller-manager",
            &bins.dir.join("kube-controller-manager"),
            vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                // Pods with token volumes need kube-root-ca.crt.
                format!("--root-ca-file={}", pki.join("ca.crt").display()),
                format!(
                    "--service-account-private-key-file={}",
                    pki.join("sa.key").display()
                ),
                "--use-service-account-credentials=false".into(),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
            ],
        );
        self.spawn(
            "kube-scheduler",
            &bins.dir.join("kube-scheduler"),
            vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
            ],
        );
    }

    fn kubelet(&mut self, cluster: &TestCluster) {
        let resolv = self.path("resolv.conf");
        // Pods get no name server that leads anywhere.
        fs::write(&resolv, "nameserver 127.0.0.1\n").expect("resolv.conf");
        let config = serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP.to_string(),
            "port": 10250,
            "readOnlyPort": 0,
            "healthzPort": 0,
            "authentication": {
                "anonymous": {"enabled": false},
                "webhook": {"enabled": false},
                "x509": {"clientCAFile": cluster.ca_cert()},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": format!("unix://{}", self.path("containerd/containerd.sock").display()),
            "failSwapOn": false,
            "failCgroupV1": false,
            // Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this VM lacks.
            "oomScoreAdj": 0,
            "resolvConf": resolv,
            "podLogsDir": self.path("pod-logs"),
            "protectKernelDefaults": false,
            // The test machines' disks are often fuller than the defaults allow.
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.inodesFree": "1%",
            },
            // The imported images cannot be pulled again: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": false,
            "nodeStatusReportFrequency": "10s",
            "maxPods": 30,
            "syncFrequency": "10s",
        });
        let config_path = self.path("kubelet.yaml");
        fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap())
            .expect("kubelet config");
        let bins = binaries();
        self.spawn(
            "kubelet",
            &bins.dir.join("kubelet"),
            vec![
                format!("--config={}", config_path.display()),
                format!("--kubeconfig={}", cluster.kubeconfig().display()),
                format!("--root-dir={}", self.path("kubelet").display()),
                format!("--cert-dir={}", self.path("kubelet-pki").display()),
                format!("--hostname-override={NODE_NAME}"),
                format!("--node-ip={NODE_IP}"),
                "--v=1".into(),
            ],
        );
    }
}

fn ctr(sock: &Path, args: &[&str]) -> Output {
    Command::new("ctr")
        .arg("--address")
        .arg(sock)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ctr")
}

/// Image name → tarball, as `scripts/image.sh build` printed them.
fn image_tarball(name: &str) -> PathBuf {
    built_images()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| panic!("no tarball for {name}"))
}

fn built_images() -> &'static Vec<(String, PathBuf)> {
    static BUILT: std::sync::OnceLock<Vec<(String, PathBuf)>> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/image.sh");
        let started = Instant::now();
        let out = image_script_command(&script)
            .arg("build")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/image.sh");
        let text = assert_success("scripts/image.sh build", &out);
        eprintln!("images built in {:.1?}", started.elapsed());
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, p)| (n.to_string(), PathBuf::from(p)))
            .collect()
    })
}

/// `bash scripts/image.sh`, building in this test's target dir (cargo
/// tells integration tests only its tmp dir inside it), so the release
/// build is shared with `cargo build --release`.
pub fn image_script_command(script: &Path) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(script);
    // The binary this test run built, unless the release one is asked for
    // (`IMAGELABEL_IMAGE_PROFILE=release`): see scripts/image.sh.
    if std::env::var("IMAGELABEL_IMAGE_PROFILE").as_deref() != Ok("release")
        && std::env::var_os("IMAGELABEL_IMAGE_BINARY").is_none()
    {
        cmd.env("IMAGELABEL_IMAGE_BINARY", env!("CARGO_BIN_EXE_imagelabel"));
    }
    if std::env::var_os("CARGO_TARGET_DIR").is_none()
        && let Some(target) = Path::new(env!("CARGO_TARGET_TMPDIR")).parent()
    {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    cmd
}

fn build_images() -> Images {
    let built = built_images();
    let find = |repo: &str| {
        built
            .iter()
            .find(|(n, _)| n.starts_with(repo))
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| panic!("scripts/image.sh built no {repo}: {built:?}"))
    };
    Images {
        operator: find("docker.io/library/imagelabel-operator:"),
        pause: find("docker.io/library/imagelabel-pause:"),
    }
}

/// Node dirs whose record is gone (torn down but not removed, e.g. kept
/// open by a mount at the time) are removed.
fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}
