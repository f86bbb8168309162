//! `berth ps`: the processes of a container: a JSON array of host pids (what containerd reads),
//! or the lines of `ps` (default `ps -ef`) whose PID is one of them.

use anyhow::{bail, Context};

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Output format
    #[arg(short, long, value_parser = ["table", "json"], default_value = "table")]
    pub format: String,
    /// The container id
    pub id: String,
    /// Options for ps in table format (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    let pids = berth::container::ps::pids(&global.root, &args.id)?;
    if args.format == "json" {
        if !args.ps_args.is_empty() {
            bail!("ps options cannot be used with --format json");
        }
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let ps_args = if args.ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        args.ps_args
    };
    let output = std::process::Command::new("ps")
        .args(&ps_args)
        .output()
        .context("cannot run ps")?;
    if !output.status.success() {
        bail!(
            "ps {} failed: {}",
            ps_args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(column) = header.split_whitespace().position(|c| c == "PID") else {
        bail!("ps {} printed no PID column", ps_args.join(" "));
    };
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p: i32| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}
