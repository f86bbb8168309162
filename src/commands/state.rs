//! `berth state`: print a container's OCI state JSON.

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// The container id
    pub id: String,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    let state = global.root.read_state(&args.id)?;
    let status = berth::container::status(&state, &global.root.container_dir(&args.id));
    println!(
        "{}",
        serde_json::to_string_pretty(&berth::container::oci_state(&state, status))?
    );
    Ok(0)
}
