//! The work behind `reserve`, `attach` and `release`: port reservations (host and bridge
//! mode), address leases, the bridge with its veth pairs, and teardown by container id.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::firewall;
use super::ipam::{self, Direction};
use super::netlink::Netlink;
use super::ports::held_ports;
use super::store::{BridgeRecord, LeaseRecord, Owner, PortRecord, Store};
use super::{Lease, Mode, NetworkError, NetworkRequest, PortMapping, Reservation};

pub(super) const MTU: u32 = 1500;
const CONTAINER_INTERFACE: &str = "eth0";
/// How long a deleted container's veth may outlive it before berth deletes it itself. The
/// kernel removes it with the container's network namespace within tens of milliseconds,
/// unless something else (a bind mount, a process that entered it) holds that namespace.
pub(super) const VETH_LINGER: Duration = Duration::from_secs(1);

pub fn reserve(root: &Path, id: &str, req: &NetworkRequest) -> Result<Reservation, NetworkError> {
    if !matches!(req.mode, Mode::Host | Mode::Bridge) {
        return Ok(Reservation {
            ports: Vec::new(),
            lease: None,
        });
    }
    if req.mode == Mode::Host {
        if let Some(mapping) = req.ports.iter().find(|p| p.host_port != p.container_port) {
            return Err(NetworkError::HostPortMismatch { mapping: *mapping });
        }
    }
    let store = Store::lock(root)?;
    reclaim(&store)?;
    check_ports_free(&store, &req.ports)?;
    let lease = match req.mode {
        Mode::Bridge => Some(choose_lease(&store, root, id, req)?),
        _ => None,
    };

    let owner = Owner::current();
    let published_to = lease
        .as_ref()
        .map(|lease| (lease.bridge.clone(), lease.address));
    let lease_record = lease.clone().map(|lease| LeaseRecord {
        id: id.to_string(),
        owner,
        lease,
        released_at: None,
    });
    let port_records: Vec<PortRecord> = req
        .ports
        .iter()
        .map(|mapping| PortRecord {
            id: id.to_string(),
            owner,
            mapping: *mapping,
            published_to: published_to.clone(),
        })
        .collect();
    if let Err(e) = write_records(&store, lease_record.as_ref(), &port_records) {
        // a refusal leaves nothing behind; the write error is the one to report
        for port in &port_records {
            let _ = store.remove_port(&port.mapping);
        }
        if let Some(record) = &lease_record {
            let _ = store.remove_lease(&record.lease);
        }
        return Err(e);
    }
    Ok(Reservation {
        ports: req.ports.clone(),
        lease,
    })
}

fn write_records(
    store: &Store,
    lease: Option<&LeaseRecord>,
    ports: &[PortRecord],
) -> Result<(), NetworkError> {
    if let Some(lease) = lease {
        store.put_lease(lease)?;
    }
    ports.iter().try_for_each(|port| store.put_port(port))
}

/// Refuses a port that another berth container holds or that has a listener on the host.
fn check_ports_free(store: &Store, ports: &[PortMapping]) -> Result<(), NetworkError> {
    if ports.is_empty() {
        return Ok(());
    }
    let records = store.ports()?;
    for mapping in ports {
        let same_port = |r: &&PortRecord| {
            r.mapping.host_port == mapping.host_port && r.mapping.protocol == mapping.protocol
        };
        let holder = match records.iter().find(same_port) {
            Some(record) => format!("container {:?}", record.id),
            None if held_ports(mapping.protocol)?.contains(&mapping.host_port) => {
                "a listener on the host".to_string()
            }
            None => continue,
        };
        return Err(NetworkError::PortInUse {
            port: mapping.host_port,
            protocol: mapping.protocol,
            holder,
        });
    }
    Ok(())
}

/// Picks the container's address: not leased, not on the bridge, not a neighbour seen on it.
/// On a bridge berth did not make (a running Docker's `docker0`), from the top of the subnet
/// down, clear of Docker's addresses, which it hands out from the bottom up.
fn choose_lease(
    store: &Store,
    root: &Path,
    id: &str,
    req: &NetworkRequest,
) -> Result<Lease, NetworkError> {
    let mut taken: HashSet<Ipv4Addr> = store
        .leases()?
        .into_iter()
        .filter(|record| record.lease.bridge == req.bridge)
        .map(|record| record.lease.address)
        .collect();
    let mut host = Netlink::open()?;
    let bridge = host.link(&req.bridge)?;
    if let Some(link) = &bridge {
        taken.extend(host.addresses(link.index)?.into_iter().map(|(ip, _)| ip));
        taken.extend(host.neighbours(link.index)?);
    }
    let host_veth = free_veth_name(store, &mut host, root, id)?;
    let made_by_berth = store
        .bridge(&req.bridge)?
        .is_some_and(|record| record.made_by_berth);
    let direction = if bridge.is_some() && !made_by_berth {
        Direction::Down
    } else {
        Direction::Up
    };
    let address = ipam::pick_address(req.subnet, &taken, direction).ok_or_else(|| {
        NetworkError::SubnetExhausted {
            subnet: req.subnet,
            bridge: req.bridge.clone(),
        }
    })?;
    Ok(Lease {
        bridge: req.bridge.clone(),
        subnet: req.subnet,
        address,
        gateway: req.subnet.gateway(),
        mac: ipam::format_mac(&ipam::mac_for(address)),
        host_veth,
    })
}

/// The first of the container's candidate veth names that neither another lease nor an
/// existing link uses, so that release never deletes a link that is not this container's.
fn free_veth_name(
    store: &Store,
    host: &mut Netlink,
    root: &Path,
    id: &str,
) -> Result<String, NetworkError> {
    let leased: HashSet<String> = store
        .leases()?
        .into_iter()
        .map(|record| record.lease.host_veth)
        .collect();
    for attempt in 0..16 {
        let name = veth_name(root, id, attempt);
        if !leased.contains(&name) && host.link(&name)?.is_none() {
            return Ok(name);
        }
    }
    Err(NetworkError::NoVethName { id: id.to_string() })
}

/// `veth` and 7 hex digits of an FNV-1a hash of the root, the id and, after a collision, the
/// attempt number: a container gets the same name each time, and it is kept in its lease.
pub fn veth_name(root: &Path, id: &str, attempt: u32) -> String {
    let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut input = root.into_os_string().into_encoded_bytes();
    input.push(0);
    input.extend(id.as_bytes());
    if attempt > 0 {
        input.extend(attempt.to_string().as_bytes());
    }
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("veth{:07x}", hash & 0x0fff_ffff)
}

pub fn attach(
    root: &Path,
    lease: &Lease,
    ports: &[PortMapping],
    pid: i32,
) -> Result<(), NetworkError> {
    let netns_path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let netns = File::open(&netns_path).map_err(|source| NetworkError::Namespace {
        path: netns_path.clone(),
        source,
    })?;
    let mut host = Netlink::open()?;
    let bridge_index = {
        let store = Store::lock(root)?;
        ensure_bridge(&store, &mut host, lease)?
    };
    let mac = ipam::mac_for(lease.address);
    host.create_veth(
        &lease.host_veth,
        bridge_index,
        MTU,
        CONTAINER_INTERFACE,
        mac,
        &netns,
    )?;

    let mut inside = Netlink::open_in(&netns, &netns_path)?;
    let missing = |name: &str| NetworkError::Namespace {
        path: netns_path.clone(),
        source: std::io::Error::other(format!("no {name} in the container's namespace")),
    };
    let eth0 = inside
        .link(CONTAINER_INTERFACE)?
        .ok_or_else(|| missing(CONTAINER_INTERFACE))?;
    inside.add_address(
        eth0.index,
        CONTAINER_INTERFACE,
        lease.address,
        lease.subnet.prefix_len(),
    )?;
    inside.set_up(eth0.index, CONTAINER_INTERFACE)?;
    let lo = inside.link("lo")?.ok_or_else(|| missing("lo"))?;
    if !lo.up {
        inside.set_up(lo.index, "lo")?;
    }
    inside.add_default_route(eth0.index, CONTAINER_INTERFACE, lease.gateway)?;

    write_sysctl(Path::new("/proc/sys/net/ipv4/ip_forward"))?;
    if !ports.is_empty() {
        // lets 127.0.0.1:HOSTPORT, DNATed to the container, leave through the bridge
        let localnet = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", lease.bridge);
        write_sysctl(Path::new(&localnet))?;
        firewall::publish(&lease.bridge, lease.address, ports)?;
    }
    Ok(())
}

/// Sets a boolean sysctl to 1 unless it is already.
fn write_sysctl(path: &Path) -> Result<(), NetworkError> {
    let sysctl_error = |source| NetworkError::Sysctl {
        path: path.to_path_buf(),
        source,
    };
    let current = fs::read_to_string(path).map_err(sysctl_error)?;
    if current.trim() != "1" {
        fs::write(path, "1").map_err(sysctl_error)?;
    }
    Ok(())
}

/// Makes the bridge if it is missing (up, MTU 1500, a fixed MAC), gives it the gateway address,
/// and installs its NAT rules once; returns its index. Called with the store locked, so
/// concurrent creates make the bridge once.
pub(super) fn ensure_bridge(
    store: &Store,
    host: &mut Netlink,
    lease: &Lease,
) -> Result<u32, NetworkError> {
    let name = &lease.bridge;
    let mut record = store.bridge(name)?;
    let link = match host.link(name)? {
        Some(link) => link,
        None => {
            host.create_bridge(name, MTU, random_mac()?)?;
            // written at once, so a berth killed from here on still knows whose bridge it is
            let made = BridgeRecord {
                made_by_berth: true,
                gateway_added: false,
                subnet: lease.subnet,
                nat: false,
            };
            store.put_bridge(name, &made)?;
            record = Some(made);
            host.link(name)?.ok_or_else(|| NetworkError::Bridge {
                bridge: name.clone(),
                reason: "it vanished right after it was made".to_string(),
            })?
        }
    };
    let before = record.clone();
    let mut record = record.unwrap_or(BridgeRecord {
        made_by_berth: false,
        gateway_added: false,
        subnet: lease.subnet,
        nat: false,
    });
    if !link.up {
        host.set_up(link.index, name)?;
    }
    let prefix_len = lease.subnet.prefix_len();
    if !host
        .addresses(link.index)?
        .contains(&(lease.gateway, prefix_len))
    {
        host.add_address(link.index, name, lease.gateway, prefix_len)?;
        record.gateway_added = !record.made_by_berth;
    }
    // the record says what berth made; the table is checked too, should someone have flushed
    // the ruleset since (one netlink round trip)
    if !record.nat || !firewall::exists(name)? {
        firewall::setup_bridge(name, lease.subnet)?;
        record.nat = true;
    }
    if before.as_ref() != Some(&record) {
        store.put_bridge(name, &record)?;
    }
    Ok(link.index)
}

/// A random, locally administered, unicast MAC address.
fn random_mac() -> Result<[u8; 6], NetworkError> {
    let path = Path::new("/dev/urandom");
    let mut mac = [0u8; 6];
    File::open(path)
        .and_then(|mut file| file.read_exact(&mut mac))
        .map_err(|source| NetworkError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

pub fn release(root: &Path, id: &str) -> Result<(), NetworkError> {
    let Some(store) = Store::lock_existing(root)? else {
        return Ok(());
    };
    // a released lease of an earlier container with the same id is not this one's
    let leases: Vec<LeaseRecord> = store
        .leases()?
        .into_iter()
        .filter(|record| record.id == id && record.released_at.is_none())
        .collect();
    let ports: Vec<PortRecord> = store
        .ports()?
        .into_iter()
        .filter(|record| record.id == id)
        .collect();
    release_records(&store, &leases, &ports)
}

/// Drops the records of containers that no longer exist, with whatever they still hold, and
/// settles released leases.
fn reclaim(store: &Store) -> Result<(), NetworkError> {
    let (released, held): (Vec<LeaseRecord>, Vec<LeaseRecord>) = store
        .leases()?
        .into_iter()
        .partition(|record| record.released_at.is_some());
    settle_released(store, &released)?;
    let leases: Vec<LeaseRecord> = held
        .into_iter()
        .filter(|record| !store.is_alive(&record.id, &record.owner))
        .collect();
    let ports: Vec<PortRecord> = store
        .ports()?
        .into_iter()
        .filter(|record| !store.is_alive(&record.id, &record.owner))
        .collect();
    if leases.is_empty() && ports.is_empty() {
        return Ok(());
    }
    release_records(store, &leases, &ports)
}

/// Forgets released leases whose veth the kernel has removed, and deletes the veths that
/// outlived their container by more than [`VETH_LINGER`].
fn settle_released(store: &Store, released: &[LeaseRecord]) -> Result<(), NetworkError> {
    if released.is_empty() {
        return Ok(());
    }
    let mut host = Netlink::open()?;
    let now = now_millis();
    for record in released {
        let since = now.saturating_sub(record.released_at.unwrap_or(0));
        if host.link(&record.lease.host_veth)?.is_some() {
            if since < VETH_LINGER.as_millis() as u64 {
                continue;
            }
            host.delete_link(&record.lease.host_veth)?;
        }
        store.remove_lease(&record.lease)?;
    }
    Ok(())
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Undoes what the records stand for, then forgets them: published ports first, then veths,
/// then the records, then any bridge no berth container uses any more.
///
/// The containers' processes are gone by now, so their network namespaces are going and the
/// kernel removes each veth with its namespace. Deleting a veth makes the kernel wait for RCU
/// grace periods (15 to 30 ms here), so while other containers use the bridge a veth still
/// there is left to the kernel and its lease kept as released, its address taken until
/// [`settle_released`] sees the veth gone. The last container on a bridge deletes its veth
/// and any released ones at once, so that the bridge can go with nothing left behind.
fn release_records(
    store: &Store,
    leases: &[LeaseRecord],
    ports: &[PortRecord],
) -> Result<(), NetworkError> {
    let mut published: BTreeMap<(String, Ipv4Addr), Vec<PortMapping>> = BTreeMap::new();
    for port in ports {
        if let Some(target) = &port.published_to {
            published
                .entry(target.clone())
                .or_default()
                .push(port.mapping);
        }
    }
    for ((bridge, address), mappings) in &published {
        // only a bridge whose table was made can have had ports published through it
        if store.bridge(bridge)?.is_some_and(|record| record.nat) {
            firewall::unpublish(bridge, *address, mappings)?;
        }
    }

    for port in ports {
        store.remove_port(&port.mapping)?;
    }

    let mut host = None;
    let before = store.leases()?;
    // a lease not being released and not released before: a container still on the bridge
    let in_use = |record: &LeaseRecord| {
        record.released_at.is_none() && !leases.iter().any(|gone| gone.lease == record.lease)
    };
    for record in leases {
        let host = match &mut host {
            Some(host) => host,
            None => host.insert(Netlink::open()?),
        };
        let shared = before
            .iter()
            .any(|other| other.lease.bridge == record.lease.bridge && in_use(other));
        if shared && host.link(&record.lease.host_veth)?.is_some() {
            store.put_lease(&LeaseRecord {
                released_at: Some(now_millis()),
                ..record.clone()
            })?;
        } else {
            host.delete_link(&record.lease.host_veth)?;
            store.remove_lease(&record.lease)?;
        }
    }

    let bridges: BTreeSet<&String> = leases
        .iter()
        .map(|record| &record.lease.bridge)
        .chain(published.keys().map(|(bridge, _)| bridge))
        .collect();
    let remaining = store.leases()?;
    for bridge in bridges {
        let on_bridge = || remaining.iter().filter(|r| &r.lease.bridge == bridge);
        if on_bridge().any(|record| record.released_at.is_none()) {
            continue;
        }
        let host = match &mut host {
            Some(host) => host,
            None => host.insert(Netlink::open()?),
        };
        for released in on_bridge() {
            host.delete_link(&released.lease.host_veth)?;
            store.remove_lease(&released.lease)?;
        }
        teardown_bridge(store, host, bridge)?;
    }
    Ok(())
}

/// Removes berth's NAT rules of a bridge no berth container uses, and the bridge itself if
/// berth made it and nothing is attached; on a bridge it did not make, the gateway address it
/// added.
fn teardown_bridge(store: &Store, host: &mut Netlink, name: &str) -> Result<(), NetworkError> {
    let Some(record) = store.bridge(name)? else {
        return Ok(());
    };
    if record.nat {
        firewall::teardown_bridge(name)?;
    }
    if let Some(link) = host.link(name)? {
        if record.made_by_berth {
            let attached = host
                .links()?
                .iter()
                .any(|other| other.controller == Some(link.index));
            if !attached {
                host.delete_link(name)?;
            }
        } else if record.gateway_added {
            let gateway = record.subnet.gateway();
            host.delete_address(link.index, name, gateway, record.subnet.prefix_len())?;
        }
    }
    store.remove_bridge(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_stable_and_short() {
        let root = Path::new("/run/berth-test-does-not-exist");
        let name = veth_name(root, "web", 0);
        // fixed, so the same root and id give the same name across berth versions
        assert_eq!(name, "veth1eda94e");
        assert_ne!(name, veth_name(root, "db", 0));
        assert_ne!(name, veth_name(root, "web", 1));
        assert_ne!(name, veth_name(Path::new("/run/other"), "web", 0));
        assert_eq!(name.len(), 11);
        assert!(name.starts_with("veth"));
        assert!(name[4..].chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn random_macs_are_local_unicast() {
        let mac = random_mac().unwrap();
        assert_eq!(mac[0] & 0x03, 0x02);
    }
}
