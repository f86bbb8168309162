//! The lifecycle operations, each a small function over the state folder and the process:
//! create, start, kill, delete, run, and the live status of a container.

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod exposure;
pub mod kill;
pub mod pause;
pub mod ps;
pub mod run;
pub mod start;
pub mod update;
pub mod wait;

use std::path::Path;

use serde_json::json;

use crate::cgroups::CgroupError;
use crate::hooks::HookError;
use crate::namespaces::NamespaceError;
use crate::process::ProcessError;
use crate::rootfs::RootfsError;
use crate::spec::SpecError;
use crate::state::{State, StateError, Status};

pub use create::{create, CreateOptions};
pub use delete::delete;
pub use exec::{exec, ExecOptions};
pub use kill::{kill, parse_signal, probe};
pub use pause::{pause, resume};
pub use run::run;
pub use start::start;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    #[error(transparent)]
    IdMap(#[from] crate::idmap::IdMapError),
    #[error(transparent)]
    Exposure(#[from] exposure::ExposureError),
    #[error("container {id:?} could not be created: {reason}")]
    Init { id: String, reason: String },
    #[error("cannot {what} for container {id:?}: {source}")]
    Sys {
        id: String,
        what: &'static str,
        source: nix::errno::Errno,
    },
    #[error("container {id:?} could not start: {reason}")]
    StartFailed { id: String, reason: String },
    #[error("cannot start container {id:?}: it is {status}")]
    NotCreated { id: String, status: Status },
    #[error("cannot delete container {id:?} that is not stopped: {status}")]
    NotStopped { id: String, status: Status },
    #[error("cannot {action} container {id:?}: it has no cgroup of its own ({reason})")]
    NoCgroup {
        id: String,
        action: &'static str,
        reason: String,
    },
    #[error("cannot signal container {id:?}: container not running")]
    NotRunning { id: String },
    #[error("{0:?} is not a signal")]
    BadSignal(String),
    #[error("cannot {action} container {id:?}: it is {status}")]
    WrongStatus {
        id: String,
        action: &'static str,
        status: Status,
    },
    #[error("{value:?} is not a valid {what}: expected {expected}")]
    BadValue {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("cannot write pid file {path}: {source}")]
    PidFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

/// Maps a failed system call to the container's error, saying what berth was doing.
pub(crate) fn sys<'a>(
    id: &'a str,
    what: &'static str,
) -> impl FnOnce(nix::errno::Errno) -> ContainerError + 'a {
    move |source| ContainerError::Sys {
        id: id.to_string(),
        what,
        source,
    }
}

/// What /proc/PID/stat says about a process: whether it still runs and when it started.
pub fn process_start_time(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let stat = crate::procfs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Whether the container's init is the process recorded at create (not a reused pid) and alive.
pub fn init_alive(state: &State) -> bool {
    match process_start_time(state.pid) {
        Some((proc_state, start)) => {
            start == state.pid_start && proc_state != 'Z' && proc_state != 'X'
        }
        None => false,
    }
}

/// The pids of the container's processes: those in its cgroup, or, for a rootless container
/// with no cgroup of its own, those in the pid namespace its init made (all of them end with the
/// init), or without one the init and its descendants.
pub fn processes(state: &State) -> Result<Vec<i32>, ContainerError> {
    if state.cgroup.absence().is_none() || !state.cgroup.dirs.is_empty() {
        return Ok(crate::cgroups::manager(&state.cgroup).pids()?);
    }
    if !init_alive(state) {
        return Ok(Vec::new());
    }
    let namespace = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let mut pids: Vec<i32> = Vec::new();
    let all: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .map_err(|e| ContainerError::Unsupported(format!("cannot read /proc: {e}")))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    if state.own_pid_namespace {
        let init_ns = namespace(state.pid);
        pids.extend(
            all.iter()
                .map(|&(pid, _)| pid)
                .filter(|&pid| init_ns.is_some() && namespace(pid) == init_ns),
        );
    } else {
        pids.push(state.pid);
        let mut i = 0;
        while i < pids.len() {
            let parent = pids[i];
            pids.extend(
                all.iter()
                    .filter(|&&(_, p)| p == parent)
                    .map(|&(pid, _)| pid),
            );
            i += 1;
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// The parent of process `pid`, from /proc/PID/stat.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
}

/// The container's live status.
pub fn status(state: &State, dir: &Path) -> Status {
    if state.status == Status::Creating {
        return if init_alive(state) || state.pid == 0 {
            Status::Creating
        } else {
            Status::Stopped
        };
    }
    if !init_alive(state) {
        return Status::Stopped;
    }
    if dir.join(crate::state::EXEC_FIFO).exists() {
        return Status::Created;
    }
    if crate::cgroups::manager(&state.cgroup).is_frozen() {
        return Status::Paused;
    }
    Status::Running
}

/// The OCI state JSON of a container, with runc's extra fields (rootfs, created, owner).
pub fn oci_state(state: &State, status: Status) -> serde_json::Value {
    let pid = if status == Status::Stopped {
        0
    } else {
        state.pid
    };
    json!({
        "ociVersion": state.oci_version,
        "id": state.id,
        "status": status,
        "pid": pid,
        "bundle": state.bundle,
        "rootfs": state.rootfs,
        "created": state.created,
        "owner": state.owner,
        "annotations": state.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive() {
        let (state, start) = process_start_time(std::process::id() as i32).unwrap();
        assert!(state == 'R' || state == 'S');
        assert!(start > 0);
        assert!(process_start_time(0).is_none());
        assert!(process_start_time(i32::MAX).is_none());
    }
}
