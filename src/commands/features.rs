//! `berth features`: what this build of berth supports, as runtime-spec features JSON.

use serde_json::json;

pub fn run() -> super::Result {
    let capabilities: Vec<String> = {
        let mut all: Vec<caps::Capability> = caps::all().into_iter().collect();
        all.sort_by_key(|c| c.index());
        all.iter().map(|c| c.to_string()).collect()
    };
    let features = json!({
        "ociVersionMin": berth::spec::OCI_VERSION_MIN,
        "ociVersionMax": berth::spec::OCI_VERSION_MAX,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": berth::rootfs::MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": capabilities,
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": false, "rdma": false},
            "seccomp": {"enabled": false},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "io.berth.version": env!("CARGO_PKG_VERSION"),
            "io.berth.commit": env!("BERTH_COMMIT"),
            // checkpoint and restore run CRIU (`criu swrk`, CRIU 4 or newer) with runc's flags,
            // but for those below, which need CRIU's page server or an LSM berth does not apply.
            "io.berth.checkpoint.enabled": "true",
            "io.berth.checkpoint.refused": "--lazy-pages,--page-server,--status-fd,--lsm-profile,--lsm-mount-context"
        }
    });
    println!("{}", serde_json::to_string_pretty(&features)?);
    Ok(0)
}
