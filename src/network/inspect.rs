//! The `NetworkSettings` object of `berth inspect`, in the shape of `docker inspect`'s.
//!
//! The keys are Docker 20.10's, as `scripts/engine-tests` recorded them (kept in
//! `runtime-tests/tests/data/inspect/`), plus berth's own `NetworkMode` and `HostVeth`. What
//! berth has no notion of (sandbox and endpoint ids, IPv6, links, aliases) is empty, as podman
//! leaves it.

use serde_json::{json, Map, Value};

use super::{Mode, NetworkState};

/// `NetworkMode`, `SandboxKey` (`/proc/PID/ns/net` while the container runs, the joined path in
/// join mode, empty once it has stopped), `IPAddress`, `IPPrefixLen`, `Gateway`, `MacAddress`,
/// `Bridge`, `HostVeth` (empty strings and 0 outside bridge mode), `Ports` in Docker's map
/// shape, `{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"}]}`, and `Networks`, one entry named
/// after the mode (`host`, `bridge`, `none`) with the same address fields, as Docker gives it.
/// A joined namespace has no `Networks`, as podman gives none for it: berth did not network it.
/// Unlike Docker, host mode lists the ports berth reserved for the container.
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
    let address = text(lease.map(|l| l.address.to_string()));
    let prefix_len = lease.map_or(0, |l| l.subnet.prefix_len());
    let gateway = text(lease.map(|l| l.gateway.to_string()));
    let mac = text(lease.map(|l| l.mac.clone()));
    // The veth is the container's end point on the bridge, as Docker's endpoint is.
    let endpoint = text(lease.map(|l| l.host_veth.clone()));
    let mut settings = json!({
        "NetworkMode": state.mode.to_string(),
        "Bridge": text(lease.map(|l| l.bridge.clone())),
        "SandboxID": "",
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports,
        "SandboxKey": sandbox_key,
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": endpoint,
        "Gateway": gateway,
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": address,
        "IPPrefixLen": prefix_len,
        "IPv6Gateway": "",
        "MacAddress": mac,
        "HostVeth": endpoint,
    });
    let network = match &state.mode {
        Mode::Join(_) => return settings,
        Mode::Host => "host",
        Mode::None => "none",
        Mode::Bridge => "bridge",
    };
    // berth has no network objects: the network's id is its name, as podman makes it, and a
    // bridge network is named by its bridge.
    let network_id = text(lease.map(|l| l.bridge.clone()));
    let network_id = if network_id.is_empty() {
        network.to_string()
    } else {
        network_id
    };
    settings["Networks"] = json!({
        network: {
            "IPAMConfig": null,
            "Links": null,
            "Aliases": null,
            "NetworkID": network_id,
            "EndpointID": settings["EndpointID"],
            "Gateway": settings["Gateway"],
            "IPAddress": settings["IPAddress"],
            "IPPrefixLen": prefix_len,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "MacAddress": settings["MacAddress"],
            "DriverOpts": null,
        }
    });
    settings
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
                "SandboxID": "",
                "HairpinMode": false,
                "LinkLocalIPv6Address": "",
                "LinkLocalIPv6PrefixLen": 0,
                "SecondaryIPAddresses": null,
                "SecondaryIPv6Addresses": null,
                "EndpointID": "veth1234abc",
                "IPAddress": "172.17.0.2",
                "IPPrefixLen": 16,
                "Gateway": "172.17.0.1",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "IPv6Gateway": "",
                "MacAddress": "02:42:ac:11:00:02",
                "Bridge": "docker0",
                "HostVeth": "veth1234abc",
                "Ports": {
                    "80/tcp": [
                        {"HostIp": "0.0.0.0", "HostPort": "8080"},
                        {"HostIp": "0.0.0.0", "HostPort": "8081"}
                    ],
                    "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}]
                },
                "Networks": {
                    "bridge": {
                        "IPAMConfig": null,
                        "Links": null,
                        "Aliases": null,
                        "NetworkID": "docker0",
                        "EndpointID": "veth1234abc",
                        "Gateway": "172.17.0.1",
                        "IPAddress": "172.17.0.2",
                        "IPPrefixLen": 16,
                        "IPv6Gateway": "",
                        "GlobalIPv6Address": "",
                        "GlobalIPv6PrefixLen": 0,
                        "MacAddress": "02:42:ac:11:00:02",
                        "DriverOpts": null
                    }
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
        let host = &settings["Networks"]["host"];
        for field in ["IPAddress", "Gateway", "MacAddress", "EndpointID"] {
            assert_eq!(host[field], "", "Networks.host.{field}");
        }
        assert_eq!(host["NetworkID"], "host");
        assert_eq!(settings["Networks"].as_object().unwrap().len(), 1);
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
        assert_eq!(settings.get("Networks"), None, "berth did not network it");
        let stopped = NetworkState {
            mode: Mode::None,
            ports: vec![],
            lease: None,
        };
        let settings = inspect_settings(&stopped, None);
        assert_eq!(settings["SandboxKey"], "");
        assert_eq!(settings["Networks"]["none"]["NetworkID"], "none");
    }
}
