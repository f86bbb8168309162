//! `ps`: the host pids of every process in a container's cgroup.

use super::ContainerError;
use crate::state::Root;

pub fn pids(root: &Root, id: &str) -> Result<Vec<i32>, ContainerError> {
    let state = root.read_state(id)?;
    super::processes(&state)
}
