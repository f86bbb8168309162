//! The container's process: how it is made (clone3), the channel between berth and it, and the
//! init sequence it runs before it becomes the container's program.

pub mod channel;
pub mod clone;
pub mod exec;
pub mod init;
pub mod procfs;
pub mod program;
pub mod seal;
pub mod settings;

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
    #[error("process.env[{index}] {entry:?} is not NAME=VALUE")]
    BadEnv { index: usize, entry: String },
    #[error(transparent)]
    Capabilities(#[from] crate::capabilities::CapabilityError),
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    #[error("--preserve-fds must not be negative, not {0}")]
    NegativePreserve(i32),
    #[error("descriptor {fd} is not open, but the container is to get descriptors 3 to {last} ({given})")]
    NotOpen { fd: u32, given: String, last: u32 },
}

/// The descriptors a container's process gets beyond stdio, numbered from 3 up: those that
/// systemd-style socket activation handed to berth (`LISTEN_FDS`, when `LISTEN_PID` is berth's),
/// as runc passes them, then the `--preserve-fds` ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtraFds {
    pub listen: u32,
    /// `LISTEN_FDNAMES`, passed on with the listen descriptors.
    pub listen_names: Option<String>,
    pub preserve: u32,
}

impl ExtraFds {
    /// `--preserve-fds N`, after berth's own listen descriptors when `socket_activation`; checks
    /// that each is open (berth's own descriptors are close-on-exec and never take their place).
    pub fn new(preserve: i32, socket_activation: bool) -> Result<ExtraFds, ProcessError> {
        let mut extra = ExtraFds {
            preserve: u32::try_from(preserve)
                .map_err(|_| ProcessError::NegativePreserve(preserve))?,
            ..ExtraFds::default()
        };
        let var = |name| std::env::var(name).ok();
        let for_berth = var("LISTEN_PID").and_then(|p| p.parse().ok()) == Some(std::process::id());
        if socket_activation && for_berth {
            extra.listen = var("LISTEN_FDS").and_then(|n| n.parse().ok()).unwrap_or(0);
            extra.listen_names = var("LISTEN_FDNAMES");
        }
        let last = 2 + extra.total();
        for fd in 3..=last {
            if std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err() {
                let given = match (extra.listen, extra.preserve) {
                    (0, n) => format!("--preserve-fds {n}"),
                    (l, 0) => format!("LISTEN_FDS {l}"),
                    (l, n) => format!("LISTEN_FDS {l} and --preserve-fds {n}"),
                };
                return Err(ProcessError::NotOpen { fd, given, last });
            }
        }
        Ok(extra)
    }

    /// How many descriptors from 3 up the process keeps.
    pub fn total(&self) -> u32 {
        self.listen + self.preserve
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
    /// Descriptors 3 .. 3+N stay open for the program (listen and preserved ones).
    pub preserve_fds: i32,
    /// How many of them are socket-activation descriptors: the program's `LISTEN_PID` is then
    /// set to its own pid.
    pub listen_fds: u32,
    /// Whether the environment lacks HOME (then it is taken from the container's /etc/passwd).
    pub needs_home: bool,
    /// `process.ioPriority` and `process.scheduler`, which berth sets on the new process.
    pub io_priority: Option<u32>,
    pub scheduler: Option<settings::SchedAttr>,
    /// `linux.personality` and `linux.memoryPolicy` (the container's, for every process of
    /// it), which the process sets on itself.
    pub personality: Option<libc::c_ulong>,
    pub memory_policy: Option<settings::MemoryPolicy>,
    /// The AppArmor profile and SELinux label of the program.
    pub labels: crate::lsm::ExecLabels,
}

impl ProcessPlan {
    pub fn from_spec(process: &Process, extra: &ExtraFds) -> Result<ProcessPlan, ProcessError> {
        let cstrings = |list: &[String], what| {
            list.iter()
                .map(|s| CString::new(s.as_str()).map_err(|_| ProcessError::Nul(what)))
                .collect::<Result<Vec<_>, _>>()
        };
        let args = cstrings(process.args().as_deref().unwrap_or_default(), "args")?;
        let (env, needs_home) = environment(process.env().as_deref().unwrap_or_default())?;
        let mut env = cstrings(&env, "env")?;
        if extra.listen > 0 {
            // The program's socket-activation variables describe the descriptors it gets.
            env.retain(|e| {
                let e = e.as_bytes();
                !(e.starts_with(b"LISTEN_FDS=")
                    || e.starts_with(b"LISTEN_PID=")
                    || e.starts_with(b"LISTEN_FDNAMES="))
            });
            let listen = [
                Some(format!("LISTEN_FDS={}", extra.listen)),
                extra
                    .listen_names
                    .as_ref()
                    .map(|n| format!("LISTEN_FDNAMES={n}")),
            ];
            for var in listen.into_iter().flatten() {
                env.push(CString::new(var).map_err(|_| ProcessError::Nul("env"))?);
            }
        }
        let user = process.user();
        let caps = CapSets::from_spec(process.capabilities().as_ref())?;
        // The kernel raises an ambient capability only if it is permitted and inheritable too;
        // the process goes on without the others, and the caller hears of each, as from runc.
        let impossible = caps.ambient & !(caps.permitted & caps.inheritable);
        for cap in (0..64u8).filter(|c| impossible & (1 << c) != 0) {
            crate::logging::warn(&format!(
                "can't raise ambient capability {}: operation not permitted (an ambient capability must be in process.capabilities.permitted and inheritable too)",
                crate::capabilities::cap_name(cap)
            ));
        }
        Ok(ProcessPlan {
            args,
            env,
            cwd: process.cwd().clone(),
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask().unwrap_or(0o022),
            caps,
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
            preserve_fds: extra.total() as i32,
            listen_fds: extra.listen,
            needs_home,
            io_priority: process
                .io_priority()
                .as_ref()
                .map(settings::io_priority)
                .transpose()?,
            scheduler: process
                .scheduler()
                .as_ref()
                .map(settings::scheduler)
                .transpose()?,
            personality: None,
            memory_policy: None,
            labels: crate::lsm::ExecLabels::from_spec(process),
        })
    }

    /// Adds the container's settings that hold for each of its processes.
    pub fn with_container(
        mut self,
        linux: Option<&oci_spec::runtime::Linux>,
    ) -> Result<ProcessPlan, ProcessError> {
        if let Some(linux) = linux {
            self.personality = linux
                .personality()
                .as_ref()
                .map(settings::personality)
                .transpose()?;
            self.memory_policy = linux
                .memory_policy()
                .as_ref()
                .map(settings::memory_policy)
                .transpose()?;
        }
        Ok(self)
    }

    /// What berth sets on the new process from outside.
    pub fn outside(&self) -> Outside {
        Outside {
            io_priority: self.io_priority,
            scheduler: self.scheduler,
        }
    }

    /// The value of PATH in the program's environment.
    pub fn path_env(&self) -> Option<&[u8]> {
        self.env
            .iter()
            .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
    }
}

/// The program's environment from `process.env`: each name once, with its last value, where that
/// last value stood (what `docker run -e A=1 -e A=2` means, and what runc and Go's os/exec do);
/// an empty HOME is dropped. Says whether HOME is still to come from /etc/passwd.
fn environment(list: &[String]) -> Result<(Vec<String>, bool), ProcessError> {
    let mut seen = std::collections::HashSet::new();
    let mut env = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate().rev() {
        let name = match entry.split_once('=') {
            Some((name, _)) if !name.is_empty() => name,
            _ => {
                return Err(ProcessError::BadEnv {
                    index,
                    entry: entry.clone(),
                })
            }
        };
        if seen.insert(name) && entry != "HOME=" {
            env.push(entry.clone());
        }
    }
    env.reverse();
    let needs_home = !env.iter().any(|e| e.starts_with("HOME="));
    Ok((env, needs_home))
}

/// The settings berth gives the new process from outside (they take a pid).
#[derive(Clone, Copy, Debug, Default)]
pub struct Outside {
    io_priority: Option<u32>,
    scheduler: Option<settings::SchedAttr>,
}

impl Outside {
    /// Sets them on process `pid`, before it runs the program; its children inherit them.
    pub fn apply(&self, pid: i32) -> Result<(), ProcessError> {
        self.apply_io_priority(pid)?;
        self.apply_scheduler(pid)
    }

    pub fn apply_io_priority(&self, pid: i32) -> Result<(), ProcessError> {
        if let Some(value) = self.io_priority {
            settings::set_io_priority(pid, value)?;
        }
        Ok(())
    }

    /// A scheduler is set on the process itself, never on a parent to inherit: a parent under
    /// SCHED_DEADLINE cannot fork, and SCHED_FLAG_RESET_ON_FORK would not pass it on.
    pub fn apply_scheduler(&self, pid: i32) -> Result<(), ProcessError> {
        if let Some(attr) = &self.scheduler {
            settings::set_scheduler(pid, attr)?;
        }
        Ok(())
    }

    pub fn has_scheduler(&self) -> bool {
        self.scheduler.is_some()
    }
}

/// Overwrites berth's environment in this process's memory with zeros. A clone of berth shows
/// that memory as `/proc/PID/environ` until its execve replaces it, and the variables of berth's
/// caller are none of the container's business. Nothing in the process reads its environment
/// afterwards: the program's is in its plan (hooks get theirs explicitly).
pub fn scrub_environment() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // The fields after the command name, which may hold anything, start with the third.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return;
    };
    let fields: Vec<&str> = rest.split(' ').collect();
    let field = |n: usize| fields.get(n - 3)?.trim().parse::<usize>().ok();
    let (Some(start), Some(end)) = (field(50), field(51)) else {
        return;
    };
    if end <= start {
        return;
    }
    // SAFETY: [start, end) is this process's environment block (env_start and env_end), which the
    // kernel mapped writable at execve; clearenv first drops libc's pointers into it, and the
    // process is single-threaded.
    unsafe {
        libc::clearenv();
        std::ptr::write_bytes(start as *mut u8, 0, end - start);
    }
}

/// Whether `path` names a file through the process that opens it (its descriptors).
fn names_itself(path: &Path) -> bool {
    ["/proc/self/", "/proc/thread-self/", "/dev/fd/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

/// Finds the program to run the way execvp would, and says clearly why when it cannot.
pub fn find_executable(name: &str, path_env: Option<&[u8]>) -> Result<CString, String> {
    let usable = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {
                // As execve decides: by the effective ids and capabilities (plain access(2)
                // takes the real ones, and none for a user that is not root, so it refuses what
                // CAP_DAC_OVERRIDE lets run). Only EACCES is a refusal: the container's seccomp
                // filter may already be in and deny faccessat2 itself (runtime-tools' profile
                // answers EPERM), and then execve has the last word.
                let effective = nix::unistd::faccessat(
                    nix::fcntl::AT_FDCWD,
                    path,
                    nix::unistd::AccessFlags::X_OK,
                    nix::fcntl::AtFlags::AT_EACCESS,
                );
                let refused = effective == Err(nix::errno::Errno::EACCES);
                if meta.permissions().mode() & 0o111 == 0 || refused {
                    Err(format!("{} is not executable", path.display()))
                } else {
                    Ok(())
                }
            }
            Ok(_) => Err(format!("{} is not a regular file", path.display())),
            // /proc/self and /dev/fd name the process that runs the program. A process started
            // from outside the container's pid namespace is set up by another, for which the
            // container's /proc has no `self` (`process::exec`): the execve will tell.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && names_itself(path) => Ok(()),
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
    fn each_variable_keeps_its_last_value_and_an_empty_home_is_dropped() {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (env, needs_home) =
            environment(&list(&["ONE=two", "PATH=/bin", "ONE=", "TWO=a=b", "TWO=c"])).unwrap();
        assert_eq!(env, list(&["PATH=/bin", "ONE=", "TWO=c"]));
        assert!(needs_home);
        let (env, needs_home) = environment(&list(&["HOME=/override", "HOME="])).unwrap();
        assert!(env.is_empty() && needs_home);
        let (env, needs_home) = environment(&list(&["HOME=", "HOME=/h"])).unwrap();
        assert_eq!(env, list(&["HOME=/h"]));
        assert!(!needs_home);
        for bad in ["NOEQUALS", "=value"] {
            let err = environment(&list(&["A=1", bad])).unwrap_err().to_string();
            assert_eq!(err, format!("process.env[1] {bad:?} is not NAME=VALUE"));
        }
    }

    #[test]
    fn listen_fds_come_first_and_the_environment_says_so() {
        let process: Process = serde_json::from_str(
            r#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},
                "env":["A=1","LISTEN_FDS=9","LISTEN_PID=7","B=2"]}"#,
        )
        .unwrap();
        let env = |plan: &ProcessPlan| -> Vec<String> {
            plan.env
                .iter()
                .map(|e| e.to_string_lossy().into_owned())
                .collect()
        };
        // Without socket activation the environment is the spec's, whatever it says.
        let plain = ProcessPlan::from_spec(&process, &ExtraFds::default()).unwrap();
        assert_eq!(env(&plain), ["A=1", "LISTEN_FDS=9", "LISTEN_PID=7", "B=2"]);
        let extra = ExtraFds {
            listen: 2,
            listen_names: Some("web:admin".into()),
            preserve: 1,
        };
        let plan = ProcessPlan::from_spec(&process, &extra).unwrap();
        assert_eq!(
            env(&plan),
            ["A=1", "B=2", "LISTEN_FDS=2", "LISTEN_FDNAMES=web:admin"]
        );
        assert_eq!((plan.preserve_fds, plan.listen_fds), (3, 2));
    }

    #[test]
    fn preserved_descriptors_must_be_open() {
        assert_eq!(ExtraFds::new(0, false).unwrap(), ExtraFds::default());
        assert_eq!(
            ExtraFds::new(-1, false).unwrap_err().to_string(),
            "--preserve-fds must not be negative, not -1"
        );
        let err = ExtraFds::new(100_000, false).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "is not open, but the container is to get descriptors 3 to 100002 (--preserve-fds 100000)"
            ),
            "{err}"
        );
    }

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
