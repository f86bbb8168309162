//! The process settings the kernel keeps per process and passes on to children: I/O priority
//! (`process.ioPriority`), scheduling (`process.scheduler`), execution domain
//! (`linux.personality`) and NUMA memory policy (`linux.memoryPolicy`). Each is read and checked
//! before the clone. berth sets the first two on the new process from outside (they take a pid);
//! the process sets the other two on itself (they have no pid argument), before its seccomp
//! filter, which may forbid those calls.

use nix::errno::Errno;
use oci_spec::runtime::{
    IOPriorityClass, LinuxIOPriority, LinuxMemoryPolicy, LinuxPersonality, LinuxPersonalityDomain,
    LinuxSchedulerFlag, LinuxSchedulerPolicy, MemoryPolicyFlagType, MemoryPolicyModeType,
    Scheduler,
};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("cannot set {field}: {source}{hint}")]
    Apply {
        field: &'static str,
        source: Errno,
        hint: &'static str,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// `process.ioPriority` as ioprio_set(2) takes it: the class in the top bits, the level below.
pub fn io_priority(spec: &LinuxIOPriority) -> Result<u32, SettingsError> {
    let level = spec.priority();
    if !(0..=7).contains(&level) {
        return Err(invalid(
            "process.ioPriority.priority",
            format!("{level} is outside 0 (highest) … 7 (lowest)"),
        ));
    }
    let class = match spec.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    Ok(class << 13 | level as u32)
}

/// Sets the I/O priority of process `pid`; its children inherit it.
pub fn set_io_priority(pid: i32, value: u32) -> Result<(), SettingsError> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    // SAFETY: ioprio_set takes three integers.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, pid, value) };
    Errno::result(rc)
        .map(drop)
        .map_err(|source| SettingsError::Apply {
            field: "process.ioPriority",
            source,
            hint: match source {
                Errno::EPERM => " (the realtime class needs CAP_SYS_ADMIN or CAP_SYS_NICE)",
                _ => "",
            },
        })
}

/// The kernel's `struct sched_attr`, its first version (48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// `process.scheduler` as sched_setattr(2) takes it, checked as runc checks it.
pub fn scheduler(spec: &Scheduler) -> Result<SchedAttr, SettingsError> {
    use LinuxSchedulerPolicy as P;
    let policy = *spec.policy();
    let nice = spec.nice().unwrap_or(0);
    let priority = spec.priority().unwrap_or(0);
    if matches!(policy, P::SchedOther | P::SchedBatch) && !(-20..=19).contains(&nice) {
        return Err(invalid(
            "process.scheduler.nice",
            format!("{nice} is outside -20 … 19"),
        ));
    }
    if priority != 0 && !matches!(policy, P::SchedFifo | P::SchedRr) {
        return Err(invalid(
            "process.scheduler.priority",
            "only SCHED_FIFO and SCHED_RR take a priority",
        ));
    }
    let (runtime, deadline, period) = (
        spec.runtime().unwrap_or(0),
        spec.deadline().unwrap_or(0),
        spec.period().unwrap_or(0),
    );
    if policy != P::SchedDeadline && (runtime, deadline, period) != (0, 0, 0) {
        return Err(invalid(
            "process.scheduler",
            "runtime, deadline and period are for SCHED_DEADLINE only",
        ));
    }
    let policy_number = match policy {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => {
            return Err(invalid(
                "process.scheduler.policy",
                "SCHED_ISO is reserved: the kernel has no such scheduler",
            ))
        }
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let flags = spec
        .flags()
        .iter()
        .flatten()
        .map(|flag| match flag {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        })
        .fold(0, |all, bit| all | bit);
    Ok(SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: policy_number,
        flags,
        nice,
        priority: priority as u32,
        runtime,
        deadline,
        period,
    })
}

/// Sets the scheduling of process `pid`; its children inherit it (unless it resets on fork).
pub fn set_scheduler(pid: i32, attr: &SchedAttr) -> Result<(), SettingsError> {
    // SAFETY: sched_setattr reads one sched_attr of the size it states.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, pid, attr as *const SchedAttr, 0) };
    Errno::result(rc)
        .map(drop)
        .map_err(|source| SettingsError::Apply {
            field: "process.scheduler",
            source,
            hint: match source {
                Errno::EPERM => " (realtime policies need CAP_SYS_NICE, and SCHED_DEADLINE a cgroup without a cpuset restriction)",
                _ => "",
            },
        })
}

/// `linux.personality`: the domain's number (flags are not defined yet, so none are taken).
pub fn personality(spec: &LinuxPersonality) -> Result<libc::c_ulong, SettingsError> {
    if spec.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(invalid(
            "linux.personality.flags",
            "the runtime-spec defines no flags yet",
        ));
    }
    Ok(match spec.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    })
}

/// Sets the calling process's execution domain; it holds across execve.
pub fn set_personality(persona: libc::c_ulong) -> Result<(), SettingsError> {
    // SAFETY: personality takes one integer.
    let rc = unsafe { libc::personality(persona) };
    Errno::result(rc)
        .map(drop)
        .map_err(|source| SettingsError::Apply {
            field: "linux.personality",
            source,
            hint: "",
        })
}

/// `linux.memoryPolicy` as set_mempolicy(2) takes it: mode and flags, and the node mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPolicy {
    pub mode: libc::c_int,
    pub nodes: Vec<u64>,
}

/// The mode's number, and whether it needs nodes (`Some(true)`), takes none (`Some(false)`), or
/// takes either.
fn mode_number(mode: MemoryPolicyModeType) -> (libc::c_int, Option<bool>) {
    use MemoryPolicyModeType as M;
    match mode {
        M::MpolDefault => (0, Some(false)),
        M::MpolPreferred => (1, None),
        M::MpolBind => (2, Some(true)),
        M::MpolInterleave => (3, Some(true)),
        M::MpolLocal => (4, Some(false)),
        M::MpolPreferredMany => (5, Some(true)),
        M::MpolWeightedInterleave => (6, Some(true)),
    }
}

fn flag_number(flag: MemoryPolicyFlagType) -> libc::c_int {
    match flag {
        MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
        MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
        MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
    }
}

/// The highest node number set_mempolicy takes (the kernel's limit on its mask, in bits).
const MAX_NODE: usize = 4095;

/// Reads `linux.memoryPolicy`, checking the nodes against what its mode needs, as runc does.
pub fn memory_policy(spec: &LinuxMemoryPolicy) -> Result<MemoryPolicy, SettingsError> {
    let field = "linux.memoryPolicy.nodes";
    let (mode, needs_nodes) = mode_number(spec.mode());
    let mut nodes: Vec<u64> = Vec::new();
    let text = spec.nodes().as_deref().unwrap_or("").trim();
    let mut count = 0;
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n <= MAX_NODE)
                .ok_or_else(|| invalid(field, format!("{text:?} is not a list of node numbers")))
        };
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(part)?, number(part)?),
        };
        if first > last {
            return Err(invalid(field, format!("the range {part:?} runs backwards")));
        }
        for node in first..=last {
            if nodes.len() <= node / 64 {
                nodes.resize(node / 64 + 1, 0);
            }
            nodes[node / 64] |= 1 << (node % 64);
            count += 1;
        }
    }
    match needs_nodes {
        Some(true) if count == 0 => {
            return Err(invalid(
                field,
                format!("{} needs at least one node", spec.mode()),
            ))
        }
        Some(false) if count > 0 => {
            return Err(invalid(field, format!("{} takes no nodes", spec.mode())))
        }
        _ => {}
    }
    let flags = spec
        .flags()
        .iter()
        .flatten()
        .fold(0, |all, &f| all | flag_number(f));
    Ok(MemoryPolicy {
        mode: mode | flags,
        nodes,
    })
}

/// Sets the calling thread's memory policy; it holds across fork and execve.
pub fn set_memory_policy(policy: &MemoryPolicy) -> Result<(), SettingsError> {
    let (mask, max_node) = match policy.nodes.is_empty() {
        true => (std::ptr::null(), 0),
        // The kernel reads one bit fewer than it is told (as libnuma knows).
        false => (policy.nodes.as_ptr(), policy.nodes.len() * 64 + 1),
    };
    // SAFETY: set_mempolicy reads at most `max_node - 1` bits from `mask`, which holds them.
    let rc = unsafe { libc::syscall(libc::SYS_set_mempolicy, policy.mode, mask, max_node) };
    Errno::result(rc)
        .map(drop)
        .map_err(|source| SettingsError::Apply {
            field: "linux.memoryPolicy",
            source,
            hint: match source {
                Errno::EINVAL => {
                    " (a node this host does not have, or a mode or flag its kernel does not know)"
                }
                _ => "",
            },
        })
}

/// `process.execCPUAffinity` of a process `exec` starts: the CPUs it runs on until it is in the
/// container's cgroup, and after.
#[derive(Clone, Debug, Default)]
pub struct ExecAffinity {
    pub initial: Option<nix::sched::CpuSet>,
    pub last: Option<nix::sched::CpuSet>,
}

/// A CPU list as the spec writes it (`0-3,7`).
fn cpu_list(field: &'static str, text: &str) -> Result<nix::sched::CpuSet, SettingsError> {
    let mut set = nix::sched::CpuSet::new();
    let bad = || {
        invalid(
            field,
            format!("{text:?} is not a list of CPUs this host can have"),
        )
    };
    for part in text.split(',') {
        let number = |s: &str| s.trim().parse::<usize>().map_err(|_| bad());
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(part)?, number(part)?),
        };
        if first > last {
            return Err(bad());
        }
        for cpu in first..=last {
            set.set(cpu).map_err(|_| bad())?;
        }
    }
    Ok(set)
}

impl ExecAffinity {
    pub fn from_spec(
        spec: Option<&oci_spec::runtime::ExecCPUAffinity>,
    ) -> Result<Self, SettingsError> {
        let Some(spec) = spec else {
            return Ok(ExecAffinity::default());
        };
        Ok(ExecAffinity {
            initial: spec
                .initial()
                .as_deref()
                .map(|t| cpu_list("process.execCPUAffinity.initial", t))
                .transpose()?,
            last: spec
                .cpu_affinity_final()
                .as_deref()
                .map(|t| cpu_list("process.execCPUAffinity.final", t))
                .transpose()?,
        })
    }
}

/// Lets berth itself run on every CPU until the guard is dropped, so the process it clones
/// meanwhile does not inherit the CPUs its caller pinned berth to (`taskset`, a daemon's
/// CPUAffinity): joining its cgroup's cpuset then gives it that cpuset's CPUs, as under runc.
/// The kernel keeps a pinning asked for by the user across a cpuset change (since 6.2).
pub struct AllCpus(Option<nix::sched::CpuSet>);

impl AllCpus {
    pub fn enter() -> AllCpus {
        let own = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok();
        let mut all = nix::sched::CpuSet::new();
        for cpu in 0..nix::sched::CpuSet::count() {
            let _ = all.set(cpu);
        }
        // Kept as it was when it cannot change (the kernel keeps what the cgroup allows).
        match nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &all) {
            Ok(()) => AllCpus(own),
            Err(_) => AllCpus(None),
        }
    }
}

impl Drop for AllCpus {
    fn drop(&mut self) {
        if let Some(own) = &self.0 {
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), own);
        }
    }
}

/// Sets the CPUs process `pid` (0: the caller) may run on.
pub fn set_affinity(pid: i32, cpus: &nix::sched::CpuSet) -> Result<(), SettingsError> {
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid), cpus).map_err(|source| {
        SettingsError::Apply {
            field: "process.execCPUAffinity",
            source,
            hint: match source {
                Errno::EINVAL => " (none of those CPUs is in the container's cpuset)",
                _ => "",
            },
        }
    })
}

/// The modes and flags berth knows, by their config.json names, for `features`.
pub fn memory_policy_names() -> (Vec<&'static str>, Vec<&'static str>) {
    use crate::spec::fields::variant_names;
    (
        variant_names::<MemoryPolicyModeType>(),
        variant_names::<MemoryPolicyFlagType>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn io_priority_packs_class_and_level() {
        let idle = from::<LinuxIOPriority>(r#"{"class":"IOPRIO_CLASS_IDLE","priority":7}"#);
        assert_eq!(io_priority(&idle).unwrap(), 3 << 13 | 7);
        let bad = from::<LinuxIOPriority>(r#"{"class":"IOPRIO_CLASS_BE","priority":8}"#);
        assert_eq!(
            io_priority(&bad).unwrap_err().to_string(),
            "process.ioPriority.priority: 8 is outside 0 (highest) … 7 (lowest)"
        );
    }

    #[test]
    fn scheduler_is_checked_like_runc() {
        let batch = scheduler(&from(r#"{"policy":"SCHED_BATCH","nice":5}"#)).unwrap();
        assert_eq!((batch.policy, batch.nice, batch.size), (3, 5, 48));
        let fifo = scheduler(&from(
            r#"{"policy":"SCHED_FIFO","priority":10,"flags":["SCHED_FLAG_RECLAIM"]}"#,
        ))
        .unwrap();
        assert_eq!((fifo.policy, fifo.priority, fifo.flags), (1, 10, 2));
        for (json, error) in [
            (
                r#"{"policy":"SCHED_OTHER","nice":30}"#,
                "nice: 30 is outside",
            ),
            (
                r#"{"policy":"SCHED_BATCH","priority":1}"#,
                "only SCHED_FIFO",
            ),
            (
                r#"{"policy":"SCHED_RR","runtime":1}"#,
                "for SCHED_DEADLINE only",
            ),
            (r#"{"policy":"SCHED_ISO"}"#, "SCHED_ISO is reserved"),
        ] {
            let err = scheduler(&from(json)).unwrap_err().to_string();
            assert!(err.contains(error), "{json}: {err}");
        }
    }

    #[test]
    fn cpu_lists_read_like_the_spec_writes_them() {
        let set = cpu_list("f", "0-2,5").unwrap();
        let cpus: Vec<usize> = (0..8).filter(|&c| set.is_set(c).unwrap()).collect();
        assert_eq!(cpus, [0, 1, 2, 5]);
        for bad in ["", "a", "3-1", "1,,2", "99999"] {
            let err = cpu_list("process.execCPUAffinity.final", bad).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("process.execCPUAffinity.final: "),
                "{err}"
            );
        }
    }

    #[test]
    fn personality_domains() {
        assert_eq!(personality(&from(r#"{"domain":"LINUX32"}"#)).unwrap(), 8);
        assert_eq!(personality(&from(r#"{"domain":"LINUX"}"#)).unwrap(), 0);
        let err = personality(&from(r#"{"domain":"LINUX","flags":["x"]}"#)).unwrap_err();
        assert!(
            err.to_string().starts_with("linux.personality.flags"),
            "{err}"
        );
    }

    #[test]
    fn memory_policy_nodes_and_modes() {
        let bind = memory_policy(&from(
            r#"{"mode":"MPOL_BIND","nodes":"0-2,65","flags":["MPOL_F_STATIC_NODES"]}"#,
        ))
        .unwrap();
        assert_eq!(bind.mode, 2 | 1 << 15);
        assert_eq!(bind.nodes, [0b111, 0b10]);
        let local = memory_policy(&from(r#"{"mode":"MPOL_LOCAL"}"#)).unwrap();
        assert_eq!((local.mode, local.nodes.len()), (4, 0));
        for (json, error) in [
            (
                r#"{"mode":"MPOL_BIND"}"#,
                "MPOL_BIND needs at least one node",
            ),
            (
                r#"{"mode":"MPOL_DEFAULT","nodes":"0"}"#,
                "MPOL_DEFAULT takes no nodes",
            ),
            (r#"{"mode":"MPOL_BIND","nodes":"3-1"}"#, "runs backwards"),
            (
                r#"{"mode":"MPOL_BIND","nodes":"a"}"#,
                "not a list of node numbers",
            ),
            (
                r#"{"mode":"MPOL_BIND","nodes":"5000"}"#,
                "not a list of node numbers",
            ),
        ] {
            let err = memory_policy(&from(json)).unwrap_err().to_string();
            assert!(err.contains(error), "{json}: {err}");
        }
    }
}
