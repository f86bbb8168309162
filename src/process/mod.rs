//! The container's process: how it is made (clone3), the channel between berth and it, and the
//! init sequence it runs before it becomes the container's program.

pub mod channel;
pub mod clone;
pub mod init;

use std::ffi::CString;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{PosixRlimitType, Process};

use crate::capabilities::CapSets;

/// The kernel's number for a resource limit, and its name.
pub fn rlimit(typ: PosixRlimitType) -> (libc::__rlimit_resource_t, &'static str) {
    use PosixRlimitType::*;
    match typ {
        RlimitCpu => (libc::RLIMIT_CPU, "RLIMIT_CPU"),
        RlimitFsize => (libc::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        RlimitData => (libc::RLIMIT_DATA, "RLIMIT_DATA"),
        RlimitStack => (libc::RLIMIT_STACK, "RLIMIT_STACK"),
        RlimitCore => (libc::RLIMIT_CORE, "RLIMIT_CORE"),
        RlimitRss => (libc::RLIMIT_RSS, "RLIMIT_RSS"),
        RlimitNproc => (libc::RLIMIT_NPROC, "RLIMIT_NPROC"),
        RlimitNofile => (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        RlimitMemlock => (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        RlimitAs => (libc::RLIMIT_AS, "RLIMIT_AS"),
        RlimitLocks => (libc::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        RlimitSigpending => (libc::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        RlimitMsgqueue => (libc::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        RlimitNice => (libc::RLIMIT_NICE, "RLIMIT_NICE"),
        RlimitRtprio => (libc::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        RlimitRttime => (libc::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("process.{0} holds a NUL byte")]
    Nul(&'static str),
    #[error(transparent)]
    Capabilities(#[from] crate::capabilities::CapabilityError),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("cannot keep the container's process non-dumpable: {0}")]
    Dumpable(nix::errno::Errno),
    #[error("the working directory {0} is outside the container's root filesystem")]
    CwdOutside(String),
    #[error("cannot check the working directory {0}: {1}")]
    Cwd(String, nix::errno::Errno),
}

/// The last checks before a container's process (the init, or one that `exec` adds) runs its
/// program, once it has its final user, capabilities and working directory `cwd`:
/// - it is still non-dumpable ([`clone::undumpable`]): a change of user may have undone that;
/// - its working directory is inside its root: a path through a descriptor berth held
///   (`/proc/self/fd/N`) could lead into the host's tree (CVE-2024-21626). getcwd fails with
///   ENOENT for a directory the process's root cannot reach.
pub fn check_confined(cwd: &Path) -> Result<(), ConfineError> {
    clone::undumpable().map_err(ConfineError::Dumpable)?;
    match nix::unistd::getcwd() {
        Ok(path) if path.is_absolute() => Ok(()),
        Ok(_) | Err(nix::errno::Errno::ENOENT) => {
            Err(ConfineError::CwdOutside(cwd.display().to_string()))
        }
        Err(e) => Err(ConfineError::Cwd(cwd.display().to_string(), e)),
    }
}

/// What the container's program is and who it runs as, worked out before it exists.
#[derive(Clone, Debug)]
pub struct ProcessPlan {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: u32,
    pub caps: CapSets,
    pub last_cap: u8,
    pub no_new_privileges: bool,
    /// (resource, name, soft, hard)
    pub rlimits: Vec<(libc::__rlimit_resource_t, &'static str, u64, u64)>,
    /// Descriptors 3 .. 3+N stay open for the program.
    pub preserve_fds: i32,
    /// Whether the environment lacks HOME (then it is taken from the container's /etc/passwd).
    pub needs_home: bool,
}

impl ProcessPlan {
    pub fn from_spec(process: &Process, preserve_fds: i32) -> Result<ProcessPlan, ProcessError> {
        let cstrings = |list: &[String], what| {
            list.iter()
                .map(|s| CString::new(s.as_str()).map_err(|_| ProcessError::Nul(what)))
                .collect::<Result<Vec<_>, _>>()
        };
        let args = cstrings(process.args().as_deref().unwrap_or_default(), "args")?;
        let mut env = cstrings(process.env().as_deref().unwrap_or_default(), "env")?;
        let needs_home = !env.iter().any(|e| e.as_bytes().starts_with(b"HOME="));
        if preserve_fds > 0 {
            // A program handed descriptors by systemd-style socket activation expects these.
            env.retain(|e| !e.as_bytes().starts_with(b"LISTEN_FDS="));
        }
        let user = process.user();
        Ok(ProcessPlan {
            args,
            env,
            cwd: process.cwd().clone(),
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask().unwrap_or(0o022),
            caps: CapSets::from_spec(process.capabilities().as_ref())?,
            last_cap: crate::capabilities::last_cap(),
            no_new_privileges: process.no_new_privileges().unwrap_or(false),
            rlimits: process
                .rlimits()
                .iter()
                .flatten()
                .map(|l| {
                    let (resource, name) = rlimit(l.typ());
                    (resource, name, l.soft(), l.hard())
                })
                .collect(),
            preserve_fds,
            needs_home,
        })
    }

    /// The value of PATH in the program's environment.
    pub fn path_env(&self) -> Option<&[u8]> {
        self.env
            .iter()
            .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
    }
}

/// Finds the program to run the way execvp would, and says clearly why when it cannot.
pub fn find_executable(name: &str, path_env: Option<&[u8]>) -> Result<CString, String> {
    let usable = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {
                if meta.permissions().mode() & 0o111 == 0
                    || nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_err()
                {
                    Err(format!("{} is not executable", path.display()))
                } else {
                    Ok(())
                }
            }
            Ok(_) => Err(format!("{} is not a regular file", path.display())),
            Err(e) => Err(format!("{}: {}", path.display(), e)),
        }
    };
    let to_cstring = |p: &Path| {
        CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| "a NUL byte".to_string())
    };
    if name.contains('/') {
        let path = Path::new(name);
        usable(path).map_err(|e| format!("cannot run {name:?}: {e}"))?;
        return to_cstring(path);
    }
    let path_env =
        path_env.unwrap_or(b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut reason = None;
    for dir in path_env.split(|&b| b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(std::str::from_utf8(dir).unwrap_or("."))
        };
        let candidate = dir.join(name);
        match usable(&candidate) {
            Ok(()) => return to_cstring(&candidate),
            Err(e) if candidate.exists() => reason = Some(e),
            Err(_) => {}
        }
    }
    Err(match reason {
        Some(e) => format!("cannot run {name:?}: {e}"),
        None => format!(
            "executable {name:?} not found in $PATH ({})",
            String::from_utf8_lossy(path_env)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_like_execvp() {
        let found = find_executable("sh", Some(b"/nonexistent:/bin:/usr/bin")).unwrap();
        assert!(found.to_str().unwrap().ends_with("/sh"));
        assert_eq!(
            find_executable("/bin/sh", None).unwrap().to_str().unwrap(),
            "/bin/sh"
        );
        let err = find_executable("no-such-program", Some(b"/bin:/usr/bin")).unwrap_err();
        assert_eq!(
            err,
            "executable \"no-such-program\" not found in $PATH (/bin:/usr/bin)"
        );
        let err = find_executable("/etc/passwd", None).unwrap_err();
        assert_eq!(
            err,
            "cannot run \"/etc/passwd\": /etc/passwd is not executable"
        );
        let err = find_executable("/nonexistent", None).unwrap_err();
        assert!(
            err.starts_with("cannot run \"/nonexistent\": /nonexistent: No such file"),
            "{err}"
        );
    }
}
