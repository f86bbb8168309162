//! The last steps before a container's program runs, shared by the init and `exec`: resource
//! limits, user, groups and capabilities, the working directory, seccomp, the program's path, and
//! the execve itself with berth's descriptors closed and signals back to their defaults.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::errno::Errno;
use nix::unistd::{Gid, Uid};

use super::channel::Channel;
use super::ProcessPlan;
use crate::seccomp::Filter;

#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error(transparent)]
    Capabilities(#[from] crate::capabilities::CapabilityError),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    Settings(#[from] super::settings::SettingsError),
    #[error(transparent)]
    Lsm(#[from] crate::lsm::LsmError),
    #[error("cannot set process.rlimits {name} to soft {soft}, hard {hard}: {source}{hint}")]
    Rlimit {
        name: &'static str,
        soft: u64,
        hard: u64,
        source: Errno,
        hint: &'static str,
    },
    #[error("cannot change to user {uid}:{gid}: {source}")]
    User { uid: u32, gid: u32, source: Errno },
    #[error("cannot change to the working directory {0}: {1}")]
    Cwd(String, Errno),
    #[error("the working directory {0} is outside the container's root filesystem")]
    CwdOutside(String),
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(Errno),
    #[error("cannot keep the container's process non-dumpable: {0}")]
    Dumpable(Errno),
    #[error("cannot find HOME for uid {uid} (process.env sets none): {source}")]
    Home {
        uid: u32,
        source: crate::bounded::ReadError,
    },
    #[error("{0}")]
    Exec(String),
    #[error("lost contact with berth while {0}")]
    Channel(&'static str),
}

/// A program ready to run: found on disk, with its final environment, the caller already in the
/// process's user, capabilities and working directory, and under its seccomp filter unless that
/// is left to the last moment ([`SeccompAt::Exec`]).
pub struct Ready<'a> {
    path: CString,
    env: Vec<CString>,
    /// A seccomp filter still to install, right before execve.
    late_seccomp: Option<&'a Filter>,
}

impl Ready<'_> {
    /// The program's final environment (HOME added when it had none).
    pub fn env(&self) -> &[CString] {
        &self.env
    }

    /// Installs the seccomp filter now instead of right before execve: whatever runs in the
    /// container before its program (startContainer hooks, whose path resolves in the image)
    /// must run under it, and so must anything they leave behind, as under runc.
    pub fn install_seccomp_now(&mut self) -> Result<(), ProgramError> {
        if let Some(filter) = self.late_seccomp.take() {
            crate::seccomp::install(filter)?;
        }
        Ok(())
    }
}

/// When the seccomp filter goes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeccompAt {
    /// In [`prepare`], with everything else: the process is confined before anything of the
    /// container can see it.
    Prepare,
    /// Right before execve, in the process that runs the program: only where the profile forbids
    /// what starting that process needs after the filter, and nothing that could use it sees
    /// the process meanwhile (see `process::exec`).
    Exec,
}

/// Takes the root identity of a user namespace just made or joined.
pub fn become_root_in_userns() -> Result<(), ProgramError> {
    let root = |source| ProgramError::User {
        uid: 0,
        gid: 0,
        source,
    };
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(root)?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(root)
}

/// Makes the process what the container's program is to be: its limits, personality and memory
/// policy, its AppArmor profile or SELinux label for the execve (`labels`, opened while the
/// host's /proc was there), user and capabilities, no_new_privs, working directory and umask,
/// berth's descriptors closed on exec, and its seccomp filter (unless `seccomp_at` leaves it to
/// the execve); then finds the program. Signal dispositions are the caller's (see
/// [`reset_signals`]). `terminal`: the process's stdio is the pty berth made for it.
pub fn prepare<'a>(
    process: &ProcessPlan,
    terminal: bool,
    seccomp: Option<&'a Filter>,
    seccomp_at: SeccompAt,
    labels: crate::lsm::OpenLabels,
    channel: &Channel,
) -> Result<Ready<'a>, ProgramError> {
    let mut env = process.env.clone();
    if process.needs_home {
        env.push(home_for(process.uid)?);
    }
    set_rlimits(process)?;
    own_stdio(process.uid, terminal);
    // The working directory is entered as root, as runc does, so a program may start in one its
    // user cannot enter (root's 0700 home); and before the filter, which need not allow chdir
    // and getcwd for berth. Refused for want of permission (a folder only the user may enter, or
    // root of a user namespace that does not own it), it is entered again as the user.
    let cwd_entered = match enter_cwd(process) {
        Err(ProgramError::Cwd(_, Errno::EACCES | Errno::EPERM)) => false,
        other => other.map(|()| true)?,
    };
    // Before the filter, which may forbid both calls (Docker's profile allows personality only
    // for a few values and set_mempolicy only with CAP_SYS_NICE).
    if let Some(persona) = process.personality {
        super::settings::set_personality(persona)?;
    }
    if let Some(policy) = &process.memory_policy {
        super::settings::set_memory_policy(policy)?;
    }
    labels.apply()?;
    let now = seccomp.filter(|_| seccomp_at == SeccompAt::Prepare);
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it before dropping
    // capabilities (the profile must then allow what follows, as runc's must). With it, last.
    if let Some(filter) = now.filter(|_| !process.no_new_privileges) {
        install_seccomp(filter, channel)?;
    }
    become_user(process)?;
    if !cwd_entered {
        enter_cwd(process)?;
    }
    if process.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(ProgramError::NoNewPrivs)?;
    }
    // A change of user makes a process dumpable again when fs.suid_dumpable is 1: until its
    // execve it is still berth (CVE-2019-5736, see clone::undumpable).
    super::clone::undumpable().map_err(ProgramError::Dumpable)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(process.umask as _));
    let program = process.args[0].to_string_lossy();
    let path = super::find_executable(&program, process.path_env()).map_err(ProgramError::Exec)?;
    // berth's descriptors are closed on exec; only stdio and the preserved ones stay.
    let first_closed = 3 + process.preserve_fds.max(0) as libc::c_uint;
    // SAFETY: close_range only marks descriptors close-on-exec.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first_closed,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if let Some(filter) = now.filter(|_| process.no_new_privileges) {
        install_seccomp(filter, channel)?;
    }
    Ok(Ready {
        path,
        env,
        late_seccomp: seccomp.filter(|_| seccomp_at == SeccompAt::Exec),
    })
}

/// Sets every signal's disposition back to its default: ignored signals survive execve, and
/// berth may have inherited some (and ignores SIGPIPE). Caught ones execve resets by itself, so
/// a caller may catch some again afterwards. Done before the seccomp filter goes in.
pub fn reset_signals() {
    // SAFETY: restoring default dispositions; no handlers run here. glibc refuses to touch its
    // own real-time signals, so this talks to the kernel directly: an all-zero kernel sigaction
    // is SIG_DFL with no flags and an empty mask.
    unsafe {
        let default_action = [0u64; 4];
        for signal in 1..=64 {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    default_action.as_ptr(),
                    0usize,
                    8usize,
                );
            }
        }
    }
}

/// Unblocks every signal: the mask survives execve, and `run` and `exec` block signals to
/// forward them.
pub fn unblock_signals() {
    // SAFETY: an empty set, filled by sigemptyset, for sigprocmask to read.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Replaces the calling process with the program, signals unblocked (see [`exec_program`]).
pub fn exec(ready: Ready, process: &ProcessPlan) -> Result<Infallible, ProgramError> {
    unblock_signals();
    exec_program(ready, process)
}

/// Replaces the calling process with the program: the late seccomp filter in, then execve. Its
/// signal dispositions and mask are the caller's (see [`reset_signals`], [`unblock_signals`]).
pub fn exec_program(ready: Ready, process: &ProcessPlan) -> Result<Infallible, ProgramError> {
    let mut env = ready.env;
    if process.listen_fds > 0 {
        // Socket activation names the process the descriptors are for: this one, as it sees itself.
        let pid = format!("LISTEN_PID={}", nix::unistd::getpid());
        env.push(CString::new(pid).expect("no NUL in a number"));
    }
    if let Some(filter) = ready.late_seccomp {
        crate::seccomp::install(filter)?;
    }
    let err = nix::unistd::execve(&ready.path, &process.args, &env).unwrap_err();
    Err(ProgramError::Exec(format!(
        "cannot run {:?}: {err}",
        ready.path
    )))
}

/// Installs the seccomp filter; a notify listener goes to berth, which hands it to the agent.
fn install_seccomp(filter: &Filter, channel: &Channel) -> Result<(), ProgramError> {
    if let Some(listener) = crate::seccomp::install(filter)? {
        channel
            .send_fd(listener.as_raw_fd())
            .map_err(|_| ProgramError::Channel("handing over the seccomp listener"))?;
    }
    Ok(())
}

/// Drops capabilities and changes user, in the order the kernel needs: bounding set while
/// CAP_SETPCAP is still there, keep-caps across the uid change, then the final sets.
fn become_user(process: &ProcessPlan) -> Result<(), ProgramError> {
    crate::capabilities::drop_bounding(process.caps.bounding, process.last_cap)?;
    let user_err = |source| ProgramError::User {
        uid: process.uid,
        gid: process.gid,
        source,
    };
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    let groups: Vec<Gid> = process
        .additional_gids
        .iter()
        .map(|&g| Gid::from_raw(g))
        .collect();
    match nix::unistd::setgroups(&groups) {
        // A user namespace with setgroups denied cannot change groups; keep what it has.
        Ok(()) | Err(Errno::EPERM) if groups.is_empty() => {}
        other => other.map_err(user_err)?,
    }
    let gid = Gid::from_raw(process.gid);
    let uid = Uid::from_raw(process.uid);
    nix::unistd::setresgid(gid, gid, gid).map_err(user_err)?;
    nix::unistd::setresuid(uid, uid, uid).map_err(user_err)?;
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    crate::capabilities::apply(&process.caps)?;
    Ok(())
}

/// Changes to the process's working directory, and checks that it lies inside the container.
fn enter_cwd(process: &ProcessPlan) -> Result<(), ProgramError> {
    let cwd = || process.cwd.display().to_string();
    nix::unistd::chdir(&process.cwd).map_err(|e| ProgramError::Cwd(cwd(), e))?;
    // A host directory reachable as /proc/self/fd/N (a leaked descriptor: CVE-2024-21626) would
    // put the working directory outside the container's root; the kernel then calls it
    // unreachable, which getcwd reports as ENOENT.
    match nix::unistd::getcwd() {
        Ok(dir) if dir.is_absolute() => Ok(()),
        Ok(_) | Err(Errno::ENOENT) => Err(ProgramError::CwdOutside(cwd())),
        Err(e) => Err(ProgramError::Cwd(cwd(), e)),
    }
}

/// Gives the process's user its stdio, as runc does, so a program that is not root can reopen
/// /dev/stdout, /dev/stderr or its terminal (nginx and many scripts do): the pty berth made, and
/// pipes and sockets, which exist only as these descriptors. The caller's files and terminal are
/// not the container's to change and stay as they are, and so does a descriptor whose owner a
/// user namespace does not map (EPERM): the program can still use it as it is.
fn own_stdio(uid: u32, terminal: bool) {
    for fd in 0..3 {
        // SAFETY: stdio of this process; a closed one fails fstat and is skipped.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let Ok(stat) = nix::sys::stat::fstat(fd) else {
            continue;
        };
        let kind = stat.st_mode & libc::S_IFMT;
        let anonymous = || {
            nix::sys::statfs::fstatfs(fd).is_ok_and(|fs| {
                // linux/magic.h: PIPEFS_MAGIC, SOCKFS_MAGIC.
                matches!(fs.filesystem_type().0, 0x5049_5045 | 0x534F_434B)
            })
        };
        let ours = match kind {
            libc::S_IFCHR => terminal,
            libc::S_IFIFO | libc::S_IFSOCK => anonymous(),
            _ => false,
        };
        if ours && stat.st_uid != uid {
            let _ = nix::unistd::fchown(fd, Some(Uid::from_raw(uid)), None);
        }
    }
}

fn set_rlimits(process: &ProcessPlan) -> Result<(), ProgramError> {
    for &(resource, name, soft, hard) in &process.rlimits {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads one rlimit struct.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            let source = Errno::last();
            let hint = if source == Errno::EPERM {
                " (raising a hard limit needs CAP_SYS_RESOURCE)"
            } else {
                ""
            };
            return Err(ProgramError::Rlimit {
                name,
                soft,
                hard,
                source,
                hint,
            });
        }
    }
    Ok(())
}

/// The most of the image's /etc/passwd berth reads (directory exports run to a few MiB).
const PASSWD_LIMIT: u64 = 16 << 20;

/// `HOME=` from the container's /etc/passwd, or `/` when the file or the user's entry is missing,
/// as runc does. An /etc/passwd that is not a regular file or is too large fails instead: runc
/// reads a FIFO there forever, and berth must not read a device without end.
fn home_for(uid: u32) -> Result<CString, ProgramError> {
    let passwd = match crate::bounded::read_regular(Path::new("/etc/passwd"), PASSWD_LIMIT) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) if err.not_found() => String::new(),
        Err(source) => return Err(ProgramError::Home { uid, source }),
    };
    let home = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse() == Ok(uid))
        .map(|f| f[5].to_string())
        .unwrap_or_else(|| "/".to_string());
    Ok(CString::new(format!("HOME={home}")).unwrap_or_default())
}
