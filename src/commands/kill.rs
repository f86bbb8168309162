//! `berth kill`: send a signal to a container.

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Signal every process in the container's cgroup, not only its init
    #[arg(short, long)]
    pub all: bool,
    /// The container id
    pub id: String,
    /// A signal number or name (0 only checks that the container may be signalled)
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    if args.signal.parse() == Ok(0) {
        // Signal 0 checks that the container may be signalled; --all, which may find nothing
        // left, asks nothing of a stopped one.
        match berth::container::probe(&global.root, &args.id) {
            Err(berth::container::ContainerError::NotRunning { .. }) if args.all => {}
            other => other?,
        }
        return Ok(0);
    }
    let signal = berth::container::parse_signal(&args.signal)?;
    berth::container::kill(&global.root, &args.id, signal, args.all)?;
    berth::logging::info(&format!("sent signal {signal} to container {:?}", args.id));
    Ok(0)
}
