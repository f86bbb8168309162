//! `pause` and `resume`: freeze and thaw every process of a running container through its
//! cgroup (v1 freezer, or v2 `cgroup.freeze`). The live status reads `paused` from the cgroup,
//! so nothing is written to the state, and the container's lock is not taken: a foreground
//! `run` holds it for the container's whole life.

use super::{status, ContainerError};
use crate::state::{Root, Status};

pub fn pause(root: &Root, id: &str) -> Result<(), ContainerError> {
    let state = root.read_state(id)?;
    let current = status(&state, &root.container_dir(id));
    if current != Status::Running {
        return Err(ContainerError::WrongStatus {
            id: id.into(),
            action: "pause",
            status: current,
        });
    }
    refuse_without_cgroup(&state, "pause")?;
    crate::cgroups::manager(&state.cgroup).freeze()?;
    Ok(())
}

pub fn resume(root: &Root, id: &str) -> Result<(), ContainerError> {
    let state = root.read_state(id)?;
    let current = status(&state, &root.container_dir(id));
    if current != Status::Paused {
        return Err(ContainerError::WrongStatus {
            id: id.into(),
            action: "resume",
            status: current,
        });
    }
    refuse_without_cgroup(&state, "resume")?;
    crate::cgroups::manager(&state.cgroup).thaw()?;
    Ok(())
}

/// A rootless container with no cgroup of its own has no freezer.
fn refuse_without_cgroup(
    state: &crate::state::State,
    action: &'static str,
) -> Result<(), ContainerError> {
    match state
        .cgroup
        .dirs
        .is_empty()
        .then(|| state.cgroup.absence())
        .flatten()
    {
        Some(reason) => Err(ContainerError::NoCgroup {
            id: state.id.clone(),
            action,
            reason,
        }),
        None => Ok(()),
    }
}
