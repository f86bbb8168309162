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
    // The daemon (neither `start` nor `delete`) clones every container's processes, which show
    // its binary as their exe until they run their programs: it runs from a view of its binary
    // that no one can write, whatever their capabilities (CVE-2019-5736, see
    // `berth::process::seal`). Once, at start, for its whole life; the view shares the binary's
    // page cache, so it costs no memory.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let daemon = containerd_shim::parse(&args)
        .is_ok_and(|f| f.action.is_empty() && !f.socket.is_empty() && !f.version);
    if daemon {
        if let Err(e) = berth::process::seal::ensure_sealed() {
            eprintln!("containerd-shim-berth-v2: {e}");
            std::process::exit(1);
        }
    }
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
