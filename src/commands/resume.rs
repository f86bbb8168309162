//! `berth resume`: thaw a paused container.

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// The container id
    pub id: String,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    berth::container::resume(&global.root, &args.id)?;
    berth::logging::info(&format!("resumed container {:?}", args.id));
    Ok(0)
}
