//! The arithmetic between the spec's `linux.resources` (in v1 terms) and cgroup v2's files, and
//! the checks that hold on every layout.

use oci_spec::runtime::{LinuxMemory, LinuxResources};

use super::CgroupError;

/// cpu.shares (2 … 262144, default 1024) as cpu.weight (1 … 10000, default 100), the mapping
/// runc and crun use, so containerd's and Kubernetes's shares mean the same on both versions.
pub fn cpu_weight_from_shares(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// blkio.weight (10 … 1000) as io.weight (1 … 10000).
pub fn io_weight_from_blkio(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + ((weight - 10) * 9999) / 990
}

/// A limit in the spec's terms (-1 = unlimited) as a v2 file value.
pub fn v2_limit(value: i64) -> String {
    if value < 0 {
        "max".to_string()
    } else {
        value.to_string()
    }
}

/// `pids.max` for the spec's `linux.resources.pids.limit`: -1 (or below) is no limit, and 0 is
/// written as 1, as runc does (systemd refuses a TasksMax of 0): with the init in the cgroup
/// both let no process fork, and a cgroup2 `pids.max` of 0 would refuse even the init's clone
/// into it.
pub fn pids_max(limit: i64) -> String {
    match limit {
        0 => "1".to_string(),
        limit => v2_limit(limit),
    }
}

/// The spec's `pids` as runtime-spec 1.3 reads it: `limit` is optional and 0 is a limit; before
/// 1.3 it was required and runtimes read 0 as "no limit given". oci-spec reads both as 0, so
/// the raw `pids` object (`None` without one) decides.
pub fn normalize_pids(
    resources: &mut LinuxResources,
    raw: Option<&serde_json::Value>,
    oci_version: &str,
) {
    let Some(pids) = resources.pids() else {
        return;
    };
    let limit_given = raw
        .and_then(|p| p.get("limit"))
        .is_some_and(|l| !l.is_null());
    let unset = match crate::spec::version_at_least(oci_version, 3) {
        true => !limit_given,
        false => pids.limit() == 0,
    };
    if unset {
        resources.set_pids(None);
    }
}

/// `memory.swap.max` for the spec's `swap` (memory + swap, as on v1) and `limit`: `None` leaves
/// the file alone.
pub fn swap_max_v2(swap: Option<i64>, limit: Option<i64>) -> Result<Option<String>, CgroupError> {
    let invalid = |reason: &str| CgroupError::Invalid {
        field: "linux.resources.memory.swap".into(),
        reason: reason.into(),
    };
    match (swap, limit) {
        (None | Some(0), Some(-1)) => Ok(Some("max".into())),
        (None | Some(0), _) => Ok(None),
        (Some(-1), _) => Ok(Some("max".into())),
        (Some(swap), _) if swap < 0 => Err(invalid("must be -1 (unlimited) or a number of bytes")),
        (Some(_), None | Some(0) | Some(-1)) => Err(invalid(
            "a swap limit needs a memory limit (swap counts memory plus swap)",
        )),
        (Some(swap), Some(limit)) if swap < limit => Err(invalid(&format!(
            "{swap} is below the memory limit {limit} (swap counts memory plus swap)"
        ))),
        (Some(swap), Some(limit)) => Ok(Some((swap - limit).to_string())),
    }
}

/// Checks that hold on every layout, so bad values are refused with the field named before a
/// file is written.
pub fn check(resources: &LinuxResources) -> Result<(), CgroupError> {
    let invalid = |field: &str, reason: String| CgroupError::Invalid {
        field: format!("linux.resources.{field}"),
        reason,
    };
    if let Some(memory) = resources.memory() {
        check_memory(memory)?;
        if memory.use_hierarchy() == Some(false) {
            return Err(invalid(
                "memory.useHierarchy",
                "false is not possible: the kernel always accounts memory hierarchically".into(),
            ));
        }
    }
    if let Some(cpu) = resources.cpu() {
        if let Some(quota) = cpu.quota() {
            if quota != -1 && quota != 0 && quota < 1000 {
                return Err(invalid(
                    "cpu.quota",
                    format!("{quota} is below the kernel's minimum of 1000 microseconds"),
                ));
            }
        }
        if let Some(period) = cpu.period() {
            if period != 0 && !(1000..=1_000_000).contains(&period) {
                return Err(invalid(
                    "cpu.period",
                    format!("{period} is outside 1000 … 1000000 microseconds"),
                ));
            }
        }
        if let Some(shares) = cpu.shares() {
            if shares != 0 && !(2..=262_144).contains(&shares) {
                return Err(invalid(
                    "cpu.shares",
                    format!("{shares} is outside 2 … 262144"),
                ));
            }
        }
    }
    if let Some(io) = resources.block_io() {
        if let Some(weight) = io.weight() {
            if weight != 0 && !(10..=1000).contains(&weight) {
                return Err(invalid(
                    "blockIO.weight",
                    format!("{weight} is outside 10 … 1000"),
                ));
            }
        }
    }
    if resources.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(CgroupError::Unsupported {
            field: "linux.resources.rdma".into(),
            layout: "any".into(),
            reason: "berth does not manage the rdma controller".into(),
        });
    }
    if let Some(unified) = resources.unified() {
        for key in unified.keys() {
            if key.contains('/') || !key.contains('.') || key.starts_with('.') {
                return Err(invalid(
                    "unified",
                    format!("{key:?} is not a cgroup file name (CONTROLLER.PARAMETER)"),
                ));
            }
        }
    }
    Ok(())
}

fn check_memory(memory: &LinuxMemory) -> Result<(), CgroupError> {
    let invalid = |field: &str, reason: String| CgroupError::Invalid {
        field: format!("linux.resources.memory.{field}"),
        reason,
    };
    for (field, value) in [
        ("limit", memory.limit()),
        ("reservation", memory.reservation()),
        ("swap", memory.swap()),
    ] {
        if let Some(value) = value {
            if value < -1 {
                return Err(invalid(
                    field,
                    format!("{value} is neither -1 (unlimited) nor a number of bytes"),
                ));
            }
        }
    }
    if let Some(swappiness) = memory.swappiness() {
        if swappiness > 100 {
            return Err(invalid(
                "swappiness",
                format!("{swappiness} is outside 0 … 100"),
            ));
        }
    }
    if let (Some(swap), Some(limit)) = (memory.swap(), memory.limit()) {
        if swap > 0 && limit > 0 && swap < limit {
            return Err(invalid(
                "swap",
                format!("{swap} is below the memory limit {limit} (swap counts memory plus swap)"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_become_weights() {
        assert_eq!(cpu_weight_from_shares(2), 1);
        assert_eq!(cpu_weight_from_shares(1024), 39);
        assert_eq!(cpu_weight_from_shares(262_144), 10_000);
        assert_eq!(cpu_weight_from_shares(1), 1);
    }

    #[test]
    fn blkio_weights_become_io_weights() {
        assert_eq!(io_weight_from_blkio(10), 1);
        assert_eq!(io_weight_from_blkio(500), 4950);
        assert_eq!(io_weight_from_blkio(1000), 10_000);
    }

    #[test]
    fn swap_is_memory_plus_swap() {
        assert_eq!(swap_max_v2(None, Some(100)).unwrap(), None);
        assert_eq!(swap_max_v2(None, Some(-1)).unwrap(), Some("max".into()));
        assert_eq!(
            swap_max_v2(Some(-1), Some(100)).unwrap(),
            Some("max".into())
        );
        assert_eq!(
            swap_max_v2(Some(300), Some(100)).unwrap(),
            Some("200".into())
        );
        assert_eq!(swap_max_v2(Some(100), Some(100)).unwrap(), Some("0".into()));
        let err = swap_max_v2(Some(50), Some(100)).unwrap_err().to_string();
        assert_eq!(
            err,
            "linux.resources.memory.swap: 50 is below the memory limit 100 (swap counts memory plus swap)"
        );
        assert!(swap_max_v2(Some(100), None).is_err());
    }

    #[test]
    fn bad_values_name_their_field() {
        let resources: LinuxResources = serde_json::from_str(r#"{"cpu": {"quota": 10}}"#).unwrap();
        assert_eq!(
            check(&resources).unwrap_err().to_string(),
            "linux.resources.cpu.quota: 10 is below the kernel's minimum of 1000 microseconds"
        );
        let resources: LinuxResources =
            serde_json::from_str(r#"{"memory": {"limit": -5}}"#).unwrap();
        assert!(check(&resources)
            .unwrap_err()
            .to_string()
            .starts_with("linux.resources.memory.limit: -5"));
        let resources: LinuxResources =
            serde_json::from_str(r#"{"unified": {"../memory.max": "1"}}"#).unwrap();
        assert!(check(&resources).is_err());
        let resources: LinuxResources = serde_json::from_str(
            r#"{"memory": {"limit": 1048576, "swap": 2097152}, "cpu": {"shares": 1024, "quota": 50000, "period": 100000}}"#,
        )
        .unwrap();
        check(&resources).unwrap();
    }
}
