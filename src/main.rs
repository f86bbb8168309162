//! The `berth` command line: global flags and one subcommand per file under `commands/`; the
//! library does the work.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "berth",
    disable_version_flag = true,
    about = "A low-level OCI container runtime with host and bridge networking"
)]
struct Cli {
    /// Folder for the containers' state
    #[arg(long, global = true, default_value = berth::state::DEFAULT_ROOT)]
    root: PathBuf,
    /// Write log lines to this file
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of log lines
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log debug messages
    #[arg(long, global = true)]
    debug: bool,
    /// Manage cgroups through systemd (cgroupsPath is then slice:prefix:name)
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for compatibility with runc's command line
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    /// Print the version, the commit and the runtime-spec version
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container that waits for `start`
    Create(commands::create::CreateArgs),
    /// Start a created container
    Start(commands::start::Args),
    /// Create and start a container, and wait for it unless --detach
    Run(commands::run::Args),
    /// Run a process in a created or running container
    Exec(commands::exec::Args),
    /// Print a container's state as OCI state JSON
    State(commands::state::Args),
    /// Send a signal to a container (default SIGTERM)
    Kill(commands::kill::Args),
    /// Remove a container
    Delete(commands::delete::Args),
    /// List containers
    #[command(alias = "ls")]
    List(commands::list::Args),
    /// Write a config.json template
    Spec(commands::spec::Args),
    /// Print the runtime-spec features berth supports, as JSON
    Features,
    /// Print a container's details and network settings, like `docker inspect`
    Inspect(commands::inspect::Args),
    /// Freeze every process of a running container
    Pause(commands::pause::Args),
    /// Thaw a paused container
    Resume(commands::resume::Args),
    /// List a container's processes (--format json: a JSON array of host pids)
    Ps(commands::ps::Args),
    /// Change a container's limits (--resources - reads LinuxResources JSON from stdin)
    Update(commands::update::Args),
    /// Print a container's resource use and OOM kills as JSON events
    Events(commands::events::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        if cli.version {
            println!("{}", commands::VERSION);
            return ExitCode::SUCCESS;
        }
        eprintln!("berth: no command given (berth --help lists them)");
        return ExitCode::from(1);
    };
    let format = match cli.log_format {
        LogFormat::Text => berth::logging::Format::Text,
        LogFormat::Json => berth::logging::Format::Json,
    };
    if let Err(err) = berth::logging::init(cli.log.as_deref(), format, cli.debug) {
        eprintln!(
            "berth: cannot open log file {:?}: {err}",
            cli.log.unwrap_or_default()
        );
        return ExitCode::from(1);
    }
    let root = match berth::state::Root::from_flag(&cli.root) {
        Ok(root) => root,
        Err(err) => {
            berth::logging::report_error(&err.to_string());
            return ExitCode::from(1);
        }
    };
    // berth is never dumpable, so neither is any process it makes, however it makes it, until that
    // process runs the container's program (CVE-2019-5736: see process::clone::undumpable).
    if let Err(err) = berth::process::clone::undumpable() {
        berth::logging::report_error(&format!("cannot make berth non-dumpable: {err}"));
        return ExitCode::from(1);
    }
    let global = commands::Global {
        root,
        systemd_cgroup: cli.systemd_cgroup,
    };
    let result = match command {
        Command::Create(args) => commands::create::run(&global, args),
        Command::Start(args) => commands::start::run(&global, args),
        Command::Run(args) => commands::run::run(&global, args),
        Command::Exec(args) => commands::exec::run(&global, args),
        Command::State(args) => commands::state::run(&global, args),
        Command::Kill(args) => commands::kill::run(&global, args),
        Command::Delete(args) => commands::delete::run(&global, args),
        Command::List(args) => commands::list::run(&global, args),
        Command::Spec(args) => commands::spec::run(args),
        Command::Features => commands::features::run(),
        Command::Inspect(args) => commands::inspect::run(&global, args),
        Command::Pause(args) => commands::pause::run(&global, args),
        Command::Resume(args) => commands::resume::run(&global, args),
        Command::Ps(args) => commands::ps::run(&global, args),
        Command::Update(args) => commands::update::run(&global, args),
        Command::Events(args) => commands::events::run(&global, args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            berth::logging::report_error(&error_text(&err));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes as one line. Most of berth's errors already name their cause in
/// their own message, so a cause whose text the line holds already is not repeated.
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_named_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let spec = berth::spec::SpecError::Read {
            path: "/b/config.json".into(),
            source: io,
        };
        assert_eq!(
            error_text(&anyhow::Error::from(spec)),
            "cannot read /b/config.json: entity not found"
        );
        let wrapped = anyhow::anyhow!("disk full").context("cannot write /b/config.json");
        assert_eq!(
            error_text(&wrapped),
            "cannot write /b/config.json: disk full"
        );
    }
}
