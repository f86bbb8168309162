//! `berth kill`: send a signal to a container.

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Signal every process in the container's cgroup, not only its init
    #[arg(short, long)]
    pub all: bool,
    /// The container id
    pub id: String,
    /// A signal number or name
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    let signal = berth::container::parse_signal(&args.signal)?;
    berth::container::kill(&global.root, &args.id, signal, args.all)?;
    berth::logging::info(&format!("sent signal {signal} to container {:?}", args.id));
    Ok(0)
}
