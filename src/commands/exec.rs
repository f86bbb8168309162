//! `berth exec`: run one more process in a created or running container.

use std::path::PathBuf;

use berth::container::exec::{self, ExecCommand, ExecError, ExecProcess};
use berth::container::{self, ContainerError, ExecOptions};

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// A runtime-spec process JSON file, instead of COMMAND and the flags that change the process
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Give the process a terminal
    #[arg(short, long)]
    pub tty: bool,
    /// The working directory in the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable: KEY=VALUE (repeatable)
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Run as UID or UID:GID
    #[arg(short, long)]
    pub user: Option<String>,
    /// An additional group id (repeatable)
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// Add a capability to the bounding, effective and permitted sets (repeatable)
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process
    #[arg(long)]
    pub no_new_privs: bool,
    /// Return once the process runs instead of waiting for it
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's pid to this file
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty master when the process has a terminal
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Pass descriptors 3 .. 3+N-1 to the process
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Run the process in this existing cgroup below the container's (cgroup v2)
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Exec into a paused container too: the process starts frozen and runs once it is resumed
    #[arg(long)]
    pub ignore_paused: bool,
    /// The container id
    pub id: String,
    /// The command to run and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    let detach = args.detach;
    let result = options(args)
        .map_err(ContainerError::from)
        .and_then(|opts| container::exec(&global.root, &opts, detach));
    match super::sealed(result) {
        Ok(code) => Ok(code.clamp(0, 255) as u8),
        // As runc: 255 tells berth's own failure from the statuses of programs.
        Err(err) => {
            berth::logging::report_error(&err.to_string());
            Ok(255)
        }
    }
}

/// The library's options; the flags that change the process are parsed here.
fn options(args: Args) -> Result<ExecOptions, ExecError> {
    let command = ExecCommand {
        args: args.command,
        cwd: args.cwd,
        env: args
            .env
            .iter()
            .map(|var| exec::parse_env(var))
            .collect::<Result<_, _>>()?,
        user: args.user.as_deref().map(exec::parse_user).transpose()?,
        additional_gids: args.additional_gids,
        caps: args.cap,
        no_new_privs: args.no_new_privs,
    };
    Ok(ExecOptions {
        id: args.id,
        process: ExecProcess::from_flags(args.process, command)?,
        tty: args.tty,
        pid_file: args.pid_file,
        console_socket: args.console_socket,
        keep_console: false,
        preserve_fds: args.preserve_fds,
        cgroup: args.cgroup,
        ignore_paused: args.ignore_paused,
    })
}
