//! The lifecycle: run and its exit status and signals, create → start → state → kill → delete
//! with the OCI state at each step, kill and delete in their forms, the pid file, list, and the
//! lock that serialises commands on one container.

use std::path::Path;

use runtime_tests::{drop_namespace, need_root, process_gone, read, wait_until, Env};
use serde_json::Value;

/// Asserts `state` is OCI state JSON for container `id` of `bundle` in `status`.
#[track_caller]
fn assert_oci_state(state: &Value, id: &str, bundle: &Path, status: &str) {
    assert_eq!(state["ociVersion"], "1.3.0", "{state}");
    assert_eq!(state["id"], id, "{state}");
    assert_eq!(state["status"], status, "{state}");
    assert_eq!(state["bundle"], bundle.to_str().unwrap(), "{state}");
    assert!(state["annotations"].is_object(), "{state}");
    let pid = state["pid"].as_i64().expect("pid is a number");
    if status == "stopped" {
        assert_eq!(pid, 0, "a stopped container has no pid: {state}");
    } else {
        assert!(pid > 0, "{state}");
        assert!(
            !process_gone(pid),
            "the init {pid} of a {status} container is gone"
        );
    }
}

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
    // A process that kills itself with SIGTERM (15): without a pid namespace of its own it is
    // not an init, which the kernel would shield from its own signal.
    let id = env.id("term");
    let bundle = env.bundle(&id, &["sh", "-c", "kill -TERM $$; sleep 5"], |c| {
        drop_namespace(c, "pid")
    });
    assert_eq!(env.run(&bundle, &id).code, 128 + 15);
    env.assert_gone(&id);
    env.assert_root_empty();
}

#[test]
fn run_exits_128_plus_the_signal_that_killed_the_container() {
    need_root!();
    let env = Env::new("run-killed");
    let id = env.id("sleep");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    let run = env.spawn(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    run.wait_for_stdout("pausing");
    env.berth(&["kill", &id, "KILL"]).ok();
    let done = run.wait();
    assert_eq!(done.code, 128 + 9, "{}", done.stderr);
    env.assert_gone(&id);
}

#[test]
fn run_forwards_signals_to_the_container() {
    need_root!();
    let env = Env::new("run-forwards");
    let bundle_id = env.id("b");
    let bundle = env.bundle(&bundle_id, &["/bin/helper", "pause"], |_| {});
    for (number, name) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGUSR1, "SIGUSR1"),
    ] {
        let id = env.id(name);
        let run = env.spawn(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
        run.wait_for_stdout("pausing");
        run.signal(number);
        let done = run.wait();
        assert_eq!(done.code, 0, "{}", done.stderr);
        assert_eq!(done.stdout, format!("pausing\n{name}\n"));
        env.assert_gone(&id);
    }
}

#[test]
fn a_foreground_run_can_be_deleted_from_elsewhere() {
    need_root!();
    let env = Env::new("run-delete");
    let id = env.id("fg");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    let run = env.spawn(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    run.wait_for_stdout("pausing");
    assert_eq!(env.state(&id)["status"], "running");
    env.berth(&["delete", "--force", &id]).ok();
    let done = run.wait();
    assert_eq!(done.code, 137, "{}", done.stderr);
    env.assert_gone(&id);
}

#[test]
fn create_start_kill_delete_move_through_the_states() {
    need_root!();
    let env = Env::new("states");
    let id = env.id("pause");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        c["annotations"] = serde_json::json!({"org.example.team": "berth"});
    });
    let pid_file = env.scratch.join("pid");
    let out = env.create(&bundle, &id, &["--pid-file", pid_file.to_str().unwrap()]);
    let state = env.state(&id);
    assert_oci_state(&state, &id, &bundle, "created");
    assert_eq!(state["annotations"]["org.example.team"], "berth");
    let pid: i64 = read(&pid_file).parse().unwrap();
    assert_eq!(state["pid"], pid);
    // The program has not run yet: the init waits for `start`.
    assert_eq!(read(&out), "");

    env.berth(&["start", &id]).ok();
    assert_oci_state(&env.state(&id), &id, &bundle, "running");
    assert_eq!(env.pid(&id), pid, "start keeps the init");
    wait_until("the program to run", || read(&out) == "pausing\n");
    let err = env.berth(&["start", &id]).fails().to_string();
    assert_eq!(
        err.trim(),
        format!("berth: error: cannot start container {id:?}: it is running")
    );
    let err = env.berth(&["delete", &id]).fails().to_string();
    assert_eq!(
        err.trim(),
        format!("berth: error: cannot delete container {id:?} that is not stopped: running")
    );

    env.berth(&["kill", &id, "KILL"]).ok();
    env.wait_for_status(&id, "stopped");
    assert_oci_state(&env.state(&id), &id, &bundle, "stopped");
    assert!(process_gone(pid));
    let err = env.berth(&["kill", &id]).fails().to_string();
    assert_eq!(
        err.trim(),
        format!("berth: error: cannot signal container {id:?}: container not running")
    );
    env.berth(&["delete", &id]).ok();
    env.assert_gone(&id);
    let err = env.berth(&["state", &id]).fails().to_string();
    assert_eq!(
        err.trim(),
        format!("berth: error: container {id:?} does not exist")
    );
}

#[test]
fn a_container_whose_program_exits_is_stopped() {
    need_root!();
    let env = Env::new("exits");
    let id = env.id("exit");
    let bundle = env.bundle(&id, &["sh", "-c", "exit 3"], |_| {});
    env.create(&bundle, &id, &[]);
    let pid = env.pid(&id);
    env.berth(&["start", &id]).ok();
    wait_until("the program to exit", || process_gone(pid));
    assert_oci_state(&env.state(&id), &id, &bundle, "stopped");
    let list: Value = serde_json::from_str(env.berth(&["list", "--format", "json"]).ok()).unwrap();
    assert_eq!(list[0]["status"], "stopped");
    env.berth(&["delete", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn kill_takes_a_number_or_a_name_and_defaults_to_sigterm() {
    need_root!();
    let env = Env::new("kill-signals");
    let bundle_id = env.id("b");
    let bundle = env.bundle(&bundle_id, &["/bin/helper", "pause"], |_| {});
    for (given, expected) in [
        (None, "SIGTERM"),
        (Some("10"), "SIGUSR1"),
        (Some("INT"), "SIGINT"),
        (Some("SIGHUP"), "SIGHUP"),
        (Some("usr1"), "SIGUSR1"),
    ] {
        let id = env.id(&format!("k{}", given.unwrap_or("default").to_lowercase()));
        let out = env.create(&bundle, &id, &[]);
        env.berth(&["start", &id]).ok();
        wait_until("pausing", || read(&out) == "pausing\n");
        let mut args = vec!["kill", id.as_str()];
        args.extend(given);
        env.berth(&args).ok();
        wait_until(expected, || read(&out) == format!("pausing\n{expected}\n"));
        env.wait_for_status(&id, "stopped");
        env.berth(&["delete", &id]).ok();
        env.assert_gone(&id);
    }
}

#[test]
fn kill_with_signal_0_only_asks_whether_the_container_runs() {
    need_root!();
    let env = Env::new("kill-zero");
    let id = env.id("zero");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    let out = env.create(&bundle, &id, &[]);
    env.berth(&["start", &id]).ok();
    wait_until("pausing", || read(&out) == "pausing\n");
    // As kill(2) with 0: nothing is sent, the answer is whether the container may be signalled.
    env.berth(&["kill", &id, "0"]).ok();
    env.berth(&["kill", "--all", &id, "0"]).ok();
    assert_eq!(env.state(&id)["status"], "running");
    assert_eq!(read(&out), "pausing\n");
    env.berth(&["kill", &id, "KILL"]).ok();
    env.wait_for_status(&id, "stopped");
    let stopped = env.berth(&["kill", &id, "0"]);
    assert_eq!(
        stopped.fails(),
        format!("berth: error: cannot signal container {id:?}: container not running\n")
    );
    // --all reaches what is left in the cgroup, which may be nothing: no error.
    env.berth(&["kill", "--all", &id, "0"]).ok();
    env.berth(&["kill", "--all", &id, "KILL"]).ok();
    env.berth(&["delete", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn kill_ends_a_created_container() {
    need_root!();
    let env = Env::new("kill-created");
    let bundle_id = env.id("b");
    let bundle = env.bundle(&bundle_id, &["/bin/helper", "pause"], |_| {});
    // The default signal and another one a program may not catch: the init waiting for `start`
    // is pid 1 of its namespace, which the kernel shields from signals it does not handle.
    for signal in [None, Some("HUP")] {
        let id = env.id(signal.unwrap_or("term"));
        let out = env.create(&bundle, &id, &[]);
        let pid = env.pid(&id);
        let mut args = vec!["kill", id.as_str()];
        args.extend(signal);
        env.berth(&args).ok();
        wait_until("the created container to end", || process_gone(pid));
        assert_eq!(env.state(&id)["status"], "stopped");
        let err = env.berth(&["start", &id]).fails().to_string();
        assert_eq!(
            err.trim(),
            format!("berth: error: cannot start container {id:?}: it is stopped")
        );
        assert_eq!(read(&out), "", "the program must never run");
        env.berth(&["delete", &id]).ok();
        env.assert_gone(&id);
    }
}

#[test]
fn kill_all_signals_every_process_in_the_container() {
    need_root!();
    let env = Env::new("kill-all");
    // Without a pid namespace of its own, the container's other processes outlive its init.
    let args = ["sh", "-c", "sleep 1000 & sleep 1000 & wait"];
    let no_pidns = |c: &mut Value| drop_namespace(c, "pid");
    let one = env.id("one");
    let all = env.id("all");
    let killed = env.id("killed");
    let gone = env.id("gone");
    for id in [&one, &all, &killed, &gone] {
        let bundle = env.bundle(id, &args, no_pidns);
        env.create(&bundle, id, &[]);
        env.berth(&["start", id]).ok();
        wait_until("three processes", || env.cgroup_pids(id).len() == 3);
    }

    // Plain kill reaches the init only.
    let pids = env.cgroup_pids(&one);
    let init = env.pid(&one);
    env.berth(&["kill", &one, "TERM"]).ok();
    env.wait_for_status(&one, "stopped");
    let sleeps: Vec<i64> = pids.into_iter().filter(|&p| p != init).collect();
    assert_eq!(sleeps.len(), 2);
    assert!(
        sleeps.iter().all(|&p| !process_gone(p)),
        "kill reached more than the init"
    );
    // delete removes what is left.
    env.berth(&["delete", &one]).ok();
    assert!(
        sleeps.iter().all(|&p| process_gone(p)),
        "delete left processes"
    );
    env.assert_gone(&one);

    let pids = env.cgroup_pids(&all);
    env.berth(&["kill", "--all", &all, "KILL"]).ok();
    wait_until("every process to die", || {
        pids.iter().all(|&p| process_gone(p))
    });
    env.wait_for_status(&all, "stopped");
    env.berth(&["delete", &all]).ok();
    env.assert_gone(&all);

    // SIGKILL stops the container: without a pid namespace of its own that is every process in
    // it, as in runc (kill.bats, [host pidns]), not the init alone.
    let pids = env.cgroup_pids(&killed);
    env.berth(&["kill", &killed, "KILL"]).ok();
    wait_until("every process to die", || {
        pids.iter().all(|&p| process_gone(p))
    });
    env.wait_for_status(&killed, "stopped");
    env.berth(&["delete", &killed]).ok();
    env.assert_gone(&killed);

    // So also once the init is gone, and the container is called stopped: SIGKILL still ends
    // what it left behind (kill.bats, [host pidns + init gone]).
    let pids = env.cgroup_pids(&gone);
    env.berth(&["kill", &gone, "TERM"]).ok();
    env.wait_for_status(&gone, "stopped");
    assert!(pids.iter().any(|&p| !process_gone(p)));
    env.berth(&["kill", &gone, "KILL"]).ok();
    wait_until("every process to die", || {
        pids.iter().all(|&p| process_gone(p))
    });
    env.berth(&["delete", &gone]).ok();
    env.assert_gone(&gone);
}

#[test]
fn delete_removes_created_containers_and_force_removes_running_ones() {
    need_root!();
    let env = Env::new("delete");
    let created = env.id("created");
    let bundle = env.bundle(&created, &["/bin/helper", "pause"], |_| {});
    let out = env.create(&bundle, &created, &[]);
    let pid = env.pid(&created);
    env.berth(&["delete", &created]).ok();
    assert!(process_gone(pid));
    env.assert_gone(&created);
    assert_eq!(
        read(&out),
        "",
        "the program of a created container must never run"
    );

    let running = env.id("running");
    let bundle = env.bundle(&running, &["/bin/helper", "pause"], |_| {});
    env.berth(&[
        "run",
        "--detach",
        "--bundle",
        bundle.to_str().unwrap(),
        &running,
    ])
    .ok();
    let pid = env.pid(&running);
    assert_eq!(env.state(&running)["status"], "running");
    env.berth(&["delete", "--force", &running]).ok();
    assert!(process_gone(pid));
    env.assert_gone(&running);
    // --force on a container that does not exist is not an error (containerd relies on it).
    env.berth(&["delete", "--force", &running]).ok();
    env.assert_root_empty();
}

#[test]
fn run_detach_writes_the_pid_file() {
    need_root!();
    let env = Env::new("pid-file");
    let id = env.id("detached");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    let pid_file = env.scratch.join("sub-pid");
    let b = bundle.to_str().unwrap();
    env.berth(&[
        "run",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "-b",
        b,
        &id,
    ])
    .ok();
    let pid: i64 = read(&pid_file)
        .parse()
        .expect("the pid file holds a number");
    assert_eq!(env.pid(&id), pid);
    // The init is the program itself, seen from the host.
    let cmdline = read(Path::new(&format!("/proc/{pid}/cmdline")));
    assert_eq!(cmdline, "/bin/helper\0pause\0");
    env.berth(&["delete", "-f", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn list_shows_a_table_and_json() {
    need_root!();
    let env = Env::new("list");
    assert_eq!(
        env.berth(&["list"]).ok(),
        "ID   PID   STATUS   BUNDLE   CREATED   OWNER\n"
    );
    assert_eq!(env.berth(&["list", "--format", "json"]).ok().trim(), "[]");
    let a = env.id("a");
    let b = env.id("b");
    let bundle_a = env.bundle(&a, &["/bin/helper", "pause"], |_| {});
    let bundle_b = env.bundle(&b, &["/bin/helper", "pause"], |_| {});
    env.create(&bundle_a, &a, &[]);
    env.create(&bundle_b, &b, &[]);
    env.berth(&["start", &b]).ok();

    let table = env.berth(&["list"]).ok().to_string();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    );
    let pid_a = env.pid(&a).to_string();
    let pid_b = env.pid(&b).to_string();
    assert_eq!(
        rows[1][..4],
        [a.as_str(), &pid_a, "created", bundle_a.to_str().unwrap()]
    );
    assert_eq!(
        rows[2][..4],
        [b.as_str(), &pid_b, "running", bundle_b.to_str().unwrap()]
    );
    assert_eq!(rows[1][5], "root");
    // The columns line up under their headers.
    let status_column = table.lines().next().unwrap().find("STATUS").unwrap();
    for line in table.lines().skip(1) {
        assert!(
            line[status_column..].starts_with("created")
                || line[status_column..].starts_with("running"),
            "{table}"
        );
    }

    let json: Value = serde_json::from_str(env.berth(&["list", "-f", "json"]).ok()).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], a.as_str());
    assert_eq!(list[0]["status"], "created");
    assert_eq!(list[1]["id"], b.as_str());
    assert_eq!(list[1]["status"], "running");
    assert_eq!(list[1]["pid"].to_string(), pid_b);
    assert_eq!(env.berth(&["list", "-q"]).ok(), format!("{a}\n{b}\n"));
}

#[test]
fn two_starts_at_once_start_the_container_once() {
    need_root!();
    let env = Env::new("lock");
    let bundle_id = env.id("b");
    let bundle = env.bundle(&bundle_id, &["/bin/helper", "pause"], |_| {});
    // A race can go either way; a few rounds give the lock several chances to be missed.
    for round in 0..4 {
        let id = env.id(&format!("r{round}"));
        let out = env.create(&bundle, &id, &[]);
        let first = env.spawn(&["start", &id]);
        let second = env.spawn(&["start", &id]);
        let (first, second) = (first.wait(), second.wait());
        let mut codes = [first.code, second.code];
        codes.sort();
        assert_eq!(codes, [0, 1], "exactly one start succeeds");
        let failed = if first.code == 1 { &first } else { &second };
        assert_eq!(
            failed.stderr.trim(),
            format!("berth: error: cannot start container {id:?}: it is running")
        );
        wait_until("the program to run", || read(&out) == "pausing\n");
        env.berth(&["delete", "--force", &id]).ok();
        env.assert_gone(&id);
    }
}

#[test]
fn features_name_the_versions() {
    need_root!();
    let env = Env::new("features");
    let features: Value = serde_json::from_str(env.berth(&["features"]).ok()).unwrap();
    assert_eq!(features["ociVersionMin"], "1.0.0");
    assert_eq!(features["ociVersionMax"], "1.3.0");
}
