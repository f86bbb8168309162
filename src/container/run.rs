//! `run`: create and start a container; in the foreground, forward signals to it, reap, remove
//! it when it exits and return its exit status (128 + the signal when a signal ended it).

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::create::{create, CreateOptions, Created};
use super::start::start_locked;
use super::ContainerError;
use crate::state::Root;

/// Runs a container. Detached, returns 0 once it runs; otherwise returns its exit status.
pub fn run(root: &Root, opts: &CreateOptions, detach: bool) -> Result<i32, ContainerError> {
    if detach {
        return start_or_remove(create(root, opts)?).map(|_| 0);
    }
    // Block the signals berth forwards before the init exists, so none is lost in between; the
    // init unblocks them before it runs the program.
    let forwarded = forwarded_signals();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), None);
    let created = start_or_remove(create(root, opts)?)?;
    let init = created.pid;
    let signals = SignalFd::with_flags(&forwarded, SfdFlags::SFD_CLOEXEC).map_err(|source| {
        ContainerError::Sys {
            id: opts.id.clone(),
            what: "watch signals",
            source,
        }
    })?;
    let code = loop {
        if let Some(code) = reap(init) {
            break code;
        }
        let Ok(Some(info)) = signals.read_signal() else {
            continue;
        };
        let signal = Signal::try_from(info.ssi_signo as i32).ok();
        match signal {
            Some(Signal::SIGCHLD) | None => {}
            Some(signal) => {
                let _ = nix::sys::signal::kill(init, signal);
            }
        }
    };
    super::delete::destroy(created.dir, &created.state)?;
    Ok(code)
}

fn start_or_remove(mut created: Created) -> Result<Created, ContainerError> {
    match start_locked(&created.dir, &mut created.state) {
        Ok(()) => Ok(created),
        Err(err) => {
            let _ = super::delete::destroy(created.dir, &created.state);
            Err(err)
        }
    }
}

/// Reaps every exited child; returns the init's exit status once it has exited.
fn reap(init: Pid) -> Option<i32> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == init => return Some(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == init => {
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
