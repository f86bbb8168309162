//! When a container's processes must start from a sealed view of berth's binary
//! (`process::seal`, CVE-2019-5736), and how berth keeps that decision true over time.
//!
//! A process berth makes for a container (the init until `start`, an `exec`'d one until its
//! execve) runs berth's code and shows berth's binary as `/proc/PID/exe` to every process of its
//! pid namespace. berth is non-dumpable, so only a process holding CAP_SYS_PTRACE over berth's
//! user namespace may open that link. Such a process is *exposing*: it is in berth's user
//! namespace (the container has no user namespace of its own) and CAP_SYS_PTRACE is in one of
//! its capability sets (the bounding set counts: root regains it at its next execve).
//!
//! berth's processes start from the sealed view (berth re-executes itself first) unless their
//! pid namespace is one berth made for the container and no exposing process can be in it:
//! - a pid namespace joined by path, or berth's own (no pid namespace), may hold anything;
//! - a container whose own processes are exposing exposes its whole pid namespace;
//! - an exposing process may arrive later in a namespace berth made: an `exec` with more
//!   capabilities than the container's (`--cap`, a process file), or a container that joins the
//!   namespace by path. Before berth puts one there, it marks the namespace's owner (the
//!   container that made it, in the same `--root`): every later `exec` into it is sealed.
//!
//! The mark and the unsealed processes meet under a lock on the pid namespace itself (flock on
//! its nsfs inode, shared by every descriptor of that namespace, whatever `--root`): an unsealed
//! `exec` holds it shared from its decision until its process runs its program, and the owner's
//! init from its start until its execve; marking takes it exclusively, so it waits for those to
//! finish, and every `exec` after it sees the mark. While the owner waits for `start`, marking
//! is refused at once (its init would hold the lock for as long as it waits).
//!
//! What this does not cover: pid namespaces shared between containers of different `--root`
//! folders (the owner is found through its state), and a container joining a namespace whose
//! owner's `create` has not yet recorded its init's pid.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::ContainerError;
use crate::capabilities::CapSets;
use crate::process::seal;
use crate::state::{Root, State, Status, CONFIG_FILE};

/// The file in a container's folder that says an exposing process may share its pid namespace.
const MARK: &str = "pidns-ptrace";

/// How long marking waits for unsealed processes of the namespace to run their programs.
const MARK_WAIT: Duration = Duration::from_secs(10);

const CAP_SYS_PTRACE: u32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum ExposureError {
    /// The caller must run from a sealed view of berth's binary (`seal::ensure_sealed`): the
    /// command line re-executes berth and runs the command again.
    #[error("berth must run from a sealed view of its binary for this container (process::seal)")]
    Unsealed,
    #[error(transparent)]
    Seal(#[from] seal::SealError),
    #[error("cannot give a process that could use CAP_SYS_PTRACE the pid namespace of container {owner:?} before it starts: its init still runs berth's code")]
    NotStarted { owner: String },
    #[error("timed out waiting for berth's processes in the pid namespace of container {owner:?} to run their programs")]
    Busy { owner: String },
    #[error("cannot lock the pid namespace of container {owner:?}: {source}")]
    Lock { owner: String, source: Errno },
    #[error("cannot mark the pid namespace of container {owner:?} ({path}): {source}")]
    Mark {
        owner: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where a container's processes live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidNamespace {
    /// One berth made for the container.
    Own,
    /// One given by path.
    Joined,
    /// berth's own.
    Berths,
}

/// Whether a process with these capabilities could hold CAP_SYS_PTRACE over berth's user
/// namespace: not in a user namespace of its own, and the capability in any of its sets.
pub fn could_ptrace(caps: &CapSets, own_user_namespace: bool) -> bool {
    let all = caps.bounding | caps.effective | caps.permitted | caps.inheritable | caps.ambient;
    !own_user_namespace && all & (1 << CAP_SYS_PTRACE) != 0
}

/// Whether a process berth makes must start from the sealed view: unless its pid namespace is
/// the container's own and neither the container's processes, the process itself, nor anything
/// that joined since (`marked`) could ptrace it.
pub fn needs_seal(pid: PidNamespace, container: bool, process: bool, marked: bool) -> bool {
    pid != PidNamespace::Own || container || process || marked
}

/// Before `create` makes anything: fails with [`ExposureError::Unsealed`] when the container's
/// processes need the sealed view and berth does not run from one; marks the owner of a pid
/// namespace the container joins when its processes could ptrace.
pub fn before_create(root: &Root, spec: &Spec) -> Result<(), ContainerError> {
    let exposing = spec_could_ptrace(spec)?;
    let (pid, path) = spec_pid_namespace(spec);
    if needs_seal(pid, exposing, false, false) {
        require_sealed()?;
    }
    if let (true, Some(path)) = (exposing, path) {
        // A path that cannot be opened fails `create` later, with the namespace's own error.
        if let Ok(ns) = std::fs::File::open(path) {
            mark(root, ns.as_fd(), None)?;
        }
    }
    Ok(())
}

/// Before `exec` makes its process: what [`before_create`] does, for a process with `caps`
/// joining `state`'s container (`own_user_namespace`: it has one apart from berth's; `pid_ns`:
/// its pid namespace, `None` when it is berth's). On the unsealed path, returns the shared lock
/// on the pid namespace, which the caller holds until the process has run its program.
pub fn before_exec(
    root: &Root,
    state: &State,
    config: &Spec,
    caps: &CapSets,
    own_user_namespace: bool,
    pid_ns: Option<BorrowedFd>,
) -> Result<Option<OwnedFd>, ContainerError> {
    let process = could_ptrace(caps, own_user_namespace);
    let container = config_could_ptrace(config, own_user_namespace)?;
    let pid = match pid_ns {
        None => PidNamespace::Berths,
        Some(_) if state.own_pid_namespace => PidNamespace::Own,
        Some(_) => PidNamespace::Joined,
    };
    let marked = root.container_dir(&state.id).join(MARK);
    if needs_seal(pid, container, process, false) {
        require_sealed()?;
        if let (true, Some(ns)) = (process, pid_ns) {
            mark(root, ns, Some(state))?;
        }
        return Ok(None);
    }
    let Some(ns) = pid_ns else {
        unreachable!("an own pid namespace has a descriptor")
    };
    let lock = ns
        .try_clone_to_owned()
        .map_err(|e| lock_error(state, io_errno(e)))?;
    flock(&lock, libc::LOCK_SH).map_err(|e| lock_error(state, e))?;
    if marked.exists() {
        require_sealed()?;
        return Ok(None);
    }
    Ok(Some(lock))
}

fn require_sealed() -> Result<(), ExposureError> {
    match seal::is_sealed() {
        true => Ok(()),
        false => Err(ExposureError::Unsealed),
    }
}

fn lock_error(state: &State, source: Errno) -> ExposureError {
    ExposureError::Lock {
        owner: state.id.clone(),
        source,
    }
}

/// Records that an exposing process is about to enter the pid namespace `ns`, in the folder of
/// the container of `root` that made it (`target` when it is that one), once no unsealed process
/// of berth's runs in it. Nothing to do when no container of this root made it, or when its
/// owner's own processes are exposing (everything berth gives it is sealed already).
fn mark(root: &Root, ns: BorrowedFd, target: Option<&State>) -> Result<(), ContainerError> {
    let owner = match target {
        Some(state) if state.own_pid_namespace => Some(state.clone()),
        _ => owner_of(root, ns),
    };
    let Some(owner) = owner else {
        return Ok(());
    };
    let dir = root.container_dir(&owner.id);
    let path = dir.join(MARK);
    if path.exists() || owner_could_ptrace(&dir)? {
        return Ok(());
    }
    // Its init holds the namespace until its execve: say why at once rather than wait for it.
    if matches!(
        super::status(&owner, &dir),
        Status::Creating | Status::Created
    ) {
        return Err(ExposureError::NotStarted { owner: owner.id }.into());
    }
    let lock = ns
        .try_clone_to_owned()
        .map_err(|e| lock_error(&owner, io_errno(e)))?;
    let deadline = Instant::now() + MARK_WAIT;
    loop {
        match flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => break,
            Err(Errno::EWOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(Errno::EWOULDBLOCK) => return Err(ExposureError::Busy { owner: owner.id }.into()),
            Err(e) => return Err(lock_error(&owner, e).into()),
        }
    }
    std::fs::File::create(&path).map_err(|source| ExposureError::Mark {
        owner: owner.id.clone(),
        path: path.clone(),
        source,
    })?;
    Ok(())
}

/// The container of `root` whose init made the pid namespace `ns`.
fn owner_of(root: &Root, ns: BorrowedFd) -> Option<State> {
    let wanted = identity(ns)?;
    root.ids()
        .ok()?
        .into_iter()
        .filter_map(|id| root.read_state(&id).ok())
        .filter(|state| state.own_pid_namespace && state.pid > 0)
        .find(|state| {
            let theirs = std::fs::metadata(format!("/proc/{}/ns/pid", state.pid));
            theirs.is_ok_and(|m| (m.dev(), m.ino()) == wanted) && super::init_alive(state)
        })
}

/// Whether the processes of the container in `dir` could ptrace, from its config.
fn owner_could_ptrace(dir: &Path) -> Result<bool, ContainerError> {
    let Ok(bytes) = std::fs::read(dir.join(CONFIG_FILE)) else {
        return Ok(false);
    };
    let Ok(config) = serde_json::from_slice::<Spec>(&bytes) else {
        return Ok(false);
    };
    spec_could_ptrace(&config)
}

fn spec_could_ptrace(spec: &Spec) -> Result<bool, ContainerError> {
    config_could_ptrace(spec, spec_own_user_namespace(spec))
}

fn config_could_ptrace(spec: &Spec, own_user_namespace: bool) -> Result<bool, ContainerError> {
    let caps = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref());
    let caps = CapSets::from_spec(caps).map_err(crate::process::ProcessError::from)?;
    Ok(could_ptrace(&caps, own_user_namespace))
}

fn spec_namespace(spec: &Spec, typ: LinuxNamespaceType) -> Option<Option<PathBuf>> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .find(|ns| ns.typ() == typ)
        .map(|ns| ns.path().clone())
}

/// Whether the config gives the container a user namespace other than berth's.
fn spec_own_user_namespace(spec: &Spec) -> bool {
    match spec_namespace(spec, LinuxNamespaceType::User) {
        None => false,
        Some(None) => true,
        Some(Some(path)) => {
            let id = |p: &Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
            let theirs = id(&path);
            theirs.is_some() && theirs != id(Path::new("/proc/self/ns/user"))
        }
    }
}

/// The config's pid namespace, and its path when it joins one.
fn spec_pid_namespace(spec: &Spec) -> (PidNamespace, Option<PathBuf>) {
    match spec_namespace(spec, LinuxNamespaceType::Pid) {
        None => (PidNamespace::Berths, None),
        Some(None) => (PidNamespace::Own, None),
        Some(Some(path)) => (PidNamespace::Joined, Some(path)),
    }
}

fn identity(fd: BorrowedFd) -> Option<(u64, u64)> {
    nix::sys::stat::fstat(fd)
        .ok()
        .map(|st| (st.st_dev, st.st_ino))
}

fn flock(fd: &OwnedFd, operation: libc::c_int) -> Result<(), Errno> {
    // SAFETY: flock on a descriptor we own.
    Errno::result(unsafe { libc::flock(fd.as_raw_fd(), operation) }).map(drop)
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> CapSets {
        let bits =
            CapSets::parse_names(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        CapSets {
            bounding: bits,
            ..CapSets::default()
        }
    }

    #[test]
    fn ptrace_counts_in_any_set_but_not_in_a_user_namespace_of_its_own() {
        let docker = caps(&["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"]);
        assert!(!could_ptrace(&docker, false));
        let debugger = caps(&["CAP_KILL", "CAP_SYS_PTRACE"]);
        assert!(could_ptrace(&debugger, false));
        assert!(!could_ptrace(&debugger, true));
        let ambient_only = CapSets {
            ambient: 1 << CAP_SYS_PTRACE,
            ..CapSets::default()
        };
        assert!(could_ptrace(&ambient_only, false));
    }

    #[test]
    fn only_an_own_pid_namespace_without_ptrace_stays_unsealed() {
        use PidNamespace::*;
        assert!(!needs_seal(Own, false, false, false));
        assert!(needs_seal(Joined, false, false, false));
        assert!(needs_seal(Berths, false, false, false));
        assert!(needs_seal(Own, true, false, false));
        assert!(needs_seal(Own, false, true, false));
        assert!(needs_seal(Own, false, false, true));
    }

    fn spec(namespaces: serde_json::Value, caps: &[&str]) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.1",
            "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0},
                        "capabilities": {"bounding": caps, "permitted": caps}},
            "linux": {"namespaces": namespaces}
        }))
        .unwrap()
    }

    #[test]
    fn the_config_says_where_the_processes_live_and_whether_they_could_ptrace() {
        let own = serde_json::json!([{"type": "pid"}, {"type": "mount"}]);
        let joined = serde_json::json!([{"type": "pid", "path": "/proc/1/ns/pid"}]);
        let userns = serde_json::json!([{"type": "pid"}, {"type": "user"}]);
        assert_eq!(
            spec_pid_namespace(&spec(own.clone(), &[])).0,
            PidNamespace::Own
        );
        assert_eq!(
            spec_pid_namespace(&spec(joined, &[])),
            (PidNamespace::Joined, Some("/proc/1/ns/pid".into()))
        );
        let host = serde_json::json!([{"type": "mount"}]);
        assert_eq!(spec_pid_namespace(&spec(host, &[])).0, PidNamespace::Berths);

        assert!(!spec_could_ptrace(&spec(own.clone(), &["CAP_KILL"])).unwrap());
        assert!(spec_could_ptrace(&spec(own, &["CAP_SYS_PTRACE"])).unwrap());
        assert!(!spec_could_ptrace(&spec(userns, &["CAP_SYS_PTRACE"])).unwrap());
        // berth's own user namespace given by path is no user namespace of the container's.
        let same = serde_json::json!([{"type": "user", "path": "/proc/self/ns/user"}]);
        assert!(spec_could_ptrace(&spec(same, &["CAP_SYS_PTRACE"])).unwrap());
    }
}
