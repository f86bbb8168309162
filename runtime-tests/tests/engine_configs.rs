//! Pieces of the config.json files that containerd, Docker and podman send (recorded by
//! scripts/engine-tests, listed in scripts/engines/README.md), each run through berth.

use runtime_tests::{need_root, Env};
use serde_json::json;

/// Docker 20.10 on cgroup v1 mounts `/sys/fs/cgroup` read-only without a cgroup namespace: each
/// hierarchy is the container's own directory bind-mounted, then remounted read-only.
#[test]
fn dockers_read_only_cgroup_mount_without_a_cgroup_namespace() {
    need_root!();
    let env = Env::new("docker-cgroup-mount");
    let id = env.id("cg");
    let script = "cat /proc/self/mountinfo; helper write /sys/fs/cgroup/pids/pids.max 5";
    let bundle = env.bundle(&id, &["sh", "-c", script], |config| {
        config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["ro", "nosuid", "noexec", "nodev"]
        }));
        let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.retain(|ns| ns["type"] != "cgroup");
    });
    let run = env.run(&bundle, &id);
    assert_eq!(run.code, 1, "the write must fail: {}", run.stderr);
    let mounts: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains(" /sys/fs/cgroup"))
        .collect();
    let suffix = format!("/{id}");
    let pids = mounts
        .iter()
        .find(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup/pids"))
        .unwrap_or_else(|| panic!("no pids mount in {mounts:#?}"));
    let fields: Vec<&str> = pids.split(' ').collect();
    assert!(
        fields[3].ends_with(&suffix),
        "not the container's cgroup: {pids}"
    );
    assert!(fields[5].starts_with("ro,"), "not read-only: {pids}");
    assert!(run.stdout.ends_with("EROFS\n"), "{}", run.stdout);
    env.assert_gone(&id);
}
