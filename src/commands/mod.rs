//! One module per subcommand: each parses its own flags and calls the library.

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
pub mod resume;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

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
}

pub type Result = anyhow::Result<u8>;
