//! `berth events`: a container's resource figures and OOM kills as runc's JSON events, one per
//! line: once with `--stats`, else every `--interval` until the container stops.

use std::io::Write;

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Print the figures once and exit
    #[arg(long)]
    pub stats: bool,
    /// How often to print the figures (a Go duration: 5s, 500ms, 1m)
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// The container id
    pub id: String,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    let interval = berth::container::events::parse_duration(&args.interval)?;
    let mut stdout = std::io::stdout();
    let mut failed = None;
    berth::container::events::watch(&global.root, &args.id, interval, args.stats, |event| {
        // A reader that went away ends the watch.
        failed = writeln!(stdout, "{event}")
            .and_then(|_| stdout.flush())
            .err();
        failed.is_none()
    })?;
    if let Some(err) = failed {
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(err.into());
        }
    }
    Ok(0)
}
