//! The root filesystem: the spec's mounts, `/dev`, the switch to the new root (pivot_root, or
//! MS_MOVE and chroot), masked and read-only paths. Every path inside the root filesystem is
//! resolved inside it (openat2 with RESOLVE_IN_ROOT), so its own symlinks cannot lead out of it.
//!
//! `plan` works the spec out before the clone; the init then calls, in order, [`prepare`]
//! (`mount`: the spec's mounts; `device`: `/dev`), [`switch_root`], and [`finish`] (`mask`:
//! masked and read-only paths). `resolve` opens paths inside the root filesystem.

mod device;
mod host;
mod mask;
mod mount;
mod plan;
mod resolve;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

pub use host::{bind_root, detach_root, HostMount};
pub use plan::{
    check_mounts, mount_plan, parse_options, propagation_flag, DevicePlan, MountKind, MountOptions,
    MountPlan, RootfsPlan, MOUNT_OPTIONS,
};
/// For a restore, which makes the mount points of a checkpointed container (see `checkpoint`).
pub(crate) use resolve::make_in_root;
use resolve::open_dir;

use crate::syscall::{Attr, Kernel, MountAttr};

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
    #[error("mounts[{index}] ({destination}): {reason}")]
    BadMount {
        index: usize,
        destination: String,
        reason: String,
    },
    #[error("cannot mount {what} on {target}: {step}: {source}{hint}")]
    Attach {
        what: String,
        target: String,
        step: &'static str,
        source: Errno,
        /// What the kernel said about it, or what berth knows: ` (…)`, or empty.
        hint: String,
    },
    #[error("cannot mount {what} on {target}: that is the root of the root filesystem itself")]
    OnRoot { what: String, target: String },
    #[error("rootfsPropagation {0:?} is not a propagation mode")]
    Propagation(String),
    #[error("cannot set sysctl {key}: {source}")]
    Sysctl { key: String, source: std::io::Error },
}

/// Builds the root filesystem before the switch: propagation, the root bind mount, the spec's
/// mounts, `/dev`, and the sysctls. Runs in the init, in its mount namespace.
pub fn prepare(kernel: &dyn Kernel, plan: &RootfsPlan) -> Result<(), RootfsError> {
    prepare_joining(kernel, plan, &mut || Ok(()))
}

/// [`prepare`], calling `join_cgroups` once, before the first step that needs the container's
/// cgroups: a cgroup mount (of the container's cgroups, in its cgroup namespace), or the device
/// nodes (the devices cgroup decides which may be made). berth makes the v1 cgroups while the
/// init mounts what comes before.
pub fn prepare_joining<E: From<RootfsError>>(
    kernel: &dyn Kernel,
    plan: &RootfsPlan,
    join_cgroups: &mut dyn FnMut() -> Result<(), E>,
) -> Result<(), E> {
    let mut join = Some(join_cgroups);
    let mut join = move || join.take().map_or(Ok(()), |join| join());
    let mount_err = |what: &str, target: &Path| {
        let what = what.to_string();
        let target = target.display().to_string();
        move |source| RootfsError::Mount {
            what,
            target,
            source,
        }
    };
    // In the host's mount namespace berth has made the root filesystem's mount already, and
    // changes nothing else of the host's (see `host`).
    if !plan.host_mount_ns {
        // Keep our mounts from reaching the host, then give the root filesystem a mount of its own.
        // An unbindable `/` would refuse that bind mount: unbindable is applied after the switch.
        let root_propagation = match plan.propagation {
            Some(flags) if !flags.contains(MsFlags::MS_UNBINDABLE) => flags,
            _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        };
        kernel
            .mount(None, Path::new("/"), None, root_propagation, None)
            .map_err(mount_err("propagation", Path::new("/")))?;
        // pivot_root refuses a shared parent mount; after a recursive slave or private change
        // no mount is shared, and reading mountinfo to check (0.1 ms) is left out.
        let nothing_shared = root_propagation.contains(MsFlags::MS_REC)
            && root_propagation.intersects(MsFlags::MS_SLAVE | MsFlags::MS_PRIVATE);
        if !nothing_shared {
            mount::make_parent_private(kernel, &plan.rootfs)?;
        }
        kernel
            .mount(
                Some(&plan.rootfs),
                &plan.rootfs,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(mount_err("the root filesystem", &plan.rootfs))?;
    }
    let root = open_dir(&plan.rootfs).map_err(|source| RootfsError::Pivot {
        rootfs: plan.rootfs.clone(),
        step: "open",
        source,
    })?;
    for mount in &plan.mounts {
        if mount.kind == MountKind::Cgroup {
            join()?;
        }
        mount::mount_one(kernel, &root, plan, mount)?;
    }
    if plan.setup_dev {
        join()?;
        device::make_devices(kernel, &root, plan)?;
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

fn pivot_error(rootfs: &Path, step: &'static str) -> impl FnOnce(Errno) -> RootfsError {
    let rootfs = rootfs.to_path_buf();
    move |source| RootfsError::Pivot {
        rootfs,
        step,
        source,
    }
}

/// Switches the root: pivot_root into the root filesystem and detach the old root, or under
/// `--no-pivot` move the root filesystem over `/` and chroot into it; in the host's mount
/// namespace, only chroot into it.
pub fn switch_root(kernel: &dyn Kernel, plan: &RootfsPlan) -> Result<(), RootfsError> {
    match pivot(kernel, plan)? {
        Some(old_root) => detach_old_root(kernel, &old_root, &plan.rootfs),
        None => Ok(()),
    }
}

/// The old root after pivot_root: on top of the new one until [`detach_old_root`] takes it away.
pub struct OldRoot(OwnedFd);

/// [`switch_root`] but the old root's detaching, which the caller does with [`detach_old_root`]
/// (and may do on another thread meanwhile: it waits for an RCU grace period, and paths
/// resolved from `/` already lead into the new root). `None` under `--no-pivot` and in the
/// host's mount namespace.
pub fn pivot(kernel: &dyn Kernel, plan: &RootfsPlan) -> Result<Option<OldRoot>, RootfsError> {
    let err = |step: &'static str| pivot_error(&plan.rootfs, step);
    let new_root = open_dir(&plan.rootfs).map_err(err("open"))?;
    if plan.host_mount_ns || plan.no_pivot {
        if !plan.host_mount_ns {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            for point in host_proc_and_sys(&mountinfo, &plan.rootfs) {
                hide_mount(kernel, &plan.rootfs, &point)?;
            }
        }
        kernel.fchdir(new_root.as_raw_fd()).map_err(err("chdir"))?;
        // In the host's mount namespace, pivot_root or MS_MOVE would move the host's own root.
        if !plan.host_mount_ns {
            kernel
                .mount(
                    Some(Path::new(".")),
                    Path::new("/"),
                    None,
                    MsFlags::MS_MOVE,
                    None,
                )
                .map_err(err("move mount"))?;
        }
        kernel.chroot(Path::new(".")).map_err(err("chroot"))?;
        let slash = open_dir(Path::new("/")).map_err(err("open new /"))?;
        kernel.fchdir(slash.as_raw_fd()).map_err(err("chdir /"))?;
        return Ok(None);
    }
    let old_root = open_dir(Path::new("/")).map_err(err("open /"))?;
    kernel.fchdir(new_root.as_raw_fd()).map_err(err("chdir"))?;
    kernel
        .pivot_root(Path::new("."), Path::new("."))
        .map_err(err("pivot_root"))?;
    // The working folder is the new root; `/` leads there too, the old root on top of it
    // notwithstanding (a lookup does not cross a mount on its starting point).
    let slash = open_dir(Path::new("/")).map_err(err("open new /"))?;
    kernel.fchdir(slash.as_raw_fd()).map_err(err("chdir /"))?;
    Ok(Some(OldRoot(old_root)))
}

/// Detaches the old root that [`pivot`] left on top of the new one, without touching the host.
/// Its working folder becomes the old root: a caller on a thread of its own unshares its
/// working folder first (`CLONE_FS`).
pub fn detach_old_root(
    kernel: &dyn Kernel,
    old_root: &OldRoot,
    rootfs: &Path,
) -> Result<(), RootfsError> {
    let err = |step: &'static str| pivot_error(rootfs, step);
    kernel
        .fchdir(old_root.0.as_raw_fd())
        .map_err(err("chdir to old root"))?;
    // Private rather than slave, as crun does: detaching a tree of slave mounts took up to
    // 40 ms here (0.1 ms private), and nothing of it propagates back to the host either way.
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
    let slash = open_dir(Path::new("/")).map_err(err("open new /"))?;
    kernel.fchdir(slash.as_raw_fd()).map_err(err("chdir /"))?;
    Ok(())
}

/// The host's own complete procfs and sysfs mounts outside the root filesystem, from
/// mountinfo. Under `--no-pivot` the host's tree stays in the container's mount namespace below
/// its chroot; the kernel lets a process (root of a user namespace of its own) mount a new procfs
/// or sysfs when a complete one is in its mount namespace, which would undo the masked paths.
/// runc hides them the same way (`msMoveRoot`).
fn host_proc_and_sys(mountinfo: &str, rootfs: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, filesystem) = line.split_once(" - ")?;
            let fields: Vec<&str> = mount.split(' ').collect();
            let fstype = filesystem.split(' ').next()?;
            let point = PathBuf::from(unescape_mountinfo(fields.get(4)?));
            let complete = fields.get(3) == Some(&"/");
            (complete && matches!(fstype, "proc" | "sysfs") && !point.starts_with(rootfs))
                .then_some(point)
        })
        .collect()
}

/// A mountinfo path with its octal escapes (`\040` for a space …) undone.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], code) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches a host mount in the container's mount namespace (the root is a slave by now: the host
/// keeps it); one already gone with a detached parent is skipped, and one that may not be
/// detached (locked in a user namespace) is covered with an empty tmpfs.
fn hide_mount(kernel: &dyn Kernel, rootfs: &Path, point: &Path) -> Result<(), RootfsError> {
    match kernel.umount2(point, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => Ok(()),
        Err(Errno::EPERM) => kernel
            .mount(
                Some(Path::new("tmpfs")),
                point,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None,
            )
            .map_err(|source| RootfsError::Mount {
                what: "an empty tmpfs to hide the host's".into(),
                target: point.display().to_string(),
                source,
            }),
        Err(source) => Err(RootfsError::Pivot {
            rootfs: rootfs.to_path_buf(),
            step: "detach the host's procfs or sysfs",
            source,
        }),
    }
}

/// After the switch: masked and read-only paths, the read-only root, the root's propagation.
pub fn finish(kernel: &dyn Kernel, plan: &RootfsPlan) -> Result<(), RootfsError> {
    finish_joining(kernel, plan, &mut || Ok(()))
}

/// [`finish`], calling `detached` once the old root must be gone: before the root's
/// propagation changes (a recursive change would reach the old root's mounts), or at the end.
pub fn finish_joining<E: From<RootfsError>>(
    kernel: &dyn Kernel,
    plan: &RootfsPlan,
    detached: &mut dyn FnMut() -> Result<(), E>,
) -> Result<(), E> {
    let root = open_dir(Path::new("/")).map_err(|source| RootfsError::Pivot {
        rootfs: plan.rootfs.clone(),
        step: "open new /",
        source,
    })?;
    mask::mask_paths(kernel, &root, plan)?;
    mask::readonly_paths(kernel, &root, plan)?;
    if plan.dev_readonly {
        let readonly = |source| RootfsError::Readonly {
            path: "/dev".into(),
            source,
        };
        let dev = resolve::open_in_root(
            &root,
            Path::new("/dev"),
            nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS,
        )
        .map_err(readonly)?;
        let attr = MountAttr {
            set: Attr::RDONLY,
            ..MountAttr::default()
        };
        kernel
            .mount_setattr(dev.as_fd(), false, &attr)
            .map_err(readonly)?;
    }
    if plan.readonly {
        let readonly = MountAttr {
            set: Attr::RDONLY,
            ..MountAttr::default()
        };
        kernel
            .mount_setattr(root.as_fd(), false, &readonly)
            .map_err(|source| RootfsError::Readonly {
                path: "/".into(),
                source,
            })?;
    }
    detached()?;
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
    use super::plan::tests::plan_for;
    use super::*;
    use crate::syscall::Recorder;
    use crate::testutil::TempDir;

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
                {{"destination":"/etc/hosts","type":"bind","source":"{}/hosts","options":["rbind","ro","rnodev","rslave"]}}
            ]}}"#,
            tmp.path().display()
        );
        let plan = plan_for(&spec, &rootfs);
        let kernel = Recorder::default();
        prepare(&kernel, &plan).unwrap();
        let calls = kernel.take();
        let r = rootfs.display();
        let t = tmp.path().display();
        // Whether the root filesystem's parent mount is made private depends on the host.
        let calls: Vec<&String> = calls.iter().filter(|c| !c.contains("MS_PRIVATE")).collect();
        let expected = [
            "mount - / - MS_REC|MS_SLAVE -".to_string(),
            format!("mount {r} {r} - MS_BIND|MS_REC -"),
            // Each mount is made detached with its flags, then attached through descriptors.
            "fsopen proc".into(),
            "fsconfig proc source=proc".into(),
            "fsconfig proc create".into(),
            "fsmount proc 0 atime=Relatime".into(),
            format!("move_mount proc {r}/proc"),
            "fsopen tmpfs".into(),
            "fsconfig tmpfs source=tmpfs".into(),
            "fsconfig tmpfs mode=755".into(),
            "fsconfig tmpfs size=65536k".into(),
            "fsconfig tmpfs create".into(),
            "fsmount tmpfs NOSUID atime=Strictatime".into(),
            format!("move_mount tmpfs {r}/dev"),
            format!("open_tree {t}/hosts AT_RECURSIVE"),
            format!("mount_setattr {t}/hosts +RDONLY"),
            format!("mount_setattr {t}/hosts +NODEV AT_RECURSIVE"),
            format!("move_mount {t}/hosts {r}/etc/hosts"),
            format!("mount_setattr {t}/hosts MS_SLAVE AT_RECURSIVE"),
            format!("mknod {r}/dev/null S_IFCHR 666 1:3"),
            format!("chown {r}/dev/null 0:0"),
        ];
        assert_eq!(calls[..expected.len()], expected.each_ref(), "{calls:#?}");
        assert!(calls.contains(&&format!("symlink /proc/self/fd {r}/dev/fd")));
        assert!(calls.contains(&&format!("symlink pts/ptmx {r}/dev/ptmx")));
        // The bind mount's target was made as a file, the others as directories.
        assert!(rootfs.join("etc/hosts").is_file());
        assert!(rootfs.join("proc").is_dir());
    }

    /// A destination that is the root itself, or a symlink to it (swapped in by whoever writes
    /// into the image), would cover the whole root filesystem.
    #[test]
    fn a_mount_on_the_root_itself_is_refused() {
        let tmp = TempDir::new("rootfs");
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::os::unix::fs::symlink("/", rootfs.join("up")).unwrap();
        for (destination, what) in [("/", "tmpfs"), ("/up", "tmpfs"), ("/up/.", "/")] {
            let kind = match what {
                "tmpfs" => r#""type":"tmpfs","source":"tmpfs""#,
                _ => r#""type":"bind","source":"/","options":["rbind"]"#,
            };
            let spec = format!(
                r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"mounts":[
                    {{"destination":"{destination}",{kind}}}]}}"#
            );
            let mut plan = plan_for(&spec, &rootfs);
            plan.setup_dev = false;
            let kernel = Recorder::default();
            let err = prepare(&kernel, &plan).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "cannot mount {what} on {destination}: that is the root of the root filesystem itself"
                )
            );
            // Nothing was mounted after the root filesystem's own bind.
            let calls = kernel.take();
            assert!(
                calls.last().unwrap().contains("MS_BIND|MS_REC"),
                "{calls:?}"
            );
        }
    }

    #[test]
    fn no_pivot_hides_the_hosts_complete_proc_and_sys_outside_the_root() {
        let mountinfo = "\
22 1 8:1 / / rw shared:1 - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
24 22 0:22 / /sys rw,nosuid - sysfs sysfs rw
25 23 0:40 / /proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw
26 22 0:21 /sys /mnt/part rw - proc proc rw
27 22 0:23 / /var/lib/with\\040space/proc rw - proc proc rw
28 22 0:24 / /b/rootfs/proc rw - proc proc rw
29 22 0:25 / /b/rootfs/sys ro - sysfs sysfs ro
30 22 0:26 / /b/rootfs-other/proc rw - proc proc rw";
        let hidden = host_proc_and_sys(mountinfo, Path::new("/b/rootfs"));
        let expected = [
            "/proc",
            "/sys",
            "/var/lib/with space/proc",
            "/b/rootfs-other/proc",
        ];
        assert_eq!(hidden, expected.map(PathBuf::from));
    }

    /// Without a mount namespace berth has made the root filesystem's mount (rootfs::host): the
    /// init changes nothing of the host's `/`, and chroots where it would pivot_root.
    #[test]
    fn in_the_hosts_mount_namespace_the_init_only_mounts_below_the_root_and_chroots() {
        let tmp = TempDir::new("rootfs");
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let spec = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
            "linux":{"namespaces":[{"type":"pid"}],"rootfsPropagation":"shared"},
            "mounts":[{"destination":"/proc","type":"proc","source":"proc"}]}"#;
        let mut plan = plan_for(spec, &rootfs);
        assert!(plan.host_mount_ns);
        plan.setup_dev = false;
        let kernel = Recorder::default();
        prepare(&kernel, &plan).unwrap();
        switch_root(&kernel, &plan).unwrap();
        let r = rootfs.display();
        assert_eq!(
            kernel.take(),
            [
                "fsopen proc".to_string(),
                "fsconfig proc source=proc".into(),
                "fsconfig proc create".into(),
                "fsmount proc 0 atime=Relatime".into(),
                format!("move_mount proc {r}/proc"),
                format!("fchdir {r}"),
                "chroot .".into(),
                "fchdir /".into(),
            ]
        );
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
}
