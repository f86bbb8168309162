//! `exec`: one more process in a created or running container. It comes from a runtime-spec
//! process file (`--process`, as containerd and conmon pass it) or from the container's own
//! process with other arguments and runc's flags; it joins the container's namespaces and cgroup
//! and gets the container's capabilities, rlimits and seccomp filter unless it has its own. Until
//! its program runs, a failure is `exec`'s error, and leaves the container and its cgroup alone.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::{Process, Spec};

use super::{init_alive, status, sys, ContainerError};
use crate::capabilities::CapSets;
use crate::cgroups::{self, CgroupConfig, Layout};
use crate::console::{self, Relay, WindowSize};
use crate::namespaces::{self, Join};
use crate::process::channel::{self, Channel, ChannelError, Message};
use crate::process::clone::{clone, Cloned};
use crate::process::exec::{ExecPlan, Terminal};
use crate::process::program::SeccompAt;
use crate::process::{ExtraFds, ProcessPlan};
use crate::state::{write_atomic, Root, State, Status, CONFIG_FILE};

/// What `exec` is asked to run, typed: from the command line's flags, or from an embedder (the
/// containerd shim).
#[derive(Clone, Debug)]
pub struct ExecOptions {
    pub id: String,
    pub process: ExecProcess,
    /// Give the process a terminal (also over a process file: podman passes both).
    pub tty: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// Keep the pty master of a process with a terminal and no console socket, for the caller
    /// to relay (`exec` in the foreground, the containerd shim), instead of refusing it.
    pub keep_console: bool,
    pub preserve_fds: i32,
    /// A cgroup below the container's (cgroup v2) to run the process in.
    pub cgroup: Option<String>,
    /// Allow a paused container (runc's `--ignore-paused`): the process joins the frozen cgroup
    /// and `exec` completes once the container is resumed.
    pub ignore_paused: bool,
}

/// The process to run.
#[derive(Clone, Debug)]
pub enum ExecProcess {
    /// A runtime-spec process file (`--process`, as containerd's runc shim and conmon pass it).
    File(PathBuf),
    /// A runtime-spec process, as an embedder holds it.
    Spec(Box<Process>),
    /// The container's own process with other arguments, changed by runc's flags.
    Command(ExecCommand),
}

/// The container's process with other arguments and runc's changes to it.
#[derive(Clone, Debug, Default)]
pub struct ExecCommand {
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// `(KEY, VALUE)`, replacing the container's value of KEY.
    pub env: Vec<(String, String)>,
    /// A uid, and a gid when given.
    pub user: Option<(u32, Option<u32>)>,
    pub additional_gids: Vec<u32>,
    /// Capabilities added to the bounding, effective and permitted sets.
    pub caps: Vec<String>,
    pub no_new_privs: bool,
}

impl ExecProcess {
    /// The process of the command line: a process file, or a command with runc's flags. A file
    /// gives the whole process, so flags that change it are refused beside one.
    pub fn from_flags(file: Option<PathBuf>, command: ExecCommand) -> Result<Self, ExecError> {
        let Some(file) = file else {
            if command.args.is_empty() {
                return Err(ExecError::Usage(
                    "exec needs a command, or --process FILE".into(),
                ));
            }
            return Ok(ExecProcess::Command(command));
        };
        let given = [
            (!command.args.is_empty(), "a command"),
            (command.cwd.is_some(), "--cwd"),
            (!command.env.is_empty(), "--env"),
            (command.user.is_some(), "--user"),
            (!command.additional_gids.is_empty(), "--additional-gids"),
            (!command.caps.is_empty(), "--cap"),
            (command.no_new_privs, "--no-new-privs"),
        ];
        let flags: Vec<&str> = given.iter().filter(|(g, _)| *g).map(|(_, f)| *f).collect();
        if !flags.is_empty() {
            return Err(ExecError::Usage(format!(
                "--process gives the whole process: {} cannot be added to it",
                flags.join(", ")
            )));
        }
        Ok(ExecProcess::File(file))
    }
}

/// `--env KEY=VALUE`.
pub fn parse_env(var: &str) -> Result<(String, String), ExecError> {
    match var.split_once('=') {
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err(ExecError::Usage(format!("--env {var:?} must be KEY=VALUE"))),
    }
}

/// `--user UID` or `--user UID:GID`, in numbers.
pub fn parse_user(text: &str) -> Result<(u32, Option<u32>), ExecError> {
    let number = |s: &str| s.parse::<u32>().ok();
    let (uid, gid) = match text.split_once(':') {
        Some((uid, gid)) => (number(uid), number(gid).map(Some)),
        None => (number(text), Some(None)),
    };
    match (uid, gid) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(ExecError::Usage(format!(
            "--user {text:?} must be UID or UID:GID, in numbers"
        ))),
    }
}

/// A process started in a container: its pid, and its pty master when the caller keeps it.
pub struct Spawned {
    pub pid: Pid,
    pub console: Option<OwnedFd>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot exec in container {id:?}: container not running")]
    NotRunning { id: String },
    #[error("cannot exec in container {id:?}: it is paused (use --ignore-paused to override)")]
    Paused { id: String },
    #[error("cannot exec in container {id:?}: it is {status}")]
    NotReady { id: String, status: Status },
    #[error(transparent)]
    ReadProcess(#[from] crate::bounded::ReadError),
    #[error("{path} is not a valid runtime-spec process: {source}")]
    ParseProcess {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot read the config of container {id:?} ({path}): {reason}")]
    Config {
        id: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error("cannot exec in container {id:?}: {reason}")]
    Failed { id: String, reason: String },
    #[error(
        "cannot exec in container {id:?} before it starts: berth runs as an ordinary user, and \
         the container's init, a clone of berth until then, is kept non-dumpable so that no \
         process can reach berth's binary through it, which also keeps its namespaces from the \
         user; start it first"
    )]
    BeforeStart { id: String },
}

/// Runs the process. Detached, returns 0 once its program runs; otherwise its exit status.
pub fn exec(root: &Root, opts: &ExecOptions, detach: bool) -> Result<i32, ContainerError> {
    if detach {
        return spawn(root, opts).map(|_| 0);
    }
    super::wait::block_signals().map_err(sys(&opts.id, "block signals"))?;
    let opts = ExecOptions {
        keep_console: true,
        ..opts.clone()
    };
    let Spawned { pid, console } = spawn_relayed(root, &opts, true)?;
    let sent = |reason: String| -> ContainerError {
        // The program runs already: it is ours to end, not the container.
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        ExecError::Failed {
            id: opts.id.clone(),
            reason,
        }
        .into()
    };
    let signals =
        super::wait::watch_signals().map_err(|e| sent(format!("cannot watch signals: {e}")))?;
    let mut relay = match console.map(Relay::start).transpose() {
        Ok(relay) => relay,
        Err(err) => return Err(sent(err.to_string())),
    };
    Ok(super::wait::foreground(pid, &signals, relay.as_mut()))
}

/// Starts the process and returns once its program runs. A terminal goes to the console socket,
/// or with `keep_console` back to the caller.
pub fn spawn(root: &Root, opts: &ExecOptions) -> Result<Spawned, ContainerError> {
    spawn_relayed(root, opts, false)
}

/// `spawn`; a kept terminal that berth relays to its own stdio (`relayed`) passes the program's
/// "\n" unchanged, as runc's does.
fn spawn_relayed(
    root: &Root,
    opts: &ExecOptions,
    relayed: bool,
) -> Result<Spawned, ContainerError> {
    let id = opts.id.as_str();
    // Before berth opens anything, so none of its descriptors can pass for a preserved one.
    let extra_fds = ExtraFds::new(opts.preserve_fds, false)?;
    let state = root.read_state(id)?;
    match status(&state, &root.container_dir(id)) {
        Status::Created | Status::Running => {}
        Status::Paused if opts.ignore_paused => {}
        Status::Paused => return Err(ExecError::Paused { id: id.into() }.into()),
        Status::Stopped => return Err(ExecError::NotRunning { id: id.into() }.into()),
        status => {
            return Err(ExecError::NotReady {
                id: id.into(),
                status,
            }
            .into())
        }
    }
    let config = read_config(root, id)?;
    let process = process_for(opts, &config)?;
    let terminal = process.terminal().unwrap_or(false);
    let usage = |text: &str| -> Result<Spawned, ContainerError> {
        Err(ExecError::Usage(text.into()).into())
    };
    if terminal && !opts.keep_console && opts.console_socket.is_none() {
        return usage("a detached exec with a terminal needs --console-socket to receive it");
    }
    if !terminal && opts.console_socket.is_some() {
        return usage("--console-socket was given but the process has no terminal (--tty)");
    }
    let mut plan =
        ProcessPlan::from_spec(&process, &extra_fds)?.with_container(config.linux().as_ref())?;
    let added_caps = match &opts.process {
        ExecProcess::Command(command) => command.caps.as_slice(),
        _ => &[],
    };
    if !added_caps.is_empty() {
        // As runc: added to bounding, effective and permitted, and to ambient when the process
        // has inheritable capabilities (the kernel raises no ambient one without them).
        let added = CapSets::parse_names(added_caps).map_err(crate::process::ProcessError::from)?;
        plan.caps.bounding |= added;
        plan.caps.effective |= added;
        plan.caps.permitted |= added;
        if plan.caps.inheritable != 0 {
            plan.caps.ambient |= added;
        }
    }
    let cgroup = cgroup_for(&state.cgroup, opts.cgroup.as_deref())?;
    // In berth's own mount namespace the container's root is the init's chroot: taken before
    // container_namespaces checks that the init is still the container's.
    let chroot = match &state.host_mount {
        Some(_) => Some(
            open_path(Path::new(&format!("/proc/{}/root", state.pid)))
                .map_err(sys(id, "open the container's root"))?,
        ),
        None => None,
    };
    let (join, pid_ns) = container_namespaces(&state)?;
    // Before the console socket is connected: berth may have to start again from a sealed view
    // of its binary. Held until the process runs its program (see exposure).
    let own_user_namespace = join.iter().any(|j| j.flag == CloneFlags::CLONE_NEWUSER);
    let unsealed = super::exposure::before_exec(
        root,
        &state,
        &config,
        &plan.caps,
        own_user_namespace,
        pid_ns.as_ref().map(|j| j.fd.as_fd()),
    )?;
    let seccomp = match config.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => Some(crate::seccomp::compile(profile)?),
        None => None,
    };
    let console_socket = match &opts.console_socket {
        Some(path) => Some(console::connect_socket(path)?),
        None => None,
    };
    // A pty berth relays starts with the size of the terminal berth runs in.
    let console_size = console_socket
        .is_none()
        .then(console::caller_window_size)
        .flatten()
        .or_else(|| WindowSize::from_spec(&process));
    let outside = plan.outside();
    // The setup process joins the pid namespace for its children, of which the process is one.
    let may_wait = unsealed.is_some() || pid_ns.is_none();
    let mut join = join;
    join.extend(pid_ns);
    let exec_plan = ExecPlan {
        join,
        join_cgroups: Vec::new(),
        process: plan,
        terminal: match terminal {
            true => Terminal::New(console_size),
            false => Terminal::None,
        },
        console_relayed: relayed && console_socket.is_none(),
        seccomp,
        seccomp_at: SeccompAt::Prepare,
        root: chroot,
        wait_go: outside.has_scheduler(),
        session_keyring: None,
        start: None,
    };
    let failed = |reason: String| -> ContainerError {
        ExecError::Failed {
            id: id.into(),
            reason,
        }
        .into()
    };
    let listener = |pid: Pid, listener: &OwnedFd| -> Result<(), ContainerError> {
        let oci = super::oci_state(&state, Status::Running);
        send_seccomp_listener(&config, &state, oci, pid, listener)
    };
    let launch = Launch {
        id,
        cgroup: &cgroup,
        console_socket: console_socket.as_ref().zip(opts.console_socket.as_deref()),
        oom_score_adj: process.oom_score_adj(),
        outside,
        affinity: crate::process::settings::ExecAffinity::from_spec(
            process.exec_cpu_affinity().as_ref(),
        )
        .map_err(crate::process::ProcessError::from)?,
        may_wait,
        listener: &listener,
        failed: &failed,
    };
    let (pid, console) = super::exec::launch(&launch, exec_plan)?;
    drop(unsealed);
    if let Some(path) = &opts.pid_file {
        if let Err(e) = write_atomic(path, pid.as_raw().to_string().as_bytes()) {
            // The program runs already: it is ours to end, not the container.
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            return Err(ExecError::Failed {
                id: id.into(),
                reason: format!("cannot write pid file {}: {e}", path.display()),
            }
            .into());
        }
    }
    Ok(Spawned { pid, console })
}

/// How berth starts a process from outside its pid namespace (`process::exec`) and follows it:
/// for `exec`, and for `create` where the pid namespace is joined by path.
pub(super) struct Launch<'a> {
    pub id: &'a str,
    /// The cgroup the process goes in.
    pub cgroup: &'a CgroupConfig,
    /// Where a terminal the process makes goes: the console socket (with its path), or else
    /// back to the caller.
    pub console_socket: Option<(&'a UnixStream, &'a Path)>,
    pub oom_score_adj: Option<i32>,
    /// The I/O priority and scheduling berth sets on the process.
    pub outside: crate::process::Outside,
    /// `process.execCPUAffinity`.
    pub affinity: crate::process::settings::ExecAffinity,
    /// Whether the seccomp filter may wait for the execve, where the profile forbids what the
    /// fork needs (`process::exec`): nothing that could ptrace the process shares its pid
    /// namespace, or it is berth's own.
    pub may_wait: bool,
    /// Hands the seccomp notify listener of the process with this pid on.
    pub listener: &'a dyn Fn(Pid, &OwnedFd) -> Result<(), ContainerError>,
    /// The command's error for a failure with this reason.
    pub failed: &'a dyn Fn(String) -> ContainerError,
}

/// Clones the setup process (outside the container's pid namespace; see `process::exec`),
/// places it in the cgroup, and waits until the process it forks into the container runs its
/// program (or, created, waits for `start`). Returns that process and the pty master the caller
/// keeps. On failure both are killed and reaped: nothing else is touched.
pub(super) fn launch(
    starting: &Launch,
    mut plan: ExecPlan,
) -> Result<(Pid, Option<OwnedFd>), ContainerError> {
    let id = starting.id;
    let cgroup = starting.cgroup;
    // Born in the cgroup2 directory, the process moves itself into the v1 ones (see
    // `cgroups::open_v1_tasks`): berth moving it costs an RCU grace period.
    let own_cgroup = cgroup.systemd.is_none();
    let cgroup_dir = match cgroup.layout {
        Some(Layout::Unified) => cgroup
            .unified_dir()
            .map(|dir| open_path(dir).map_err(sys(id, "open the container's cgroup")))
            .transpose()?,
        Some(Layout::Hybrid) if own_cgroup => cgroup
            .unified_dir()
            .map(|dir| open_path(dir).map_err(sys(id, "open the container's cgroup")))
            .transpose()?,
        _ => None,
    };
    if own_cgroup {
        plan.join_cgroups = cgroups::open_v1_tasks(cgroup)?;
    }
    let has_v1 = cgroup.dirs.iter().any(|(hierarchy, _)| !hierarchy.v2);
    let (ours, theirs) = channel::pair().map_err(sys(id, "make the exec channel"))?;
    plan.seccomp_at =
        crate::process::exec::seccomp_at(&plan, theirs.as_raw_fd(), starting.may_wait).map_err(
            |e| ExecError::Failed {
                id: id.into(),
                reason: e.to_string(),
            },
        )?;
    // The process is born on the `initial` CPUs: berth moves there for the clone, and back.
    // Otherwise on every CPU, not those berth's caller pinned it to.
    let all_cpus = crate::process::settings::AllCpus::enter();
    let own_cpus = match &starting.affinity.initial {
        Some(cpus) => {
            let own = nix::sched::sched_getaffinity(Pid::from_raw(0))
                .map_err(sys(id, "read berth's CPU affinity"))?;
            crate::process::settings::set_affinity(0, cpus)
                .map_err(crate::process::ProcessError::from)?;
            Some(own)
        }
        None => None,
    };
    let cloned = clone(
        CloneFlags::empty(),
        cgroup_dir.as_ref().map(|fd| fd.as_fd()),
    );
    if let Ok(Cloned::Child) = cloned {
        drop(ours);
        crate::process::exec::run(plan, theirs)
    }
    if let Some(own) = own_cpus {
        let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), &own);
    }
    drop(all_cpus);
    let Cloned::Parent {
        pid: setup,
        in_cgroup,
    } = cloned.map_err(sys(id, "clone the process"))?
    else {
        unreachable!("the child never returns")
    };
    drop(theirs);
    drop(plan);
    let moved = (own_cgroup || !has_v1) && (in_cgroup || cgroup.unified_dir().is_none());
    let mut forked = None;
    let result = watch_start(starting, setup, moved, &ours, &mut forked);
    // The setup process leaves once it has forked, or failed.
    if result.is_err() {
        let _ = nix::sys::signal::kill(setup, Signal::SIGKILL);
    }
    let _ = nix::sys::wait::waitpid(setup, None);
    match result {
        Ok(master) => Ok((forked.expect("a process that ran its program"), master)),
        Err(err) => {
            if let Some(pid) = forked {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
            }
            Err(err)
        }
    }
}

/// Places the setup process in the cgroup, lets it go on, and follows it until the process it
/// forks (`forked`) runs its program: a terminal it sends goes on to the console socket, or back
/// to the caller to relay.
fn watch_start(
    starting: &Launch,
    setup: Pid,
    in_cgroup: bool,
    channel: &Channel,
    forked: &mut Option<Pid>,
) -> Result<Option<OwnedFd>, ContainerError> {
    let Launch {
        cgroup,
        console_socket,
        oom_score_adj,
        outside,
        affinity,
        failed,
        ..
    } = starting;
    let lost = || failed("the process went away before its program ran".into());
    // What the setup process has, the process it forks inherits.
    if !in_cgroup {
        cgroups::manager(cgroup).add_process(setup.as_raw())?;
    }
    if let Some(score) = oom_score_adj {
        std::fs::write(format!("/proc/{setup}/oom_score_adj"), score.to_string())
            .map_err(|e| failed(format!("cannot set process.oomScoreAdj to {score}: {e}")))?;
    }
    outside
        .apply_io_priority(setup.as_raw())
        .map_err(|e| failed(e.to_string()))?;
    if let Some(cpus) = &affinity.last {
        crate::process::settings::set_affinity(setup.as_raw(), cpus)
            .map_err(|e| failed(e.to_string()))?;
    }
    channel.send(&Message::Go).map_err(|_| lost())?;
    let mut master = None;
    loop {
        match channel.recv_with_fd() {
            Ok((Message::Console(name), Some(fd))) => match console_socket {
                Some((socket, path)) => console::send_master(socket, path, fd.as_fd(), &name)?,
                None => master = Some(fd),
            },
            // At once: the process may make calls the agent answers before it runs its
            // program. Its pid is the setup process's, which installed the filter (see
            // process::exec); the process it forks shares it.
            Ok((Message::Fd, Some(fd))) => (starting.listener)(setup, &fd)?,
            Ok((Message::Ready, _)) => break,
            Ok((Message::Error(reason), _)) => return Err(failed(reason)),
            _ => return Err(lost()),
        }
    }
    // The setup process forks the process into the container, which may hand the channel to
    // the container: from here only a pid berth can check, and error text, are taken.
    loop {
        match channel.recv() {
            Ok(Message::Pid(n)) if forked.is_none() && is_forked(n, setup) => {
                let pid = Pid::from_raw(n);
                *forked = Some(pid);
                if outside.has_scheduler() {
                    outside
                        .apply_scheduler(n)
                        .map_err(|e| failed(e.to_string()))?;
                    channel.send(&Message::Go).map_err(|_| lost())?;
                }
            }
            // Not the process the setup process forked: someone else's word.
            Ok(Message::Pid(_)) => {}
            Ok(Message::Error(reason)) => return Err(failed(reason)),
            // Closed once the setup process is gone and the forked one runs its program (or,
            // created, let go of the channel to wait for `start`).
            Err(ChannelError::Closed) if forked.is_some() => return Ok(master),
            _ => return Err(lost()),
        }
    }
}

/// Whether `pid` is the process the setup process forked: berth's own child (CLONE_PARENT),
/// and not the setup process.
fn is_forked(pid: i32, setup: Pid) -> bool {
    pid != setup.as_raw() && super::parent_of(pid) == Some(std::process::id() as i32)
}

/// Hands the seccomp notify listener of process `pid` to the agent at
/// `linux.seccomp.listenerPath`, with the container's state `oci`.
pub(super) fn send_seccomp_listener(
    config: &Spec,
    state: &State,
    oci: serde_json::Value,
    pid: Pid,
    listener: &OwnedFd,
) -> Result<(), ContainerError> {
    let profile = config.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let (Some(profile), Some(path)) = (profile, profile.and_then(|p| p.listener_path().as_ref()))
    else {
        return Ok(());
    };
    let mut process_state = oci_spec::runtime::ContainerProcessState::default();
    process_state.set_version(state.oci_version.clone());
    process_state.set_pid(pid.as_raw());
    process_state.set_state(serde_json::from_value(oci).expect("state fits the spec"));
    let metadata = profile.listener_metadata().clone().unwrap_or_default();
    crate::seccomp::send_to_listener(path, &metadata, &process_state, listener.as_fd())?;
    Ok(())
}

fn read_config(root: &Root, id: &str) -> Result<Spec, ExecError> {
    let path = root.container_dir(id).join(CONFIG_FILE);
    let error = |reason: String| ExecError::Config {
        id: id.into(),
        path: path.clone(),
        reason,
    };
    let bytes = std::fs::read(&path).map_err(|e| error(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| error(e.to_string()))
}

/// The process to run: the process file or spec, completed from the container's process, or
/// the container's process changed by the command and runc's flags.
fn process_for(opts: &ExecOptions, config: &Spec) -> Result<Process, ExecError> {
    let container = config.process().clone().unwrap_or_default();
    let usage = |text: String| Err(ExecError::Usage(text));
    let process = match &opts.process {
        ExecProcess::File(path) => {
            let text = crate::bounded::read_regular(path, crate::spec::CONFIG_LIMIT)?;
            let parse_error = |source| ExecError::ParseProcess {
                path: path.clone(),
                source,
            };
            let mut value: serde_json::Value =
                serde_json::from_slice(&text).map_err(parse_error)?;
            // runc's process file may leave out `user`: its process then runs as root (0:0).
            let no_user = value.as_object_mut().is_some_and(|process| {
                let absent = !process.contains_key("user");
                if absent {
                    process.insert("user".into(), serde_json::json!({"uid": 0, "gid": 0}));
                }
                absent
            });
            let renamed = crate::spec::spec_names_for_oci_spec(&mut value);
            let process: Process = match renamed || no_user {
                true => serde_json::from_value(value),
                false => serde_json::from_slice(&text),
            }
            .map_err(parse_error)?;
            completed(process, &container, opts.tty)
        }
        ExecProcess::Spec(process) => completed((**process).clone(), &container, opts.tty),
        ExecProcess::Command(command) => {
            if command.args.is_empty() {
                return usage("exec needs a command, or --process FILE".into());
            }
            let mut process = container;
            process.set_args(Some(command.args.clone()));
            process.set_terminal(Some(opts.tty));
            if let Some(cwd) = &command.cwd {
                process.set_cwd(cwd.clone());
            }
            let mut env = process.env().clone().unwrap_or_default();
            for (key, value) in &command.env {
                env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key.as_str()));
                env.push(format!("{key}={value}"));
            }
            process.set_env(Some(env));
            if command.no_new_privs {
                process.set_no_new_privileges(Some(true));
            }
            let mut user = process.user().clone();
            if let Some((uid, gid)) = command.user {
                user.set_uid(uid);
                if let Some(gid) = gid {
                    user.set_gid(gid);
                }
            }
            if !command.additional_gids.is_empty() {
                let mut gids = user.additional_gids().clone().unwrap_or_default();
                gids.extend(&command.additional_gids);
                user.set_additional_gids(Some(gids));
            }
            process.set_user(user);
            process
        }
    };
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return usage("the process's args must name a program".into()),
    }
    if !process.cwd().is_absolute() {
        return usage(format!(
            "the working directory {:?} must be an absolute path",
            process.cwd()
        ));
    }
    Ok(process)
}

/// A whole process from a file or an embedder: what it leaves out is the container's, as runc
/// does.
fn completed(mut process: Process, container: &Process, tty: bool) -> Process {
    // The container's confinement, unless the process names its own (runc's rule).
    if process
        .apparmor_profile()
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        process.set_apparmor_profile(container.apparmor_profile().clone());
    }
    if process.selinux_label().as_deref().unwrap_or("").is_empty() {
        process.set_selinux_label(container.selinux_label().clone());
    }
    if process.capabilities().is_none() {
        process.set_capabilities(container.capabilities().clone());
    }
    if process.rlimits().is_none() {
        process.set_rlimits(container.rlimits().clone());
    }
    if process.no_new_privileges().is_none() {
        process.set_no_new_privileges(container.no_new_privileges());
    }
    if tty {
        process.set_terminal(Some(true));
    }
    process
}

/// The cgroup the process joins: the container's, or with `--cgroup` (cgroup v2 only) an
/// existing cgroup below it.
fn cgroup_for(container: &CgroupConfig, sub: Option<&str>) -> Result<CgroupConfig, ExecError> {
    let Some(sub) = sub else {
        return Ok(container.clone());
    };
    let usage = |text: String| Err(ExecError::Usage(text));
    let (Some(Layout::Unified), Some(dir)) = (container.layout, container.unified_dir()) else {
        return usage(format!(
            "--cgroup {sub:?} needs cgroup v2: this host's cgroups are {}",
            match container.layout {
                Some(Layout::Hybrid) => "hybrid (v1 controllers)",
                _ => "v1",
            }
        ));
    };
    let relative = Path::new(sub.trim_start_matches('/'));
    let inside = relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !inside || relative.as_os_str().is_empty() {
        return usage(format!(
            "--cgroup {sub:?} must name a cgroup below the container's"
        ));
    }
    let target = dir.join(relative);
    if !target.is_dir() {
        return usage(format!(
            "--cgroup {sub:?}: {} does not exist",
            target.display()
        ));
    }
    let mut config = container.clone();
    for (hierarchy, path) in &mut config.dirs {
        if hierarchy.v2 {
            *path = target.clone();
        }
    }
    Ok(config)
}

/// The container's namespaces that differ from berth's, opened through its init: the pid one
/// apart (the setup process joins it for its children only), the others for the process to join.
pub(super) fn container_namespaces(
    state: &State,
) -> Result<(Vec<Join>, Option<Join>), ContainerError> {
    let mut join = Vec::new();
    let mut pid_ns = None;
    let kinds = [
        CloneFlags::CLONE_NEWUSER,
        CloneFlags::CLONE_NEWIPC,
        CloneFlags::CLONE_NEWUTS,
        CloneFlags::CLONE_NEWNET,
        CloneFlags::CLONE_NEWPID,
        CloneFlags::CLONE_NEWCGROUP,
        CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        CloneFlags::CLONE_NEWNS,
    ];
    for flag in kinds {
        let name = namespaces::name(flag);
        let path = PathBuf::from(format!("/proc/{}/ns/{name}", state.pid));
        let open_error = |source| namespaces::NamespaceError::Open {
            kind: name,
            path: path.clone(),
            source,
        };
        let theirs = match File::open(&path) {
            Ok(file) => file,
            // (see ExecError::BeforeStart)
            Err(e)
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    && crate::rootless::ids().0 != 0
                    && state.status == Status::Created =>
            {
                return Err(ExecError::BeforeStart {
                    id: state.id.clone(),
                }
                .into())
            }
            Err(e) => return Err(open_error(e).into()),
        };
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}")).map_err(open_error)?;
        let same = theirs
            .metadata()
            .is_ok_and(|m| (m.dev(), m.ino()) == (ours.dev(), ours.ino()));
        if same {
            continue;
        }
        let entry = Join {
            flag,
            path,
            fd: theirs.into(),
        };
        if flag == CloneFlags::CLONE_NEWPID {
            pid_ns = Some(entry);
        } else {
            join.push(entry);
        }
    }
    // The descriptors are taken: if the init is still the container's, they are its namespaces.
    if !init_alive(state) {
        return Err(ExecError::NotRunning {
            id: state.id.clone(),
        }
        .into());
    }
    Ok((join, pid_ns))
}

fn open_path(path: &Path) -> Result<OwnedFd, nix::errno::Errno> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
}
