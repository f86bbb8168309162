//! The `NetworkSettings` object of `berth inspect`, in the shape of `docker inspect`'s.

use serde_json::{json, Map, Value};

use super::{Mode, NetworkState};

/// `NetworkMode`, `SandboxKey` (`/proc/PID/ns/net` while the container runs, the joined path in
/// join mode, empty once it has stopped), `IPAddress`, `IPPrefixLen`, `Gateway`, `MacAddress`,
/// `Bridge`, `HostVeth` (empty strings and 0 outside bridge mode), and `Ports` in Docker's map
/// shape, `{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"}]}`. Unlike Docker, host mode lists
/// the ports berth reserved for the container.
pub fn inspect_settings(state: &NetworkState, pid: Option<i32>) -> Value {
    let sandbox_key = match (&state.mode, pid) {
        (Mode::Join(path), _) => path.display().to_string(),
        (_, Some(pid)) => format!("/proc/{pid}/ns/net"),
        (_, None) => String::new(),
    };
    let mut ports = Map::new();
    for port in &state.ports {
        let key = format!("{}/{}", port.container_port, port.protocol);
        let binding = json!({"HostIp": "0.0.0.0", "HostPort": port.host_port.to_string()});
        match ports.get_mut(&key) {
            Some(Value::Array(bindings)) => bindings.push(binding),
            _ => {
                ports.insert(key, json!([binding]));
            }
        }
    }
    let lease = state.lease.as_ref();
    let text = |field: Option<String>| field.unwrap_or_default();
    json!({
        "NetworkMode": state.mode.to_string(),
        "SandboxKey": sandbox_key,
        "IPAddress": text(lease.map(|l| l.address.to_string())),
        "IPPrefixLen": lease.map_or(0, |l| l.subnet.prefix_len()),
        "Gateway": text(lease.map(|l| l.gateway.to_string())),
        "MacAddress": text(lease.map(|l| l.mac.clone())),
        "Bridge": text(lease.map(|l| l.bridge.clone())),
        "HostVeth": text(lease.map(|l| l.host_veth.clone())),
        "Ports": ports,
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    use super::*;
    use crate::network::{Lease, PortMapping, Protocol};

    fn port(host_port: u16, container_port: u16, protocol: Protocol) -> PortMapping {
        PortMapping {
            host_port,
            container_port,
            protocol,
        }
    }

    #[test]
    fn bridge_mode_shows_address_and_docker_port_map() {
        let state = NetworkState {
            mode: Mode::Bridge,
            ports: vec![
                port(8080, 80, Protocol::Tcp),
                port(8081, 80, Protocol::Tcp),
                port(5353, 53, Protocol::Udp),
            ],
            lease: Some(Lease {
                bridge: "docker0".into(),
                subnet: "172.17.0.0/16".parse().unwrap(),
                address: Ipv4Addr::new(172, 17, 0, 2),
                gateway: Ipv4Addr::new(172, 17, 0, 1),
                mac: "02:42:ac:11:00:02".into(),
                host_veth: "veth1234abc".into(),
            }),
        };
        assert_eq!(
            inspect_settings(&state, Some(42)),
            json!({
                "NetworkMode": "bridge",
                "SandboxKey": "/proc/42/ns/net",
                "IPAddress": "172.17.0.2",
                "IPPrefixLen": 16,
                "Gateway": "172.17.0.1",
                "MacAddress": "02:42:ac:11:00:02",
                "Bridge": "docker0",
                "HostVeth": "veth1234abc",
                "Ports": {
                    "80/tcp": [
                        {"HostIp": "0.0.0.0", "HostPort": "8080"},
                        {"HostIp": "0.0.0.0", "HostPort": "8081"}
                    ],
                    "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}]
                }
            })
        );
    }

    #[test]
    fn host_mode_has_empty_address_fields() {
        let state = NetworkState {
            mode: Mode::Host,
            ports: vec![port(3000, 3000, Protocol::Tcp)],
            lease: None,
        };
        let settings = inspect_settings(&state, Some(7));
        assert_eq!(settings["NetworkMode"], "host");
        assert_eq!(settings["SandboxKey"], "/proc/7/ns/net");
        for field in ["IPAddress", "Gateway", "MacAddress", "Bridge", "HostVeth"] {
            assert_eq!(settings[field], "", "{field}");
        }
        assert_eq!(settings["IPPrefixLen"], 0);
        assert_eq!(settings["Ports"]["3000/tcp"][0]["HostPort"], "3000");
    }

    #[test]
    fn join_mode_keys_on_the_joined_path_and_stopped_has_none() {
        let joined = NetworkState {
            mode: Mode::Join(PathBuf::from("/run/netns/lab")),
            ports: vec![],
            lease: None,
        };
        let settings = inspect_settings(&joined, None);
        assert_eq!(settings["NetworkMode"], "ns:/run/netns/lab");
        assert_eq!(settings["SandboxKey"], "/run/netns/lab");
        let stopped = NetworkState {
            mode: Mode::None,
            ports: vec![],
            lease: None,
        };
        assert_eq!(inspect_settings(&stopped, None)["SandboxKey"], "");
    }
}
