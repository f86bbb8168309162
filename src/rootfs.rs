//! The root filesystem: the spec's mounts, `/dev`, the switch to the new root (pivot_root, or
//! MS_MOVE and chroot), masked and read-only paths. Every path inside the root filesystem is
//! resolved inside it (openat2 with RESOLVE_IN_ROOT), so its own symlinks cannot lead out of it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::{LinuxDeviceType, Spec};

use crate::cgroups::CgroupConfig;
use crate::syscall::Kernel;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot mount {what} on {target}: {source}")]
    Mount {
        what: String,
        target: String,
        source: Errno,
    },
    #[error("cannot make mount point {target} inside the root filesystem: {source}")]
    MountPoint { target: String, source: Errno },
    #[error(
        "{target} must be a real directory inside the root filesystem to mount {fstype} on it"
    )]
    NotRealDirectory { target: String, fstype: String },
    #[error("cannot make device {path}: {source}")]
    Device { path: String, source: Errno },
    #[error("cannot switch to the root filesystem {rootfs}: {step}: {source}")]
    Pivot {
        rootfs: PathBuf,
        step: &'static str,
        source: Errno,
    },
    #[error("{path} is not the device {major}:{minor} (a symlink or another file)")]
    NotDevice {
        path: String,
        major: u64,
        minor: u64,
    },
    #[error("cannot mask {path}: {source}")]
    Mask { path: String, source: Errno },
    #[error("cannot make {path} read-only: {source}")]
    Readonly { path: String, source: Errno },
    #[error("rootfsPropagation {0:?} is not a propagation mode")]
    Propagation(String),
    #[error("cannot set sysctl {key}: {source}")]
    Sysctl { key: String, source: std::io::Error },
}

/// How one spec mount is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountKind {
    Bind { source: PathBuf, recursive: bool },
    Cgroup,
    Filesystem { fstype: String, source: String },
}

/// One mount, worked out before the container's process exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountPlan {
    /// The destination inside the root filesystem, as the spec gives it.
    pub destination: PathBuf,
    pub kind: MountKind,
    pub flags: MsFlags,
    pub propagation: MsFlags,
    pub data: String,
}

/// A device node to make in `/dev`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePlan {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Everything the init needs to build the root filesystem.
#[derive(Clone, Debug)]
pub struct RootfsPlan {
    pub rootfs: PathBuf,
    pub readonly: bool,
    /// Propagation of `/` in the container's mount namespace (rslave unless the spec says).
    pub propagation: Option<MsFlags>,
    pub mounts: Vec<MountPlan>,
    /// Whether berth fills `/dev` (not when the spec bind-mounts the host's `/dev`).
    pub setup_dev: bool,
    pub devices: Vec<DevicePlan>,
    pub masked: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub no_pivot: bool,
    pub cgroup: CgroupConfig,
    pub new_cgroupns: bool,
    /// In a user namespace mknod is refused: devices are bind-mounted from the host instead.
    pub in_userns: bool,
    pub sysctl: Vec<(String, String)>,
}

/// The mount options berth understands itself (the rest go to the filesystem as data).
pub const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
];

/// Mount options: each sets or clears a flag; the rest are passed to the filesystem as data.
fn option_flag(option: &str) -> Option<(bool, MsFlags)> {
    Some(match option {
        "defaults" => (false, MsFlags::empty()),
        "ro" => (false, MsFlags::MS_RDONLY),
        "rw" => (true, MsFlags::MS_RDONLY),
        "nosuid" => (false, MsFlags::MS_NOSUID),
        "suid" => (true, MsFlags::MS_NOSUID),
        "nodev" => (false, MsFlags::MS_NODEV),
        "dev" => (true, MsFlags::MS_NODEV),
        "noexec" => (false, MsFlags::MS_NOEXEC),
        "exec" => (true, MsFlags::MS_NOEXEC),
        "sync" => (false, MsFlags::MS_SYNCHRONOUS),
        "async" => (true, MsFlags::MS_SYNCHRONOUS),
        "dirsync" => (false, MsFlags::MS_DIRSYNC),
        "remount" => (false, MsFlags::MS_REMOUNT),
        "mand" => (false, MsFlags::MS_MANDLOCK),
        "nomand" => (true, MsFlags::MS_MANDLOCK),
        "noatime" => (false, MsFlags::MS_NOATIME),
        "atime" => (true, MsFlags::MS_NOATIME),
        "nodiratime" => (false, MsFlags::MS_NODIRATIME),
        "diratime" => (true, MsFlags::MS_NODIRATIME),
        "relatime" => (false, MsFlags::MS_RELATIME),
        "norelatime" => (true, MsFlags::MS_RELATIME),
        "strictatime" => (false, MsFlags::MS_STRICTATIME),
        "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
        "bind" => (false, MsFlags::MS_BIND),
        "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
        _ => return None,
    })
}

/// A propagation mode by name (`rslave`, `private` …).
pub fn propagation_flag(option: &str) -> Option<MsFlags> {
    Some(match option {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Reads one spec mount's options into flags, propagation and filesystem data.
pub fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for option in options {
        if let Some((clear, flag)) = option_flag(option) {
            if clear {
                flags.remove(flag);
            } else {
                flags.insert(flag);
            }
        } else if let Some(flag) = propagation_flag(option) {
            propagation |= flag;
        } else if option != "tmpcopyup" && !option.starts_with("idmap") {
            data.push(option);
        }
    }
    (flags, propagation, data.join(","))
}

impl RootfsPlan {
    /// Works out the mounts and devices from the spec. `rootfs` is absolute.
    pub fn from_spec(
        spec: &Spec,
        bundle: &Path,
        rootfs: &Path,
        no_pivot: bool,
        cgroup: CgroupConfig,
        new_cgroupns: bool,
        in_userns: bool,
    ) -> Result<RootfsPlan, RootfsError> {
        let linux = spec.linux().as_ref();
        let propagation = match linux.and_then(|l| l.rootfs_propagation().as_ref()) {
            Some(mode) if !mode.is_empty() => {
                Some(propagation_flag(mode).ok_or_else(|| RootfsError::Propagation(mode.clone()))?)
            }
            _ => None,
        };
        let mut mounts = Vec::new();
        for mount in spec.mounts().iter().flatten() {
            let (flags, propagation, data) =
                parse_options(mount.options().as_deref().unwrap_or_default());
            let fstype = mount.typ().clone().unwrap_or_default();
            let kind = if fstype == "bind" || flags.contains(MsFlags::MS_BIND) {
                let source = mount.source().clone().unwrap_or_default();
                MountKind::Bind {
                    source: if source.is_absolute() {
                        source
                    } else {
                        bundle.join(source)
                    },
                    recursive: flags.contains(MsFlags::MS_REC),
                }
            } else if fstype == "cgroup" || fstype == "cgroup2" {
                MountKind::Cgroup
            } else {
                MountKind::Filesystem {
                    source: mount
                        .source()
                        .as_ref()
                        .map(|s| s.display().to_string())
                        .unwrap_or_else(|| fstype.clone()),
                    fstype,
                }
            };
            mounts.push(MountPlan {
                destination: mount.destination().clone(),
                kind,
                flags: flags - (MsFlags::MS_BIND | MsFlags::MS_REC),
                propagation,
                data,
            });
        }
        let dev_bound = mounts.iter().any(|m| {
            matches!(m.kind, MountKind::Bind { .. }) && clean(&m.destination) == Path::new("dev")
        });
        let mut devices = default_devices();
        for device in linux
            .and_then(|l| l.devices().as_ref())
            .into_iter()
            .flatten()
        {
            let kind = match device.typ() {
                LinuxDeviceType::B => SFlag::S_IFBLK,
                LinuxDeviceType::P => SFlag::S_IFIFO,
                _ => SFlag::S_IFCHR,
            };
            let plan = DevicePlan {
                path: device.path().clone(),
                kind,
                major: device.major() as u64,
                minor: device.minor() as u64,
                mode: device.file_mode().unwrap_or(0o666) & 0o7777,
                uid: device.uid().unwrap_or(0),
                gid: device.gid().unwrap_or(0),
            };
            devices.retain(|d| clean(&d.path) != clean(&plan.path));
            devices.push(plan);
        }
        let paths = |list: Option<&Vec<String>>| {
            list.into_iter()
                .flatten()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        };
        let mut sysctl: Vec<(String, String)> = linux
            .and_then(|l| l.sysctl().as_ref())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        sysctl.sort();
        Ok(RootfsPlan {
            rootfs: rootfs.to_path_buf(),
            readonly: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            propagation,
            mounts,
            setup_dev: !dev_bound,
            devices,
            masked: paths(linux.and_then(|l| l.masked_paths().as_ref())),
            readonly_paths: paths(linux.and_then(|l| l.readonly_paths().as_ref())),
            no_pivot,
            cgroup,
            new_cgroupns,
            in_userns,
            sysctl,
        })
    }
}

/// The devices every container gets (runtime spec, "Default Devices").
fn default_devices() -> Vec<DevicePlan> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(name, major, minor)| DevicePlan {
        path: Path::new("/dev").join(name),
        kind: SFlag::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// A path inside the root filesystem without its leading `/` (the kernel resolves `..` inside).
fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect()
}

/// The `/proc/self/fd/N` path that stands for an open descriptor.
fn fd_path(fd: RawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

/// Opens `path` inside the root `root` as O_PATH, resolving symlinks and `..` as if `root` were `/`.
fn open_in_root(root: &OwnedFd, path: &Path, extra: ResolveFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | extra);
    let target = clean(path);
    let target = if target.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &target
    };
    nix::fcntl::openat2(root.as_fd(), target, how)
}

/// Opens `path` inside `root`, or `None` when it does not exist (masked and read-only paths the
/// image lacks are left alone).
fn open_if_present(root: &OwnedFd, path: &Path) -> Result<Option<OwnedFd>, Errno> {
    match open_in_root(root, path, ResolveFlag::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens (making it if missing) the directory or file `path` inside `root`.
pub(crate) fn make_in_root(root: &OwnedFd, path: &Path, file: bool) -> Result<OwnedFd, Errno> {
    make_in_root_at(root, path, file, 0)
}

fn make_in_root_at(root: &OwnedFd, path: &Path, file: bool, depth: u32) -> Result<OwnedFd, Errno> {
    if depth > 40 {
        return Err(Errno::ELOOP);
    }
    match open_in_root(root, path, ResolveFlag::empty()) {
        Err(Errno::ENOENT) => {}
        other => return other,
    }
    let relative = clean(path);
    let (Some(parent), Some(name)) = (relative.parent(), relative.file_name()) else {
        return Err(Errno::ENOENT);
    };
    let dir = make_in_root_at(root, parent, false, depth + 1)?;
    let created = if file {
        nix::fcntl::openat(
            dir.as_fd(),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop)
    } else {
        nix::sys::stat::mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755))
    };
    match created {
        Ok(()) => open_in_root(root, path, ResolveFlag::empty()),
        Err(Errno::EEXIST) => match open_in_root(root, path, ResolveFlag::empty()) {
            // `name` is a symlink to something missing: make its target, inside the root.
            Err(Errno::ENOENT) => {
                let target = PathBuf::from(nix::fcntl::readlinkat(dir.as_fd(), name)?);
                let next = if target.is_absolute() {
                    target
                } else {
                    parent.join(target)
                };
                make_in_root_at(root, &next, file, depth + 1)
            }
            other => other,
        },
        Err(e) => Err(e),
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Builds the root filesystem before the switch: propagation, the root bind mount, the spec's
/// mounts, `/dev`, and the sysctls. Runs in the init, in its mount namespace.
pub fn prepare(kernel: &dyn Kernel, plan: &RootfsPlan) -> Result<(), RootfsError> {
    let mount_err = |what: &str, target: &Path| {
        let what = what.to_string();
        let target = target.display().to_string();
        move |source| RootfsError::Mount {
            what,
            target,
            source,
        }
    };
    // Keep our mounts from reaching the host, then give the root filesystem a mount of its own.
    // An unbindable `/` would refuse that bind mount: unbindable is applied after the switch.
    let root_propagation = match plan.propagation {
        Some(flags) if !flags.contains(MsFlags::MS_UNBINDABLE) => flags,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    kernel
        .mount(None, Path::new("/"), None, root_propagation, None)
        .map_err(mount_err("propagation", Path::new("/")))?;
    make_parent_private(kernel, &plan.rootfs)?;
    kernel
        .mount(
            Some(&plan.rootfs),
            &plan.rootfs,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(mount_err("the root filesystem", &plan.rootfs))?;
    let root = open_dir(&plan.rootfs).map_err(|source| RootfsError::Pivot {
        rootfs: plan.rootfs.clone(),
        step: "open",
        source,
    })?;
    for mount in &plan.mounts {
        mount_one(kernel, &root, plan, mount)?;
    }
    if plan.setup_dev {
        make_devices(kernel, &root, plan)?;
    }
    for (key, value) in &plan.sysctl {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|source| RootfsError::Sysctl {
            key: key.clone(),
            source,
        })?;
    }
    Ok(())
}

/// pivot_root refuses a new root whose parent mount is shared; make that parent private.
fn make_parent_private(kernel: &dyn Kernel, rootfs: &Path) -> Result<(), RootfsError> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(&str, bool)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 7 {
            continue;
        }
        let point = fields[4];
        if rootfs.starts_with(point) && best.is_none_or(|(b, _)| point.len() >= b.len()) {
            let shared = fields[6..]
                .iter()
                .take_while(|f| **f != "-")
                .any(|f| f.starts_with("shared:"));
            best = Some((point, shared));
        }
    }
    if let Some((point, true)) = best {
        kernel
            .mount(None, Path::new(point), None, MsFlags::MS_PRIVATE, None)
            .map_err(|source| RootfsError::Mount {
                what: "private propagation".into(),
                target: point.to_string(),
                source,
            })?;
    }
    Ok(())
}

fn mount_one(
    kernel: &dyn Kernel,
    root: &OwnedFd,
    plan: &RootfsPlan,
    mount: &MountPlan,
) -> Result<(), RootfsError> {
    let shown = mount.destination.display().to_string();
    let err = |what: &str| {
        let what = what.to_string();
        let target = shown.clone();
        move |source| RootfsError::Mount {
            what,
            target,
            source,
        }
    };
    match &mount.kind {
        MountKind::Bind { source, recursive } => {
            let is_file = std::fs::metadata(source).is_ok_and(|m| !m.is_dir());
            let target = make_in_root(root, &mount.destination, is_file).map_err(|source| {
                RootfsError::MountPoint {
                    target: shown.clone(),
                    source,
                }
            })?;
            let mut flags = MsFlags::MS_BIND;
            if *recursive {
                flags |= MsFlags::MS_REC;
            }
            let what = source.display().to_string();
            kernel
                .mount(
                    Some(source),
                    &fd_path(target.as_raw_fd()),
                    None,
                    flags,
                    None,
                )
                .map_err(err(&what))?;
            remount_bind(kernel, root, &mount.destination, mount.flags).map_err(err(&what))?;
        }
        MountKind::Cgroup => mount_cgroups(kernel, root, plan, mount)?,
        MountKind::Filesystem { fstype, source } => {
            // procfs and sysfs go on real directories only: a symlink there could point anywhere.
            let extra = if fstype == "proc" || fstype == "sysfs" {
                ResolveFlag::RESOLVE_NO_SYMLINKS
            } else {
                ResolveFlag::empty()
            };
            let not_real = || RootfsError::NotRealDirectory {
                target: shown.clone(),
                fstype: fstype.clone(),
            };
            let target = match open_in_root(root, &mount.destination, extra) {
                // Made here, then opened again under the same rule, so nothing swapped in between.
                Err(Errno::ENOENT) => make_in_root(root, &mount.destination, false)
                    .and_then(|_| open_in_root(root, &mount.destination, extra)),
                other => other,
            }
            .map_err(|source| match source {
                Errno::ELOOP => not_real(),
                source => RootfsError::MountPoint {
                    target: shown.clone(),
                    source,
                },
            })?;
            if !extra.is_empty() && !is_directory(&target) {
                return Err(not_real());
            }
            let data = (!mount.data.is_empty()).then_some(mount.data.as_str());
            let result = kernel.mount(
                Some(Path::new(source)),
                &fd_path(target.as_raw_fd()),
                Some(fstype),
                mount.flags,
                data,
            );
            match result {
                // Without a network namespace of its own, a user namespace may not mount sysfs:
                // give it the host's, read-only where asked, as runc does.
                Err(Errno::EPERM) if fstype == "sysfs" && plan.in_userns => {
                    kernel
                        .mount(
                            Some(Path::new("/sys")),
                            &fd_path(target.as_raw_fd()),
                            None,
                            MsFlags::MS_BIND | MsFlags::MS_REC,
                            None,
                        )
                        .map_err(err("sysfs"))?;
                    remount_bind(kernel, root, &mount.destination, mount.flags)
                        .map_err(err("sysfs"))?;
                }
                other => other.map_err(err(fstype))?,
            }
        }
    }
    if !mount.propagation.is_empty() {
        let target = open_in_root(root, &mount.destination, ResolveFlag::empty())
            .map_err(err("propagation"))?;
        kernel
            .mount(
                None,
                &fd_path(target.as_raw_fd()),
                None,
                mount.propagation,
                None,
            )
            .map_err(err("propagation"))?;
    }
    Ok(())
}

fn is_directory(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// Whether `fd` is the device node `kind` `major:minor`.
fn is_device(fd: &OwnedFd, kind: SFlag, major: u64, minor: u64) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| {
        SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
            && st.st_rdev == nix::sys::stat::makedev(major, minor)
    })
}

/// The flags of the mount at `path` that a remount must keep: a mount made in a less privileged
/// user namespace cannot drop them.
fn locked_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::FsFlags;
    let Ok(stat) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    let mut flags = MsFlags::empty();
    let pairs = [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    for (st, ms) in pairs {
        if stat.flags().contains(st) {
            flags |= ms;
        }
    }
    flags
}

/// The spec's cgroup mount: the container's own cgroups, either fresh in its cgroup namespace or
/// bind-mounted from the host, under a tmpfs for v1 (one folder per hierarchy) or alone for v2.
fn mount_cgroups(
    kernel: &dyn Kernel,
    root: &OwnedFd,
    plan: &RootfsPlan,
    mount: &MountPlan,
) -> Result<(), RootfsError> {
    let shown = mount.destination.display().to_string();
    let err = |what: String, target: String| {
        move |source| RootfsError::Mount {
            what,
            target,
            source,
        }
    };
    let point_err = |target: String| move |source| RootfsError::MountPoint { target, source };
    let unified_only = plan.cgroup.layout == Some(crate::cgroups::Layout::Unified);
    let target = make_in_root(root, &mount.destination, false).map_err(point_err(shown.clone()))?;
    if unified_only {
        let (_, dir) = &plan.cgroup.dirs[0];
        return mount_hierarchy(
            kernel,
            plan,
            None,
            dir,
            root,
            &mount.destination,
            mount.flags,
        )
        .map_err(err("cgroup2".into(), shown));
    }
    kernel
        .mount(
            Some(Path::new("tmpfs")),
            &fd_path(target.as_raw_fd()),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )
        .map_err(err("tmpfs".into(), shown.clone()))?;
    for (hierarchy, dir) in &plan.cgroup.dirs {
        let Some(name) = hierarchy.mount_point.file_name() else {
            continue;
        };
        let sub = mount.destination.join(name);
        let sub_shown = sub.display().to_string();
        make_in_root(root, &sub, false).map_err(point_err(sub_shown.clone()))?;
        let controllers = (!hierarchy.v2).then(|| hierarchy.controllers.join(","));
        mount_hierarchy(
            kernel,
            plan,
            controllers.as_deref(),
            dir,
            root,
            &sub,
            mount.flags,
        )
        .map_err(err("cgroup".into(), sub_shown))?;
        // `cpu,cpuacct` is also reachable as `cpu` and `cpuacct`, as on the host.
        if hierarchy.controllers.len() > 1 {
            let dest_dir = open_in_root(root, &mount.destination, ResolveFlag::empty())
                .map_err(point_err(shown.clone()))?;
            for controller in &hierarchy.controllers {
                let link = fd_path(dest_dir.as_raw_fd()).join(controller);
                match kernel.symlink(Path::new(name), &link) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(source) => {
                        return Err(RootfsError::MountPoint {
                            target: format!("{shown}/{controller}"),
                            source,
                        })
                    }
                }
            }
        }
    }
    if mount.flags.contains(MsFlags::MS_RDONLY) {
        let target = open_in_root(root, &mount.destination, ResolveFlag::empty())
            .map_err(point_err(shown.clone()))?;
        kernel
            .mount(
                None,
                &fd_path(target.as_raw_fd()),
                None,
                MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC,
                Some("mode=755"),
            )
            .map_err(err("tmpfs".into(), shown))?;
    }
    Ok(())
}

/// One hierarchy: mounted fresh inside a cgroup namespace (its root is then the container's
/// cgroup), otherwise the container's own directory bind-mounted from the host.
fn mount_hierarchy(
    kernel: &dyn Kernel,
    plan: &RootfsPlan,
    v1_controllers: Option<&str>,
    host_dir: &Path,
    root: &OwnedFd,
    destination: &Path,
    flags: MsFlags,
) -> Result<(), Errno> {
    let target_fd = open_in_root(root, destination, ResolveFlag::empty())?;
    let target = fd_path(target_fd.as_raw_fd());
    let flags =
        flags & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    if plan.new_cgroupns {
        let fresh = match v1_controllers {
            Some(controllers) => kernel.mount(
                Some(Path::new("cgroup")),
                &target,
                Some("cgroup"),
                flags,
                Some(controllers),
            ),
            None => kernel.mount(
                Some(Path::new("cgroup2")),
                &target,
                Some("cgroup2"),
                flags,
                None,
            ),
        };
        // EBUSY: the target is already this hierarchy's root, from a /sys bound from the host (a
        // user namespace may not mount sysfs for a network namespace it does not own), and the
        // kernel refuses the same filesystem on the same mount point. Bind our folder instead.
        if fresh != Err(Errno::EBUSY) {
            return fresh;
        }
    }
    kernel.mount(
        Some(host_dir),
        &target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    remount_bind(kernel, root, destination, flags)
}

/// Gives the bind mount just made at `destination` its `flags` (ro, nosuid …), which bind mounts
/// take only in a second, remounting call. The path is opened again: a descriptor opened before
/// the bind names the folder under the new mount, and remounting that fails (EINVAL). Flags the
/// kernel locked on the source (from a less privileged user namespace) are kept.
fn remount_bind(
    kernel: &dyn Kernel,
    root: &OwnedFd,
    destination: &Path,
    flags: MsFlags,
) -> Result<(), Errno> {
    let flags = flags - MsFlags::MS_REMOUNT;
    if flags.is_empty() {
        return Ok(());
    }
    let mounted = open_in_root(root, destination, ResolveFlag::empty())?;
    let path = fd_path(mounted.as_raw_fd());
    let keep = locked_flags(&path);
    kernel.mount(
        None,
        &path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | keep,
        None,
    )
}

/// Fills `/dev`: device nodes (bind mounts from the host inside a user namespace), the standard
/// symlinks, and `/dev/ptmx` pointing into the devpts instance.
fn make_devices(kernel: &dyn Kernel, root: &OwnedFd, plan: &RootfsPlan) -> Result<(), RootfsError> {
    let dev =
        make_in_root(root, Path::new("/dev"), false).map_err(|source| RootfsError::MountPoint {
            target: "/dev".into(),
            source,
        })?;
    for device in &plan.devices {
        make_device(kernel, root, plan.in_userns, device)?;
    }
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    let dev_path = fd_path(dev.as_raw_fd());
    for (target, name) in links {
        match kernel.symlink(Path::new(target), &dev_path.join(name)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(source) => {
                return Err(RootfsError::Device {
                    path: format!("/dev/{name}"),
                    source,
                })
            }
        }
    }
    // /dev/ptmx must be the devpts instance's, whatever the image shipped.
    let ptmx = dev_path.join("ptmx");
    let _ = nix::unistd::unlinkat(dev.as_fd(), "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir);
    kernel
        .symlink(Path::new("pts/ptmx"), &ptmx)
        .map_err(|source| RootfsError::Device {
            path: "/dev/ptmx".into(),
            source,
        })?;
    Ok(())
}

fn make_device(
    kernel: &dyn Kernel,
    root: &OwnedFd,
    in_userns: bool,
    device: &DevicePlan,
) -> Result<(), RootfsError> {
    let shown = device.path.display().to_string();
    let err = |source| RootfsError::Device {
        path: shown.clone(),
        source,
    };
    let relative = clean(&device.path);
    let (Some(parent), Some(name)) = (relative.parent(), relative.file_name()) else {
        return Err(err(Errno::EINVAL));
    };
    let dir = make_in_root(root, parent, false).map_err(err)?;
    let path = fd_path(dir.as_raw_fd()).join(name);
    if in_userns {
        // mknod is refused in a user namespace: bind the host's node onto an empty file. The
        // spec's path is then a host path too: bind it only if it is the device the spec names.
        let host = nix::fcntl::open(
            &device.path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        if !is_device(&host, device.kind, device.major, device.minor) {
            return Err(RootfsError::NotDevice {
                path: shown,
                major: device.major,
                minor: device.minor,
            });
        }
        let target = make_in_root(root, &device.path, true).map_err(err)?;
        return kernel
            .mount(
                Some(&fd_path(host.as_raw_fd())),
                &fd_path(target.as_raw_fd()),
                None,
                MsFlags::MS_BIND,
                None,
            )
            .map_err(err);
    }
    let dev = nix::sys::stat::makedev(device.major, device.minor);
    match kernel.mknod(
        &path,
        device.kind,
        Mode::from_bits_truncate(device.mode),
        dev,
    ) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(()),
        Err(e) => return Err(err(e)),
    }
    kernel.chown(&path, device.uid, device.gid).map_err(err)
}

/// Switches the root: pivot_root into the root filesystem and detach the old root, or under
/// `--no-pivot` move the root filesystem over `/` and chroot into it.
pub fn switch_root(kernel: &dyn Kernel, plan: &RootfsPlan) -> Result<(), RootfsError> {
    let err = |step: &'static str| {
        let rootfs = plan.rootfs.clone();
        move |source| RootfsError::Pivot {
            rootfs,
            step,
            source,
        }
    };
    let new_root = open_dir(&plan.rootfs).map_err(err("open"))?;
    if plan.no_pivot {
        kernel.fchdir(new_root.as_raw_fd()).map_err(err("chdir"))?;
        kernel
            .mount(
                Some(Path::new(".")),
                Path::new("/"),
                None,
                MsFlags::MS_MOVE,
                None,
            )
            .map_err(err("move mount"))?;
        kernel.chroot(Path::new(".")).map_err(err("chroot"))?;
    } else {
        let old_root = open_dir(Path::new("/")).map_err(err("open /"))?;
        kernel.fchdir(new_root.as_raw_fd()).map_err(err("chdir"))?;
        kernel
            .pivot_root(Path::new("."), Path::new("."))
            .map_err(err("pivot_root"))?;
        // The old root now sits on top of the new one: detach it without touching the host.
        // Private rather than slave, as crun does: detaching a tree of slave mounts took up to
        // 40 ms here (0.1 ms private), and nothing of it propagates back to the host either way.
        kernel
            .fchdir(old_root.as_raw_fd())
            .map_err(err("chdir to old root"))?;
        kernel
            .mount(
                None,
                Path::new("."),
                None,
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                None,
            )
            .map_err(err("old root propagation"))?;
        kernel
            .umount2(Path::new("."), MntFlags::MNT_DETACH)
            .map_err(err("detach old root"))?;
    }
    let slash = open_dir(Path::new("/")).map_err(err("open new /"))?;
    kernel.fchdir(slash.as_raw_fd()).map_err(err("chdir /"))?;
    Ok(())
}

/// The container's `/dev/null`, opened without following symlinks and checked to be the null
/// device: masking binds it over paths, and a `/dev/null` that the image made a symlink (say to
/// `/proc/sys/kernel/core_pattern`) or another file would expose that file in their place.
fn open_dev_null(root: &OwnedFd) -> Result<OwnedFd, RootfsError> {
    let fd = open_in_root(
        root,
        Path::new("/dev/null"),
        ResolveFlag::RESOLVE_NO_SYMLINKS,
    );
    match fd {
        Ok(fd) if is_device(&fd, SFlag::S_IFCHR, 1, 3) => Ok(fd),
        _ => Err(RootfsError::NotDevice {
            path: "/dev/null".into(),
            major: 1,
            minor: 3,
        }),
    }
}

/// After the switch: masked and read-only paths, the read-only root, the root's propagation.
pub fn finish(kernel: &dyn Kernel, plan: &RootfsPlan) -> Result<(), RootfsError> {
    let root = open_dir(Path::new("/")).map_err(|source| RootfsError::Pivot {
        rootfs: plan.rootfs.clone(),
        step: "open new /",
        source,
    })?;
    let dev_null = match plan.masked.is_empty() {
        true => None,
        false => Some(open_dev_null(&root)?),
    };
    for path in &plan.masked {
        let shown = path.display().to_string();
        let Some(target) = open_if_present(&root, path).map_err(|source| RootfsError::Mask {
            path: shown.clone(),
            source,
        })?
        else {
            continue;
        };
        // A directory gets an empty read-only tmpfs, anything else /dev/null. Asking first: a
        // bind mount of /dev/null refused on a directory took 0.1 to 0.4 ms, twice per run.
        let is_dir = nix::sys::stat::fstat(&target)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        let target = fd_path(target.as_raw_fd());
        let mask_dir = || {
            kernel.mount(
                Some(Path::new("tmpfs")),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            )
        };
        let result = if is_dir {
            mask_dir()
        } else {
            let null = dev_null.as_ref().map(|fd| fd_path(fd.as_raw_fd()));
            match kernel.mount(null.as_deref(), &target, None, MsFlags::MS_BIND, None) {
                Err(Errno::ENOTDIR) | Err(Errno::EISDIR) => mask_dir(),
                other => other,
            }
        };
        result.map_err(|source| RootfsError::Mask {
            path: shown,
            source,
        })?;
    }
    for path in &plan.readonly_paths {
        let shown = path.display().to_string();
        let Some(target) =
            open_if_present(&root, path).map_err(|source| RootfsError::Readonly {
                path: shown.clone(),
                source,
            })?
        else {
            continue;
        };
        let err = |source| RootfsError::Readonly {
            path: shown.clone(),
            source,
        };
        kernel
            .mount(
                Some(&fd_path(target.as_raw_fd())),
                &fd_path(target.as_raw_fd()),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(err)?;
        let target = open_in_root(&root, path, ResolveFlag::empty()).map_err(err)?;
        let target = fd_path(target.as_raw_fd());
        let keep = locked_flags(&target);
        kernel
            .mount(
                None,
                &target,
                None,
                MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_REC
                    | keep,
                None,
            )
            .map_err(err)?;
    }
    if plan.readonly {
        let keep = locked_flags(Path::new("/"));
        kernel
            .mount(
                None,
                Path::new("/"),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
                None,
            )
            .map_err(|source| RootfsError::Readonly {
                path: "/".into(),
                source,
            })?;
    }
    if let Some(propagation) = plan.propagation {
        kernel
            .mount(None, Path::new("/"), None, propagation, None)
            .map_err(|source| RootfsError::Mount {
                what: "propagation".into(),
                target: "/".into(),
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::Recorder;
    use crate::testutil::TempDir;

    fn plan_for(spec_json: &str, rootfs: &Path) -> RootfsPlan {
        let spec: Spec = serde_json::from_str(spec_json).unwrap();
        RootfsPlan::from_spec(
            &spec,
            rootfs.parent().unwrap(),
            rootfs,
            false,
            CgroupConfig::default(),
            false,
            false,
        )
        .unwrap()
    }

    #[test]
    fn every_listed_option_is_understood() {
        for option in MOUNT_OPTIONS {
            assert!(
                option_flag(option).is_some() || propagation_flag(option).is_some(),
                "{option}"
            );
        }
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let opts: Vec<String> = [
            "nosuid",
            "noexec",
            "nodev",
            "mode=755",
            "size=65536k",
            "rslave",
            "ro",
            "rw",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (flags, propagation, data) = parse_options(&opts);
        assert_eq!(
            flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV
        );
        assert_eq!(propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(data, "mode=755,size=65536k");
    }

    #[test]
    fn prepare_makes_the_exact_mounts() {
        let tmp = TempDir::new("rootfs");
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(tmp.path().join("hosts"), "127.0.0.1 x\n").unwrap();
        let spec = format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"mounts":[
                {{"destination":"/proc","type":"proc","source":"proc"}},
                {{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]}},
                {{"destination":"/etc/hosts","type":"bind","source":"{}/hosts","options":["rbind","ro"]}}
            ]}}"#,
            tmp.path().display()
        );
        let plan = plan_for(&spec, &rootfs);
        let kernel = Recorder::default();
        prepare(&kernel, &plan).unwrap();
        let calls = kernel.take();
        let r = rootfs.display();
        let t = tmp.path().display();
        assert_eq!(calls[0], "mount - / - MS_REC|MS_SLAVE -");
        let rest: Vec<&String> = calls
            .iter()
            .filter(|c| !c.contains("MS_PRIVATE"))
            .skip(1)
            .collect();
        assert_eq!(rest[0], &format!("mount {r} {r} - MS_BIND|MS_REC -"));
        assert_eq!(rest[1], &format!("mount proc {r}/proc proc 0 -"));
        assert_eq!(
            rest[2],
            &format!("mount tmpfs {r}/dev tmpfs MS_NOSUID|MS_STRICTATIME mode=755,size=65536k")
        );
        assert_eq!(
            rest[3],
            &format!("mount {t}/hosts {r}/etc/hosts - MS_BIND|MS_REC -")
        );
        assert!(
            rest[4].starts_with(&format!(
                "mount - {r}/etc/hosts - MS_RDONLY|MS_REMOUNT|MS_BIND"
            )),
            "{}",
            rest[4]
        );
        assert_eq!(rest[5], &format!("mknod {r}/dev/null S_IFCHR 666 1:3"));
        assert_eq!(rest[6], &format!("chown {r}/dev/null 0:0"));
        assert!(calls.contains(&format!("symlink /proc/self/fd {r}/dev/fd")));
        assert!(calls.contains(&format!("symlink pts/ptmx {r}/dev/ptmx")));
        // The bind mount's target was made as a file, the others as directories.
        assert!(rootfs.join("etc/hosts").is_file());
        assert!(rootfs.join("proc").is_dir());
    }

    #[test]
    fn symlinks_in_the_rootfs_stay_inside() {
        let tmp = TempDir::new("rootfs");
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        // A hostile image: /data points at a host folder, and /proc is a symlink to /.
        std::os::unix::fs::symlink(&outside, rootfs.join("data")).unwrap();
        std::os::unix::fs::symlink("/", rootfs.join("proc")).unwrap();
        let spec = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"mounts":[
            {"destination":"/data/x","type":"tmpfs","source":"tmpfs"},
            {"destination":"/../../escape","type":"tmpfs","source":"tmpfs"}]}"#;
        let mut plan = plan_for(spec, &rootfs);
        plan.setup_dev = false;
        let kernel = Recorder::default();
        prepare(&kernel, &plan).unwrap();
        // /data/x was made inside the root filesystem, following the symlink as if it were /.
        assert!(!outside.join("x").exists());
        assert!(rootfs
            .join(outside.strip_prefix("/").unwrap())
            .join("x")
            .is_dir());
        assert!(rootfs.join("escape").is_dir());
        assert!(!tmp.path().join("escape").exists());
        // proc refuses to go on a symlink.
        let spec = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"mounts":[
            {"destination":"/proc","type":"proc","source":"proc"}]}"#;
        let plan = plan_for(spec, &rootfs);
        let err = prepare(&Recorder::default(), &plan).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/proc must be a real directory inside the root filesystem to mount proc on it"
        );
    }

    #[test]
    fn devices_from_the_spec_replace_defaults() {
        let tmp = TempDir::new("rootfs");
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let spec = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"linux":{"devices":[
            {"path":"/dev/null","type":"c","major":1,"minor":3,"fileMode":438,"uid":5,"gid":6},
            {"path":"/dev/fuse","type":"c","major":10,"minor":229}]}}"#;
        let plan = plan_for(spec, &rootfs);
        assert_eq!(
            plan.devices
                .iter()
                .filter(|d| d.path == Path::new("/dev/null"))
                .count(),
            1
        );
        let fuse = plan
            .devices
            .iter()
            .find(|d| d.path == Path::new("/dev/fuse"))
            .unwrap();
        assert_eq!((fuse.major, fuse.minor, fuse.mode), (10, 229, 0o666));
    }
}
