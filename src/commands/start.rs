//! `berth start`: run a created container's program.

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// The container id
    pub id: String,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    berth::container::start(&global.root, &args.id)?;
    berth::logging::info(&format!("started container {:?}", args.id));
    Ok(0)
}
