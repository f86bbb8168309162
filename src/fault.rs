//! Test-only stops. A debug build of berth kills itself with SIGKILL at the step of `create`,
//! `delete` or the network cleaner named by the environment variable `BERTH_FAULT` (`create:reserve`,
//! `delete:network`…), so a test can stop it at every step and check that the operator's
//! recovery (`delete --force`, or the next `create`) leaves nothing behind (see
//! `runtime-tests/tests/faults.rs`, which finds the steps by reading the calls to [`point`]).
//!
//! A release build reads no such variable: [`point`] compiles to nothing there, and
//! `scripts/release-build` checks that the name is absent from the binary.

/// Stops berth here, as `kill -9` would, when `BERTH_FAULT` names `step` (debug builds only).
/// With `BERTH_FAULT_MARK=FILE` it writes the step into FILE first: the steps of the network
/// cleaner (`clean:…`) are in a process no test waits for, and the file says it was reached.
#[inline(always)]
pub fn point(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("BERTH_FAULT").is_some_and(|wanted| wanted == step) {
        if let Some(mark) = std::env::var_os("BERTH_FAULT_MARK") {
            let _ = std::fs::write(mark, step);
        }
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}
