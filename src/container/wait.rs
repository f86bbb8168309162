//! Waiting in the foreground for a container's process (`run`, and `exec` without `--detach`):
//! the signals berth receives are forwarded to it, its terminal is relayed, exited children are
//! reaped, and its exit status is returned (128 + the signal when a signal ended it).

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::console::Relay;

/// Blocks the signals berth forwards. Done before the process exists, so none is lost in
/// between: they stay pending until [`watch_signals`]; the process unblocks them before it runs
/// its program.
pub fn block_signals() -> Result<(), Errno> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded_signals()), None)
}

/// A signalfd for the blocked signals, those already pending included.
pub fn watch_signals() -> Result<SignalFd, Errno> {
    SignalFd::with_flags(&forwarded_signals(), SfdFlags::SFD_CLOEXEC)
}

/// Waits for `pid` to exit, forwarding signals and relaying its terminal; returns its status.
pub fn foreground(pid: Pid, signals: &SignalFd, mut relay: Option<&mut Relay>) -> i32 {
    loop {
        if let Some(code) = reap(pid) {
            if let Some(relay) = relay {
                relay.drain();
            }
            return code;
        }
        if let Some(relay) = relay.as_deref_mut() {
            if !relay.wait(signals.as_fd()) {
                continue;
            }
        }
        let Ok(Some(info)) = signals.read_signal() else {
            continue;
        };
        match Signal::try_from(info.ssi_signo as i32).ok() {
            Some(Signal::SIGCHLD) | None => {}
            // A relayed terminal follows the caller's; the kernel then signals the process.
            Some(Signal::SIGWINCH) if relay.is_some() => {
                if let Some(relay) = relay.as_deref() {
                    relay.resize();
                }
            }
            Some(signal) => {
                let _ = nix::sys::signal::kill(pid, signal);
            }
        }
    }
}

/// Reaps every exited child; returns the status of `pid` once it has exited.
fn reap(pid: Pid) -> Option<i32> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(exited, code)) if exited == pid => return Some(code),
            Ok(WaitStatus::Signaled(exited, signal, _)) if exited == pid => {
                return Some(128 + signal as i32)
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

fn forwarded_signals() -> SigSet {
    let mut set = SigSet::all();
    for keep in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGTSTP,
        Signal::SIGCONT,
    ] {
        set.remove(keep);
    }
    set
}
