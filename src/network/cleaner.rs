//! The cleaner: what takes down a bridge's shared state (the bridge berth made, its nftables
//! tables, `route_localnet`, the accept rules in a host firewall that drops forwarding) once
//! its last container is gone, without making that container's `delete` wait for it.
//!
//! Removing them waits for the kernel: deleting the bridge for RCU grace periods (33 to 48 ms
//! here), any nf_tables deletion for one more (about 15 ms). So the `delete` that releases a
//! bridge's last container (or any command that finds a bridge of its `--root` idle) forks off
//! a short-lived process and returns: a double fork, so the cleaner is nobody's child to reap,
//! in a session of its own, with no inherited descriptor but the log file (no caller waits on
//! a pipe it holds, no lock stays taken) and stdio on /dev/null. It waits [`DEBOUNCE`], takes
//! the network store's lock, and removes what no container uses (`bridge::clean_idle`): a
//! `create` that came meanwhile holds a lease, and the bridge stays for it. A container run
//! right after another so never pays for the bridge going and coming back.
//!
//! If the cleaner is killed, nothing is lost: its records say what is left, and the next
//! `create` or `delete` of that `--root` that finds the bridge idle forks another.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

use super::bridge::{self, VETH_LINGER};

/// How long the cleaner waits before it looks: a container run right after the last one keeps
/// the bridge, and the last container's veth is gone with its namespace by then, mostly.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// How long it looks again for the veths of deleted containers, which the kernel removes with
/// their namespaces; past [`VETH_LINGER`] the store's next lock deletes them itself.
const PATIENCE: Duration = Duration::from_secs(2);

/// Forks off the cleaner for `root`'s bridges. A failure to fork is logged and otherwise left
/// to the next command, which finds the bridge idle in its turn.
///
/// Unit tests run it in-process instead (`bridge::clean_idle`): their process has threads,
/// and a fork of it would inherit locks held by the others.
pub fn spawn(root: &Path) {
    if cfg!(test) {
        return;
    }
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let keep = crate::logging::file_descriptor();
    // made before the fork: the child only makes system calls before it is on its own
    let dev_null = CString::from(c"/dev/null");
    // SAFETY: berth is single-threaded here (and so is the shim's helper that calls it); the
    // child makes only system calls until it is the sole process of its own.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            // the middle process exits at once; reaping it leaves no zombie
            let _ = waitpid(child, None);
        }
        Ok(ForkResult::Child) => {
            let _ = nix::unistd::setsid();
            // SAFETY: as above; the middle process only forks and exits.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    detach(keep, &dev_null);
                    run(&root);
                }
                Ok(ForkResult::Parent { .. }) | Err(_) => {}
            }
            // SAFETY: _exit ends the process without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        Err(errno) => crate::logging::debug(&format!(
            "cannot fork the network cleaner ({errno}): the next command takes the bridge down"
        )),
    }
}

/// Cuts the cleaner loose from its caller: stdio on /dev/null, every other descriptor closed
/// but the log file's, signals unblocked (`run` blocks them), `/` as working folder.
fn detach(keep: Option<RawFd>, dev_null: &CString) {
    // SAFETY: plain system calls on descriptors this process owns; close_range takes any range.
    unsafe {
        let null = libc::open(dev_null.as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
        let close = |first: u32, last: u32| {
            if first <= last {
                libc::syscall(libc::SYS_close_range, first, last, 0);
            }
        };
        match keep {
            Some(fd) if fd >= 3 => {
                close(3, fd as u32 - 1);
                close(fd as u32 + 1, u32::MAX);
            }
            _ => close(3, u32::MAX),
        }
        libc::chdir(c"/".as_ptr());
        libc::prctl(libc::PR_SET_NAME, c"berth-cleaner".as_ptr());
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Waits [`DEBOUNCE`], cleans, and looks again while a deleted container's veth is still going.
fn run(root: &Path) {
    let deadline = Instant::now() + PATIENCE.max(VETH_LINGER * 2);
    loop {
        std::thread::sleep(DEBOUNCE);
        match bridge::clean_idle(root) {
            Ok(true) if Instant::now() < deadline => continue,
            Ok(_) => return,
            Err(err) => {
                crate::logging::warn(&format!(
                    "network cleaner of {}: {err} (the next command tries again)",
                    root.display()
                ));
                return;
            }
        }
    }
}
