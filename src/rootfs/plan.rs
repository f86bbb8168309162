//! Planning: the spec's mounts, devices, masked and read-only paths worked out into a
//! [`RootfsPlan`] before the container's process exists, so bad input fails before anything is
//! made and the init only makes system calls.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::stat::SFlag;
use oci_spec::runtime::{LinuxDeviceType, Spec};

use super::resolve::clean;
use super::RootfsError;
use crate::cgroups::CgroupConfig;

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
pub(super) fn option_flag(option: &str) -> Option<(bool, MsFlags)> {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::testutil::TempDir;

    /// The plan for a spec given as JSON, with the root filesystem at `rootfs` in its bundle.
    pub(in crate::rootfs) fn plan_for(spec_json: &str, rootfs: &Path) -> RootfsPlan {
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
