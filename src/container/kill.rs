//! `kill`: send a signal to a container's init, or with `--all` to every process in its cgroup.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::Signal;

use super::{init_alive, status, ContainerError};
use crate::state::{Root, Status};

/// Parses a signal given as a number (`9`) or a name (`KILL`, `SIGKILL`, `sigkill`).
pub fn parse_signal(text: &str) -> Result<Signal, ContainerError> {
    let bad = || ContainerError::BadSignal(text.to_string());
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| bad());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

pub fn kill(root: &Root, id: &str, signal: Signal, all: bool) -> Result<(), ContainerError> {
    // Without a pid namespace of its own, the init's death ends nothing else: SIGKILL (stop
    // the container) reaches every process in the cgroup, as in runc, and so does --all; both
    // also once the init is gone (to end what it left behind; nothing left is no error).
    let everyone = |state: &crate::state::State| {
        all || (signal == Signal::SIGKILL && !state.own_pid_namespace)
    };
    let state = match signallable(root, id) {
        Err(err @ ContainerError::NotRunning { .. }) => {
            let state = root.read_state(id)?;
            if !everyone(&state) {
                return Err(err);
            }
            state
        }
        other => other?,
    };
    if everyone(&state) {
        if state.cgroup.dirs.is_empty() && state.cgroup.absence().is_some() {
            // No cgroup to freeze while signalling: each process found, as runc does rootless.
            for pid in super::processes(&state)? {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
            }
            return Ok(());
        }
        crate::cgroups::manager(&state.cgroup).kill_all(signal)?;
        return Ok(());
    }
    send(&state, signal as libc::c_int).map_err(|source| send_error(id, source))
}

/// Signal 0 (`kill ID 0`): sends nothing, and says whether the container is there to be
/// signalled, as kill(2) does with it.
pub fn probe(root: &Root, id: &str) -> Result<(), ContainerError> {
    let state = signallable(root, id)?;
    send(&state, 0).map_err(|source| send_error(id, source))
}

/// The state of a container that has an init to signal, or why it has none.
fn signallable(root: &Root, id: &str) -> Result<crate::state::State, ContainerError> {
    let state = root.read_state(id)?;
    let current = status(&state, &root.container_dir(id));
    if current == Status::Stopped || (current == Status::Creating && state.pid == 0) {
        return Err(ContainerError::NotRunning { id: id.into() });
    }
    Ok(state)
}

fn send_error(id: &str, source: Errno) -> ContainerError {
    match source {
        Errno::ESRCH => ContainerError::NotRunning { id: id.into() },
        source => ContainerError::Sys {
            id: id.into(),
            what: "send the signal",
            source,
        },
    }
}

/// Signals the init through a pidfd, checked against the recorded start time, so a reused pid
/// is never signalled.
pub fn signal_init(state: &crate::state::State, signal: Signal) -> Result<(), Errno> {
    send(state, signal as libc::c_int)
}

/// `signal_init` with a signal number, 0 included.
fn send(state: &crate::state::State, signal: libc::c_int) -> Result<(), Errno> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, state.pid, 0) };
    if raw < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the descriptor was just returned to us.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    if !init_alive(state) {
        return Err(Errno::ESRCH);
    }
    // SAFETY: pidfd_send_signal with a descriptor we own and no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_number_and_name() {
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("usr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(
            parse_signal("FLY").unwrap_err().to_string(),
            "\"FLY\" is not a signal"
        );
        assert!(parse_signal("99").is_err());
    }
}
