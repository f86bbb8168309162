//! The container's mounts that come from the host, which CRIU must leave out of an image and
//! bind again at restore (its "external" mounts): bind mounts, the cgroup folders bound
//! without a cgroup namespace, devices bound (not made) in a user namespace, and `/dev/null`
//! over masked files. Everything else (proc, sysfs, tmpfs with their content, devpts, mqueue,
//! binds inside the container) CRIU saves and restores itself.

use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use super::rpc::ExtMountMap;
use crate::cgroups::{CgroupConfig, Layout};
use crate::rootfs::{mount_plan, MountKind};

/// A mount whose source is the host's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct External {
    /// Where it is in the container.
    pub destination: PathBuf,
    /// What is bound there, on the host.
    pub source: PathBuf,
}

/// The external mounts of a container made from `spec` (its bundle at `bundle`): `cgroupns`
/// says whether it has a cgroup namespace of its own, `userns` a user namespace.
pub fn external(
    spec: &Spec,
    bundle: &Path,
    cgroup: &CgroupConfig,
    cgroupns: bool,
    userns: bool,
) -> Vec<External> {
    let mut found = Vec::new();
    for (index, mount) in spec.mounts().iter().flatten().enumerate() {
        // A mount create refused never made it into a container.
        let Ok(plan) = mount_plan(index, mount, bundle) else {
            continue;
        };
        let kind = plan.kind;
        match kind {
            MountKind::Bind { source, .. } => found.push(External {
                destination: mount.destination().clone(),
                source,
            }),
            // In a cgroup namespace the hierarchies are mounted, not bound: CRIU saves them.
            MountKind::Cgroup if cgroupns => {}
            MountKind::Cgroup if cgroup.layout == Some(Layout::Unified) => {
                if let Some((_, dir)) = cgroup.dirs.first() {
                    found.push(External {
                        destination: mount.destination().clone(),
                        source: dir.clone(),
                    });
                }
            }
            MountKind::Cgroup => {
                for (hierarchy, dir) in &cgroup.dirs {
                    if let Some(name) = hierarchy.mount_point.file_name() {
                        found.push(External {
                            destination: mount.destination().join(name),
                            source: dir.clone(),
                        });
                    }
                }
            }
            MountKind::Filesystem { .. } => {}
        }
    }
    if userns {
        // In a user namespace berth binds the devices from the host instead of making them.
        let devices = spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().clone())
            .unwrap_or_default();
        let defaults = ["null", "zero", "full", "random", "urandom", "tty"]
            .map(|name| PathBuf::from("/dev").join(name));
        for path in defaults
            .into_iter()
            .chain(devices.iter().map(|d| d.path().clone()))
        {
            if !found.iter().any(|e| e.destination == path) {
                found.push(External {
                    source: path.clone(),
                    destination: path,
                });
            }
        }
    }
    found
}

/// The masked paths that are files (berth binds `/dev/null` over those; a folder gets a tmpfs,
/// which CRIU saves), as the container `pid` sees them.
pub fn masked_files(spec: &Spec, pid: i32) -> Vec<PathBuf> {
    let masked = spec
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default();
    masked
        .into_iter()
        .map(PathBuf::from)
        .filter(|path| {
            let seen = Path::new(&format!("/proc/{pid}/root")).join(relative(path));
            std::fs::metadata(seen).is_ok_and(|m| !m.is_dir())
        })
        .collect()
}

/// The map CRIU's dump takes: each external mount is saved under its own destination as its
/// name, each masked file under the name `/dev/null`. `rootfs` resolves destinations that pass
/// through symlinks of the image to the mount point the kernel has.
pub fn dump_map(
    rootfs: &Path,
    external: &[External],
    masked_files: &[PathBuf],
) -> Vec<ExtMountMap> {
    let mut map: Vec<ExtMountMap> = external
        .iter()
        .map(|e| {
            let point = resolve_in(rootfs, &e.destination).display().to_string();
            ExtMountMap {
                key: point.clone(),
                val: point,
            }
        })
        .collect();
    map.extend(masked_files.iter().map(|path| ExtMountMap {
        key: path.display().to_string(),
        val: "/dev/null".into(),
    }));
    map
}

/// The map CRIU's restore takes: the name each mount was saved under, and the host path to bind
/// there now.
pub fn restore_map(rootfs: &Path, external: &[External], masked: bool) -> Vec<ExtMountMap> {
    let mut map: Vec<ExtMountMap> = external
        .iter()
        .map(|e| ExtMountMap {
            key: resolve_in(rootfs, &e.destination).display().to_string(),
            val: e.source.display().to_string(),
        })
        .collect();
    if masked {
        map.push(ExtMountMap {
            key: "/dev/null".into(),
            val: "/dev/null".into(),
        });
    }
    map
}

/// Makes the mount points of the external mounts in `rootfs` where they are missing (a
/// checkpoint restored into a fresh root filesystem, as `podman container restore --import`
/// gives), as the container's create made them: CRIU binds onto them and does not make them.
/// Those under a tmpfs of the container are left out: CRIU restores the tmpfs with its content.
pub fn make_points(
    spec: &Spec,
    rootfs: &Path,
    external: &[External],
) -> Result<(), std::io::Error> {
    let tmpfs: Vec<&Path> = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| m.typ().as_deref() == Some("tmpfs"))
        .map(|m| m.destination().as_path())
        .collect();
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for mount in external {
        let inside_tmpfs = tmpfs
            .iter()
            .any(|t| mount.destination != *t && mount.destination.starts_with(t));
        if inside_tmpfs {
            continue;
        }
        let file = std::fs::metadata(&mount.source).is_ok_and(|m| !m.is_dir());
        crate::rootfs::make_in_root(&root, &mount.destination, file)?;
    }
    Ok(())
}

/// `path` without its leading `/` and `.` components.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect()
}

/// `destination` inside `rootfs` with the symlinks of the image followed, inside it (as the
/// container saw them when its mounts were made); the destination as it is when it cannot be
/// resolved (it does not exist in the image).
fn resolve_in(rootfs: &Path, destination: &Path) -> PathBuf {
    let fallback = Path::new("/").join(relative(destination));
    let Ok(root) = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return fallback;
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let Ok(fd) = nix::fcntl::openat2(&root, relative(destination).as_path(), how) else {
        return fallback;
    };
    let (Ok(found), Ok(base)) = (
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())),
        std::fs::read_link(format!("/proc/self/fd/{}", root.as_raw_fd())),
    ) else {
        return fallback;
    };
    match found.strip_prefix(&base) {
        Ok(inside) => Path::new("/").join(inside),
        Err(_) => fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::Hierarchy;
    use crate::testutil::TempDir;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    fn hybrid() -> CgroupConfig {
        let hierarchy = |name: &str, v2: bool| Hierarchy {
            mount_point: PathBuf::from("/sys/fs/cgroup").join(name),
            controllers: if v2 { vec![] } else { vec![name.to_string()] },
            v2,
        };
        CgroupConfig {
            layout: Some(Layout::Hybrid),
            dirs: vec![
                (
                    hierarchy("memory", false),
                    "/sys/fs/cgroup/memory/c1".into(),
                ),
                (
                    hierarchy("unified", true),
                    "/sys/fs/cgroup/unified/c1".into(),
                ),
            ],
            systemd: None,
            left_out: Vec::new(),
        }
    }

    const MOUNTS: &str = r#"{"ociVersion":"1.2.1","mounts":[
        {"destination":"/proc","type":"proc","source":"proc"},
        {"destination":"/etc/resolv.conf","type":"bind","source":"/etc/resolv.conf","options":["rbind","ro"]},
        {"destination":"/data","source":"data","options":["bind"]},
        {"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro"]}]}"#;

    #[test]
    fn bind_mounts_and_bound_cgroups_are_external() {
        let found = external(&spec(MOUNTS), Path::new("/b"), &hybrid(), false, false);
        let pairs: Vec<(&str, &str)> = found
            .iter()
            .map(|e| (e.destination.to_str().unwrap(), e.source.to_str().unwrap()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("/etc/resolv.conf", "/etc/resolv.conf"),
                ("/data", "/b/data"),
                ("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/c1"),
                ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified/c1"),
            ]
        );
        // In a cgroup namespace the hierarchies are mounted fresh: CRIU saves those.
        let found = external(&spec(MOUNTS), Path::new("/b"), &hybrid(), true, false);
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn devices_are_external_only_in_a_user_namespace() {
        let with_device = r#"{"ociVersion":"1.2.1","linux":{"devices":[
            {"path":"/dev/fuse","type":"c","major":10,"minor":229}]}}"#;
        let cgroup = CgroupConfig::default();
        assert!(external(&spec(with_device), Path::new("/b"), &cgroup, false, false).is_empty());
        let found = external(&spec(with_device), Path::new("/b"), &cgroup, false, true);
        let paths: Vec<&Path> = found.iter().map(|e| e.destination.as_path()).collect();
        assert!(paths.contains(&Path::new("/dev/null")));
        assert!(paths.contains(&Path::new("/dev/fuse")));
        assert!(found.iter().all(|e| e.source == e.destination));
    }

    #[test]
    fn dump_and_restore_maps_name_mounts_alike() {
        let rootfs = TempDir::new("ckpt-rootfs");
        std::fs::create_dir_all(rootfs.path().join("real/dir")).unwrap();
        std::os::unix::fs::symlink("/real", rootfs.path().join("link")).unwrap();
        let external = vec![
            External {
                destination: "/link/dir".into(),
                source: "/host/a".into(),
            },
            External {
                destination: "/missing/x".into(),
                source: "/host/b".into(),
            },
        ];
        let dump = dump_map(rootfs.path(), &external, &[PathBuf::from("/proc/kcore")]);
        let pairs: Vec<(&str, &str)> = dump
            .iter()
            .map(|m| (m.key.as_str(), m.val.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("/real/dir", "/real/dir"),
                ("/missing/x", "/missing/x"),
                ("/proc/kcore", "/dev/null"),
            ]
        );
        let restore = restore_map(rootfs.path(), &external, true);
        let pairs: Vec<(&str, &str)> = restore
            .iter()
            .map(|m| (m.key.as_str(), m.val.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("/real/dir", "/host/a"),
                ("/missing/x", "/host/b"),
                ("/dev/null", "/dev/null"),
            ]
        );
    }
}
