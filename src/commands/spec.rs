//! `berth spec`: write a `config.json` template into the bundle folder.

use std::path::PathBuf;

use anyhow::{bail, Context};

#[derive(clap::Args)]
pub struct Args {
    /// The bundle folder to write config.json into
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// A template for a container run by an unprivileged user (runc's rootless template)
    #[arg(long)]
    pub rootless: bool,
    /// Network mode of the template: host, bridge or none [default: none, host with --rootless]
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(berth::spec::NETWORK_MODES))]
    pub network: Option<String>,
}

pub fn run(args: Args) -> super::Result {
    let path = args.bundle.join("config.json");
    if path.exists() {
        bail!("{} exists already: remove it first", path.display());
    }
    // As runc's: a rootless container shares the host's network unless asked otherwise.
    let network = match (&args.network, args.rootless) {
        (Some(mode), _) => mode.as_str(),
        (None, true) => "host",
        (None, false) => "none",
    };
    let spec = berth::spec::template(network, args.rootless);
    let text = serde_json::to_string_pretty(&spec)? + "\n";
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(0)
}
