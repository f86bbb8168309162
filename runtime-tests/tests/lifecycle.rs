//! The lifecycle: run, exit status, create → start → state → kill → delete, and the pid file.

use runtime_tests::{need_root, Env};

#[test]
fn run_prints_and_exits_with_the_status() {
    need_root!();
    let env = Env::new("run-status");
    let id = env.id("echo");
    let bundle = env.bundle(&id, &["/bin/echo", "hello from berth"], |_| {});
    assert_eq!(env.run(&bundle, &id).ok(), "hello from berth\n");
    env.assert_gone(&id);
    let id = env.id("seven");
    let bundle = env.bundle(&id, &["sh", "-c", "exit 7"], |_| {});
    assert_eq!(env.run(&bundle, &id).code, 7);
    env.assert_gone(&id);
}

#[test]
fn create_start_kill_delete_move_through_the_states() {
    need_root!();
    let env = Env::new("states");
    let id = env.id("pause");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    let pid_file = env.scratch.join("pid");
    let b = bundle.to_str().unwrap();
    env.berth(&[
        "create",
        "--bundle",
        b,
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ])
    .ok();
    let state = env.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["ociVersion"], "1.2.1");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["bundle"], b);
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(state["pid"], pid);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

    env.berth(&["start", &id]).ok();
    assert_eq!(env.state(&id)["status"], "running");
    let err = env.berth(&["delete", &id]).fails().to_string();
    assert!(err.contains("that is not stopped: running"), "{err}");

    env.berth(&["kill", &id, "KILL"]).ok();
    let stopped = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        env.state(&id)["status"] == "stopped"
    });
    assert!(stopped, "the container did not stop");
    let err = env.berth(&["kill", &id]).fails().to_string();
    assert!(err.contains("container not running"), "{err}");
    env.berth(&["delete", &id]).ok();
    env.assert_gone(&id);
    let err = env.berth(&["state", &id]).fails().to_string();
    assert_eq!(
        err.trim(),
        format!("berth: container {id:?} does not exist")
    );
}

#[test]
fn features_name_the_versions() {
    need_root!();
    let env = Env::new("features");
    let features: serde_json::Value = serde_json::from_str(env.berth(&["features"]).ok()).unwrap();
    assert_eq!(features["ociVersionMin"], "1.0.0");
    assert_eq!(features["ociVersionMax"], "1.2.1");
}
