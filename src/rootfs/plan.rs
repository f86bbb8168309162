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
use crate::syscall::{Atime, Attr, MountAttr};

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
    /// What the options change on the mount itself (`ro`, `nosuid`, `noatime` …): a bind mount
    /// keeps the flags of its source but these.
    pub attr: MountAttr,
    /// The filesystem's own flags (`ro`, `sync`, `dirsync`, `mand`), for a new filesystem, and
    /// `remount`.
    pub fs_flags: MsFlags,
    /// What the recursive options (`rro`, `rnosuid` …) change on the mount and every mount
    /// below it.
    pub recursive: MountAttr,
    /// The propagation options in their order (`rslave` is `MS_SLAVE | MS_REC`).
    pub propagation: Vec<MsFlags>,
    /// The filesystem's own options, `key` or `key=value`, one each.
    pub data: Vec<String>,
    /// `tmpcopyup`: the new tmpfs starts with a copy of what its destination held.
    pub copy_up: bool,
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
    /// A read-only filesystem at `/dev`, made read-only only once the devices and the mount
    /// points of the mounts below it are in it (`finish`), as runc does.
    pub dev_readonly: bool,
    pub devices: Vec<DevicePlan>,
    pub masked: Vec<PathBuf>,
    pub readonly_paths: Vec<PathBuf>,
    pub no_pivot: bool,
    /// Whether the container has no mount namespace of its own: it runs in the host's, where
    /// berth has given the root filesystem a mount of its own (see `host`).
    pub host_mount_ns: bool,
    pub cgroup: CgroupConfig,
    pub new_cgroupns: bool,
    /// In a user namespace mknod is refused: devices are bind-mounted from the host instead.
    pub in_userns: bool,
    pub sysctl: Vec<(String, String)>,
    /// The pid namespace the container joins by path, when its init builds it from outside
    /// (`process::init`): proc mounts show that one, not the init's.
    pub proc_pid_ns: Option<std::os::fd::RawFd>,
}

/// The mount options berth applies itself (the rest go to the filesystem as its own options).
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
    "nosymfollow",
    "notmpcopyup",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

/// `MS_NOSYMFOLLOW` (Linux 5.10), which nix does not name.
const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

/// The options that set or clear a flag, as mount(8) reads them.
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
        "nosymfollow" => (false, MS_NOSYMFOLLOW),
        "symfollow" => (true, MS_NOSYMFOLLOW),
        "bind" => (false, MsFlags::MS_BIND),
        "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
        _ => return None,
    })
}

/// What a recursive option (runtime-spec 1.1, mount_setattr with AT_RECURSIVE) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recursive {
    Set(Attr),
    Clear(Attr),
    Atime(Atime),
}

fn recursive_option(option: &str) -> Option<Recursive> {
    use Recursive::{Clear, Set};
    Some(match option {
        "rro" => Set(Attr::RDONLY),
        "rrw" => Clear(Attr::RDONLY),
        "rnosuid" => Set(Attr::NOSUID),
        "rsuid" => Clear(Attr::NOSUID),
        "rnodev" => Set(Attr::NODEV),
        "rdev" => Clear(Attr::NODEV),
        "rnoexec" => Set(Attr::NOEXEC),
        "rexec" => Clear(Attr::NOEXEC),
        "rnodiratime" => Set(Attr::NODIRATIME),
        "rdiratime" => Clear(Attr::NODIRATIME),
        "rnosymfollow" => Set(Attr::NOSYMFOLLOW),
        "rsymfollow" => Clear(Attr::NOSYMFOLLOW),
        "rnoatime" => Recursive::Atime(Atime::Noatime),
        "rstrictatime" => Recursive::Atime(Atime::Strictatime),
        // Leaving noatime or strictatime, or asking for relatime, is the kernel's default:
        // relatime, as mount(2) does without an access-time flag.
        "rrelatime" | "ratime" | "rnorelatime" | "rnostrictatime" => {
            Recursive::Atime(Atime::Relatime)
        }
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

/// One spec mount's options, sorted by what applies them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOptions {
    /// The flags set and the flags cleared, as mount(8) reads them (the last word wins).
    pub flags: MsFlags,
    pub cleared: MsFlags,
    pub recursive: MountAttr,
    pub propagation: Vec<MsFlags>,
    pub copy_up: bool,
    /// The rest: the filesystem's own options (`idmap` and `mounts[].uidMappings` are refused by
    /// `spec::check` before any of this).
    pub data: Vec<String>,
}

/// Reads one spec mount's options.
pub fn parse_options(options: &[String]) -> MountOptions {
    let mut parsed = MountOptions {
        flags: MsFlags::empty(),
        cleared: MsFlags::empty(),
        recursive: MountAttr::default(),
        propagation: Vec::new(),
        copy_up: false,
        data: Vec::new(),
    };
    for option in options {
        if let Some((clear, flag)) = option_flag(option) {
            if clear {
                parsed.flags.remove(flag);
                parsed.cleared.insert(flag);
            } else {
                parsed.flags.insert(flag);
                parsed.cleared.remove(flag);
            }
        } else if let Some(flag) = propagation_flag(option) {
            parsed.propagation.push(flag);
        } else if let Some(recursive) = recursive_option(option) {
            let attr = &mut parsed.recursive;
            match recursive {
                Recursive::Set(flag) => {
                    attr.set.insert(flag);
                    attr.clear.remove(flag);
                }
                Recursive::Clear(flag) => {
                    attr.clear.insert(flag);
                    attr.set.remove(flag);
                }
                Recursive::Atime(atime) => attr.atime = Some(atime),
            }
        } else if option == "tmpcopyup" || option == "notmpcopyup" {
            parsed.copy_up = option == "tmpcopyup";
        } else {
            parsed.data.extend(split_data(option));
        }
    }
    parsed
}

/// Splits an option that holds several filesystem options (`mode=755,size=1m`) at its commas,
/// but not at those inside double quotes (an SELinux `context="…,…"`).
fn split_data(option: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    for c in option.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().expect("never empty").push(c);
    }
    parts.retain(|p| !p.is_empty());
    parts
}

/// The flags of the mount itself that `flags` set and `cleared` clear. The access-time mode is
/// touched only when an option names it, and then as mount(2) reads the flags: strictatime over
/// noatime over relatime, which is also what clearing any of them leaves.
pub(super) fn mount_attr(flags: MsFlags, cleared: MsFlags) -> MountAttr {
    let pairs = [
        (MsFlags::MS_RDONLY, Attr::RDONLY),
        (MsFlags::MS_NOSUID, Attr::NOSUID),
        (MsFlags::MS_NODEV, Attr::NODEV),
        (MsFlags::MS_NOEXEC, Attr::NOEXEC),
        (MsFlags::MS_NODIRATIME, Attr::NODIRATIME),
        (MS_NOSYMFOLLOW, Attr::NOSYMFOLLOW),
    ];
    let mut attr = MountAttr::default();
    for (ms, at) in pairs {
        if flags.contains(ms) {
            attr.set |= at;
        }
        if cleared.contains(ms) {
            attr.clear |= at;
        }
    }
    let atimes = MsFlags::MS_NOATIME | MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME;
    if (flags | cleared).intersects(atimes) {
        attr.atime = Some(if flags.contains(MsFlags::MS_STRICTATIME) {
            Atime::Strictatime
        } else if flags.contains(MsFlags::MS_NOATIME) {
            Atime::Noatime
        } else {
            Atime::Relatime
        });
    }
    attr
}

/// The flags of a filesystem (not of one mount of it), which a bind mount cannot change.
const FS_FLAGS: MsFlags = MsFlags::MS_SYNCHRONOUS
    .union(MsFlags::MS_DIRSYNC)
    .union(MsFlags::MS_MANDLOCK);

/// Works out one spec mount, or says why berth cannot make it as asked.
pub fn mount_plan(
    index: usize,
    mount: &oci_spec::runtime::Mount,
    bundle: &Path,
) -> Result<MountPlan, RootfsError> {
    let bad = |reason: String| RootfsError::BadMount {
        index,
        destination: mount.destination().display().to_string(),
        reason,
    };
    let options = parse_options(mount.options().as_deref().unwrap_or_default());
    let fstype = mount.typ().clone().unwrap_or_default();
    let flags = options.flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
    let kind = if fstype == "bind" || options.flags.contains(MsFlags::MS_BIND) {
        let source = mount.source().clone().unwrap_or_default();
        MountKind::Bind {
            source: if source.is_absolute() {
                source
            } else {
                bundle.join(source)
            },
            recursive: options.flags.contains(MsFlags::MS_REC),
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
            fstype: fstype.clone(),
        }
    };
    // What a bind mount or the cgroup mount could only drop: refused, never ignored.
    let filesystem = matches!(kind, MountKind::Filesystem { .. });
    if !filesystem {
        let what = match kind {
            MountKind::Bind { .. } => "a bind mount shares its source's filesystem",
            _ => "the cgroup mount shows the container's own cgroups",
        };
        if let Some(option) = options.data.first() {
            return Err(bad(format!(
                "option {option:?} is not one berth knows, and {what}: it takes no filesystem options"
            )));
        }
        for option in mount.options().iter().flatten() {
            if option_flag(option).is_some_and(|(_, flag)| FS_FLAGS.intersects(flag)) {
                return Err(bad(format!(
                    "option {option:?} changes a filesystem, and {what}"
                )));
            }
        }
    }
    if options.copy_up && fstype != "tmpfs" {
        return Err(bad(format!(
            "option \"tmpcopyup\" applies to a tmpfs, not to {}",
            match kind {
                MountKind::Bind { .. } => "a bind mount".to_string(),
                _ => format!("type {fstype:?}"),
            }
        )));
    }
    Ok(MountPlan {
        destination: mount.destination().clone(),
        kind,
        attr: mount_attr(flags, options.cleared),
        fs_flags: flags & (FS_FLAGS | MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT),
        recursive: options.recursive,
        propagation: options.propagation,
        data: options.data,
        copy_up: options.copy_up,
    })
}

/// Checks every spec mount as [`RootfsPlan::from_spec`] would, before anything is made.
pub fn check_mounts(spec: &Spec, bundle: &Path) -> Result<(), RootfsError> {
    for (index, mount) in spec.mounts().iter().flatten().enumerate() {
        mount_plan(index, mount, bundle)?;
    }
    Ok(())
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
        let mut mounts = spec
            .mounts()
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, mount)| mount_plan(index, mount, bundle))
            .collect::<Result<Vec<_>, _>>()?;
        let mut dev_readonly = false;
        for mount in &mut mounts {
            let at_dev = clean(&mount.destination) == Path::new("dev");
            if at_dev
                && matches!(mount.kind, MountKind::Filesystem { .. })
                && mount.attr.set.contains(Attr::RDONLY)
            {
                mount.attr.set.remove(Attr::RDONLY);
                mount.fs_flags.remove(MsFlags::MS_RDONLY);
                dev_readonly = true;
            }
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
        // Each path once (a config may repeat one; runc dedups them too): one mount for it.
        let paths = |list: Option<&Vec<String>>| {
            let mut seen = std::collections::HashSet::new();
            list.into_iter()
                .flatten()
                .map(PathBuf::from)
                .filter(|path| seen.insert(path.clone()))
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
            dev_readonly,
            devices,
            masked: paths(linux.and_then(|l| l.masked_paths().as_ref())),
            readonly_paths: paths(linux.and_then(|l| l.readonly_paths().as_ref())),
            no_pivot,
            host_mount_ns: !crate::spec::namespace_types(spec)
                .contains(&oci_spec::runtime::LinuxNamespaceType::Mount),
            cgroup,
            new_cgroupns,
            in_userns,
            sysctl,
            proc_pid_ns: None,
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
    /// The plan for a spec given as JSON, with the root filesystem at `rootfs` in its bundle,
    /// for a container with a mount namespace of its own unless the spec lists namespaces.
    pub(in crate::rootfs) fn plan_for(spec_json: &str, rootfs: &Path) -> RootfsPlan {
        let mut spec: Spec = serde_json::from_str(spec_json).unwrap();
        if spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_none()
        {
            let mount = serde_json::from_str(r#"{"type":"mount"}"#).unwrap();
            let mut linux = spec.linux().clone().unwrap_or_default();
            linux.set_namespaces(Some(vec![mount]));
            spec.set_linux(Some(linux));
        }
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

    /// `features` lists MOUNT_OPTIONS as what berth applies: each must be applied by berth
    /// itself, never handed to the filesystem as one of its own options.
    #[test]
    fn every_listed_option_is_applied_by_berth() {
        for option in MOUNT_OPTIONS {
            let parsed = parse_options(&[option.to_string()]);
            assert!(parsed.data.is_empty(), "{option}");
        }
        for option in ["mode=755", "idmap", "ridmap", "lowerdir=/a"] {
            assert!(!MOUNT_OPTIONS.contains(&option), "{option}");
        }
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let opts = strings(&[
            "nosuid",
            "noexec",
            "nodev",
            "mode=755",
            "size=65536k,nr_inodes=5",
            "rslave",
            "ro",
            "rw",
            "private",
        ]);
        let parsed = parse_options(&opts);
        assert_eq!(
            parsed.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV
        );
        assert_eq!(parsed.cleared, MsFlags::MS_RDONLY);
        assert_eq!(
            parsed.propagation,
            [MsFlags::MS_SLAVE | MsFlags::MS_REC, MsFlags::MS_PRIVATE]
        );
        assert_eq!(parsed.data, ["mode=755", "size=65536k", "nr_inodes=5"]);
        assert_eq!(parsed.recursive, MountAttr::default());
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn recursive_options_go_to_mount_setattr_not_to_the_filesystem() {
        let parsed = parse_options(&strings(&[
            "rbind",
            "rro",
            "rnosuid",
            "rsuid",
            "rnodev",
            "rexec",
            "rnoatime",
            "rnosymfollow",
        ]));
        assert!(parsed.data.is_empty(), "{:?}", parsed.data);
        assert_eq!(
            parsed.recursive,
            MountAttr {
                set: Attr::RDONLY | Attr::NODEV | Attr::NOSYMFOLLOW,
                clear: Attr::NOSUID | Attr::NOEXEC,
                atime: Some(Atime::Noatime),
                propagation: MsFlags::empty(),
            }
        );
        // Leaving noatime or strictatime is relatime, as mount(2) has it.
        for option in ["ratime", "rnorelatime", "rnostrictatime", "rrelatime"] {
            let parsed = parse_options(&strings(&["rstrictatime", option]));
            assert_eq!(parsed.recursive.atime, Some(Atime::Relatime), "{option}");
        }
        assert_eq!(
            parse_options(&strings(&["rrw"])).recursive.clear,
            Attr::RDONLY
        );
    }

    #[test]
    fn a_mount_changes_only_the_flags_its_options_name() {
        let attr = |list: &[&str]| {
            let parsed = parse_options(&strings(list));
            mount_attr(parsed.flags, parsed.cleared)
        };
        // Nothing named: nothing changes (a bind keeps its source's flags).
        assert_eq!(attr(&["rbind"]), MountAttr::default());
        assert_eq!(
            attr(&["ro", "nosuid", "dev", "nosymfollow"]),
            MountAttr {
                set: Attr::RDONLY | Attr::NOSUID | Attr::NOSYMFOLLOW,
                clear: Attr::NODEV,
                ..MountAttr::default()
            }
        );
        // The access time: strictatime over noatime over relatime, as mount(2) reads them.
        assert_eq!(attr(&["noatime"]).atime, Some(Atime::Noatime));
        assert_eq!(
            attr(&["noatime", "strictatime"]).atime,
            Some(Atime::Strictatime)
        );
        assert_eq!(attr(&["atime"]).atime, Some(Atime::Relatime));
        assert_eq!(attr(&["norelatime"]).atime, Some(Atime::Relatime));
        assert_eq!(attr(&["nodiratime"]).set, Attr::NODIRATIME);
        assert_eq!(attr(&["nodiratime"]).atime, None);
    }

    #[test]
    fn filesystem_options_keep_quoted_commas() {
        assert_eq!(
            split_data(r#"context="a:b:c:s0:c1,c2",size=1m"#),
            [r#"context="a:b:c:s0:c1,c2""#, "size=1m"]
        );
    }

    /// The error `mount_plan` gives for one mount given as JSON.
    fn refusal(mount: &str) -> String {
        let mount: oci_spec::runtime::Mount = serde_json::from_str(mount).unwrap();
        mount_plan(3, &mount, Path::new("/bundle"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn options_berth_would_drop_are_refused_naming_the_mount() {
        let cases = [
            (
                r#"{"destination":"/d","type":"none","source":"/s","options":["rbind","mode=755"]}"#,
                r#"mounts[3] (/d): option "mode=755" is not one berth knows, and a bind mount shares its source's filesystem: it takes no filesystem options"#,
            ),
            (
                r#"{"destination":"/d","type":"bind","source":"/s","options":["bind","sync"]}"#,
                r#"mounts[3] (/d): option "sync" changes a filesystem, and a bind mount shares its source's filesystem"#,
            ),
            (
                r#"{"destination":"/d","type":"bind","source":"/s","options":["bind","tmpcopyup"]}"#,
                r#"mounts[3] (/d): option "tmpcopyup" applies to a tmpfs, not to a bind mount"#,
            ),
            (
                r#"{"destination":"/d","type":"proc","source":"proc","options":["tmpcopyup"]}"#,
                r#"mounts[3] (/d): option "tmpcopyup" applies to a tmpfs, not to type "proc""#,
            ),
            (
                r#"{"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro","nsdelegate"]}"#,
                r#"mounts[3] (/sys/fs/cgroup): option "nsdelegate" is not one berth knows, and the cgroup mount shows the container's own cgroups: it takes no filesystem options"#,
            ),
        ];
        for (mount, message) in cases {
            assert_eq!(refusal(mount), message);
        }
    }

    #[test]
    fn a_tmpfs_takes_tmpcopyup_and_a_filesystem_its_own_options() {
        let mount: oci_spec::runtime::Mount = serde_json::from_str(
            r#"{"destination":"/run","type":"tmpfs","source":"tmpfs",
                "options":["nosuid","tmpcopyup","sync","ro","remount","mode=700","rro"]}"#,
        )
        .unwrap();
        let plan = mount_plan(0, &mount, Path::new("/bundle")).unwrap();
        assert!(plan.copy_up);
        assert_eq!(
            plan.fs_flags,
            MsFlags::MS_SYNCHRONOUS | MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT
        );
        assert_eq!(plan.attr.set, Attr::NOSUID | Attr::RDONLY);
        assert_eq!(plan.recursive.set, Attr::RDONLY);
        assert_eq!(plan.data, ["mode=700"]);
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
