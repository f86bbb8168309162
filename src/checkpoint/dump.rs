//! `checkpoint`: CRIU saves the container's processes into the image folder (a pre-dump only
//! their memory, to shorten the final dump), berth writes beside them what the restore needs,
//! and the container is removed unless it is to keep running.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::rpc::{CgMode, CriuOpts, Features, ReqType, Request};
use super::swrk::{self, Swrk};
use super::{explain, io_error, mounts, CheckpointError, Saved, DUMP_LOG, LOG_LEVEL, SAVED_FILE};
use crate::cgroups::Layout;
use crate::container::{self, ContainerError};
use crate::state::{Root, State, Status, CONFIG_FILE};

/// The `checkpoint` flags, as runc has them.
#[derive(Clone, Debug, Default)]
pub struct CheckpointOptions {
    pub criu: PathBuf,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    /// A previous (pre-)dump, relative to the image folder.
    pub parent_path: Option<PathBuf>,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub tcp_skip_in_flight: bool,
    pub link_remap: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub pre_dump: bool,
    pub auto_dedup: bool,
    pub manage_cgroups_mode: Option<CgMode>,
    /// Namespaces (CLONE_NEW* flags) CRIU leaves empty: always the network namespace.
    pub empty_ns: u32,
}

pub fn checkpoint(root: &Root, id: &str, opts: &CheckpointOptions) -> Result<(), CheckpointError> {
    let dir = root.open_container(id).map_err(ContainerError::from)?;
    let state = dir.read_state().map_err(ContainerError::from)?;
    let status = container::status(&state, &dir.path);
    if !matches!(status, Status::Running | Status::Paused) {
        return Err(CheckpointError::WrongStatus {
            action: "checkpoint",
            id: id.into(),
            status,
        });
    }
    let config = dir.path.join(CONFIG_FILE);
    let raw = std::fs::read(&config).map_err(io_error(&config))?;
    let spec: Spec = serde_json::from_slice(&raw).map_err(|e| CheckpointError::Io {
        path: config.clone(),
        source: std::io::Error::other(e),
    })?;

    if state.host_mount.is_some() {
        return Err(super::without_mount_namespace("checkpointed"));
    }
    check_stdio(state.pid)?;
    make_dir(&opts.image_path)?;
    if let Some(parent) = &opts.parent_path {
        check_parent(&opts.image_path, parent)?;
    }
    let images = open_dir(&opts.image_path)?;
    let work = match &opts.work_path {
        Some(path) => {
            make_dir(path)?;
            Some(open_dir(path)?)
        }
        None => None,
    };
    let log_dir = opts.work_path.as_deref().unwrap_or(&opts.image_path);
    let log = log_dir.join(DUMP_LOG);

    if opts.pre_dump {
        let answer = swrk::features(
            &opts.criu,
            Features {
                mem_track: Some(true),
                ..Default::default()
            },
        )?;
        if answer.mem_track != Some(true) {
            return Err(CheckpointError::Unsupported(
                "--pre-dump needs memory tracking (soft-dirty pages), which this kernel or criu lacks".into(),
            ));
        }
    }

    let mut criu_opts = CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        log_level: Some(LOG_LEVEL),
        log_file: Some(DUMP_LOG.into()),
        root: Some(state.rootfs.display().to_string()),
        manage_cgroups: Some(true),
        manage_cgroups_mode: Some(opts.manage_cgroups_mode.unwrap_or(CgMode::Default) as i32),
        notify_scripts: Some(true),
        pid: Some(state.pid),
        shell_job: Some(opts.shell_job),
        leave_running: Some(opts.leave_running),
        tcp_established: Some(opts.tcp_established),
        tcp_skip_in_flight: Some(opts.tcp_skip_in_flight),
        link_remap: Some(opts.link_remap),
        ext_unix_sk: Some(opts.ext_unix_sk),
        file_locks: Some(opts.file_locks),
        empty_ns: Some(opts.empty_ns),
        orphan_pts_master: Some(true),
        auto_dedup: Some(opts.auto_dedup),
        work_dir_fd: work.as_ref().map(|w| w.as_raw_fd()),
        freeze_cgroup: freezer(&state),
        external: external_namespaces(&spec)?,
        ..Default::default()
    };
    if let Some(parent) = &opts.parent_path {
        criu_opts.parent_img = Some(parent.display().to_string());
        criu_opts.track_mem = Some(true);
    }
    let kind = if opts.pre_dump {
        // Memory only, tracked from here on; the processes run on.
        criu_opts.track_mem = Some(true);
        ReqType::PreDump
    } else {
        let types = crate::spec::namespace_types(&spec);
        let external = mounts::external(
            &spec,
            &state.bundle,
            &state.cgroup,
            types.contains(&LinuxNamespaceType::Cgroup),
            types.contains(&LinuxNamespaceType::User),
        );
        let masked = mounts::masked_files(&spec, state.pid);
        criu_opts.ext_mnt = mounts::dump_map(&state.rootfs, &external, &masked);
        write_saved(&opts.image_path, &state)?;
        ReqType::Dump
    };

    let session = Swrk::start(&opts.criu, &[])?;
    session
        .call(
            Request {
                r#type: kind as i32,
                opts: Some(criu_opts),
                ..Default::default()
            },
            |_| Ok(()),
        )
        .map_err(explain("checkpoint", id, &log))?;
    drop(images);
    drop(work);

    if !opts.leave_running && !opts.pre_dump {
        // CRIU ended the processes; the cgroup, the network and the state folder go now.
        container::delete::destroy(dir, &state)?;
    }
    Ok(())
}

/// The cgroup CRIU freezes the container with (v1's freezer, or the cgroup2 folder on a v2
/// host); without one it stops the processes with ptrace.
fn freezer(state: &State) -> Option<String> {
    let dir = match state.cgroup.layout {
        Some(Layout::Unified) => state.cgroup.unified_dir(),
        _ => state.cgroup.v1_dir("freezer"),
    };
    dir.map(|d| d.display().to_string())
}

/// The network and pid namespaces the container joined by path (an engine's): CRIU leaves them
/// out of the image (`TYPE[INODE]:KEY`), and restore hands it the namespace given then.
fn external_namespaces(spec: &Spec) -> Result<Vec<String>, CheckpointError> {
    let mut found = Vec::new();
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in namespaces {
        let (name, key) = match ns.typ() {
            LinuxNamespaceType::Network => ("net", NET_KEY),
            LinuxNamespaceType::Pid => ("pid", PID_KEY),
            _ => continue,
        };
        let Some(path) = ns.path() else { continue };
        let meta = std::fs::metadata(path).map_err(io_error(path))?;
        found.push(format!(
            "{name}[{}]:{key}",
            std::os::unix::fs::MetadataExt::ino(&meta)
        ));
    }
    Ok(found)
}

/// The names CRIU files external namespaces under: runc's, so images stay interchangeable.
pub(super) const NET_KEY: &str = "extRootNetNS";
pub(super) const PID_KEY: &str = "extRootPidNS";

/// Refuses a container whose standard streams are files outside it (the host's `/dev/null`, a
/// log file): CRIU finds no mount for them in the container and fails. Pipes, sockets and a
/// terminal are fine (pipes come back through the restore's own).
fn check_stdio(pid: i32) -> Result<(), CheckpointError> {
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let mount_ids: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').next())
        .collect();
    for (fd, name) in [(0, "input"), (1, "output"), (2, "error")] {
        let Ok(target) = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")) else {
            continue;
        };
        if !target.is_absolute() {
            continue; // pipe:[…], socket:[…], anon_inode:…
        }
        let fdinfo =
            std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        let mount = fdinfo
            .lines()
            .find_map(|l| l.strip_prefix("mnt_id:"))
            .map(str::trim);
        if mount.is_some_and(|id| !mount_ids.contains(&id)) {
            return Err(CheckpointError::Unsupported(format!(
                "the container's standard {name} is {}, a file outside the container, which CRIU cannot save: give the container pipes or a terminal, as engines do",
                target.display()
            )));
        }
    }
    Ok(())
}

/// Writes `berth.json`: the init's standard streams, the network, whether it had a terminal.
fn write_saved(images: &Path, state: &State) -> Result<(), CheckpointError> {
    let stdio: Vec<String> = (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{}/fd/{fd}", state.pid))
                .map(|target| target.display().to_string())
                .unwrap_or_default()
        })
        .collect();
    let terminal = stdio.iter().any(|s| s.starts_with("/dev/pts/"));
    let network = state
        .network
        .clone()
        .and_then(|value| serde_json::from_value(value).ok());
    let saved = Saved {
        stdio,
        network,
        terminal,
    };
    let bytes = serde_json::to_vec_pretty(&saved).expect("saved state serialises");
    let path = images.join(SAVED_FILE);
    crate::state::write_atomic(&path, &bytes).map_err(|e| CheckpointError::Io {
        path,
        source: std::io::Error::other(e),
    })
}

/// Makes a folder of the caller's (0700) unless it exists: a container is checkpointed again
/// into the same one.
pub(super) fn make_dir(path: &Path) -> Result<(), CheckpointError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(io_error(path)(e)),
    }
}

pub(super) fn open_dir(path: &Path) -> Result<OwnedFd, CheckpointError> {
    nix::fcntl::open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(path)(e.into()))
}

/// `--parent-path` names a folder relative to the image folder (CRIU resolves it there).
fn check_parent(images: &Path, parent: &Path) -> Result<(), CheckpointError> {
    if parent.is_absolute() {
        return Err(CheckpointError::Unsupported(format!(
            "--parent-path {} must be relative to --image-path",
            parent.display()
        )));
    }
    let full = images.join(parent);
    match std::fs::metadata(&full) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(CheckpointError::Unsupported(format!(
            "--parent-path {} is not a folder",
            full.display()
        ))),
        Err(e) => Err(CheckpointError::Unsupported(format!(
            "--parent-path {}: {e}",
            full.display()
        ))),
    }
}
