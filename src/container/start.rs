//! `start`: release a created container's init by writing into its exec fifo, then run the
//! poststart hooks. If a startContainer hook fails (the init writes why back into the fifo) or a
//! poststart one does (runtime-spec 1.3; before it, a warning), `start` fails and the container
//! is destroyed.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use super::{oci_state, status, sys, ContainerError};
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
    nix::unistd::write(&fd, START).map_err(sys(&state.id, "start the init"))?;
    wait_for_exec(&fd);
    // The init is gone instead of running its program: it left the reason in the fifo, whose
    // buffer lasts while this end is open.
    let failure = read_back(&fd);
    drop(fd);
    if !failure.is_empty() {
        let reason = match failure.as_slice() {
            START => "the init went away before it ran the program".to_string(),
            text => String::from_utf8_lossy(text).trim().to_string(),
        };
        return Err(ContainerError::StartFailed {
            id: state.id.clone(),
            reason,
        });
    }
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

/// What `start` writes into the exec fifo.
const START: &[u8] = b"0";

/// What is left in the fifo once no reader is: nothing after the program ran, why it did not
/// otherwise (or the start byte, unread, when the init died first).
fn read_back(writer: &OwnedFd) -> Vec<u8> {
    // The fifo's name is gone: reopened for reading through the writer's descriptor.
    let path = format!("/proc/self/fd/{}", writer.as_raw_fd());
    let Ok(reader) = nix::fcntl::open(
        path.as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return Vec::new();
    };
    let mut buf = vec![0u8; libc::PIPE_BUF];
    match nix::unistd::read(&reader, &mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}

/// Waits until the init has run the startContainer hooks and executed the program (or died), so
/// poststart hooks run after it and `start` returns with the program running. The init holds the
/// exec fifo open, close-on-exec, until its execve; a writer's poll reports POLLERR once no
/// reader is left.
fn wait_for_exec(fifo: &OwnedFd) {
    let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::empty())];
    while let Err(Errno::EINTR) = poll(&mut fds, PollTimeout::NONE) {}
}
