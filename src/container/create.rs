//! `create`: check the bundle, make the state folder and cgroup, clone the init into its
//! namespaces, run the create-time hooks, and return once the init waits for `start`. A failure
//! at any step undoes the steps before it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::{Hook, LinuxResources};

use super::exec::Launch;
use super::{oci_state, process_start_time, sys, ContainerError};
use crate::cgroups::{self, CgroupConfig, Layout};
use crate::console::{self, WindowSize};
use crate::idmap::{Caller, IdMaps, ProcessUser, Sources};
use crate::namespaces::{Join, Namespaces, TimeNamespaceVisit};
use crate::process::channel::{self, Channel, Message};
use crate::process::clone::{clone, clone_into, Cloned};
use crate::process::exec::{ExecPlan, StartPlan, Terminal};
use crate::process::init::{self, InitPlan};
use crate::process::program::SeccompAt;
use crate::process::{ExtraFds, ProcessPlan};
use crate::rootfs::RootfsPlan;
use crate::spec::{self, Bundle};
use crate::state::{write_atomic, ContainerDir, Root, State, Status};
use crate::syscall::Linux;
use crate::{network, seccomp};

/// What `create` and `run` are asked to do, typed: the command line's flags, or what an embedder
/// (the containerd shim) passes.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    /// The network mode and ports asked for over the spec and its annotations.
    pub network: network::NetworkOverride,
    pub systemd_cgroup: bool,
    /// Manage cgroups rootless (`--rootless`): leave out a cgroup berth may not make, when
    /// config.json names none (see `cgroups::rootless`).
    pub rootless_cgroups: bool,
    /// Keep the pty master of a container with a terminal, for `run` in the foreground to relay,
    /// instead of requiring --console-socket.
    pub keep_console: bool,
    /// The kept pty is relayed to berth's own stdio (`run` in the foreground): it passes the
    /// program's "\n" unchanged, as runc's does, where an embedder's keeps the usual "\r\n".
    pub plain_newlines: bool,
}

/// A container just created: its locked folder, its state, and its init.
pub struct Created {
    pub dir: ContainerDir,
    pub state: State,
    pub pid: Pid,
    /// The pty master, when the container has a terminal and `keep_console` was asked for.
    pub console: Option<OwnedFd>,
    /// The container's mount namespace, held for `run` in the foreground ([`Then::Watch`]).
    pub(super) mount_ns: Option<OwnedFd>,
}

/// What berth does once the container is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Then {
    /// Returns: `start` or `run` starts it through the exec fifo.
    Wait,
    /// As `Wait`, and berth holds the container's mount namespace (`run` in the foreground).
    /// The last process to leave a mount namespace tears its mounts down, which waits for an RCU
    /// grace period (0.05 to 5 ms here): held, the program's exit does not wait for it, and berth
    /// lets it go on another thread while it removes the container.
    Watch,
}

/// What has been made so far, to undo on failure.
#[derive(Default)]
struct Made {
    cgroup: Option<CgroupConfig>,
    /// Processes of ours to kill and reap: the init, and the intermediate of the two-stage path.
    children: Vec<Pid>,
    /// Whether ports or an address may be held in the network store.
    network: bool,
    /// The root filesystem's mount in the host's mount namespace, without one of its own.
    host_mount: Option<crate::rootfs::HostMount>,
}

/// The state, the init, the pty master and the mount namespace `build` returns.
type Built = (State, Pid, Option<OwnedFd>, Option<OwnedFd>);

/// What `create` works out before it makes anything, so bad input leaves nothing behind.
struct Checked {
    bundle: Bundle,
    network: network::NetworkRequest,
    seccomp: Option<seccomp::Filter>,
    resources: (LinuxResources, Vec<cgroups::DeviceRule>),
    /// The console socket, connected.
    console_socket: Option<UnixStream>,
    extra_fds: ExtraFds,
    /// The maps of the user namespace the container makes, if it makes one.
    id_maps: Option<IdMaps>,
}

pub fn create(root: &Root, opts: &CreateOptions) -> Result<Created, ContainerError> {
    create_then(root, opts, Then::Wait)
}

/// Creates a container whose init, once created, does `then`.
pub(super) fn create_then(
    root: &Root,
    opts: &CreateOptions,
    then: Then,
) -> Result<Created, ContainerError> {
    crate::state::validate_id(&opts.id)?;
    let extra_fds = ExtraFds::new(opts.preserve_fds, true)?;
    let bundle = spec::load(&opts.bundle)?;
    // Before anything is made: berth may have to start again from a sealed view of its binary.
    super::exposure::before_create(root, &bundle.spec)?;
    let network = network::request_from(&bundle.spec, &opts.network)?;
    let unprivileged = crate::rootless::unprivileged();
    if unprivileged {
        crate::rootless::check_network(&network, crate::rootless::unprivileged_port_start())?;
        if opts.systemd_cgroup {
            return Err(ContainerError::Unsupported(format!(
                "--systemd-cgroup is refused: berth runs as {}, and it talks only to the system's \
                 systemd, not to a user's (features: linux.cgroup.systemdUser is false); leave it \
                 out to use a delegated cgroup folder",
                crate::rootless::describe_user(crate::rootless::ids().0)
            )));
        }
    }
    let id_maps = id_maps_for(&bundle.spec)?;
    let seccomp = match bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
    {
        Some(profile) => {
            let filter = seccomp::compile(profile)?;
            if let Some(warning) = filter.unknown_names_warning() {
                crate::logging::warn(&warning);
            }
            Some(filter)
        }
        None => None,
    };
    let resources = cgroups::devices::resources_for(bundle.spec.linux().as_ref())?;
    crate::rootfs::check_mounts(&bundle.spec, &bundle.dir)?;
    let terminal = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let console_socket = match (&opts.console_socket, terminal) {
        (Some(path), true) => Some(console::connect_socket(path)?),
        (Some(_), false) => {
            return Err(ContainerError::Unsupported(
                "--console-socket was given but process.terminal is false".into(),
            ))
        }
        (None, true) if !opts.keep_console => {
            return Err(ContainerError::Unsupported(
                "process.terminal is true: give --console-socket to receive the terminal, or use `run` without --detach".into(),
            ))
        }
        (None, _) => None,
    };
    let checked = Checked {
        bundle,
        network,
        seccomp,
        resources,
        console_socket,
        extra_fds,
        id_maps,
    };
    let dir = root.create_container(&opts.id)?;
    let mut made = Made::default();
    match build(root, &dir, opts, checked, then, &mut made) {
        Ok((state, pid, console, mount_ns)) => Ok(Created {
            dir,
            state,
            pid,
            console,
            mount_ns,
        }),
        Err(err) => {
            undo(root, dir, made);
            Err(err)
        }
    }
}

fn undo(root: &Root, dir: ContainerDir, made: Made) {
    for pid in made.children {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
    if let Some(cgroup) = made.cgroup {
        let manager = cgroups::manager(&cgroup);
        for pid in manager.pids().unwrap_or_default() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Err(err) = manager.remove() {
            crate::logging::warn(&format!("cleaning up container {:?}: {err}", dir.id));
        }
    }
    if let Some(mount) = made.host_mount {
        if let Err(err) = crate::rootfs::detach_root(&Linux, &mount) {
            crate::logging::warn(&format!("cleaning up container {:?}: {err}", dir.id));
        }
    }
    if made.network {
        if let Err(err) = network::release_failed_create(&root.path, &dir.id) {
            crate::logging::warn(&format!("cleaning up container {:?}: {err}", dir.id));
        }
    }
    if let Err(err) = dir.remove() {
        crate::logging::warn(&format!("cleaning up: {err}"));
    }
}

fn build(
    root: &Root,
    dir: &ContainerDir,
    opts: &CreateOptions,
    checked: Checked,
    then: Then,
    made: &mut Made,
) -> Result<Built, ContainerError> {
    let id = opts.id.as_str();
    let Checked {
        bundle,
        network: net_request,
        seccomp,
        resources,
        console_socket,
        extra_fds,
        id_maps,
    } = checked;
    let bundle = &bundle;
    let spec = &bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .expect("spec::check requires process");
    let linux = spec.linux().as_ref();
    let network_namespace = match &net_request.mode {
        network::Mode::Host => None,
        network::Mode::Join(path) => Some(Some(path.as_path())),
        network::Mode::Bridge | network::Mode::None => Some(None),
    };
    let mut namespaces = Namespaces::from_spec(spec, network_namespace)?;
    let cgroups_path = linux.and_then(|l| l.cgroups_path().as_deref());
    let mut cgroup = cgroups::config_for(cgroups_path, id, opts.systemd_cgroup)?;

    // The first state is written before anything else is made, so `delete --force` can find the
    // cgroup even if berth is killed half-way.
    let mut state = State {
        oci_version: spec.version().clone(),
        id: id.to_string(),
        status: Status::Creating,
        pid: 0,
        pid_start: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: crate::logging::rfc3339_now(),
        owner: owner_name(),
        annotations: spec
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        cgroup: cgroup.clone(),
        network: None,
        hooks: spec.hooks().clone(),
        own_pid_namespace: namespaces.new.contains(CloneFlags::CLONE_NEWPID),
        host_mount: None,
    };
    dir.write_state(&state)?;
    crate::fault::point("create:state");

    // Before it counts as made: the clean-up of a failed create would end what is in it.
    cgroups::check_unused(&cgroup)?;
    made.cgroup = Some(cgroup.clone());
    if opts.rootless_cgroups && cgroup.systemd.is_none() {
        let explicit = cgroups_path.is_some_and(|p| !p.as_os_str().is_empty());
        let who = crate::rootless::describe_user(crate::rootless::ids().0);
        cgroups::rootless::create(&mut cgroup, explicit, &who)?;
        if let Some(reason) = cgroup.absence() {
            crate::logging::debug(&format!(
                "rootless: container {id:?} has no cgroup of its own in {} of {} hierarchies, \
                 its processes stay in berth's: {reason}",
                cgroup.left_out.len(),
                cgroup.left_out.len() + cgroup.dirs.len()
            ));
            state.cgroup = cgroup.clone();
            dir.write_state(&state)?;
        }
        cgroups::rootless::check_resources(&cgroup, &resources.0)?;
    }
    let manager = cgroups::manager(&cgroup);
    let userns = namespaces.has_user() || crate::rootless::in_user_namespace();
    // The init is born in the cgroup2 directory and moves itself into the v1 ones (see
    // `cgroups::open_v1_tasks`), so berth never moves it: that costs an RCU grace period. With
    // systemd, a user namespace or rootless cgroups, berth moves it as before.
    let own_cgroup = cgroup.systemd.is_none() && !userns && !opts.rootless_cgroups;
    let has_v1 = cgroup.dirs.iter().any(|(hierarchy, _)| !hierarchy.v2);
    // Then berth makes the v1 cgroups and applies the limits while the init sets up its mounts
    // (it has two CPUs to do it on), and the init joins them before the first step that needs
    // them (`InitPlan::cgroups_later`). Otherwise the limits and device rules are in place
    // before the init exists.
    let v1_later = own_cgroup && has_v1;
    let mut cgroups_later = v1_later;
    if v1_later {
        cgroups::create_part(&cgroup, true)?;
    } else {
        manager.create()?;
        // In a user namespace no device node can be made and an ordinary user can load no
        // device program: see cgroups::rootless for why the rules are not applied there.
        if opts.rootless_cgroups && userns {
            crate::logging::debug(
                "rootless: linux.resources.devices is not applied: the container is in a user \
                 namespace, where its processes cannot make device nodes",
            );
            // (without a cgroup, check_resources has refused every limit)
            if !cgroup.dirs.is_empty() {
                manager.update(&resources.0)?;
            }
        } else {
            manager.apply(&resources.0, &resources.1)?;
        }
    }
    crate::fault::point("create:cgroup");
    made.network = true;
    let reservation = network::reserve(&root.path, id, &net_request)?;
    crate::fault::point("create:reserve");

    // A new time namespace is made by berth itself for its children, with the offsets in, before
    // the clone: a process born in it (or cloned with CLONE_NEWTIME) would freeze them at zero.
    let new_time = namespaces.new & CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    namespaces.new -= new_time;
    let new = namespaces.new;
    let userns = namespaces.has_user();
    let id_maps = match (new.contains(CloneFlags::CLONE_NEWUSER), id_maps) {
        (true, Some(maps)) => {
            crate::logging::debug(&format!("user namespace maps: {}", maps.describe()));
            Some(maps)
        }
        _ => None,
    };
    // With a user namespace, namespaces given by path must be joined before the new ones are
    // made, so the new ones belong to the new user namespace: that takes one more process.
    let two_stage = userns && !namespaces.join.is_empty();
    let cgroup_dir = match cgroup.layout {
        Some(Layout::Unified) => cgroup.unified_dir().and_then(|d| open_path(d).ok()),
        Some(Layout::Hybrid) if own_cgroup => cgroup.unified_dir().and_then(|d| open_path(d).ok()),
        _ => None,
    };
    // Whether berth must move the init after the clone (its cgroup namespace waits for that).
    let parent_moves = |born_in_v2: bool| {
        (has_v1 && !own_cgroup) || (cgroup.unified_dir().is_some() && !born_in_v2)
    };
    let (mut clone_flags, mut unshare) = if two_stage {
        (CloneFlags::empty(), new)
    } else if new.contains(CloneFlags::CLONE_NEWCGROUP) && (cgroup_dir.is_none() || v1_later) {
        // The cgroup namespace is rooted where the process is when it is made: after the move.
        (
            new - CloneFlags::CLONE_NEWCGROUP,
            CloneFlags::CLONE_NEWCGROUP,
        )
    } else {
        (new, CloneFlags::empty())
    };
    let mut wait_go = !two_stage
        && (new.contains(CloneFlags::CLONE_NEWUSER)
            || (parent_moves(cgroup_dir.is_some()) && !unshare.is_empty()));

    // A pid namespace given by path is never entered by the init (`built_only` below).
    let mut join_pid = namespaces
        .join
        .iter()
        .position(|j| j.flag == CloneFlags::CLONE_NEWPID)
        .map(|i| namespaces.join.remove(i));

    let hooks = spec.hooks().clone().unwrap_or_default();
    #[allow(deprecated)]
    let (prestart, create_runtime) = (
        hooks.prestart().clone().unwrap_or_default(),
        hooks.create_runtime().clone().unwrap_or_default(),
    );
    let create_container = hooks.create_container().clone().unwrap_or_default();
    let start_container = hooks.start_container().clone().unwrap_or_default();
    let hooks_point = !(prestart.is_empty()
        && create_runtime.is_empty()
        && create_container.is_empty()
        && start_container.is_empty());

    let mut rootfs = RootfsPlan::from_spec(
        spec,
        &bundle.dir,
        &bundle.rootfs,
        opts.no_pivot,
        cgroup.clone(),
        namespaces.has(CloneFlags::CLONE_NEWCGROUP),
        // Under rootless podman berth itself runs in a user namespace: no mknod there either.
        userns || crate::rootless::in_user_namespace(),
    )?;
    let process_plan = ProcessPlan::from_spec(process, &extra_fds)?.with_container(linux)?;
    // A pid namespace joined by path holds whatever is in it already, which would see the init
    // from its first instant: there the init only builds the container, from outside, and berth
    // starts the container's process as `exec` starts one (`process::init`).
    let built_only = join_pid.is_some();
    // The init keeps this descriptor (berth holds it across the clone) for its proc mounts.
    rootfs.proc_pid_ns = join_pid.as_ref().map(|j| j.fd.as_raw_fd());
    if rootfs.host_mount_ns {
        // Made by berth, recorded before the init exists, so delete can always undo it.
        let mount = crate::rootfs::bind_root(&Linux, &bundle.rootfs)?;
        made.host_mount = Some(mount.clone());
        state.host_mount = Some(mount);
        dir.write_state(&state)?;
    }

    let fifo_path = dir.fifo_path();
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o622))
        .map_err(sys(id, "make the exec fifo"))?;
    // Read-write, so the init's read blocks until `start` writes rather than seeing end-of-file.
    let fifo = nix::fcntl::open(&fifo_path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(sys(id, "open the exec fifo"))?;

    let (fifo, seccomp, mut from_outside) = match built_only {
        false => (Some(fifo), seccomp, None),
        true => (
            None,
            None,
            Some(FromOutside {
                process: process_plan.clone(),
                seccomp,
                fifo,
                start_container: start_container.clone(),
                session_keyring: (!opts.no_new_keyring).then(|| format!("_ses.{id}")),
            }),
        ),
    };
    let mut plan = InitPlan {
        join: std::mem::take(&mut namespaces.join),
        join_cgroups: Vec::new(),
        cgroups_later,
        unshare,
        two_stage,
        wait_go,
        userns,
        dumpable_for_maps: id_maps.as_ref().is_some_and(IdMaps::needs_dumpable),
        own_pid_namespace: new.contains(CloneFlags::CLONE_NEWPID),
        new_netns: new.contains(CloneFlags::CLONE_NEWNET),
        hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
        domainname: spec.domainname().clone().filter(|h| !h.is_empty()),
        rootfs,
        process: process_plan,
        terminal: process.terminal().unwrap_or(false),
        // A pty berth relays starts with the size of the terminal berth runs in.
        console_relayed: opts.plain_newlines && console_socket.is_none(),
        console_size: console_socket
            .is_none()
            .then(console::caller_window_size)
            .flatten()
            .or_else(|| WindowSize::from_spec(process)),
        hooks_point,
        create_container_hooks: create_container,
        start_container_hooks: start_container,
        fifo,
        built_only,
        state: String::new(),
        seccomp,
        session_keyring: (!opts.no_new_keyring).then(|| format!("_ses.{id}")),
        lock_fd: dir.lock_fd(),
    };
    let (ours, theirs) = channel::pair().map_err(sys(id, "make the init channel"))?;

    let time_visit = match new_time.is_empty() {
        true => None,
        false => Some(TimeNamespaceVisit::enter(&time_offsets(linux))?),
    };
    let all_cpus = crate::process::settings::AllCpus::enter();
    let cloned = match cgroup_dir
        .as_ref()
        .map(|dir| clone_into(clone_flags, dir.as_fd()))
    {
        Some(Ok(Some(cloned))) => Ok(cloned),
        Some(Err(errno)) => Err(errno),
        // Not born in the cgroup (a kernel before 5.7): berth moves the init, which waits for
        // that before it makes its cgroup namespace.
        _ => {
            if cgroup_dir.is_some() {
                wait_go = !two_stage;
                plan.wait_go = wait_go;
                unshare |= clone_flags & CloneFlags::CLONE_NEWCGROUP;
                clone_flags -= CloneFlags::CLONE_NEWCGROUP;
                plan.unshare = unshare;
                // berth moves it into every hierarchy before it goes on.
                cgroups_later = false;
                plan.cgroups_later = false;
            }
            clone(clone_flags, None)
        }
    };
    if let Ok(Cloned::Child) = cloned {
        drop(ours);
        init::run(plan, theirs)
    }
    drop(all_cpus);
    // Only berth goes back: the init stays in the time namespace it was born in.
    if let Some(visit) = time_visit {
        visit
            .leave()
            .map_err(sys(id, "return to berth's time namespace"))?;
    }
    let Cloned::Parent {
        pid: first,
        in_cgroup,
    } = cloned.map_err(sys(id, "clone the init"))?
    else {
        unreachable!("the init never returns")
    };
    let outside = plan.process.outside();
    drop(plan);
    drop(theirs);
    made.children.push(first);
    // Opened now, while the init surely lives: a program that runs at once may be gone soon.
    let mount_ns = match then == Then::Watch && !two_stage && new.contains(CloneFlags::CLONE_NEWNS)
    {
        true => open_namespace(first, "mnt"),
        false => None,
    };
    crate::fault::point("create:clone");
    if v1_later {
        cgroups::create_part(&cgroup, false)?;
        manager.apply(&resources.0, &resources.1)?;
    }
    if parent_moves(in_cgroup) {
        manager.add_process(first.as_raw())?;
    }
    if cgroups_later {
        let tasks = cgroups::open_v1_tasks(&cgroup)?;
        let raw: Vec<_> = tasks.iter().map(|fd| fd.as_raw_fd()).collect();
        ours.send_with_fds(&Message::Cgroups, &raw)
            .map_err(|_| init_failed(id, &ours, first))?;
    }
    dir.write_config(&bundle.raw)?;
    let write_maps = |pid: Pid| match &id_maps {
        Some(maps) => maps.write(pid.as_raw()).map_err(|e| ContainerError::Init {
            id: id.into(),
            reason: e.to_string(),
        }),
        None => Ok(()),
    };

    let pid = if two_stage {
        // The intermediate asks for maps once it made the new user namespace, then forks the init.
        expect(id, &ours, Message::HooksPoint, first)?;
        write_maps(first)?;
        ours.send(&Message::Go)
            .map_err(|_| init_failed(id, &ours, first))?;
        let pidfd = match ours.recv_with_fd() {
            Ok((Message::Fd, Some(fd))) => fd,
            Ok((Message::Error(reason), _)) => {
                return Err(ContainerError::Init {
                    id: id.into(),
                    reason,
                })
            }
            _ => return Err(init_lost(id, first)),
        };
        let _ = nix::sys::wait::waitpid(first, None);
        made.children.clear();
        let pid = pid_of_pidfd(&pidfd).ok_or_else(|| init_lost(id, first))?;
        made.children.push(pid);
        pid
    } else {
        if let Some(maps) = &id_maps {
            if maps.needs_dumpable() {
                // the init says when it is dumpable, so the maps can be written
                expect(id, &ours, Message::MapIds, first)?;
            }
        }
        write_maps(first)?;
        if wait_go {
            ours.send(&Message::Go)
                .map_err(|_| init_failed(id, &ours, first))?;
        }
        first
    };
    // The process of a container built from outside gets these when berth starts it.
    let oom_score_adj = process.oom_score_adj().filter(|_| !built_only);
    if !built_only {
        outside.apply(pid.as_raw())?;
    }
    if let Some(score) = oom_score_adj {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), score.to_string()).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                " (lowering it needs CAP_SYS_RESOURCE)"
            } else {
                ""
            };
            ContainerError::Init {
                id: id.into(),
                reason: format!("cannot set process.oomScoreAdj to {score}: {e}{hint}"),
            }
        })?;
    }
    state.pid = pid.as_raw();
    // The init builds its root filesystem meanwhile; it waits for `start` before it runs anything.
    let net_state = match network::attach(&root.path, id, &net_request, &reservation, state.pid) {
        Ok(net_state) => net_state,
        // the init is gone before its namespace could be wired: it may have said why
        Err(network::NetworkError::Namespace { .. }) => return Err(init_failed(id, &ours, pid)),
        Err(err) => return Err(err.into()),
    };
    crate::fault::point("create:attach");
    state.network = Some(serde_json::to_value(&net_state).expect("network state serialises"));
    state.pid_start = process_start_time(state.pid)
        .map(|(_, start)| start)
        .unwrap_or(0);
    dir.write_state(&state)?;

    let mut console = None;
    let mut hooks_state = None;
    let pid = loop {
        match ours.recv_with_fd() {
            Ok((Message::HooksPoint, _)) => {
                let json = oci_state(&state, Status::Creating).to_string();
                crate::hooks::run("prestart", &prestart, &json)?;
                crate::hooks::run("createRuntime", &create_runtime, &json)?;
                ours.send(&Message::State(json.clone()))
                    .map_err(|_| init_lost(id, pid))?;
                hooks_state = Some(json);
            }
            Ok((Message::Built, _)) => {
                let Some(outside_plan) = from_outside.take() else {
                    return Err(init_lost(id, pid));
                };
                let hooks_state = hooks_state
                    .take()
                    .unwrap_or_else(|| oci_state(&state, Status::Creating).to_string());
                let final_pid = start_from_outside(
                    &state,
                    spec,
                    outside_plan,
                    join_pid
                        .take()
                        .expect("a container built from outside joins a pid namespace"),
                    hooks_state,
                )
                .inspect(|&final_pid| made.children.push(final_pid))?;
                // The init leaves once the channel closes.
                drop(ours);
                let _ = nix::sys::wait::waitpid(pid, None);
                made.children.retain(|&child| child != pid);
                state.pid = final_pid.as_raw();
                state.pid_start = process_start_time(state.pid)
                    .map(|(_, start)| start)
                    .unwrap_or(0);
                break final_pid;
            }
            Ok((Message::Fd, Some(listener))) => send_seccomp_listener(spec, &state, &listener)?,
            Ok((Message::Console(name), Some(master))) => {
                match (&console_socket, &opts.console_socket) {
                    (Some(socket), Some(path)) => {
                        console::send_master(socket, path, master.as_fd(), &name)?
                    }
                    _ => console = Some(master),
                }
            }
            Ok((Message::Ready, _)) if !built_only => break pid,
            Ok((Message::Error(reason), _)) => {
                return Err(ContainerError::Init {
                    id: id.into(),
                    reason,
                })
            }
            _ => return Err(init_lost(id, pid)),
        }
    };
    state.status = Status::Created;
    dir.write_state(&state)?;
    crate::fault::point("create:created");
    if let Some(path) = &opts.pid_file {
        write_atomic(path, pid.as_raw().to_string().as_bytes()).map_err(|e| match e {
            crate::state::StateError::Io { source, .. } => ContainerError::PidFile {
                path: path.clone(),
                source,
            },
            other => other.into(),
        })?;
    }
    Ok((state, pid, console, mount_ns))
}

/// The namespace `kind` of process `pid`, open; `None` if it cannot be (the hold is a speed-up).
fn open_namespace(pid: Pid, kind: &str) -> Option<OwnedFd> {
    nix::fcntl::open(
        format!("/proc/{pid}/ns/{kind}").as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()
}

/// What berth keeps to start the process of a container that its init builds from outside the
/// pid namespace it joins (`process::init`).
struct FromOutside {
    process: ProcessPlan,
    seccomp: Option<seccomp::Filter>,
    fifo: OwnedFd,
    start_container: Vec<Hook>,
    session_keyring: Option<String>,
}

/// Starts the container's process into the namespaces the init (`state.pid`) built and the pid
/// namespace `pid_ns`, the way `exec` starts one, to wait for `start`. Returns its pid.
fn start_from_outside(
    state: &State,
    spec: &oci_spec::runtime::Spec,
    plan: FromOutside,
    pid_ns: Join,
    hooks_state: String,
) -> Result<Pid, ContainerError> {
    let id = state.id.as_str();
    let (mut join, _) = super::exec::container_namespaces(state)?;
    join.push(pid_ns);
    // In berth's own mount namespace the container's root is the init's chroot.
    let root = match &state.host_mount {
        Some(_) => Some(
            nix::fcntl::open(
                format!("/proc/{}/root", state.pid).as_str(),
                OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_DIRECTORY,
                Mode::empty(),
            )
            .map_err(sys(id, "open the container's root"))?,
        ),
        None => None,
    };
    let process = spec
        .process()
        .as_ref()
        .expect("spec::check requires process");
    let outside = plan.process.outside();
    let exec_plan = ExecPlan {
        join,
        join_cgroups: Vec::new(),
        process: plan.process,
        terminal: match process.terminal().unwrap_or(false) {
            true => Terminal::Console,
            false => Terminal::None,
        },
        // The init made the console, relayed or not; this process only opens it.
        console_relayed: false,
        seccomp: plan.seccomp,
        seccomp_at: SeccompAt::Prepare,
        root,
        wait_go: outside.has_scheduler(),
        session_keyring: plan.session_keyring,
        start: Some(StartPlan {
            fifo: plan.fifo,
            hooks: plan.start_container,
            state: hooks_state,
        }),
    };
    let failed = |reason: String| ContainerError::Init {
        id: id.into(),
        reason,
    };
    let listener = |pid: Pid, listener: &OwnedFd| {
        let mut state = state.clone();
        state.pid = pid.as_raw();
        send_seccomp_listener(spec, &state, listener)
    };
    let launch = Launch {
        id,
        cgroup: &state.cgroup,
        console_socket: None,
        oom_score_adj: process.oom_score_adj(),
        outside,
        affinity: Default::default(),
        // Whatever is in a pid namespace joined by path may ptrace.
        may_wait: false,
        listener: &listener,
        failed: &failed,
    };
    let (pid, _) = super::exec::launch(&launch, exec_plan)?;
    Ok(pid)
}

/// Hands the init's seccomp notify listener to the agent at `linux.seccomp.listenerPath`.
fn send_seccomp_listener(
    spec: &oci_spec::runtime::Spec,
    state: &State,
    listener: &OwnedFd,
) -> Result<(), ContainerError> {
    let profile = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let path = profile.and_then(|p| p.listener_path().as_ref());
    let (Some(profile), Some(path)) = (profile, path) else {
        return Ok(());
    };
    let oci: oci_spec::runtime::State =
        serde_json::from_value(oci_state(state, Status::Creating)).expect("state fits the spec");
    let mut process_state = oci_spec::runtime::ContainerProcessState::default();
    process_state.set_version(state.oci_version.clone());
    process_state.set_pid(state.pid);
    process_state.set_state(oci);
    let metadata = profile.listener_metadata().clone().unwrap_or_default();
    seccomp::send_to_listener(path, &metadata, &process_state, listener.as_fd())?;
    Ok(())
}

/// `linux.timeOffsets` as (clock, seconds, nanoseconds).
fn time_offsets(linux: Option<&oci_spec::runtime::Linux>) -> Vec<(String, i64, u32)> {
    linux
        .and_then(|l| l.time_offsets().as_ref())
        .into_iter()
        .flatten()
        .map(|(clock, offset)| {
            (
                clock.clone(),
                offset.secs().unwrap_or(0),
                offset.nanosecs().unwrap_or(0),
            )
        })
        .collect()
}

/// The name of the user running berth, as `list` shows it.
pub(crate) fn owner_name() -> String {
    let uid = nix::unistd::getuid().as_raw();
    crate::rootless::user_name(uid).unwrap_or_else(|| uid.to_string())
}

/// The maps of the user namespace the container makes (a `user` entry without a path), checked
/// for the user berth runs as.
fn id_maps_for(spec: &oci_spec::runtime::Spec) -> Result<Option<IdMaps>, ContainerError> {
    let Some(linux) = spec.linux().as_ref() else {
        return Ok(None);
    };
    let makes_one =
        linux.namespaces().iter().flatten().any(|ns| {
            ns.typ() == oci_spec::runtime::LinuxNamespaceType::User && ns.path().is_none()
        });
    if !makes_one {
        return Ok(None);
    }
    let user = spec.process().as_ref().map(|p| p.user());
    let process_user = ProcessUser {
        uid: user.map_or(0, |u| u.uid()),
        gid: user.map_or(0, |u| u.gid()),
        additional_gids: user
            .and_then(|u| u.additional_gids().clone())
            .unwrap_or_default(),
    };
    let maps = IdMaps::plan(
        linux.uid_mappings().as_deref().unwrap_or_default(),
        linux.gid_mappings().as_deref().unwrap_or_default(),
        &process_user,
        &Caller::berth(),
        &Sources::host(),
    )?;
    Ok(Some(maps))
}

fn open_path(path: &Path) -> Result<OwnedFd, nix::errno::Errno> {
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
}

fn expect(id: &str, channel: &Channel, wanted: Message, pid: Pid) -> Result<(), ContainerError> {
    match channel.recv() {
        Ok(m) if m == wanted => Ok(()),
        Ok(Message::Error(reason)) => Err(ContainerError::Init {
            id: id.into(),
            reason,
        }),
        _ => Err(init_lost(id, pid)),
    }
}

/// The init closed the channel while berth was writing: it may have sent why before it exited.
fn init_failed(id: &str, channel: &Channel, pid: Pid) -> ContainerError {
    match channel.recv() {
        Ok(Message::Error(reason)) => {
            let _ = nix::sys::wait::waitpid(pid, None);
            ContainerError::Init {
                id: id.into(),
                reason,
            }
        }
        _ => init_lost(id, pid),
    }
}

/// The init went away without saying why: reap it and say how it ended.
fn init_lost(id: &str, pid: Pid) -> ContainerError {
    let how = match nix::sys::wait::waitpid(pid, None) {
        Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
        Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => format!("was killed by {sig}"),
        _ => "went away".to_string(),
    };
    ContainerError::Init {
        id: id.into(),
        reason: format!("the init process {how} before the container was ready"),
    }
}

/// The pid, in berth's pid namespace, of the process a pidfd refers to.
fn pid_of_pidfd(pidfd: &OwnedFd) -> Option<Pid> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
        .map(Pid::from_raw)
}
