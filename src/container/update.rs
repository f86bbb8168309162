//! `update`: change the limits of a created, running or paused container, from runc's flags or a
//! LinuxResources JSON document (what containerd and Docker send on stdin). Device rules stay
//! as they were at create, as with runc.

use oci_spec::runtime::LinuxResources;

use super::{status, ContainerError};
use crate::state::{Root, Status};

pub fn update(root: &Root, id: &str, resources: &LinuxResources) -> Result<(), ContainerError> {
    crate::cgroups::check_resources(resources)?;
    // Without the container's lock, which a foreground `run` holds all along.
    let state = root.read_state(id)?;
    // A pids limit of 0 is a limit from runtime-spec 1.3 on; before, it meant none given.
    let mut resources = resources.clone();
    if !crate::spec::version_at_least(&state.oci_version, 3)
        && resources.pids().is_some_and(|p| p.limit() == 0)
    {
        resources.set_pids(None);
    }
    let resources = &resources;
    let current = status(&state, &root.container_dir(id));
    if matches!(current, Status::Stopped | Status::Creating) {
        return Err(ContainerError::WrongStatus {
            id: id.into(),
            action: "update",
            status: current,
        });
    }
    if resources.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        crate::logging::debug("update: linux.resources.devices is left as it was at create");
    }
    crate::cgroups::manager(&state.cgroup).update(resources)?;
    Ok(())
}

/// A size as runc's flags take it: bytes, or with a binary suffix (`32m`, `1G`, `512KiB`);
/// `-1` means unlimited.
pub fn parse_size(text: &str) -> Result<i64, ContainerError> {
    let bad = || ContainerError::BadValue {
        what: "size",
        value: text.to_string(),
        expected: "a number of bytes, optionally with k, m, g or t (e.g. 32m), or -1",
    };
    let trimmed = text.trim();
    if trimmed == "-1" {
        return Ok(-1);
    }
    let lower = trimmed.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    let bytes = number * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_runcs() {
        assert_eq!(parse_size("33554432").unwrap(), 33_554_432);
        assert_eq!(parse_size("32m").unwrap(), 33_554_432);
        assert_eq!(parse_size("32M").unwrap(), 33_554_432);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert_eq!(
            parse_size("lots").unwrap_err().to_string(),
            "\"lots\" is not a valid size: expected a number of bytes, optionally with k, m, g or t (e.g. 32m), or -1"
        );
        assert!(parse_size("12q").is_err());
        assert!(parse_size("").is_err());
    }
}
