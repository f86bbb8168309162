//! The network store under `<root>/.network/`: address leases, port reservations and what berth
//! did to each bridge, one JSON file each, all under one folder-wide file lock.
//!
//! ```text
//! <root>/.network/lock
//! <root>/.network/leases/<bridge>/<address>
//! <root>/.network/ports/<protocol>-<host port>
//! <root>/.network/bridges/<bridge>
//! <root>/.network/devices/<container id>
//! <root>/.network/netns/<container id>      (a bind mount holding a container's namespace)
//! ```
//!
//! Crash safety: every record is written to `NAME.tmp` and renamed over `NAME` with the lock
//! held, so a record is either whole or absent. A `.tmp` file can only be the leftover of a
//! berth killed between the two, since no one else writes while the lock is held: whoever
//! takes the lock next removes them ([`Store::lock`]). A whole record of a container that is
//! gone (its state folder absent and its maker not running) is reclaimed by the next `create`
//! in bridge or host mode (`bridge::reclaim`), and by `delete` through `release`.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::netlink::InterfaceAddress;
use super::{Ipv4Net, Lease, NetworkError, PortMapping};

/// The process that made a record, so that a record made during a `create` that has not yet
/// written the container's state folder is not mistaken for a leftover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`, which tells a reused pid from the original process.
    pub start_time: u64,
}

impl Owner {
    pub fn current() -> Owner {
        let pid = std::process::id() as i32;
        Owner {
            pid,
            start_time: process_start_time(pid).unwrap_or(0),
        }
    }

    fn is_running(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time)
    }
}

fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name in parentheses may hold spaces; the fields after it are plain
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub id: String,
    pub owner: Owner,
    pub lease: Lease,
    /// When the container was deleted (milliseconds since the epoch) while its veth was still
    /// there: the kernel removes the veth with the container's network namespace, and until
    /// it is seen gone, the record keeps its address and veth name taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRecord {
    pub id: String,
    pub owner: Owner,
    pub mapping: PortMapping,
    /// In bridge mode, the bridge and container address the port is published to.
    pub published_to: Option<(String, Ipv4Addr)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeRecord {
    /// berth created the bridge, so berth removes it once nothing is attached.
    pub made_by_berth: bool,
    /// berth put the gateway address on a bridge it did not make.
    pub gateway_added: bool,
    pub subnet: Ipv4Net,
    /// berth's firewall table for this bridge exists (masquerade and published ports).
    pub nat: bool,
    /// berth turned on `route_localnet` on the bridge (for ports published on 127.0.0.1).
    #[serde(default)]
    pub localnet: bool,
    /// berth added accept rules for the bridge to this iptables' FORWARD chain, whose policy
    /// drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<super::firewall::Iptables>,
}

/// The host interfaces berth moved into a container's network namespace (`linux.netDevices`),
/// to give back at delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicesRecord {
    pub id: String,
    pub owner: Owner,
    /// The container's network namespace: berth's pin of it, or the path the container joined.
    pub netns: PathBuf,
    /// Whether the container joined that namespace by path (it is then its maker's).
    pub joined: bool,
    pub devices: Vec<MovedDevice>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedDevice {
    /// Its name on the host, which it gets back.
    pub host_name: String,
    /// Its name in the container once moved; `None` until then.
    pub name: Option<String>,
    /// Its permanent addresses of global scope on the host, kept on both sides.
    pub addresses: Vec<InterfaceAddress>,
    /// Whether it was up on the host.
    pub up: bool,
    /// Its index and kind in the container's namespace once moved: what `delete` gives back
    /// is the interface of that index and kind, whatever the container named it, never
    /// another interface the container made and gave its name.
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub kind: Option<String>,
}

/// The locked store; the lock is held until it is dropped.
pub struct Store {
    root: PathBuf,
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Store {
    /// Locks the store, making its folders if they are missing.
    pub fn lock(root: &Path) -> Result<Store, NetworkError> {
        let dir = root.join(".network");
        for sub in ["leases", "ports", "bridges"] {
            let path = dir.join(sub);
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(|source| NetworkError::Store { path, source })?;
        }
        Self::lock_dir(root, dir)
    }

    /// Locks the store if there is one; `None` means berth holds nothing under `root`.
    pub fn lock_existing(root: &Path) -> Result<Option<Store>, NetworkError> {
        let dir = root.join(".network");
        if !dir.is_dir() {
            return Ok(None);
        }
        Self::lock_dir(root, dir).map(Some)
    }

    /// Locks the store only if its lock file is there, making nothing: what the network cleaner
    /// takes, which may come after whoever made `root` has removed it.
    pub fn lock_if_present(root: &Path) -> Result<Option<Store>, NetworkError> {
        let dir = root.join(".network");
        match OpenOptions::new().write(true).open(dir.join("lock")) {
            Ok(file) => Self::lock_file(root, dir, file).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(NetworkError::Store {
                path: dir.join("lock"),
                source,
            }),
        }
    }

    fn lock_dir(root: &Path, dir: PathBuf) -> Result<Store, NetworkError> {
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| NetworkError::Store {
                path: path.clone(),
                source,
            })?;
        Self::lock_file(root, dir, file)
    }

    fn lock_file(root: &Path, dir: PathBuf, file: File) -> Result<Store, NetworkError> {
        let path = dir.join("lock");
        let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| {
            NetworkError::Store {
                path,
                source: errno.into(),
            }
        })?;
        let store = Store {
            root: root.to_path_buf(),
            dir,
            _lock: lock,
        };
        store.remove_temporary_files()?;
        Ok(store)
    }

    /// Removes the `.tmp` files of writes that a killed berth left half-way.
    fn remove_temporary_files(&self) -> Result<(), NetworkError> {
        let mut dirs = vec![self.dir.join("ports"), self.dir.join("bridges")];
        dirs.extend(folders(&self.dir.join("leases"))?);
        for dir in dirs {
            for path in entries(&dir)? {
                if path.extension().is_some_and(|ext| ext == "tmp") {
                    remove(&path)?;
                }
            }
        }
        Ok(())
    }

    /// Whether container `id` still exists: its state folder is there, or the process that
    /// made the record is still running (a `create` under way).
    pub fn is_alive(&self, id: &str, owner: &Owner) -> bool {
        self.root.join(id).is_dir() || owner.is_running()
    }

    pub fn leases(&self) -> Result<Vec<LeaseRecord>, NetworkError> {
        let mut records = Vec::new();
        for bridge_dir in folders(&self.dir.join("leases"))? {
            records.extend(read_all(&bridge_dir)?);
        }
        Ok(records)
    }

    fn lease_path(&self, lease: &Lease) -> PathBuf {
        self.dir
            .join("leases")
            .join(&lease.bridge)
            .join(lease.address.to_string())
    }

    pub fn put_lease(&self, record: &LeaseRecord) -> Result<(), NetworkError> {
        let path = self.lease_path(&record.lease);
        if let Some(parent) = path.parent() {
            DirBuilder::new()
                .mode(0o700)
                .recursive(true)
                .create(parent)
                .map_err(|source| NetworkError::Store {
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        write_atomically(&path, record)
    }

    pub fn remove_lease(&self, lease: &Lease) -> Result<(), NetworkError> {
        remove(&self.lease_path(lease))
    }

    pub fn ports(&self) -> Result<Vec<PortRecord>, NetworkError> {
        read_all(&self.dir.join("ports"))
    }

    fn port_path(&self, mapping: &PortMapping) -> PathBuf {
        self.dir
            .join("ports")
            .join(format!("{}-{}", mapping.protocol, mapping.host_port))
    }

    pub fn put_port(&self, record: &PortRecord) -> Result<(), NetworkError> {
        write_atomically(&self.port_path(&record.mapping), record)
    }

    pub fn remove_port(&self, mapping: &PortMapping) -> Result<(), NetworkError> {
        remove(&self.port_path(mapping))
    }

    pub fn bridge(&self, name: &str) -> Result<Option<BridgeRecord>, NetworkError> {
        let path = self.dir.join("bridges").join(name);
        match fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(NetworkError::Store { path, source }),
        }
    }

    /// The names of the bridges berth keeps a record of.
    pub fn bridge_names(&self) -> Result<Vec<String>, NetworkError> {
        Ok(list(&self.dir.join("bridges"))?
            .iter()
            .filter_map(|path| path.file_name()?.to_str().map(String::from))
            .collect())
    }

    pub fn put_bridge(&self, name: &str, record: &BridgeRecord) -> Result<(), NetworkError> {
        write_atomically(&self.dir.join("bridges").join(name), record)
    }

    pub fn remove_bridge(&self, name: &str) -> Result<(), NetworkError> {
        remove(&self.dir.join("bridges").join(name))
    }

    pub fn devices(&self) -> Result<Vec<DevicesRecord>, NetworkError> {
        read_all(&self.dir.join("devices"))
    }

    pub fn put_devices(&self, record: &DevicesRecord) -> Result<(), NetworkError> {
        let dir = self.dir.join("devices");
        make_dir(&dir)?;
        write_atomically(&dir.join(&record.id), record)
    }

    pub fn remove_devices(&self, id: &str) -> Result<(), NetworkError> {
        remove(&self.dir.join("devices").join(id))
    }

    /// Where berth pins container `id`'s network namespace, its folder made if missing.
    pub fn netns_pin(&self, id: &str) -> Result<PathBuf, NetworkError> {
        let dir = self.dir.join("netns");
        make_dir(&dir)?;
        Ok(dir.join(id))
    }
}

fn make_dir(path: &Path) -> Result<(), NetworkError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| NetworkError::Store {
            path: path.to_path_buf(),
            source,
        })
}

/// The records of a folder: its entries but the temporary files of interrupted writes.
fn list(dir: &Path) -> Result<Vec<PathBuf>, NetworkError> {
    let mut paths = entries(dir)?;
    paths.retain(|path| path.extension().is_none_or(|ext| ext != "tmp"));
    Ok(paths)
}

/// The folders in a folder (one per bridge under `leases`).
fn folders(dir: &Path) -> Result<Vec<PathBuf>, NetworkError> {
    let mut paths = entries(dir)?;
    paths.retain(|path| path.is_dir());
    Ok(paths)
}

/// Every entry of a folder, sorted; none when it is missing.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, NetworkError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(NetworkError::Store {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| NetworkError::Store {
            path: dir.to_path_buf(),
            source,
        })?;
        paths.push(entry.path());
    }
    paths.sort();
    Ok(paths)
}

fn read_all<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>, NetworkError> {
    let mut records = Vec::new();
    for path in list(dir)? {
        let bytes = fs::read(&path).map_err(|source| NetworkError::Store {
            path: path.clone(),
            source,
        })?;
        records.push(parse(&path, &bytes)?);
    }
    Ok(records)
}

fn parse<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, NetworkError> {
    serde_json::from_slice(bytes).map_err(|e| NetworkError::StoreCorrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes a temporary file and renames it over `path`, so a reader never sees half a record.
fn write_atomically<T: Serialize>(path: &Path, record: &T) -> Result<(), NetworkError> {
    let store_error = |source| NetworkError::Store {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec(record).map_err(|e| store_error(e.into()))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    fs::write(&temporary, bytes).map_err(store_error)?;
    crate::fault::point("store:tmp");
    fs::rename(&temporary, path).map_err(store_error)
}

fn remove(path: &Path) -> Result<(), NetworkError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetworkError::Store {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Protocol;

    fn temp_root(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("berth-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        root
    }

    #[test]
    fn owner_of_this_process_is_running_and_a_reaped_child_is_not() {
        assert!(Owner::current().is_running());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let owner = Owner {
            pid,
            start_time: process_start_time(pid).unwrap_or(1),
        };
        child.wait().unwrap();
        assert!(!owner.is_running());
    }

    #[test]
    fn records_round_trip_and_disappear() {
        let root = temp_root("round-trip");
        let store = Store::lock(&root).unwrap();
        let mapping = PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
        };
        let record = PortRecord {
            id: "web".into(),
            owner: Owner::current(),
            mapping,
            published_to: Some(("docker0".into(), Ipv4Addr::new(172, 17, 0, 2))),
        };
        store.put_port(&record).unwrap();
        assert!(root.join(".network/ports/tcp-8080").is_file());
        assert_eq!(store.ports().unwrap(), vec![record]);
        store.remove_port(&mapping).unwrap();
        store.remove_port(&mapping).unwrap();
        assert!(store.ports().unwrap().is_empty());
        assert!(store.is_alive("web", &Owner::current()));
        drop(store);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_corrupt_record_is_named() {
        let root = temp_root("corrupt");
        let store = Store::lock(&root).unwrap();
        fs::write(root.join(".network/ports/tcp-1"), b"{").unwrap();
        let err = store.ports().unwrap_err().to_string();
        assert!(err.contains(".network/ports/tcp-1"), "{err}");
        drop(store);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn temporary_files_of_a_killed_writer_go_with_the_next_lock() {
        let root = temp_root("tmp");
        let store = Store::lock(&root).unwrap();
        fs::create_dir_all(root.join(".network/leases/docker0")).unwrap();
        let left = [
            ".network/ports/tcp-8080.tmp",
            ".network/bridges/docker0.tmp",
            ".network/leases/docker0/172.17.0.2.tmp",
        ];
        for path in left {
            fs::write(root.join(path), b"{\"half").unwrap();
        }
        // a reader skips them while they are there
        assert!(store.ports().unwrap().is_empty());
        assert!(store.leases().unwrap().is_empty());
        drop(store);
        let store = Store::lock_existing(&root).unwrap().unwrap();
        for path in left {
            assert!(!root.join(path).exists(), "{path} is left");
        }
        drop(store);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn no_store_means_nothing_is_held() {
        let root = temp_root("absent");
        assert!(Store::lock_existing(&root).unwrap().is_none());
        assert!(!root.exists());
    }
}
