//! `berth checkpoint`: save a running container with CRIU, with runc's flags.

use std::path::PathBuf;

use berth::checkpoint::{self, CheckpointOptions};

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Folder for CRIU's image files (default: ./checkpoint)
    #[arg(long)]
    pub image_path: Option<PathBuf>,
    /// Folder for CRIU's work files and log (default: the image folder)
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    /// A previous pre-dump's folder, relative to --image-path: only what changed since is saved
    #[arg(long)]
    pub parent_path: Option<PathBuf>,
    /// Leave the container running after the checkpoint
    #[arg(long)]
    pub leave_running: bool,
    /// Save open TCP connections
    #[arg(long)]
    pub tcp_established: bool,
    /// Leave out TCP connections still being set up
    #[arg(long)]
    pub tcp_skip_in_flight: bool,
    /// Link deleted but open files back in, where possible
    #[arg(long)]
    pub link_remap: bool,
    /// Allow unix sockets connected outside the container
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Allow a shell job: a terminal and session from outside the container
    #[arg(long)]
    pub shell_job: bool,
    /// Save file locks
    #[arg(long)]
    pub file_locks: bool,
    /// Save memory only and leave the container running; a later checkpoint with --parent-path
    /// saves what changed since
    #[arg(long)]
    pub pre_dump: bool,
    /// Free the parent images' pages that this checkpoint saves again
    #[arg(long)]
    pub auto_dedup: bool,
    /// What CRIU does with cgroups: soft, full, strict or ignore
    #[arg(long, default_value = "")]
    pub manage_cgroups_mode: String,
    /// A namespace CRIU leaves empty: only network (always, as berth wires the network itself)
    #[arg(long)]
    pub empty_ns: Vec<String>,
    /// Refused: lazy pages need a page server, which berth does not run
    #[arg(long)]
    pub lazy_pages: bool,
    /// Refused: berth sends no pages to a page server
    #[arg(long)]
    pub page_server: Option<String>,
    /// Refused: only used with --lazy-pages
    #[arg(long)]
    pub status_fd: Option<i32>,
    /// The container id
    pub id: String,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    if args.lazy_pages {
        anyhow::bail!(
            "--lazy-pages is not supported: it needs CRIU's page server and lazy-pages daemon, which berth does not run"
        );
    }
    if let Some(server) = &args.page_server {
        anyhow::bail!(
            "--page-server {server} is not supported: berth saves pages into --image-path only"
        );
    }
    if args.status_fd.is_some() {
        anyhow::bail!(
            "--status-fd is not supported: it signals lazy pages, which berth does not serve"
        );
    }
    let image_path = match args.image_path {
        Some(path) => path,
        None => std::env::current_dir()?.join("checkpoint"),
    };
    let opts = CheckpointOptions {
        criu: global.criu.clone(),
        image_path,
        work_path: args.work_path,
        parent_path: args.parent_path,
        leave_running: args.leave_running,
        tcp_established: args.tcp_established,
        tcp_skip_in_flight: args.tcp_skip_in_flight,
        link_remap: args.link_remap,
        ext_unix_sk: args.ext_unix_sk,
        shell_job: args.shell_job,
        file_locks: args.file_locks,
        pre_dump: args.pre_dump,
        auto_dedup: args.auto_dedup,
        manage_cgroups_mode: Some(checkpoint::cgroups_mode(&args.manage_cgroups_mode)?),
        empty_ns: checkpoint::empty_namespaces(&args.empty_ns)?,
    };
    checkpoint::checkpoint(&global.root, &args.id, &opts)?;
    Ok(0)
}
