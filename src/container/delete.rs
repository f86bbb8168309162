//! `delete`: remove a stopped container (or, with `--force`, kill it first): its processes,
//! cgroup, network, state folder, and then the poststop hooks.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{oci_state, status, ContainerError};
use crate::state::{ContainerDir, Root, State, StateError, Status};

pub fn delete(root: &Root, id: &str, force: bool) -> Result<(), ContainerError> {
    let dir = match root.open_container(id) {
        Ok(dir) => dir,
        Err(StateError::NotExist(_)) if force => {
            // nothing of it under --root; the network store settles what it still holds of
            // containers gone before (a veth the kernel removed since)
            crate::network::release(&root.path, id)?;
            return Ok(());
        }
        Err(err) => return Err(err.into()),
    };
    let state = match dir.read_state() {
        Ok(state) => state,
        // A folder without state: a create that died before writing any. Nothing else was made.
        Err(StateError::NotExist(_)) | Err(StateError::Corrupt { .. }) if force => {
            dir.remove()?;
            return Ok(());
        }
        Err(err) => return Err(err.into()),
    };
    let current = status(&state, &dir.path);
    match current {
        Status::Stopped | Status::Created => {}
        _ if force => {}
        _ => {
            return Err(ContainerError::NotStopped {
                id: id.into(),
                status: current,
            })
        }
    }
    destroy(dir, &state)
}

/// Kills what is left of the container and removes everything it holds.
pub fn destroy(dir: ContainerDir, state: &State) -> Result<(), ContainerError> {
    let manager = crate::cgroups::manager(&state.cgroup);
    if super::init_alive(state) {
        let _ = super::kill::signal_init(state, Signal::SIGKILL);
    }
    // Processes left in the cgroup (no pid namespace of its own, or a paused container): the
    // cgroup kills them all, thawing a frozen one so the signal lands.
    let deadline = Instant::now() + Duration::from_secs(10);
    // A killed process is gone within a fraction of a millisecond: look again soon, then less
    // often (a fixed 1 ms was a third of `delete --force` of a running container).
    let mut delay = Duration::from_micros(50);
    loop {
        let pids = super::processes(state).unwrap_or_default();
        if pids.is_empty() && !super::init_alive(state) {
            break;
        }
        if let Err(err) = manager.kill_all(Signal::SIGKILL) {
            crate::logging::debug(&format!("killing what is left of {:?}: {err}", state.id));
            for pid in &pids {
                let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
    crate::fault::point("delete:kill");
    manager.remove()?;
    crate::fault::point("delete:cgroup");
    if let Some(mount) = &state.host_mount {
        crate::rootfs::detach_root(&crate::syscall::Linux, mount)?;
    }
    if let Some(root) = dir.path.parent() {
        crate::network::release(root, &state.id)?;
    }
    crate::fault::point("delete:network");
    let poststop = state
        .hooks
        .as_ref()
        .and_then(|h| h.poststop().clone())
        .unwrap_or_default();
    let json = oci_state(state, Status::Stopped).to_string();
    dir.remove()?;
    if let Err(err) = crate::hooks::run("poststop", &poststop, &json) {
        crate::logging::warn(&err.to_string());
    }
    Ok(())
}
