//! `berth restore`: make a container again from a checkpoint, with runc's flags; without
//! --detach, wait for it and exit with its status, as `run` does.

use std::path::PathBuf;

use berth::checkpoint::{self, RestoreOptions};

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// A unix socket that receives the master of the container's new terminal
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Folder of CRIU's image files (default: ./checkpoint)
    #[arg(long)]
    pub image_path: Option<PathBuf>,
    /// Folder for CRIU's work files and log (default: the image folder)
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    /// Restore open TCP connections
    #[arg(long)]
    pub tcp_established: bool,
    /// Allow unix sockets connected outside the container
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Allow a shell job: a terminal and session from outside the container
    #[arg(long)]
    pub shell_job: bool,
    /// Restore file locks
    #[arg(long)]
    pub file_locks: bool,
    /// What CRIU does with cgroups: soft, full, strict or ignore
    #[arg(long, default_value = "")]
    pub manage_cgroups_mode: String,
    /// The bundle folder (holding config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Return once the container runs instead of waiting for it
    #[arg(short, long)]
    pub detach: bool,
    /// Write the restored init's pid to this file
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Accepted as runc has it: berth never makes itself a subreaper
    #[arg(long)]
    pub no_subreaper: bool,
    /// Accepted as runc has it: CRIU restores the mount namespace as it was saved, so there
    /// is no pivot_root to leave out
    #[arg(long)]
    pub no_pivot: bool,
    /// A namespace CRIU leaves empty: only network (always, as berth wires the network itself)
    #[arg(long)]
    pub empty_ns: Vec<String>,
    /// Free the image pages once restored
    #[arg(long)]
    pub auto_dedup: bool,
    /// Refused: lazy pages need a page server, which berth does not run
    #[arg(long)]
    pub lazy_pages: bool,
    /// Refused: berth hands CRIU no LSM profile
    #[arg(long)]
    pub lsm_profile: Option<String>,
    /// Refused: berth hands CRIU no LSM mount context
    #[arg(long)]
    pub lsm_mount_context: Option<String>,
    /// The container id
    pub id: String,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    if args.lazy_pages {
        anyhow::bail!(
            "--lazy-pages is not supported: it needs CRIU's page server and lazy-pages daemon, which berth does not run"
        );
    }
    if let Some(profile) = &args.lsm_profile {
        anyhow::bail!(
            "--lsm-profile {profile} is not supported: berth hands CRIU no LSM profile at restore"
        );
    }
    if let Some(context) = &args.lsm_mount_context {
        anyhow::bail!(
            "--lsm-mount-context {context} is not supported: berth hands CRIU no LSM mount context at restore"
        );
    }
    let image_path = match args.image_path {
        Some(path) => path,
        None => std::env::current_dir()?.join("checkpoint"),
    };
    let opts = RestoreOptions {
        id: args.id,
        bundle: args.bundle,
        criu: global.criu.clone(),
        image_path,
        work_path: args.work_path,
        tcp_established: args.tcp_established,
        ext_unix_sk: args.ext_unix_sk,
        shell_job: args.shell_job,
        file_locks: args.file_locks,
        auto_dedup: args.auto_dedup,
        manage_cgroups_mode: Some(checkpoint::cgroups_mode(&args.manage_cgroups_mode)?),
        empty_ns: checkpoint::empty_namespaces(&args.empty_ns)?,
        pid_file: args.pid_file,
        console_socket: args.console_socket,
        systemd_cgroup: global.systemd_cgroup,
        keep_console: !args.detach,
    };
    let code = checkpoint::restore_and_wait(&global.root, &opts, args.detach)?;
    Ok(code.clamp(0, 255) as u8)
}
