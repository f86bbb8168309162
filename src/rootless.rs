//! Running as an ordinary user ("rootless"): who berth runs as, runc's rules for `--rootless`
//! and for the default `--root`, and the refusals of what an ordinary user cannot have on the
//! host, made before anything exists so they leave nothing behind.
//!
//! Two questions are kept apart, as runc keeps them:
//! - whether berth is *unprivileged*: not uid 0, or uid 0 only of a user namespace (under
//!   rootless podman, which runs its runtime inside its own). Then the host's network (bridge
//!   mode, moved interfaces, ports below `net.ipv4.ip_unprivileged_port_start`) is out of reach,
//!   and user namespace maps are written as an ordinary user may (see `idmap`);
//! - whether cgroups are managed *rootless* (`--rootless`, default `auto`, which means
//!   unprivileged): then a cgroup berth may not make is left out rather than an error, when the
//!   config names no `cgroupsPath`, and a limit that would need it is refused (see
//!   `cgroups::rootless`).

use std::path::{Path, PathBuf};

use crate::network::{Mode, NetworkError, NetworkRequest};

/// The kernel's user namespace map of the initial namespace: every id to itself.
const INITIAL_MAP: &str = "0 0 4294967295";

#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    #[error("--rootless {0:?} is not one of auto, true or false")]
    BadFlag(String),
}

/// `--rootless`: `auto` (or empty) gives `None`, decided by [`unprivileged`]; otherwise the
/// words Go's `strconv.ParseBool` takes, as runc reads the flag.
pub fn parse_flag(text: &str) -> Result<Option<bool>, RootlessError> {
    match text {
        "" | "auto" => Ok(None),
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Some(true)),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Some(false)),
        other => Err(RootlessError::BadFlag(other.to_string())),
    }
}

/// Whether cgroups are managed rootless, from `--rootless` (`None` for auto).
pub fn rootless_cgroups(flag: Option<bool>) -> bool {
    flag.unwrap_or_else(unprivileged)
}

/// berth's effective uid and gid.
pub fn ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Whether berth runs in a user namespace other than the initial one.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|map| !is_initial_map(&map))
}

fn is_initial_map(map: &str) -> bool {
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    lines.len() == 1 && lines[0].join(" ") == INITIAL_MAP
}

/// Whether berth lacks root's privileges over the host: it is not uid 0, or uid 0 of a user
/// namespace, whose capabilities do not reach the host's network, cgroups or devices.
pub fn unprivileged() -> bool {
    ids().0 != 0 || in_user_namespace()
}

/// The default `--root`, by runc's rule: `$XDG_RUNTIME_DIR/berth` for anyone but the real root
/// (uid 0 of a user namespace too, unless `$USER` says root), else `/run/berth`. The second item
/// says whether it is the XDG folder, which gets the sticky bit: the XDG base directory spec lets
/// cleaners remove what is not touched for six hours, unless it is sticky.
pub fn default_root() -> (PathBuf, bool) {
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty());
    let honour = ids().0 != 0
        || (in_user_namespace() && std::env::var("USER").map_or(true, |u| u != "root"));
    match xdg {
        Some(dir) if honour => (Path::new(&dir).join("berth"), true),
        _ => (PathBuf::from(crate::state::DEFAULT_ROOT), false),
    }
}

/// The name `/etc/passwd` gives `uid`. Read by hand rather than through NSS: the release binary
/// is static, and glibc's NSS modules cannot be loaded into it.
pub fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2].parse() == Ok(uid))
        .map(|f| f[0].to_string())
}

/// How the caller is named in errors: `user "alice" (uid 1000)`.
pub fn describe_user(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("user {name:?} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// The lowest port an unprivileged process may bind in the caller's network namespace.
pub fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1024)
}

/// Refuses, for an unprivileged berth, the network settings that need root on the host: bridge
/// mode (a bridge, a veth pair and nftables rules in the host's namespace), `linux.netDevices`
/// (moving the host's interfaces), and host-mode ports below `first_port`, which an ordinary
/// user's program could not bind.
pub fn check_network(req: &NetworkRequest, first_port: u16) -> Result<(), NetworkError> {
    let who = || {
        let (uid, _) = ids();
        match uid {
            0 => "uid 0 of a user namespace, without root's privileges on the host".to_string(),
            uid => describe_user(uid),
        }
    };
    if req.mode == Mode::Bridge {
        return Err(NetworkError::Rootless {
            what: "bridge mode".into(),
            who: who(),
            reason: "it makes a bridge, a veth pair and nftables rules in the host's network \
                     namespace, which needs root: use --network host (the host's network, ports \
                     reserved) or --network none (a namespace of its own with only lo)"
                .into(),
        });
    }
    if let Some(device) = req.devices.first() {
        return Err(NetworkError::Rootless {
            what: format!("linux.netDevices ({:?})", device.host_name),
            who: who(),
            reason: "moving the host's interfaces into a container needs root".into(),
        });
    }
    if req.mode == Mode::Host {
        if let Some(port) = req.ports.iter().find(|p| p.host_port < first_port) {
            return Err(NetworkError::Rootless {
                what: format!("port {}/{} in host mode", port.host_port, port.protocol),
                who: who(),
                reason: format!(
                    "the container's program could not bind it: ports below {first_port} \
                     (net.ipv4.ip_unprivileged_port_start) need root on the host"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{NetworkOverride, PortMapping, Protocol};

    #[test]
    fn the_flag_reads_as_runc_reads_it() {
        assert_eq!(parse_flag("auto").unwrap(), None);
        assert_eq!(parse_flag("").unwrap(), None);
        for yes in ["true", "1", "t", "TRUE", "True"] {
            assert_eq!(parse_flag(yes).unwrap(), Some(true), "{yes}");
        }
        for no in ["false", "0", "f", "FALSE", "False"] {
            assert_eq!(parse_flag(no).unwrap(), Some(false), "{no}");
        }
        assert_eq!(
            parse_flag("yes").unwrap_err().to_string(),
            "--rootless \"yes\" is not one of auto, true or false"
        );
        assert!(rootless_cgroups(Some(true)));
        assert!(!rootless_cgroups(Some(false)));
    }

    #[test]
    fn only_the_identity_map_is_the_initial_namespace() {
        assert!(is_initial_map("         0          0 4294967295\n"));
        assert!(!is_initial_map("0 1000 1\n"));
        assert!(!is_initial_map("0 0 4294967295\n1 1 1\n"));
    }

    fn request(mode: &str, ports: &[&str]) -> NetworkRequest {
        let spec: oci_spec::runtime::Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"}]}}"#,
        )
        .unwrap();
        let ports: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        let over = NetworkOverride::from_flags(Some(mode), &ports).unwrap();
        crate::network::request_from(&spec, &over).unwrap()
    }

    #[test]
    fn what_an_ordinary_user_cannot_have_is_refused_by_name() {
        let err = check_network(&request("bridge", &[]), 1024).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("bridge mode is refused: berth runs as "),
            "{text}"
        );
        assert!(
            text.contains("use --network host") && text.contains("--network none"),
            "{text}"
        );
        let err = check_network(&request("host", &["80"]), 1024).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("port 80/tcp in host mode is refused"),
            "{err}"
        );
        assert!(err.to_string().contains("ports below 1024"), "{err}");
        check_network(&request("host", &["1024", "8080/udp"]), 1024).unwrap();
        check_network(&request("none", &[]), 1024).unwrap();
        let low = NetworkRequest {
            ports: vec![PortMapping {
                host_port: 80,
                container_port: 80,
                protocol: Protocol::Tcp,
            }],
            ..request("host", &[])
        };
        // where the host lets anyone bind low ports, so does berth
        check_network(&low, 0).unwrap();
    }
}
