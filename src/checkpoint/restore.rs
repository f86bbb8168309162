//! `restore`: make a container again from a checkpoint and a bundle. berth makes what CRIU
//! does not restore (the state folder, the cgroup, the network's reservation), hands CRIU the
//! rest (the root filesystem, the mounts from the host, the namespaces joined by path, the
//! pipes for the standard streams), wires the empty network namespace CRIU makes, and records
//! the restored init. A failure at any step undoes the steps before it.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxNamespaceType;

use super::dump::{open_dir, NET_KEY, PID_KEY};
use super::rpc::{CgMode, CgroupRoot, CriuOpts, InheritFd, JoinNamespace, ReqType, Request};
use super::swrk::{Notification, Swrk};
use super::{explain, io_error, mounts, CheckpointError, Saved, LOG_LEVEL, RESTORE_LOG};
use crate::cgroups::{self, CgroupConfig};
use crate::container::{oci_state, process_start_time, ContainerError};
use crate::network::{self, Mode, NetworkRequest, NetworkState, Reservation};
use crate::spec::{self, Bundle};
use crate::state::{write_atomic, ContainerDir, Root, State, Status};
use crate::{console, hooks};

/// The `restore` flags, as runc has them.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub criu: PathBuf,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub auto_dedup: bool,
    pub manage_cgroups_mode: Option<CgMode>,
    pub empty_ns: u32,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub systemd_cgroup: bool,
    /// Keep the new pty's master (for `restore` in the foreground to relay) when there is no
    /// console socket.
    pub keep_console: bool,
}

/// A container just restored: its locked folder, its state, its init, and the master of its
/// new terminal when it had one and `keep_console` was asked for.
pub struct Restored {
    pub dir: ContainerDir,
    pub state: State,
    pub pid: Pid,
    pub console: Option<OwnedFd>,
}

/// What has been made so far, to undo on failure.
#[derive(Default)]
struct Made {
    cgroup: Option<CgroupConfig>,
    network: bool,
    pid: Option<i32>,
}

pub fn restore(root: &Root, opts: &RestoreOptions) -> Result<Restored, CheckpointError> {
    crate::state::validate_id(&opts.id).map_err(ContainerError::from)?;
    let bundle = spec::load(&opts.bundle).map_err(ContainerError::from)?;
    let saved = Saved::read(&opts.image_path)?;
    if !spec::namespace_types(&bundle.spec).contains(&LinuxNamespaceType::Mount) {
        return Err(super::without_mount_namespace("restored"));
    }
    let request = network_request(&bundle, saved.network.as_ref())?;
    let console_socket = match (&opts.console_socket, saved.terminal) {
        (Some(path), true) => Some(console::connect_socket(path).map_err(ContainerError::from)?),
        (Some(_), false) => {
            return Err(CheckpointError::Unsupported(
                "--console-socket was given but the checkpointed container had no terminal".into(),
            ))
        }
        (None, true) if !opts.keep_console => {
            return Err(CheckpointError::Unsupported(
                "the checkpointed container had a terminal: give --console-socket to receive the new one, or restore without --detach".into(),
            ))
        }
        (None, _) => None,
    };
    let dir = root
        .create_container(&opts.id)
        .map_err(ContainerError::from)?;
    let mut made = Made::default();
    match build(
        root,
        &dir,
        opts,
        &bundle,
        &saved,
        &request,
        console_socket,
        &mut made,
    ) {
        Ok((state, console)) => Ok(Restored {
            pid: Pid::from_raw(state.pid),
            dir,
            state,
            console,
        }),
        Err(err) => {
            undo(root, dir, made);
            Err(err)
        }
    }
}

/// The network the restored container gets: a namespace joined by path is the bundle's (the
/// engine made a new one); otherwise what the container had, so bridge mode gets its address
/// and published ports back.
fn network_request(
    bundle: &Bundle,
    saved: Option<&NetworkState>,
) -> Result<NetworkRequest, CheckpointError> {
    let from_bundle = network::request_from(&bundle.spec, &network::NetworkOverride::default())
        .map_err(ContainerError::from)?;
    let Some(saved) = saved else {
        return Ok(from_bundle);
    };
    if matches!(from_bundle.mode, Mode::Join(_)) || matches!(saved.mode, Mode::Join(_)) {
        return Ok(from_bundle);
    }
    let mut request = NetworkRequest {
        mode: saved.mode.clone(),
        ports: saved.ports.clone(),
        ..from_bundle
    };
    if let Some(lease) = &saved.lease {
        request.bridge = lease.bridge.clone();
        request.subnet = lease.subnet;
    }
    Ok(request)
}

fn undo(root: &Root, dir: ContainerDir, made: Made) {
    if let Some(pid) = made.pid {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
    }
    if let Some(cgroup) = made.cgroup {
        let manager = cgroups::manager(&cgroup);
        let _ = manager.kill_all(Signal::SIGKILL);
        let _ = cgroups::wait_until(std::time::Duration::from_secs(5), || {
            manager.pids().map(|p| p.is_empty()).unwrap_or(true)
        });
        if let Err(err) = manager.remove() {
            crate::logging::warn(&format!("cleaning up container {:?}: {err}", dir.id));
        }
    }
    if made.network {
        if let Err(err) = network::release(&root.path, &dir.id) {
            crate::logging::warn(&format!("cleaning up container {:?}: {err}", dir.id));
        }
    }
    if let Err(err) = dir.remove() {
        crate::logging::warn(&format!("cleaning up: {err}"));
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    root: &Root,
    dir: &ContainerDir,
    opts: &RestoreOptions,
    bundle: &Bundle,
    saved: &Saved,
    request: &NetworkRequest,
    console_socket: Option<UnixStream>,
    made: &mut Made,
) -> Result<(State, Option<OwnedFd>), CheckpointError> {
    let id = opts.id.as_str();
    let spec = &bundle.spec;
    let linux = spec.linux().as_ref();
    let cgroups_path = linux.and_then(|l| l.cgroups_path().as_deref());
    let cgroup =
        cgroups::config_for(cgroups_path, id, opts.systemd_cgroup).map_err(ContainerError::from)?;
    let own_pid_namespace = linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .any(|ns| ns.typ() == LinuxNamespaceType::Pid && ns.path().is_none());
    let mut state = State {
        oci_version: spec.version().clone(),
        id: id.to_string(),
        status: Status::Creating,
        pid: 0,
        pid_start: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: crate::logging::rfc3339_now(),
        owner: crate::container::create::owner_name(),
        annotations: spec
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        cgroup: cgroup.clone(),
        network: None,
        hooks: spec.hooks().clone(),
        own_pid_namespace,
        host_mount: None,
    };
    dir.write_state(&state).map_err(ContainerError::from)?;
    dir.write_config(&bundle.raw)
        .map_err(ContainerError::from)?;

    let manager = cgroups::manager(&cgroup);
    made.cgroup = Some(cgroup.clone());
    manager.create().map_err(ContainerError::from)?;
    let resources = cgroups::devices::resources_for(linux).map_err(ContainerError::from)?;
    manager
        .apply(&resources.0, &resources.1)
        .map_err(ContainerError::from)?;

    made.network = true;
    let reservation = match &saved.network {
        Some(previous) => network::reserve_again(&root.path, id, request, previous),
        None => network::reserve(&root.path, id, request),
    }
    .map_err(ContainerError::from)?;

    // CRIU wants the root filesystem as a mount point whose parent is not mounted over: a bind
    // of it in the state folder, in a mount namespace of berth's own, so that it vanishes with
    // berth whatever happens (a forced delete then finds an empty folder).
    private_mounts()?;
    let criu_root = dir.path.join("criu-root");
    std::fs::create_dir(&criu_root).map_err(io_error(&criu_root))?;
    nix::mount::mount(
        Some(&bundle.rootfs),
        &criu_root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| io_error(&criu_root)(e.into()))?;
    let result = run_criu(
        root,
        opts,
        bundle,
        saved,
        request,
        &reservation,
        &criu_root,
        &cgroup,
        &state,
        console_socket,
        made,
    );
    let _ = nix::mount::umount2(&criu_root, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(&criu_root);
    let (pid, net_state, console) = result?;

    state.pid = pid;
    state.pid_start = process_start_time(pid).map(|(_, start)| start).unwrap_or(0);
    state.network = Some(serde_json::to_value(&net_state).expect("network state serialises"));
    state.status = Status::Running;
    dir.write_state(&state).map_err(ContainerError::from)?;
    if let Some(path) = &opts.pid_file {
        write_atomic(path, pid.to_string().as_bytes()).map_err(|e| match e {
            crate::state::StateError::Io { source, .. } => {
                CheckpointError::from(ContainerError::PidFile {
                    path: path.clone(),
                    source,
                })
            }
            other => ContainerError::from(other).into(),
        })?;
    }
    Ok((state, console))
}

/// Runs CRIU's restore; returns the restored init's pid, its network, and the kept pty master.
#[allow(clippy::too_many_arguments)]
fn run_criu(
    root: &Root,
    opts: &RestoreOptions,
    bundle: &Bundle,
    saved: &Saved,
    request: &NetworkRequest,
    reservation: &Reservation,
    criu_root: &Path,
    cgroup: &CgroupConfig,
    state: &State,
    console_socket: Option<UnixStream>,
    made: &mut Made,
) -> Result<(i32, NetworkState, Option<OwnedFd>), CheckpointError> {
    let id = opts.id.as_str();
    let spec = &bundle.spec;
    let images = open_dir(&opts.image_path)?;
    let work = match &opts.work_path {
        Some(path) => {
            super::dump::make_dir(path)?;
            Some(open_dir(path)?)
        }
        None => None,
    };
    let log = opts
        .work_path
        .as_deref()
        .unwrap_or(&opts.image_path)
        .join(RESTORE_LOG);

    // Descriptors CRIU holds itself: namespaces joined by path that were external at dump.
    let mut inherit: Vec<OwnedFd> = Vec::new();
    let mut criu_opts = CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        evasive_devices: Some(true),
        log_level: Some(LOG_LEVEL),
        log_file: Some(RESTORE_LOG.into()),
        rst_sibling: Some(true),
        root: Some(criu_root.display().to_string()),
        manage_cgroups: Some(true),
        manage_cgroups_mode: Some(opts.manage_cgroups_mode.unwrap_or(CgMode::Default) as i32),
        notify_scripts: Some(true),
        shell_job: Some(opts.shell_job),
        ext_unix_sk: Some(opts.ext_unix_sk),
        tcp_established: Some(opts.tcp_established),
        file_locks: Some(opts.file_locks),
        empty_ns: Some(opts.empty_ns),
        orphan_pts_master: Some(true),
        auto_dedup: Some(opts.auto_dedup),
        work_dir_fd: work.as_ref().map(|w| w.as_raw_fd()),
        ..Default::default()
    };
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
    {
        let Some(path) = ns.path() else { continue };
        let (key, name) = match ns.typ() {
            LinuxNamespaceType::Network => (Some(NET_KEY), "net"),
            LinuxNamespaceType::Pid => (Some(PID_KEY), "pid"),
            LinuxNamespaceType::Ipc => (None, "ipc"),
            LinuxNamespaceType::Uts => (None, "uts"),
            LinuxNamespaceType::User => (None, "user"),
            LinuxNamespaceType::Time => (None, "time"),
            other => {
                return Err(CheckpointError::Unsupported(format!(
                    "a container that joins the {} namespace {} cannot be restored: CRIU cannot join it",
                    crate::namespaces::name(crate::namespaces::flag(other)),
                    path.display()
                )))
            }
        };
        match key {
            Some(key) => {
                let fd = File::open(path).map_err(io_error(path))?;
                criu_opts.inherit_fd.push(InheritFd {
                    key: key.into(),
                    fd: 4 + inherit.len() as i32,
                });
                inherit.push(fd.into());
            }
            None => criu_opts.join_ns.push(JoinNamespace {
                ns: name.into(),
                ns_file: path.display().to_string(),
            }),
        }
    }
    // The container's pipes become the caller's: CRIU's own standard streams are berth's.
    for (fd, what) in saved.stdio.iter().enumerate() {
        if what.starts_with("pipe:") {
            criu_opts.inherit_fd.push(InheritFd {
                key: what.clone(),
                fd: fd as i32,
            });
        }
    }
    let types = spec::namespace_types(spec);
    let external = mounts::external(
        spec,
        &bundle.dir,
        cgroup,
        types.contains(&LinuxNamespaceType::Cgroup),
        types.contains(&LinuxNamespaceType::User),
    );
    let masked = spec
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().as_ref())
        .is_some_and(|m| !m.is_empty());
    mounts::make_points(spec, &bundle.rootfs, &external).map_err(io_error(&bundle.rootfs))?;
    criu_opts.ext_mnt = mounts::restore_map(&bundle.rootfs, &external, masked);

    let borrowed: Vec<BorrowedFd> = inherit.iter().map(|fd| fd.as_fd()).collect();
    let session = Swrk::start(&opts.criu, &borrowed)?;
    // CRIU restores the processes into the cgroup it is in, taken as the root of each hierarchy.
    let criu_pid = session.pid();
    let manager = cgroups::manager(cgroup);
    if let Err(err) = manager.add_process(criu_pid) {
        drop(session);
        return Err(ContainerError::from(err).into());
    }
    criu_opts.cg_root = cgroup_roots(criu_pid)?;
    drop(inherit);

    let hooks = spec.hooks().clone().unwrap_or_default();
    #[allow(deprecated)]
    let (prestart, create_runtime) = (
        hooks.prestart().clone().unwrap_or_default(),
        hooks.create_runtime().clone().unwrap_or_default(),
    );
    let mut net_state = None;
    let mut console = None;
    let mut restored_pid = None;
    let resp = session
        .call(
            Request {
                r#type: ReqType::Restore as i32,
                opts: Some(criu_opts),
                ..Default::default()
            },
            |note: Notification| {
                match note.script.as_str() {
                    // CRIU made the namespaces, the processes are not restored yet: wire the
                    // empty network namespace, then run the hooks that would have run at create.
                    "setup-namespaces" => {
                        let pid = note.pid.unwrap_or(0);
                        made.pid = Some(pid);
                        let wired =
                            network::attach_restored(&root.path, id, request, reservation, pid)
                                .map_err(ContainerError::from)?;
                        net_state = Some(wired);
                        let mut now = state.clone();
                        now.pid = pid;
                        let json = oci_state(&now, Status::Creating).to_string();
                        hooks::run("prestart", &prestart, &json).map_err(ContainerError::from)?;
                        hooks::run("createRuntime", &create_runtime, &json)
                            .map_err(ContainerError::from)?;
                    }
                    "post-restore" => {
                        restored_pid = note.pid;
                        made.pid = note.pid;
                    }
                    // The terminal is a new pty: its master goes where the first one went.
                    "orphan-pts-master" => {
                        let master = note.fd.ok_or_else(|| CheckpointError::Rpc {
                            reason: "criu sent orphan-pts-master without a descriptor".into(),
                        })?;
                        match (&console_socket, &opts.console_socket) {
                            (Some(socket), Some(path)) => {
                                console::send_master(socket, path, master.as_fd(), "/dev/ptmx")
                                    .map_err(ContainerError::from)?
                            }
                            _ => console = Some(master),
                        }
                    }
                    _ => {}
                }
                Ok(())
            },
        )
        .map_err(explain("restore", id, &log))?;
    drop(images);
    drop(work);
    let pid = resp
        .restore
        .map(|r| r.pid)
        .or(restored_pid)
        .ok_or_else(|| CheckpointError::Rpc {
            reason: "criu restored no process".into(),
        })?;
    made.pid = Some(pid);
    let net_state = match net_state {
        Some(wired) => wired,
        // A namespace that was not empty (host mode, or joined): nothing was wired.
        None => network::attach(&root.path, id, request, reservation, pid)
            .map_err(ContainerError::from)?,
    };
    Ok((pid, net_state, console))
}

/// berth's own mount namespace, receiving the host's mounts but sending none back.
fn private_mounts() -> Result<(), CheckpointError> {
    let fail = |what: &str, e: nix::errno::Errno| {
        CheckpointError::Unsupported(format!(
            "cannot make a mount namespace for the restore: {what}: {e}"
        ))
    };
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| fail("unshare", e))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| fail("make / a slave", e))
}

/// CRIU's cgroup roots: where process `pid` is, in each hierarchy (/proc/PID/cgroup; the cgroup2
/// line has no controller, which CRIU reads as the cgroup2 hierarchy).
fn cgroup_roots(pid: i32) -> Result<Vec<CgroupRoot>, CheckpointError> {
    let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    Ok(parse_cgroup_roots(&text))
}

fn parse_cgroup_roots(text: &str) -> Vec<CgroupRoot> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some(CgroupRoot {
                ctrl: Some(controllers.to_string()),
                path: path.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_roots_come_from_proc_cgroup() {
        let roots = parse_cgroup_roots(
            "12:memory:/berth-tests/c1\n4:cpu,cpuacct:/berth-tests/c1\n1:name=systemd:/x\n0::/berth-tests/c1\n",
        );
        let pairs: Vec<(&str, &str)> = roots
            .iter()
            .map(|r| (r.ctrl.as_deref().unwrap(), r.path.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("memory", "/berth-tests/c1"),
                ("cpu,cpuacct", "/berth-tests/c1"),
                ("name=systemd", "/x"),
                ("", "/berth-tests/c1"),
            ]
        );
    }
}
