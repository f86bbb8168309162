//! containerd-shim-berth-v2: containerd's shim v2 for berth, runtime type
//! `io.containerd.berth.v2`. containerd runs it with `start` (it daemonises, or joins the shim of
//! the container's pod, and prints its ttrpc address), talks the Task service to it, and runs it
//! with `delete` to clean up after a shim that died. The Task service calls berth's library
//! in-process, the same `container` functions as the `berth` command line (see `task`); the
//! protocol, the daemonising and the reaper are the containerd-shim crate's.

mod events;
mod helper;
mod metrics;
mod mounts;
mod oom;
mod service;
mod stdio;
mod task;

fn main() {
    // One malloc arena for all threads: the shim's threads mostly wait, and glibc's arena per
    // thread costs resident memory in every shim.
    // SAFETY: mallopt takes a parameter number and a value.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // Never dumpable, as berth itself (CVE-2019-5736): the containers' processes are forks of the
    // shim until their execve, and the shim outlives them all.
    if let Err(e) = berth::process::clone::undumpable() {
        eprintln!("containerd-shim-berth-v2: cannot make the shim non-dumpable: {e}");
        std::process::exit(1);
    }
    containerd_shim::run::<service::Service>("io.containerd.berth.v2", None);
}
