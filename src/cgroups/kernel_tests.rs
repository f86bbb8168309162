//! Tests against the real kernel, as root: the eBPF device program attached to a scratch cgroup2
//! directory, with a shell moved into it trying to open devices. Every cgroup2 hierarchy (the
//! hybrid host's `/sys/fs/cgroup/unified` as much as a pure v2 host's) runs device programs.

use std::path::PathBuf;
use std::process::Command;

use super::devices::{rules_for, DeviceRule, MKNOD, READ};
use super::{discover, v2};

/// Says why a test is skipped on a line scripts/test collects, past the harness's capture.
fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\nSKIP cgroups::kernel_tests::{test}: {why}"
    );
}

/// A scratch cgroup2 directory, removed on drop; `None` (with a SKIP line) when the test cannot
/// run here.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Option<Scratch> {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            skip(test, "needs root");
            return None;
        }
        let mount = discover()
            .ok()?
            .1
            .into_iter()
            .find(|h| h.v2)
            .map(|h| h.mount_point);
        let Some(mount) = mount else {
            skip(test, "no cgroup2 hierarchy is mounted");
            return None;
        };
        let dir = mount.join(format!("berth-unit-{test}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        Some(Scratch(dir))
    }

    /// Runs a shell script inside the cgroup; returns (stdout, stderr).
    fn sh(&self, script: &str) -> (String, String) {
        let procs = self.0.join("cgroup.procs");
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("echo $$ > {} && {script}", procs.display()))
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = super::remove_tree(&self.0);
    }
}

#[test]
fn the_device_program_denies_what_the_rules_deny() {
    let Some(scratch) = Scratch::new("devices") else {
        return;
    };
    // The template's deny-all, then the defaults (which allow /dev/null and /dev/zero), then a
    // rule denying /dev/zero for reading only.
    let linux: oci_spec::runtime::Linux =
        serde_json::from_str(r#"{"resources": {"devices": [{"allow": false, "access": "rwm"}]}}"#)
            .unwrap();
    let mut rules = rules_for(Some(&linux)).unwrap();
    rules.push(DeviceRule {
        allow: false,
        kind: 'c',
        major: Some(1),
        minor: Some(5),
        access: READ,
    });
    v2::attach_devices(&scratch.0, &rules).unwrap();
    let (out, err) = scratch.sh("head -c 1 /dev/null && echo null-read-ok; \
         echo x > /dev/zero && echo zero-write-ok; \
         head -c 1 /dev/zero >/dev/null && echo zero-read-ok; \
         head -c 1 /dev/mem >/dev/null && echo mem-read-ok; \
         echo done");
    assert_eq!(out, "null-read-ok\nzero-write-ok\ndone\n", "stderr: {err}");
    assert!(err.contains("Operation not permitted"), "{err}");
}

#[test]
fn mknod_is_allowed_but_opening_a_disk_is_not() {
    let Some(scratch) = Scratch::new("mknod") else {
        return;
    };
    let rules = rules_for(None).unwrap();
    assert!(rules.iter().any(|r| r.kind == 'b' && r.access == MKNOD));
    v2::attach_devices(&scratch.0, &rules).unwrap();
    let node = std::env::temp_dir().join(format!("berth-unit-loop-{}", std::process::id()));
    let (out, err) = scratch.sh(&format!(
        "mknod {n} b 7 0 && echo mknod-ok; head -c 1 {n} >/dev/null && echo open-ok; rm -f {n}",
        n = node.display()
    ));
    let _ = std::fs::remove_file(&node);
    assert_eq!(out, "mknod-ok\n", "stderr: {err}");
    assert!(err.contains("Operation not permitted"), "{err}");
}

/// A child of the test's, killed (by pid) if the test fails before it ends.
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn legacy_v1_limits_freezes_kills_and_removes() {
    // The legacy layout is the hybrid one without its cgroup2 mount: on a host with v1
    // hierarchies, the manager is given only those, so nothing can go through cgroup2.
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return skip("legacy_v1_limits_freezes_kills_and_removes", "needs root");
    }
    let path = format!("/berth-unit-legacy-{}", std::process::id());
    let mut config = super::config_for(Some(std::path::Path::new(&path)), "x", false).unwrap();
    config.dirs.retain(|(h, _)| !h.v2);
    if config.dirs.is_empty() {
        return skip(
            "legacy_v1_limits_freezes_kills_and_removes",
            "no cgroup v1 hierarchy is mounted",
        );
    }
    config.layout = Some(super::Layout::Legacy);
    let manager = super::manager(&config);
    manager.create().unwrap();
    let resources: oci_spec::runtime::LinuxResources =
        serde_json::from_str(r#"{"memory": {"limit": 33554432}, "pids": {"limit": 10}}"#).unwrap();
    manager
        .apply(&resources, &rules_for(None).unwrap())
        .unwrap();
    let memory = config.v1_dir("memory").unwrap();
    let limit = std::fs::read_to_string(memory.join("memory.limit_in_bytes")).unwrap();
    assert_eq!(limit.trim(), "33554432");

    let mut child = Sleeper(Command::new("sleep").arg("1000").spawn().unwrap());
    let pid = child.0.id() as i32;
    manager.add_process(pid).unwrap();
    assert_eq!(manager.pids().unwrap(), vec![pid]);
    manager.freeze().unwrap();
    assert!(manager.is_frozen());
    // No cgroup.kill here: SIGKILL goes pid by pid, and the frozen cgroup is thawed so it lands.
    manager.kill_all(nix::sys::signal::Signal::SIGKILL).unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(!manager.is_frozen());
    manager.remove().unwrap();
    for (_, dir) in &config.dirs {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}
