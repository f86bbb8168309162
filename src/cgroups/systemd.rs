//! `--systemd-cgroup`: the container's cgroup is a transient systemd scope, made over D-Bus with
//! `Delegate=yes` as runc and crun do, so systemd knows about it and leaves its inside to berth.
//!
//! `cgroupsPath` is then `slice:prefix:name`: the scope `prefix-name.scope` in the slice `slice`
//! (`system.slice` when empty), e.g. `system.slice:docker:ID` → `/system.slice/docker-ID.scope`.
//! Without a `cgroupsPath` it is `system.slice:berth:ID`. A scope needs a process, so it is made
//! once the init exists (which waits for `start` and runs nothing of the container's before);
//! the limits go into the scope's properties, so systemd applies them as the process moves in,
//! and into the cgroup files, for what systemd has no property for.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use super::dbus::{Connection, DbusError, Value};
use super::devices::DeviceRule;
use super::stats::Stats;
use super::{wait_until, CgroupConfig, CgroupError, Manager};

const PRIVATE_SOCKET: &str = "/run/systemd/private";
const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";
/// Present when systemd is the init (sd_booted(3)).
const BOOTED_MARKER: &str = "/run/systemd/system";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER_INTERFACE: &str = "org.freedesktop.systemd1.Manager";
const DESTINATION: &str = "org.freedesktop.systemd1";

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error(
        "--systemd-cgroup needs systemd as the init, and this host does not run it ({BOOTED_MARKER} is missing): leave out --systemd-cgroup to use cgroupfs"
    )]
    NotRunning,
    #[error("cgroupsPath {path:?} with --systemd-cgroup: {reason}")]
    BadPath { path: String, reason: String },
    #[error("cannot make the systemd scope {unit}: {source}")]
    Start { unit: String, source: DbusError },
    #[error("cannot stop the systemd scope {unit}: {source}")]
    Stop { unit: String, source: DbusError },
    #[error("cannot change the properties of the systemd scope {unit}: {source}")]
    Update { unit: String, source: DbusError },
    #[error("systemd did not move process {pid} into the scope {unit} within {waited:?}")]
    NotMoved {
        unit: String,
        pid: i32,
        waited: Duration,
    },
}

/// The scope a container lives in, kept in its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// The `cgroupsPath` as given (or made up from the id).
    pub spec: String,
    pub slice: String,
    pub unit: String,
}

impl Scope {
    /// Parses `slice:prefix:name` (or makes `system.slice:berth:ID` when there is no path).
    pub fn parse(cgroups_path: Option<&Path>, id: &str) -> Result<Scope, SystemdError> {
        let spec = match cgroups_path {
            Some(p) if !p.as_os_str().is_empty() => p.to_string_lossy().into_owned(),
            _ => format!("system.slice:berth:{id}"),
        };
        let bad = |reason: &str| SystemdError::BadPath {
            path: spec.clone(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(bad(
                "expected slice:prefix:name, e.g. system.slice:docker:ID",
            ));
        };
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        check_slice(slice).map_err(|r| bad(&r))?;
        if name.is_empty() {
            return Err(bad("the name part is empty"));
        }
        if name.ends_with(".slice") {
            return Err(bad(
                "the name must make a scope; a slice as the container's unit is not supported",
            ));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.@".contains(c);
        if !prefix.chars().chain(name.chars()).all(allowed) {
            return Err(bad(
                "prefix and name may hold only letters, digits and -_.@",
            ));
        }
        let unit = match (prefix, name.ends_with(".scope")) {
            ("", true) => name.to_string(),
            ("", false) => format!("{name}.scope"),
            (prefix, true) => format!("{prefix}-{name}"),
            (prefix, false) => format!("{prefix}-{name}.scope"),
        };
        Ok(Scope {
            spec: spec.clone(),
            slice: slice.to_string(),
            unit,
        })
    }

    /// The scope's cgroup path from the hierarchy's root: each dash in a slice name is a level,
    /// so `a-b.slice` is `/a.slice/a-b.slice`.
    pub fn cgroup_path(&self) -> PathBuf {
        let mut path = PathBuf::from("/");
        if self.slice != "-.slice" {
            let stem = self.slice.trim_end_matches(".slice");
            let mut prefix = String::new();
            for part in stem.split('-') {
                if !prefix.is_empty() {
                    prefix.push('-');
                }
                prefix.push_str(part);
                path.push(format!("{prefix}.slice"));
            }
        }
        path.join(&self.unit)
    }
}

fn check_slice(slice: &str) -> Result<(), String> {
    if slice == "-.slice" {
        return Ok(());
    }
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(format!("the slice {slice:?} does not end in .slice"));
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.@".contains(c);
    if stem.is_empty()
        || stem.starts_with('-')
        || stem.ends_with('-')
        || stem.contains("--")
        || !stem.chars().all(allowed)
    {
        return Err(format!("{slice:?} is not a valid slice name"));
    }
    Ok(())
}

/// Fails clearly when systemd is not the init, before anything is made.
pub fn ensure_running() -> Result<(), SystemdError> {
    if Path::new(BOOTED_MARKER).is_dir() {
        Ok(())
    } else {
        Err(SystemdError::NotRunning)
    }
}

fn connect() -> Result<Connection, DbusError> {
    // The private socket needs no bus daemon; the system bus is the fallback.
    match Connection::open(Path::new(PRIVATE_SOCKET), false) {
        Ok(conn) => Ok(conn),
        Err(private) => Connection::open(Path::new(SYSTEM_BUS), true).map_err(|_| private),
    }
}

/// The manager of a container in a systemd scope: the scope is made when the init joins, with
/// the limits as properties; the rest is cgroupfs work on the scope's directories (`inner`).
pub struct SystemdManager {
    scope: Scope,
    config: CgroupConfig,
    inner: Box<dyn Manager>,
    /// `apply` comes before the scope exists: what to apply once it does.
    pending: RefCell<Option<(LinuxResources, Vec<DeviceRule>)>>,
}

impl SystemdManager {
    pub fn new(scope: Scope, config: &CgroupConfig, inner: Box<dyn Manager>) -> Self {
        SystemdManager {
            scope,
            config: config.clone(),
            inner,
            pending: RefCell::new(None),
        }
    }

    /// The scope's directory in a hierarchy systemd manages itself.
    fn systemd_dir(&self) -> Option<&Path> {
        self.config
            .unified_dir()
            .or_else(|| self.config.v1_dir("name=systemd"))
    }

    fn scope_exists(&self) -> bool {
        self.systemd_dir().is_some_and(Path::is_dir)
    }

    fn start_scope(&self, pid: i32) -> Result<(), SystemdError> {
        let mut properties = vec![
            (
                "Description".to_string(),
                Value::Str(format!("berth container {}", self.scope.unit)),
            ),
            ("Slice".to_string(), Value::Str(self.scope.slice.clone())),
            ("Delegate".to_string(), Value::Bool(true)),
            ("DefaultDependencies".to_string(), Value::Bool(false)),
            ("PIDs".to_string(), Value::U32s(vec![pid as u32])),
        ];
        if let Some((resources, _)) = self.pending.borrow().as_ref() {
            properties.extend(resource_properties(resources));
        }
        let start = |source| SystemdError::Start {
            unit: self.scope.unit.clone(),
            source,
        };
        let mut conn = connect().map_err(start)?;
        conn.call(
            Some(DESTINATION),
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "StartTransientUnit",
            &[
                Value::Str(self.scope.unit.clone()),
                Value::Str("fail".into()),
                Value::Properties(properties),
                Value::NoAuxUnits,
            ],
        )
        .map_err(start)?;
        // The job runs asynchronously: wait until the process is in the scope.
        let wanted = format!("/{}", self.scope.unit);
        let waited = Duration::from_secs(10);
        let moved = wait_until(waited, || {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|text| text.lines().any(|l| l.ends_with(&wanted)))
        });
        if !moved {
            return Err(SystemdError::NotMoved {
                unit: self.scope.unit.clone(),
                pid,
                waited,
            });
        }
        Ok(())
    }

    fn stop_scope(&self) -> Result<(), SystemdError> {
        let stop = |source| SystemdError::Stop {
            unit: self.scope.unit.clone(),
            source,
        };
        let mut conn = connect().map_err(stop)?;
        match conn.call(
            Some(DESTINATION),
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "StopUnit",
            &[
                Value::Str(self.scope.unit.clone()),
                Value::Str("replace".into()),
            ],
        ) {
            Ok(_) => {}
            // An empty scope is stopped and collected by systemd on its own.
            Err(DbusError::Remote { name, .. }) if name.ends_with(".NoSuchUnit") => {}
            Err(err) => return Err(stop(err)),
        }
        wait_until(Duration::from_secs(10), || !self.scope_exists());
        Ok(())
    }
}

/// The limits systemd has properties for, so that it keeps them (a `daemon-reload` rewrites
/// the cgroup files from the unit's properties).
fn resource_properties(resources: &LinuxResources) -> Vec<(String, Value)> {
    let mut properties = Vec::new();
    let mut add = |name: &str, value: u64| properties.push((name.to_string(), Value::U64(value)));
    if let Some(limit) = resources
        .memory()
        .and_then(|m| m.limit())
        .filter(|&l| l > 0)
    {
        add("MemoryMax", limit as u64);
    }
    // 0 as 1, as in pids.max (systemd takes no 0).
    let pids = resources
        .pids()
        .map(|p| if p.limit() == 0 { 1 } else { p.limit() });
    if let Some(limit) = pids.filter(|&l| l > 0) {
        add("TasksMax", limit as u64);
    }
    if let Some(cpu) = resources.cpu() {
        if let Some(shares) = cpu.shares().filter(|&s| s > 0) {
            add("CPUWeight", super::cpu_weight_from_shares(shares));
        }
        if let Some(quota) = cpu.quota().filter(|&q| q > 0) {
            let period = cpu.period().filter(|&p| p > 0).unwrap_or(100_000);
            add("CPUQuotaPerSecUSec", quota as u64 * 1_000_000 / period);
        }
    }
    properties
}

impl Manager for SystemdManager {
    fn create(&self) -> Result<(), CgroupError> {
        // The scope is made in `add_process`, once there is a process to put in it.
        Ok(())
    }

    fn apply(&self, resources: &LinuxResources, devices: &[DeviceRule]) -> Result<(), CgroupError> {
        if self.scope_exists() {
            return self.inner.apply(resources, devices);
        }
        *self.pending.borrow_mut() = Some((resources.clone(), devices.to_vec()));
        Ok(())
    }

    fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        // The scope's properties too, or systemd would put the old limits back on a reload.
        let properties = resource_properties(resources);
        if !properties.is_empty() {
            let update = |source| SystemdError::Update {
                unit: self.scope.unit.clone(),
                source,
            };
            let mut conn = connect().map_err(update)?;
            conn.call(
                Some(DESTINATION),
                MANAGER_PATH,
                MANAGER_INTERFACE,
                "SetUnitProperties",
                &[
                    Value::Str(self.scope.unit.clone()),
                    Value::Bool(true),
                    Value::Properties(properties),
                ],
            )
            .map_err(update)?;
        }
        self.inner.update(resources)
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        if !self.scope_exists() {
            self.start_scope(pid)?;
        }
        // systemd makes the scope in the hierarchies it manages; berth joins the others.
        self.inner.create()?;
        self.inner.add_process(pid)?;
        if let Some((resources, devices)) = self.pending.borrow_mut().take() {
            self.inner.apply(&resources, &devices)?;
        }
        Ok(())
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.inner.pids()
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.inner.freeze()
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.inner.thaw()
    }

    fn is_frozen(&self) -> bool {
        self.inner.is_frozen()
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        self.inner.stats()
    }

    fn oom_kills(&self) -> u64 {
        self.inner.oom_kills()
    }

    fn kill_all(&self, signal: Signal) -> Result<(), CgroupError> {
        self.inner.kill_all(signal)
    }

    fn remove(&self) -> Result<(), CgroupError> {
        if self.scope_exists() {
            self.stop_scope()?;
        }
        self.inner.remove()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Result<Scope, SystemdError> {
        Scope::parse(Some(Path::new(path)), "web")
    }

    #[test]
    fn slice_prefix_name() {
        let scope = parse("system.slice:docker:abc").unwrap();
        assert_eq!(scope.unit, "docker-abc.scope");
        assert_eq!(
            scope.cgroup_path(),
            PathBuf::from("/system.slice/docker-abc.scope")
        );
        let scope = parse("kubepods-besteffort-pod12.slice:cri-containerd:c1").unwrap();
        assert_eq!(
            scope.cgroup_path(),
            PathBuf::from(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-c1.scope"
            )
        );
        let scope = parse(":berth:x").unwrap();
        assert_eq!(scope.slice, "system.slice");
        assert_eq!(scope.unit, "berth-x.scope");
        let scope = parse("-.slice::x.scope").unwrap();
        assert_eq!(scope.cgroup_path(), PathBuf::from("/x.scope"));
        let scope = Scope::parse(None, "web").unwrap();
        assert_eq!(
            scope.cgroup_path(),
            PathBuf::from("/system.slice/berth-web.scope")
        );
    }

    #[test]
    fn bad_paths_say_what_is_wrong() {
        let err = parse("/docker/abc").unwrap_err().to_string();
        assert_eq!(
            err,
            "cgroupsPath \"/docker/abc\" with --systemd-cgroup: expected slice:prefix:name, e.g. system.slice:docker:ID"
        );
        assert!(parse("system:docker:abc")
            .unwrap_err()
            .to_string()
            .contains("does not end in .slice"));
        assert!(parse("a--b.slice:p:n").is_err());
        assert!(parse("system.slice:p:").is_err());
        assert!(parse("system.slice:p:n.slice").is_err());
        assert!(parse("system.slice:p/../x:n").is_err());
    }

    #[test]
    fn limits_become_properties() {
        let resources: LinuxResources = serde_json::from_str(
            r#"{"memory": {"limit": 33554432}, "pids": {"limit": 10},
                "cpu": {"shares": 1024, "quota": 50000, "period": 100000}}"#,
        )
        .unwrap();
        let props = resource_properties(&resources);
        assert!(props.contains(&("MemoryMax".into(), Value::U64(33_554_432))));
        assert!(props.contains(&("TasksMax".into(), Value::U64(10))));
        assert!(props.contains(&("CPUWeight".into(), Value::U64(39))));
        assert!(props.contains(&("CPUQuotaPerSecUSec".into(), Value::U64(500_000))));
    }
}
