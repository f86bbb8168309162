//! berth: a low-level OCI container runtime. The library does the work; `main.rs` only parses
//! the command line.

pub mod network;
