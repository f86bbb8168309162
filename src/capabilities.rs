//! Capabilities: the five sets of `process.capabilities` as bit masks, worked out before the
//! container's process exists, and applied in the order the kernel needs.

use std::str::FromStr;

use nix::errno::Errno;
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("unknown capability {0:?}")]
    Unknown(String),
    #[error("cannot drop {0} from the bounding set: {1}")]
    Bounding(String, Errno),
    #[error("cannot set the capability sets: {0}")]
    Set(Errno),
    #[error("cannot raise ambient capability {0}: {1}")]
    Ambient(String, Errno),
}

/// The five capability sets, one bit per capability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

fn mask(set: &Option<Capabilities>) -> Result<u64, CapabilityError> {
    let mut bits = 0u64;
    for cap in set.iter().flatten() {
        let name = format!("CAP_{cap}");
        let parsed = caps::Capability::from_str(&name)
            .map_err(|_| CapabilityError::Unknown(name.clone()))?;
        bits |= 1 << parsed.index();
    }
    Ok(bits)
}

impl CapSets {
    pub fn from_spec(spec: Option<&LinuxCapabilities>) -> Result<CapSets, CapabilityError> {
        let Some(spec) = spec else {
            return Ok(CapSets::default());
        };
        Ok(CapSets {
            bounding: mask(spec.bounding())?,
            effective: mask(spec.effective())?,
            permitted: mask(spec.permitted())?,
            inheritable: mask(spec.inheritable())?,
            ambient: mask(spec.ambient())?,
        })
    }

    /// Parses names such as `CAP_NET_ADMIN` (the `--cap` flag of exec) into a mask.
    pub fn parse_names(names: &[String]) -> Result<u64, CapabilityError> {
        let mut bits = 0;
        for name in names {
            let full = if name.to_ascii_uppercase().starts_with("CAP_") {
                name.to_ascii_uppercase()
            } else {
                format!("CAP_{}", name.to_ascii_uppercase())
            };
            let cap = caps::Capability::from_str(&full)
                .map_err(|_| CapabilityError::Unknown(name.clone()))?;
            bits |= 1 << cap.index();
        }
        Ok(bits)
    }
}

/// The highest capability number this kernel knows.
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// A capability's name (`CAP_KILL`) by its number.
pub fn cap_name(index: u8) -> String {
    caps::all()
        .into_iter()
        .find(|c| c.index() == index)
        .map(|c| c.to_string())
        .unwrap_or_else(|| format!("capability {index}"))
}

/// Drops every capability outside `bounding` from the bounding set. Needs CAP_SETPCAP, so it runs
/// before the process changes user.
pub fn drop_bounding(bounding: u64, last_cap: u8) -> Result<(), CapabilityError> {
    for cap in 0..=last_cap {
        if bounding & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            return Err(CapabilityError::Bounding(cap_name(cap), Errno::last()));
        }
    }
    Ok(())
}

/// Sets the effective, permitted and inheritable sets, then the ambient set. Runs after the
/// process has its final uid (with PR_SET_KEEPCAPS kept the permitted set through the change).
pub fn apply(sets: &CapSets) -> Result<(), CapabilityError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
        pid: 0,
    };
    let word = |bits: u64, i: usize| (bits >> (32 * i)) as u32;
    let data: [Data; 2] = std::array::from_fn(|i| Data {
        effective: word(sets.effective, i),
        permitted: word(sets.permitted, i),
        inheritable: word(sets.inheritable, i),
    });
    // SAFETY: capset reads one header and two data structs laid out as the kernel expects.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc != 0 {
        return Err(CapabilityError::Set(Errno::last()));
    }
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    // The kernel raises an ambient capability only if it is also permitted and inheritable;
    // runc's templates list ambient ones without inheritable, and runc then goes on without them.
    let ambient = sets.ambient & sets.permitted & sets.inheritable;
    for cap in 0..64u8 {
        if ambient & (1 << cap) == 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE,
                cap as libc::c_ulong,
                0,
                0,
            )
        };
        if rc != 0 {
            return Err(CapabilityError::Ambient(cap_name(cap), Errno::last()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_from_spec() {
        let spec: LinuxCapabilities = serde_json::from_str(
            r#"{"bounding":["CAP_CHOWN","CAP_KILL","CAP_NET_BIND_SERVICE"],
                "effective":["CAP_KILL"],"permitted":["CAP_KILL"],"ambient":[]}"#,
        )
        .unwrap();
        let sets = CapSets::from_spec(Some(&spec)).unwrap();
        assert_eq!(sets.bounding, (1 << 0) | (1 << 5) | (1 << 10));
        assert_eq!(sets.effective, 1 << 5);
        assert_eq!(sets.inheritable, 0);
    }

    #[test]
    fn names_from_the_command_line() {
        let bits = CapSets::parse_names(&["CAP_SYS_ADMIN".into(), "net_raw".into()]).unwrap();
        assert_eq!(bits, (1 << 21) | (1 << 13));
        let err = CapSets::parse_names(&["CAP_FLY".into()]).unwrap_err();
        assert_eq!(err.to_string(), "unknown capability \"CAP_FLY\"");
    }
}
