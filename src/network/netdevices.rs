//! `linux.netDevices` (runtime-spec 1.3): host interfaces moved into the container's network
//! namespace, renamed as asked, with their permanent addresses of global scope, and set up; and
//! given back to the host under their own names, with those addresses, at delete.
//!
//! runtime-spec leaves a moved interface to the kernel when the namespace goes: a physical one
//! returns to the *initial* namespace under its container name, a virtual one (veth, dummy,
//! macvlan) is deleted, and it asks runtimes not to move interfaces out before that. berth
//! gives them back where it owns the namespace, as the CNI host-device plugin does on DEL:
//! - in a namespace berth made for the container (none and bridge mode), berth is its owner:
//!   it pins the namespace (a bind mount under `<root>/.network/netns/`) so it outlives the
//!   container's processes, and `delete` moves each interface back, renamed to its host name,
//!   with its addresses and up if it was, before it lets the namespace go;
//! - in a namespace joined by path, its maker owns the interfaces once the container exists, as
//!   runtime-spec says; only a `create` that fails moves them back, as it undoes every step.
//!
//! A berth killed half-way leaves a record under `<root>/.network/devices/`; `delete --force`,
//! or the next create that moves an interface, gives the interfaces back from it.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::netlink::Netlink;
use super::store::{DevicesRecord, MovedDevice, Owner, Store};
use super::{Mode, NetworkError};

/// The name bridge mode gives the container's end of its veth.
const BRIDGE_INTERFACE: &str = "eth0";

/// One entry of `linux.netDevices`: the host's interface and its name in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDevice {
    pub host_name: String,
    /// The name asked for, the host's when none is; may be a template such as `eth%d`.
    pub name: String,
}

impl NetDevice {
    fn is_template(&self) -> bool {
        self.name.contains('%')
    }
}

/// Reads and checks `linux.netDevices`, sorted by host name. Refused: a name the kernel would
/// refuse, two entries that ask for the same name, the name bridge mode gives its veth, and any
/// entry where `mode` (said by `mode_source`) leaves the container the host's namespace.
pub fn from_spec(
    spec: &Spec,
    mode: &Mode,
    mode_source: &str,
) -> Result<Vec<NetDevice>, NetworkError> {
    let Some(entries) = spec.linux().as_ref().and_then(|l| l.net_devices().as_ref()) else {
        return Ok(Vec::new());
    };
    let mut devices: Vec<NetDevice> = entries
        .iter()
        .map(|(host_name, device)| NetDevice {
            host_name: host_name.clone(),
            name: device
                .name()
                .clone()
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| host_name.clone()),
        })
        .collect();
    devices.sort_by(|a, b| a.host_name.cmp(&b.host_name));
    if devices.is_empty() {
        return Ok(devices);
    }
    if *mode == Mode::Host {
        return Err(NetworkError::NetDevicesNeedNamespace {
            source_name: mode_source.to_string(),
        });
    }
    let mut names = BTreeSet::new();
    for device in &devices {
        check_name(&device.host_name, false)?;
        check_name(&device.name, true)?;
        let clash = |reason: &str| NetworkError::NetDeviceClash {
            host_name: device.host_name.clone(),
            name: device.name.clone(),
            reason: reason.to_string(),
        };
        if *mode == Mode::Bridge && device.name == BRIDGE_INTERFACE {
            return Err(clash("bridge mode gives that name to the container's veth"));
        }
        if !device.is_template() && !names.insert(device.name.as_str()) {
            return Err(clash("another entry asks for that name too"));
        }
    }
    Ok(devices)
}

/// What the kernel accepts as an interface name (`dev_valid_name`): 1 to 15 bytes, not `.` or
/// `..`, without `/`, `:` or white space; a container name may be a template with one `%d`.
fn check_name(name: &str, template: bool) -> Result<(), NetworkError> {
    let reason = if name.is_empty() || name.len() > 15 {
        Some("it must have 1 to 15 bytes")
    } else if name == "." || name == ".." {
        Some("it cannot be . or ..")
    } else if name.contains(['/', ':']) || name.chars().any(char::is_whitespace) {
        Some("it cannot hold '/', ':' or white space")
    } else if name.contains('%') && !(template && name.matches('%').count() == 1) {
        Some("only the name in the container may be a template, with one %d")
    } else if name.contains('%') && !name.contains("%d") {
        Some("a template has %d where the number goes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(NetworkError::NetDeviceName {
            name: name.to_string(),
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}

/// Before anything is made: gives back what containers that no longer exist still hold, then
/// refuses an interface the host does not have.
pub fn check_present(root: &Path, devices: &[NetDevice]) -> Result<(), NetworkError> {
    if devices.is_empty() {
        return Ok(());
    }
    let store = Store::lock(root)?;
    reclaim(&store)?;
    let mut host = Netlink::open()?;
    for device in devices {
        if host.link(&device.host_name)?.is_none() {
            return Err(NetworkError::NetDeviceMissing {
                name: device.host_name.clone(),
            });
        }
    }
    Ok(())
}

/// Moves the interfaces into the network namespace of the init `pid`: `joined` when it joined
/// one by path, else its own, which berth pins first. Each interface is set down, moved and
/// renamed in one request, given its addresses and set up. The record is written before each
/// step, so a berth killed half-way leaves enough to give the interfaces back.
pub fn attach(
    root: &Path,
    id: &str,
    devices: &[NetDevice],
    joined: Option<&Path>,
    pid: i32,
) -> Result<(), NetworkError> {
    if devices.is_empty() {
        return Ok(());
    }
    let store = Store::lock(root)?;
    let mut record = DevicesRecord {
        id: id.to_string(),
        owner: Owner::current(),
        netns: match joined {
            Some(path) => path.to_path_buf(),
            None => store.netns_pin(id)?,
        },
        joined: joined.is_some(),
        devices: Vec::new(),
    };
    store.put_devices(&record)?;
    if joined.is_none() {
        pin(&PathBuf::from(format!("/proc/{pid}/ns/net")), &record.netns)?;
    }
    let netns = open_namespace(&record.netns)?;
    let mut host = Netlink::open()?;
    let mut inside = Netlink::open_in(&netns, &record.netns)?;
    for device in devices {
        let failed = |source| NetworkError::NetDevice {
            name: device.host_name.clone(),
            source,
        };
        let link = host
            .link(&device.host_name)
            .map_err(failed)?
            .ok_or_else(|| NetworkError::NetDeviceMissing {
                name: device.host_name.clone(),
            })?;
        let clash = |reason: &str| NetworkError::NetDeviceClash {
            host_name: device.host_name.clone(),
            name: device.name.clone(),
            reason: reason.to_string(),
        };
        let before = match device.is_template() {
            true => names(inside.links().map_err(failed)?),
            false if inside.link(&device.name).map_err(failed)?.is_some() => {
                return Err(clash(
                    "the container's network namespace has an interface of that name",
                ))
            }
            false => BTreeSet::new(),
        };
        let addresses = host.permanent_addresses(link.index).map_err(failed)?;
        record.devices.push(MovedDevice {
            host_name: device.host_name.clone(),
            name: None,
            addresses: addresses.clone(),
            up: link.up,
            index: None,
            kind: None,
        });
        store.put_devices(&record)?;

        // Down while it moves, so nothing on the host uses it half-way (runc does the same).
        if link.up {
            host.set_down(link.index, &device.host_name)
                .map_err(failed)?;
        }
        if let Err(err) = host.move_link(link.index, &device.host_name, &device.name, &netns) {
            if link.up {
                let _ = host.set_up(link.index, &device.host_name);
            }
            return Err(match err.errno() {
                Some(libc::EEXIST) => {
                    clash("the container's network namespace has an interface of that name")
                }
                _ => failed(err),
            });
        }
        let moved = if device.is_template() {
            inside
                .links()
                .map_err(failed)?
                .into_iter()
                .find(|l| !before.contains(&l.name))
        } else {
            inside.link(&device.name).map_err(failed)?
        };
        let moved = moved.ok_or_else(|| {
            failed(super::NetlinkError::Kernel {
                action: format!("find {} in the container's namespace", device.name),
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })
        })?;
        if let Some(last) = record.devices.last_mut() {
            last.name = Some(moved.name.clone());
            last.index = Some(moved.index);
            last.kind = moved.kind.clone();
        }
        store.put_devices(&record)?;
        for address in &addresses {
            inside
                .add_interface_address(moved.index, &moved.name, address)
                .map_err(failed)?;
        }
        inside.set_up(moved.index, &moved.name).map_err(failed)?;
    }
    Ok(())
}

fn names(links: Vec<super::netlink::Link>) -> BTreeSet<String> {
    links.into_iter().map(|link| link.name).collect()
}

/// Gives back what container `id` holds: from berth's own namespace always, from a joined one
/// only when `joined_too` (a failed create). Then lets the namespace go and forgets the record.
pub fn release(root: &Path, id: &str, joined_too: bool) -> Result<(), NetworkError> {
    let Some(store) = Store::lock_existing(root)? else {
        return Ok(());
    };
    for record in store.devices()?.into_iter().filter(|r| r.id == id) {
        give_back(&store, &record, joined_too);
    }
    Ok(())
}

/// Gives back what records of containers that no longer exist hold.
fn reclaim(store: &Store) -> Result<(), NetworkError> {
    for record in store.devices()? {
        if !store.is_alive(&record.id, &record.owner) {
            give_back(store, &record, false);
        }
    }
    Ok(())
}

/// Moves each interface of `record` back to berth's namespace under its host name, with its
/// addresses, up if it was. What cannot come back is said and left to the kernel, which takes
/// it when the namespace goes: `delete` must not fail forever on an interface the container
/// renamed or deleted.
fn give_back(store: &Store, record: &DevicesRecord, joined_too: bool) {
    let warn = |what: &str, err: &dyn std::fmt::Display| {
        crate::logging::warn(&format!(
            "linux.netDevices of container {:?}: {what}: {err}",
            record.id
        ))
    };
    if !record.joined || joined_too {
        if let Err(err) = move_back(record) {
            warn("giving the interfaces back", &err);
        }
    }
    if !record.joined {
        if let Err(err) = unpin(&record.netns) {
            warn("letting its network namespace go", &err);
        }
    }
    if let Err(err) = store.remove_devices(&record.id) {
        warn("forgetting them", &err);
    }
}

fn move_back(record: &DevicesRecord) -> Result<(), NetworkError> {
    let netns = match open_namespace(&record.netns) {
        Ok(netns) => netns,
        // gone with its namespace: the kernel has taken the interfaces
        Err(_) if !record.netns.exists() => return Ok(()),
        Err(err) => return Err(err),
    };
    let home_path = Path::new("/proc/thread-self/ns/net");
    let home = open_namespace(home_path)?;
    let mut inside = Netlink::open_in(&netns, &record.netns)?;
    let mut host = Netlink::open()?;
    for device in record.devices.iter().rev() {
        let Some(name) = &device.name else { continue };
        let failed = |source| NetworkError::NetDevice {
            name: device.host_name.clone(),
            source,
        };
        // By the index it got when it moved in, and of the same kind: a container holding
        // CAP_NET_ADMIN may have renamed it and made an interface of its own under its name
        // (an ifb, a tap) for berth to hand the host under the host's name, with its addresses.
        let found = match device.index {
            Some(index) => inside
                .link_by_index(index)
                .map_err(failed)?
                .filter(|link| link.kind == device.kind),
            None => inside.link(name).map_err(failed)?,
        };
        let Some(link) = found else {
            crate::logging::warn(&format!(
                "linux.netDevices of container {:?}: {name} (the host's {}) is no longer in \
                 its network namespace",
                record.id, device.host_name
            ));
            continue;
        };
        let name = &link.name;
        inside.set_down(link.index, name).map_err(failed)?;
        let back = inside.move_link(link.index, name, &device.host_name, &home);
        if back.as_ref().err().and_then(|e| e.errno()) == Some(libc::EEXIST) {
            // the host has another interface of that name by now: the kernel's own fallback
            crate::logging::warn(&format!(
                "linux.netDevices of container {:?}: the host has another {} now, so it comes \
                 back as dev%d",
                record.id, device.host_name
            ));
            inside
                .move_link(link.index, name, "dev%d", &home)
                .map_err(failed)?;
        } else {
            back.map_err(failed)?;
        }
        // The kernel keeps an interface's index across namespaces where it is free.
        let returned = match host.link(&device.host_name).map_err(failed)? {
            Some(found) => Some(found),
            None => host.link_by_index(link.index).map_err(failed)?,
        };
        let Some(returned) = returned else { continue };
        for address in &device.addresses {
            match host.add_interface_address(returned.index, &returned.name, address) {
                Err(e) if e.errno() != Some(libc::EEXIST) => return Err(failed(e)),
                _ => {}
            }
        }
        if device.up {
            host.set_up(returned.index, &returned.name)
                .map_err(failed)?;
        }
    }
    Ok(())
}

fn open_namespace(path: &Path) -> Result<File, NetworkError> {
    File::open(path).map_err(|source| NetworkError::Namespace {
        path: path.to_path_buf(),
        source,
    })
}

/// Keeps the namespace `source` alive at `target` (a bind mount) until [`unpin`].
fn pin(source: &Path, target: &Path) -> Result<(), NetworkError> {
    let failed = |source: io::Error| NetworkError::Namespace {
        path: target.to_path_buf(),
        source,
    };
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(target)
        .map_err(failed)?;
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|errno| failed(errno.into()))
}

fn unpin(target: &Path) -> Result<(), NetworkError> {
    let failed = |source: io::Error| NetworkError::Namespace {
        path: target.to_path_buf(),
        source,
    };
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(errno) => return Err(failed(errno.into())),
    }
    match fs::remove_file(target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(failed(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(devices: &str, namespaces: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.3.0","linux":{{"namespaces":[{namespaces}],"netDevices":{devices}}}}}"#
        ))
        .unwrap()
    }

    const OWN: &str = r#"{"type":"network"}"#;

    #[test]
    fn entries_are_read_sorted_with_the_host_name_by_default() {
        let devices = from_spec(
            &spec(
                r#"{"eth1":{"name":"ctr0"},"dummy0":{},"eth2":{"name":""}}"#,
                OWN,
            ),
            &Mode::None,
            "",
        )
        .unwrap();
        let pairs: Vec<(&str, &str)> = devices
            .iter()
            .map(|d| (d.host_name.as_str(), d.name.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("dummy0", "dummy0"), ("eth1", "ctr0"), ("eth2", "eth2")]
        );
        assert!(from_spec(&spec("{}", OWN), &Mode::Host, "")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn host_mode_has_no_namespace_to_move_into() {
        let err = from_spec(
            &spec(r#"{"dummy0":{}}"#, ""),
            &Mode::Host,
            "config.json linux.namespaces",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("linux.netDevices"), "{err}");
        assert!(
            err.contains("config.json linux.namespaces gives host mode"),
            "{err}"
        );
    }

    #[test]
    fn bad_and_clashing_names_are_refused() {
        let refused = |devices: &str, mode: Mode, words: &[&str]| {
            let err = from_spec(&spec(devices, OWN), &mode, "")
                .unwrap_err()
                .to_string();
            for word in words {
                assert!(err.contains(word), "{devices}: {err:?} lacks {word:?}");
            }
        };
        refused(r#"{"a-very-long-name0":{}}"#, Mode::None, &["1 to 15"]);
        refused(r#"{"d0":{"name":"a/b"}}"#, Mode::None, &["\"a/b\"", "'/'"]);
        refused(r#"{"d0":{"name":"a b"}}"#, Mode::None, &["white space"]);
        refused(r#"{"d0":{"name":".."}}"#, Mode::None, &[". or .."]);
        refused(r#"{"d%d":{}}"#, Mode::None, &["template"]);
        refused(r#"{"d0":{"name":"e%d%d"}}"#, Mode::None, &["one %d"]);
        refused(r#"{"d0":{"name":"e%s"}}"#, Mode::None, &["%d"]);
        refused(
            r#"{"d0":{"name":"x"},"d1":{"name":"x"}}"#,
            Mode::None,
            &["\"d1\"", "\"x\"", "another entry"],
        );
        refused(r#"{"d0":{"name":"eth0"}}"#, Mode::Bridge, &["veth"]);
        // eth0 is free without bridge mode, and templates may repeat
        from_spec(&spec(r#"{"d0":{"name":"eth0"}}"#, OWN), &Mode::None, "").unwrap();
        let templates = r#"{"d0":{"name":"c%d"},"d1":{"name":"c%d"}}"#;
        from_spec(&spec(templates, OWN), &Mode::Bridge, "").unwrap();
    }
}
