//! The init sequence: what the container's first process does between clone and the execve of
//! the container's program. Everything it needs was worked out by berth before the clone; errors
//! travel back over the channel and become the command's error.
//!
//! The init builds the container (namespaces, root filesystem, hooks, terminal) and, before it
//! tells berth the container is created, becomes exactly what the program is to be: user,
//! capabilities, no_new_privs, LSM labels, seccomp filter, berth's descriptors closed but the
//! exec fifo. Only then can anything else of a container see it: `exec` refuses a container
//! still being created, and the pid namespace it made is its own until then. While it waits for
//! `start` it holds the exec fifo and nothing else of berth's, and talks to `start` only through
//! it.
//!
//! A container whose pid namespace is joined by path is different: whatever is in that namespace
//! would see its init from its first instant, running berth's code with berth's privileges. So
//! there the init builds the container from outside the namespace and says [`Message::Built`];
//! berth then starts the container's process the way `exec` starts one (`process::exec`), and
//! the init leaves.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use oci_spec::runtime::Hook;

use super::channel::{Channel, ChannelError, Message};
use super::program::{self, become_root_in_userns, ProgramError, Ready, SeccompAt};
use super::ProcessPlan;
use crate::console::{self, ConsoleError, WindowSize};
use crate::namespaces::{self, Join};
use crate::rootfs::{self, RootfsPlan};
use crate::syscall::{Kernel, Linux};

/// Everything the init needs, made by berth before the clone.
pub struct InitPlan {
    /// Namespaces to join by path (user first); the new ones were made by clone.
    pub join: Vec<Join>,
    /// The `tasks` files of the container's v1 cgroups, which the init moves itself into first.
    pub join_cgroups: Vec<OwnedFd>,
    /// Whether berth makes the v1 cgroups while the init sets up: it sends their `tasks` files
    /// (`Message::Cgroups`), which the init waits for and joins (and then makes its cgroup
    /// namespace) just before the first step that needs them.
    pub cgroups_later: bool,
    /// Namespaces made after joining (the two-stage path) or after the cgroup move.
    pub unshare: CloneFlags,
    /// Whether the process must fork once more to become pid 1 of a pid namespace it unshared.
    pub two_stage: bool,
    /// Whether the init waits for berth's `Go` before it goes on (uid maps, cgroup placement).
    pub wait_go: bool,
    /// Whether the container has a user namespace (new or joined).
    pub userns: bool,
    /// Whether the process is dumpable while berth writes the maps of its new user namespace:
    /// an ordinary user may not write them otherwise (see `idmap`). No process of the
    /// container exists yet at that moment; it is made non-dumpable again right after.
    pub dumpable_for_maps: bool,
    /// Whether the init is pid 1 of a pid namespace made for the container.
    pub own_pid_namespace: bool,
    pub new_netns: bool,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub rootfs: RootfsPlan,
    pub process: ProcessPlan,
    /// Whether the container gets a terminal (`process.terminal`), and its first size.
    pub terminal: bool,
    pub console_size: Option<WindowSize>,
    /// Whether berth relays the terminal to its own stdio (no console socket).
    pub console_relayed: bool,
    /// Whether berth runs prestart/createRuntime hooks, and this init createContainer ones.
    pub hooks_point: bool,
    pub create_container_hooks: Vec<Hook>,
    pub start_container_hooks: Vec<Hook>,
    /// The state the createRuntime hooks had, which berth sends at the hooks point.
    pub state: String,
    /// The exec fifo, open read-write: reading blocks until `start` writes a byte; after it, why
    /// the program could not run (a startContainer hook failed) goes back the same way, for
    /// `start` to report. None when the init only builds the container (`built_only`).
    pub fifo: Option<OwnedFd>,
    /// Whether the init only builds the container, from outside the pid namespace it joins:
    /// berth starts the container's process itself (see the module's comment).
    pub built_only: bool,
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
    Hook(#[from] crate::hooks::HookError),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error(transparent)]
    Lsm(#[from] crate::lsm::LsmError),
    #[error("cannot {0}: {1}")]
    Sys(&'static str, Errno),
    #[error("lost contact with berth while {0}")]
    Channel(&'static str),
}

/// Runs the init in the new process; never returns.
pub fn run(mut plan: InitPlan, channel: Channel) -> ! {
    let kernel = Linux;
    let seccomp = plan.seccomp.take();
    let ready = match build(&kernel, &mut plan, seccomp.as_ref(), &channel) {
        Ok(ready) => ready,
        Err(err) => {
            let _ = channel.send(&Message::Error(err.to_string()));
            // SAFETY: leave without running destructors or atexit handlers copied from berth.
            unsafe { libc::_exit(1) }
        }
    };
    let Some(mut ready) = ready else {
        // Built only: berth opens our namespaces, starts the container's process, then closes
        // the channel, which lets us go.
        let code = match channel.send(&Message::Built).map(|()| channel.recv()) {
            Ok(Err(ChannelError::Closed)) => 0,
            _ => 1,
        };
        // SAFETY: as above.
        unsafe { libc::_exit(code) }
    };
    // From here the init is the container's to see: it keeps nothing of berth's but the fifo.
    if channel.write(&Message::Ready).is_err() {
        // SAFETY: as above.
        unsafe { libc::_exit(1) }
    }
    drop(channel);
    let fifo = plan
        .fifo
        .as_ref()
        .expect("an init that waits for start has the fifo");
    let started = wait_for_start(fifo).and_then(|()| {
        run_start_hooks(&plan.start_container_hooks, &plan.state, &mut ready)?;
        Ok(program::exec(ready, &plan.process)?)
    });
    let Err(err) = started;
    report_start_failure(fifo, &err.to_string());
    // SAFETY: the container's program could not start; leave without running destructors.
    unsafe { libc::_exit(127) }
}

fn wait_for_go(channel: &Channel, during: &'static str) -> Result<(), InitError> {
    match channel.recv() {
        Ok(Message::Go) => Ok(()),
        _ => Err(InitError::Channel(during)),
    }
}

/// Everything up to the container created: `Some` program ready to run, confined, or `None`
/// once a container that is only built is.
fn build<'a>(
    kernel: &dyn Kernel,
    plan: &mut InitPlan,
    seccomp: Option<&'a crate::seccomp::Filter>,
    channel: &Channel,
) -> Result<Option<program::Ready<'a>>, InitError> {
    // SAFETY: the lock descriptor is a copy of berth's; nothing else in this process uses it.
    unsafe { libc::close(plan.lock_fd) };
    // While /proc is the host's, which tells where the environment is.
    super::scrub_environment();
    // The host's cgroup files are closed as soon as they are used.
    let join_cgroups = std::mem::take(&mut plan.join_cgroups);
    crate::cgroups::join_self(&join_cgroups)
        .map_err(|e| InitError::Sys("join the container's cgroups", e))?;
    drop(join_cgroups);
    if plan.two_stage {
        // Join first, then make the new namespaces: they belong to the user namespace.
        super::exec::join(kernel, &plan.join)?;
        let deferred = plan.unshare & CloneFlags::CLONE_NEWCGROUP;
        kernel
            .unshare(plan.unshare - deferred)
            .map_err(|e| InitError::Sys("unshare namespaces", e))?;
        dumpable_for_maps(plan.dumpable_for_maps, true)?;
        channel
            .send(&Message::HooksPoint)
            .map_err(|_| InitError::Channel("asking for uid and gid maps"))?;
        wait_for_go(channel, "waiting for uid and gid maps")?;
        dumpable_for_maps(plan.dumpable_for_maps, false)?;
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
        super::exec::join(kernel, &plan.join)?;
        if plan.dumpable_for_maps {
            dumpable_for_maps(true, true)?;
            channel
                .send(&Message::MapIds)
                .map_err(|_| InitError::Channel("asking for uid and gid maps"))?;
        }
        if plan.wait_go {
            wait_for_go(channel, "waiting for uid maps and the cgroup")?;
        }
        dumpable_for_maps(plan.dumpable_for_maps, false)?;
        if plan.userns {
            become_root_in_userns()?;
        }
        if !plan.unshare.is_empty() && !plan.cgroups_later {
            kernel
                .unshare(plan.unshare)
                .map_err(|e| InitError::Sys("unshare the cgroup namespace", e))?;
        }
    }
    // Nothing of berth's but what the init still needs stays open from here, while it waits in
    // the container for `start`: not the caller's other descriptors, nor berth's copies of the
    // cgroup folders and files it held at the clone (runc's create.bats looks for leaks so).
    drop(std::mem::take(&mut plan.join));
    // (The pid namespace a joined container's /proc is mounted for is still to be used.)
    let mut keep = vec![channel.as_raw_fd()];
    keep.extend(plan.fifo.as_ref().map(|fifo| fifo.as_raw_fd()));
    keep.extend(plan.rootfs.proc_pid_ns);
    super::exec::close_from(3 + plan.process.preserve_fds.max(0), &keep);
    // Until its execve the init runs berth's code, from berth's own binary unless the container
    // could ptrace: it holds its pid namespace shared, so nothing that could ptrace is let in
    // meanwhile (container::exposure). Closed on exec.
    if plan.own_pid_namespace {
        let held = hold_pid_namespace().map_err(|e| InitError::Sys("lock the pid namespace", e))?;
        std::mem::forget(held);
    }
    // Changing user (into a user namespace) may have made this process dumpable again.
    super::clone::undumpable().map_err(|e| InitError::Sys("stay non-dumpable", e))?;
    // Device nodes and the files berth makes get exactly the modes asked for.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    if let (Some(name), false) = (&plan.session_keyring, plan.built_only) {
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
    let mut join_cgroups = || match plan.cgroups_later {
        true => join_cgroups_later(kernel, plan.unshare, channel),
        false => Ok(()),
    };
    rootfs::prepare_joining(kernel, &plan.rootfs, &mut join_cgroups)?;
    if plan.hooks_point {
        channel
            .send(&Message::HooksPoint)
            .map_err(|_| InitError::Channel("asking for the createRuntime hooks"))?;
        plan.state = match channel.recv() {
            Ok(Message::State(state)) => state,
            _ => return Err(InitError::Channel("waiting for the createRuntime hooks")),
        };
        crate::hooks::run("createContainer", &plan.create_container_hooks, &plan.state)?;
    }
    // The host's /proc is still /proc here: the container's cannot stand in for it.
    let labels = match plan.built_only {
        false => Some(plan.process.labels.open()?),
        true => None,
    };
    let old_root = rootfs::pivot(kernel, &plan.rootfs)?;
    // Detaching the old root waits for an RCU grace period (0.05 to 6 ms here, the more the busier
    // the machine): a thread of its own does it while this one masks paths.
    let mut detaching = old_root.map(|old_root| Detaching::start(old_root, &plan.rootfs));
    let mut detached = || match detaching.take() {
        Some(detaching) => detaching.finish(),
        None => Ok(()),
    };
    if plan.terminal {
        let slave = console::hand_over(plan.console_size, plan.console_relayed, channel)?;
        console::mount_dev_console(kernel, &slave)?;
        if !plan.built_only {
            console::attach_stdio(&slave)?;
        }
    } else if !plan.built_only {
        // A session of its own, as runc's and crun's inits have (console::setup makes one for a
        // terminal): a session led from outside the container's pid namespace keeps CRIU from
        // checkpointing it.
        nix::unistd::setsid().map_err(|e| InitError::Sys("start a session", e))?;
    }
    rootfs::finish_joining(kernel, &plan.rootfs, &mut detached)?;
    detached()?;
    let Some(labels) = labels else {
        return Ok(None);
    };
    reopen_dev_null().map_err(|e| InitError::Sys("open the container's /dev/null", e))?;
    // What the program inherits: no signal ignored or caught (berth ignores SIGPIPE), the ones
    // a created container ends on caught. execve resets caught ones by itself, so nothing is
    // left to do about dispositions once the filter is in.
    program::reset_signals();
    end_on_signals_while_created();
    let ready = program::prepare(
        &plan.process,
        plan.terminal,
        seccomp,
        SeccompAt::Prepare,
        labels,
        channel,
    )?;
    Ok(Some(ready))
}

/// The old root being detached on a thread of its own, or, when no thread could be made (a pids
/// limit), still to detach. The thread is a bare pthread: a Rust thread sets up a signal stack,
/// a name and shared handles first, which took as long again as the detaching it overlaps.
struct Detaching {
    /// Read by the thread until it is joined; the result comes back in it.
    job: Box<DetachJob>,
    thread: Option<libc::pthread_t>,
}

struct DetachJob {
    old_root: rootfs::OldRoot,
    rootfs: std::path::PathBuf,
    result: Option<Result<(), InitError>>,
}

impl DetachJob {
    fn run(&mut self, own_working_folder: bool) {
        let kernel = Linux;
        self.result = Some((|| {
            // A thread unshares its working folder first: detaching the old root moves into it.
            if own_working_folder {
                kernel
                    .unshare(CloneFlags::CLONE_FS)
                    .map_err(|e| InitError::Sys("unshare the working folder", e))?;
            }
            Ok(rootfs::detach_old_root(
                &kernel,
                &self.old_root,
                &self.rootfs,
            )?)
        })());
    }
}

extern "C" fn detach_thread(job: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `job` is the DetachJob of a Detaching, which leaves it alone until it has joined
    // this thread, and joins it before it is dropped.
    let job = unsafe { &mut *(job as *mut DetachJob) };
    job.run(true);
    std::ptr::null_mut()
}

impl Detaching {
    fn start(old_root: rootfs::OldRoot, plan: &RootfsPlan) -> Detaching {
        let mut job = Box::new(DetachJob {
            old_root,
            rootfs: plan.rootfs.clone(),
            result: None,
        });
        let job_ptr = &mut *job as *mut DetachJob as *mut libc::c_void;
        // SAFETY: attr is initialised before use and destroyed after; the thread gets a pointer
        // to the boxed job, which stays put (the Box is not moved out of) until it is joined.
        let thread = unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            let mut thread: libc::pthread_t = 0;
            libc::pthread_attr_init(&mut attr);
            libc::pthread_attr_setstacksize(&mut attr, 64 << 10);
            let rc = libc::pthread_create(&mut thread, &attr, detach_thread, job_ptr);
            libc::pthread_attr_destroy(&mut attr);
            (rc == 0).then_some(thread)
        };
        Detaching { job, thread }
    }

    /// Returns once the old root is detached.
    fn finish(mut self) -> Result<(), InitError> {
        match self.thread.take() {
            // SAFETY: a thread made by `start`, joined once.
            Some(thread) => unsafe {
                libc::pthread_join(thread, std::ptr::null_mut());
            },
            None => self.job.run(false),
        }
        self.job
            .result
            .take()
            .unwrap_or(Err(InitError::Sys("detach the old root", Errno::ECHILD)))
    }
}

impl Drop for Detaching {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // SAFETY: a thread made by `start`, not joined yet: the job it reads must outlive it.
            unsafe {
                libc::pthread_join(thread, std::ptr::null_mut());
            }
        }
    }
}

/// Waits for the `tasks` files of the v1 cgroups berth made meanwhile, moves in, then makes the
/// namespaces that must come after the move (the cgroup namespace is rooted where the process is).
fn join_cgroups_later(
    kernel: &dyn Kernel,
    unshare: CloneFlags,
    channel: &Channel,
) -> Result<(), InitError> {
    let tasks = match channel.recv_with_fds() {
        Ok((Message::Cgroups, tasks)) => tasks,
        _ => return Err(InitError::Channel("waiting for the container's cgroups")),
    };
    crate::cgroups::join_self(&tasks)
        .map_err(|e| InitError::Sys("join the container's cgroups", e))?;
    drop(tasks);
    if !unshare.is_empty() {
        kernel
            .unshare(unshare)
            .map_err(|e| InitError::Sys("unshare the cgroup namespace", e))?;
    }
    Ok(())
}

/// Makes this process dumpable (`on`) or not again, when `wanted`: see
/// `InitPlan::dumpable_for_maps`.
fn dumpable_for_maps(wanted: bool, on: bool) -> Result<(), InitError> {
    if !wanted {
        return Ok(());
    }
    nix::sys::prctl::set_dumpable(on).map_err(|e| {
        InitError::Sys(
            match on {
                true => "become dumpable for the uid and gid maps",
                false => "become non-dumpable again",
            },
            e,
        )
    })
}

/// startContainer hooks: in the container, after `start`, before the program. As runc gives
/// them: the state says `created` (the program has not run yet) and carries the init's pid as
/// the container sees it, and a hook with no env of its own gets the program's environment.
/// They run as the program will, seccomp filter included: their path resolves in the image,
/// which may have replaced them.
pub(super) fn run_start_hooks(
    hooks: &[Hook],
    state: &str,
    ready: &mut Ready,
) -> Result<(), InitError> {
    if hooks.is_empty() {
        return Ok(());
    }
    ready.install_seccomp_now()?;
    let env = ready.env();
    let state = match serde_json::from_str::<serde_json::Value>(state) {
        Ok(mut value) => {
            value["status"] = "created".into();
            value["pid"] = std::process::id().into();
            value.to_string()
        }
        Err(_) => state.to_string(),
    };
    let env: Vec<String> = env
        .iter()
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let hooks: Vec<Hook> = hooks
        .iter()
        .map(|hook| {
            let mut hook = hook.clone();
            if hook.env().as_ref().is_none_or(|e| e.is_empty()) {
                hook.set_env(Some(env.clone()));
            }
            hook
        })
        .collect();
    crate::hooks::run("startContainer", &hooks, &state)?;
    Ok(())
}

/// The init of a created container is pid 1 of its pid namespace, and the kernel drops every
/// signal sent to it for which it has no handler (but SIGKILL and SIGSTOP): `berth kill ID` would
/// succeed and do nothing. Catch the usual ones and end, as runc's init does. SIGPIPE is caught
/// and does nothing, so a startContainer hook that leaves without reading its state gives an
/// error rather than the init's death (and the program does not inherit it ignored). execve
/// resets the handlers; signals `run` keeps blocked for forwarding stay pending and never reach
/// them.
fn end_on_signals_while_created() {
    extern "C" fn end(signal: libc::c_int) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + signal) }
    }
    extern "C" fn nothing(_: libc::c_int) {}
    // SAFETY: a handler that does nothing; the struct is zeroed, then filled.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGPIPE, &action, std::ptr::null_mut());
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

/// Takes a shared lock on this process's pid namespace (flock on its nsfs inode), kept by the
/// descriptor returned.
fn hold_pid_namespace() -> Result<OwnedFd, Errno> {
    let ns = nix::fcntl::open(
        "/proc/self/ns/pid",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: flock on a descriptor we own.
    Errno::result(unsafe { libc::flock(ns.as_raw_fd(), libc::LOCK_SH) })?;
    Ok(ns)
}

/// Blocks until `start` writes a byte into the exec fifo.
pub(super) fn wait_for_start(fifo: &OwnedFd) -> Result<(), InitError> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(fifo, &mut byte) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(InitError::Sys("wait for start", e)),
        }
    }
}

/// Why the program could not run, for `start`: written back into the exec fifo, whose buffer
/// `start` (which holds it open) reads once no reader is left; the container's stderr only if
/// the fifo cannot take it. At most what one atomic write to a pipe carries.
pub(super) fn report_start_failure(fifo: &OwnedFd, text: &str) {
    let text = &text.as_bytes()[..text.len().min(libc::PIPE_BUF)];
    if !matches!(nix::unistd::write(fifo, text), Ok(n) if n == text.len()) {
        eprintln!(
            "{}",
            crate::logging::stderr_line(
                crate::logging::Level::Error,
                &String::from_utf8_lossy(text)
            )
        );
    }
}

/// Joins a new session keyring named `name`. Kernels without keyrings, or that refuse (some
/// user namespace setups), leave the container with the keyring it inherited, as runc does.
pub(super) fn join_session_keyring(name: &str) -> Result<(), InitError> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_int = 1;
    let name = CString::new(name).unwrap_or_default();
    // SAFETY: keyctl reads a NUL-terminated name.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    match Errno::result(rc) {
        Ok(_) | Err(Errno::ENOSYS) | Err(Errno::EPERM) | Err(Errno::EACCES) => Ok(()),
        Err(e) => Err(InitError::Sys("join a new session keyring", e)),
    }
}

/// Replaces standard streams that are the host's `/dev/null` (engines give one for stdin) with
/// the container's own, as runc does: a file of the host's, outside every mount of the
/// container, is one CRIU cannot checkpoint.
pub(super) fn reopen_dev_null() -> Result<(), Errno> {
    use std::os::fd::AsFd;
    let null = match nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) {
        Ok(null) => null,
        // No /dev/null in this container (a /dev of its own without it): nothing to reopen.
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let ours = nix::sys::stat::fstat(null.as_fd())?;
    for fd in 0..3 {
        // SAFETY: 0, 1 and 2 stay open for the life of the process; borrowed only for fstat.
        let stream = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let Ok(stat) = nix::sys::stat::fstat(stream) else {
            continue;
        };
        let is_null = stat.st_mode & libc::S_IFMT == libc::S_IFCHR && stat.st_rdev == ours.st_rdev;
        if is_null && (stat.st_dev, stat.st_ino) != (ours.st_dev, ours.st_ino) {
            // SAFETY: dup2 over a standard stream of ours with a descriptor we own.
            if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
                return Err(Errno::last());
            }
        }
    }
    Ok(())
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
