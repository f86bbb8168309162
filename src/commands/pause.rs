//! `berth pause`: freeze every process of a running container.

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// The container id
    pub id: String,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    berth::container::pause(&global.root, &args.id)?;
    berth::logging::info(&format!("paused container {:?}", args.id));
    Ok(0)
}
