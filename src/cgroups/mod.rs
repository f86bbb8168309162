//! Cgroups: where a container's cgroup lives on each layout (legacy v1, the hybrid layout of v1
//! controllers beside a cgroup2 mount, and unified v2), and what berth does with it (resources,
//! freezing, statistics, killing, removal), behind one `Manager` trait.

mod bpf;
mod dbus;
pub mod devices;
#[cfg(test)]
mod kernel_tests;
mod paths;
mod resources;
pub mod rootless;
pub mod stats;
pub mod systemd;
mod v1;
mod v2;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

pub use devices::DeviceRule;
pub use paths::{config_for, discover};
pub use resources::{
    check as check_resources, cpu_weight_from_shares, io_weight_from_blkio, normalize_pids,
    swap_max_v2,
};
pub use stats::Stats;

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read the cgroup layout from {path}: {source}")]
    Layout {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
    #[error("cgroupsPath {0:?} is not a valid cgroup path")]
    BadPath(String),
    #[error("cannot create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{field} needs the {controller} cgroup controller, which is not available in {dir}")]
    NoController {
        field: String,
        controller: String,
        dir: String,
    },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{field} is not supported on this host's cgroup layout ({layout}): {reason}")]
    Unsupported {
        field: String,
        layout: String,
        reason: String,
    },
    #[error(
        "cgroup {path} already holds {count} process(es): a container's cgroup must be its own"
    )]
    InUse { path: PathBuf, count: usize },
    #[error("cgroup {path} is frozen: the container's processes would freeze as they enter it")]
    Frozen { path: PathBuf },
    #[error("cgroup {path} is still {state} after {waited:?}")]
    Stuck {
        path: PathBuf,
        state: String,
        waited: Duration,
    },
    #[error("cannot {what} for cgroup {path}: {source}")]
    Bpf {
        what: &'static str,
        path: PathBuf,
        source: nix::errno::Errno,
    },
    #[error(transparent)]
    Systemd(#[from] systemd::SystemdError),
    #[error(
        "{field} cannot be applied: the container has no cgroup of its own for it, as berth runs \
         rootless ({reason}); run berth as root, or on cgroup v2 from a cgroup delegated to the user"
    )]
    NotDelegated { field: String, reason: String },
    #[error("the container has no cgroup of its own, which {action} needs ({reason})")]
    Absent {
        action: &'static str,
        reason: String,
    },
    #[error("cannot create cgroup {path}: {source} (berth runs rootless as {who}, and config.json's cgroupsPath asks for this cgroup, which is not delegated to it)")]
    RootlessDenied {
        path: PathBuf,
        source: std::io::Error,
        who: String,
    },
}

/// How the cgroup hierarchies of this host are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only v1 hierarchies.
    Legacy,
    /// v1 controllers, plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`) holding few or no
    /// controllers.
    Hybrid,
    /// cgroup2 alone at `/sys/fs/cgroup`.
    Unified,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Legacy => "cgroup v1",
            Layout::Hybrid => "hybrid v1 and v2",
            Layout::Unified => "cgroup v2",
        })
    }
}

/// One mounted hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// The v1 controllers it holds (`memory`, `name=systemd` …); empty for cgroup2.
    pub controllers: Vec<String>,
    /// Whether this is the cgroup2 hierarchy.
    pub v2: bool,
}

/// Where a container's cgroup is, kept in its state so later commands find it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupConfig {
    pub layout: Option<Layout>,
    /// The container's cgroup directory in each hierarchy, e.g. `/sys/fs/cgroup/memory/default/web`.
    pub dirs: Vec<(Hierarchy, PathBuf)>,
    /// The systemd scope that owns the cgroup, with `--systemd-cgroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<systemd::Scope>,
    /// The hierarchies where the container has no cgroup of its own (berth ran rootless and
    /// could not make one: see `rootless`), its processes staying in berth's caller's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
}

/// A hierarchy where a rootless container has no cgroup of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    pub hierarchy: Hierarchy,
    /// The cgroup the container's processes are in there: the one berth was started in.
    pub current: PathBuf,
    /// Why berth made none, e.g. `cannot create /sys/fs/cgroup/memory/web: Permission denied`.
    pub reason: String,
}

impl CgroupConfig {
    /// The container's directory in the cgroup2 hierarchy, if there is one.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(h, _)| h.v2)
            .map(|(_, d)| d.as_path())
    }

    /// The container's directory in the v1 hierarchy holding `controller`.
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(h, _)| !h.v2 && h.controllers.iter().any(|c| c == controller))
            .map(|(_, d)| d.as_path())
    }

    /// Why the container has no cgroup of its own in some hierarchy (`None`: it has one in each).
    pub fn absence(&self) -> Option<String> {
        let first = self.left_out.first()?;
        let more = match self.left_out.len() - 1 {
            0 => String::new(),
            1 => " (and in one more hierarchy)".to_string(),
            n => format!(" (and in {n} more hierarchies)"),
        };
        Some(format!("{}{more}", first.reason))
    }

    /// Each hierarchy with the folder a container sees as its cgroup there: its own, or where
    /// it stayed when it has none.
    pub fn shown(&self) -> Vec<(&Hierarchy, &Path)> {
        let mut shown: Vec<(&Hierarchy, &Path)> =
            self.dirs.iter().map(|(h, d)| (h, d.as_path())).collect();
        shown.extend(
            self.left_out
                .iter()
                .map(|l| (&l.hierarchy, l.current.as_path())),
        );
        shown
    }

    /// The mount point of the cgroup2 hierarchy, if there is one.
    fn unified_mount(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(h, _)| h.v2)
            .map(|(h, _)| h.mount_point.as_path())
    }
}

/// What berth does with a container's cgroup.
pub trait Manager {
    /// Makes the cgroup directories (on v2 with the controllers enabled on the way down).
    fn create(&self) -> Result<(), CgroupError>;
    /// Applies `linux.resources` and the device rules at create.
    fn apply(&self, resources: &LinuxResources, devices: &[DeviceRule]) -> Result<(), CgroupError>;
    /// Changes the limits of a running container; device rules stay as they were at create, as
    /// with runc.
    fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// Moves a process into the cgroup.
    fn add_process(&self, pid: i32) -> Result<(), CgroupError>;
    /// The pids of every process in the cgroup and below it.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// Stops every process in the cgroup (`pause`); returns once they are all stopped.
    fn freeze(&self) -> Result<(), CgroupError>;
    /// Lets them run again (`resume`).
    fn thaw(&self) -> Result<(), CgroupError>;
    /// Whether the cgroup is frozen (the container is paused).
    fn is_frozen(&self) -> bool;
    /// Memory, cpu, pids, block I/O and hugetlb figures.
    fn stats(&self) -> Result<Stats, CgroupError>;
    /// How many times the OOM killer has killed a process in the cgroup.
    fn oom_kills(&self) -> u64;
    /// Sends `signal` to every process in the cgroup: a frozen cgroup is signalled and thawed,
    /// so a paused container can be killed; a running one is frozen meanwhile, so no process
    /// forks away from the signal.
    fn kill_all(&self, signal: Signal) -> Result<(), CgroupError>;
    /// Removes the cgroup directories (the cgroup must be empty).
    fn remove(&self) -> Result<(), CgroupError>;
}

/// The manager for a container's cgroup.
pub fn manager(config: &CgroupConfig) -> Box<dyn Manager> {
    if config.dirs.is_empty() && config.systemd.is_none() {
        return Box::new(rootless::Outside::new(config));
    }
    let inner: Box<dyn Manager> = match config.layout {
        Some(Layout::Unified) => Box::new(v2::V2Manager::new(config.clone())),
        _ => Box::new(v1::V1Manager::new(config.clone())),
    };
    match &config.systemd {
        Some(scope) => Box::new(systemd::SystemdManager::new(scope.clone(), config, inner)),
        None => inner,
    }
}

/// Makes a container's directories in the cgroup2 hierarchy (hybrid hosts), or in the v1
/// hierarchies: `create` split in two, so that the v1 ones can be made after the clone, while the
/// init sets up (it is born in the cgroup2 one, which must exist before).
pub fn create_part(config: &CgroupConfig, v2: bool) -> Result<(), CgroupError> {
    for (hierarchy, dir) in config.dirs.iter().filter(|(h, _)| h.v2 == v2) {
        if hierarchy.v2 {
            v2::create_dir(&hierarchy.mount_point, dir, Some(&[]))?;
        } else {
            let is_cpuset = hierarchy.controllers.iter().any(|c| c == "cpuset");
            v1::create_dir(dir, is_cpuset)?;
        }
    }
    Ok(())
}

/// The v1 hierarchies' `tasks` files of a container's cgroup, opened for writing, so the
/// container's process can move itself in by writing `0` into each ([`join_self`]).
///
/// Moving another process (its pid into `cgroup.procs`) takes the kernel's global
/// threadgroup lock for writing, which waits for an RCU grace period: 5 to 25 ms on this
/// project's machines, once per create or exec. A single-threaded process moving itself through
/// `tasks` needs no such lock. cgroup2 has no such path (a thread may not leave its domain
/// there): cgroup2 directories are entered at birth with CLONE_INTO_CGROUP instead.
pub fn open_v1_tasks(config: &CgroupConfig) -> Result<Vec<std::os::fd::OwnedFd>, CgroupError> {
    config
        .dirs
        .iter()
        .filter(|(hierarchy, _)| !hierarchy.v2)
        .map(|(_, dir)| {
            let path = dir.join("tasks");
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map(std::os::fd::OwnedFd::from)
                .map_err(|source| CgroupError::Write {
                    path,
                    value: "0".into(),
                    source,
                })
        })
        .collect()
}

/// Moves the calling (single-threaded) process into each cgroup whose `tasks` file is open in
/// `tasks` (see [`open_v1_tasks`]).
pub fn join_self(tasks: &[std::os::fd::OwnedFd]) -> Result<(), nix::errno::Errno> {
    for file in tasks {
        nix::unistd::write(file, b"0")?;
    }
    Ok(())
}

/// Reads a cgroup file, trimmed.
pub(crate) fn read_file(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads a cgroup file holding one number; `max` reads as `u64::MAX`.
pub(crate) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let text = read_file(path)?;
    if text == "max" {
        return Ok(u64::MAX);
    }
    text.parse().map_err(|_| CgroupError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{text:?} is not a number"),
        ),
    })
}

/// Writes one value to a cgroup file.
pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Writes a controller's file for the spec field `field`: a missing file (which cgroupfs
/// reports as EACCES or ENOENT) means the controller is not there, which is said as such.
pub(crate) fn set(dir: &Path, file: &str, value: &str, field: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    match std::fs::write(&path, value) {
        Ok(()) => Ok(()),
        Err(_) if !path.exists() && dir.is_dir() => Err(CgroupError::NoController {
            field: field.to_string(),
            controller: file.split('.').next().unwrap_or(file).to_string(),
            dir: format!("{} (no {file})", dir.display()),
        }),
        Err(source) => Err(CgroupError::Write {
            path,
            value: value.to_string(),
            source,
        }),
    }
}

/// Refuses a cgroup that exists already and holds processes or is frozen, before berth makes or
/// changes anything in it, as runc does: another container's processes would become this one's
/// (its `kill --all` and `delete`, or a failed create's clean-up, would end them), and in a
/// frozen one the init would freeze as it enters, and `create` wait for ever.
pub fn check_unused(config: &CgroupConfig) -> Result<(), CgroupError> {
    for (hierarchy, dir) in &config.dirs {
        let procs = match std::fs::read_to_string(dir.join("cgroup.procs")) {
            Ok(procs) => procs,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CgroupError::Read {
                    path: dir.join("cgroup.procs"),
                    source,
                })
            }
        };
        let count = procs.lines().filter(|l| !l.trim().is_empty()).count();
        if count > 0 {
            return Err(CgroupError::InUse {
                path: dir.clone(),
                count,
            });
        }
        let frozen = match hierarchy.v2 {
            true => read_file(&dir.join("cgroup.freeze")).is_ok_and(|v| v == "1"),
            false => read_file(&dir.join("freezer.state")).is_ok_and(|v| v != "THAWED"),
        };
        if frozen {
            return Err(CgroupError::Frozen { path: dir.clone() });
        }
    }
    Ok(())
}

/// `key value` lines (memory.stat, cpu.stat …) as pairs; lines that are not are skipped.
pub(crate) fn read_keyed(path: &Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The value of `key` in a `key value` file, 0 when missing.
pub(crate) fn keyed(pairs: &[(String, u64)], key: &str) -> u64 {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or(0)
}

/// The pids in `cgroup.procs` of `dir` and of every cgroup below it.
pub(crate) fn procs_below(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let procs = dir.join("cgroup.procs");
        match std::fs::read_to_string(&procs) {
            Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CgroupError::Read {
                    path: procs,
                    source,
                })
            }
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// Sends `signal` to each pid; a process that is already gone is not an error.
pub(crate) fn signal_each(pids: &[i32], signal: Signal) {
    for pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), signal);
    }
}

/// Polls `done` until it holds, for at most `limit`; returns whether it did.
pub(crate) fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    let mut delay = Duration::from_micros(100);
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

/// Removes `dir` and the cgroups below it, deepest first. A cgroup whose last process is still
/// exiting reports EBUSY for a moment, so that is retried briefly.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let mut delay = Duration::from_micros(200);
    for attempt in 0.. {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // Cgroups below it (looked for only now: there rarely are any), or a last process
            // still exiting.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 30 => {
                if attempt == 0 {
                    if let Ok(entries) = std::fs::read_dir(dir) {
                        for entry in entries.filter_map(|e| e.ok()) {
                            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                                remove_tree(&entry.path())?;
                            }
                        }
                    }
                    continue;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
    unreachable!()
}
