//! Fuzzes config.json as `create` reads it: parsing, the checks of `spec::check`, and everything
//! worked out from the spec before a process exists (mounts and devices, the process, the
//! network request, the seccomp filter). No input may panic, and what the checks accept must
//! keep the promises the rest of berth relies on.
#![no_main]

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use berth::rootfs::RootfsPlan;
use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::Spec;

/// A bundle folder with an empty `rootfs`, made once per run.
fn bundle() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("berth-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<Spec>(data) else {
        return;
    };
    let Ok(rootfs) = berth::spec::check(&spec, bundle()) else {
        return;
    };
    let process = spec.process().as_ref().expect("check requires process");
    assert!(process.cwd().is_absolute());
    let user = process.user();
    assert!(user.uid() != u32::MAX && user.gid() != u32::MAX);
    if let Ok(plan) = RootfsPlan::from_spec(
        &spec,
        bundle(),
        &rootfs,
        false,
        Default::default(),
        false,
        false,
    ) {
        for device in &plan.devices {
            assert!(device.path.is_absolute(), "{:?}", device.path);
            assert!(!device.path.components().any(|c| c == Component::ParentDir));
        }
    }
    let _ = berth::process::ProcessPlan::from_spec(process, 0);
    let _ = berth::network::request_from(&spec, None, &[]);
    if let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        if let Ok(filter) = berth::seccomp::compile(profile) {
            assert!(filter.instructions() <= 4096);
        }
    }
});
