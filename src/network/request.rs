//! Choosing the network request: the spec's namespaces, then berth's annotations, then the
//! command-line flags, each overriding the one before, but only where `config.json` leaves the
//! choice to berth (see [`check_mode_allowed`]).

use std::collections::HashSet;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::{Ipv4Net, Mode, NetworkError, NetworkRequest, PortMapping, Protocol};

pub const MODE_ANNOTATION: &str = "io.berth.network.mode";
pub const PORTS_ANNOTATION: &str = "io.berth.network.ports";
pub const BRIDGE_ANNOTATION: &str = "io.berth.network.bridge";
pub const SUBNET_ANNOTATION: &str = "io.berth.network.subnet";
pub const DEFAULT_BRIDGE: &str = "docker0";
pub const DEFAULT_SUBNET: &str = "172.17.0.0/16";

/// What the caller of `create` asks for over the spec and its annotations: berth's
/// `--network MODE` and repeatable `--publish HOST:CONTAINER[/tcp|/udp]` flags, typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkOverride {
    pub mode: Option<Mode>,
    /// Replaces the ports of the annotation when not empty.
    pub ports: Vec<PortMapping>,
}

impl NetworkOverride {
    /// Parses the flags' text; a bad value gives an error naming the flag and the value.
    pub fn from_flags(mode: Option<&str>, publish: &[String]) -> Result<Self, NetworkError> {
        let mode = mode.map(|value| parse_mode(value, MODE_FLAG)).transpose()?;
        let ports = publish
            .iter()
            .map(|value| parse_port(value, PUBLISH_FLAG))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetworkOverride { mode, ports })
    }
}

const MODE_FLAG: &str = "flag --network";
const PUBLISH_FLAG: &str = "flag --publish";

/// Decides the request. From the spec's `linux.namespaces`: no network entry means host, an
/// entry with a path means join it, an entry without a path means none. Then the annotations
/// `io.berth.network.mode`, `.ports`, `.bridge`, `.subnet`; then the caller's override (the
/// flags `--network` and `--publish`). A mode that would weaken what `linux.namespaces` asks
/// for is refused ([`check_mode_allowed`]). Bad values give an error naming the annotation or
/// flag and the value.
pub fn request_from(spec: &Spec, over: &NetworkOverride) -> Result<NetworkRequest, NetworkError> {
    let annotations = spec.annotations().clone().unwrap_or_default();
    let annotation = |name: &str| annotations.get(name).map(String::as_str);

    let asked = mode_from_namespaces(spec);
    let mut mode = asked.clone();
    let mut mode_source = "config.json linux.namespaces".to_string();
    let mut chosen = false;
    if let Some(value) = annotation(MODE_ANNOTATION) {
        mode_source = format!("annotation {MODE_ANNOTATION}");
        mode = parse_mode(value, &mode_source)?;
        chosen = true;
    }
    if let Some(over) = &over.mode {
        mode_source = MODE_FLAG.to_string();
        mode = over.clone();
        chosen = true;
    }
    if chosen {
        check_mode_allowed(&asked, &mode, &mode_source, &mode.to_string())?;
    }

    let (ports, ports_source) = if !over.ports.is_empty() {
        (over.ports.clone(), PUBLISH_FLAG.to_string())
    } else if let Some(value) = annotation(PORTS_ANNOTATION) {
        let source = format!("annotation {PORTS_ANNOTATION}");
        let ports = value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| parse_port(item, &source))
            .collect::<Result<Vec<_>, _>>()?;
        (ports, source)
    } else {
        (Vec::new(), String::new())
    };
    check_ports(&mode, &mode_source, &ports, &ports_source)?;

    let bridge_source = format!("annotation {BRIDGE_ANNOTATION}");
    let bridge = annotation(BRIDGE_ANNOTATION).unwrap_or(DEFAULT_BRIDGE);
    check_bridge_name(bridge, &bridge_source)?;

    let subnet_source = format!("annotation {SUBNET_ANNOTATION}");
    let subnet_text = annotation(SUBNET_ANNOTATION).unwrap_or(DEFAULT_SUBNET);
    let subnet: Ipv4Net = subnet_text
        .parse()
        .map_err(|reason| invalid(&subnet_source, subnet_text, reason))?;
    if subnet.prefix_len() > 30 {
        return Err(invalid(
            &subnet_source,
            subnet_text,
            "a prefix longer than /30 leaves no address beside the gateway",
        ));
    }

    let devices = super::netdevices::from_spec(spec, &mode, &mode_source)?;
    Ok(NetworkRequest {
        mode,
        ports,
        bridge: bridge.to_string(),
        subnet,
        devices,
    })
}

fn mode_from_namespaces(spec: &Spec) -> Mode {
    let network = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.namespaces().as_ref())
        .and_then(|namespaces| {
            namespaces
                .iter()
                .find(|ns| ns.typ() == LinuxNamespaceType::Network)
        });
    match network {
        None => Mode::Host,
        Some(ns) => match ns.path() {
            Some(path) => Mode::Join(path.clone()),
            None => Mode::None,
        },
    }
}

/// An annotation or flag may choose the mode only where `config.json` leaves it to berth, and
/// never weaken what `linux.namespaces` asks for:
/// - no `network` entry (the host's namespace): any mode; bridge and none give the container a
///   namespace of its own, which takes nothing from the host and gives the container less;
/// - an entry without a path (a namespace of the container's own): none or bridge, which differ
///   only in what berth puts inside it; host would hand the container the host's namespace,
///   and a namespace by path someone else's;
/// - an entry with a path: no mode at all, since the namespace and what is in it belong to
///   whoever made it (an engine's sandbox, a pod).
///
/// Published ports follow: in host mode (the host's namespace) they are reservations only, so a
/// DNAT rule on the host exists only in bridge mode, which berth then chose.
fn check_mode_allowed(
    asked: &Mode,
    mode: &Mode,
    source: &str,
    value: &str,
) -> Result<(), NetworkError> {
    let (entry, reason) = match (asked, mode) {
        (Mode::Host, _) | (Mode::None, Mode::None | Mode::Bridge) => return Ok(()),
        (Mode::Join(path), _) => (
            format!("a network entry with path {}", path.display()),
            "only config.json chooses a namespace given by path",
        ),
        (_, Mode::Host) => (
            "a network entry without a path".to_string(),
            "host mode would put the container in the host's network namespace where \
             config.json asks for one of its own",
        ),
        (_, _) => (
            "a network entry without a path".to_string(),
            "joining a namespace by path would share it where config.json asks for one of \
             its own",
        ),
    };
    Err(NetworkError::ModeRefused {
        source_name: source.to_string(),
        value: value.to_string(),
        entry,
        reason: reason.to_string(),
    })
}

fn invalid(source: &str, value: &str, reason: impl Into<String>) -> NetworkError {
    NetworkError::InvalidValue {
        source_name: source.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_mode(value: &str, source: &str) -> Result<Mode, NetworkError> {
    match value {
        "host" => Ok(Mode::Host),
        "bridge" => Ok(Mode::Bridge),
        "none" => Ok(Mode::None),
        _ => Err(invalid(source, value, "expected host, bridge or none")),
    }
}

/// `PORT[/PROTO]` (the same port on both sides) or `HOST:CONTAINER[/PROTO]`; tcp by default.
fn parse_port(value: &str, source: &str) -> Result<PortMapping, NetworkError> {
    let (ports, protocol) = match value.split_once('/') {
        None => (value, Protocol::Tcp),
        Some((ports, "tcp")) => (ports, Protocol::Tcp),
        Some((ports, "udp")) => (ports, Protocol::Udp),
        Some((_, other)) => {
            return Err(invalid(
                source,
                value,
                format!("protocol {other:?} is not tcp or udp"),
            ))
        }
    };
    let number = |text: &str| {
        text.parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| {
                invalid(
                    source,
                    value,
                    format!("{text:?} is not a port from 1 to 65535"),
                )
            })
    };
    let (host_port, container_port) = match ports.split_once(':') {
        None => (number(ports)?, number(ports)?),
        Some((host, container)) => (number(host)?, number(container)?),
    };
    Ok(PortMapping {
        host_port,
        container_port,
        protocol,
    })
}

fn check_ports(
    mode: &Mode,
    mode_source: &str,
    ports: &[PortMapping],
    ports_source: &str,
) -> Result<(), NetworkError> {
    let Some(first) = ports.first() else {
        return Ok(());
    };
    match mode {
        Mode::Host | Mode::Bridge => {}
        Mode::None | Mode::Join(_) => {
            return Err(invalid(
                ports_source,
                &first.to_string(),
                format!("ports need host or bridge mode, and {mode_source} gives {mode}"),
            ))
        }
    }
    let mut seen = HashSet::new();
    for port in ports {
        if !seen.insert((port.host_port, port.protocol)) {
            return Err(invalid(
                ports_source,
                &port.to_string(),
                format!(
                    "host port {}/{} is given twice",
                    port.host_port, port.protocol
                ),
            ));
        }
        if *mode == Mode::Host && port.host_port != port.container_port {
            return Err(invalid(
                ports_source,
                &port.to_string(),
                "in host mode the host port must equal the container port",
            ));
        }
    }
    Ok(())
}

/// Interface names are at most 15 bytes; berth also keeps them to characters that are safe in
/// nftables and iptables names.
fn check_bridge_name(name: &str, source: &str) -> Result<(), NetworkError> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > 15 || !name.chars().all(safe) || name.starts_with(['.', '-'])
    {
        return Err(invalid(
            source,
            name,
            "expected an interface name of 1 to 15 letters, digits, '_', '-' or '.'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, SpecBuilder};

    use super::*;

    /// The request as the command line makes it, from the flags' text.
    fn request_from(
        spec: &Spec,
        mode: Option<&str>,
        publish: &[String],
    ) -> Result<NetworkRequest, NetworkError> {
        super::request_from(spec, &NetworkOverride::from_flags(mode, publish)?)
    }

    /// A spec whose network namespace entry is `network`: absent, without or with a path.
    fn spec(network: Option<Option<&str>>, annotations: &[(&str, &str)]) -> Spec {
        let mut namespaces = vec![LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Pid)
            .build()
            .unwrap()];
        if let Some(path) = network {
            let mut ns = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
            if let Some(path) = path {
                ns = ns.path(PathBuf::from(path));
            }
            namespaces.push(ns.build().unwrap());
        }
        SpecBuilder::default()
            .linux(
                LinuxBuilder::default()
                    .namespaces(namespaces)
                    .build()
                    .unwrap(),
            )
            .annotations(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<std::collections::HashMap<_, _>>(),
            )
            .build()
            .unwrap()
    }

    fn tcp(host_port: u16, container_port: u16) -> PortMapping {
        PortMapping {
            host_port,
            container_port,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn namespaces_decide_when_nothing_else_is_said() {
        let host = request_from(&spec(None, &[]), None, &[]).unwrap();
        assert_eq!(host.mode, Mode::Host);
        assert!(!host.needs_new_netns());
        let none = request_from(&spec(Some(None), &[]), None, &[]).unwrap();
        assert_eq!(none.mode, Mode::None);
        assert!(none.needs_new_netns());
        let join = request_from(&spec(Some(Some("/run/netns/x")), &[]), None, &[]).unwrap();
        assert_eq!(join.mode, Mode::Join(PathBuf::from("/run/netns/x")));
        assert_eq!(join.join_path(), Some(std::path::Path::new("/run/netns/x")));
        assert!(!join.needs_new_netns());
        assert_eq!(host.bridge, "docker0");
        assert_eq!(host.subnet.to_string(), "172.17.0.0/16");
    }

    #[test]
    fn annotations_choose_bridge_ports_and_subnet() {
        let req = request_from(
            &spec(
                Some(None),
                &[
                    (MODE_ANNOTATION, "bridge"),
                    (PORTS_ANNOTATION, "3000/tcp, 8080:80/tcp,53/udp"),
                    (BRIDGE_ANNOTATION, "berth0"),
                    (SUBNET_ANNOTATION, "10.88.0.0/24"),
                ],
            ),
            None,
            &[],
        )
        .unwrap();
        assert_eq!(req.mode, Mode::Bridge);
        assert!(req.needs_new_netns());
        assert_eq!(
            req.ports,
            vec![
                tcp(3000, 3000),
                tcp(8080, 80),
                PortMapping {
                    host_port: 53,
                    container_port: 53,
                    protocol: Protocol::Udp
                }
            ]
        );
        assert_eq!(req.bridge, "berth0");
        assert_eq!(req.subnet.gateway(), Ipv4Addr::new(10, 88, 0, 1));
    }

    #[test]
    fn flags_override_annotations() {
        let s = spec(
            None,
            &[(MODE_ANNOTATION, "host"), (PORTS_ANNOTATION, "3000/tcp")],
        );
        let req = request_from(&s, Some("bridge"), &["8080:80/tcp".to_string()]).unwrap();
        assert_eq!(req.mode, Mode::Bridge);
        assert_eq!(req.ports, vec![tcp(8080, 80)]);
        let req = request_from(&s, Some("none"), &[]);
        // the annotation's port stays, and none mode cannot carry it
        let err = req.unwrap_err().to_string();
        assert!(err.contains("annotation io.berth.network.ports"), "{err}");
        assert!(err.contains("flag --network gives none"), "{err}");
    }

    /// Asserts that the request is refused with an error naming `source` and `detail`.
    fn refused(spec: Spec, mode: Option<&str>, publish: &[&str], source: &str, detail: &str) {
        let publish: Vec<String> = publish.iter().map(|p| p.to_string()).collect();
        let err = request_from(&spec, mode, &publish).unwrap_err().to_string();
        assert!(err.contains(source), "{err:?} should name {source}");
        assert!(err.contains(detail), "{err:?} should mention {detail}");
    }

    #[test]
    fn bad_values_name_their_source_and_value() {
        let mode = "annotation io.berth.network.mode";
        refused(
            spec(None, &[(MODE_ANNOTATION, "bridged")]),
            None,
            &[],
            mode,
            "\"bridged\"",
        );
        refused(
            spec(None, &[]),
            Some("nat"),
            &[],
            "flag --network",
            "\"nat\"",
        );
        let publish = "flag --publish";
        refused(spec(None, &[]), None, &["80:http"], publish, "\"http\"");
        refused(spec(None, &[]), None, &["0"], publish, "\"0\"");
        refused(
            spec(None, &[]),
            None,
            &["8080:80/sctp"],
            publish,
            "\"sctp\"",
        );
        let ports = "annotation io.berth.network.ports";
        refused(
            spec(None, &[(PORTS_ANNOTATION, "70000")]),
            None,
            &[],
            ports,
            "\"70000\"",
        );
        let subnet = "annotation io.berth.network.subnet";
        let host_bits = [(SUBNET_ANNOTATION, "172.17.0.1/16")];
        refused(spec(None, &host_bits), None, &[], subnet, "host bits");
        let too_small = [(SUBNET_ANNOTATION, "10.0.0.0/31")];
        refused(spec(None, &too_small), None, &[], subnet, "/30");
        let bridge = "annotation io.berth.network.bridge";
        let long = [(BRIDGE_ANNOTATION, "a-very-long-bridge-name")];
        refused(spec(None, &long), None, &[], bridge, "1 to 15");
        let quoted = [(BRIDGE_ANNOTATION, "br\"0")];
        refused(spec(None, &quoted), None, &[], bridge, "letters");
    }

    #[test]
    fn a_mode_that_weakens_the_namespaces_is_refused() {
        let own = || spec(Some(None), &[]);
        let joined = || spec(Some(Some("/run/netns/pod")), &[]);
        let mode = "annotation io.berth.network.mode";
        let own_entry = "has a network entry without a path";
        let host_annotation = spec(Some(None), &[(MODE_ANNOTATION, "host")]);
        refused(host_annotation, None, &[], mode, own_entry);
        refused(
            own(),
            Some("host"),
            &[],
            "flag --network \"host\"",
            own_entry,
        );
        for value in ["host", "bridge", "none"] {
            let with_annotation = spec(Some(Some("/run/netns/pod")), &[(MODE_ANNOTATION, value)]);
            let path = "a network entry with path /run/netns/pod";
            refused(with_annotation, None, &[], mode, path);
            refused(joined(), Some(value), &[], "flag --network", path);
        }
        // The ports annotation cannot reach the host through a namespace given by path.
        let ports = spec(
            Some(Some("/run/netns/pod")),
            &[(PORTS_ANNOTATION, "8080:80")],
        );
        refused(
            ports,
            None,
            &[],
            "annotation io.berth.network.ports",
            "ns:/run/netns/pod",
        );
        // A flag the config refuses stays refused whatever the annotation says, and a refused
        // annotation the flag overrides is not what the container gets.
        let host_annotation = spec(Some(None), &[(MODE_ANNOTATION, "host")]);
        refused(
            host_annotation.clone(),
            Some("host"),
            &[],
            "flag --network",
            own_entry,
        );
        let req = request_from(&host_annotation, Some("bridge"), &[]).unwrap();
        assert_eq!(req.mode, Mode::Bridge);
    }

    #[test]
    fn a_typed_override_cannot_join_a_namespace_where_the_config_asks_its_own() {
        let over = NetworkOverride {
            mode: Some(Mode::Join(PathBuf::from("/run/netns/other"))),
            ports: Vec::new(),
        };
        let err = super::request_from(&spec(Some(None), &[]), &over)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("flag --network \"ns:/run/netns/other\""),
            "{err}"
        );
        assert!(err.contains("would share it"), "{err}");
        let req = super::request_from(&spec(None, &[]), &over).unwrap();
        assert_eq!(
            req.join_path(),
            Some(std::path::Path::new("/run/netns/other"))
        );
    }

    #[test]
    fn a_mode_within_what_the_namespaces_ask_is_allowed() {
        for value in ["host", "bridge", "none"] {
            let req = request_from(&spec(None, &[(MODE_ANNOTATION, value)]), None, &[]).unwrap();
            assert_eq!(req.mode, parse_mode(value, "").unwrap());
            let req = request_from(&spec(None, &[]), Some(value), &[]).unwrap();
            assert_eq!(req.mode, parse_mode(value, "").unwrap());
        }
        for value in ["bridge", "none"] {
            let req = request_from(&spec(Some(None), &[]), Some(value), &[]).unwrap();
            assert_eq!(req.mode, parse_mode(value, "").unwrap());
        }
        // Host mode from config.json: the ports are reservations, not published.
        let req = request_from(&spec(None, &[(PORTS_ANNOTATION, "3000")]), None, &[]).unwrap();
        assert_eq!((req.mode, req.ports), (Mode::Host, vec![tcp(3000, 3000)]));
    }

    #[test]
    fn host_mode_refuses_remapped_and_duplicate_ports() {
        let err = request_from(&spec(None, &[]), None, &["8080:80".to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("host port must equal the container port"),
            "{err}"
        );
        assert!(err.contains("\"8080:80/tcp\""), "{err}");
        let err = request_from(
            &spec(None, &[]),
            Some("bridge"),
            &["8080:80".to_string(), "8080:81".to_string()],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("8080/tcp is given twice"), "{err}");
        // the same number on tcp and udp is two ports
        let req = request_from(
            &spec(None, &[]),
            None,
            &["53/tcp".to_string(), "53/udp".to_string()],
        )
        .unwrap();
        assert_eq!(req.ports.len(), 2);
    }
}
