//! Cgroups: limits that hold (OOM kill, fork bomb), limits in the cgroup's files, pause and
//! resume, update, ps, events, kill --all, device rules, cgroupsPath placement, and no cgroup
//! left behind. The same tests run on the hybrid host and, through scripts/test-cgroup-v2, on
//! pure cgroup v2; where a layout's file names differ, the tests look for either.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use runtime_tests::{cgroup_dirs, need_root, run_to_files, skip, systemd_cgroup, Env};
use serde_json::{json, Value};

/// Whether this host's only cgroup hierarchy is cgroup2.
fn unified_only() -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    !mountinfo.lines().any(|l| {
        l.split(" - ")
            .nth(1)
            .is_some_and(|r| r.starts_with("cgroup "))
    })
}

/// The first of `names` that exists in one of the container's cgroup directories.
fn cgroup_file(env: &Env, id: &str, names: &[&str]) -> Option<PathBuf> {
    let dirs = cgroup_dirs(&env.cgroup_path(id));
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|path| path.exists())
}

/// The content of the first of `names` in the container's cgroup, trimmed.
#[track_caller]
fn cgroup_value(env: &Env, id: &str, names: &[&str]) -> String {
    let path = cgroup_file(env, id, names)
        .unwrap_or_else(|| panic!("none of {names:?} in the cgroup of {id}"));
    std::fs::read_to_string(&path).unwrap().trim().to_string()
}

/// The container's CPU time so far, in microseconds.
fn cpu_usage_us(env: &Env, id: &str) -> u64 {
    let path = cgroup_file(env, id, &["cpuacct.usage", "cpu.stat"]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    if path.ends_with("cpuacct.usage") {
        text.trim().parse::<u64>().unwrap() / 1000
    } else {
        text.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .unwrap()
            .parse()
            .unwrap()
    }
}

fn run_detached(env: &Env, bundle: &Path, id: &str) {
    env.berth(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), id])
        .ok();
}

/// Polls `done` every 10 ms for up to `secs` seconds.
fn eventually(secs: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

fn wait_stopped(env: &Env, id: &str) {
    assert!(
        eventually(20, || env.state(id)["status"] == "stopped"),
        "{id} did not stop"
    );
}

/// A read-write host folder at /tmp in the container (the shared root filesystem is read-only).
fn with_tmp(config: &mut Value, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/tmp", "type": "bind", "source": dir, "options": ["rbind", "rw"]
    }));
}

#[test]
fn a_container_limited_to_32_mib_is_oom_killed_when_it_allocates_64() {
    need_root!();
    let env = Env::new("oom");
    let id = env.id("hog");
    let bundle = env.bundle(&id, &["/bin/helper", "alloc", "64"], |c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 33554432});
    });
    let run = env.run(&bundle, &id);
    assert_eq!(
        run.code, 137,
        "stdout: {} stderr: {}",
        run.stdout, run.stderr
    );
    assert!(!run.stdout.contains("allocated"), "{}", run.stdout);
    env.assert_gone(&id);

    // Under the same limit a smaller allocation succeeds, and the limit is in the cgroup.
    let id = env.id("small");
    let bundle = env.bundle(&id, &["/bin/helper", "alloc", "8"], |c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 33554432});
    });
    assert_eq!(env.run(&bundle, &id).ok(), "allocated 8\n");
    env.assert_gone(&id);
}

#[test]
fn the_memory_limit_is_in_the_cgroup_files() {
    need_root!();
    let env = Env::new("memfiles");
    let id = env.id("mem");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 33554432, "reservation": 16777216});
    });
    run_detached(&env, &bundle, &id);
    assert_eq!(
        cgroup_value(&env, &id, &["memory.max", "memory.limit_in_bytes"]),
        "33554432"
    );
    assert_eq!(
        cgroup_value(&env, &id, &["memory.low", "memory.soft_limit_in_bytes"]),
        "16777216"
    );
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn swap_and_the_v1_memory_settings_land_or_are_said_to_be_ignored() {
    need_root!();
    let env = Env::new("swap");
    let id = env.id("swap");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        c["linux"]["resources"]["memory"] = json!({
            "limit": 33554432, "swap": 67108864, "swappiness": 10,
            "disableOOMKiller": true, "kernelTCP": 16777216, "kernel": 50593792
        });
    });
    let run = env.berth(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), &id]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    if unified_only() {
        // memory.swap.max holds swap alone: 64 MiB of memory plus swap, less 32 MiB of memory.
        assert_eq!(cgroup_value(&env, &id, &["memory.swap.max"]), "33554432");
        for name in ["swappiness", "disableOOMKiller", "kernelTCP", "kernel"] {
            let warning = format!("linux.resources.memory.{name} is ignored: cgroup v2 has no");
            assert!(run.stderr.contains(&warning), "{}", run.stderr);
        }
    } else {
        assert_eq!(
            cgroup_value(&env, &id, &["memory.memsw.limit_in_bytes"]),
            "67108864"
        );
        assert_eq!(cgroup_value(&env, &id, &["memory.swappiness"]), "10");
        let oom = cgroup_value(&env, &id, &["memory.oom_control"]);
        assert!(oom.starts_with("oom_kill_disable 1\n"), "{oom}");
        assert_eq!(
            cgroup_value(&env, &id, &["memory.kmem.tcp.limit_in_bytes"]),
            "16777216"
        );
        // Newer kernels take a write to memory.kmem.limit_in_bytes and keep no limit: berth
        // must then say so rather than report success.
        let kmem = cgroup_value(&env, &id, &["memory.kmem.limit_in_bytes"]);
        let ignored =
            "linux.resources.memory.kernel is ignored: this kernel keeps no kernel memory limit";
        if kmem == "50593792" {
            assert!(!run.stderr.contains(ignored), "{}", run.stderr);
        } else {
            assert!(run.stderr.contains(ignored), "kmem {kmem}: {}", run.stderr);
        }
    }
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn a_pids_limit_of_10_stops_a_fork_bomb() {
    need_root!();
    let env = Env::new("pids");
    let id = env.id("bomb");
    let bundle = env.bundle(&id, &["/bin/helper", "fork", "50"], |c| {
        c["linux"]["resources"]["pids"] = json!({"limit": 10});
    });
    let run = env.run(&bundle, &id);
    // The helper is one of the ten.
    assert_eq!(run.stdout.trim(), "forked=9 error=EAGAIN", "{}", run.stderr);
    assert_ne!(run.code, 0);
    env.assert_gone(&id);
}

#[test]
fn the_cpu_quota_shares_and_cpuset_show_in_the_cgroup_files() {
    need_root!();
    let env = Env::new("cpu");
    let id = env.id("cpu");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        c["linux"]["resources"]["cpu"] =
            json!({"quota": 50000, "period": 100000, "shares": 512, "cpus": "0", "mems": "0"});
    });
    run_detached(&env, &bundle, &id);
    if unified_only() {
        assert_eq!(cgroup_value(&env, &id, &["cpu.max"]), "50000 100000");
        // shares 512 on cpu.weight's scale: 1 + (512 - 2) * 9999 / 262142
        assert_eq!(cgroup_value(&env, &id, &["cpu.weight"]), "20");
    } else {
        assert_eq!(cgroup_value(&env, &id, &["cpu.cfs_quota_us"]), "50000");
        assert_eq!(cgroup_value(&env, &id, &["cpu.cfs_period_us"]), "100000");
        assert_eq!(cgroup_value(&env, &id, &["cpu.shares"]), "512");
    }
    assert_eq!(cgroup_value(&env, &id, &["cpuset.cpus"]), "0");
    assert_eq!(cgroup_value(&env, &id, &["cpuset.mems"]), "0");
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn pause_freezes_and_resume_thaws() {
    need_root!();
    let env = Env::new("pause");
    let id = env.id("busy");
    let bundle = env.bundle(&id, &["sh", "-c", "while :; do :; done"], |_| {});
    run_detached(&env, &bundle, &id);
    assert!(eventually(10, || cpu_usage_us(&env, &id) > 0));

    env.berth(&["pause", &id]).ok();
    assert_eq!(env.state(&id)["status"], "paused");
    let list: Value = serde_json::from_str(env.berth(&["list", "--format", "json"]).ok()).unwrap();
    assert_eq!(list[0]["status"], "paused", "{list}");
    let frozen = cgroup_value(&env, &id, &["freezer.state", "cgroup.freeze"]);
    assert!(frozen == "FROZEN" || frozen == "1", "{frozen}");
    let before = cpu_usage_us(&env, &id);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cpu_usage_us(&env, &id), before, "a paused container ran");
    let err = env.berth(&["pause", &id]).fails().to_string();
    assert!(
        err.contains("cannot pause container") && err.contains("it is paused"),
        "{err}"
    );

    env.berth(&["resume", &id]).ok();
    assert_eq!(env.state(&id)["status"], "running");
    let resumed = cpu_usage_us(&env, &id);
    assert!(
        eventually(10, || cpu_usage_us(&env, &id) > resumed),
        "a resumed container did not run"
    );
    let err = env.berth(&["resume", &id]).fails().to_string();
    assert!(err.contains("it is running"), "{err}");

    // A paused container can be deleted by force: its processes are killed, not left frozen.
    env.berth(&["pause", &id]).ok();
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
}

/// A `berth run` in the foreground that the test started: killed if the test fails, so the
/// container's lock is freed for the clean-up's `delete --force`.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn update_changes_the_limits_of_a_running_container() {
    need_root!();
    let env = Env::new("update");
    let id = env.id("grow");
    let tmp = env.scratch.join("tmp-grow");
    // The container waits for /tmp/go, then allocates 48 MiB: more than it may at first.
    let script = "until [ -e /tmp/go ]; do sleep 0.05; done; exec /bin/helper alloc 48";
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 33554432});
        c["linux"]["resources"]["pids"] = json!({"limit": 10});
        with_tmp(c, &tmp);
    });
    let out = env.scratch.join("grow.out");
    let mut runner = KillOnDrop(
        env.berth_command(&["run", "--bundle", bundle.to_str().unwrap(), &id])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let limit = ["memory.max", "memory.limit_in_bytes"];
    assert!(eventually(20, || cgroup_file(&env, &id, &limit).is_some()
        && env.berth(&["state", &id]).stdout.contains("running")));
    assert_eq!(cgroup_value(&env, &id, &limit), "33554432");

    env.berth(&["update", "--memory", "64m", "--pids-limit", "20", &id])
        .ok();
    assert_eq!(cgroup_value(&env, &id, &limit), "67108864");
    assert_eq!(cgroup_value(&env, &id, &["pids.max"]), "20");

    // What containerd and Docker send: LinuxResources JSON on stdin.
    let resources =
        json!({"memory": {"limit": 100663296}, "cpu": {"quota": 20000, "period": 100000}});
    let mut update = env
        .berth_command(&["update", "--resources", "-", &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    update
        .stdin
        .take()
        .unwrap()
        .write_all(resources.to_string().as_bytes())
        .unwrap();
    let done = update.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(cgroup_value(&env, &id, &limit), "100663296");
    let quota = cgroup_value(&env, &id, &["cpu.max", "cpu.cfs_quota_us"]);
    assert!(quota == "20000 100000" || quota == "20000", "{quota}");

    // The allocation the first limit would have killed now succeeds.
    std::fs::write(tmp.join("go"), "").unwrap();
    let status = runner.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "allocated 48\n");
    env.assert_gone(&id);

    // Bad values are refused with the field named; a container that is gone cannot be updated.
    let err = env
        .berth(&["update", "--memory", "lots", &id])
        .fails()
        .to_string();
    assert!(err.contains("\"lots\" is not a valid size"), "{err}");
    let err = env
        .berth(&["update", "--memory", "64m", &id])
        .fails()
        .to_string();
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn ps_lists_the_containers_pids() {
    need_root!();
    let env = Env::new("ps");
    let id = env.id("two");
    let bundle = env.bundle(
        &id,
        &["sh", "-c", "/bin/helper pause & exec /bin/helper pause"],
        |_| {},
    );
    run_detached(&env, &bundle, &id);
    let init = env.state(&id)["pid"].as_i64().unwrap();
    let mut pids: Vec<i64> = Vec::new();
    // Both are there once each runs the helper: sh's background child is briefly a forked sh.
    let runs_helper = |pid: &i64| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).starts_with("/bin/helper")
    };
    assert!(eventually(10, || {
        pids = serde_json::from_str(env.berth(&["ps", "--format", "json", &id]).ok()).unwrap();
        pids.len() == 2 && pids.iter().all(runs_helper)
    }));
    assert!(pids.contains(&init), "{pids:?} lacks the init {init}");
    let table = env.berth(&["ps", &id]).ok().to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("PID") && lines[0].contains("CMD"),
        "{table}"
    );
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1..].iter().all(|l| l.contains("/bin/helper pause")),
        "{table}"
    );
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn events_stats_prints_memory_use_in_runcs_shape() {
    need_root!();
    let env = Env::new("events");
    let id = env.id("stats");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 33554432});
        c["linux"]["resources"]["pids"] = json!({"limit": 10});
    });
    run_detached(&env, &bundle, &id);
    let out = env.berth(&["events", "--stats", &id]).ok().to_string();
    // In runc's order: readers (runc's events.bats among them) match the line's beginning.
    let start = format!("{{\"type\":\"stats\",\"id\":\"{id}\",\"data\":{{");
    assert!(out.starts_with(&start), "{out}");
    let event: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], id.as_str());
    let memory = &event["data"]["memory"];
    assert_eq!(memory["usage"]["limit"], 33554432, "{event}");
    let usage = memory["usage"]["usage"].as_u64().unwrap();
    assert!(usage > 0 && usage < 33554432, "{event}");
    assert!(
        memory["raw"].as_object().is_some_and(|r| !r.is_empty()),
        "{event}"
    );
    assert_eq!(event["data"]["pids"], json!({"current": 1, "limit": 10}));
    assert!(event["data"]["cpu"]["usage"]["total"].as_u64().unwrap() > 0);
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);

    let err = env.berth(&["events", "--stats", &id]).fails().to_string();
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn events_streams_stats_and_reports_an_oom_kill() {
    need_root!();
    let env = Env::new("oomevent");
    let id = env.id("oom");
    let bundle = env.bundle(
        &id,
        &["sh", "-c", "sleep 1; exec /bin/helper alloc 64"],
        |c| c["linux"]["resources"]["memory"] = json!({"limit": 33554432}),
    );
    run_detached(&env, &bundle, &id);
    let mut events = env.berth_command(&["events", "--interval", "200ms", &id]);
    let run = run_to_files(&mut events, &env.scratch);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let events: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events.iter().any(|e| e["type"] == "stats"),
        "{}",
        run.stdout
    );
    assert!(
        events.contains(&json!({"type": "oom", "id": id})),
        "{}",
        run.stdout
    );
    wait_stopped(&env, &id);
    env.berth(&["delete", &id]).ok();
    env.assert_gone(&id);
}

/// The host's pid, network and uts namespaces: the init's death does not end its children.
fn only_a_mount_namespace(config: &mut Value) {
    config["linux"]["namespaces"] = json!([{"type": "mount"}]);
    config.as_object_mut().unwrap().remove("hostname");
}

#[test]
fn kill_all_reaches_processes_the_init_leaves_behind() {
    need_root!();
    let env = Env::new("killall");
    let id = env.id("orphans");
    // No pid namespace: the init's death would not end its children.
    let bundle = env.bundle(
        &id,
        &[
            "sh",
            "-c",
            "/bin/helper pause & /bin/helper pause & exec /bin/helper pause",
        ],
        only_a_mount_namespace,
    );
    run_detached(&env, &bundle, &id);
    let ps = |env: &Env, id: &str| -> Vec<i64> {
        serde_json::from_str(env.berth(&["ps", "--format", "json", id]).ok()).unwrap()
    };
    assert!(eventually(10, || ps(&env, &id).len() == 3));
    env.berth(&["kill", "--all", &id, "KILL"]).ok();
    assert!(
        eventually(10, || ps(&env, &id).is_empty()),
        "{:?}",
        ps(&env, &id)
    );
    wait_stopped(&env, &id);
    env.berth(&["delete", &id]).ok();
    env.assert_gone(&id);

    // delete --force does the same for a running container.
    let id = env.id("forced");
    let bundle = env.bundle(
        &id,
        &["sh", "-c", "/bin/helper pause & exec /bin/helper pause"],
        only_a_mount_namespace,
    );
    run_detached(&env, &bundle, &id);
    let mut pids = Vec::new();
    assert!(eventually(10, || {
        pids = ps(&env, &id);
        pids.len() == 2
    }));
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    for pid in pids {
        // Dead, or a zombie its new parent has yet to reap.
        let gone = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
                stat.rsplit(") ").next().unwrap().starts_with('Z')
            })
        };
        assert!(eventually(5, gone), "{pid} survived");
    }
}

#[test]
fn a_v1_cpuset_below_an_empty_parent_gets_the_cpus_and_mems_from_above() {
    need_root!();
    if unified_only() {
        return skip(
            "an empty v1 cpuset parent",
            "this host has no cgroup v1 cpuset",
        );
    }
    let env = Env::new("cpuset-pod");
    // A pod's cgroup made by someone else with mkdir: its cpuset is empty, and so would be the
    // container's below it, which then takes no process (ENOSPC); runc fills both from above.
    let pod = env.id("pod");
    let cpuset = PathBuf::from("/sys/fs/cgroup/cpuset/berth-tests").join(&pod);
    std::fs::create_dir_all(&cpuset).unwrap();
    assert_eq!(
        std::fs::read_to_string(cpuset.join("cpuset.cpus"))
            .unwrap()
            .trim(),
        ""
    );
    let id = env.id("in-pod");
    let bundle = env.bundle(&id, &["/bin/helper", "true"], |c| {
        c["linux"]["cgroupsPath"] = json!(format!("/berth-tests/{pod}/{id}"));
    });
    let run = env.run(&bundle, &id);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let host = std::fs::read_to_string("/sys/fs/cgroup/cpuset/cpuset.cpus").unwrap();
    assert_eq!(
        std::fs::read_to_string(cpuset.join("cpuset.cpus")).unwrap(),
        host
    );
    env.assert_gone(&id);
}

/// A cgroup of the test's own at the top of every hierarchy, removed (with what berth made
/// below it) on drop.
struct TopCgroup(String);

impl Drop for TopCgroup {
    fn drop(&mut self) {
        for dir in cgroup_dirs(&self.0) {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

#[test]
fn realtime_period_and_runtime_change_in_whichever_order_the_kernel_takes() {
    need_root!();
    let rt = Path::new("/sys/fs/cgroup/cpu/cpu.rt_period_us");
    if unified_only() || !rt.exists() || systemd_cgroup() {
        return skip(
            "realtime cpu limits",
            "no v1 cpu.rt_period_us here (or a systemd scope)",
        );
    }
    let env = Env::new("cpu-rt");
    // The realtime budget comes down from the root: a parent of the test's own holds some.
    let top = TopCgroup(format!("/berth-rt-{}", env.name));
    let parent = PathBuf::from("/sys/fs/cgroup/cpu").join(top.0.trim_start_matches('/'));
    std::fs::create_dir(&parent).unwrap();
    if let Err(err) = std::fs::write(parent.join("cpu.rt_runtime_us"), "500000") {
        // The root's budget (950 ms a second) is all given to other cgroups just now.
        return skip(
            "realtime cpu limits",
            &format!("no realtime budget left: {err}"),
        );
    }
    let id = env.id("rt");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        c["linux"]["cgroupsPath"] = json!(format!("{}/{id}", top.0));
        c["linux"]["resources"]["cpu"] =
            json!({"realtimePeriod": 1000000, "realtimeRuntime": 300000});
    });
    run_detached(&env, &bundle, &id);
    let dir = parent.join(&id);
    let value = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(
        (value("cpu.rt_period_us"), value("cpu.rt_runtime_us")),
        ("1000000".into(), "300000".into())
    );
    // A period below the runtime in place: the runtime has to go first (runc issue 4094).
    env.berth(&[
        "update",
        "--cpu-rt-period",
        "10000",
        "--cpu-rt-runtime",
        "3000",
        &id,
    ])
    .ok();
    assert_eq!(
        (value("cpu.rt_period_us"), value("cpu.rt_runtime_us")),
        ("10000".into(), "3000".into())
    );
    env.berth(&[
        "update",
        "--cpu-rt-period",
        "100000",
        "--cpu-rt-runtime",
        "20000",
        &id,
    ])
    .ok();
    assert_eq!(
        (value("cpu.rt_period_us"), value("cpu.rt_runtime_us")),
        ("100000".into(), "20000".into())
    );
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn a_cgroup_that_holds_processes_or_is_frozen_is_refused() {
    need_root!();
    let env = Env::new("cgroup-in-use");
    // A second container in the first one's cgroup: refused, and the first runs on (a failed
    // create's clean-up must not end what was there).
    let first = env.id("first");
    let bundle = env.bundle(&first, &["/bin/helper", "pause"], |_| {});
    run_detached(&env, &bundle, &first);
    let path = env.cgroup_path(&first);
    let second = env.id("second");
    let bundle = env.bundle(&second, &["true"], |c| {
        c["linux"]["cgroupsPath"] = json!(path);
    });
    let err = env.run(&bundle, &second).fails().to_string();
    assert!(
        err.contains("already holds 1 process(es): a container's cgroup must be its own"),
        "{err}"
    );
    env.assert_gone(&second);
    assert_eq!(env.state(&first)["status"], "running");
    env.berth(&["delete", "--force", &first]).ok();
    env.assert_gone(&first);

    // A frozen one: refused at once, where the init would freeze as it entered.
    if runtime_tests::systemd_cgroup() {
        return skip(
            "a frozen cgroup",
            "a systemd scope is made by systemd, never found frozen",
        );
    }
    let third = env.id("frozen");
    let dirs = runtime_tests::cgroup_dirs(&env.cgroup_path(&third));
    let freezer = dirs
        .iter()
        .find(|d| d.to_string_lossy().contains("/freezer/"))
        .map(|d| (d.clone(), "freezer.state", "FROZEN"))
        .or_else(|| {
            let unified = dirs.iter().find(|d| {
                d.parent()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .join("cgroup.controllers")
                    .exists()
            })?;
            Some((unified.clone(), "cgroup.freeze", "1"))
        })
        .expect("a freezer");
    std::fs::create_dir_all(&freezer.0).unwrap();
    std::fs::write(freezer.0.join(freezer.1), freezer.2).unwrap();
    let bundle = env.bundle(&third, &["true"], |_| {});
    let err = env.run(&bundle, &third).fails().to_string();
    assert!(
        err.contains("is frozen: the container's processes would freeze as they enter it"),
        "{err}"
    );
    std::fs::remove_dir(&freezer.0).unwrap();
    env.assert_gone(&third);
}

#[test]
fn a_linux_devices_node_is_used_only_as_the_device_rules_allow() {
    need_root!();
    let env = Env::new("devices-node");
    // As under runc: linux.devices makes the node, linux.resources.devices decides (engines send
    // an allow rule beside each device they add). An unbound loop device opens when allowed.
    let script = "true </dev/loop-probe 2>&- && echo opened || echo refused";
    let node = json!([{"path": "/dev/loop-probe", "type": "b", "major": 7, "minor": 0}]);
    let id = env.id("deny");
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        c["linux"]["devices"] = node.clone();
    });
    let run = env.run(&bundle, &id);
    assert_eq!(run.stdout, "refused\n", "{}", run.stderr);
    let id = env.id("allow");
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        c["linux"]["devices"] = node.clone();
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "b", "major": 7, "minor": 0, "access": "rw"}));
    });
    let run = env.run(&bundle, &id);
    assert_eq!(run.stdout, "opened\n", "{}", run.stderr);
    env.assert_gone(&id);
}

#[test]
fn device_rules_let_mknod_through_but_not_opening_a_disk() {
    need_root!();
    let env = Env::new("devices");
    // The node goes in the container's /dev, a tmpfs that allows device nodes.
    let probe = ["/bin/helper", "mknod-open", "/dev/disk-probe", "7", "0"];
    let with_mknod = |c: &mut Value| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_MKNOD"));
        }
    };
    let id = env.id("deny");
    let bundle = env.bundle(&id, &probe, with_mknod);
    let run = env.run(&bundle, &id);
    assert_eq!(run.stdout, "mknod ok\nopen EPERM\n", "{}", run.stderr);
    env.assert_gone(&id);

    // Allowed by a rule, the same open gets past the cgroup (the device may still be absent).
    let id = env.id("allow");
    let bundle = env.bundle(&id, &probe, |c| {
        with_mknod(c);
        c["linux"]["resources"]["devices"]
            .as_array_mut()
            .unwrap()
            .push(json!({"allow": true, "type": "b", "major": 7, "minor": 0, "access": "rwm"}));
    });
    let run = env.run(&bundle, &id);
    assert!(run.stdout.starts_with("mknod ok\nopen "), "{}", run.stderr);
    assert!(!run.stdout.contains("EPERM"), "{}", run.stdout);
    env.assert_gone(&id);

    // The default devices stay usable: /dev/null and /dev/zero.
    let id = env.id("null");
    let bundle = env.bundle(
        &id,
        &[
            "sh",
            "-c",
            "head -c 3 /dev/zero | wc -c && echo ok > /dev/null && echo fine",
        ],
        |_| {},
    );
    assert_eq!(env.run(&bundle, &id).ok(), "3\nfine\n");
    env.assert_gone(&id);
}

#[test]
fn hugetlb_and_unified_keys_land_in_the_cgroup() {
    need_root!();
    if !Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() {
        skip(
            "hugetlb_and_unified_keys_land_in_the_cgroup",
            "no 2 MiB huge pages",
        );
        return;
    }
    let env = Env::new("hugetlb");
    let id = env.id("huge");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        c["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 4194304}]);
        c["linux"]["resources"]["unified"] = json!({"cgroup.max.descendants": "5"});
    });
    run_detached(&env, &bundle, &id);
    assert_eq!(
        cgroup_value(
            &env,
            &id,
            &["hugetlb.2MB.limit_in_bytes", "hugetlb.2MB.max"]
        ),
        "4194304"
    );
    assert_eq!(cgroup_value(&env, &id, &["cgroup.max.descendants"]), "5");
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);

    let id = env.id("badsize");
    let bundle = env.bundle(&id, &["/bin/true"], |c| {
        c["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "3MB", "limit": 4194304}]);
    });
    let err = env.run(&bundle, &id).fails().to_string();
    assert!(
        err.contains(
            "linux.resources.hugepageLimits: page size \"3MB\" is not one of this host's: "
        ),
        "{err}"
    );
    env.assert_gone(&id);
}

#[test]
fn block_io_weight_and_throttles_land_in_the_cgroup() {
    need_root!();
    // A whole disk to throttle, not a loop or RAM device; the VM has none at all.
    let disk = std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !["loop", "zram", "ram"].iter().any(|p| name.starts_with(p))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
        .map(|d| d.trim().to_string())
        .next();
    let env = Env::new("blkio");
    let id = env.id("io");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        let mut io = json!({"weight": 500});
        if let Some(disk) = &disk {
            let (major, minor) = disk.split_once(':').unwrap();
            let (major, minor): (i64, i64) = (major.parse().unwrap(), minor.parse().unwrap());
            io["throttleReadBpsDevice"] =
                json!([{"major": major, "minor": minor, "rate": 1048576}]);
        }
        c["linux"]["resources"]["blockIO"] = io;
    });
    let run = env.berth(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), &id]);
    if run.code != 0 {
        // Without an I/O scheduler that weighs cgroups there is no weight file: a clear error.
        assert!(
            run.stderr
                .contains("linux.resources.blockIO.weight needs the"),
            "{}",
            run.stderr
        );
        env.assert_gone(&id);
        skip("block_io weight", run.stderr.trim());
        return;
    }
    let weight = cgroup_value(
        &env,
        &id,
        &[
            "blkio.weight",
            "blkio.bfq.weight",
            "io.bfq.weight",
            "io.weight",
        ],
    );
    // 500 on blkio's scale, or 4950 on io.weight's (1 + (500 - 10) * 9999 / 990).
    assert!(
        ["500", "default 500", "default 4950"].contains(&weight.as_str()),
        "{weight}"
    );
    match &disk {
        Some(disk) => {
            let throttle = cgroup_value(&env, &id, &["blkio.throttle.read_bps_device", "io.max"]);
            assert!(throttle.starts_with(&format!("{disk} ")), "{throttle}");
            assert!(throttle.contains("1048576"), "{throttle}");
        }
        None => skip("block_io throttles", "this machine has no block device"),
    }
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn bad_resources_are_refused_and_leave_nothing() {
    need_root!();
    let env = Env::new("badres");
    let cases = [
        (
            json!({"memory": {"limit": -5}}),
            "linux.resources.memory.limit: -5",
        ),
        (
            json!({"memory": {"limit": 33554432, "swap": 16777216}}),
            "linux.resources.memory.swap: 16777216 is below the memory limit 33554432",
        ),
        (
            json!({"cpu": {"quota": 10}}),
            "linux.resources.cpu.quota: 10 is below",
        ),
        (
            json!({"devices": [{"allow": true, "access": "rwx"}]}),
            "linux.resources.devices[0]: access \"rwx\"",
        ),
    ];
    for (n, (resources, expected)) in cases.into_iter().enumerate() {
        let id = env.id(&format!("bad{n}"));
        let bundle = env.bundle(&id, &["/bin/true"], |c| c["linux"]["resources"] = resources);
        let err = env.run(&bundle, &id).fails().to_string();
        assert!(err.contains(expected), "{err}");
        env.assert_gone(&id);
    }
    // Real-time CPU time has no v2 file.
    if unified_only() {
        let id = env.id("rt");
        let bundle = env.bundle(&id, &["/bin/true"], |c| {
            c["linux"]["resources"]["cpu"] =
                json!({"realtimeRuntime": 1000, "realtimePeriod": 10000})
        });
        let err = env.run(&bundle, &id).fails().to_string();
        assert!(
            err.contains("linux.resources.cpu.realtimeRuntime is not supported on this host's cgroup layout (cgroup v2)"),
            "{err}"
        );
        env.assert_gone(&id);
    }
    // A key of a controller the cgroup2 directory lacks: on the hybrid host memory is v1's.
    if !unified_only() {
        let id = env.id("nokey");
        let bundle = env.bundle(&id, &["/bin/true"], |c| {
            c["linux"]["resources"]["unified"] = json!({"memory.high": "1000000"})
        });
        let err = env.run(&bundle, &id).fails().to_string();
        assert!(
            err.contains(
                "linux.resources.unified[\"memory.high\"] needs the memory cgroup controller"
            ),
            "{err}"
        );
        env.assert_gone(&id);
    }
}

/// The cgroup paths of a process, one per hierarchy line of /proc/PID/cgroup.
fn cgroups_of(pid: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
        .collect()
}

#[test]
fn relative_and_missing_cgroups_paths_land_under_the_parent_of_berths_cgroup() {
    need_root!();
    if systemd_cgroup() {
        let why = "cgroupsPath is slice:prefix:name with --systemd-cgroup";
        skip(
            "relative_and_missing_cgroups_paths_land_under_the_parent_of_berths_cgroup",
            why,
        );
        return;
    }
    let env = Env::new("relpath");
    let own = cgroups_of("self");
    let id = env.id("rel");
    for (path, name) in [(Some(id.clone()), id.clone()), (None, env.id("nopath"))] {
        let bundle = env.bundle(&name, &["/bin/helper", "pause"], |c| match &path {
            Some(p) => c["linux"]["cgroupsPath"] = json!(p),
            None => {
                c["linux"].as_object_mut().unwrap().remove("cgroupsPath");
            }
        });
        run_detached(&env, &bundle, &name);
        let pid = env.state(&name)["pid"].to_string();
        let theirs = cgroups_of(&pid);
        // Line by line (one per hierarchy), the container sits in <parent of ours>/<name>.
        let expected: Vec<String> = own
            .iter()
            .map(|p| {
                let parent = Path::new(p).parent().unwrap_or(Path::new("/"));
                parent.join(&name).display().to_string()
            })
            .collect();
        assert_eq!(theirs, expected);
        env.berth(&["delete", "--force", &name]).ok();
        assert!(!env.root.join(&name).exists());
        for dir in expected.iter().flat_map(|p| cgroup_dirs(p)) {
            assert!(!dir.exists(), "{} is left", dir.display());
        }
    }
}

/// `berth --systemd-cgroup ARGS…` (the harness adds the flag itself in a --systemd-cgroup run).
fn berth_systemd(env: &Env, args: &[&str]) -> runtime_tests::Run {
    let mut all = vec!["--systemd-cgroup"];
    if systemd_cgroup() {
        all.clear();
    }
    all.extend_from_slice(args);
    env.berth(&all)
}

#[test]
fn systemd_cgroups_make_a_scope_or_say_systemd_is_missing() {
    need_root!();
    let env = Env::new("systemd");
    let id = env.id("scope");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        c["linux"]["cgroupsPath"] = json!(format!("system.slice:berth-test:{id}"));
        c["linux"]["resources"]["memory"] = json!({"limit": 33554432});
        c["linux"]["resources"]["pids"] = json!({"limit": 10});
    });
    let b = bundle.to_str().unwrap();
    let unit = format!("/system.slice/berth-test-{id}.scope");
    if !Path::new("/run/systemd/system").is_dir() {
        let err = berth_systemd(&env, &["run", "--detach", "--bundle", b, &id])
            .fails()
            .to_string();
        assert!(
            err.contains("--systemd-cgroup needs systemd as the init"),
            "{err}"
        );
        assert!(!env.root.join(&id).exists());
    } else {
        berth_systemd(&env, &["run", "--detach", "--bundle", b, &id]).ok();
        let pid = env.state(&id)["pid"].to_string();
        assert!(
            cgroups_of(&pid).iter().any(|p| p == &unit),
            "{:?}",
            cgroups_of(&pid)
        );
        let dirs: Vec<PathBuf> = cgroup_dirs(&unit)
            .into_iter()
            .filter(|d| d.exists())
            .collect();
        let value = |names: &[&str]| {
            names
                .iter()
                .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
                .find_map(|p| std::fs::read_to_string(p).ok())
                .map(|v| v.trim().to_string())
        };
        assert_eq!(
            value(&["memory.max", "memory.limit_in_bytes"]).as_deref(),
            Some("33554432")
        );
        assert_eq!(value(&["pids.max"]).as_deref(), Some("10"));
        let show = std::process::Command::new("systemctl")
            .args([
                "show",
                "--property=Delegate",
                &format!("berth-test-{id}.scope"),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&show.stdout).trim(), "Delegate=yes");
        // An update reaches the files and the scope's properties, which systemd would restore.
        berth_systemd(&env, &["update", "--memory", "64m", &id]).ok();
        assert_eq!(
            value(&["memory.max", "memory.limit_in_bytes"]).as_deref(),
            Some("67108864")
        );
        let show = std::process::Command::new("systemctl")
            .args([
                "show",
                "--property=MemoryMax",
                &format!("berth-test-{id}.scope"),
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&show.stdout).trim(),
            "MemoryMax=67108864"
        );
        berth_systemd(&env, &["delete", "--force", &id]).ok();
        assert!(
            cgroup_dirs(&unit).iter().all(|d| !d.exists()),
            "{unit} is left"
        );
    }
    // A cgroupfs path is not a systemd one.
    let id = env.id("plain");
    let bundle = env.bundle(&id, &["/bin/true"], |c| {
        c["linux"]["cgroupsPath"] = json!(format!("/berth-tests/{id}"));
    });
    let err = berth_systemd(&env, &["run", "--bundle", bundle.to_str().unwrap(), &id])
        .fails()
        .to_string();
    assert!(err.contains("expected slice:prefix:name"), "{err}");
    assert!(!env.root.join(&id).exists());
}

#[test]
fn features_say_which_cgroups_are_supported() {
    need_root!();
    let env = Env::new("cgfeatures");
    let features: Value = serde_json::from_str(env.berth(&["features"]).ok()).unwrap();
    assert_eq!(
        features["linux"]["cgroup"],
        json!({"v1": true, "v2": true, "systemd": true, "systemdUser": false, "rdma": false})
    );
}
