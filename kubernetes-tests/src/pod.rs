//! Pods as kubelet makes them: the sandbox and container configurations it sends (metadata,
//! labels, log paths, cgroup parent, namespace options), and the order in which it tears a pod
//! down. Each pod remembers what it is made of on the host (its footprint) and, once removed,
//! checks that every piece is gone.

use crate::cri::{image_spec, Cri};
use crate::host::{self, Process, RuntimeCli};
use anyhow::{anyhow, bail, Context, Result};
use k8s_cri::v1::*;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What every case needs to know about the node.
pub struct Node {
    pub cri: Cri,
    /// The runtime handler pods ask for (`runtime_handler`, a RuntimeClass's `handler`).
    pub handler: String,
    /// How the results name this run (the handler, and the lane when there are several).
    pub label: String,
    /// The runtime's command line and the `--root` its shim gives it.
    pub runtime: RuntimeCli,
    /// Where a wrapper records the runtime calls (handlers on containerd's runc shim).
    pub calls: Option<PathBuf>,
    /// The shim's binary name, whose processes name their sandbox (`-id ID`).
    pub shim: String,
    pub image: String,
    /// The pods' log directories go below this (kubelet's /var/log/pods).
    pub logs: PathBuf,
    /// The cgroup under which each pod gets its own (kubelet's /kubepods).
    pub cgroup_parent: String,
    /// The start of every pod address on the CNI network (`10.244.0.`).
    pub pod_prefix: String,
    /// host-local's lease folder for the CNI network.
    pub leases: PathBuf,
}

/// The pod-level settings of a case's pod.
pub struct PodSpec {
    pub name: String,
    pub host_network: bool,
}

/// Kubelet's namespace options: network and IPC of the pod (or the node's, for hostNetwork),
/// PID per container.
fn namespace_options(host_network: bool) -> NamespaceOption {
    let pod_or_node = if host_network {
        NamespaceMode::Node
    } else {
        NamespaceMode::Pod
    };
    NamespaceOption {
        network: pod_or_node as i32,
        ipc: pod_or_node as i32,
        pid: NamespaceMode::Container as i32,
        ..Default::default()
    }
}

/// What a container runs and with which limits.
pub struct ContainerSpec<'a> {
    pub name: &'a str,
    pub attempt: u32,
    pub command: Vec<String>,
    pub resources: Option<LinuxContainerResources>,
}

impl<'a> ContainerSpec<'a> {
    /// A container running `sh -c SCRIPT`, attempt 0, no limits.
    pub fn shell(name: &'a str, script: &str) -> Self {
        ContainerSpec {
            name,
            attempt: 0,
            command: vec!["sh".into(), "-c".into(), script.into()],
            resources: None,
        }
    }
}

/// A pod on the node: its sandbox, its containers, and what they are made of on the host.
pub struct Pod<'n> {
    node: &'n Node,
    pub name: String,
    pub config: PodSandboxConfig,
    pub id: String,
    sandbox: Option<Process>,
    pub containers: Vec<String>,
    footprint: Footprint,
    removed: bool,
}

/// What a pod is made of on the host, to check that all of it is gone once the pod is removed.
#[derive(Default)]
struct Footprint {
    ids: Vec<String>,
    processes: Vec<Process>,
    cgroups: Vec<PathBuf>,
    netns: Option<String>,
    veths: Vec<String>,
    lease: Option<PathBuf>,
    pod_cgroup: String,
}

impl<'n> Pod<'n> {
    /// RunPodSandbox, as kubelet does for a new pod, then PodSandboxStatus: it must be ready.
    pub fn run(node: &'n Node, spec: PodSpec) -> Result<Self> {
        let uid = format!("{:016x}", rand_u64());
        let namespace = "berth-tests";
        let log_directory = node.logs.join(format!("{namespace}_{}_{uid}", spec.name));
        fs::create_dir_all(&log_directory)?;
        let pod_cgroup = format!("{}/pod{uid}", node.cgroup_parent);
        let labels = HashMap::from([
            ("io.kubernetes.pod.name".to_string(), spec.name.clone()),
            (
                "io.kubernetes.pod.namespace".to_string(),
                namespace.to_string(),
            ),
            ("io.kubernetes.pod.uid".to_string(), uid.clone()),
        ]);
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: spec.name.clone(),
                uid: uid.clone(),
                namespace: namespace.to_string(),
                attempt: 0,
            }),
            // kubelet leaves the hostname to the node's for hostNetwork pods.
            hostname: if spec.host_network {
                String::new()
            } else {
                spec.name.clone()
            },
            log_directory: log_directory.to_string_lossy().into_owned(),
            labels,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: pod_cgroup.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespace_options(spec.host_network)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let veths_before = host::links(Some("veth"))?;
        let id = node.cri.run_pod_sandbox(&config, &node.handler)?;
        // From here on the pod exists: whatever fails below, Drop removes it.
        let mut pod = Pod {
            node,
            name: spec.name,
            config,
            id: id.clone(),
            sandbox: None,
            containers: Vec::new(),
            footprint: Footprint {
                ids: vec![id.clone()],
                pod_cgroup,
                ..Default::default()
            },
            removed: false,
        };
        let (status, info) = node.cri.pod_sandbox_status(&id)?;
        if status.state != PodSandboxState::SandboxReady as i32 {
            bail!(
                "sandbox {id} is not ready after RunPodSandbox: state {}",
                status.state
            );
        }
        let info = parse_info(&info)?;
        let sandbox = Process::of(pid_of(&info)?)?;
        pod.footprint.processes.push(sandbox.clone());
        pod.footprint.cgroups.extend(sandbox.cgroup_dirs()?);
        pod.sandbox = Some(sandbox);
        pod.footprint.netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|ns| ns["type"] == "network")
            .and_then(|ns| ns["path"].as_str())
            .map(str::to_string);
        pod.footprint.veths = host::links(Some("veth"))?
            .into_iter()
            .filter(|name| !veths_before.contains(name))
            .collect();
        if let Some(ip) = status
            .network
            .as_ref()
            .map(|n| n.ip.clone())
            .filter(|ip| !ip.is_empty())
        {
            pod.footprint.lease = Some(node.leases.join(ip));
        }
        Ok(pod)
    }

    /// The sandbox's process (the pause container's).
    pub fn sandbox(&self) -> &Process {
        self.sandbox
            .as_ref()
            .expect("a running pod has a sandbox process")
    }

    /// The pod's address on the CNI network, as PodSandboxStatus reports it ("" for hostNetwork).
    pub fn ip(&self) -> Result<String> {
        let (status, _) = self.node.cri.pod_sandbox_status(&self.id)?;
        Ok(status.network.map(|n| n.ip).unwrap_or_default())
    }

    pub fn netns_path(&self) -> Option<&str> {
        self.footprint.netns.as_deref()
    }

    pub fn veths(&self) -> &[String] {
        &self.footprint.veths
    }

    /// CreateContainer, with the configuration kubelet sends: metadata, image, command, the log
    /// path `NAME/ATTEMPT.log` under the pod's log directory, resources, and the pod's
    /// namespace options.
    pub fn create(&mut self, spec: &ContainerSpec) -> Result<String> {
        let host_network = self
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .is_some_and(|n| n.network == NamespaceMode::Node as i32);
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: spec.name.to_string(),
                attempt: spec.attempt,
            }),
            image: Some(image_spec(&self.node.image)),
            command: spec.command.clone(),
            log_path: format!("{}/{}.log", spec.name, spec.attempt),
            labels: HashMap::from([
                (
                    "io.kubernetes.container.name".to_string(),
                    spec.name.to_string(),
                ),
                ("io.kubernetes.pod.name".to_string(), self.name.clone()),
            ]),
            linux: Some(LinuxContainerConfig {
                resources: spec.resources.clone(),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(namespace_options(host_network)),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let id = self
            .node
            .cri
            .create_container(&self.id, &config, &self.config)?;
        self.containers.push(id.clone());
        self.footprint.ids.push(id.clone());
        Ok(id)
    }

    /// StartContainer, then ContainerStatus until it runs (or has run); returns its process
    /// while it runs.
    pub fn start(&mut self, id: &str) -> Result<Option<Process>> {
        self.node.cri.start_container(id)?;
        let (status, info) = self.node.cri.container_status(id)?;
        if status.state != ContainerState::ContainerRunning as i32 {
            return Ok(None);
        }
        let process = match Process::of(pid_of(&parse_info(&info)?)?) {
            Ok(process) => process,
            Err(_) => return Ok(None), // it ended in the meantime
        };
        self.footprint.processes.push(process.clone());
        self.footprint
            .cgroups
            .extend(process.cgroup_dirs().unwrap_or_default());
        Ok(Some(process))
    }

    /// Create and start; the container must be running.
    pub fn run_container(&mut self, spec: &ContainerSpec) -> Result<(String, Process)> {
        let id = self.create(spec)?;
        let process = self.start(&id)?.ok_or_else(|| {
            anyhow!(
                "container {} is not running after StartContainer",
                spec.name
            )
        })?;
        Ok((id, process))
    }

    /// The container's log file, as ContainerStatus reports it.
    pub fn log_path(&self, id: &str) -> Result<PathBuf> {
        let (status, _) = self.node.cri.container_status(id)?;
        Ok(PathBuf::from(status.log_path))
    }

    /// Polls ContainerStatus until the container has exited (10 s); returns its status.
    pub fn wait_exited(&self, id: &str) -> Result<ContainerStatus> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, _) = self.node.cri.container_status(id)?;
            if status.state == ContainerState::ContainerExited as i32 {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "container {id} has not exited after 10 s: state {}",
                    status.state
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// RemoveContainer of one container (kubelet's garbage collection of a dead container).
    pub fn remove_container(&mut self, id: &str) -> Result<()> {
        self.node.cri.remove_container(id)?;
        self.containers.retain(|c| c != id);
        Ok(())
    }

    /// Tears the pod down the way kubelet does: StopContainer for each container (SIGTERM, a
    /// grace period of 2 s, then SIGKILL), StopPodSandbox; then, as its garbage collector does,
    /// RemoveContainer for each and RemovePodSandbox; then the pod's cgroup is removed (kubelet
    /// owns it). Then every piece of the pod's footprint must be gone.
    pub fn remove(mut self) -> Result<()> {
        self.tear_down()?;
        self.removed = true;
        self.check_gone()
    }

    fn tear_down(&mut self) -> Result<()> {
        let cri = &self.node.cri;
        for id in &self.containers {
            cri.stop_container(id, Duration::from_secs(2))?;
        }
        cri.stop_pod_sandbox(&self.id)?;
        for id in &self.containers {
            cri.remove_container(id)?;
        }
        cri.remove_pod_sandbox(&self.id)?;
        self.containers.clear();
        Ok(())
    }

    /// Checks that nothing of the pod is left: no process (nor its shim), mount, cgroup,
    /// network namespace, veth, address lease or runtime state.
    fn check_gone(&self) -> Result<()> {
        let mut left = Vec::new();
        let footprint = &self.footprint;
        for process in &footprint.processes {
            if process.alive() {
                left.push(format!("process {}", process.pid));
            }
        }
        left.extend(host::processes_mentioning(&format!("-id {}", self.id)));
        for line in host::mounts_mentioning(&footprint.ids)? {
            left.push(format!("mount {line}"));
        }
        // kubelet removes the pod's cgroup once the pod is gone; it fails while one is left
        // below it (EBUSY) or a process is in it.
        for dir in &footprint.cgroups {
            if dir.exists() {
                left.push(format!("cgroup {}", dir.display()));
            }
        }
        for dir in pod_cgroup_dirs(&footprint.pod_cgroup)? {
            if let Err(e) = fs::remove_dir(&dir) {
                left.push(format!("cgroup {} (cannot remove it: {e})", dir.display()));
            }
        }
        if let Some(netns) = &footprint.netns {
            if Path::new(netns).exists() {
                left.push(format!("network namespace {netns}"));
            }
        }
        let veths = host::links(Some("veth"))?;
        for veth in &footprint.veths {
            if veths.contains(veth) {
                left.push(format!("veth {veth}"));
            }
        }
        if let Some(lease) = &footprint.lease {
            if lease.exists() {
                left.push(format!("address lease {}", lease.display()));
            }
        }
        for id in &footprint.ids {
            let dir = self.node.runtime.state_dir(id);
            if dir.exists() {
                left.push(format!("runtime state {}", dir.display()));
            }
        }
        if !left.is_empty() {
            bail!(
                "pod {} was removed but left: {}",
                self.name,
                left.join("; ")
            );
        }
        Ok(())
    }

    /// What the footprint holds, for a case that shows it.
    pub fn describe_footprint(&self) -> String {
        let f = &self.footprint;
        format!(
            "{} processes, {} cgroup directories, network namespace {}, veths {:?}, lease {}, runtime state of {} containers",
            f.processes.len(),
            f.cgroups.len(),
            f.netns.as_deref().unwrap_or("(the node's)"),
            f.veths,
            f.lease.as_ref().map_or("(none)".into(), |l| l.display().to_string()),
            f.ids.len()
        )
    }
}

impl Drop for Pod<'_> {
    /// A case that failed half-way still removes its pod (the failure stands on its own).
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if let Err(e) = self.tear_down() {
            eprintln!("cri-cases: cannot tear pod {} down: {e:#}", self.name);
            // RemovePodSandbox alone stops and removes whatever is left of the pod.
            let cri = &self.node.cri;
            if let Err(e) = cri
                .stop_pod_sandbox(&self.id)
                .and_then(|()| cri.remove_pod_sandbox(&self.id))
            {
                eprintln!("cri-cases: cannot remove pod {}: {e:#}", self.name);
            }
        }
        for dir in pod_cgroup_dirs(&self.footprint.pod_cgroup).unwrap_or_default() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// The pod's cgroup directory in every hierarchy where it exists.
fn pod_cgroup_dirs(pod_cgroup: &str) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let relative = pod_cgroup.trim_start_matches('/');
    let candidates = std::iter::once(PathBuf::from("/sys/fs/cgroup")).chain(
        fs::read_dir("/sys/fs/cgroup")
            .context("cannot read /sys/fs/cgroup")?
            .flatten()
            .map(|e| e.path()),
    );
    for hierarchy in candidates {
        let dir = hierarchy.join(relative);
        // Comounted controllers appear twice (cpu and cpu,cpuacct): keep one.
        if dir.is_dir() && !dirs.iter().any(|d: &PathBuf| same_dir(d, &dir)) {
            dirs.push(dir);
        }
    }
    Ok(dirs)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// containerd's verbose `info`: one JSON object under the key `info`.
pub fn parse_info(info: &HashMap<String, String>) -> Result<serde_json::Value> {
    let text = info
        .get("info")
        .ok_or_else(|| anyhow!("the verbose status has no info"))?;
    serde_json::from_str(text).context("the verbose status's info is not JSON")
}

fn pid_of(info: &serde_json::Value) -> Result<u32> {
    info["pid"]
        .as_u64()
        .filter(|&pid| pid > 0)
        .map(|pid| pid as u32)
        .ok_or_else(|| anyhow!("the verbose status has no pid"))
}

/// A random number for pod uids, from the kernel.
fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if let Ok(data) = fs::read("/proc/sys/kernel/random/uuid") {
        for (i, b) in data
            .iter()
            .filter(|b| b.is_ascii_hexdigit())
            .take(16)
            .enumerate()
        {
            bytes[i / 2] = bytes[i / 2] << 4 | (*b as char).to_digit(16).unwrap_or(0) as u8;
        }
    }
    u64::from_be_bytes(bytes)
}
