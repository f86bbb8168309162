//! A proc filesystem for a pid namespace the calling process is not in.
//!
//! A new procfs shows the pid namespace of the process that opens its context (fsopen), and a
//! process never changes pid namespace. The init of a container whose pid namespace is joined
//! by path builds the container from outside that namespace (`process::init`), so its proc
//! mounts need another way:
//! - the kernel's `pidns` option (Linux 6.18) names the namespace on the context;
//! - before it, a helper born in the namespace opens the context and hands it over. Whatever is
//!   in that namespace sees the helper, and one holding CAP_SYS_PTRACE can hold it under
//!   ptrace, so it holds nothing worth having: its parent, outside the namespace, gives it a
//!   user namespace of its own (fsopen needs CAP_SYS_ADMIN only over the mount namespace's
//!   owner, and a proc context takes the pid namespace's user namespace, not the opener's, so
//!   its capabilities are over nothing of the host's), a mount namespace of an empty tmpfs
//!   owned by it (its root and working directory), closes every descriptor but the socket to
//!   the init (stdio included), and a seccomp filter that allows nothing but fsopen, sendmsg and
//!   leaving (killing the process on anything else). Under ptrace it can be made to open a
//!   filesystem context and send it to the init, which a holder of CAP_SYS_ADMIN could do
//!   itself, and a context is of no use without it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::channel::{self, Channel, Message};
use crate::syscall::{Atime, Attr, FsConfig, Kernel};

/// A context for a new procfs of the pid namespace `pid_ns` (a descriptor the caller holds).
pub fn context(kernel: &dyn Kernel, pid_ns: RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: the caller keeps the descriptor open for the call.
    let pid_ns = unsafe { BorrowedFd::borrow_raw(pid_ns) };
    let context = kernel.fsopen("proc")?;
    match kernel.fsconfig(context.as_fd(), FsConfig::Fd("pidns", pid_ns)) {
        Ok(()) => Ok(context),
        // A kernel without the option: "Unknown parameter".
        Err(Errno::EINVAL) => from_helper(pid_ns),
        Err(errno) => Err(errno),
    }
}

/// Makes the helper (see the module's comment) and returns the context it sends.
pub fn from_helper(pid_ns: BorrowedFd) -> Result<OwnedFd, Errno> {
    let filter = helper_filter();
    let (ours, theirs) = channel::pair()?;
    match fork()? {
        None => {
            drop(ours);
            let code = match enter_and_fork(pid_ns, &theirs, &filter) {
                Ok(code) => code,
                Err(errno) => {
                    let _ = theirs.send(&Message::Error(errno.to_string()));
                    1
                }
            };
            // SAFETY: leave without running destructors or atexit handlers copied from berth.
            unsafe { libc::_exit(code) }
        }
        Some(parent) => {
            drop(theirs);
            let got = ours.recv_with_fd();
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(parent), None);
            match got {
                Ok((Message::Fd, Some(context))) => Ok(context),
                Ok((Message::Error(text), _)) => Err(errno_named(&text)),
                _ => Err(Errno::EIO),
            }
        }
    }
}

/// In the helper's parent, outside the pid namespace: a user namespace of its own owning a mount
/// namespace of an empty tmpfs, nothing open but the socket, the filter; then the helper.
/// Returns its exit status.
fn enter_and_fork(
    pid_ns: BorrowedFd,
    channel: &Channel,
    filter: &crate::seccomp::Filter,
) -> Result<i32, Errno> {
    let kernel = crate::syscall::Linux;
    // The pid namespace first: joining it takes CAP_SYS_ADMIN over the host's user namespace,
    // which the new user namespace gives up.
    nix::sched::setns(pid_ns, CloneFlags::CLONE_NEWPID)?;
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)?;
    kernel.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let context = kernel.fsopen("tmpfs")?;
    kernel.fsconfig(context.as_fd(), FsConfig::String("size", "4k"))?;
    kernel.fsconfig(context.as_fd(), FsConfig::Create)?;
    let empty = kernel.fsmount(context.as_fd(), Attr::RDONLY, Atime::Relatime)?;
    let root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_PATH,
        nix::sys::stat::Mode::empty(),
    )?;
    kernel.move_mount(empty.as_fd(), root.as_fd())?;
    // The tmpfs covers `/` now: from its top, pivot_root stacks the old root on it, to be
    // detached, and leaves the tmpfs alone in the namespace.
    kernel.fchdir(empty.as_raw_fd())?;
    kernel.pivot_root(Path::new("."), Path::new("."))?;
    kernel.umount2(Path::new("."), MntFlags::MNT_DETACH)?;
    nix::unistd::chdir("/")?;
    drop((context, empty, root));
    // Nothing but the socket, stdio included: moved to 0 first, then everything above closed.
    // SAFETY: dup2 onto descriptor 0, which nothing of this process uses as stdin any more.
    Errno::result(unsafe { libc::dup2(channel.as_raw_fd(), 0) })?;
    // SAFETY: close_range only closes descriptors; none is used again but 0, which stays.
    unsafe { libc::syscall(libc::SYS_close_range, 1u32, libc::c_uint::MAX, 0u32) };
    nix::sys::prctl::set_no_new_privs()?;
    crate::seccomp::install(filter).map_err(|_| Errno::EPERM)?;
    match fork()? {
        None => helper(),
        Some(pid) => {
            let mut status = 0;
            // SAFETY: waitpid writes the status into a live integer.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            Ok(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                1
            })
        }
    }
}

/// The helper, in the pid namespace: opens the context and sends it on descriptor 0. Allocates
/// nothing and makes no call but those its filter allows.
fn helper() -> ! {
    // SAFETY: fsopen reads a NUL-terminated name.
    let context = unsafe { libc::syscall(libc::SYS_fsopen, c"proc".as_ptr(), 0u32) } as RawFd;
    if context < 0 {
        // SAFETY: leave at once.
        unsafe { libc::_exit(2) }
    }
    // The channel's `Fd` message with the context, built by hand: no allocation.
    let tag = [b'F'];
    // SAFETY: msghdr and the control buffer are plain data, filled below; sendmsg reads them.
    let sent = unsafe {
        let mut iov = libc::iovec {
            iov_base: tag.as_ptr() as *mut libc::c_void,
            iov_len: 1,
        };
        let mut control = [0u64; 4];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), context);
        libc::sendmsg(0, &msg, libc::MSG_NOSIGNAL)
    };
    // SAFETY: leave at once.
    unsafe { libc::_exit(if sent == 1 { 0 } else { 3 }) }
}

/// What the helper and its parent may call once the filter is in: anything else kills them.
fn helper_filter() -> crate::seccomp::Filter {
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "syscalls": [{
            "names": ["fsopen", "sendmsg", "clone", "wait4", "exit", "exit_group"],
            "action": "SCMP_ACT_ALLOW"
        }]
    });
    let profile = serde_json::from_value(profile).expect("a valid profile");
    crate::seccomp::compile(&profile).expect("the helper's profile compiles")
}

/// A plain fork; `None` in the child.
fn fork() -> Result<Option<i32>, Errno> {
    // SAFETY: a fork-like clone (no new stack): the child goes on with a copy of this
    // single-threaded process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match rc {
        -1 => Err(Errno::last()),
        0 => Ok(None),
        pid => Ok(Some(pid as i32)),
    }
}

/// The errno whose description `text` is (what the helper's parent sends), or EIO.
fn errno_named(text: &str) -> Errno {
    (1..150)
        .map(Errno::from_raw)
        .find(|e| e.to_string() == text)
        .unwrap_or(Errno::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child in a pid namespace of its own, until dropped.
    struct PidNamespace {
        child: std::process::Child,
    }

    impl PidNamespace {
        fn new() -> PidNamespace {
            let child = std::process::Command::new("unshare")
                .args(["--pid", "--fork", "sleep", "60"])
                .spawn()
                .unwrap();
            PidNamespace { child }
        }

        /// The pid namespace of `unshare`'s child, once it is there.
        fn open(&self) -> OwnedFd {
            let children = format!("/proc/{0}/task/{0}/children", self.child.id());
            for _ in 0..500 {
                let text = std::fs::read_to_string(&children).unwrap_or_default();
                if let Some(pid) = text.split_whitespace().next() {
                    return std::fs::File::open(format!("/proc/{pid}/ns/pid"))
                        .unwrap()
                        .into();
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("unshare's child never came");
        }
    }

    impl Drop for PidNamespace {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Mounts the context detached and reads which pid namespace its pid 1 is in.
    fn pid_namespace_shown(kernel: &dyn Kernel, context: OwnedFd) -> String {
        kernel.fsconfig(context.as_fd(), FsConfig::Create).unwrap();
        let mount = kernel
            .fsmount(context.as_fd(), Attr::empty(), Atime::Relatime)
            .unwrap();
        let link = nix::fcntl::readlinkat(mount.as_fd(), "1/ns/pid").unwrap();
        link.to_string_lossy().into_owned()
    }

    #[test]
    fn the_helper_hands_over_a_proc_of_the_namespace_it_was_born_in() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "SKIP the_helper_hands_over_a_proc_of_the_namespace_it_was_born_in: needs root"
            );
            return;
        }
        let namespace = PidNamespace::new();
        let pid_ns = namespace.open();
        let wanted =
            nix::fcntl::readlink(format!("/proc/self/fd/{}", pid_ns.as_raw_fd()).as_str()).unwrap();
        let kernel = crate::syscall::Linux;
        let context = from_helper(pid_ns.as_fd()).unwrap();
        assert_eq!(
            pid_namespace_shown(&kernel, context),
            wanted.to_string_lossy()
        );
        // The kernel's own way, where it has one, shows the same.
        let context = context_or_none(&kernel, &pid_ns);
        if let Some(context) = context {
            assert_eq!(
                pid_namespace_shown(&kernel, context),
                wanted.to_string_lossy()
            );
        }
    }

    fn context_or_none(kernel: &dyn Kernel, pid_ns: &OwnedFd) -> Option<OwnedFd> {
        let context = kernel.fsopen("proc").unwrap();
        kernel
            .fsconfig(context.as_fd(), FsConfig::Fd("pidns", pid_ns.as_fd()))
            .ok()
            .map(|()| context)
    }
}
