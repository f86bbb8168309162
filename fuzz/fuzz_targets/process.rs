//! Fuzzes a process JSON (what `exec --process` reads): parsing, the capability names and the
//! plan of what runs. No input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::Process;

fuzz_target!(|data: &[u8]| {
    let Ok(process) = serde_json::from_slice::<Process>(data) else {
        return;
    };
    let _ = berth::capabilities::CapSets::from_spec(process.capabilities().as_ref());
    if let Ok(plan) = berth::process::ProcessPlan::from_spec(&process, 0) {
        assert_eq!(plan.args.len(), process.args().as_ref().map_or(0, Vec::len));
        if let Some(path) = plan.path_env() {
            assert!(!path.contains(&0));
        }
    }
});
