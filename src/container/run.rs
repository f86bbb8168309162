//! `run`: create and start a container; in the foreground, forward signals to it, relay its
//! terminal when it has one, reap, remove it when it exits and return its exit status (128 + the
//! signal when a signal ended it).

use nix::sys::signalfd::SignalFd;

use super::create::{create_then, CreateOptions, Created, Then};
use super::start::start_locked;
use super::{sys, ContainerError};
use crate::console::Relay;
use crate::state::{Root, StateError};

/// Runs a container. Detached, returns 0 once it runs; otherwise returns its exit status.
pub fn run(root: &Root, opts: &CreateOptions, detach: bool) -> Result<i32, ContainerError> {
    if detach {
        return start_or_remove(create_then(root, opts, Then::Wait)?).map(|_| 0);
    }
    super::wait::block_signals().map_err(sys(&opts.id, "block signals"))?;
    let opts = CreateOptions {
        keep_console: true,
        plain_newlines: true,
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
    // Made while the program runs: it tears the container's mounts down once it exits.
    let unmounter = mount_ns.and_then(Unmounter::start);
    let code = super::wait::foreground(pid, &signals, relay.as_mut());
    drop(relay);
    // The container's mounts are torn down on the other thread while this one removes the
    // container (see `Then::Watch`).
    if let Some(unmounter) = &unmounter {
        unmounter.go();
    }
    let removed = match root.open_container(&opts.id) {
        // Unless someone deleted it meanwhile (and perhaps made another under the same id).
        Ok(dir) if dir.read_state().is_ok_and(|now| now.pid == state.pid) => {
            super::delete::destroy(dir, &state)
        }
        Ok(_) | Err(StateError::NotExist(_)) => Ok(()),
        Err(err) => Err(err.into()),
    };
    if let Some(unmounter) = unmounter {
        unmounter.finish();
    }
    removed.map(|()| code)
}

/// The thread that tears the container's mounts down (see `Then::Watch`): made while the
/// program runs, it holds the container's mount namespace until told to let it go, once the
/// program exited, and waits for the teardown (an RCU grace period) beside berth's own work.
struct Unmounter {
    go: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Unmounter {
    /// None if no thread can be made: the namespace is let go at once, and the program's exit
    /// tears the mounts down, as without the hold.
    fn start(mount_ns: std::os::fd::OwnedFd) -> Option<Unmounter> {
        let (go, told) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let _ = told.recv();
                drop(mount_ns);
            })
            .ok()
            .map(|thread| Unmounter { go, thread })
    }

    fn go(&self) {
        let _ = self.go.send(());
    }

    /// Returns once the mounts are gone.
    fn finish(self) {
        let _ = self.thread.join();
    }
}

/// Starts the container, or removes it.
fn start_or_remove(mut created: Created) -> Result<Created, ContainerError> {
    match start_locked(&created.dir, &mut created.state) {
        Ok(()) => Ok(created),
        Err(err) => {
            let _ = super::delete::destroy(created.dir, &created.state);
            Err(err)
        }
    }
}
