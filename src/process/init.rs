//! The init sequence: what the container's first process does between clone and the execve of
//! the container's program. Everything it needs was worked out by berth before the clone; errors
//! travel back over the channel and become the command's error.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::Hook;

use super::channel::{Channel, Message};
use super::ProcessPlan;
use crate::namespaces::{self, Join};
use crate::rootfs::{self, RootfsPlan};
use crate::syscall::{Kernel, Linux};

/// Everything the init needs, made by berth before the clone.
pub struct InitPlan {
    /// Namespaces to join by path (user first); the new ones were made by clone.
    pub join: Vec<Join>,
    /// Namespaces made after joining (the two-stage path) or after the cgroup move.
    pub unshare: CloneFlags,
    /// Whether the process must fork once more to become pid 1 of a pid namespace it unshared.
    pub two_stage: bool,
    /// Whether the init waits for berth's `Go` before it goes on (uid maps, cgroup placement).
    pub wait_go: bool,
    /// Whether the container has a user namespace (new or joined).
    pub userns: bool,
    pub new_netns: bool,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub rootfs: RootfsPlan,
    pub process: ProcessPlan,
    /// Whether berth runs prestart/createRuntime hooks, and this init createContainer ones.
    pub hooks_point: bool,
    pub create_container_hooks: Vec<Hook>,
    pub start_container_hooks: Vec<Hook>,
    /// The exec fifo, open read-write: reading blocks until `start` writes a byte.
    pub fifo: OwnedFd,
    /// The name of a new session keyring, so containers do not share the host's keys.
    pub session_keyring: Option<String>,
    /// berth's lock on the container's folder, which the init must not keep holding.
    pub lock_fd: std::os::fd::RawFd,
    /// The compiled `linux.seccomp` filter.
    pub seccomp: Option<crate::seccomp::Filter>,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Namespace(#[from] namespaces::NamespaceError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Capabilities(#[from] crate::capabilities::CapabilityError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error("cannot {0}: {1}")]
    Sys(&'static str, Errno),
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
    #[error("{0}")]
    Exec(String),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    Confine(#[from] super::ConfineError),
    #[error("lost contact with berth while {0}")]
    Channel(&'static str),
}

/// Runs the init in the new process: returns only in the two-stage intermediate, which exits.
pub fn run(plan: InitPlan, channel: Channel) -> ! {
    let kernel = Linux;
    let code = match init(&kernel, plan, &channel) {
        Ok(never) => match never {},
        Err(err) => {
            let _ = channel.send(&Message::Error(err.to_string()));
            1
        }
    };
    // SAFETY: leave without running destructors or atexit handlers copied from berth.
    unsafe { libc::_exit(code) }
}

enum Never {}

fn wait_for_go(channel: &Channel, during: &'static str) -> Result<(), InitError> {
    match channel.recv() {
        Ok(Message::Go) => Ok(()),
        _ => Err(InitError::Channel(during)),
    }
}

fn become_root_in_userns() -> Result<(), InitError> {
    let root = |e| InitError::User {
        uid: 0,
        gid: 0,
        source: e,
    };
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(root)?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(root)
}

fn init(kernel: &dyn Kernel, plan: InitPlan, channel: &Channel) -> Result<Never, InitError> {
    // SAFETY: the lock descriptor is a copy of berth's; nothing else in this process uses it.
    unsafe { libc::close(plan.lock_fd) };
    if plan.two_stage {
        // Join first, then make the new namespaces: they belong to the user namespace.
        namespaces::enter(kernel, &plan.join, CloneFlags::empty())?;
        let deferred = plan.unshare & CloneFlags::CLONE_NEWCGROUP;
        kernel
            .unshare(plan.unshare - deferred)
            .map_err(|e| InitError::Sys("unshare namespaces", e))?;
        channel
            .send(&Message::HooksPoint)
            .map_err(|_| InitError::Channel("asking for uid and gid maps"))?;
        wait_for_go(channel, "waiting for uid and gid maps")?;
        become_root_in_userns()?;
        kernel
            .unshare(deferred)
            .map_err(|e| InitError::Sys("unshare the cgroup namespace", e))?;
        let mut pidfd: libc::c_int = -1;
        let args = clone3::CloneArgs {
            flags: (libc::CLONE_PARENT | libc::CLONE_PIDFD) as u64,
            pidfd: &mut pidfd as *mut libc::c_int as u64,
            exit_signal: 0,
            ..Default::default()
        };
        // SAFETY: fork-like clone (no stack); the child continues below with the same plan.
        match unsafe { clone3::clone3_system_call(&args) } {
            -1 => return Err(InitError::Sys("fork the init", Errno::last())),
            0 => {}
            _ => {
                // Hand berth the init as a pidfd: a pid would be in our pid namespace, not berth's.
                let _ = channel.send_fd(pidfd);
                // SAFETY: the intermediate's work is done; leave without destructors.
                unsafe { libc::_exit(0) }
            }
        }
    } else {
        namespaces::enter(kernel, &plan.join, CloneFlags::empty())?;
        if plan.wait_go {
            wait_for_go(channel, "waiting for uid maps and the cgroup")?;
        }
        if plan.userns {
            become_root_in_userns()?;
        }
        if !plan.unshare.is_empty() {
            kernel
                .unshare(plan.unshare)
                .map_err(|e| InitError::Sys("unshare the cgroup namespace", e))?;
        }
    }
    // Changing user (into a user namespace) may have made this process dumpable again.
    super::clone::undumpable().map_err(|e| InitError::Sys("stay non-dumpable", e))?;
    // Device nodes and the files berth makes get exactly the modes asked for.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    if let Some(name) = &plan.session_keyring {
        join_session_keyring(name)?;
    }
    if plan.new_netns {
        loopback_up().map_err(|e| InitError::Sys("bring up the loopback interface", e))?;
    }
    if let Some(name) = &plan.hostname {
        kernel
            .sethostname(name)
            .map_err(|e| InitError::Sys("set the hostname", e))?;
    }
    if let Some(name) = &plan.domainname {
        kernel
            .setdomainname(name)
            .map_err(|e| InitError::Sys("set the domain name", e))?;
    }
    rootfs::prepare(kernel, &plan.rootfs)?;
    let mut state = String::new();
    if plan.hooks_point {
        channel
            .send(&Message::HooksPoint)
            .map_err(|_| InitError::Channel("asking for the createRuntime hooks"))?;
        state = match channel.recv() {
            Ok(Message::State(state)) => state,
            _ => return Err(InitError::Channel("waiting for the createRuntime hooks")),
        };
        crate::hooks::run("createContainer", &plan.create_container_hooks, &state)?;
    }
    rootfs::switch_root(kernel, &plan.rootfs)?;
    rootfs::finish(kernel, &plan.rootfs)?;
    let process = &plan.process;
    let mut env = process.env.clone();
    if process.needs_home {
        env.push(home_for(process.uid));
    }
    set_rlimits(process)?;
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it before dropping
    // capabilities (the profile must then allow what follows). With it, as late as possible,
    // unless a notify listener has to reach berth before `create` returns.
    let filter = plan.seccomp.as_ref();
    let early = filter.filter(|f| !process.no_new_privileges || f.has_notify());
    if let Some(filter) = early.filter(|_| !process.no_new_privileges) {
        install_seccomp(filter, channel)?;
    }
    become_user(process)?;
    if let Some(filter) = early.filter(|_| process.no_new_privileges) {
        install_seccomp(filter, channel)?;
    }
    let late = filter.filter(|_| early.is_none());
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(process.umask as _));
    let program = process.args[0].to_string_lossy();
    let path = super::find_executable(&program, process.path_env()).map_err(InitError::Exec)?;
    super::check_confined(&process.cwd)?;
    end_on_signals_while_created();
    channel
        .send(&Message::Ready)
        .map_err(|_| InitError::Channel("reporting the container created"))?;
    // From here berth's `create` may have returned: failures go to the container's stderr.
    let started = wait_for_start(&plan.fifo).and_then(|()| {
        run_start_hooks(&plan.start_container_hooks, &state)?;
        exec(&path, &process.args, &env, process.preserve_fds, late)
    });
    let Err(err) = started;
    eprintln!("berth: {err}");
    // SAFETY: the container's program could not start; leave without running destructors.
    unsafe { libc::_exit(127) }
}

/// startContainer hooks: in the container, after `start`, before the program.
fn run_start_hooks(hooks: &[Hook], state: &str) -> Result<(), InitError> {
    if hooks.is_empty() {
        return Ok(());
    }
    let state = state.replacen("\"status\":\"creating\"", "\"status\":\"running\"", 1);
    crate::hooks::run("startContainer", hooks, &state)?;
    Ok(())
}

/// Installs the seccomp filter; a notify listener goes to berth, which hands it to the agent.
fn install_seccomp(filter: &crate::seccomp::Filter, channel: &Channel) -> Result<(), InitError> {
    if let Some(listener) = crate::seccomp::install(filter)? {
        channel
            .send_fd(listener.as_raw_fd())
            .map_err(|_| InitError::Channel("handing over the seccomp listener"))?;
    }
    Ok(())
}

/// Drops capabilities and changes user, in the order the kernel needs: bounding set while
/// CAP_SETPCAP is still there, keep-caps across the uid change, then the final sets.
fn become_user(process: &ProcessPlan) -> Result<(), InitError> {
    crate::capabilities::drop_bounding(process.caps.bounding, process.last_cap)?;
    let user_err = |source| InitError::User {
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
    nix::unistd::chdir(&process.cwd)
        .map_err(|e| InitError::Cwd(process.cwd.display().to_string(), e))?;
    crate::capabilities::apply(&process.caps)?;
    if process.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(|e| InitError::Sys("set no_new_privs", e))?;
    }
    Ok(())
}

fn set_rlimits(process: &ProcessPlan) -> Result<(), InitError> {
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
            return Err(InitError::Rlimit {
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

/// `HOME=` from the container's /etc/passwd, or `/` when the user has no entry, as runc does.
fn home_for(uid: u32) -> CString {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let home = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse() == Ok(uid))
        .map(|f| f[5].to_string())
        .unwrap_or_else(|| "/".to_string());
    CString::new(format!("HOME={home}")).unwrap_or_default()
}

/// The init of a created container is pid 1 of its pid namespace, and the kernel drops every
/// signal sent to it for which it has no handler (but SIGKILL and SIGSTOP): `berth kill ID` would
/// succeed and do nothing. Catch the usual ones and end, as runc's init does. execve resets the
/// handlers; signals `run` keeps blocked for forwarding stay pending and never reach them.
fn end_on_signals_while_created() {
    extern "C" fn end(signal: libc::c_int) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + signal) }
    }
    for signal in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: installs a handler that only calls _exit; the struct is zeroed, then filled.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = end as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Blocks until `start` writes a byte into the exec fifo.
fn wait_for_start(fifo: &OwnedFd) -> Result<(), InitError> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(fifo, &mut byte) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(InitError::Sys("wait for start", e)),
        }
    }
}

/// Replaces the init with the container's program: berth's descriptors closed on exec (only
/// stdio and the preserved ones stay), signals back to their defaults.
fn exec(
    path: &CString,
    args: &[CString],
    env: &[CString],
    preserve_fds: i32,
    seccomp: Option<&crate::seccomp::Filter>,
) -> Result<Never, InitError> {
    let first_closed = 3 + preserve_fds.max(0) as libc::c_uint;
    // SAFETY: close_range only marks descriptors close-on-exec.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first_closed,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    // SAFETY: restoring default dispositions and an empty mask before exec; no handlers run here.
    // Ignored signals survive execve, and berth may have inherited some (or ignores SIGPIPE).
    // glibc refuses to touch its own real-time signals, so this talks to the kernel directly: an
    // all-zero kernel sigaction is SIG_DFL with no flags and an empty mask.
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
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
    if let Some(filter) = seccomp {
        crate::seccomp::install(filter)?;
    }
    let err = nix::unistd::execve(path, args, env).unwrap_err();
    Err(InitError::Exec(format!("cannot run {:?}: {err}", path)))
}

/// Joins a new session keyring named `name`. Kernels without keyrings, or that refuse (some
/// user namespace setups), leave the container with the keyring it inherited, as runc does.
fn join_session_keyring(name: &str) -> Result<(), InitError> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    let name = CString::new(name).unwrap_or_default();
    // SAFETY: keyctl reads a NUL-terminated name.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    match Errno::result(rc) {
        Ok(_) | Err(Errno::ENOSYS) | Err(Errno::EPERM) | Err(Errno::EACCES) => Ok(()),
        Err(e) => Err(InitError::Sys("join a new session keyring", e)),
    }
}

/// Brings `lo` up in the new network namespace, as runc does for a namespace of its own.
fn loopback_up() -> Result<(), Errno> {
    // SAFETY: a plain datagram socket used for one ioctl, closed by OwnedFd.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `raw` is a new descriptor we own.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(Errno::last());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(Errno::last());
        }
    }
    Ok(())
}
