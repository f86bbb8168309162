//! A container's process started from outside its pid namespace: every process `exec` adds,
//! and the process of a container whose pid namespace is joined by path (`create`, through
//! `init`'s [`Message::Built`]). It is made in two steps, so that the container never sees a
//! process of berth's holding more than the container's own process will.
//!
//! berth clones the *setup process* outside the container's pid namespace. It joins the
//! container's cgroup and namespaces (the pid namespace for its children only), closes berth's
//! descriptors, takes the terminal, and becomes what the container's process is to be: user and
//! groups, capabilities, no_new_privs, resource limits, personality and memory policy, the LSM
//! labels of its execve, and its seccomp filter, last. Only then does it fork the *container's
//! process* into the pid namespace (as berth's child: CLONE_PARENT), send berth its pid, and
//! leave. The container's process, the first that the container can see, holds the container's
//! final privileges, mount namespace and root from its first instant, no descriptor of berth's
//! but its copy of the channel (and a created container's exec fifo), and before its program it
//! makes only a few calls: a new session for its terminal, the wait for berth's `Go` when berth
//! sets its scheduling, and for a created container the wait for `start` and the startContainer
//! hooks.
//!
//! Once the setup process says it forks ([`Message::Ready`]), berth trusts nothing it reads on
//! the channel: the container may hold it through the forked process. It accepts a pid only if
//! that process is its own child (not the setup process), and otherwise only error text, which at
//! worst makes `exec` fail.
//!
//! The filter must let the setup process fork, and the forked process make its calls
//! ([`calls_after_filter`]); berth checks the profile before anything exists. Where it does not,
//! the filter can go in at the last moment instead, in the forked process (runc's order), but
//! only where nothing that could ptrace that process shares its pid namespace (the process is
//! non-dumpable and berth's own) and the filter needs no CAP_SYS_ADMIN and hands no listener to
//! berth; otherwise berth refuses, naming the call.

use std::convert::Infallible;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use oci_spec::runtime::Hook;

use super::channel::{Channel, Message};
use super::program::{self, ProgramError, SeccompAt};
use super::ProcessPlan;
use crate::console::{self, ConsoleError, WindowSize};
use crate::namespaces::{self, Join, NamespaceError};
use crate::seccomp::Filter;
use crate::syscall::{Kernel, Linux};

/// Everything the setup process needs, made by berth before the clone.
pub struct ExecPlan {
    /// The container's namespaces that differ from berth's (see [`join`] for the order); the
    /// pid one is joined for the children only.
    pub join: Vec<Join>,
    /// The `tasks` files of the container's v1 cgroups, which the process moves itself into
    /// first.
    pub join_cgroups: Vec<OwnedFd>,
    pub process: ProcessPlan,
    pub terminal: Terminal,
    /// Whether berth relays the terminal to its own stdio (no console socket).
    pub console_relayed: bool,
    /// The container's seccomp filter, and when it goes in.
    pub seccomp: Option<Filter>,
    pub seccomp_at: SeccompAt,
    /// The init's root, for a container in berth's own mount namespace (`rootfs::host`): the
    /// process chroots into it, as joining a mount namespace would move it there.
    pub root: Option<OwnedFd>,
    /// Whether the container's process waits for berth's `Go` before its program: berth sets its
    /// scheduling itself (a scheduler is not always inherited across the fork).
    pub wait_go: bool,
    /// The name of a new session keyring (a created container's process).
    pub session_keyring: Option<String>,
    /// A created container's process waits for `start`.
    pub start: Option<StartPlan>,
}

/// The terminal of the container's process.
pub enum Terminal {
    None,
    /// A new pty in the container's devpts, its master handed to berth (`exec --tty`).
    New(Option<WindowSize>),
    /// The container's `/dev/console`, which its init made (a created container's process).
    Console,
}

/// What a created container's process does before its program: it waits on the exec fifo for
/// `start`, then runs the startContainer hooks.
pub struct StartPlan {
    pub fifo: OwnedFd,
    pub hooks: Vec<Hook>,
    /// The state the createRuntime hooks had, for the startContainer hooks.
    pub state: String,
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
    #[error(transparent)]
    Init(#[from] super::init::InitError),
    #[error("cannot join the container's cgroups: {0}")]
    Cgroup(Errno),
    #[error("cannot enter the container's root: {0}")]
    Root(Errno),
    #[error("cannot fork the process into the container's pid namespace: {0}")]
    Fork(Errno),
    #[error("cannot start a session: {0}")]
    Session(Errno),
    #[error("lost contact with berth while {0}")]
    Channel(&'static str),
    #[error("linux.seccomp forbids {call}, which berth needs after the filter is in place to start the process inside the container's pid namespace; {why}")]
    SeccompForbids {
        call: &'static str,
        why: &'static str,
    },
}

/// The flags of the fork into the pid namespace: a plain fork, the child berth's (so berth
/// waits for it and gets its exit status).
const FORK_FLAGS: libc::c_ulong = (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;

/// A system call the setup and the container's process make once the filter is in.
struct Call {
    name: &'static str,
    nr: libc::c_long,
    args: [u64; 6],
}

/// The calls made under the filter before the program runs: the setup process writes to the
/// channel, forks and exits; the container's process takes its terminal, waits for berth's
/// `Go`, and runs its program (or reports why not). `channel` is the descriptor number the
/// processes will have.
fn calls_after_filter(plan: &ExecPlan, channel: i32) -> Vec<Call> {
    let call = |name, nr, args| Call { name, nr, args };
    let channel = channel as u64;
    let mut calls = vec![
        call("write", libc::SYS_write, [channel, 0, 0, 0, 0, 0]),
        call("clone", libc::SYS_clone, [FORK_FLAGS, 0, 0, 0, 0, 0]),
        call("execve", libc::SYS_execve, [0; 6]),
        call("exit_group", libc::SYS_exit_group, [0; 6]),
    ];
    let terminal = !matches!(plan.terminal, Terminal::None);
    if terminal || plan.start.is_some() {
        calls.push(call("setsid", libc::SYS_setsid, [0; 6]));
    }
    if terminal {
        let tiocsctty = [0, libc::TIOCSCTTY, 0, 0, 0, 0];
        calls.push(call("ioctl TIOCSCTTY", libc::SYS_ioctl, tiocsctty));
    }
    if plan.wait_go {
        calls.push(call("read", libc::SYS_read, [channel, 0, 0, 0, 0, 0]));
    }
    calls
}

/// When the plan's filter goes in: in the setup process, where the profile allows what follows;
/// otherwise at the execve, if `may_wait` (nothing that could ptrace the container's process
/// can see it: see the module's comment) and the filter can go in there.
pub fn seccomp_at(plan: &ExecPlan, channel: i32, may_wait: bool) -> Result<SeccompAt, ExecError> {
    let Some(filter) = &plan.seccomp else {
        return Ok(SeccompAt::Prepare);
    };
    let calls = calls_after_filter(plan, channel);
    let Some(refused) = calls.iter().find(|c| !filter.allows(c.nr, c.args)) else {
        return Ok(SeccompAt::Prepare);
    };
    let why = if !may_wait {
        "a process that could ptrace it may share that namespace, so the filter cannot wait for the execve"
    } else if !plan.process.no_new_privileges {
        "installing the filter at the execve instead needs process.noNewPrivileges"
    } else if filter.has_notify() {
        "the filter's listener must reach berth before the process runs"
    } else if plan.start.is_some() {
        "a created container's process waits for start under its filter"
    } else {
        return Ok(SeccompAt::Exec);
    };
    Err(ExecError::SeccompForbids {
        call: refused.name,
        why,
    })
}

/// Runs in the setup process; never returns. Errors travel to berth over the channel.
pub fn run(plan: ExecPlan, channel: Channel) -> ! {
    let Err(err) = setup(&Linux, plan, channel);
    // SAFETY: leave without running destructors or atexit handlers copied from berth.
    unsafe { libc::_exit(err) }
}

/// The setup process's steps; returns only with its exit status, after reporting any error.
fn setup(kernel: &dyn Kernel, plan: ExecPlan, channel: Channel) -> Result<Infallible, i32> {
    let report = |channel: &Channel, err: ExecError| {
        let _ = channel.write(&Message::Error(err.to_string()));
        1
    };
    match prepare(kernel, plan, &channel) {
        Ok((ready, rest)) => {
            // From here berth trusts nothing on the channel: the forked process holds it.
            if channel.write(&Message::Ready).is_err() {
                return Err(1);
            }
            match fork() {
                Ok(None) => final_process(ready, rest, channel),
                Ok(Some(pid)) => {
                    let _ = channel.write(&Message::Pid(pid));
                    Err(0)
                }
                Err(errno) => Err(report(&channel, ExecError::Fork(errno))),
            }
        }
        Err(err) => Err(report(&channel, err)),
    }
}

/// The session of the container's process.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Session {
    /// berth's caller's (an `exec` without a terminal).
    Inherited,
    /// One of its own (a created container's process, as an init has).
    New,
    /// One of its own, led with its terminal.
    WithTerminal,
}

/// What the container's process takes from the plan.
struct Rest {
    process: ProcessPlan,
    session: Session,
    wait_go: bool,
    start: Option<StartPlan>,
}

/// Everything before the fork.
fn prepare(
    kernel: &dyn Kernel,
    plan: ExecPlan,
    channel: &Channel,
) -> Result<(program::Ready<'static>, Rest), ExecError> {
    let ExecPlan {
        join,
        join_cgroups,
        process,
        terminal,
        console_relayed,
        seccomp,
        seccomp_at,
        root,
        wait_go,
        session_keyring,
        start,
    } = plan;
    crate::cgroups::join_self(&join_cgroups).map_err(ExecError::Cgroup)?;
    drop(join_cgroups);
    // Before the container's mount namespace: the host's /proc cannot be stood in for.
    let labels = process.labels.open()?;
    super::scrub_environment();
    let userns = self::join(kernel, &join)?;
    drop(join);
    if let Some(root) = root {
        kernel.fchdir(root.as_raw_fd()).map_err(ExecError::Root)?;
        kernel
            .chroot(std::path::Path::new("."))
            .map_err(ExecError::Root)?;
    }
    // Nothing of berth's but the channel (and the exec fifo) stays open from here: no descriptor
    // of the host can become the process's working directory or reach its program.
    let mut keep = labels.fds();
    keep.push(channel.as_raw_fd());
    keep.extend(start.as_ref().map(|s| s.fifo.as_raw_fd()));
    close_from(3 + process.preserve_fds.max(0), &keep);
    match channel.recv() {
        Ok(Message::Go) => {}
        _ => return Err(ExecError::Channel("waiting to be placed in the cgroup")),
    }
    if userns {
        program::become_root_in_userns()?;
    }
    if let Some(name) = &session_keyring {
        super::init::join_session_keyring(name)?;
    }
    if start.is_some() {
        // As the init does: the host's /dev/null on stdio would be a file CRIU cannot
        // checkpoint.
        super::init::reopen_dev_null()
            .map_err(|e| super::init::InitError::Sys("open the container's /dev/null", e))?;
    }
    let has_terminal = !matches!(terminal, Terminal::None);
    let session = match terminal {
        // A created container's process leads a session of its own, as an init does.
        Terminal::None if start.is_some() => Session::New,
        Terminal::None => Session::Inherited,
        Terminal::New(size) => {
            let slave = console::hand_over(size, console_relayed, channel)?;
            console::use_as_stdio(&slave)?;
            Session::WithTerminal
        }
        Terminal::Console => {
            console::use_as_stdio(&console::open_dev_console()?)?;
            Session::WithTerminal
        }
    };
    // The container's process inherits all three: it makes no such call itself.
    program::reset_signals();
    program::unblock_signals();
    // The filter lives as long as this process: it is leaked on purpose, since both this process
    // and the forked one end in _exit or execve.
    let filter: Option<&'static Filter> = seccomp.map(|f| &*Box::leak(Box::new(f)));
    let ready = program::prepare(&process, has_terminal, filter, seccomp_at, labels, channel)?;
    Ok((
        ready,
        Rest {
            process,
            session,
            wait_go,
            start,
        },
    ))
}

/// Forks the container's process into the pid namespace this process joined for its children.
/// `Ok(None)` in the child.
fn fork() -> Result<Option<i32>, Errno> {
    // SAFETY: a fork-like clone (no new stack): the child goes on with a copy of this
    // single-threaded process.
    let rc = unsafe { libc::syscall(libc::SYS_clone, FORK_FLAGS, 0usize, 0usize, 0usize, 0usize) };
    match rc {
        -1 => Err(Errno::last()),
        0 => Ok(None),
        pid => Ok(Some(pid as i32)),
    }
}

/// The container's process: its terminal, berth's `Go`, `start` for a created container, then
/// its program. Errors go to berth over the channel (to `start` through the fifo).
fn final_process(mut ready: program::Ready, rest: Rest, channel: Channel) -> ! {
    let Rest {
        process,
        session,
        wait_go,
        start,
    } = rest;
    let before = || -> Result<(), ExecError> {
        match session {
            Session::Inherited => {}
            Session::New => {
                nix::unistd::setsid().map_err(ExecError::Session)?;
            }
            Session::WithTerminal => console::new_session()?,
        }
        if wait_go {
            match channel.read() {
                Ok(Message::Go) => {}
                _ => return Err(ExecError::Channel("waiting for its scheduling")),
            }
        }
        Ok(())
    };
    if let Err(err) = before() {
        let _ = channel.write(&Message::Error(err.to_string()));
        // SAFETY: leave without running destructors copied from berth.
        unsafe { libc::_exit(127) }
    }
    let Some(start) = start else {
        let Err(err) = program::exec_program(ready, &process);
        let _ = channel.write(&Message::Error(err.to_string()));
        // SAFETY: leave without running destructors copied from berth.
        unsafe { libc::_exit(127) }
    };
    // A created container's process talks to `start` only, through the fifo.
    drop(channel);
    let started = super::init::wait_for_start(&start.fifo).and_then(|()| {
        super::init::run_start_hooks(&start.hooks, &start.state, &mut ready)?;
        Ok(program::exec_program(ready, &process)?)
    });
    let Err(err) = started;
    super::init::report_start_failure(&start.fifo, &err.to_string());
    // SAFETY: the container's program could not start; leave without running destructors.
    unsafe { libc::_exit(127) }
}

/// Joins `namespaces` as runc does: first every one but user and mount that berth's credentials
/// allow (the pid namespace among them, for the children), then the user namespace, then those
/// refused before (a container run by an unprivileged user owns them only from inside its user
/// namespace; one owned by another user namespace only from outside it), and mount last: joining it moves the root and working directory into the
/// container. Returns whether a user namespace was joined.
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
pub(super) fn close_from(first: i32, keep: &[i32]) {
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
            CloneFlags::CLONE_NEWPID,
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
                "CLONE_NEWPID",
                "CLONE_NEWIPC",
                "CLONE_NEWUTS",
                "CLONE_NEWUSER",
                "CLONE_NEWNS"
            ]
        );
        let kernel = Recorder::default();
        assert!(!join(&kernel, &joins(&[CloneFlags::CLONE_NEWNS])).unwrap());
    }

    fn plan(seccomp: serde_json::Value, no_new_privileges: bool, tty: bool) -> ExecPlan {
        let process: oci_spec::runtime::Process = serde_json::from_value(serde_json::json!({
            "cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0},
            "noNewPrivileges": no_new_privileges
        }))
        .unwrap();
        let profile = serde_json::from_value(seccomp).unwrap();
        ExecPlan {
            join: Vec::new(),
            join_cgroups: Vec::new(),
            process: ProcessPlan::from_spec(&process, &Default::default()).unwrap(),
            terminal: match tty {
                true => Terminal::New(None),
                false => Terminal::None,
            },
            console_relayed: false,
            seccomp: Some(crate::seccomp::compile(&profile).unwrap()),
            seccomp_at: SeccompAt::Prepare,
            root: None,
            wait_go: false,
            session_keyring: None,
            start: None,
        }
    }

    #[test]
    fn the_filter_goes_in_before_the_fork_unless_the_profile_forbids_what_follows() {
        let allow_all = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"});
        let at = seccomp_at(&plan(allow_all, false, true), 5, false).unwrap();
        assert_eq!(at, SeccompAt::Prepare);
        // A profile without clone: the filter waits for the execve only where it may.
        let no_fork = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["clone"], "action": "SCMP_ACT_ERRNO"}]
        });
        let at = seccomp_at(&plan(no_fork.clone(), true, false), 5, true).unwrap();
        assert_eq!(at, SeccompAt::Exec);
        let err = seccomp_at(&plan(no_fork.clone(), true, false), 5, false).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "linux.seccomp forbids clone, which berth needs after the filter is in place"
            ),
            "{err}"
        );
        let err = seccomp_at(&plan(no_fork, false, false), 5, true).unwrap_err();
        assert!(
            err.to_string().ends_with("needs process.noNewPrivileges"),
            "{err}"
        );
        // A terminal needs a session of the process's own.
        let no_setsid = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["setsid"], "action": "SCMP_ACT_ERRNO"}]
        });
        let at = seccomp_at(&plan(no_setsid.clone(), true, false), 5, false).unwrap();
        assert_eq!(at, SeccompAt::Prepare);
        let err = seccomp_at(&plan(no_setsid, true, true), 5, false).unwrap_err();
        assert!(err.to_string().contains("forbids setsid"), "{err}");
    }
}
