//! Checkpoint and restore through CRIU. `checkpoint` saves a running container's processes
//! into an image folder (and removes the container unless `--leave-running`); `restore` makes a
//! container again from such a folder and a bundle. berth talks to CRIU over its RPC (`swrk`),
//! as runc and crun do, and does around it what CRIU cannot know:
//! - which mounts come from the host (bind mounts, the cgroup folders bound without a cgroup
//!   namespace, `/dev/null` over masked files): CRIU leaves them out of the image and binds
//!   them again at restore (`mounts`);
//! - the cgroup: the restored processes go into the container's cgroup, made anew;
//! - the network: CRIU neither saves nor restores a namespace of berth's own (`--empty-ns
//!   network` always, as runc): at restore berth wires the empty namespace CRIU made, in
//!   bridge mode with a new veth, the same address and MAC and the same published ports; a
//!   namespace joined by path (an engine's) is external, and the engine's new one is joined;
//! - the standard streams: pipes are handed to CRIU for the ones the container had, so a
//!   restored container writes to whoever called `restore`; a terminal comes back as a new pty
//!   whose master goes to `--console-socket`.
//!
//! What berth keeps for the restore lives beside CRIU's images, in `berth.json`.

mod dump;
mod mounts;
mod restore;
pub mod rpc;
mod swrk;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use dump::{checkpoint, CheckpointOptions};
pub use restore::{restore, RestoreOptions, Restored};

use crate::container::ContainerError;
use crate::network::NetworkState;
use crate::state::Status;

/// What berth saves beside CRIU's images.
pub const SAVED_FILE: &str = "berth.json";
const DUMP_LOG: &str = "dump.log";
const RESTORE_LOG: &str = "restore.log";
/// CRIU's most detailed log level: its log is what a person reads when a checkpoint fails.
const LOG_LEVEL: i32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("cannot run {criu} (checkpoint and restore need CRIU 4 or newer): {source}")]
    CriuStart {
        criu: PathBuf,
        source: std::io::Error,
    },
    /// CRIU's own message names the first error it logged, often a harmless one: the log
    /// excerpt ([`CheckpointError::Failed`]) says more.
    #[error("criu failed{}", errno_text(*errno))]
    Criu { errno: i32, message: String },
    #[error("talking to criu: {reason}")]
    Rpc { reason: String },
    #[error("criu could not {action} container {id:?} ({cause}); {log} says: {excerpt}")]
    Failed {
        action: &'static str,
        id: String,
        cause: Box<CheckpointError>,
        log: PathBuf,
        excerpt: String,
    },
    #[error("cannot {action} container {id:?}: it is {status}")]
    WrongStatus {
        action: &'static str,
        id: String,
        status: Status,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} holds no checkpoint berth made ({SAVED_FILE} is missing or unreadable: {reason})"
    )]
    NotBerths { path: PathBuf, reason: String },
}

/// CRIU saves and restores a mount namespace of the container's own; without one it would
/// take the host's mounts for the container's.
fn without_mount_namespace(what: &str) -> CheckpointError {
    CheckpointError::Unsupported(format!(
        "a container without a mount namespace of its own cannot be {what}: CRIU would take the host's mounts for its own"
    ))
}

fn errno_text(errno: i32) -> String {
    match errno {
        0 => String::new(),
        n => format!(" ({})", nix::errno::Errno::from_raw(n).desc()),
    }
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What berth keeps about a checkpointed container for its restore.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// What the init's descriptors 0, 1 and 2 were, as /proc/PID/fd shows them
    /// (`pipe:[INODE]`, `/dev/null` …): pipes are handed to the restored process anew.
    pub stdio: Vec<String>,
    /// The network as it was: the mode, the published ports, the address.
    pub network: Option<NetworkState>,
    /// Whether the init's standard streams were a terminal.
    pub terminal: bool,
}

impl Saved {
    pub fn read(images: &Path) -> Result<Saved, CheckpointError> {
        let path = images.join(SAVED_FILE);
        let not_berths = |reason: String| CheckpointError::NotBerths {
            path: images.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(&path).map_err(|e| not_berths(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| not_berths(e.to_string()))
    }
}

/// Restores a container; detached, returns 0 once it runs, otherwise waits for it as `run`
/// does (signals forwarded, its new terminal relayed), removes it, and returns its exit status.
pub fn restore_and_wait(
    root: &crate::state::Root,
    opts: &RestoreOptions,
    detach: bool,
) -> Result<i32, CheckpointError> {
    let restored = restore(root, opts)?;
    if detach {
        return Ok(0);
    }
    let Restored {
        dir,
        state,
        pid,
        console,
    } = restored;
    let id = opts.id.as_str();
    // Blocked only now: CRIU, berth's child, would have inherited the mask.
    let watched = (|| -> Result<_, ContainerError> {
        crate::container::wait::block_signals()
            .map_err(crate::container::sys(id, "block signals"))?;
        let signals = crate::container::wait::watch_signals()
            .map_err(crate::container::sys(id, "watch signals"))?;
        let relay = console.map(crate::console::Relay::start).transpose()?;
        Ok((signals, relay))
    })();
    let (signals, mut relay) = match watched {
        Ok(watched) => watched,
        Err(err) => {
            let _ = crate::container::delete::destroy(dir, &state);
            return Err(err.into());
        }
    };
    // Unlocked while it runs, so `kill`, `exec` and `delete --force` can reach it.
    drop(dir);
    let code = crate::container::wait::foreground(pid, &signals, relay.as_mut());
    drop(relay);
    match root.open_container(id) {
        Ok(dir) if dir.read_state().is_ok_and(|now| now.pid == state.pid) => {
            crate::container::delete::destroy(dir, &state)?
        }
        Ok(_) | Err(crate::state::StateError::NotExist(_)) => {}
        Err(err) => return Err(ContainerError::from(err).into()),
    }
    Ok(code)
}

/// `--manage-cgroups-mode`, as runc spells it.
pub fn cgroups_mode(value: &str) -> Result<rpc::CgMode, CheckpointError> {
    match value {
        "" => Ok(rpc::CgMode::Default),
        "soft" => Ok(rpc::CgMode::Soft),
        "full" => Ok(rpc::CgMode::Full),
        "strict" => Ok(rpc::CgMode::Strict),
        "ignore" => Ok(rpc::CgMode::Ignore),
        other => Err(CheckpointError::Unsupported(format!(
            "--manage-cgroups-mode {other:?} is not a mode: use soft, full, strict or ignore"
        ))),
    }
}

/// `--empty-ns`: namespaces CRIU makes empty at restore instead of restoring. As with runc,
/// only `network`, which berth always adds: berth wires a restored network itself.
pub fn empty_namespaces(values: &[String]) -> Result<u32, CheckpointError> {
    for value in values {
        if value != "network" {
            return Err(CheckpointError::Unsupported(format!(
                "--empty-ns {value:?}: only the network namespace can be left empty"
            )));
        }
    }
    Ok(libc::CLONE_NEWNET as u32)
}

/// The lines of a CRIU log that say what went wrong: the last few errors, or its last lines.
fn log_excerpt(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return "nothing (no log was written)".into();
    };
    let lines: Vec<&str> = text.lines().collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("Error") || l.contains("error"))
        .collect();
    let chosen = if errors.is_empty() { &lines } else { &errors };
    let tail = &chosen[chosen.len().saturating_sub(3)..];
    tail.iter()
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Names CRIU's failure with the lines of its log that explain it.
fn explain<'a>(
    action: &'static str,
    id: &'a str,
    log: &'a Path,
) -> impl FnOnce(CheckpointError) -> CheckpointError + 'a {
    move |cause| match cause {
        CheckpointError::Criu { .. } | CheckpointError::Rpc { .. } => CheckpointError::Failed {
            action,
            id: id.to_string(),
            cause: Box::new(cause),
            log: log.to_path_buf(),
            excerpt: log_excerpt(log),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_modes_are_runcs() {
        assert_eq!(cgroups_mode("").unwrap(), rpc::CgMode::Default);
        assert_eq!(cgroups_mode("soft").unwrap(), rpc::CgMode::Soft);
        assert_eq!(cgroups_mode("ignore").unwrap(), rpc::CgMode::Ignore);
        assert_eq!(
            cgroups_mode("hard").unwrap_err().to_string(),
            "--manage-cgroups-mode \"hard\" is not a mode: use soft, full, strict or ignore"
        );
    }

    #[test]
    fn only_the_network_namespace_can_be_empty() {
        assert_eq!(empty_namespaces(&[]).unwrap(), libc::CLONE_NEWNET as u32);
        assert_eq!(
            empty_namespaces(&["network".into()]).unwrap(),
            libc::CLONE_NEWNET as u32
        );
        assert_eq!(
            empty_namespaces(&["pid".into()]).unwrap_err().to_string(),
            "--empty-ns \"pid\": only the network namespace can be left empty"
        );
    }

    #[test]
    fn a_log_excerpt_quotes_the_last_errors() {
        let dir = crate::testutil::TempDir::new("criu-log");
        let log = dir.path().join("dump.log");
        std::fs::write(
            &log,
            "(00.1) one\n(00.2) Error (criu/a.c:1): first\n(00.3) two\n(00.4) Error (criu/b.c:2): second\n(00.5) end\n",
        )
        .unwrap();
        assert_eq!(
            log_excerpt(&log),
            "(00.2) Error (criu/a.c:1): first | (00.4) Error (criu/b.c:2): second"
        );
        assert_eq!(
            log_excerpt(&dir.path().join("none")),
            "nothing (no log was written)"
        );
    }
}
