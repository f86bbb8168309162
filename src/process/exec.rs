//! The process `exec` starts in an existing container, from its clone to its program: it joins
//! the container's namespaces (berth already made it in the container's pid namespace), closes
//! every descriptor of berth's it does not need, waits for berth to place it in the container's
//! cgroup, takes a terminal if asked, then runs the steps it shares with the init.

use std::convert::Infallible;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sched::CloneFlags;

use super::channel::{Channel, Message};
use super::program::{self, ProgramError};
use super::ProcessPlan;
use crate::console::{self, ConsoleError, WindowSize};
use crate::namespaces::{self, Join, NamespaceError};
use crate::seccomp::Filter;
use crate::syscall::{Kernel, Linux};

/// Everything the exec'd process needs, made by berth before the clone.
pub struct ExecPlan {
    /// The container's namespaces that differ from berth's, but pid (see [`join`] for the order).
    pub join: Vec<Join>,
    /// The `tasks` files of the container's v1 cgroups, which the process moves itself into
    /// first.
    pub join_cgroups: Vec<std::os::fd::OwnedFd>,
    pub process: ProcessPlan,
    /// Whether the process gets a terminal, and its first size.
    pub terminal: bool,
    pub console_size: Option<WindowSize>,
    /// The container's seccomp filter.
    pub seccomp: Option<Filter>,
    /// The init's root, for a container in berth's own mount namespace (`rootfs::host`): the
    /// process chroots into it, as joining a mount namespace would move it there.
    pub root: Option<std::os::fd::OwnedFd>,
    /// Whether berth joined the container's user namespace before the clone (an ordinary user
    /// enters the container's pid namespace only from inside it), so the process was born there.
    pub born_in_userns: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error(transparent)]
    Lsm(#[from] crate::lsm::LsmError),
    #[error("cannot join the container's cgroups: {0}")]
    Cgroup(Errno),
    #[error("cannot enter the container's root: {0}")]
    Root(Errno),
    #[error("lost contact with berth while {0}")]
    Channel(&'static str),
}

/// Runs in the cloned process; never returns. Errors travel to berth over the channel.
pub fn run(plan: ExecPlan, channel: Channel) -> ! {
    let Err(err) = exec(&Linux, plan, &channel);
    let _ = channel.send(&Message::Error(err.to_string()));
    // SAFETY: leave without running destructors or atexit handlers copied from berth.
    unsafe { libc::_exit(1) }
}

fn exec(kernel: &dyn Kernel, plan: ExecPlan, channel: &Channel) -> Result<Infallible, ExecError> {
    let ExecPlan {
        join,
        join_cgroups,
        process,
        terminal,
        console_size,
        seccomp,
        root,
        born_in_userns,
    } = plan;
    crate::cgroups::join_self(&join_cgroups).map_err(ExecError::Cgroup)?;
    drop(join_cgroups);
    // Before the container's mount namespace: the host's /proc cannot be stood in for.
    let labels = process.labels.open()?;
    let userns = self::join(kernel, &join)? || born_in_userns;
    drop(join);
    if let Some(root) = root {
        kernel.fchdir(root.as_raw_fd()).map_err(ExecError::Root)?;
        kernel
            .chroot(std::path::Path::new("."))
            .map_err(ExecError::Root)?;
    }
    // Nothing of berth's but the channel stays open from here: no descriptor of the host can
    // become the process's working directory or reach its program.
    let mut keep = labels.fds();
    keep.push(channel.as_raw_fd());
    close_from(3 + process.preserve_fds.max(0), &keep);
    match channel.recv() {
        Ok(Message::Go) => {}
        _ => return Err(ExecError::Channel("waiting to be placed in the cgroup")),
    }
    if userns {
        program::become_root_in_userns()?;
    }
    if terminal {
        console::setup(console_size, channel)?;
    }
    let ready = program::prepare(&process, seccomp.as_ref(), labels, channel)?;
    channel
        .send(&Message::Ready)
        .map_err(|_| ExecError::Channel("reporting the process ready"))?;
    Ok(program::exec(ready, &process)?)
}

/// Joins `namespaces` as runc does: first every one but user and mount that berth's credentials
/// allow, then the user namespace, then those refused before (a container run by an unprivileged
/// user owns them only from inside its user namespace), and mount last: joining it moves the
/// root and working directory into the container. Returns whether a user namespace was joined.
pub fn join(kernel: &dyn Kernel, namespaces: &[Join]) -> Result<bool, NamespaceError> {
    let late = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS;
    let mut refused = Vec::new();
    for ns in namespaces.iter().filter(|j| !late.contains(j.flag)) {
        match kernel.setns(ns.fd.as_raw_fd(), ns.flag) {
            Err(Errno::EPERM) => refused.push(ns),
            other => other.map_err(|source| join_error(ns, source))?,
        }
    }
    let user = namespaces
        .iter()
        .filter(|j| j.flag == CloneFlags::CLONE_NEWUSER);
    let mount = namespaces
        .iter()
        .filter(|j| j.flag == CloneFlags::CLONE_NEWNS);
    let mut userns = false;
    for ns in user.chain(refused).chain(mount) {
        kernel
            .setns(ns.fd.as_raw_fd(), ns.flag)
            .map_err(|source| join_error(ns, source))?;
        userns |= ns.flag == CloneFlags::CLONE_NEWUSER;
    }
    Ok(userns)
}

fn join_error(ns: &Join, source: Errno) -> NamespaceError {
    NamespaceError::Join {
        kind: namespaces::name(ns.flag),
        path: ns.path.clone(),
        source,
    }
}

/// Closes every descriptor from `first` up but `keep`.
fn close_from(first: i32, keep: &[i32]) {
    let mut keep: Vec<libc::c_uint> = keep
        .iter()
        .filter(|&&fd| fd >= first)
        .map(|&fd| fd as libc::c_uint)
        .collect();
    keep.sort_unstable();
    let mut from = first as libc::c_uint;
    // SAFETY: close_range only closes descriptors; the ones closed are berth's copies, which no
    // Rust value of this process uses any more, except those in `keep`, which stay open.
    unsafe {
        for fd in keep {
            if fd > from {
                libc::syscall(libc::SYS_close_range, from, fd - 1, 0);
            }
            from = from.max(fd + 1);
        }
        libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::Recorder;

    fn joins(kinds: &[CloneFlags]) -> Vec<Join> {
        kinds
            .iter()
            .map(|&flag| Join {
                flag,
                path: format!("/proc/42/ns/{}", namespaces::name(flag)).into(),
                fd: std::fs::File::open("/dev/null").unwrap().into(),
            })
            .collect()
    }

    #[test]
    fn user_joined_before_the_others_it_owns_and_mount_last() {
        let list = joins(&[
            CloneFlags::CLONE_NEWNS,
            CloneFlags::CLONE_NEWNET,
            CloneFlags::CLONE_NEWUSER,
            CloneFlags::CLONE_NEWIPC,
            CloneFlags::CLONE_NEWUTS,
        ]);
        let kernel = Recorder::default();
        assert!(join(&kernel, &list).unwrap());
        let order: Vec<String> = kernel
            .take()
            .iter()
            .map(|call| call.split(' ').next_back().unwrap().to_string())
            .collect();
        assert_eq!(
            order,
            [
                "CLONE_NEWNET",
                "CLONE_NEWIPC",
                "CLONE_NEWUTS",
                "CLONE_NEWUSER",
                "CLONE_NEWNS"
            ]
        );
        let kernel = Recorder::default();
        assert!(!join(&kernel, &joins(&[CloneFlags::CLONE_NEWNS])).unwrap());
    }
}
