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
use crate::namespaces::{self, Join, PidNamespaceVisit};
use crate::process::channel::{self, Channel, ChannelError, Message};
use crate::process::clone::{clone, Cloned};
use crate::process::exec::ExecPlan;
use crate::process::{ExtraFds, ProcessPlan};
use crate::state::{write_atomic, Root, State, Status, CONFIG_FILE};

/// The `exec` flags.
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub id: String,
    /// A runtime-spec process file, instead of `args` and the flags that change the process
    /// (but `tty`).
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    pub tty: bool,
    pub cwd: Option<PathBuf>,
    /// `KEY=VALUE`, replacing the container's value of KEY.
    pub env: Vec<String>,
    /// `UID` or `UID:GID`.
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    /// Capabilities added to the bounding, effective and permitted sets.
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: i32,
    /// A cgroup below the container's (cgroup v2) to run the process in.
    pub cgroup: Option<String>,
}

impl ExecOptions {
    /// The flags that change the process, which a process file rules out. `--tty` is not one:
    /// podman passes it with a process file that asks for a terminal too.
    fn process_flags(&self) -> Vec<&'static str> {
        let given = [
            (!self.args.is_empty(), "a command"),
            (self.cwd.is_some(), "--cwd"),
            (!self.env.is_empty(), "--env"),
            (self.user.is_some(), "--user"),
            (!self.additional_gids.is_empty(), "--additional-gids"),
            (!self.caps.is_empty(), "--cap"),
            (self.no_new_privs, "--no-new-privs"),
        ];
        given
            .into_iter()
            .filter(|(g, _)| *g)
            .map(|(_, f)| f)
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot exec in container {id:?}: container not running")]
    NotRunning { id: String },
    #[error("cannot exec in container {id:?}: it is {status}")]
    NotReady { id: String, status: Status },
    #[error("cannot read the process file {path}: {source}")]
    ReadProcess {
        path: PathBuf,
        source: std::io::Error,
    },
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
}

/// Runs the process. Detached, returns 0 once its program runs; otherwise its exit status.
pub fn exec(root: &Root, opts: &ExecOptions) -> Result<i32, ContainerError> {
    let id = opts.id.as_str();
    // Before berth opens anything, so none of its descriptors can pass for a preserved one.
    let extra_fds = ExtraFds::new(opts.preserve_fds, false)?;
    let state = root.read_state(id)?;
    match status(&state, &root.container_dir(id)) {
        Status::Created | Status::Running => {}
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
    let usage =
        |text: &str| -> Result<i32, ContainerError> { Err(ExecError::Usage(text.into()).into()) };
    if terminal && opts.detach && opts.console_socket.is_none() {
        return usage("a detached exec with a terminal needs --console-socket to receive it");
    }
    if !terminal && opts.console_socket.is_some() {
        return usage("--console-socket was given but the process has no terminal (--tty)");
    }
    let mut plan = ProcessPlan::from_spec(&process, &extra_fds)?;
    if !opts.caps.is_empty() {
        // As runc: added to bounding, effective and permitted, and to ambient when the process
        // has inheritable capabilities (the kernel raises no ambient one without them).
        let added = CapSets::parse_names(&opts.caps).map_err(crate::process::ProcessError::from)?;
        plan.caps.bounding |= added;
        plan.caps.effective |= added;
        plan.caps.permitted |= added;
        if plan.caps.inheritable != 0 {
            plan.caps.ambient |= added;
        }
    }
    let cgroup = cgroup_for(&state.cgroup, opts.cgroup.as_deref())?;
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
    let exec_plan = ExecPlan {
        join,
        join_cgroups: Vec::new(),
        process: plan,
        terminal,
        // A pty berth relays starts with the size of the terminal berth runs in.
        console_size: console_socket
            .is_none()
            .then(console::caller_window_size)
            .flatten()
            .or_else(|| WindowSize::from_spec(&process)),
        seccomp,
    };
    if !opts.detach {
        super::wait::block_signals().map_err(sys(id, "block signals"))?;
    }
    let starting = Starting {
        opts,
        state: &state,
        config: &config,
        cgroup,
        console_socket,
        oom_score_adj: process.oom_score_adj(),
    };
    let (pid, master) = start(&starting, exec_plan, pid_ns)?;
    drop(unsealed);
    let sent = |reason: String| -> ContainerError {
        // The program runs already: it is ours to end, not the container.
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        ExecError::Failed {
            id: id.into(),
            reason,
        }
        .into()
    };
    if let Some(path) = &opts.pid_file {
        write_atomic(path, pid.as_raw().to_string().as_bytes())
            .map_err(|e| sent(format!("cannot write pid file {}: {e}", path.display())))?;
    }
    if opts.detach {
        return Ok(0);
    }
    let signals =
        super::wait::watch_signals().map_err(|e| sent(format!("cannot watch signals: {e}")))?;
    let mut relay = match master.map(Relay::start).transpose() {
        Ok(relay) => relay,
        Err(err) => return Err(sent(err.to_string())),
    };
    Ok(super::wait::foreground(pid, &signals, relay.as_mut()))
}

/// What berth holds while the process starts.
struct Starting<'a> {
    opts: &'a ExecOptions,
    state: &'a State,
    config: &'a Spec,
    /// The cgroup the process goes in.
    cgroup: CgroupConfig,
    console_socket: Option<UnixStream>,
    oom_score_adj: Option<i32>,
}

/// Clones the process into the container, places it in the cgroup, and waits until its program
/// runs. On failure the process is killed and reaped: nothing else is touched.
fn start(
    starting: &Starting,
    mut plan: ExecPlan,
    pid_ns: Option<Join>,
) -> Result<(Pid, Option<OwnedFd>), ContainerError> {
    let id = starting.opts.id.as_str();
    let cgroup = &starting.cgroup;
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
    // The pid namespace is entered by berth itself, so the clone is born in it; then berth
    // returns to its own.
    let pid_visit = pid_ns
        .as_ref()
        .map(|target| PidNamespaceVisit::enter(target.fd.as_fd()))
        .transpose()
        .map_err(sys(id, "enter the container's pid namespace"))?;
    let cloned = clone(
        CloneFlags::empty(),
        cgroup_dir.as_ref().map(|fd| fd.as_fd()),
    );
    if let Ok(Cloned::Child) = cloned {
        drop(ours);
        crate::process::exec::run(plan, theirs)
    }
    if let Some(visit) = pid_visit {
        visit
            .leave()
            .map_err(sys(id, "return to berth's pid namespace"))?;
    }
    let Cloned::Parent { pid, in_cgroup } = cloned.map_err(sys(id, "clone the process"))? else {
        unreachable!("the child never returns")
    };
    drop(theirs);
    drop(plan);
    let moved = (own_cgroup || !has_v1) && (in_cgroup || cgroup.unified_dir().is_none());
    let result = watch_start(starting, pid, moved, &ours);
    if result.is_err() {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
    result.map(|master| (pid, master))
}

/// Places the process in the cgroup, lets it go on, and follows it until its program runs:
/// a terminal it sends goes on to the console socket, or back to the caller to relay.
fn watch_start(
    starting: &Starting,
    pid: Pid,
    in_cgroup: bool,
    channel: &Channel,
) -> Result<Option<OwnedFd>, ContainerError> {
    let Starting {
        opts,
        state,
        config,
        cgroup,
        console_socket,
        oom_score_adj,
    } = starting;
    let id = opts.id.as_str();
    let failed = |reason: String| -> ContainerError {
        ExecError::Failed {
            id: id.into(),
            reason,
        }
        .into()
    };
    let lost = || failed("the process went away before its program ran".into());
    if !in_cgroup {
        cgroups::manager(cgroup).add_process(pid.as_raw())?;
    }
    if let Some(score) = oom_score_adj {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), score.to_string())
            .map_err(|e| failed(format!("cannot set process.oomScoreAdj to {score}: {e}")))?;
    }
    channel.send(&Message::Go).map_err(|_| lost())?;
    let mut master = None;
    loop {
        match channel.recv_with_fd() {
            Ok((Message::Console(name), Some(fd))) => {
                match (console_socket, &opts.console_socket) {
                    (Some(socket), Some(path)) => {
                        console::send_master(socket, path, fd.as_fd(), &name)?
                    }
                    _ => master = Some(fd),
                }
            }
            Ok((Message::Fd, Some(listener))) => {
                send_seccomp_listener(config, state, pid, &listener)?
            }
            Ok((Message::Ready, _)) => break,
            Ok((Message::Error(reason), _)) => return Err(failed(reason)),
            _ => return Err(lost()),
        }
    }
    // Only execve itself can fail now; on success the channel closes with the exec.
    match channel.recv() {
        Err(ChannelError::Closed) => Ok(master),
        Ok(Message::Error(reason)) => Err(failed(reason)),
        _ => Err(lost()),
    }
}

/// Hands the process's seccomp notify listener to the agent at `linux.seccomp.listenerPath`.
fn send_seccomp_listener(
    config: &Spec,
    state: &State,
    pid: Pid,
    listener: &OwnedFd,
) -> Result<(), ContainerError> {
    let profile = config.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let (Some(profile), Some(path)) = (profile, profile.and_then(|p| p.listener_path().as_ref()))
    else {
        return Ok(());
    };
    let oci = super::oci_state(state, Status::Running);
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

/// The process to run: the process file, completed from the container's process, or the
/// container's process changed by the arguments and flags.
fn process_for(opts: &ExecOptions, config: &Spec) -> Result<Process, ExecError> {
    let container = config.process().clone().unwrap_or_default();
    let usage = |text: String| Err(ExecError::Usage(text));
    let process = match &opts.process_file {
        Some(path) => {
            let flags = opts.process_flags();
            if !flags.is_empty() {
                return usage(format!(
                    "--process gives the whole process: {} cannot be added to it",
                    flags.join(", ")
                ));
            }
            let text = std::fs::read(path).map_err(|source| ExecError::ReadProcess {
                path: path.clone(),
                source,
            })?;
            let mut process: Process =
                serde_json::from_slice(&text).map_err(|source| ExecError::ParseProcess {
                    path: path.clone(),
                    source,
                })?;
            // What the file leaves out is the container's, as runc does.
            if process.capabilities().is_none() {
                process.set_capabilities(container.capabilities().clone());
            }
            if process.rlimits().is_none() {
                process.set_rlimits(container.rlimits().clone());
            }
            if process.no_new_privileges().is_none() {
                process.set_no_new_privileges(container.no_new_privileges());
            }
            if opts.tty {
                process.set_terminal(Some(true));
            }
            process
        }
        None => {
            if opts.args.is_empty() {
                return usage("exec needs a command, or --process FILE".into());
            }
            let mut process = container;
            process.set_args(Some(opts.args.clone()));
            process.set_terminal(Some(opts.tty));
            if let Some(cwd) = &opts.cwd {
                process.set_cwd(cwd.clone());
            }
            let mut env = process.env().clone().unwrap_or_default();
            for var in &opts.env {
                let Some((key, _)) = var.split_once('=') else {
                    return usage(format!("--env {var:?} must be KEY=VALUE"));
                };
                env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
                env.push(var.clone());
            }
            process.set_env(Some(env));
            if opts.no_new_privs {
                process.set_no_new_privileges(Some(true));
            }
            let mut user = process.user().clone();
            if let Some(text) = &opts.user {
                let number = |s: &str| s.parse::<u32>().ok();
                let (uid, gid) = match text.split_once(':') {
                    Some((uid, gid)) => (number(uid), number(gid).map(Some)),
                    None => (number(text), Some(None)),
                };
                let (Some(uid), Some(gid)) = (uid, gid) else {
                    return usage(format!(
                        "--user {text:?} must be UID or UID:GID, in numbers"
                    ));
                };
                user.set_uid(uid);
                if let Some(gid) = gid {
                    user.set_gid(gid);
                }
            }
            if !opts.additional_gids.is_empty() {
                let mut gids = user.additional_gids().clone().unwrap_or_default();
                gids.extend(&opts.additional_gids);
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
/// apart (berth enters it for the clone), the others for the process to join.
fn container_namespaces(state: &State) -> Result<(Vec<Join>, Option<Join>), ContainerError> {
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
        let theirs = File::open(&path).map_err(open_error)?;
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
