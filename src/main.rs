//! The `berth` command line: global flags and one subcommand per file under `commands/`; the
//! library does the work.

// berth starts from C's `main` (see `c_main` below).
#![cfg_attr(not(test), no_main)]

mod commands;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args as _, FromArgMatches as _, Subcommand, ValueEnum};

// The global flags, given before the subcommand as engines pass them. (A plain comment: a doc
// comment here would replace berth's description in `--help`.)
#[derive(clap::Args)]
struct Cli {
    /// Folder for the containers' state [default: /run/berth as root, else $XDG_RUNTIME_DIR/berth]
    #[arg(long, global = true)]
    root: Option<PathBuf>,
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
    /// Manage cgroups as an ordinary user may: auto (when not root), true or false
    #[arg(long, value_name = "auto|true|false")]
    rootless: Option<String>,
    /// The CRIU binary `checkpoint` and `restore` run (`criu swrk`)
    #[arg(long, global = true, default_value = "criu")]
    criu: PathBuf,
    /// Print the version, the commit and the runtime-spec version
    #[arg(short = 'v', long)]
    version: bool,
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
    /// Save a running container with CRIU (and remove it unless --leave-running)
    Checkpoint(commands::checkpoint::Args),
    /// Make a container again from a checkpoint; wait for it unless --detach
    Restore(commands::restore::Args),
}

/// Parses the command line. Only the parser of the subcommand named is built: clap building all
/// eighteen costs about 150 KiB of resident memory on every call, and berth's peak memory is
/// mostly its code. `--help`, no subcommand, or an unknown one get the whole tree, so clap's
/// help and suggestions stay as they are.
fn parse() -> (Cli, Option<Command>) {
    let args: Vec<OsString> = std::env::args_os().map(engine_spelling).collect();
    let top = Cli::augment_args(
        clap::Command::new("berth")
            .about("A low-level OCI container runtime with host and bridge networking")
            .disable_version_flag(true),
    );
    let top = match subcommand_name(&args).and_then(|name| one_subcommand(&name)) {
        Some(sub) => top.subcommand(sub),
        None => Command::augment_subcommands(top),
    };
    let matches = top.get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let command = matches
        .subcommand()
        .map(|_| Command::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()));
    (cli, command)
}

/// A flag as berth spells it, for the one engines spell otherwise: containerd's runc shim
/// (go-runc) passes `restore -no-subreaper`, with one dash, which Go's flag parsers accept.
fn engine_spelling(arg: OsString) -> OsString {
    match arg.to_str() {
        Some("-no-subreaper") => OsString::from("--no-subreaper"),
        _ => arg,
    }
}

/// The first word that is neither a global flag nor a global flag's value.
fn subcommand_name(args: &[OsString]) -> Option<String> {
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(word) = words.next() {
        match word.as_ref() {
            "--root" | "--log" | "--log-format" | "--rootless" | "--criu" => {
                words.next();
            }
            flag if flag.starts_with('-') => {}
            name => return Some(name.to_string()),
        }
    }
    None
}

/// The parser of one subcommand, from its arguments' derive (the enum's descriptions show in
/// the whole tree's help).
fn one_subcommand(name: &str) -> Option<clap::Command> {
    use commands::*;
    let (name, augment): (&str, fn(clap::Command) -> clap::Command) = match name {
        "create" => ("create", create::CreateArgs::augment_args),
        "start" => ("start", start::Args::augment_args),
        "run" => ("run", run::Args::augment_args),
        "exec" => ("exec", exec::Args::augment_args),
        "state" => ("state", state::Args::augment_args),
        "kill" => ("kill", kill::Args::augment_args),
        "delete" => ("delete", delete::Args::augment_args),
        "list" | "ls" => ("list", list::Args::augment_args),
        "spec" => ("spec", spec::Args::augment_args),
        "features" => ("features", |c| c),
        "inspect" => ("inspect", inspect::Args::augment_args),
        "pause" => ("pause", pause::Args::augment_args),
        "resume" => ("resume", resume::Args::augment_args),
        "ps" => ("ps", ps::Args::augment_args),
        "update" => ("update", update::Args::augment_args),
        "events" => ("events", events::Args::augment_args),
        "checkpoint" => ("checkpoint", checkpoint::Args::augment_args),
        "restore" => ("restore", restore::Args::augment_args),
        _ => return None,
    };
    let sub = augment(clap::Command::new(name));
    Some(if name == "list" { sub.alias("ls") } else { sub })
}

/// berth starts here rather than from Rust's `main`: Rust's start-up sets up what berth does
/// not use (a signal stack and handlers for a stack-overflow message, found through a read of
/// /proc/self/maps) at every start, 14 system calls, and berth starts for every command an
/// engine gives. What of it berth relies on is done here: SIGPIPE ignored (a write to a closed
/// pipe fails instead of ending berth) and standard streams open (a file berth opens never
/// becomes its stdout). The arguments come from glibc as before (std reads them at load time).
// SAFETY: the program's only `main` symbol (the test harness brings its own); glibc's start
// code calls it as C's main.
#[cfg_attr(not(test), export_name = "main")]
#[cfg_attr(test, allow(dead_code))]
extern "C" fn c_main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: sets a signal's disposition; no handler is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    open_standard_streams();
    let code = run();
    // Rust's start-up would flush stdout on the way out.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    code.into()
}

/// Opens /dev/null on any of descriptors 0, 1 and 2 that is closed, as Rust's start-up does.
fn open_standard_streams() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll reads and writes the three pollfd structures given.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for fd in fds.iter().filter(|fd| fd.revents & libc::POLLNVAL != 0) {
        // SAFETY: opens a path given as a C string; the lowest free descriptor is the closed one.
        let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if opened != fd.fd {
            // SAFETY: aborting is always sound.
            unsafe { libc::abort() };
        }
    }
}

/// The command line's work; the exit status.
fn run() -> u8 {
    let (cli, command) = parse();
    let Some(command) = command else {
        if cli.version {
            println!("{}", commands::VERSION);
            return 0;
        }
        eprintln!("berth: error: no command given (berth --help lists them)");
        return 1;
    };
    let format = match cli.log_format {
        LogFormat::Text => berth::logging::Format::Text,
        LogFormat::Json => berth::logging::Format::Json,
    };
    if let Err(err) = berth::logging::init(cli.log.as_deref(), format, cli.debug) {
        eprintln!(
            "berth: error: cannot open log file {:?}: {err}",
            cli.log.unwrap_or_default()
        );
        return 1;
    }
    let rootless = match berth::rootless::parse_flag(cli.rootless.as_deref().unwrap_or("auto")) {
        Ok(flag) => berth::rootless::rootless_cgroups(flag),
        Err(err) => {
            berth::logging::report_error(&err.to_string());
            return 1;
        }
    };
    let root = match &cli.root {
        Some(path) => berth::state::Root::from_flag(path),
        None => berth::state::Root::default_for_caller(),
    };
    let root = match root {
        Ok(root) => root,
        Err(err) => {
            berth::logging::report_error(&err.to_string());
            return 1;
        }
    };
    // berth is never dumpable, so neither is any process it makes, however it makes it, until that
    // process runs the container's program (CVE-2019-5736: see process::clone::undumpable).
    if let Err(err) = berth::process::clone::undumpable() {
        berth::logging::report_error(&format!("cannot make berth non-dumpable: {err}"));
        return 1;
    }
    let global = commands::Global {
        root,
        systemd_cgroup: cli.systemd_cgroup,
        rootless_cgroups: rootless,
        criu: cli.criu,
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
        Command::Checkpoint(args) => commands::checkpoint::run(&global, args),
        Command::Restore(args) => commands::restore::run(&global, args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            berth::logging::report_error(&error_text(&err));
            1
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
    fn global_values_are_not_the_subcommand() {
        let words = |list: &[&str]| -> Vec<OsString> { list.iter().map(OsString::from).collect() };
        for args in [
            &["berth", "--rootless", "false", "run", "x"][..],
            &["berth", "--rootless=auto", "--root", "/r", "run"],
            &["berth", "--debug", "--log", "f", "run"],
        ] {
            assert_eq!(
                subcommand_name(&words(args)).as_deref(),
                Some("run"),
                "{args:?}"
            );
        }
    }

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
