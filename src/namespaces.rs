//! Namespaces: which ones a container makes of its own and which it joins by path, and the
//! order in which they are entered.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::bounded::ReadError;

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("cannot open the {kind} namespace {path}: {source}")]
    Open {
        kind: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{source}, so it cannot be the {kind} namespace")]
    NotFile {
        kind: &'static str,
        source: ReadError,
    },
    #[error("cannot join the {kind} namespace {path}: {source}")]
    Join {
        kind: &'static str,
        path: PathBuf,
        source: nix::errno::Errno,
    },
    #[error("cannot {what}: {source}")]
    Time {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot make new namespaces ({flags}): {source}")]
    Unshare {
        flags: String,
        source: nix::errno::Errno,
    },
}

/// The clone flag of a namespace type.
pub fn flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The short name the kernel uses in /proc/PID/ns for a clone flag.
pub fn name(flag: CloneFlags) -> &'static str {
    match flag {
        CloneFlags::CLONE_NEWNS => "mnt",
        CloneFlags::CLONE_NEWCGROUP => "cgroup",
        CloneFlags::CLONE_NEWUTS => "uts",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWUSER => "user",
        CloneFlags::CLONE_NEWPID => "pid",
        CloneFlags::CLONE_NEWNET => "net",
        _ => "time",
    }
}

/// A namespace to join, opened before the container's process exists.
pub struct Join {
    pub flag: CloneFlags,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// The container's namespaces.
pub struct Namespaces {
    /// Namespaces to make.
    pub new: CloneFlags,
    /// Namespaces to join, user first (joining it changes what the others allow).
    pub join: Vec<Join>,
}

impl Namespaces {
    /// Reads `linux.namespaces`. `network` overrides the network entry: `Some(None)` asks for a
    /// fresh namespace, `Some(Some(path))` to join one, and `None` for the host's.
    pub fn from_spec(
        spec: &Spec,
        network: Option<Option<&Path>>,
    ) -> Result<Namespaces, NamespaceError> {
        let mut new = CloneFlags::empty();
        let mut join = Vec::new();
        let listed = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
            .filter(|ns| ns.typ() != LinuxNamespaceType::Network)
            .map(|ns| (flag(ns.typ()), ns.path().clone()));
        let net = network.map(|path| (CloneFlags::CLONE_NEWNET, path.map(Path::to_path_buf)));
        for (flag, path) in listed.chain(net) {
            match path {
                None => new |= flag,
                Some(path) => {
                    // Never a FIFO's open that waits forever, nor a device's that does something.
                    let file = crate::bounded::open_regular(&path).map_err(|err| match err {
                        ReadError::Io { source, .. } => NamespaceError::Open {
                            kind: name(flag),
                            path: path.clone(),
                            source,
                        },
                        other => NamespaceError::NotFile {
                            kind: name(flag),
                            source: other,
                        },
                    })?;
                    join.push(Join {
                        flag,
                        path,
                        fd: file.into(),
                    });
                }
            }
        }
        join.sort_by_key(|j| j.flag != CloneFlags::CLONE_NEWUSER);
        Ok(Namespaces { new, join })
    }

    /// Whether the container has a user namespace, new or joined.
    pub fn has_user(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWUSER) || self.joins(CloneFlags::CLONE_NEWUSER)
    }

    pub fn joins(&self, flag: CloneFlags) -> bool {
        self.join.iter().any(|j| j.flag == flag)
    }

    /// Whether the container has a namespace of `flag` of its own or joined, rather than the host's.
    pub fn has(&self, flag: CloneFlags) -> bool {
        self.new.contains(flag) || self.joins(flag)
    }
}

/// A new time namespace, made by berth for its next children with `linux.timeOffsets` in. The
/// kernel takes offsets only until a process enters the namespace, and a process cannot move
/// itself into one: so berth unshares it (which makes it only its children's), writes the
/// offsets into its own `timens_offsets`, clones the container's process into it, and goes back.
pub struct TimeNamespaceVisit {
    own: OwnedFd,
}

impl TimeNamespaceVisit {
    /// `offsets` are (clock, seconds, nanoseconds), the clock `monotonic` or `boottime`.
    pub fn enter(offsets: &[(String, i64, u32)]) -> Result<Self, NamespaceError> {
        let sys = |what: &'static str| {
            move |source| NamespaceError::Time {
                what,
                source: std::io::Error::from(source),
            }
        };
        let own = nix::fcntl::open(
            "/proc/self/ns/time",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(sys("open berth's time namespace"))?;
        nix::sched::unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
            .map_err(sys("make a time namespace"))?;
        let visit = TimeNamespaceVisit { own };
        let text: String = offsets
            .iter()
            .map(|(clock, secs, nanos)| format!("{} {secs} {nanos}\n", clock_id(clock)))
            .collect();
        if !text.is_empty() {
            if let Err(source) = std::fs::write("/proc/self/timens_offsets", &text) {
                let _ = visit.leave();
                return Err(NamespaceError::Time {
                    what: "write linux.timeOffsets",
                    source,
                });
            }
        }
        Ok(visit)
    }

    /// Back to berth's own time namespace for its later children.
    pub fn leave(self) -> Result<(), nix::errno::Errno> {
        nix::sched::setns(self.own, CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
    }
}

/// The kernel's number for a clock `linux.timeOffsets` may name.
fn clock_id(clock: &str) -> libc::clockid_t {
    match clock {
        "monotonic" => libc::CLOCK_MONOTONIC,
        _ => libc::CLOCK_BOOTTIME,
    }
}

/// The clocks a time namespace offsets.
pub const TIME_CLOCKS: &[&str] = &["monotonic", "boottime"];

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(namespaces: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","linux":{{"namespaces":{namespaces}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn new_and_joined() {
        let s = spec(
            r#"[{"type":"pid"},{"type":"network","path":"/proc/self/ns/net"},{"type":"user","path":"/proc/self/ns/user"},{"type":"mount"}]"#,
        );
        let ns = Namespaces::from_spec(&s, Some(Some(Path::new("/proc/self/ns/net")))).unwrap();
        assert_eq!(ns.new, CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS);
        let joined: Vec<_> = ns.join.iter().map(|j| name(j.flag)).collect();
        assert_eq!(joined, ["user", "net"]);
        assert!(ns.has_user());
    }

    #[test]
    fn network_override() {
        let s = spec(r#"[{"type":"pid"},{"type":"network"}]"#);
        let host = Namespaces::from_spec(&s, None).unwrap();
        assert!(!host.has(CloneFlags::CLONE_NEWNET));
        let fresh = Namespaces::from_spec(&s, Some(None)).unwrap();
        assert!(fresh.new.contains(CloneFlags::CLONE_NEWNET));
    }

    #[test]
    fn missing_path_is_named() {
        let s = spec(r#"[{"type":"ipc","path":"/nonexistent/ns"}]"#);
        let err = Namespaces::from_spec(&s, None).err().unwrap().to_string();
        assert!(
            err.starts_with("cannot open the ipc namespace /nonexistent/ns"),
            "{err}"
        );
    }
}
