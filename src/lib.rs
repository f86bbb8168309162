//! berth: a low-level OCI container runtime. The library does the work; `main.rs` only parses
//! the command line.

pub mod bounded;
pub mod capabilities;
pub mod cgroups;
pub mod checkpoint;
pub mod console;
pub mod container;
pub mod fault;
pub mod hooks;
pub mod idmap;
pub mod logging;
pub mod lsm;
pub mod namespaces;
pub mod network;
pub mod process;
pub mod procfs;
pub mod rootfs;
pub mod rootless;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod syscall;

#[cfg(test)]
mod testutil;
