//! The state folder: `--root` (default `/run/berth`, mode 0700) holds one folder per container with
//! its state JSON (written atomically), a copy of its config, the exec fifo while it is `created`,
//! and a lock that serialises commands on one container.
//!
//! Crash safety: every file is written as `NAME.tmp` and renamed, so readers see a whole file or
//! none; a `.tmp` that a killed berth left lies in the container's folder and goes with it at
//! `delete --force` (a folder with no state, from a `create` killed before its first write, is
//! removed the same way).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DEFAULT_ROOT: &str = "/run/berth";
const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.json";
pub const EXEC_FIFO: &str = "exec.fifo";
/// Longest container id: the id is a file name, and engines use 64 hex characters.
pub const MAX_ID_LEN: usize = 200;
/// Longest `--root`: its files' paths (and the network store's) must stay well within PATH_MAX.
pub const MAX_ROOT_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container id must not be empty")]
    EmptyId,
    #[error("container id {0:?} is longer than {MAX_ID_LEN} characters")]
    IdTooLong(String),
    #[error(
        "container id {0:?} may hold only letters, digits and _ + - . and must not start with '.'"
    )]
    BadId(String),
    #[error("--root must not be empty")]
    EmptyRoot,
    #[error("--root {0:?} is longer than {MAX_ROOT_LEN} bytes")]
    RootTooLong(PathBuf),
    #[error("--root {0:?} must not contain '..'")]
    RootDotDot(PathBuf),
    #[error("--root {path} is not a directory")]
    RootNotDir { path: PathBuf },
    #[error(
        "--root {path} is writable by others (mode {mode:o}): its state would not be berth's alone"
    )]
    RootWritable { path: PathBuf, mode: u32 },
    #[error(
        "--root {path} belongs to uid {owner}, not to berth's user ({euid}): its state would not be berth's alone"
    )]
    RootOwner {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
    #[error(
        "cannot make --root {path}: {source}: berth runs as {who}; give --root DIR, or set \
         XDG_RUNTIME_DIR (the default is then $XDG_RUNTIME_DIR/berth)"
    )]
    RootDenied {
        path: PathBuf,
        who: String,
        source: std::io::Error,
    },
    #[error("container {0:?} does not exist")]
    NotExist(String),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("cannot use state folder {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state of container {id:?} is unreadable: {source}")]
    Corrupt {
        id: String,
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The container's status, as the runtime spec names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(name)
    }
}

/// What berth keeps about a container between commands.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: String,
    pub id: String,
    /// The status as last recorded; `container::status` works out the live one.
    pub status: Status,
    pub pid: i32,
    /// The init's start time (field 22 of /proc/PID/stat), to recognise a reused pid.
    #[serde(default)]
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The cgroup the container lives in.
    pub cgroup: crate::cgroups::CgroupConfig,
    /// The network settings, as `berth inspect` shows them.
    #[serde(default)]
    pub network: Option<serde_json::Value>,
    /// The hooks that run after `create`: poststart at start, poststop at delete.
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// Whether the init has a pid namespace of its own (then its death ends every process in it).
    #[serde(default)]
    pub own_pid_namespace: bool,
    /// Without a mount namespace of its own: the mount berth made for the root filesystem in
    /// the host's, which `delete` detaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_mount: Option<crate::rootfs::HostMount>,
}

/// Checks a container id: it becomes a folder name, so no separators, no `..`, no leading dot.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    if id.is_empty() {
        return Err(StateError::EmptyId);
    }
    if id.len() > MAX_ID_LEN {
        return Err(StateError::IdTooLong(id.to_string()));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+-.".contains(c);
    if id.starts_with('.') || !id.chars().all(allowed) {
        return Err(StateError::BadId(id.to_string()));
    }
    Ok(())
}

/// The `--root` folder.
#[derive(Clone, Debug)]
pub struct Root {
    pub path: PathBuf,
    /// Whether it is the default folder under `$XDG_RUNTIME_DIR`, which is made sticky.
    pub sticky: bool,
}

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Root {
            path: path.into(),
            sticky: false,
        }
    }

    /// The default `--root` for the user berth runs as (`rootless::default_root`).
    pub fn default_for_caller() -> Result<Root, StateError> {
        let (path, sticky) = crate::rootless::default_root();
        Ok(Root {
            sticky,
            ..Root::from_flag(&path)?
        })
    }

    /// The `--root` flag, checked: not empty, no `..`, not too long; a relative path is made
    /// absolute, so hooks and later commands find the same folder.
    pub fn from_flag(path: &Path) -> Result<Root, StateError> {
        if path.as_os_str().is_empty() {
            return Err(StateError::EmptyRoot);
        }
        if path
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(StateError::RootDotDot(path.to_path_buf()));
        }
        let path = std::path::absolute(path).map_err(io_err(path))?;
        if path.as_os_str().len() > MAX_ROOT_LEN {
            return Err(StateError::RootTooLong(path));
        }
        Ok(Root::new(path))
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Makes the root folder (mode 0700) if it is missing. An existing one must be a directory
    /// that no one else may write to: whoever can could plant state for berth to act on.
    pub fn ensure(&self) -> Result<(), StateError> {
        match std::fs::DirBuilder::new()
            .recursive(false)
            .mode(0o700)
            .create(&self.path)
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.check().map(drop),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&self.path)
                    .map_err(|e| self.make_error(e))?;
                self.set_mode()
            }
            Err(e) => Err(self.make_error(e)),
        }
        .and_then(|()| match self.sticky {
            true => self.set_mode(),
            false => Ok(()),
        })
    }

    /// Mode 0700, sticky for the XDG folder (runc's rule).
    fn set_mode(&self) -> Result<(), StateError> {
        let mode = if self.sticky { 0o1700 } else { 0o700 };
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(mode))
            .map_err(io_err(&self.path))
    }

    /// Why the folder could not be made, saying what to do when it is not the user's to make.
    fn make_error(&self, source: std::io::Error) -> StateError {
        let (uid, _) = crate::rootless::ids();
        match source.kind() {
            std::io::ErrorKind::PermissionDenied if uid != 0 => StateError::RootDenied {
                path: self.path.clone(),
                who: crate::rootless::describe_user(uid),
                source,
            },
            _ => io_err(&self.path)(source),
        }
    }

    /// Checks an existing root folder before berth trusts what it holds: a directory of berth's
    /// user that no one else may write to. Whoever else can write there could plant a state
    /// (its hooks run at `delete`, its cgroup is killed and removed) or a network record for
    /// berth to act on as root. Returns whether the folder exists.
    fn check(&self) -> Result<bool, StateError> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        let mode = meta.permissions().mode() & 0o7777;
        let euid = nix::unistd::geteuid().as_raw();
        if !meta.is_dir() {
            Err(StateError::RootNotDir {
                path: self.path.clone(),
            })
        } else if mode & 0o022 != 0 {
            Err(StateError::RootWritable {
                path: self.path.clone(),
                mode,
            })
        } else if meta.uid() != euid {
            Err(StateError::RootOwner {
                path: self.path.clone(),
                owner: meta.uid(),
                euid,
            })
        } else {
            Ok(true)
        }
    }

    /// Makes the folder of a new container and locks it. Fails if the id is taken.
    pub fn create_container(&self, id: &str) -> Result<ContainerDir, StateError> {
        validate_id(id)?;
        self.ensure()?;
        let dir = self.container_dir(id);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(id.to_string()))
            }
            Err(e) => return Err(io_err(&dir)(e)),
        }
        ContainerDir::lock(id, dir)
    }

    /// Opens and locks the folder of an existing container.
    pub fn open_container(&self, id: &str) -> Result<ContainerDir, StateError> {
        validate_id(id)?;
        self.check()?;
        ContainerDir::lock(id, self.container_dir(id))
    }

    /// Reads a container's state without taking its lock (the file is replaced atomically).
    pub fn read_state(&self, id: &str) -> Result<State, StateError> {
        validate_id(id)?;
        self.check()?;
        read_state_file(id, &self.container_dir(id))
    }

    /// The ids of every container under this root, sorted.
    pub fn ids(&self) -> Result<Vec<String>, StateError> {
        if !self.check()? {
            return Ok(Vec::new());
        }
        let entries = match std::fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| validate_id(name).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

fn read_state_file(id: &str, dir: &Path) -> Result<State, StateError> {
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::NotExist(id.to_string()))
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
        id: id.to_string(),
        source,
    })
}

/// A container's folder, held under an exclusive lock for as long as this value lives.
pub struct ContainerDir {
    pub id: String,
    pub path: PathBuf,
    _lock: File,
}

impl ContainerDir {
    fn lock(id: &str, path: PathBuf) -> Result<Self, StateError> {
        let lock = match File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotExist(id.to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        // SAFETY: flock on a descriptor we own; it blocks until the lock is ours.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(io_err(&path)(std::io::Error::last_os_error()));
        }
        Ok(ContainerDir {
            id: id.to_string(),
            path,
            _lock: lock,
        })
    }

    pub fn read_state(&self) -> Result<State, StateError> {
        read_state_file(&self.id, &self.path)
    }

    /// The descriptor holding the lock. A process cloned while the lock is held shares it, so
    /// the container's init closes this first: otherwise `start` would wait on its own init.
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        self._lock.as_raw_fd()
    }

    pub fn has_state(&self) -> bool {
        self.path.join(STATE_FILE).exists()
    }

    pub fn write_state(&self, state: &State) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(state).expect("state serialises");
        write_atomic(&self.path.join(STATE_FILE), &bytes)
    }

    pub fn write_config(&self, raw: &[u8]) -> Result<(), StateError> {
        write_atomic(&self.path.join(CONFIG_FILE), raw)
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.path.join(EXEC_FIFO)
    }

    /// Removes the folder and everything in it.
    pub fn remove(self) -> Result<(), StateError> {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&self.path)(e)),
        }
    }
}

/// Writes a file by writing a temporary sibling and renaming it over the target, so readers see
/// either the old or the new content. The sibling is made new (O_EXCL, never following a
/// symlink): a pid file goes where the caller says, and whoever can write into that folder
/// could have put a symlink to any file there for berth to truncate and write as root.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A sibling left by a berth that died half-way, or planted: removed, not followed.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&tmp)(e)),
        _ => {}
    }
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    drop(file);
    crate::fault::point("state:tmp");
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn ids() {
        for good in [
            "a",
            "web",
            "0123abcdef",
            "x_y-z+w.v",
            &"a".repeat(MAX_ID_LEN),
        ] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "a b",
            "ä",
            &"a".repeat(MAX_ID_LEN + 1),
        ] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_id("a/b").unwrap_err().to_string(),
            "container id \"a/b\" may hold only letters, digits and _ + - . and must not start with '.'"
        );
    }

    #[test]
    fn create_twice_and_list() {
        let tmp = TempDir::new("state");
        let root = Root::new(tmp.path().join("root"));
        let dir = root.create_container("one").unwrap();
        assert_eq!(
            std::fs::metadata(&root.path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(matches!(
            root.create_container("one"),
            Err(StateError::Exists(_))
        ));
        drop(dir);
        root.create_container("two").unwrap();
        std::fs::create_dir(root.path.join(".network")).unwrap();
        assert_eq!(root.ids().unwrap(), vec!["one", "two"]);
        assert!(matches!(
            root.read_state("one"),
            Err(StateError::NotExist(_))
        ));
        assert!(matches!(
            root.open_container("three"),
            Err(StateError::NotExist(_))
        ));
    }

    #[test]
    fn root_flag_checks() {
        let tmp = TempDir::new("state");
        assert!(matches!(
            Root::from_flag(Path::new("")),
            Err(StateError::EmptyRoot)
        ));
        let err = Root::from_flag(Path::new("/run/../etc")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--root \"/run/../etc\" must not contain '..'"
        );
        let long = PathBuf::from("/").join("r".repeat(MAX_ROOT_LEN));
        assert!(matches!(
            Root::from_flag(&long),
            Err(StateError::RootTooLong(_))
        ));
        let relative = Root::from_flag(Path::new("some/root")).unwrap();
        assert!(relative.path.is_absolute() && relative.path.ends_with("some/root"));

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = Root::from_flag(&open).unwrap().ensure().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "--root {} is writable by others (mode 1777): its state would not be berth's alone",
                open.display()
            )
        );
        // Nor does berth read what such a folder holds.
        let open_root = Root::from_flag(&open).unwrap();
        std::fs::create_dir(open.join("planted")).unwrap();
        assert!(matches!(
            open_root.open_container("planted"),
            Err(StateError::RootWritable { .. })
        ));
        assert!(matches!(
            open_root.read_state("planted"),
            Err(StateError::RootWritable { .. })
        ));
        assert!(matches!(
            open_root.ids(),
            Err(StateError::RootWritable { .. })
        ));
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = Root::from_flag(&file).unwrap().create_container("x");
        assert!(matches!(err, Err(StateError::RootNotDir { .. })));
        // A folder of the caller's with no write bits for others is fine.
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        Root::from_flag(&shared)
            .unwrap()
            .create_container("x")
            .unwrap();
    }

    #[test]
    fn the_xdg_root_is_made_sticky() {
        let tmp = TempDir::new("state");
        let root = Root {
            sticky: true,
            ..Root::new(tmp.path().join("run/berth"))
        };
        root.create_container("x").unwrap();
        let mode = std::fs::metadata(&root.path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o1700);
    }

    #[test]
    fn atomic_write_replaces() {
        let tmp = TempDir::new("state");
        let path = tmp.path().join("f");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!tmp.path().join("f.tmp").exists());
    }

    #[test]
    fn atomic_write_never_writes_through_a_planted_sibling() {
        let tmp = TempDir::new("state");
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = tmp.path().join("pid");
        std::os::unix::fs::symlink(&victim, tmp.path().join("pid.tmp")).unwrap();
        write_atomic(&path, b"42").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&path).unwrap(), b"42");
        assert!(!path.is_symlink());
    }
}
