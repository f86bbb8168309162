//! Cgroups when berth runs rootless (`--rootless`, which by default means berth is not root):
//! runc's rules. The container's cgroup is made in each hierarchy where the user may make it (on
//! cgroup v2, below a folder delegated to the user: systemd's `user@UID.service`, or one that
//! root made and gave the user); elsewhere the container has no cgroup of its own and its
//! processes stay in the cgroup berth was started in. On a host whose v1 controllers belong to
//! root (these machines), that is every hierarchy.
//!
//! What this leaves out is never dropped silently:
//! - a `cgroupsPath` in config.json names a cgroup the caller wants: if it cannot be made,
//!   `create` fails (runc does the same);
//! - a limit in `linux.resources` whose controller is in a hierarchy left out fails `create`
//!   naming the field ([`check_resources`]);
//! - `pause`, `resume`, `update`, `events --stats` need the cgroup and say so ([`Outside`]);
//! - device rules are not applied in a user namespace: its processes cannot make device nodes
//!   (the kernel refuses mknod outside the initial user namespace), so they reach only the nodes
//!   berth binds in, which the rules always allow, and others' nodes with the user's own
//!   permissions; an ordinary user can load no device program on cgroup v2 nor write a v1
//!   `devices.deny`.

use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxResources;

use super::{CgroupConfig, CgroupError, DeviceRule, Layout, LeftOut, Manager, Stats};

/// Makes the container's cgroup in each hierarchy of `config` where berth may, and records the
/// others in `config.left_out`. `explicit` says config.json named the cgroup (`cgroupsPath`):
/// then a cgroup berth may not make is an error. `who` names the user for that error.
pub fn create(config: &mut CgroupConfig, explicit: bool, who: &str) -> Result<(), CgroupError> {
    let mut kept = Vec::new();
    for (hierarchy, dir) in std::mem::take(&mut config.dirs) {
        let one = CgroupConfig {
            layout: config.layout,
            dirs: vec![(hierarchy.clone(), dir.clone())],
            systemd: None,
            left_out: Vec::new(),
        };
        match super::manager(&one).create() {
            Ok(()) => kept.push((hierarchy, dir)),
            Err(CgroupError::Create { path, source }) if denied(&source) => {
                if explicit {
                    config.dirs = kept;
                    return Err(CgroupError::RootlessDenied {
                        path,
                        source,
                        who: who.to_string(),
                    });
                }
                let current = super::paths::own_dir(&hierarchy)?;
                config.left_out.push(LeftOut {
                    hierarchy,
                    current,
                    reason: format!("cannot create {}: {source}", path.display()),
                });
            }
            Err(err) => {
                config.dirs = kept;
                return Err(err);
            }
        }
    }
    config.dirs = kept;
    Ok(())
}

/// Whether a failed mkdir means the caller may not make a cgroup there.
fn denied(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS)
    )
}

/// Refuses a limit of `resources` that needs a hierarchy where the container has no cgroup of
/// its own. Device rules are left to the caller (see the module's notes).
pub fn check_resources(
    config: &CgroupConfig,
    resources: &LinuxResources,
) -> Result<(), CgroupError> {
    let Some(reason) = config.absence() else {
        return Ok(());
    };
    for (field, controller) in limits_set(resources) {
        let unified = config.layout == Some(Layout::Unified);
        let have = config.dirs.iter().any(|(h, _)| match h.v2 {
            // on a hybrid host, berth puts in cgroup2 what the v1 side lacks
            true => unified || config.layout == Some(Layout::Hybrid) || controller == "unified",
            false => h.controllers.iter().any(|c| c == controller),
        });
        if !have {
            let reason = config
                .left_out
                .iter()
                .find(|l| l.hierarchy.v2 || l.hierarchy.controllers.iter().any(|c| c == controller))
                .map(|l| l.reason.clone())
                .unwrap_or_else(|| reason.clone());
            return Err(CgroupError::NotDelegated {
                field: field.to_string(),
                reason,
            });
        }
    }
    Ok(())
}

/// Each limit `resources` sets (devices aside), with the v1 controller it needs (`unified` for
/// cgroup2 files).
fn limits_set(resources: &LinuxResources) -> Vec<(String, &'static str)> {
    let value = serde_json::to_value(resources).unwrap_or_default();
    let Some(object) = value.as_object() else {
        return Vec::new();
    };
    let set = |v: &serde_json::Value| match v {
        serde_json::Value::Null => false,
        serde_json::Value::Object(o) => o.values().any(|v| !v.is_null()),
        serde_json::Value::Array(a) => !a.is_empty(),
        _ => true,
    };
    let mut limits = Vec::new();
    for (key, v) in object.iter().filter(|(_, v)| set(v)) {
        let field = |sub: &str| format!("linux.resources.{key}{sub}");
        match key.as_str() {
            "devices" => {}
            "cpu" => {
                for (sub, v) in v.as_object().into_iter().flatten() {
                    if !v.is_null() {
                        let controller = match sub.as_str() {
                            "cpus" | "mems" => "cpuset",
                            _ => "cpu",
                        };
                        limits.push((field(&format!(".{sub}")), controller));
                    }
                }
            }
            "memory" => limits.push((field(""), "memory")),
            "pids" => limits.push((field(""), "pids")),
            "blockIO" => limits.push((field(""), "blkio")),
            "hugepageLimits" => limits.push((field(""), "hugetlb")),
            "network" => limits.push((field(""), "net_cls")),
            "rdma" => limits.push((field(""), "rdma")),
            "unified" => limits.push((field(""), "unified")),
            _ => limits.push((field(""), "unified")),
        }
    }
    limits
}

/// The manager of a container with no cgroup of its own anywhere: there is nothing to make or
/// remove, and what needs a cgroup says why there is none.
pub struct Outside {
    reason: String,
}

impl Outside {
    pub fn new(config: &CgroupConfig) -> Outside {
        Outside {
            reason: config
                .absence()
                .unwrap_or_else(|| "it was made without one".to_string()),
        }
    }

    fn absent(&self, action: &'static str) -> CgroupError {
        CgroupError::Absent {
            action,
            reason: self.reason.clone(),
        }
    }
}

impl Manager for Outside {
    fn create(&self) -> Result<(), CgroupError> {
        Ok(())
    }
    /// `check_resources` refused every limit before.
    fn apply(&self, _: &LinuxResources, _: &[DeviceRule]) -> Result<(), CgroupError> {
        Ok(())
    }
    fn update(&self, _: &LinuxResources) -> Result<(), CgroupError> {
        Err(self.absent("update"))
    }
    /// The process stays where it was born, as the container's others did.
    fn add_process(&self, _: i32) -> Result<(), CgroupError> {
        Ok(())
    }
    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        Err(self.absent("listing its processes by cgroup"))
    }
    fn freeze(&self) -> Result<(), CgroupError> {
        Err(self.absent("pause"))
    }
    fn thaw(&self) -> Result<(), CgroupError> {
        Err(self.absent("resume"))
    }
    fn is_frozen(&self) -> bool {
        false
    }
    fn stats(&self) -> Result<Stats, CgroupError> {
        Err(self.absent("statistics"))
    }
    fn oom_kills(&self) -> u64 {
        0
    }
    fn kill_all(&self, _: Signal) -> Result<(), CgroupError> {
        Err(self.absent("signalling by cgroup"))
    }
    fn remove(&self) -> Result<(), CgroupError> {
        Ok(())
    }
}

/// What an ordinary user may do with cgroups here, in words, for `features`: per hierarchy,
/// whether the folder a container without `cgroupsPath` goes into (the parent of berth's own
/// cgroup) is the user's to make cgroups in.
pub fn report() -> String {
    let hierarchies = match super::discover() {
        Ok((_, hierarchies)) => hierarchies,
        Err(err) => return format!("none: {err}"),
    };
    let (mut delegated, mut not) = (Vec::new(), Vec::new());
    for hierarchy in &hierarchies {
        let Ok(own) = super::paths::own_dir(hierarchy) else {
            continue;
        };
        let parent = match own.parent() {
            Some(p) if own != hierarchy.mount_point => p.to_path_buf(),
            _ => own.clone(),
        };
        let writable = nix::unistd::access(
            &parent,
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .is_ok();
        match (writable, hierarchy.v2) {
            (true, true) => {
                let controllers =
                    super::read_file(&parent.join("cgroup.controllers")).unwrap_or_default();
                delegated.push(format!(
                    "{} (cgroup v2, controllers: {})",
                    parent.display(),
                    match controllers.as_str() {
                        "" => "none",
                        list => list,
                    }
                ));
            }
            (true, false) => delegated.push(format!("{} (cgroup v1)", parent.display())),
            (false, _) => not.push(parent.display().to_string()),
        }
    }
    let who = crate::rootless::describe_user(crate::rootless::ids().0);
    match (delegated.is_empty(), not.is_empty()) {
        (true, _) => format!(
            "none: no cgroup folder here is delegated to {who} ({} are not the user's), so a \
             container gets no cgroup of its own: limits in linux.resources are refused, pause, \
             resume, update and stats are unavailable, ps and kill --all go by its pid namespace",
            not.join(", ")
        ),
        (false, true) => format!(
            "delegated to {who}: containers get a cgroup of their own below {}; device rules are \
             not applied in a user namespace",
            delegated.join(", ")
        ),
        (false, false) => format!(
            "partly: delegated to {who} below {}; not in {}, where a container gets no cgroup of \
             its own and limits that need one are refused",
            delegated.join(", "),
            not.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::Hierarchy;

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn hybrid_without_memory() -> CgroupConfig {
        let v1 = |c: &str| Hierarchy {
            mount_point: format!("/sys/fs/cgroup/{c}").into(),
            controllers: vec![c.to_string()],
            v2: false,
        };
        CgroupConfig {
            layout: Some(Layout::Hybrid),
            dirs: vec![(v1("pids"), "/sys/fs/cgroup/pids/web".into())],
            systemd: None,
            left_out: vec![LeftOut {
                hierarchy: v1("memory"),
                current: "/sys/fs/cgroup/memory".into(),
                reason: "cannot create /sys/fs/cgroup/memory/web: Permission denied".into(),
            }],
        }
    }

    #[test]
    fn limits_name_their_fields_and_controllers() {
        let set = limits_set(&resources(
            r#"{"memory":{"limit":1000},"cpu":{"shares":2,"cpus":"0"},"pids":{"limit":3},
                "devices":[{"allow":false,"access":"rwm"}],"unified":{"a.b":"1"}}"#,
        ));
        let mut names: Vec<String> = set.iter().map(|(f, c)| format!("{f}={c}")).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "linux.resources.cpu.cpus=cpuset",
                "linux.resources.cpu.shares=cpu",
                "linux.resources.memory=memory",
                "linux.resources.pids=pids",
                "linux.resources.unified=unified",
            ]
        );
        assert!(limits_set(&resources(r#"{"memory":{},"devices":[]}"#)).is_empty());
    }

    #[test]
    fn a_limit_without_its_cgroup_is_refused_by_name() {
        let config = hybrid_without_memory();
        check_resources(&config, &resources(r#"{"pids":{"limit":3}}"#)).unwrap();
        let err = check_resources(&config, &resources(r#"{"memory":{"limit":1000}}"#))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "linux.resources.memory cannot be applied: the container has no cgroup of its own \
             for it, as berth runs rootless (cannot create /sys/fs/cgroup/memory/web: Permission \
             denied); run berth as root, or on cgroup v2 from a cgroup delegated to the user"
        );
        // With every hierarchy at hand, nothing is refused here.
        let whole = CgroupConfig {
            left_out: Vec::new(),
            ..config
        };
        check_resources(&whole, &resources(r#"{"memory":{"limit":1000}}"#)).unwrap();
    }

    #[test]
    fn without_a_cgroup_what_needs_one_says_why() {
        let config = CgroupConfig {
            dirs: Vec::new(),
            ..hybrid_without_memory()
        };
        let manager = crate::cgroups::manager(&config);
        assert_eq!(
            manager.freeze().unwrap_err().to_string(),
            "the container has no cgroup of its own, which pause needs (cannot create \
             /sys/fs/cgroup/memory/web: Permission denied)"
        );
        assert!(!manager.is_frozen());
        manager.create().unwrap();
        manager.remove().unwrap();
    }
}
