//! The spec's mounts: bind mounts and their flags, filesystems, the cgroup mount, and the
//! propagation of the mounts around the root filesystem.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::ResolveFlag;
use nix::mount::MsFlags;

use super::resolve::{fd_path, is_directory, make_in_root, open_in_root};
use super::{MountKind, MountPlan, RootfsError, RootfsPlan};
use crate::syscall::Kernel;

/// pivot_root refuses a new root whose parent mount is shared; make that parent private.
pub(super) fn make_parent_private(kernel: &dyn Kernel, rootfs: &Path) -> Result<(), RootfsError> {
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

pub(super) fn mount_one(
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

/// The flags of the mount at `path` that a remount must keep: a mount made in a less privileged
/// user namespace cannot drop them.
pub(super) fn locked_flags(path: &Path) -> MsFlags {
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
    // A rootless container may have no cgroup of its own in some hierarchy: it sees the one it
    // stayed in (see cgroups::rootless).
    let hierarchies = plan.cgroup.shown();
    if unified_only {
        let Some((_, dir)) = hierarchies.first() else {
            return Ok(());
        };
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
    for (hierarchy, dir) in hierarchies {
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
