//! `start`: release a created container's init by writing into its exec fifo, then run the
//! poststart hooks. If a startContainer hook fails (the init reports it through a file in the
//! state folder) or a poststart one does (runtime-spec 1.3; before it, a warning), `start` fails
//! and the container is destroyed.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use super::{oci_state, status, sys, ContainerError};
use crate::process::channel::{Channel, Message};
use crate::state::{ContainerDir, Root, State, Status};

pub fn start(root: &Root, id: &str) -> Result<(), ContainerError> {
    let dir = root.open_container(id)?;
    let mut state = dir.read_state()?;
    match start_locked(&dir, &mut state) {
        // A failed startContainer or (runtime-spec 1.3) poststart hook is an error; the
        // container is stopped and destroyed, and the poststop hooks run (lifecycle steps 12
        // and 13).
        Err(err @ (ContainerError::Hook(_) | ContainerError::StartFailed { .. })) => {
            if let Err(destroyed) = super::delete::destroy(dir, &state) {
                crate::logging::warn(&format!(
                    "cannot remove {id:?}, which failed to start: {destroyed}"
                ));
            }
            Err(err)
        }
        other => other,
    }
}

/// Starts a container whose folder the caller holds locked (`run` does).
pub fn start_locked(dir: &ContainerDir, state: &mut State) -> Result<(), ContainerError> {
    let current = status(state, &dir.path);
    if current != Status::Created {
        return Err(ContainerError::NotCreated {
            id: state.id.clone(),
            status: current,
        });
    }
    let fifo = dir.fifo_path();
    // Non-blocking: with no reader (the init died) this fails at once instead of hanging.
    let fd = nix::fcntl::open(
        &fifo,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys(
        &state.id,
        "reach the waiting init through the exec fifo",
    ))?;
    // The fifo's name goes before the init is released: `state` reads "created" while it
    // exists, and the program may already be running (and be seen) before the wait below ends.
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::write(&fd, b"0").map_err(sys(&state.id, "start the init"))?;
    wait_for_exec(&fd);
    drop(fd);
    // The init is gone instead of running its program: it left the reason.
    let failure =
        crate::bounded::read_regular(&dir.start_error_path(), 64 << 10).unwrap_or_default();
    if !failure.is_empty() {
        return Err(ContainerError::StartFailed {
            id: state.id.clone(),
            reason: String::from_utf8_lossy(&failure).trim().to_string(),
        });
    }
    running(dir, state)
}

/// Starts a container whose init waits for `Go` on the channel (`run`): the channel then closes
/// at the program's execve (it is close-on-exec), or brings the reason the init could not run
/// it (a startContainer hook failed).
pub fn start_by_channel(
    dir: &ContainerDir,
    state: &mut State,
    channel: Channel,
) -> Result<(), ContainerError> {
    // The fifo's name goes before the init is released, as in `start_locked`: `state` reads
    // "created" while it exists.
    let _ = std::fs::remove_file(dir.fifo_path());
    // A send to an init that died fails; what it said, if anything, is read below.
    let _ = channel.send(&Message::Go);
    if let Ok(Message::Error(reason)) = channel.recv() {
        return Err(ContainerError::StartFailed {
            id: state.id.clone(),
            reason,
        });
    }
    drop(channel);
    running(dir, state)
}

/// Records the container running, then runs the poststart hooks.
fn running(dir: &ContainerDir, state: &mut State) -> Result<(), ContainerError> {
    state.status = Status::Running;
    dir.write_state(state)?;
    let poststart = state
        .hooks
        .as_ref()
        .and_then(|h| h.poststart().clone())
        .unwrap_or_default();
    if !poststart.is_empty() {
        let json = oci_state(state, Status::Running).to_string();
        // The caller stops and removes the container (`start`, and `run` as for any failure).
        crate::hooks::run("poststart", &poststart, &json)?;
    }
    Ok(())
}

/// Waits until the init has run the startContainer hooks and executed the program (or died), so
/// poststart hooks run after it and `start` returns with the program running. The init holds the
/// exec fifo open, close-on-exec, until its execve; a writer's poll reports POLLERR once no
/// reader is left.
fn wait_for_exec(fifo: &OwnedFd) {
    let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::empty())];
    while let Err(Errno::EINTR) = poll(&mut fds, PollTimeout::NONE) {}
}
