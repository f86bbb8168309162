//! Test-only stops. A debug build of berth kills itself with SIGKILL at the step of `create` or
//! `delete` named by the environment variable `BERTH_FAULT` (`create:reserve`,
//! `delete:network`…), so a test can stop it at every step and check that the operator's
//! recovery (`delete --force`, or the next `create`) leaves nothing behind (see
//! `runtime-tests/tests/faults.rs`, which finds the steps by reading the calls to [`point`]).
//!
//! A release build reads no such variable: [`point`] compiles to nothing there, and
//! `scripts/release-build` checks that the name is absent from the binary.

/// Stops berth here, as `kill -9` would, when `BERTH_FAULT` names `step` (debug builds only).
#[inline(always)]
pub fn point(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("BERTH_FAULT").is_some_and(|wanted| wanted == step) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(debug_assertions))]
    let _ = step;
}
