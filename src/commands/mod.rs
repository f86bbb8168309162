//! One module per subcommand: each parses its own flags and calls the library.

pub mod checkpoint;
pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod inspect;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod restore;
pub mod resume;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

use berth::container::exposure::ExposureError;
use berth::container::ContainerError;
use berth::state::Root;

/// What `berth --version` prints, in runc's shape (engines show its first line).
pub const VERSION: &str = concat!(
    "berth version ",
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("BERTH_COMMIT"),
    "\nspec: ",
    "1.3.0"
);

/// The global flags every subcommand sees.
pub struct Global {
    pub root: Root,
    pub systemd_cgroup: bool,
    /// Whether cgroups are managed rootless (`--rootless`, see `berth::rootless`).
    pub rootless_cgroups: bool,
    /// The CRIU binary (`--criu`).
    pub criu: std::path::PathBuf,
}

pub type Result = anyhow::Result<u8>;

/// Passes on the result of a container operation, but when the container's processes need berth
/// to run from a sealed view of its binary and it does not (`container::exposure`, which asks
/// before anything is made), re-executes berth from one: the command starts again, protected.
pub fn sealed<T>(
    result: std::result::Result<T, ContainerError>,
) -> std::result::Result<T, ContainerError> {
    match result {
        Err(ContainerError::Exposure(ExposureError::Unsealed)) => {
            berth::logging::debug("re-executing berth from a sealed view of its binary");
            Err(ExposureError::Seal(berth::process::seal::reexec()).into())
        }
        other => other,
    }
}
