//! `berth create`: make a container that waits for `start`.

use std::path::PathBuf;

use berth::container::{self, CreateOptions};
use berth::network::{NetworkError, NetworkOverride};

use super::Global;

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The bundle folder (holding config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the init's pid to this file
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty master when process.terminal is true
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root
    #[arg(long)]
    pub no_pivot: bool,
    /// Keep the caller's session keyring instead of making a new one
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass descriptors 3 .. 3+N-1 to the container
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Network mode: host, bridge or none (overrides the io.berth.network.mode annotation;
    /// never weakens a network entry of linux.namespaces: see README, Networking)
    #[arg(long)]
    pub network: Option<String>,
    /// Publish a port: HOST:CONTAINER[/tcp|/udp] (repeatable)
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// The container id
    pub id: String,
}

impl CreateArgs {
    /// The library's options; the network flags are parsed here.
    pub fn options(self, global: &Global) -> Result<CreateOptions, NetworkError> {
        let network = NetworkOverride::from_flags(self.network.as_deref(), &self.publish)?;
        Ok(CreateOptions {
            id: self.id,
            bundle: self.bundle,
            pid_file: self.pid_file,
            console_socket: self.console_socket,
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
            network,
            systemd_cgroup: global.systemd_cgroup,
            rootless_cgroups: global.rootless_cgroups,
            keep_console: false,
            plain_newlines: false,
        })
    }
}

pub fn run(global: &Global, args: CreateArgs) -> super::Result {
    let opts = args.options(global)?;
    let created = super::sealed(container::create(&global.root, &opts))?;
    berth::logging::info(&format!(
        "created container {:?} from bundle {}, init pid {}",
        opts.id,
        opts.bundle.display(),
        created.pid
    ));
    Ok(0)
}
