//! Loading and checking a bundle's `config.json`: every error names the file or the field, and
//! nothing is created before the whole configuration has been checked.

pub mod features;
pub mod fields;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// The runtime-spec versions berth knows: it implements 1.0.0 to 1.3.0, and accepts every later
/// 1.x too (a later minor only adds optional fields, which berth ignores as the spec says).
pub const OCI_VERSION_MIN: &str = "1.0.0";
pub const OCI_VERSION_MAX: &str = "1.3.0";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] crate::bounded::ReadError),
    #[error("{path} is not a valid runtime spec: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("unsupported ociVersion {0:?}: berth supports {OCI_VERSION_MIN} and every later 1.x version")]
    Version(String),
    #[error("{field} is set but {reason}")]
    Refused { field: String, reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("config.json has no {0:?} section")]
    Missing(&'static str),
    #[error("root.path {path:?} does not exist (resolved to {resolved})")]
    NoRootfs { path: PathBuf, resolved: PathBuf },
    #[error("root.path {0} is not a directory")]
    RootfsNotDir(PathBuf),
    #[error("process.args must name a program")]
    NoArgs,
    #[error("process.cwd {0:?} must be an absolute path")]
    RelativeCwd(PathBuf),
    #[error("process.user.{0} {1} is not a valid id")]
    BadUser(&'static str, u32),
    #[error("linux.devices[{0}].path {1:?} must be an absolute path without '..'")]
    BadDevicePath(usize, PathBuf),
    #[error("linux.namespaces lists {0:?} twice")]
    DuplicateNamespace(String),
    #[error("linux.namespaces: the {0} namespace path {1} does not exist")]
    NoNamespacePath(String, PathBuf),
    #[error("linux.namespaces: cannot use the {kind} namespace path {path}: {source}")]
    NamespacePath {
        kind: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("linux.uidMappings and linux.gidMappings are required with a new user namespace")]
    NoIdMappings,
    #[error("linux.uidMappings are set but there is no user namespace")]
    MappingsWithoutUserns,
    #[error("{0} is set but the container has no uts namespace of its own")]
    NeedsUts(&'static str),
    #[error("mounts[{0}].destination is empty")]
    EmptyDestination(usize),
    #[error("mounts[{index}] ({destination}): {reason}")]
    BadMount {
        index: usize,
        destination: String,
        reason: String,
    },
    #[error("linux.sysctl {0:?}: {1}")]
    Sysctl(String, &'static str),
    #[error("process.rlimits lists {0} twice")]
    Rlimit(String),
    #[error("process.rlimits: the soft limit of {0} is above its hard limit")]
    RlimitOrder(String),
    #[error(
        "linux.namespaces has a user namespace but no mount namespace: berth could mount nothing for the container in the host's"
    )]
    UserWithoutMount,
    #[error("hooks.{0}[{1}].path {2:?} must be absolute")]
    HookPath(&'static str, usize, String),
    #[error("hooks.{0}[{1}].timeout is {2}: it must be greater than zero")]
    HookTimeout(&'static str, usize, i64),
}

/// The most of `config.json` berth reads: far above any engine's config (tens of KiB; a seccomp
/// profile of 100,000 rules is about 6 MiB), and a bound on what a hostile bundle costs the host.
pub const CONFIG_LIMIT: u64 = 16 << 20;

/// A loaded bundle: the parsed spec, the raw bytes (kept in the state folder for `exec`), and the
/// root filesystem resolved against the bundle.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub raw: Vec<u8>,
    pub rootfs: PathBuf,
}

/// Reads `DIR/config.json` and checks it.
pub fn load(bundle_dir: &Path) -> Result<Bundle, SpecError> {
    let dir = std::path::absolute(bundle_dir).map_err(|source| SpecError::Read {
        path: bundle_dir.to_path_buf(),
        source,
    })?;
    let path = dir.join("config.json");
    let raw = crate::bounded::read_regular(&path, CONFIG_LIMIT)?;
    let parse_error = |source| SpecError::Parse {
        path: path.clone(),
        source,
    };
    let mut value: serde_json::Value = serde_json::from_slice(&raw).map_err(parse_error)?;
    let renamed = value
        .get_mut("process")
        .is_some_and(spec_names_for_oci_spec);
    // From the text where it can be, so an error says where in the file it is.
    let mut spec: Spec = match renamed {
        true => serde_json::from_value(value.clone()),
        false => serde_json::from_slice(&raw),
    }
    .map_err(parse_error)?;
    let version = spec.version().clone();
    let raw_pids = value.pointer("/linux/resources/pids");
    if let Some(resources) = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.resources_mut().as_mut())
    {
        crate::cgroups::normalize_pids(resources, raw_pids, &version);
    }
    // A namespace whose path is empty is one to make, as for runc: Go's zero string is "unset".
    for ns in spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.namespaces_mut().as_mut())
        .into_iter()
        .flatten()
    {
        if ns.path().as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            ns.set_path(None);
        }
    }
    let rootfs = check(&spec, &dir)?;
    check_fields(&spec, &value)?;
    Ok(Bundle {
        dir,
        spec,
        raw,
        rootfs,
    })
}

/// oci-spec 0.10 spells two scheduler flags otherwise than the runtime-spec does
/// (`SCHED_RESET_ON_FORK`, `SCHED_FLAG_D_L_OVERRUN`): a `process` object's spec names are
/// rewritten to oci-spec's before it is read, so a config that follows the spec is accepted.
/// Returns whether it renamed any.
pub fn spec_names_for_oci_spec(process: &mut serde_json::Value) -> bool {
    let flags = process
        .pointer_mut("/scheduler/flags")
        .and_then(|f| f.as_array_mut());
    let mut renamed = false;
    for flag in flags.into_iter().flatten() {
        let name = match flag.as_str() {
            Some("SCHED_FLAG_RESET_ON_FORK") => "SCHED_RESET_ON_FORK",
            Some("SCHED_FLAG_DL_OVERRUN") => "SCHED_FLAG_D_L_OVERRUN",
            _ => continue,
        };
        *flag = serde_json::Value::from(name);
        renamed = true;
    }
    renamed
}

/// Whether `version` is a runtime-spec version berth accepts: 1.0.0 and every later 1.x,
/// including the `-dev`/`-rc` forms runc's template writes. 0.x predates the stable spec and 2.x
/// may change what fields mean.
pub fn version_supported(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let number = |i: usize| parts.get(i).and_then(|p| p.parse::<u32>().ok());
    matches!(
        (parts.len(), number(0), number(1), number(2)),
        (3, Some(1), Some(_), Some(_))
    )
}

/// Whether `version` is at least `major.minor` (a version `version_supported` accepts).
pub fn version_at_least(version: &str, minor: u32) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or("");
    core.split('.').nth(1).and_then(|m| m.parse::<u32>().ok()) >= Some(minor)
}

/// Walks config.json against [`fields::FIELDS`]: a refused field fails the create, naming it;
/// fields berth does not know (a later minor's) are ignored, as the spec's extensibility rules
/// say, and named under `--debug`. Then the fields that hold only where the host can apply them.
fn check_fields(spec: &Spec, config: &serde_json::Value) -> Result<(), SpecError> {
    let walk = fields::walk(config);
    if !walk.unknown.is_empty() {
        crate::logging::debug(&format!(
            "config.json (ociVersion {}): ignoring fields berth does not know: {}",
            spec.version(),
            walk.unknown.join(", ")
        ));
    }
    if let Some((field, reason)) = walk.refused {
        return Err(SpecError::Refused { field, reason });
    }
    let process = spec.process().as_ref();
    let set = |value: Option<&String>| value.is_some_and(|v| !v.is_empty());
    let refused = |field: &str, reason: &str| SpecError::Refused {
        field: field.into(),
        reason: reason.into(),
    };
    if set(process.and_then(|p| p.apparmor_profile().as_ref())) && !crate::lsm::apparmor_enabled() {
        return Err(refused(
            "process.apparmorProfile",
            "AppArmor is not enabled on this host",
        ));
    }
    if set(process.and_then(|p| p.selinux_label().as_ref())) && !crate::lsm::selinux_enabled() {
        return Err(refused(
            "process.selinuxLabel",
            "SELinux is not enabled on this host",
        ));
    }
    if set(spec.linux().as_ref().and_then(|l| l.mount_label().as_ref())) {
        let reason = match crate::lsm::selinux_enabled() {
            false => "SELinux is not enabled on this host",
            true => "berth does not label mounts with SELinux contexts yet",
        };
        return Err(refused("linux.mountLabel", reason));
    }
    Ok(())
}

/// Why berth refuses `linux.intelRdt` here: the spec asks for an error where there is no
/// resctrl filesystem, and berth does not manage resctrl groups where there is one.
pub fn intel_rdt_refusal() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let has_resctrl = mounts.lines().any(|l| {
        l.split(" - ")
            .nth(1)
            .is_some_and(|fs| fs.starts_with("resctrl "))
    });
    match has_resctrl {
        false => "this host has no resctrl filesystem".into(),
        true => "berth does not manage resctrl groups yet".into(),
    }
}

/// Checks what a container needs and returns the absolute root filesystem.
pub fn check(spec: &Spec, bundle: &Path) -> Result<PathBuf, SpecError> {
    if !version_supported(spec.version()) {
        return Err(SpecError::Version(spec.version().clone()));
    }
    let root = spec.root().as_ref().ok_or(SpecError::Missing("root"))?;
    let rootfs = bundle.join(root.path());
    match std::fs::metadata(&rootfs) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(SpecError::RootfsNotDir(rootfs)),
        Err(_) => {
            return Err(SpecError::NoRootfs {
                path: root.path().clone(),
                resolved: rootfs,
            })
        }
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or(SpecError::Missing("process"))?;
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return Err(SpecError::NoArgs),
    }
    if !process.cwd().is_absolute() {
        return Err(SpecError::RelativeCwd(process.cwd().clone()));
    }
    check_user(process.user())?;
    let mut seen = HashSet::new();
    for limit in process.rlimits().iter().flatten() {
        if !seen.insert(crate::process::rlimit(limit.typ()).1) {
            return Err(SpecError::Rlimit(
                crate::process::rlimit(limit.typ()).1.into(),
            ));
        }
        if limit.soft() > limit.hard() {
            return Err(SpecError::RlimitOrder(
                crate::process::rlimit(limit.typ()).1.into(),
            ));
        }
    }
    // Without a mount namespace the container runs in berth's (see rootfs::host), where a
    // process in a user namespace may mount nothing.
    let types = namespace_types(spec);
    if types.contains(&LinuxNamespaceType::User) && !types.contains(&LinuxNamespaceType::Mount) {
        return Err(SpecError::UserWithoutMount);
    }
    check_namespaces(spec)?;
    check_time_offsets(spec)?;
    check_devices(spec)?;
    check_mounts(spec, &rootfs)?;
    check_sysctl(spec)?;
    check_hooks(spec)?;
    Ok(rootfs)
}

/// The namespace types the container gets of its own or joins, by type.
pub fn namespace_types(spec: &Spec) -> HashSet<LinuxNamespaceType> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .map(|list| list.iter().map(|ns| ns.typ()).collect())
        .unwrap_or_default()
}

/// A namespace type as config.json spells it (`network`, where oci-spec's Display says `net`).
fn type_name(typ: LinuxNamespaceType) -> String {
    serde_json::to_value(typ)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| typ.to_string())
}

fn check_namespaces(spec: &Spec) -> Result<(), SpecError> {
    let linux = spec.linux().as_ref();
    let mut seen = HashSet::new();
    let mut new_user = false;
    for ns in linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
    {
        if !seen.insert(ns.typ()) {
            return Err(SpecError::DuplicateNamespace(type_name(ns.typ())));
        }
        match ns.path().as_ref().map(std::fs::metadata) {
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SpecError::NoNamespacePath(
                    type_name(ns.typ()),
                    ns.path().clone().unwrap_or_default(),
                ))
            }
            Some(Err(source)) => {
                return Err(SpecError::NamespacePath {
                    kind: type_name(ns.typ()),
                    path: ns.path().clone().unwrap_or_default(),
                    source,
                })
            }
            None if ns.typ() == LinuxNamespaceType::User => new_user = true,
            _ => {}
        }
    }
    let has_maps = linux.is_some_and(|l| {
        l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty())
    });
    if new_user && !has_maps {
        return Err(SpecError::NoIdMappings);
    }
    if has_maps && !seen.contains(&LinuxNamespaceType::User) {
        return Err(SpecError::MappingsWithoutUserns);
    }
    let own_uts = linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .any(|ns| ns.typ() == LinuxNamespaceType::Uts);
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !own_uts {
        return Err(SpecError::NeedsUts("hostname"));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !own_uts {
        return Err(SpecError::NeedsUts("domainname"));
    }
    Ok(())
}

/// `linux.timeOffsets` go into a time namespace the container makes, for the clocks it offsets.
fn check_time_offsets(spec: &Spec) -> Result<(), SpecError> {
    let Some(offsets) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    else {
        return Ok(());
    };
    let new_time = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .any(|ns| ns.typ() == LinuxNamespaceType::Time && ns.path().is_none());
    if !offsets.is_empty() && !new_time {
        return Err(SpecError::Invalid {
            field: "linux.timeOffsets",
            reason: "offsets need a time namespace of the container's own in linux.namespaces"
                .into(),
        });
    }
    for (clock, offset) in offsets {
        if !crate::namespaces::TIME_CLOCKS.contains(&clock.as_str()) {
            return Err(SpecError::Invalid {
                field: "linux.timeOffsets",
                reason: format!(
                    "{clock:?} is not a clock a time namespace offsets (monotonic, boottime)"
                ),
            });
        }
        if offset.nanosecs().unwrap_or(0) >= 1_000_000_000 {
            return Err(SpecError::Invalid {
                field: "linux.timeOffsets",
                reason: format!("the nanoseconds of {clock} must be below 1000000000"),
            });
        }
    }
    Ok(())
}

/// 4294967295 is `(uid_t)-1`, which setresuid and setgroups read as "leave unchanged": a
/// container asking for it would keep running as root.
fn check_user(user: &oci_spec::runtime::User) -> Result<(), SpecError> {
    let ids = [("uid", user.uid()), ("gid", user.gid())]
        .into_iter()
        .chain(
            user.additional_gids()
                .iter()
                .flatten()
                .map(|&g| ("additionalGids", g)),
        );
    for (field, id) in ids {
        if id == u32::MAX {
            return Err(SpecError::BadUser(field, id));
        }
    }
    Ok(())
}

/// Device paths name a node inside the container, and with a user namespace the host node that
/// is bind-mounted there: absolute, without `..`.
fn check_devices(spec: &Spec) -> Result<(), SpecError> {
    let devices = spec.linux().as_ref().and_then(|l| l.devices().as_ref());
    for (index, device) in devices.into_iter().flatten().enumerate() {
        let path = device.path();
        let dotdot = path
            .components()
            .any(|c| c == std::path::Component::ParentDir);
        if !path.is_absolute() || dotdot || path == Path::new("/") {
            return Err(SpecError::BadDevicePath(index, path.clone()));
        }
    }
    Ok(())
}

fn check_mounts(spec: &Spec, rootfs: &Path) -> Result<(), SpecError> {
    for (index, mount) in spec.mounts().iter().flatten().enumerate() {
        let destination = mount.destination();
        if destination.as_os_str().is_empty() {
            return Err(SpecError::EmptyDestination(index));
        }
        let bad = |reason: &str| SpecError::BadMount {
            index,
            destination: destination.display().to_string(),
            reason: reason.to_string(),
        };
        let options = mount.options().as_deref().unwrap_or_default();
        if let Some(option) = options
            .iter()
            .find(|o| o.starts_with("idmap") || o.starts_with("ridmap"))
        {
            return Err(bad(&format!(
                "option {option:?}: berth does not make id-mapped mounts"
            )));
        }
        let is_bind = mount.typ().as_deref() == Some("bind")
            || options.iter().any(|o| o == "bind" || o == "rbind");
        if is_bind {
            let source = mount
                .source()
                .as_ref()
                .ok_or_else(|| bad("a bind mount needs a source"))?;
            // A source inside the root filesystem may be made by an earlier mount (runc's
            // mounts.bats binds /mnt/x after a bind of a folder holding x onto /mnt): its mount
            // says whether it is there.
            if !source.exists() && source.is_absolute() && !source.starts_with(rootfs) {
                return Err(bad(&format!("source {} does not exist", source.display())));
            }
        } else if mount.typ().as_deref().unwrap_or("").is_empty() {
            return Err(bad("type is missing"));
        }
    }
    Ok(())
}

/// Whether `path` names the namespace of type `typ` that berth itself runs in: the host's.
fn is_berths_namespace(path: &Path, typ: LinuxNamespaceType) -> bool {
    use std::os::unix::fs::MetadataExt;
    let kind = crate::namespaces::name(crate::namespaces::flag(typ));
    match (
        std::fs::metadata(path),
        std::fs::metadata(format!("/proc/self/ns/{kind}")),
    ) {
        (Ok(joined), Ok(own)) => joined.dev() == own.dev() && joined.ino() == own.ino(),
        _ => false,
    }
}

/// Sysctls are namespaced: berth refuses those whose namespace is the host's (not listed, or
/// joined by a path that names the host's), as runc does, since writing them would change the
/// host.
fn check_sysctl(spec: &Spec) -> Result<(), SpecError> {
    let Some(sysctl) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    let own = |typ| {
        spec.linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
            .any(|ns| {
                ns.typ() == typ
                    && ns
                        .path()
                        .as_ref()
                        .is_none_or(|path| !is_berths_namespace(path, typ))
            })
    };
    for key in sysctl.keys() {
        if key.is_empty()
            || key
                .split(['.', '/'])
                .any(|part| part.is_empty() || part == "..")
        {
            return Err(SpecError::Sysctl(key.clone(), "is not a sysctl name"));
        }
        let ipc = key.starts_with("fs.mqueue.")
            || [
                "kernel.msgmax",
                "kernel.msgmnb",
                "kernel.msgmni",
                "kernel.sem",
            ]
            .contains(&key.as_str())
            || key.starts_with("kernel.shm");
        if ipc {
            if !own(LinuxNamespaceType::Ipc) {
                return Err(SpecError::Sysctl(
                    key.clone(),
                    "would change the host's ipc namespace",
                ));
            }
        } else if key.starts_with("net.") {
            if !own(LinuxNamespaceType::Network) {
                return Err(SpecError::Sysctl(
                    key.clone(),
                    "would change the host's network namespace",
                ));
            }
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            if !own(LinuxNamespaceType::Uts) {
                return Err(SpecError::Sysctl(
                    key.clone(),
                    "would change the host's uts namespace",
                ));
            }
        } else {
            return Err(SpecError::Sysctl(key.clone(), "is not namespaced"));
        }
    }
    Ok(())
}

fn check_hooks(spec: &Spec) -> Result<(), SpecError> {
    let Some(hooks) = spec.hooks().as_ref() else {
        return Ok(());
    };
    #[allow(deprecated)]
    let lists = [
        ("prestart", hooks.prestart()),
        ("createRuntime", hooks.create_runtime()),
        ("createContainer", hooks.create_container()),
        ("startContainer", hooks.start_container()),
        ("poststart", hooks.poststart()),
        ("poststop", hooks.poststop()),
    ];
    for (name, list) in lists {
        for (i, hook) in list.iter().flatten().enumerate() {
            if !hook.path().is_absolute() {
                return Err(SpecError::HookPath(
                    name,
                    i,
                    hook.path().display().to_string(),
                ));
            }
            if let Some(seconds) = hook.timeout().filter(|&t| t <= 0) {
                return Err(SpecError::HookTimeout(name, i, seconds));
            }
        }
    }
    Ok(())
}

/// The network modes `berth spec --network` knows.
pub const NETWORK_MODES: &[&str] = &["host", "bridge", "none"];

/// A runc-style `config.json` template: a busybox-friendly shell in `rootfs`, with the default
/// mounts, capabilities and masked paths. `network` picks the mode (`none` is runc's default: a
/// namespace with only `lo`; `berth spec --rootless` asks for `host` unless told otherwise, as
/// runc's rootless template has no network namespace). `rootless` is runc's rootless template:
/// the caller's effective uid and gid mapped to root in a user namespace, no `linux.resources`,
/// the host's `/sys` bound read-only (a user namespace may mount sysfs only for a network
/// namespace it owns), and no `uid=`/`gid=` mount options, which would name unmapped ids.
pub fn template(network: &str, rootless: bool) -> serde_json::Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let mut namespaces = vec!["pid", "ipc", "uts", "mount", "cgroup"];
    if network != "host" {
        namespaces.insert(1, "network");
    }
    let mut spec = serde_json::json!({
        "ociVersion": OCI_VERSION_MAX,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            // As runc's template: no ambient set, which would need the same in inheritable.
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": namespaces.iter().map(|t| serde_json::json!({"type": t})).collect::<Vec<_>>(),
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    if network == "bridge" {
        spec["annotations"] = serde_json::json!({"io.berth.network.mode": "bridge"});
    }
    if rootless {
        let (uid, gid) = crate::rootless::ids();
        let linux = &mut spec["linux"];
        linux["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        linux["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        linux.as_object_mut().unwrap().remove("resources");
        for mount in spec["mounts"].as_array_mut().unwrap() {
            if mount["type"] == "sysfs" {
                *mount = serde_json::json!({"destination": "/sys", "type": "none", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
            } else if let Some(options) = mount["options"].as_array_mut() {
                options.retain(|o| {
                    let o = o.as_str().unwrap_or_default();
                    !o.starts_with("uid=") && !o.starts_with("gid=")
                });
            }
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn spec_from(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const MINIMAL: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
        "process":{"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"/"},
        "linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}"#;

    fn bundle_with_rootfs() -> TempDir {
        let dir = TempDir::new("spec");
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        dir
    }

    #[test]
    fn versions() {
        for good in ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.1", "1.2.0-rc.1"] {
            assert!(version_supported(good), "{good}");
        }
        for good in ["1.3.0", "1.4.0", "1.10.2-dev"] {
            assert!(version_supported(good), "{good}");
        }
        for bad in [
            "",
            "1",
            "1.0",
            "2.0.0",
            "0.9.0",
            "0.1.0-rc.1",
            "one.two.three",
        ] {
            assert!(!version_supported(bad), "{bad}");
        }
    }

    #[test]
    fn minimal_spec_passes() {
        let dir = bundle_with_rootfs();
        let rootfs = check(&spec_from(MINIMAL), dir.path()).unwrap();
        assert_eq!(rootfs, dir.path().join("rootfs"));
    }

    #[test]
    fn errors_name_the_field() {
        let dir = bundle_with_rootfs();
        let cases = [
            (
                r#""ociVersion":"1.0.2""#,
                r#""ociVersion":"3.0.0""#,
                "unsupported ociVersion \"3.0.0\"",
            ),
            (
                r#""args":["sh"]"#,
                r#""args":[]"#,
                "process.args must name a program",
            ),
            (
                r#""cwd":"/""#,
                r#""cwd":"tmp""#,
                "process.cwd \"tmp\" must be an absolute path",
            ),
            (
                r#""path":"rootfs""#,
                r#""path":"nothere""#,
                "root.path \"nothere\" does not exist",
            ),
            (
                r#"{"type":"mount"}"#,
                r#"{"type":"mount"},{"type":"pid"}"#,
                "linux.namespaces lists \"pid\" twice",
            ),
            (
                r#""linux":{"#,
                r#""mounts":[{"destination":"/m","type":"tmpfs","options":["idmap"]}],"linux":{"#,
                "mounts[0] (/m): option \"idmap\": berth does not make id-mapped mounts",
            ),
        ];
        for (from, to, expected) in cases {
            let json = MINIMAL.replace(from, to);
            let err = check(&spec_from(&json), dir.path())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn unchanged_ids_and_escaping_device_paths_are_refused() {
        let dir = bundle_with_rootfs();
        let json = MINIMAL.replace(r#""uid":0"#, r#""uid":4294967295"#);
        let err = check(&spec_from(&json), dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "process.user.uid 4294967295 is not a valid id"
        );
        let json = MINIMAL.replace(r#""gid":0"#, r#""gid":0,"additionalGids":[4294967295]"#);
        let err = check(&spec_from(&json), dir.path()).unwrap_err();
        assert!(err.to_string().contains("additionalGids"), "{err}");
        for path in ["/dev/../etc/shadow", "dev/null", "/"] {
            let json = MINIMAL.replace(
                r#""linux":{"#,
                &format!(
                    r#""linux":{{"devices":[{{"path":"{path}","type":"c","major":1,"minor":3}}],"#
                ),
            );
            let err = check(&spec_from(&json), dir.path()).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("linux.devices[0].path {path:?} must be an absolute path without '..'")
            );
        }
    }

    #[test]
    fn hostname_needs_uts() {
        let dir = bundle_with_rootfs();
        let json = MINIMAL.replace(
            r#""ociVersion":"1.0.2","#,
            r#""ociVersion":"1.0.2","hostname":"h","#,
        );
        let err = check(&spec_from(&json), dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "hostname is set but the container has no uts namespace of its own"
        );
    }

    #[test]
    fn net_sysctl_needs_a_network_namespace() {
        let dir = bundle_with_rootfs();
        let json = MINIMAL.replace(
            r#""linux":{"#,
            r#""linux":{"sysctl":{"net.ipv4.ip_forward":"1"},"#,
        );
        let err = check(&spec_from(&json), dir.path()).unwrap_err();
        assert!(err.to_string().contains("network namespace"), "{err}");
    }

    #[test]
    fn sysctl_in_a_joined_host_namespace_is_refused() {
        let dir = bundle_with_rootfs();
        let json = MINIMAL.replace(
            r#""linux":{"#,
            r#""linux":{"sysctl":{"kernel.shmmax":"4096"},"#,
        );
        let host_ipc = json.replace(
            r#"{"type":"mount"}"#,
            r#"{"type":"mount"},{"type":"ipc","path":"/proc/self/ns/ipc"}"#,
        );
        let err = check(&spec_from(&host_ipc), dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.sysctl \"kernel.shmmax\": would change the host's ipc namespace"
        );
        let new_ipc = json.replace(r#"{"type":"mount"}"#, r#"{"type":"mount"},{"type":"ipc"}"#);
        check(&spec_from(&new_ipc), dir.path()).unwrap();
    }

    #[test]
    fn user_namespace_needs_mappings() {
        let dir = bundle_with_rootfs();
        let json = MINIMAL.replace(r#"{"type":"pid"}"#, r#"{"type":"pid"},{"type":"user"}"#);
        let err = check(&spec_from(&json), dir.path()).unwrap_err();
        assert!(matches!(err, SpecError::NoIdMappings));
    }

    #[test]
    fn templates_load_and_pass_the_checks() {
        let dir = bundle_with_rootfs();
        for network in NETWORK_MODES {
            for rootless in [false, true] {
                let spec: Spec = serde_json::from_value(template(network, rootless)).unwrap();
                check(&spec, dir.path()).unwrap();
                let has_netns = namespace_types(&spec).contains(&LinuxNamespaceType::Network);
                assert_eq!(has_netns, *network != "host");
            }
        }
    }
}
