//! `berth delete`: remove a container.

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Kill the container first if it still runs
    #[arg(short, long)]
    pub force: bool,
    /// The container id
    pub id: String,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    berth::container::delete(&global.root, &args.id, args.force)?;
    berth::logging::info(&format!("deleted container {:?}", args.id));
    Ok(0)
}
