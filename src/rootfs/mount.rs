//! The spec's mounts. Each is made detached first — a copy of a host tree (open_tree) or a new
//! filesystem (fsopen, fsmount) — and given its flags while nothing can reach it, then attached
//! to its destination, descriptor to descriptor (move_mount); its propagation is set through
//! the same descriptor. No destination is looked up again once mounted on: a path swapped
//! meanwhile (the setting of CVE-2021-30465) cannot send a mount's flags to another mount.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, ResolveFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{FchmodatFlags, Mode, SFlag};

use super::resolve::{fd_path, is_directory, make_in_root, open_in_root};
use super::{MountKind, MountPlan, RootfsError, RootfsPlan};
use crate::syscall::{Atime, Attr, FsConfig, Kernel, MountAttr};

/// pivot_root refuses a new root whose parent mount is shared; make that parent private.
pub(super) fn make_parent_private(kernel: &dyn Kernel, rootfs: &Path) -> Result<(), RootfsError> {
    let mountinfo = crate::procfs::read("/proc/self/mountinfo").unwrap_or_default();
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

/// A step of a mount that failed: the system call, its error, and what the kernel said of it.
pub(super) struct Failed {
    step: &'static str,
    errno: Errno,
    detail: Option<String>,
}

fn failed(step: &'static str) -> impl Fn(Errno) -> Failed {
    move |errno| Failed {
        step,
        errno,
        detail: None,
    }
}

impl Failed {
    pub(super) fn into_error(self, what: &str, target: &str) -> RootfsError {
        let hint = match (self.detail, self.errno) {
            (Some(detail), _) => format!(" ({detail})"),
            (None, Errno::ENOSYS) => {
                " (berth mounts with the mount API of Linux 5.12 and later)".into()
            }
            _ => String::new(),
        };
        RootfsError::Attach {
            what: what.to_string(),
            target: target.to_string(),
            step: self.step,
            source: self.errno,
            hint,
        }
    }
}

fn point_error(target: &str) -> impl Fn(Errno) -> RootfsError + '_ {
    move |source| RootfsError::MountPoint {
        target: target.to_string(),
        source,
    }
}

/// Whether `fd` is the root filesystem's own root (a destination such as `/`, or a symlink
/// to it): a mount there would cover the whole root filesystem.
fn is_root(fd: &OwnedFd, root: &OwnedFd) -> bool {
    match (nix::sys::stat::fstat(fd), nix::sys::stat::fstat(root)) {
        (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
        _ => false,
    }
}

pub(super) fn mount_one(
    kernel: &dyn Kernel,
    root: &OwnedFd,
    plan: &RootfsPlan,
    mount: &MountPlan,
) -> Result<(), RootfsError> {
    let shown = mount.destination.display().to_string();
    let (what, target) = match &mount.kind {
        MountKind::Cgroup => return mount_cgroups(kernel, root, plan, mount),
        MountKind::Bind { source, .. } => {
            let is_file = std::fs::metadata(source).is_ok_and(|m| !m.is_dir());
            let target =
                make_in_root(root, &mount.destination, is_file).map_err(point_error(&shown))?;
            (source.display().to_string(), target)
        }
        MountKind::Filesystem { fstype, .. } => {
            (fstype.clone(), filesystem_target(root, mount, fstype)?)
        }
    };
    let remount_only = mount.fs_flags.contains(MsFlags::MS_REMOUNT)
        && matches!(mount.kind, MountKind::Filesystem { .. });
    if !remount_only && is_root(&target, root) {
        return Err(RootfsError::OnRoot {
            what,
            target: shown,
        });
    }
    let err = |f: Failed| f.into_error(&what, &shown);
    let detached = match &mount.kind {
        MountKind::Bind { source, recursive } => {
            bind_tree(kernel, source, *recursive, &mount.attr).map_err(err)?
        }
        MountKind::Filesystem { fstype, source } if remount_only => {
            return remount(kernel, &target, fstype, source, mount).map_err(err);
        }
        MountKind::Filesystem { fstype, source } => {
            let fs_flags = mount.fs_flags;
            let data = with_mount_point_mode(&target, fstype, &mount.data);
            let context = match (fstype.as_str(), plan.proc_pid_ns) {
                // The container's pid namespace is not this process's (`process::procfs`).
                ("proc", Some(pid_ns)) => crate::process::procfs::context(kernel, pid_ns),
                _ => kernel.fsopen(fstype),
            };
            let made = context.map_err(failed("fsopen")).and_then(|context| {
                configure(
                    kernel,
                    context,
                    fstype,
                    source,
                    fs_flags,
                    &data,
                    &mount.attr,
                )
            });
            match made {
                // Without a network namespace of its own, a user namespace may not mount sysfs:
                // give it the host's, read-only where asked, as runc does.
                Err(f) if f.errno == Errno::EPERM && fstype == "sysfs" && plan.in_userns => {
                    bind_tree(kernel, Path::new("/sys"), true, &mount.attr).map_err(err)?
                }
                other => other.map_err(err)?,
            }
        }
        MountKind::Cgroup => unreachable!("handled above"),
    };
    if mount.copy_up {
        copy_up(&target, &detached).map_err(err)?;
    }
    attach(kernel, &detached, &target, mount).map_err(err)
}

/// A tmpfs given no `mode=` takes the mode of the folder it covers (with its setuid, setgid and
/// sticky bits), not tmpfs's own 1777, as runc does: `docker run --tmpfs /app` passes none, and
/// an image's 0755 /app must not turn world-writable.
fn with_mount_point_mode(target: &OwnedFd, fstype: &str, data: &[String]) -> Vec<String> {
    let mut data = data.to_vec();
    if fstype == "tmpfs" && !data.iter().any(|d| d.starts_with("mode=")) {
        if let Ok(stat) = nix::sys::stat::fstat(target) {
            data.push(format!("mode={:o}", stat.st_mode & 0o7777));
        }
    }
    data
}

/// The destination of a filesystem, made if missing. procfs and sysfs go on real directories
/// only: a symlink there could point anywhere.
fn filesystem_target(
    root: &OwnedFd,
    mount: &MountPlan,
    fstype: &str,
) -> Result<OwnedFd, RootfsError> {
    let shown = mount.destination.display().to_string();
    let extra = if fstype == "proc" || fstype == "sysfs" {
        ResolveFlag::RESOLVE_NO_SYMLINKS
    } else {
        ResolveFlag::empty()
    };
    let not_real = || RootfsError::NotRealDirectory {
        target: shown.clone(),
        fstype: fstype.to_string(),
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
    Ok(target)
}

/// A detached copy of the host's `source` (with the mounts below it when `recursive`), with
/// `attr` set on its top mount.
fn bind_tree(
    kernel: &dyn Kernel,
    source: &Path,
    recursive: bool,
    attr: &MountAttr,
) -> Result<OwnedFd, Failed> {
    let tree = kernel
        .open_tree(source, recursive)
        .map_err(failed("open_tree"))?;
    if !attr.is_empty() {
        kernel
            .mount_setattr(tree.as_fd(), false, attr)
            .map_err(failed("mount_setattr"))?;
    }
    Ok(tree)
}

/// The filesystem flags set through fsconfig, by the names the kernel reads for every type.
const FS_FLAG_NAMES: [(MsFlags, &str); 4] = [
    (MsFlags::MS_RDONLY, "ro"),
    (MsFlags::MS_SYNCHRONOUS, "sync"),
    (MsFlags::MS_DIRSYNC, "dirsync"),
    (MsFlags::MS_MANDLOCK, "mand"),
];

/// A new filesystem of type `fstype`, detached, with its options and its mount's `attr`.
pub(super) fn new_filesystem(
    kernel: &dyn Kernel,
    fstype: &str,
    source: &str,
    fs_flags: MsFlags,
    data: &[String],
    attr: &MountAttr,
) -> Result<OwnedFd, Failed> {
    let context = kernel.fsopen(fstype).map_err(failed("fsopen"))?;
    configure(kernel, context, fstype, source, fs_flags, data, attr)
}

/// Gives the filesystem context `context` (of type `fstype`) its source and options, makes the
/// filesystem and a detached mount of it with `attr`.
fn configure(
    kernel: &dyn Kernel,
    context: OwnedFd,
    fstype: &str,
    source: &str,
    fs_flags: MsFlags,
    data: &[String],
    attr: &MountAttr,
) -> Result<OwnedFd, Failed> {
    let config = |command: FsConfig| {
        kernel
            .fsconfig(context.as_fd(), command)
            .map_err(|errno| Failed {
                step: "fsconfig",
                errno,
                detail: kernel_says(&context).or(match command {
                    FsConfig::Flag(key) => Some(format!("option {key}")),
                    FsConfig::String(key, value) => Some(format!("option {key}={value}")),
                    FsConfig::Fd(key, _) => Some(format!("option {key}")),
                    FsConfig::Create => None,
                }),
            })
    };
    config(FsConfig::String("source", source))?;
    for (flag, name) in FS_FLAG_NAMES {
        if fs_flags.contains(flag) {
            config(FsConfig::Flag(name))?;
        }
    }
    for option in data {
        match option.split_once('=') {
            Some(("lowerdir", layers))
                if fstype == "overlay" && layers.len() > FSCONFIG_VALUE_MAX =>
            {
                for (key, layer) in overlay_layers(layers) {
                    config(FsConfig::String(key, &layer))?;
                }
            }
            Some((key, value)) => config(FsConfig::String(key, value))?,
            None => config(FsConfig::Flag(option))?,
        }
    }
    config(FsConfig::Create)?;
    kernel
        .fsmount(
            context.as_fd(),
            attr.set,
            attr.atime.unwrap_or(Atime::Relatime),
        )
        .map_err(|errno| Failed {
            step: "fsmount",
            errno,
            detail: kernel_says(&context),
        })
}

/// The longest value fsconfig takes: the kernel copies at most 256 bytes, the NUL included.
const FSCONFIG_VALUE_MAX: usize = 255;

/// Overlay's `lowerdir` list one layer at a time, for a list longer than fsconfig takes (many
/// layers, as engines give for images): `lowerdir+` for each layer, `datadir+` for each
/// data-only layer (after `::`), unescaped, since each value is one literal path. Overlayfs
/// takes these since Linux 6.8; an older kernel refuses them and berth says so.
fn overlay_layers(layers: &str) -> Vec<(&'static str, String)> {
    let (lower, data) = match layers.split_once("::") {
        Some((lower, data)) => (lower, Some(data)),
        None => (layers, None),
    };
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for (key, list) in [("lowerdir+", Some(lower)), ("datadir+", data)] {
        let Some(list) = list else { continue };
        let mut layer = String::new();
        let mut chars = list.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => layer.extend(chars.next()),
                ':' => out.push((key, std::mem::take(&mut layer))),
                c => layer.push(c),
            }
        }
        out.push((key, layer));
    }
    out
}

/// What the kernel wrote into a filesystem context about a failure (`tmpfs: Bad value for
/// 'size'`), if anything: its messages are read one per call, errors marked `e `.
fn kernel_says(context: &OwnedFd) -> Option<String> {
    let mut said = None;
    let mut buf = [0u8; 1024];
    for _ in 0..16 {
        match nix::unistd::read(context, &mut buf) {
            Ok(n) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(message) = text.strip_prefix("e ") {
                    said = Some(message.trim_end().to_string());
                }
            }
            _ => break,
        }
    }
    said
}

/// Gives the detached `mount` its recursive flags, attaches it at `target`, then sets its
/// propagation, all through the descriptors.
fn attach(
    kernel: &dyn Kernel,
    mount: &OwnedFd,
    target: &OwnedFd,
    plan: &MountPlan,
) -> Result<(), Failed> {
    set_recursive(kernel, mount.as_fd(), plan)?;
    kernel
        .move_mount(mount.as_fd(), target.as_fd())
        .map_err(failed("move_mount"))?;
    propagate(kernel, mount.as_fd(), plan)
}

fn set_recursive(kernel: &dyn Kernel, mount: BorrowedFd, plan: &MountPlan) -> Result<(), Failed> {
    if plan.recursive.is_empty() {
        return Ok(());
    }
    kernel
        .mount_setattr(mount, true, &plan.recursive)
        .map_err(failed("mount_setattr AT_RECURSIVE"))
}

/// The mount's propagation options, in their order.
fn propagate(kernel: &dyn Kernel, mount: BorrowedFd, plan: &MountPlan) -> Result<(), Failed> {
    for flags in &plan.propagation {
        let attr = MountAttr {
            propagation: *flags - MsFlags::MS_REC,
            ..MountAttr::default()
        };
        kernel
            .mount_setattr(mount, flags.contains(MsFlags::MS_REC), &attr)
            .map_err(failed("propagation"))?;
    }
    Ok(())
}

/// `remount`: changes the filesystem already mounted at the destination, as mount(8) does.
fn remount(
    kernel: &dyn Kernel,
    target: &OwnedFd,
    fstype: &str,
    source: &str,
    plan: &MountPlan,
) -> Result<(), Failed> {
    let mut flags = plan.fs_flags;
    for (attr, flag) in [
        (Attr::RDONLY, MsFlags::MS_RDONLY),
        (Attr::NOSUID, MsFlags::MS_NOSUID),
        (Attr::NODEV, MsFlags::MS_NODEV),
        (Attr::NOEXEC, MsFlags::MS_NOEXEC),
        (Attr::NODIRATIME, MsFlags::MS_NODIRATIME),
        (
            Attr::NOSYMFOLLOW,
            MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
        ),
    ] {
        if plan.attr.set.contains(attr) {
            flags |= flag;
        }
    }
    flags |= match plan.attr.atime {
        Some(Atime::Noatime) => MsFlags::MS_NOATIME,
        Some(Atime::Strictatime) => MsFlags::MS_STRICTATIME,
        Some(Atime::Relatime) => MsFlags::MS_RELATIME,
        None => MsFlags::empty(),
    };
    let data = plan.data.join(",");
    kernel
        .mount(
            Some(Path::new(source)),
            &fd_path(target.as_raw_fd()),
            Some(fstype),
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )
        .map_err(failed("mount"))?;
    set_recursive(kernel, target.as_fd(), plan)?;
    propagate(kernel, target.as_fd(), plan)
}

/// `tmpcopyup`: copies what the destination folder holds into the new tmpfs, before the tmpfs
/// covers it.
fn copy_up(target: &OwnedFd, tmpfs: &OwnedFd) -> Result<(), Failed> {
    let from = nix::fcntl::open(
        &fd_path(target.as_raw_fd()),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(failed("tmpcopyup"))?;
    copy_folder(&from, tmpfs.as_fd(), 0).map_err(failed("tmpcopyup"))
}

/// Copies the entries of the folder `from` into the folder `to`, with their modes and owners:
/// folders, files, symlinks (as they are, never followed) and special files.
fn copy_folder(from: &OwnedFd, to: BorrowedFd, depth: u32) -> Result<(), Errno> {
    if depth > 255 {
        return Err(Errno::ELOOP);
    }
    let mut entries = nix::dir::Dir::from_fd(from.try_clone().map_err(io_errno)?)?;
    for entry in entries.iter() {
        let name = entry?.file_name().to_owned();
        if name.as_bytes() == b"." || name.as_bytes() == b".." {
            continue;
        }
        let name = name.as_c_str();
        let st = nix::sys::stat::fstatat(from, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let nofollow = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match kind {
            SFlag::S_IFDIR => {
                nix::sys::stat::mkdirat(to, name, mode)?;
                let sub_from = nix::fcntl::openat(
                    from,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow,
                    Mode::empty(),
                )?;
                let sub_to = nix::fcntl::openat(
                    to,
                    name,
                    OFlag::O_PATH | OFlag::O_DIRECTORY | nofollow,
                    Mode::empty(),
                )?;
                copy_folder(&sub_from, sub_to.as_fd(), depth + 1)?;
            }
            SFlag::S_IFREG => {
                let src =
                    nix::fcntl::openat(from, name, OFlag::O_RDONLY | nofollow, Mode::empty())?;
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | nofollow;
                let dst = nix::fcntl::openat(to, name, flags, mode)?;
                std::io::copy(&mut std::fs::File::from(src), &mut std::fs::File::from(dst))
                    .map_err(io_errno)?;
            }
            SFlag::S_IFLNK => {
                let link = nix::fcntl::readlinkat(from, name)?;
                nix::unistd::symlinkat(link.as_os_str(), to, name)?;
            }
            _ => nix::sys::stat::mknodat(to, name, kind, mode, st.st_rdev)?,
        }
        nix::unistd::fchownat(
            to,
            name,
            Some(st.st_uid.into()),
            Some(st.st_gid.into()),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        // chown clears set-user-ID and set-group-ID bits: give the mode again after it.
        if kind != SFlag::S_IFLNK {
            nix::sys::stat::fchmodat(to, name, mode, FchmodatFlags::NoFollowSymlink)?;
        }
    }
    Ok(())
}

fn io_errno(err: std::io::Error) -> Errno {
    Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO))
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
    let target = make_in_root(root, &mount.destination, false).map_err(point_error(&shown))?;
    if is_root(&target, root) {
        return Err(RootfsError::OnRoot {
            what: "cgroup".into(),
            target: shown,
        });
    }
    let err = |what: &str, target: &str| {
        let (what, target) = (what.to_string(), target.to_string());
        move |f: Failed| f.into_error(&what, &target)
    };
    // A rootless container may have no cgroup of its own in some hierarchy: it sees the one it
    // stayed in (see cgroups::rootless).
    let hierarchies = plan.cgroup.shown();
    if plan.cgroup.layout == Some(crate::cgroups::Layout::Unified) {
        let Some(&(_, dir)) = hierarchies.first() else {
            return Ok(());
        };
        let hierarchy = mount_hierarchy(kernel, plan, None, dir, &mount.attr)
            .map_err(err("cgroup2", &shown))?;
        return attach(kernel, &hierarchy, &target, mount).map_err(err("cgroup2", &shown));
    }
    // The tmpfs holding the hierarchies is attached first, filled through its descriptor, and
    // made read-only last.
    let tmpfs_attr = MountAttr {
        set: Attr::NOSUID | Attr::NODEV | Attr::NOEXEC | (mount.attr.set - Attr::RDONLY),
        ..mount.attr
    };
    let tmpfs = new_filesystem(
        kernel,
        "tmpfs",
        "tmpfs",
        MsFlags::empty(),
        &["mode=755".to_string()],
        &tmpfs_attr,
    )
    .map_err(err("tmpfs", &shown))?;
    kernel
        .move_mount(tmpfs.as_fd(), target.as_fd())
        .map_err(failed("move_mount"))
        .map_err(err("tmpfs", &shown))?;
    for (hierarchy, dir) in hierarchies {
        let Some(name) = hierarchy.mount_point.file_name() else {
            continue;
        };
        let sub_shown = mount.destination.join(name).display().to_string();
        match nix::sys::stat::mkdirat(&tmpfs, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(source) => return Err(point_error(&sub_shown)(source)),
        }
        let sub = nix::fcntl::openat(
            &tmpfs,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(point_error(&sub_shown))?;
        let controllers = (!hierarchy.v2).then_some(hierarchy.controllers.as_slice());
        let made = mount_hierarchy(kernel, plan, controllers, dir, &mount.attr)
            .map_err(err("cgroup", &sub_shown))?;
        kernel
            .move_mount(made.as_fd(), sub.as_fd())
            .map_err(failed("move_mount"))
            .map_err(err("cgroup", &sub_shown))?;
        // `cpu,cpuacct` is also reachable as `cpu` and `cpuacct`, as on the host.
        if hierarchy.controllers.len() > 1 {
            for controller in &hierarchy.controllers {
                let link = fd_path(tmpfs.as_raw_fd()).join(controller);
                match kernel.symlink(Path::new(name), &link) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(source) => {
                        return Err(point_error(&format!("{shown}/{controller}"))(source))
                    }
                }
            }
        }
    }
    let tmpfs_err = err("tmpfs", &shown);
    if mount.attr.set.contains(Attr::RDONLY) {
        let readonly = MountAttr {
            set: Attr::RDONLY,
            ..MountAttr::default()
        };
        kernel
            .mount_setattr(tmpfs.as_fd(), false, &readonly)
            .map_err(failed("mount_setattr"))
            .map_err(&tmpfs_err)?;
    }
    set_recursive(kernel, tmpfs.as_fd(), mount).map_err(&tmpfs_err)?;
    propagate(kernel, tmpfs.as_fd(), mount).map_err(&tmpfs_err)
}

/// One hierarchy, detached: the container's own directory copied from the host, or, in a user
/// namespace with a cgroup namespace of its own, mounted fresh (its root is then the container's
/// cgroup).
///
/// A hierarchy mounted fresh in a cgroup namespace is the host's superblock with the namespace's
/// cgroup as its root, and the init made that namespace in the container's own directories: the
/// same mount as the copy of those directories (which runc makes for v1), and mountinfo shows
/// its root as `/` all the same. The copy costs no filesystem context: 7 system calls a
/// hierarchy instead of 12, and the "mount /sys/fs/cgroup" step of `berth run` on a hybrid host
/// (10 hierarchies) took 396 instead of 566 µs (BENCHMARKS.md). A user namespace's copy of the
/// host's mounts is locked, so there they are mounted fresh, as before.
fn mount_hierarchy(
    kernel: &dyn Kernel,
    plan: &RootfsPlan,
    v1_controllers: Option<&[String]>,
    host_dir: &Path,
    attr: &MountAttr,
) -> Result<OwnedFd, Failed> {
    if !plan.new_cgroupns || !plan.in_userns {
        return bind_tree(kernel, host_dir, true, attr);
    }
    let fs_flags = match attr.set.contains(Attr::RDONLY) {
        true => MsFlags::MS_RDONLY,
        false => MsFlags::empty(),
    };
    match v1_controllers {
        Some(controllers) => {
            new_filesystem(kernel, "cgroup", "cgroup", fs_flags, controllers, attr)
        }
        None => new_filesystem(kernel, "cgroup2", "cgroup2", fs_flags, &[], attr),
    }
}

#[cfg(test)]
mod tests {
    use super::overlay_layers;

    #[test]
    fn a_long_lowerdir_list_is_given_a_layer_at_a_time() {
        let layers = overlay_layers(r"/l/a:/l/b\:c:/l/d::/data/e:/data/f");
        let expected = [
            ("lowerdir+", "/l/a"),
            ("lowerdir+", "/l/b:c"),
            ("lowerdir+", "/l/d"),
            ("datadir+", "/data/e"),
            ("datadir+", "/data/f"),
        ];
        let layers: Vec<(&str, &str)> = layers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(layers, expected);
    }
}
