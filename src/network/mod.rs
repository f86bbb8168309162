//! Container networking: choosing the mode, host-mode port reservations, bridge mode into
//! `docker0` (bridge, veth, address, route, NAT, published ports), host interfaces moved into
//! the container (`linux.netDevices`, see `netdevices`), teardown, and `inspect`.
//!
//! The runtime calls four functions, in this order:
//! 1. [`request_from`] decides what the container asked for (spec, annotations, the caller's
//!    [`NetworkOverride`]);
//! 2. [`reserve`], before the container's init exists, claims ports and an address, so a
//!    refusal leaves nothing behind;
//! 3. [`attach`], once the init exists, wires its network namespace;
//! 4. [`release`], at delete or after a failed create, undoes all of it, found by id alone.
//!
//! Everything berth holds lives in a store under `<root>/.network/`, guarded by one file lock.
//! A record stays while the container's state folder `<root>/<id>/` exists or the process that
//! made it (the `create` under way) runs; any other record is reclaimed by the next `reserve`.
//!
//! Choices made here:
//! - MAC addresses follow Docker up to 27: `02:42` and the IPv4 bytes. They are unique within
//!   the subnet and the same whenever an address is reused, so no ARP cache goes stale.
//! - On a bridge berth made, addresses go from the gateway up (172.17.0.2 first), as Docker's.
//!   On a bridge that exists and berth did not make (a running Docker's `docker0`), they go from
//!   the top down (172.17.255.254 first), away from Docker's own, and skip every address on the
//!   bridge and every neighbour seen on it.
//! - Published ports are DNAT rules in an nftables table programmed over netlink; 127.0.0.1
//!   works through `route_localnet` on the bridge plus masquerade, not a userland proxy, since
//!   berth has no daemon to keep a proxy process per port alive (see `firewall`).
//! - The bridge berth made and its tables are made with the first container and removed
//!   after the last, by a cleaner its `delete` forks off, so that no `delete` waits for the
//!   kernel's grace periods (see `cleaner`).
//! - At delete, a container's veth is left for the kernel to remove with its network
//!   namespace while other containers use the bridge: deleting it would keep `delete` waiting
//!   15 to 30 ms for RCU grace periods. Its address stays taken until the veth is seen gone;
//!   one that outlives its container by a second is deleted by the next `reserve`.

mod bridge;
mod cleaner;
mod firewall;
mod inspect;
mod ipam;
mod netdevices;
mod netlink;
mod nftables;
mod ports;
mod request;
mod store;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use firewall::{FirewallError, Iptables};
pub use inspect::inspect_settings;
pub use ipam::Ipv4Net;
pub use netdevices::NetDevice;
pub use netlink::NetlinkError;
pub use request::{
    request_from, NetworkOverride, BRIDGE_ANNOTATION, DEFAULT_BRIDGE, DEFAULT_SUBNET,
    MODE_ANNOTATION, PORTS_ANNOTATION, SUBNET_ANNOTATION,
};

/// How the container is networked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The host's network namespace, shared.
    Host,
    /// A fresh namespace wired to a bridge through a veth pair.
    Bridge,
    /// A fresh namespace with only `lo`.
    None,
    /// An existing namespace, by path (what engines pass, e.g. `/run/netns/NAME`).
    Join(PathBuf),
}

impl fmt::Display for Mode {
    /// The `NetworkMode` of `inspect`; a joined namespace reads `ns:PATH`, as podman writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Host => f.write_str("host"),
            Mode::Bridge => f.write_str("bridge"),
            Mode::None => f.write_str("none"),
            Mode::Join(path) => write!(f, "ns:{}", path.display()),
        }
    }
}

/// A transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One port of the container, published on (bridge) or reserved at (host) a port of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

/// What a container asked for; made by [`request_from`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRequest {
    pub mode: Mode,
    pub ports: Vec<PortMapping>,
    /// The bridge to attach to in bridge mode (default `docker0`).
    pub bridge: String,
    /// The bridge's subnet in bridge mode (default `172.17.0.0/16`); the gateway is its first
    /// address.
    pub subnet: Ipv4Net,
    /// The host interfaces to move into the container's namespace (`linux.netDevices`).
    pub devices: Vec<NetDevice>,
}

impl NetworkRequest {
    /// Whether the runtime must create a fresh network namespace for the container.
    pub fn needs_new_netns(&self) -> bool {
        matches!(self.mode, Mode::Bridge | Mode::None)
    }

    /// The namespace to join, in join mode.
    pub fn join_path(&self) -> Option<&Path> {
        match &self.mode {
            Mode::Join(path) => Some(path),
            _ => None,
        }
    }
}

/// What [`reserve`] claimed for a container: its ports and, in bridge mode, its address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub ports: Vec<PortMapping>,
    pub lease: Option<Lease>,
}

/// A bridge-mode container's address and the names that go with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
    /// `02:42` followed by the four bytes of the address, as Docker up to 27 makes it: unique
    /// within the subnet, and stable across reuse of the address, so neighbours' ARP caches
    /// never hold a wrong MAC for it.
    pub mac: String,
    /// The host end of the veth pair: `veth` and 7 hex digits derived from root and id.
    pub host_veth: String,
}

/// What [`attach`] set up, as `inspect` shows it; the runtime keeps it in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    pub mode: Mode,
    pub ports: Vec<PortMapping>,
    pub lease: Option<Lease>,
}

/// Everything that can go wrong in this module.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid {source_name} value {value:?}: {reason}")]
    InvalidValue {
        /// The annotation or flag that carried it, e.g. `annotation io.berth.network.ports`.
        source_name: String,
        value: String,
        reason: String,
    },
    #[error(
        "{source_name} {value:?} is refused: config.json's linux.namespaces has {entry}, and \
         {reason}"
    )]
    ModeRefused {
        /// The annotation or flag that asked, e.g. `annotation io.berth.network.mode`.
        source_name: String,
        value: String,
        /// The `network` entry of `linux.namespaces`, in words.
        entry: String,
        reason: String,
    },
    #[error(
        "linux.netDevices moves interfaces into the container's network namespace, but \
         {source_name} gives host mode: the container shares the host's"
    )]
    NetDevicesNeedNamespace { source_name: String },
    #[error("linux.netDevices: {name:?} is not a valid interface name: {reason}")]
    NetDeviceName { name: String, reason: String },
    #[error("linux.netDevices: the host has no interface {name:?}")]
    NetDeviceMissing { name: String },
    #[error("linux.netDevices: {host_name:?} cannot become {name:?} in the container: {reason}")]
    NetDeviceClash {
        host_name: String,
        name: String,
        reason: String,
    },
    #[error("linux.netDevices: interface {name:?}: {source}")]
    NetDevice { name: String, source: NetlinkError },
    #[error("RESOURCE:PORTS: port {port}/{protocol} is already held by {holder}")]
    PortInUse {
        port: u16,
        protocol: Protocol,
        holder: String,
    },
    #[error(
        "host mode publishes a container port on the same host port: {mapping} maps host port \
         {} to container port {}", mapping.host_port, mapping.container_port
    )]
    HostPortMismatch { mapping: PortMapping },
    #[error(
        "address {address} of {subnet} on bridge {bridge} is taken: the container cannot have \
         it back"
    )]
    AddressTaken {
        address: Ipv4Addr,
        bridge: String,
        subnet: Ipv4Net,
    },
    #[error("no free address left in {subnet} on bridge {bridge}")]
    SubnetExhausted { subnet: Ipv4Net, bridge: String },
    #[error("network store {path}: {source}")]
    Store { path: PathBuf, source: io::Error },
    #[error("network store file {path} is corrupt: {reason}")]
    StoreCorrupt { path: PathBuf, reason: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("network namespace {path}: {source}")]
    Namespace { path: PathBuf, source: io::Error },
    #[error("sysctl {path}: {source}")]
    Sysctl { path: PathBuf, source: io::Error },
    #[error("no free veth name for container {id:?}: all 16 candidates are taken")]
    NoVethName { id: String },
    #[error("bridge {bridge}: {reason}")]
    Bridge { bridge: String, reason: String },
    /// What an unprivileged berth cannot have (see `rootless::check_network`).
    #[error("{what} is refused: berth runs as {who}, and {reason}")]
    Rootless {
        what: String,
        who: String,
        reason: String,
    },
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
}

/// Claims what the container needs before its init exists: host and bridge mode reserve the
/// published host ports (refused with `RESOURCE:PORTS` when another berth container or a
/// listener on the host holds one), bridge mode also leases an address. None and join modes
/// hold nothing. A refusal leaves nothing behind.
pub fn reserve(root: &Path, id: &str, req: &NetworkRequest) -> Result<Reservation, NetworkError> {
    netdevices::check_present(root, &req.devices)?;
    bridge::reserve(root, id, req)
}

/// Claims again what a checkpointed container held (`previous`, from its state at checkpoint),
/// for its restore: the same ports and, in bridge mode, the same address, so the same MAC. A
/// port or the address held by someone else meanwhile is refused as in [`reserve`]; a refusal
/// leaves nothing behind.
pub fn reserve_again(
    root: &Path,
    id: &str,
    req: &NetworkRequest,
    previous: &NetworkState,
) -> Result<Reservation, NetworkError> {
    let wanted = previous
        .lease
        .as_ref()
        .filter(|lease| lease.bridge == req.bridge && req.mode == Mode::Bridge)
        .map(|lease| lease.address);
    bridge::reserve_address(root, id, req, wanted)
}

/// Wires the fresh, empty network namespace CRIU made for a restored container whose first
/// process is `pid`: `lo` up (CRIU restores none of the namespace's links), and in bridge mode
/// everything [`attach`] does, with the address and MAC of the reservation.
pub fn attach_restored(
    root: &Path,
    id: &str,
    req: &NetworkRequest,
    reservation: &Reservation,
    pid: i32,
) -> Result<NetworkState, NetworkError> {
    if req.needs_new_netns() && reservation.lease.is_none() {
        bridge::loopback_up(pid)?;
    }
    attach(root, id, req, reservation, pid)
}

/// Wires the container whose init is `pid`: in bridge mode, the bridge (made if missing), the
/// veth pair, `eth0` with its MAC, address and default route, `lo` up, ip_forward, masquerade
/// and the published ports; in any mode but host, the interfaces of `linux.netDevices`.
pub fn attach(
    root: &Path,
    id: &str,
    req: &NetworkRequest,
    reservation: &Reservation,
    pid: i32,
) -> Result<NetworkState, NetworkError> {
    if let Some(lease) = &reservation.lease {
        bridge::attach(root, lease, &reservation.ports, pid)?;
    }
    netdevices::attach(root, id, &req.devices, req.join_path(), pid)?;
    Ok(NetworkState {
        mode: req.mode.clone(),
        ports: reservation.ports.clone(),
        lease: reservation.lease.clone(),
    })
}

/// Undoes everything container `id` holds: the interfaces of `linux.netDevices` moved back to
/// the host from a namespace berth made (see `netdevices`), published-port rules, the host
/// veth, its lease and port reservations, and the bridge with its NAT rules once no berth
/// container uses it (the bridge itself only if berth made it and nothing is attached).
/// Idempotent.
///
/// Call it once the container's processes are gone. While other containers use the bridge, a
/// veth that is still there is left for the kernel to remove with the container's namespace,
/// and its address stays taken until the veth is seen gone (see `bridge::release_records`).
pub fn release(root: &Path, id: &str) -> Result<(), NetworkError> {
    netdevices::release(root, id, false)?;
    if bridge::release(root, id)? {
        cleaner::spawn(root);
    }
    Ok(())
}

/// [`release`] for a `create` that failed: the interfaces it moved into a namespace joined by
/// path come back too, since the container never came to be.
pub fn release_failed_create(root: &Path, id: &str) -> Result<(), NetworkError> {
    netdevices::release(root, id, true)?;
    if bridge::release(root, id)? {
        cleaner::spawn(root);
    }
    Ok(())
}
