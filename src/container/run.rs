//! `run`: create and start a container; in the foreground, forward signals to it, relay its
//! terminal when it has one, reap, remove it when it exits and return its exit status (128 + the
//! signal when a signal ended it).

use nix::sys::signalfd::SignalFd;

use super::create::{create, CreateOptions, Created};
use super::start::start_locked;
use super::{sys, ContainerError};
use crate::console::Relay;
use crate::state::{Root, StateError};

/// Runs a container. Detached, returns 0 once it runs; otherwise returns its exit status.
pub fn run(root: &Root, opts: &CreateOptions, detach: bool) -> Result<i32, ContainerError> {
    if detach {
        return start_or_remove(create(root, opts)?).map(|_| 0);
    }
    super::wait::block_signals().map_err(sys(&opts.id, "block signals"))?;
    let opts = CreateOptions {
        keep_console: true,
        plain_newlines: true,
        ..opts.clone()
    };
    let mut created = create(root, &opts)?;
    // The caller's terminal goes raw before the program starts, and back when berth is done.
    let watched = (|| -> Result<(SignalFd, Option<Relay>), ContainerError> {
        let signals = super::wait::watch_signals().map_err(sys(&opts.id, "watch signals"))?;
        Ok((
            signals,
            created.console.take().map(Relay::start).transpose()?,
        ))
    })();
    let (signals, mut relay) = match watched {
        Ok(watched) => watched,
        Err(err) => {
            let _ = super::delete::destroy(created.dir, &created.state);
            return Err(err);
        }
    };
    let Created {
        dir, state, pid, ..
    } = start_or_remove(created)?;
    // Unlocked while it runs, so `kill`, `exec`, `pause` and `delete --force` can reach it.
    drop(dir);
    let code = super::wait::foreground(pid, &signals, relay.as_mut());
    drop(relay);
    match root.open_container(&opts.id) {
        // Unless someone deleted it meanwhile (and perhaps made another under the same id).
        Ok(dir) if dir.read_state().is_ok_and(|now| now.pid == state.pid) => {
            super::delete::destroy(dir, &state)?
        }
        Ok(_) | Err(StateError::NotExist(_)) => {}
        Err(err) => return Err(err.into()),
    }
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
