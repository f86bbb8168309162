//! `run`: create and start a container; in the foreground, forward signals to it, relay its
//! terminal when it has one, reap, remove it when it exits and return its exit status (128 + the
//! signal when a signal ended it).

use nix::sys::signalfd::SignalFd;

use super::create::{create_then, CreateOptions, Created, Then};
use super::start::{start_by_channel, start_locked};
use super::{sys, ContainerError};
use crate::console::Relay;
use crate::state::{Root, StateError};

/// Runs a container. Detached, returns 0 once it runs; otherwise returns its exit status.
pub fn run(root: &Root, opts: &CreateOptions, detach: bool) -> Result<i32, ContainerError> {
    if detach {
        return start_or_remove(create_then(root, opts, Then::Start)?).map(|_| 0);
    }
    super::wait::block_signals().map_err(sys(&opts.id, "block signals"))?;
    let opts = CreateOptions {
        keep_console: true,
        ..opts.clone()
    };
    let mut created = create_then(root, &opts, Then::Watch)?;
    let mount_ns = created.mount_ns.take();
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
    // The container's mounts are torn down on another thread while this one removes the
    // container (see `Then::Watch`); without a thread, here and now.
    let unmounting = mount_ns.and_then(|ns| {
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || drop(ns))
            .ok()
    });
    let removed = match root.open_container(&opts.id) {
        // Unless someone deleted it meanwhile (and perhaps made another under the same id).
        Ok(dir) if dir.read_state().is_ok_and(|now| now.pid == state.pid) => {
            super::delete::destroy(dir, &state)
        }
        Ok(_) | Err(StateError::NotExist(_)) => Ok(()),
        Err(err) => Err(err.into()),
    };
    if let Some(unmounting) = unmounting {
        let _ = unmounting.join();
    }
    removed.map(|()| code)
}

/// Starts the container (through the channel: `run` makes no exec fifo), or removes it.
fn start_or_remove(mut created: Created) -> Result<Created, ContainerError> {
    let started = match created.channel.take() {
        Some(channel) => start_by_channel(&created.dir, &mut created.state, channel),
        None => start_locked(&created.dir, &mut created.state),
    };
    match started {
        Ok(()) => Ok(created),
        Err(err) => {
            let _ = super::delete::destroy(created.dir, &created.state);
            Err(err)
        }
    }
}
