//! `berth inspect`: a container's details in the shape of `docker inspect`, with its
//! `NetworkSettings`.

use serde_json::json;

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// The container id
    pub id: String,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    let state = global.root.read_state(&args.id)?;
    let status = berth::container::status(&state, &global.root.container_dir(&args.id));
    let running = status != berth::state::Status::Stopped;
    let network: berth::network::NetworkState = match &state.network {
        Some(value) => serde_json::from_value(value.clone())?,
        None => anyhow::bail!("container {:?} has no network state", args.id),
    };
    let pid = running.then_some(state.pid);
    let inspect = json!([{
        "Id": state.id,
        "Created": state.created,
        "State": {
            "Status": status,
            "Running": status == berth::state::Status::Running,
            "Paused": status == berth::state::Status::Paused,
            "Pid": pid.unwrap_or(0),
        },
        "Bundle": state.bundle,
        "Rootfs": state.rootfs,
        "NetworkSettings": berth::network::inspect_settings(&network, pid),
    }]);
    println!("{}", serde_json::to_string_pretty(&inspect)?);
    Ok(0)
}
