//! The work behind `reserve`, `attach` and `release`: port reservations (host and bridge
//! mode), address leases, the bridge with its veth pairs, and teardown by container id.
//!
//! What lives how long, and why (measured on Linux 6.18, see README "What bridge mode costs"):
//! - Per container: its lease, port records, the DNAT map elements, the neighbour entry that
//!   claims its address, and its veth. All of it goes at `delete`; the veth goes with the
//!   container's network namespace (the kernel removes it; deleting it here waits 17 to 22 ms
//!   for RCU grace periods).
//! - Per bridge: the bridge berth made, its nftables tables, `route_localnet` (ports on
//!   127.0.0.1) and the accept rules in a host firewall that drops forwarding, while any
//!   container uses it. `route_localnet` goes at once with the last published port; the rest
//!   goes with the cleaner that the last container's `delete` forks off (see `cleaner`), since
//!   deleting the bridge waits 33 to 48 ms for RCU grace periods, and any nf_tables deletion
//!   one more (about 15 ms, paid when the netlink socket closes, since Linux flushes the
//!   transaction's pending destruction there). The cleaner waits 50 ms first, so a container
//!   run right after keeps the bridge.
//!
//! Crash safety: a record is written before the kernel state it stands for (a lease before its
//! address claim and its veth, a port record before its map element, a bridge record before
//! the forwarding rules). The kernel's own changes are atomic (one netlink request
//! or one nf_tables transaction each). So whatever berth was doing when it was killed, the
//! records say what may exist, and `release` (at `delete --force`, or through `reclaim` at the
//! next `create`) undoes it, each step finding "already gone" fine. A bridge record with no
//! container of its `--root` left makes the next `create` or `delete` that sees it fork the
//! cleaner again, so a cleaner killed half-way is finished by the next command.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::firewall;
use super::ipam::{self, Direction};
use super::netlink::{index_of, Netlink};
use super::ports::held_ports;
use super::store::{BridgeRecord, LeaseRecord, Owner, PortRecord, Store};
use super::{Ipv4Net, Lease, Mode, NetworkError, NetworkRequest, PortMapping, Reservation};

pub(super) const MTU: u32 = 1500;
const CONTAINER_INTERFACE: &str = "eth0";
/// How long a deleted container's veth may outlive it before berth deletes it itself. The
/// kernel removes it with the container's network namespace within tens of milliseconds,
/// unless something else (a bind mount, a process that entered it) holds that namespace.
pub(super) const VETH_LINGER: Duration = Duration::from_secs(1);

pub fn reserve(root: &Path, id: &str, req: &NetworkRequest) -> Result<Reservation, NetworkError> {
    reserve_address(root, id, req, None)
}

/// `reserve`, with the bridge-mode address given (`wanted`: a restored container gets back the
/// address it had) or picked (`None`).
pub fn reserve_address(
    root: &Path,
    id: &str,
    req: &NetworkRequest,
    wanted: Option<Ipv4Addr>,
) -> Result<Reservation, NetworkError> {
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
    let bridge = (req.mode == Mode::Bridge).then_some(req.bridge.as_str());
    let idle = reclaim(&store, bridge)?;
    check_ports_free(&store, &req.ports)?;
    let owner = Owner::current();
    let lease = match req.mode {
        Mode::Bridge => Some(claim_lease(&store, root, id, req, owner, wanted)?),
        _ => None,
    };
    if lease.is_some() && !req.ports.is_empty() {
        if let Err(e) = enable_localnet(&store, &req.bridge) {
            let leases: Vec<LeaseRecord> = store
                .leases()?
                .into_iter()
                .filter(|record| record.id == id && record.released_at.is_none())
                .collect();
            let _ = release_records(&store, &leases, &[]);
            return Err(e);
        }
    }
    let published_to = lease
        .as_ref()
        .map(|lease| (lease.bridge.clone(), lease.address));
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
    if let Err(e) = port_records
        .iter()
        .try_for_each(|port| store.put_port(port))
    {
        // a refusal leaves nothing behind; the write error is the one to report
        let leases: Vec<LeaseRecord> = store
            .leases()
            .unwrap_or_default()
            .into_iter()
            .filter(|record| record.id == id && record.released_at.is_none())
            .collect();
        let _ = release_records(&store, &leases, &port_records);
        return Err(e);
    }
    drop(store);
    if idle {
        // another bridge of this --root that a killed berth or cleaner left idle
        super::cleaner::spawn(root);
    }
    Ok(Reservation {
        ports: req.ports.clone(),
        lease,
    })
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

/// Leases the container an address on its bridge, which is made if it is missing: not leased
/// here, not on the bridge, not a neighbour seen on it; on a bridge berth did not make (a
/// running Docker's `docker0`), from the top of the subnet down, clear of Docker's addresses,
/// which it hands out from the bottom up.
///
/// The address is claimed in the kernel too, with a permanent neighbour entry made only if
/// none exists: another `--root` on the same bridge keeps its leases in a store of its own,
/// but sees that entry among the bridge's neighbours, and of two berths racing for one address
/// only one makes it; the other drops its lease record and picks again.
///
/// A `wanted` address (a restore's) is claimed as it is, or refused when it is leased, on the
/// bridge, or claimed in the kernel by another berth. A neighbour entry the kernel learnt for it
/// (the checkpointed container's own, from traffic before the checkpoint) is no claim: it is
/// replaced by the permanent one.
fn claim_lease(
    store: &Store,
    root: &Path,
    id: &str,
    req: &NetworkRequest,
    owner: Owner,
    wanted: Option<Ipv4Addr>,
) -> Result<Lease, NetworkError> {
    let mut host = Netlink::open()?;
    let bridge = ensure_bridge(store, &mut host, &req.bridge, req.subnet)?;
    crate::fault::point("reserve:bridge");
    let mut taken: HashSet<Ipv4Addr> = store
        .leases()?
        .into_iter()
        .filter(|record| record.lease.bridge == req.bridge)
        .map(|record| record.lease.address)
        .collect();
    taken.extend(host.addresses(bridge)?.into_iter().map(|(ip, _)| ip));
    let taken_by = |address| NetworkError::AddressTaken {
        address,
        bridge: req.bridge.clone(),
        subnet: req.subnet,
    };
    match wanted {
        Some(address) => {
            taken.extend(host.claimed_neighbours(bridge)?);
            if taken.contains(&address) || !req.subnet.contains(address) {
                return Err(taken_by(address));
            }
            host.delete_neighbour(bridge, &req.bridge, address)?;
        }
        None => taken.extend(host.neighbours(bridge)?),
    }
    let host_veth = free_veth_name(store, root, id)?;
    // the anti-spoofing elements of veths that are gone, swept once enough have gathered
    let live = host.links()?.into_iter().map(|link| link.index).collect();
    firewall::sweep(&req.bridge, &live)?;
    let made_by_berth = store
        .bridge(&req.bridge)?
        .is_some_and(|record| record.made_by_berth);
    let direction = match made_by_berth {
        true => Direction::Up,
        false => Direction::Down,
    };
    loop {
        let address = match wanted {
            Some(address) => address,
            None => ipam::pick_address(req.subnet, &taken, direction).ok_or_else(|| {
                NetworkError::SubnetExhausted {
                    subnet: req.subnet,
                    bridge: req.bridge.clone(),
                }
            })?,
        };
        let mac = ipam::mac_for(address);
        let lease = Lease {
            bridge: req.bridge.clone(),
            subnet: req.subnet,
            address,
            gateway: req.subnet.gateway(),
            mac: ipam::format_mac(&mac),
            host_veth: host_veth.clone(),
        };
        // the record first, so that a berth killed from here on leaves nothing it does not name
        store.put_lease(&LeaseRecord {
            id: id.to_string(),
            owner,
            lease: lease.clone(),
            released_at: None,
        })?;
        crate::fault::point("reserve:lease");
        match host.claim_neighbour(bridge, &req.bridge, address, mac) {
            Ok(()) => return Ok(lease),
            // another berth claimed it since the neighbours were read
            Err(e) if e.errno() == Some(libc::EEXIST) => {
                store.remove_lease(&lease)?;
                if wanted.is_some() {
                    return Err(taken_by(address));
                }
                taken.insert(address);
            }
            Err(e) => {
                store.remove_lease(&lease)?;
                return Err(e.into());
            }
        }
    }
}

/// The first of the container's candidate veth names that neither another lease nor an
/// existing link uses, so that release never deletes a link that is not this container's.
fn free_veth_name(store: &Store, root: &Path, id: &str) -> Result<String, NetworkError> {
    let leased: HashSet<String> = store
        .leases()?
        .into_iter()
        .map(|record| record.lease.host_veth)
        .collect();
    for attempt in 0..16 {
        let name = veth_name(root, id, attempt);
        if !leased.contains(&name) && index_of(&name)?.is_none() {
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
    _root: &Path,
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
    let bridge = index_of(&lease.bridge)?.ok_or_else(|| NetworkError::Bridge {
        bridge: lease.bridge.clone(),
        reason: "it is gone since the container's address was leased".to_string(),
    })?;
    let mac = ipam::mac_for(lease.address);
    host.create_veth(
        &lease.host_veth,
        bridge,
        MTU,
        CONTAINER_INTERFACE,
        mac,
        &netns,
    )?;
    // the container's eth0 is still down: its first frame meets the anti-spoofing rules
    let veth = index_of(&lease.host_veth)?.ok_or_else(|| NetworkError::Bridge {
        bridge: lease.bridge.clone(),
        reason: format!("veth {} vanished right after it was made", lease.host_veth),
    })?;
    crate::fault::point("attach:veth");
    firewall::admit(&lease.bridge, veth, mac, lease.address)?;

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

    write_sysctl(Path::new("/proc/sys/net/ipv4/ip_forward"), "1")?;
    if !ports.is_empty() {
        firewall::publish(&lease.bridge, lease.address, ports)?;
    }
    Ok(())
}

/// Brings `lo` up in the network namespace of `pid`.
pub fn loopback_up(pid: i32) -> Result<(), NetworkError> {
    let netns_path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let netns = File::open(&netns_path).map_err(|source| NetworkError::Namespace {
        path: netns_path.clone(),
        source,
    })?;
    let mut inside = Netlink::open_in(&netns, &netns_path)?;
    let lo = inside.link("lo")?.ok_or_else(|| NetworkError::Namespace {
        path: netns_path.clone(),
        source: std::io::Error::other("no lo in the container's namespace"),
    })?;
    if !lo.up {
        inside.set_up(lo.index, "lo")?;
    }
    Ok(())
}

/// Sets a sysctl to `value` unless it has it already.
fn write_sysctl(path: &Path, value: &str) -> Result<(), NetworkError> {
    let sysctl_error = |source| NetworkError::Sysctl {
        path: path.to_path_buf(),
        source,
    };
    let current = fs::read_to_string(path).map_err(sysctl_error)?;
    if current.trim() != value {
        fs::write(path, value).map_err(sysctl_error)?;
    }
    Ok(())
}

/// Turns on `route_localnet` on the bridge, which lets 127.0.0.1:HOSTPORT, DNATed to a
/// container, leave through it; recorded first, so that it is turned off again whatever
/// happens next.
fn enable_localnet(store: &Store, name: &str) -> Result<(), NetworkError> {
    let mut record = store.bridge(name)?.ok_or_else(|| NetworkError::Bridge {
        bridge: name.to_string(),
        reason: "berth has no record of it".to_string(),
    })?;
    if !record.localnet {
        record.localnet = true;
        store.put_bridge(name, &record)?;
    }
    let path = format!("/proc/sys/net/ipv4/conf/{name}/route_localnet");
    write_sysctl(Path::new(&path), "1")
}

/// Makes the bridge if it is missing (up, MTU 1500, a fixed MAC), gives it the gateway address,
/// and makes its nftables table once; returns its index. Called with the store locked, so the
/// creates of one `--root` make the bridge once; a bridge another `--root` made at the same
/// moment is taken as found.
pub(super) fn ensure_bridge(
    store: &Store,
    host: &mut Netlink,
    name: &str,
    subnet: Ipv4Net,
) -> Result<u32, NetworkError> {
    let mut record = store.bridge(name)?;
    let index = match index_of(name)? {
        Some(index) => {
            // a no-op when it is up already
            host.set_up(index, name)?;
            index
        }
        None => {
            // recorded first, so that a berth killed from here on leaves a record of the bridge
            // it may have made, and the cleaner takes it down
            let mut made = record.clone().unwrap_or(BridgeRecord {
                made_by_berth: true,
                gateway_added: false,
                subnet,
                nat: false,
                localnet: false,
                forward: None,
            });
            made.made_by_berth = true;
            store.put_bridge(name, &made)?;
            match host.create_bridge(name, MTU, random_mac()?) {
                Ok(()) => {}
                // another --root made it meanwhile: it is theirs
                Err(e) if e.errno() == Some(libc::EEXIST) => {
                    made.made_by_berth = false;
                    store.put_bridge(name, &made)?;
                }
                Err(e) => return Err(e.into()),
            }
            record = Some(made);
            index_of(name)?.ok_or_else(|| NetworkError::Bridge {
                bridge: name.to_string(),
                reason: "it vanished right after it was made".to_string(),
            })?
        }
    };
    let before = record.clone();
    let mut record = record.unwrap_or(BridgeRecord {
        made_by_berth: false,
        gateway_added: false,
        subnet,
        nat: false,
        localnet: false,
        forward: None,
    });
    if before.is_none() {
        // recorded before berth changes anything on it, as everything else
        store.put_bridge(name, &record)?;
    }
    let gateway = subnet.gateway();
    let prefix_len = subnet.prefix_len();
    if !host.addresses(index)?.contains(&(gateway, prefix_len)) {
        let added_before = record.gateway_added;
        if !record.made_by_berth && !added_before {
            record.gateway_added = true;
            store.put_bridge(name, &record)?;
        }
        match host.add_address(index, name, gateway, prefix_len) {
            Ok(()) => {}
            // another --root added it meanwhile
            Err(e) if e.errno() == Some(libc::EEXIST) => record.gateway_added = added_before,
            Err(e) => return Err(e.into()),
        }
    }
    // the table is looked for each time (one netlink round trip): another --root may have
    // made it, or someone flushed the ruleset since
    if !firewall::exists(name)? {
        firewall::setup_bridge(name, subnet)?;
    }
    record.nat = true;
    if record.forward.is_none() {
        if let Some(flavour) = firewall::forward_drops()? {
            // recorded first, so that the rules go again whatever happens next
            record.forward = Some(flavour);
            store.put_bridge(name, &record)?;
            firewall::open_forwarding(flavour, name)?;
        }
    }
    if before.as_ref() != Some(&record) {
        store.put_bridge(name, &record)?;
    }
    Ok(index)
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

/// Releases what container `id` holds; returns whether the cleaner is due (see
/// [`settle_bridges`]).
pub fn release(root: &Path, id: &str) -> Result<bool, NetworkError> {
    let Some(store) = Store::lock_existing(root)? else {
        return Ok(false);
    };
    // released leases of earlier containers whose veth is gone are settled on the way
    let (released, held): (Vec<LeaseRecord>, Vec<LeaseRecord>) = store
        .leases()?
        .into_iter()
        .partition(|record| record.released_at.is_some());
    settle_released(&store, &released)?;
    // a released lease of an earlier container with the same id is not this one's
    let leases: Vec<LeaseRecord> = held.into_iter().filter(|r| r.id == id).collect();
    let ports: Vec<PortRecord> = store
        .ports()?
        .into_iter()
        .filter(|record| record.id == id)
        .collect();
    release_records(&store, &leases, &ports)?;
    settle_bridges(&store, None)
}

/// Drops the records of containers that no longer exist, with whatever they still hold, and
/// settles released leases and the bridges but `except`; returns whether the cleaner is due.
fn reclaim(store: &Store, except: Option<&str>) -> Result<bool, NetworkError> {
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
    release_records(store, &leases, &ports)?;
    settle_bridges(store, except)
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
        if index_of(&record.lease.host_veth)?.is_some() {
            if since < VETH_LINGER.as_millis() as u64 {
                continue;
            }
            host.delete_link(&record.lease.host_veth)?;
        }
        forget_lease(store, &mut host, record)?;
    }
    Ok(())
}

/// Removes a lease's claim on its address, then the lease.
fn forget_lease(
    store: &Store,
    host: &mut Netlink,
    record: &LeaseRecord,
) -> Result<(), NetworkError> {
    let lease = &record.lease;
    if let Some(bridge) = index_of(&lease.bridge)? {
        host.delete_neighbour(bridge, &lease.bridge, lease.address)?;
    }
    store.remove_lease(lease)
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Undoes what the records stand for, then forgets them: published ports first, then veths
/// and leases, then what the bridge holds only while containers use it.
///
/// The containers' processes are gone by now, so their network namespaces are going and the
/// kernel removes each veth with its namespace. Deleting a veth makes the kernel wait for RCU
/// grace periods (17 to 22 ms here), so a veth still there is left to the kernel and its lease
/// kept as released, its address taken until [`settle_released`] sees the veth gone.
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
    crate::fault::point("release:ports");
    for port in ports {
        store.remove_port(&port.mapping)?;
    }

    let mut host = None;
    for record in leases {
        let host = match &mut host {
            Some(host) => host,
            None => host.insert(Netlink::open()?),
        };
        if index_of(&record.lease.host_veth)?.is_some() {
            store.put_lease(&LeaseRecord {
                released_at: Some(now_millis()),
                ..record.clone()
            })?;
        } else {
            forget_lease(store, host, record)?;
        }
    }

    Ok(())
}

/// Settles every bridge berth keeps a record of but `except` (the one a `create` is about to
/// use): so whatever a killed berth left on a bridge goes with the next command that finds no
/// container on it, not only with the release of a container of that bridge. Returns whether
/// one of them has no container of this `--root` on it any more: then the cleaner is due.
fn settle_bridges(store: &Store, except: Option<&str>) -> Result<bool, NetworkError> {
    let mut idle = false;
    for name in store.bridge_names()? {
        if Some(name.as_str()) != except {
            idle |= settle_bridge(store, &name)?;
        }
    }
    Ok(idle)
}

/// Turns `route_localnet` off once no port is published through the bridge (an `echo` into
/// /proc, so at once); returns whether no container of this `--root` uses the bridge any more.
/// The rest of what the bridge holds for its containers goes with the cleaner (see
/// [`clean_idle`]), since removing it waits for the kernel's grace periods.
fn settle_bridge(store: &Store, name: &str) -> Result<bool, NetworkError> {
    let Some(mut record) = store.bridge(name)? else {
        return Ok(false);
    };
    let publishing = store
        .ports()?
        .iter()
        .any(|port| port.published_to.as_ref().is_some_and(|(b, _)| b == name));
    if record.localnet && !publishing {
        localnet_off(name)?;
        record.localnet = false;
        store.put_bridge(name, &record)?;
    }
    let in_use = store
        .leases()?
        .iter()
        .any(|lease| lease.lease.bridge == name && lease.released_at.is_none());
    Ok(!in_use)
}

/// Turns `route_localnet` off unless another `--root` still publishes a port through the same
/// table; a bridge that is gone took its setting with it.
fn localnet_off(name: &str) -> Result<(), NetworkError> {
    if firewall::published_count(name)? > 0 {
        return Ok(());
    }
    let path = format!("/proc/sys/net/ipv4/conf/{name}/route_localnet");
    match write_sysctl(Path::new(&path), "0") {
        Err(NetworkError::Sysctl { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(())
        }
        other => other,
    }
}

/// The cleaner's work (see `cleaner`), with the store locked: settles released leases, then
/// takes down each bridge no container of this `--root` uses, unless one came meanwhile.
/// Returns whether a bridge still waits for the veth of a deleted container to go (the kernel
/// removes it with the container's namespace), so that the cleaner should look again.
pub fn clean_idle(root: &Path) -> Result<bool, NetworkError> {
    let Some(store) = Store::lock_if_present(root)? else {
        return Ok(false);
    };
    let released: Vec<LeaseRecord> = store
        .leases()?
        .into_iter()
        .filter(|record| record.released_at.is_some())
        .collect();
    settle_released(&store, &released)?;
    let leases = store.leases()?;
    let mut waiting = false;
    for name in store.bridge_names()? {
        let on_bridge = leases.iter().filter(|lease| lease.lease.bridge == name);
        match on_bridge.map(|lease| lease.released_at.is_some()).min() {
            // a container uses it: it stays
            Some(false) => {}
            // only veths of deleted containers, still going
            Some(true) => waiting = true,
            None => teardown(&store, &name)?,
        }
    }
    Ok(waiting)
}

/// Removes what berth holds on a bridge that no container of this `--root` uses: the accept
/// rules in a host firewall that drops forwarding, `route_localnet`, and then, unless a
/// container of another `--root` is on it (a veth berth admitted, a port published), the gateway
/// address berth put on a bridge it did not make, both tables, and the bridge berth made if
/// nothing is attached to it. Each step takes "already gone" as done, and the record goes last,
/// so a berth killed half-way leaves a record that says what may be left.
fn teardown(store: &Store, name: &str) -> Result<(), NetworkError> {
    let Some(record) = store.bridge(name)? else {
        return Ok(());
    };
    if let Some(flavour) = record.forward {
        firewall::close_forwarding(flavour, name)?;
    }
    crate::fault::point("clean:forwarding");
    localnet_off(name)?;
    let mut host = Netlink::open()?;
    let index = index_of(name)?;
    let attached: Vec<u32> = match index {
        Some(index) => host
            .links()?
            .iter()
            .filter(|link| link.controller == Some(index))
            .map(|link| link.index)
            .collect(),
        None => Vec::new(),
    };
    // a veth berth admitted that is still on the bridge, or a port published: a container of
    // another --root, which keeps the bridge and its tables; this root's next command looks
    // again
    let admitted = firewall::admitted(name)?;
    if attached.iter().any(|link| admitted.contains(link)) || firewall::published_count(name)? > 0 {
        if record.forward.is_some() {
            let record = BridgeRecord {
                forward: None,
                ..record
            };
            store.put_bridge(name, &record)?;
        }
        return Ok(());
    }
    if let (Some(index), true) = (index, record.gateway_added) {
        let (gateway, prefix_len) = (record.subnet.gateway(), record.subnet.prefix_len());
        host.delete_address(index, name, gateway, prefix_len)?;
    }
    firewall::teardown_bridge(name)?;
    crate::fault::point("clean:tables");
    if let (Some(_), true) = (index, record.made_by_berth) {
        if !attached.is_empty() {
            // a port someone else put there: the bridge stays while it does
            return Ok(());
        }
        host.delete_link(name)?;
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
