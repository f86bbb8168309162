//! Crash safety, by fault injection: berth (a debug build) stops with SIGKILL at each named step
//! of `create` and of `delete` (`BERTH_FAULT=STEP`, see `src/fault.rs`), in host, bridge and
//! none mode, each with a published or reserved port where the mode has them; then the operator
//! recovers with `berth delete --force ID`, and nothing may be left: no state folder, temp file,
//! lease, port reservation, veth, port on the bridge, address claim, published port,
//! `route_localnet`, forwarding rule (the throwaway host's FORWARD policy drops), cgroup, mount
//! or process, and no bridge or table once no container is left: the cleaner that `delete`
//! forks off takes them down (README, "The bridge's lifetime"), so the check waits for it, and
//! the cleaner's own steps (`clean:…`) are walked too: it is killed there, after the `delete`
//! that forked it returned, and the next command must fork another that finishes the work.
//!
//! The steps are read from the source, every `fault::point("…")` call, so a step added there is
//! walked here; each must be reached in at least one mode, so a step renamed or moved where
//! nothing reaches it fails the test rather than passing unwalked.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use runtime_tests::{cgroup_dirs, drop_namespace, need_root, read, workspace, Env};
use serde_json::Value;

/// Every step named in berth's source, in the order the files list them.
fn steps() -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![workspace().join("src")];
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("fault::point(\"") {
            let rest = &text[at + "fault::point(\"".len()..];
            found.push(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    assert!(found.len() >= 10, "too few fault points found: {found:?}");
    found
}

/// The `create` flags of each mode: a port published (bridge) or reserved (host).
fn mode_flags(mode: &str) -> Vec<&'static str> {
    match mode {
        // host mode from config.json itself, whose namespaces then have no network entry
        "host" => vec!["-p", "23000"],
        "bridge" => vec!["--network", "bridge", "-p", "23080:80"],
        _ => vec!["--network", "none"],
    }
}

/// Runs `berth ARGS` with `BERTH_FAULT=step`; whether berth was killed there. A cleaner's
/// step is reached in the process `delete` forks off: the mark file it writes says so.
fn run_with_fault(env: &Env, step: &str, args: &[&str], tag: &str) -> bool {
    let log = std::fs::File::create(env.scratch.join(format!("fault-{tag}.log"))).unwrap();
    let mark = env.scratch.join(format!("fault-{tag}.mark"));
    let status = env
        .berth_command(args)
        .env("BERTH_FAULT", step)
        .env("BERTH_FAULT_MARK", &mark)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    match status.signal() {
        Some(libc::SIGKILL) => true,
        Some(other) => panic!("berth {args:?} at {step} died of signal {other}"),
        None => {
            let text = read(&env.scratch.join(format!("fault-{tag}.log")));
            assert!(
                status.success(),
                "berth {args:?} with {step} failed: {text}"
            );
            mark.exists()
        }
    }
}

/// What is left of container `id` and of berth's network in the test's throwaway host; each
/// entry says what and where.
fn leftovers(env: &Env, id: &str) -> Vec<String> {
    let mut left = Vec::new();
    let host = |args: &[&str]| -> Value {
        let output = env.command("ip").arg("-j").args(args).output().unwrap();
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    };
    let veths = || -> Vec<String> {
        host(&["link"])
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|link| link["ifname"].as_str())
            .filter(|name| name.starts_with("veth"))
            .map(String::from)
            .collect()
    };
    // the kernel removes a veth with its container's namespace, within milliseconds
    let deadline = Instant::now() + Duration::from_secs(3);
    while !veths().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    left.extend(veths().into_iter().map(|v| format!("veth {v}")));
    // settles the leases of veths the kernel removed since
    env.berth(&["delete", "--force", "settle"]).ok();

    left.extend(
        env.containers()
            .into_iter()
            .map(|c| format!("state folder {c}")),
    );
    let mut dirs = vec![env.root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                dirs.push(path);
            } else if name.ends_with(".tmp") {
                left.push(format!("temp file {}", path.display()));
            } else if path.starts_with(env.root.join(".network/leases"))
                || path.starts_with(env.root.join(".network/ports"))
            {
                left.push(format!("record {}", path.display()));
            }
        }
    }
    // no container is left, so the cleaner the recovery forked takes the bridge down
    let bridge_gone = || {
        let tables = env
            .command("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        host(&["link", "show", "docker0"]).as_array().is_none()
            && !String::from_utf8_lossy(&tables.stdout).contains("berth-docker0")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bridge_gone() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !bridge_gone() {
        let tables = env
            .command("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        left.push(format!(
            "bridge or tables: {} {}",
            host(&["link", "show", "docker0"]),
            String::from_utf8_lossy(&tables.stdout)
        ));
    }
    let attached = host(&["link", "show", "master", "docker0"]);
    if attached.as_array().is_some_and(|a| !a.is_empty()) {
        left.push(format!("ports on docker0: {attached}"));
    }
    let claims = host(&["neigh", "show", "dev", "docker0", "nud", "permanent"]);
    if claims.as_array().is_some_and(|a| !a.is_empty()) {
        left.push(format!("address claims on docker0: {claims}"));
    }
    let map = env
        .command("nft")
        .args(["list", "map", "ip", "berth-docker0", "ports"])
        .output()
        .unwrap();
    let map = String::from_utf8_lossy(&map.stdout).into_owned();
    if map.contains("elements") {
        left.push(format!("published ports: {map}"));
    }
    let localnet = env
        .command("cat")
        .arg("/proc/sys/net/ipv4/conf/docker0/route_localnet")
        .output()
        .unwrap();
    if String::from_utf8_lossy(&localnet.stdout).trim() == "1" {
        left.push("route_localnet on docker0".to_string());
    }
    let forward = env
        .command("iptables-nft")
        .args(["-S", "FORWARD"])
        .output()
        .unwrap();
    let forward = String::from_utf8_lossy(&forward.stdout).into_owned();
    if forward.contains("berth") {
        left.push(format!("forwarding rules: {forward}"));
    }
    for dir in cgroup_dirs(&env.cgroup_path(id)) {
        if dir.exists() {
            left.push(format!("cgroup {}", dir.display()));
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mountinfo.lines().filter(|l| l.contains(id)) {
        left.push(format!("mount {line}"));
    }
    // a killed process may still be exiting (dropping a mount namespace waits for an RCU grace
    // period); only one that stays is left
    let deadline = Instant::now() + Duration::from_secs(3);
    while !processes_of(id).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    left.extend(processes_of(id));
    left
}

/// The processes, zombies aside, whose cgroup names container `id`.
fn processes_of(id: &str) -> Vec<String> {
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let state = status
            .lines()
            .find(|l| l.starts_with("State:"))
            .unwrap_or("");
        // a zombie has ended; whoever inherited it reaps it in its own time
        if cgroup.contains(id) && !state.contains("zombie") {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            left.push(format!(
                "process {} ({state}) {:?} in {cgroup:?}",
                entry.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmdline)
            ));
        }
    }
    left
}

#[test]
fn berth_killed_at_any_step_of_create_or_delete_leaves_nothing_after_recovery() {
    need_root!();
    let env = Env::with_netns("faults");
    // a host firewall that drops forwarding, so berth's accept rules are walked too
    let policy = env
        .command("iptables-nft")
        .args(["-P", "FORWARD", "DROP"])
        .status();
    assert!(policy.unwrap().success());
    let steps = steps();
    let mut reached = BTreeSet::new();
    let mut failures = Vec::new();
    for mode in ["host", "bridge", "none"] {
        for (n, step) in steps.iter().enumerate() {
            let id = env.id(&format!("{mode}{n}"));
            let bundle = env.bundle(&id, &["/bin/helper", "pause"], |config| {
                if mode == "host" {
                    drop_namespace(config, "network");
                }
            });
            let b = bundle.to_str().unwrap().to_string();
            let mut create = vec!["create"];
            create.extend(mode_flags(mode));
            create.extend(["--bundle", &b, &id]);
            let deleted = ["delete:", "release:", "clean:"];
            let killed = if deleted.iter().any(|prefix| step.starts_with(prefix)) {
                // made whole first, then killed while it is deleted
                let out = env.scratch.join(format!("{id}.out"));
                let file = std::fs::File::create(&out).unwrap();
                let status = env
                    .berth_command(&create)
                    .stdin(Stdio::null())
                    .stdout(file.try_clone().unwrap())
                    .stderr(file)
                    .status()
                    .unwrap();
                assert!(status.success(), "create {id}: {}", read(&out));
                env.berth(&["start", &id]).ok();
                let killed = run_with_fault(&env, step, &["delete", "--force", &id], &id);
                if mode == "bridge" && step.starts_with("clean:") {
                    // the cleaner waits its debounce, then works: its mark says it got there
                    let mark = env.scratch.join(format!("fault-{id}.mark"));
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while !mark.exists() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    mark.exists()
                } else {
                    killed
                }
            } else {
                run_with_fault(&env, step, &create, &id)
            };
            if killed {
                reached.insert(step.clone());
            }
            // the operator's recovery
            env.berth(&["delete", "--force", &id]).ok();
            let left = leftovers(&env, &id);
            if !left.is_empty() {
                failures.push(format!("{mode}, killed at {step} ({killed}): {left:#?}"));
            }
        }
    }
    assert_eq!(failures, Vec::<String>::new());
    let unreached: Vec<&String> = steps.iter().filter(|s| !reached.contains(*s)).collect();
    assert!(unreached.is_empty(), "steps no mode reached: {unreached:?}");
    // Nothing of the faults' containers is left for Env to clean up either.
    assert!(!Path::new(&env.root).join("settle").exists());
}
