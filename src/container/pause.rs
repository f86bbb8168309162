//! `pause` and `resume`: freeze and thaw every process of a running container through its
//! cgroup (v1 freezer, or v2 `cgroup.freeze`); the live status then reads `paused`.

use super::{status, ContainerError};
use crate::state::{Root, Status};

pub fn pause(root: &Root, id: &str) -> Result<(), ContainerError> {
    let dir = root.open_container(id)?;
    let mut state = dir.read_state()?;
    let current = status(&state, &dir.path);
    if current != Status::Running {
        return Err(ContainerError::WrongStatus {
            id: id.into(),
            action: "pause",
            status: current,
        });
    }
    crate::cgroups::manager(&state.cgroup).freeze()?;
    state.status = Status::Paused;
    dir.write_state(&state)?;
    Ok(())
}

pub fn resume(root: &Root, id: &str) -> Result<(), ContainerError> {
    let dir = root.open_container(id)?;
    let mut state = dir.read_state()?;
    let current = status(&state, &dir.path);
    if current != Status::Paused {
        return Err(ContainerError::WrongStatus {
            id: id.into(),
            action: "resume",
            status: current,
        });
    }
    crate::cgroups::manager(&state.cgroup).thaw()?;
    state.status = Status::Running;
    dir.write_state(&state)?;
    Ok(())
}
