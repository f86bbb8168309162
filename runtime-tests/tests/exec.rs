//! exec: namespaces, cgroup, user, environment, working directory, exit status, signals,
//! detaching, process files, capabilities, rlimits and seccomp, preserved descriptors, and what
//! never reaches the container: berth's descriptors, a working directory outside its root.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime_tests::{need_root, run_to_files, Env};
use serde_json::{json, Value};

/// Starts a detached container running `helper pause` and returns its init's pid.
fn paused(env: &Env, id: &str, edit: impl FnOnce(&mut Value)) -> i32 {
    let bundle = env.bundle(id, &["/bin/helper", "pause"], edit);
    env.berth(&["run", "-d", "--bundle", bundle.to_str().unwrap(), id])
        .ok();
    init_pid(env, id)
}

fn init_pid(env: &Env, id: &str) -> i32 {
    env.state(id)["pid"].as_i64().unwrap() as i32
}

/// `/proc/PID/ns/*` as the host sees it, in the format of `helper ns`.
fn host_ns(pid: i32) -> String {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/ns"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let target = std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
            format!("{n} -> {}\n", target.display())
        })
        .collect()
}

fn cgroup_procs_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap()
}

/// Waits until `done` holds, for at most five seconds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn exec_sees_the_namespaces_and_cgroup_of_the_init() {
    need_root!();
    let env = Env::new("exec-ns");
    let id = env.id("ns");
    let init = paused(&env, &id, |_| {});
    let seen = env
        .berth(&["exec", &id, "/bin/helper", "ns"])
        .ok()
        .to_string();
    assert_eq!(seen, host_ns(init));
    // Every namespace is the container's, not berth's (the template has no user namespace).
    let own = host_ns(std::process::id() as i32);
    for line in seen
        .lines()
        .filter(|l| !l.starts_with("user") && !l.starts_with("time"))
    {
        assert!(!own.contains(line), "{line} is berth's");
    }
    // Its pid namespace too: it is not pid 1, and its parent (berth) is outside.
    let pid = env
        .berth(&["exec", &id, "/bin/helper", "pid"])
        .ok()
        .to_string();
    assert!(
        pid.ends_with(" ppid=0\n") && !pid.starts_with("pid=1 "),
        "{pid}"
    );
    // And its cgroup, seen from the host.
    let pid_file = env.scratch.join("exec.pid");
    env.berth(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "/bin/helper",
        "pause",
    ])
    .ok();
    let exec_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(cgroup_procs_of(exec_pid), cgroup_procs_of(init));
    assert_eq!(host_ns(exec_pid), host_ns(init));
}

#[test]
fn exec_into_a_created_container_leaves_it_created() {
    need_root!();
    let env = Env::new("exec-created");
    let id = env.id("created");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    env.berth(&["create", "--bundle", bundle.to_str().unwrap(), &id])
        .ok();
    let init = init_pid(&env, &id);
    let seen = env
        .berth(&["exec", &id, "/bin/helper", "ns"])
        .ok()
        .to_string();
    assert_eq!(seen, host_ns(init));
    assert_eq!(env.state(&id)["status"], "created");
    env.berth(&["start", &id]).ok();
    assert_eq!(env.state(&id)["status"], "running");
}

#[test]
fn exec_runs_as_another_user_with_its_env_and_cwd() {
    need_root!();
    let env = Env::new("exec-user");
    let id = env.id("user");
    paused(&env, &id, |_| {});
    let exec = |args: &[&str]| {
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        env.berth(&all).ok().to_string()
    };
    assert_eq!(exec(&["--user", "1000", &id, "id", "-u"]), "1000\n");
    assert_eq!(
        exec(&[
            "-u",
            "1000:1000",
            "-g",
            "10",
            "-g",
            "20",
            &id,
            "/bin/helper",
            "ids"
        ]),
        "uid=1000 gid=1000 euid=1000 egid=1000 groups=10,20\n"
    );
    let shown = exec(&[
        "--user",
        "1000",
        "-e",
        "FOO=bar",
        "--env",
        "PATH=/bin",
        &id,
        "/bin/helper",
        "env",
    ]);
    let vars: Vec<&str> = shown.lines().collect();
    assert!(vars.contains(&"FOO=bar"), "{shown}");
    // The container's PATH is replaced, not doubled; HOME is the user's from /etc/passwd.
    assert_eq!(vars.iter().filter(|v| v.starts_with("PATH=")).count(), 1);
    assert!(vars.contains(&"PATH=/bin"), "{shown}");
    assert!(vars.contains(&"HOME=/home/berth"), "{shown}");
    assert_eq!(
        exec(&["--cwd", "/tmp", &id, "/bin/helper", "cwd"]),
        "/tmp\n"
    );
    // A missing working directory is exec's own error, and the container runs on.
    let run = env.berth(&["exec", "--cwd", "/no/such/dir", &id, "true"]);
    assert_eq!(run.code, 255);
    assert!(run.stderr.contains("/no/such/dir"), "{}", run.stderr);
    let bad = env.berth(&["exec", "--user", "bob", &id, "true"]);
    assert_eq!(
        bad.fails().trim(),
        "berth: error: --user \"bob\" must be UID or UID:GID, in numbers"
    );
}

#[test]
fn exec_exits_with_the_status_and_forwards_signals() {
    need_root!();
    let env = Env::new("exec-status");
    let id = env.id("status");
    paused(&env, &id, |_| {});
    assert_eq!(env.berth(&["exec", &id, "sh", "-c", "exit 7"]).code, 7);
    assert_eq!(
        env.berth(&["exec", &id, "sh", "-c", "kill -9 $$"]).code,
        137
    );
    // A signal sent to berth reaches the process; its status is then berth's.
    let out = env.scratch.join("pause.out");
    let mut child = env
        .berth_command(&["exec", &id, "/bin/helper", "pause"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    wait_until("the process to pause", || {
        std::fs::read_to_string(&out).unwrap_or_default() == "pausing\n"
    });
    // SAFETY: kill with the pid of our own child and a signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "pausing\nSIGUSR1\n");
}

#[test]
fn exec_detached_returns_at_once_with_the_pid_file() {
    need_root!();
    let env = Env::new("exec-detach");
    let id = env.id("detach");
    let init = paused(&env, &id, |_| {});
    let pid_file = env.scratch.join("sleep.pid");
    let started = Instant::now();
    env.berth(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "30",
    ])
    .ok();
    assert!(started.elapsed() < Duration::from_secs(10));
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, "sleep\u{0}30\u{0}");
    assert_eq!(host_ns(pid), host_ns(init));
    // It belongs to the container: killing every process in it reaches the exec'd one.
    env.berth(&["kill", "--all", &id, "KILL"]).ok();
    wait_until("the exec'd process to end", || {
        !Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
}

#[test]
fn exec_of_a_missing_binary_fails_and_the_container_runs_on() {
    need_root!();
    let env = Env::new("exec-missing");
    let id = env.id("missing");
    let init = paused(&env, &id, |_| {});
    let procs_before = container_procs(&env, &id);
    let run = env.berth(&["exec", &id, "/nonexistent"]);
    assert_eq!(run.code, 255);
    assert_eq!(
        run.stderr.trim(),
        format!(
            "berth: error: cannot exec in container {id:?}: cannot run \"/nonexistent\": /nonexistent: No such file or directory (os error 2)"
        )
    );
    let run = env.berth(&["exec", "-d", &id, "nothere"]);
    assert_eq!(run.code, 255);
    assert!(
        run.stderr
            .contains("executable \"nothere\" not found in $PATH"),
        "{}",
        run.stderr
    );
    // The container, its init and its cgroup are as they were.
    assert_eq!(env.state(&id)["status"], "running");
    assert_eq!(init_pid(&env, &id), init);
    assert_eq!(container_procs(&env, &id), procs_before);
    assert_eq!(
        env.berth(&["exec", &id, "/bin/helper", "echo", "still", "here"])
            .ok(),
        "still here\n"
    );
}

/// The pids in the container's cgroup (its pids hierarchy, or any other).
fn container_procs(env: &Env, id: &str) -> String {
    let dirs = runtime_tests::cgroup_dirs(&env.cgroup_path(id));
    let dir = dirs
        .iter()
        .find(|d| d.to_string_lossy().contains("/pids/"))
        .or(dirs.first())
        .unwrap();
    std::fs::read_to_string(dir.join("cgroup.procs")).unwrap()
}

#[test]
fn exec_into_stopped_or_unknown_containers_is_refused() {
    need_root!();
    let env = Env::new("exec-stopped");
    let err = env.berth(&["exec", "no-such-container", "true"]);
    assert_eq!(err.code, 255);
    assert_eq!(
        err.stderr.trim(),
        "berth: error: container \"no-such-container\" does not exist"
    );
    let id = env.id("done");
    let bundle = env.bundle(&id, &["true"], |_| {});
    env.berth(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id])
        .ok();
    wait_until("the container to stop", || {
        env.state(&id)["status"] == "stopped"
    });
    let err = env.berth(&["exec", &id, "true"]);
    assert_eq!(err.code, 255);
    assert_eq!(
        err.stderr.trim(),
        format!("berth: error: cannot exec in container {id:?}: container not running")
    );
}

#[test]
fn exec_with_a_process_file_as_containerd_passes_it() {
    need_root!();
    let env = Env::new("exec-process");
    let id = env.id("process");
    paused(&env, &id, |_| {});
    let file = env.scratch.join("process.json");
    let process = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [5]},
        "args": ["sh", "-c", "/bin/helper ids; /bin/helper cwd; echo $ONLY"],
        "env": ["PATH=/bin", "ONLY=here"],
        "cwd": "/home/berth"
    });
    std::fs::write(&file, process.to_string()).unwrap();
    let shown = env
        .berth(&["exec", "--process", file.to_str().unwrap(), &id])
        .ok()
        .to_string();
    assert_eq!(
        shown,
        "uid=1000 gid=1000 euid=1000 egid=1000 groups=5\n/home/berth\nhere\n"
    );
    let mut process = process;
    process["user"] = json!({"uid": 0, "gid": 0});
    process["args"] = json!(["/bin/helper", "caps"]);
    process["capabilities"] =
        json!({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]});
    std::fs::write(&file, process.to_string()).unwrap();
    let caps = env
        .berth(&["exec", "--process", file.to_str().unwrap(), &id])
        .ok()
        .to_string();
    assert!(caps.contains("CapEff=0000000000000020\n"), "{caps}");
    assert!(caps.contains("CapBnd=0000000000000020\n"), "{caps}");
    // Detached with a pid file, as the shim does it; what the file leaves out (here the
    // capabilities) is the container's.
    process.as_object_mut().unwrap().remove("capabilities");
    std::fs::write(&file, process.to_string()).unwrap();
    let pid_file = env.scratch.join("p.pid");
    let out = env.scratch.join("detached.out");
    let mut cmd = env.berth_command(&[
        "exec",
        "--process",
        file.to_str().unwrap(),
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    cmd.stdout(std::fs::File::create(&out).unwrap());
    assert!(cmd.status().unwrap().success());
    wait_until("the detached process's output", || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("CapAmb")
    });
    let caps = std::fs::read_to_string(&out).unwrap();
    assert!(caps.contains("CapEff=0000000020000420\n"), "{caps}");
    let bad = env.berth(&[
        "exec",
        "--process",
        file.to_str().unwrap(),
        "--user",
        "5",
        &id,
    ]);
    assert_eq!(
        bad.fails().trim(),
        "berth: error: --process gives the whole process: --user cannot be added to it"
    );
    // runc's process file may leave out the user (root) and the environment (HOME only).
    let bare = json!({"args": ["/bin/helper", "ids"], "cwd": "/"});
    std::fs::write(&file, bare.to_string()).unwrap();
    let ids = env.berth(&["exec", "--process", file.to_str().unwrap(), &id]);
    assert_eq!(ids.ok(), "uid=0 gid=0 euid=0 egid=0 groups=\n");
    let bare = json!({"args": ["/bin/helper", "env"], "cwd": "/"});
    std::fs::write(&file, bare.to_string()).unwrap();
    let shown = env.berth(&["exec", "--process", file.to_str().unwrap(), &id]);
    assert_eq!(shown.ok(), "HOME=/root\n");
    std::fs::write(&file, "{\"args\": 5}").unwrap();
    let bad = env.berth(&["exec", "--process", file.to_str().unwrap(), &id]);
    assert!(
        bad.fails().starts_with(&format!(
            "berth: error: {} is not a valid runtime-spec process:",
            file.display()
        )),
        "{}",
        bad.stderr
    );
}

#[test]
fn exec_gets_the_containers_limits_seccomp_and_capabilities() {
    need_root!();
    let env = Env::new("exec-security");
    let id = env.id("sec");
    paused(&env, &id, |config| {
        config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 777, "hard": 888}]);
        config["process"]["noNewPrivileges"] = json!(false);
        config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    let exec = |args: &[&str]| {
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        env.berth(&all)
    };
    let limits = exec(&[&id, "/bin/helper", "rlimits"]).ok().to_string();
    assert!(limits.contains("RLIMIT_NOFILE 777 888\n"), "{limits}");
    assert_eq!(exec(&[&id, "/bin/helper", "seccomp"]).ok(), "2\n");
    let denied = exec(&[&id, "/bin/helper", "try-syscall", "uname"]);
    assert_eq!((denied.code, denied.stdout.as_str()), (1, "EPERM\n"));
    assert_eq!(exec(&[&id, "/bin/helper", "nnp"]).ok(), "0\n");
    assert_eq!(
        exec(&["--no-new-privs", &id, "/bin/helper", "nnp"]).ok(),
        "1\n"
    );
    let missing = exec(&[&id, "/bin/helper", "has-cap", "CAP_NET_ADMIN"]);
    assert_eq!((missing.code, missing.stdout.as_str()), (1, "false\n"));
    let added = exec(&[
        "--cap",
        "CAP_NET_ADMIN",
        &id,
        "/bin/helper",
        "has-cap",
        "CAP_NET_ADMIN",
    ]);
    assert_eq!(added.ok(), "true\n");
    let bad = exec(&["--cap", "CAP_FLY", &id, "true"]);
    assert_eq!(
        bad.fails().trim(),
        "berth: error: unknown capability \"CAP_FLY\""
    );
}

#[test]
fn exec_in_a_user_namespace_maps_its_users() {
    need_root!();
    let env = Env::new("exec-userns");
    let id = env.id("userns");
    paused(&env, &id, |config| {
        config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        config["linux"]["uidMappings"] =
            json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        config["linux"]["gidMappings"] =
            json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    });
    assert_eq!(env.berth(&["exec", &id, "id", "-u"]).ok(), "0\n");
    let pid_file = env.scratch.join("u.pid");
    env.berth(&[
        "exec",
        "-d",
        "--user",
        "1000:1000",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "30",
    ])
    .ok();
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.contains("\nUid:\t201000\t201000\t201000\t201000\n"),
        "{status}"
    );
    let seen = env
        .berth(&["exec", &id, "/bin/helper", "ns"])
        .ok()
        .to_string();
    assert_eq!(seen, host_ns(init_pid(&env, &id)));
}

#[test]
fn exec_works_while_run_waits_in_the_foreground() {
    need_root!();
    let env = Env::new("exec-foreground");
    let id = env.id("fg");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    let out = env.scratch.join("run.out");
    let mut run = env
        .berth_command(&["run", "--bundle", bundle.to_str().unwrap(), &id])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    wait_until("the container to pause", || {
        std::fs::read_to_string(&out).unwrap_or_default() == "pausing\n"
    });
    assert_eq!(
        env.berth(&["exec", &id, "/bin/helper", "echo", "alongside"])
            .ok(),
        "alongside\n"
    );
    env.berth(&["kill", &id, "TERM"]).ok();
    assert!(run.wait().unwrap().success());
    env.assert_gone(&id);
}

#[test]
fn exec_joins_a_pid_namespace_that_a_container_joined_by_path() {
    need_root!();
    let env = Env::new("exec-pidns");
    let first = env.id("first");
    let init = paused(&env, &first, |_| {});
    let second = env.id("second");
    paused(&env, &second, |config| {
        for ns in config["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "pid" {
                ns["path"] = json!(format!("/proc/{init}/ns/pid"));
            }
        }
    });
    let second_init = init_pid(&env, &second);
    let pid_ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_eq!(pid_ns(second_init), pid_ns(init));
    let seen = env
        .berth(&["exec", &second, "/bin/helper", "ns"])
        .ok()
        .to_string();
    assert_eq!(seen, host_ns(second_init));
}

/// `helper fds` lines, as descriptor numbers.
fn fd_numbers(listing: &str) -> Vec<u32> {
    listing
        .lines()
        .map(|l| l.split(" -> ").next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn only_stdio_reaches_the_container_and_exec() {
    need_root!();
    let env = Env::new("exec-fds");
    let id = env.id("fds");
    // berth keeps more open when it logs; none of it may pass.
    let log = env.scratch.join("berth.log");
    let bundle = env.bundle(&id, &["/bin/helper", "fds"], |_| {});
    let ran = env.berth(&[
        "--log",
        log.to_str().unwrap(),
        "run",
        "--bundle",
        bundle.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(fd_numbers(ran.ok()), [0, 1, 2], "{}", ran.stdout);
    let id = env.id("fds-exec");
    paused(&env, &id, |_| {});
    for detach in [false, true] {
        let out = env.scratch.join(format!("fds-{detach}.out"));
        let mut args = vec!["--log", log.to_str().unwrap(), "exec"];
        if detach {
            args.push("-d");
        }
        args.extend([id.as_str(), "/bin/helper", "fds"]);
        let mut cmd = env.berth_command(&args);
        cmd.stdout(std::fs::File::create(&out).unwrap());
        assert!(cmd.status().unwrap().success());
        wait_until("the listing", || {
            std::fs::read_to_string(&out)
                .unwrap_or_default()
                .contains("2 -> ")
        });
        let listing = std::fs::read_to_string(&out).unwrap();
        assert_eq!(fd_numbers(&listing), [0, 1, 2], "{listing}");
    }
}

/// Runs `berth --root ROOT ARGS` through `sh`, with `fd3` open as descriptor 3 and a file of
/// the test's as descriptor 4, and the shell commands `prefix` before it (e.g. `export X=1;`).
fn berth_with_fds(env: &Env, prefix: &str, fd3: &Path, args: &[&str]) -> runtime_tests::Run {
    let two = env.scratch.join("two");
    std::fs::write(&two, "2").unwrap();
    let script = format!(
        "{prefix} exec \"$0\" \"$@\" 3<'{}' 4<'{}'",
        fd3.display(),
        two.display()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg(runtime_tests::berth_bin())
        .arg("--root")
        .arg(&env.root)
        .args(args);
    run_to_files(&mut cmd, &env.scratch)
}

/// A file of the test's, to pass as a descriptor.
fn scratch_file(env: &Env) -> std::path::PathBuf {
    let one = env.scratch.join("one");
    std::fs::write(&one, "1").unwrap();
    one
}

#[test]
fn a_created_container_holds_only_what_it_waits_for_start_with() {
    need_root!();
    let env = Env::new("exec-created-fds");
    let id = env.id("created");
    let log = env.scratch.join("berth.log");
    let bundle = env.bundle(&id, &["/bin/helper", "true"], |_| {});
    let one = scratch_file(&env);
    // Descriptors 3 and 4 are the caller's, and berth logs to a file of its own: while the init
    // waits in the container for `start`, it may hold its stdio, berth's channel, the exec fifo
    // and the file a failed start is told through, and nothing else (runc's create.bats).
    let b = bundle.to_str().unwrap();
    let l = log.to_str().unwrap();
    berth_with_fds(&env, "", &one, &["--log", l, "create", "--bundle", b, &id]).ok();
    let pid = env.pid(&id);
    let state_dir = env.root.join(&id);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().parse::<u32>().unwrap() < 3 {
            continue; // stdio: the caller's files, the container's from the start
        }
        let target = std::fs::read_link(entry.path()).unwrap();
        let text = target.to_string_lossy();
        // The init's own pid namespace it holds (container::exposure) is the container's too.
        let own_pid_ns = text
            == std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .unwrap()
                .to_string_lossy();
        let allowed = text.starts_with("socket:") || own_pid_ns || target.starts_with(&state_dir);
        assert!(allowed, "the created init holds {text}");
    }
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn preserved_descriptors_reach_the_container_and_exec() {
    need_root!();
    let env = Env::new("exec-preserve");
    let id = env.id("keep");
    let bundle = env.bundle(&id, &["/bin/helper", "fds"], |_| {});
    let b = bundle.to_str().unwrap();
    let one = scratch_file(&env);
    let listing = berth_with_fds(
        &env,
        "",
        &one,
        &["run", "--preserve-fds", "2", "--bundle", b, &id],
    );
    let listing = listing.ok().to_string();
    assert_eq!(fd_numbers(&listing), [0, 1, 2, 3, 4], "{listing}");
    assert!(
        listing.contains(&format!("3 -> {}/one", env.scratch.display())),
        "{listing}"
    );
    env.assert_gone(&id);
    let id = env.id("keep-exec");
    paused(&env, &id, |_| {});
    let listing = berth_with_fds(
        &env,
        "",
        &one,
        &["exec", "--preserve-fds", "1", &id, "/bin/helper", "fds"],
    );
    assert_eq!(fd_numbers(listing.ok()), [0, 1, 2, 3], "{}", listing.stdout);
    // A descriptor that is not open is an error, before anything is made.
    let id = env.id("not-open");
    let bundle = env.bundle(&id, &["true"], |_| {});
    let run = env.berth(&[
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        bundle.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(
        run.fails().trim(),
        "berth: error: descriptor 3 is not open, but the container is to get descriptors 3 to 3 (--preserve-fds 1)"
    );
    env.assert_gone(&id);
}

#[test]
fn socket_activation_descriptors_come_first_and_listen_fds_says_so() {
    need_root!();
    let env = Env::new("exec-listen");
    let id = env.id("listen");
    let bundle = env.bundle(
        &id,
        &["sh", "-c", "/bin/helper fds; /bin/helper env"],
        |c| {
            c["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!("LISTEN_FDS=9"));
        },
    );
    let b = bundle.to_str().unwrap();
    // systemd hands berth one socket (fd 3) and names berth's pid; --preserve-fds adds fd 4.
    let one = scratch_file(&env);
    let out = berth_with_fds(
        &env,
        "export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web;",
        &one,
        &["run", "--preserve-fds", "1", "--bundle", b, &id],
    );
    let out = out.ok().to_string();
    let fds: Vec<&str> = out.lines().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(fd_numbers(&fds.join("\n")), [0, 1, 2, 3, 4], "{out}");
    let mut vars: Vec<&str> = out.lines().filter(|l| l.starts_with("LISTEN_")).collect();
    vars.sort();
    assert_eq!(
        vars,
        ["LISTEN_FDNAMES=web", "LISTEN_FDS=1", "LISTEN_PID=1"],
        "{out}"
    );
    // A LISTEN_PID that is not berth's is someone else's: nothing extra is passed.
    let out = berth_with_fds(
        &env,
        "export LISTEN_PID=1 LISTEN_FDS=1;",
        &one,
        &["run", "--bundle", b, &id],
    );
    let out = out.ok().to_string();
    assert!(!out.contains("3 -> "), "{out}");
    assert!(out.contains("LISTEN_FDS=9\n"), "{out}");
}

#[test]
fn the_working_directory_never_leaves_the_root() {
    need_root!();
    let env = Env::new("exec-cwd");
    let id = env.id("cwd");
    paused(&env, &id, |_| {});
    // A host directory handed over as fd 3 is still no way out of the root.
    let host_dir = env.scratch.clone();
    let escape = berth_with_fds(
        &env,
        "",
        &host_dir,
        &[
            "exec",
            "--preserve-fds",
            "1",
            "--cwd",
            "/proc/self/fd/3",
            &id,
            "/bin/helper",
            "cwd",
        ],
    );
    assert_eq!(escape.code, 255, "{}", escape.stdout);
    // The process is set up outside the container's pid namespace, where the container's /proc
    // has no `self` (process::exec): the path leads nowhere at all.
    assert_eq!(
        escape.stderr.trim(),
        format!("berth: error: cannot exec in container {id:?}: cannot change to the working directory /proc/self/fd/3: ENOENT: No such file or directory")
    );
    // No descriptor of berth's is there to escape through.
    for fd in 3..24 {
        let cwd = format!("/proc/self/fd/{fd}");
        let run = env.berth(&["exec", "--cwd", &cwd, &id, "/bin/helper", "cwd"]);
        assert_eq!(run.code, 255, "fd {fd} worked: {}", run.stdout);
    }
    // The same for the init.
    let id = env.id("cwd-init");
    let bundle = env.bundle(&id, &["/bin/helper", "cwd"], |c| {
        c["process"]["cwd"] = json!("/proc/self/fd/3");
    });
    let run = berth_with_fds(
        &env,
        "",
        &host_dir,
        &[
            "run",
            "--preserve-fds",
            "1",
            "--bundle",
            bundle.to_str().unwrap(),
            &id,
        ],
    );
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.contains(
            "the working directory /proc/self/fd/3 is outside the container's root filesystem"
        ),
        "{}",
        run.stderr
    );
    env.assert_gone(&id);
}

#[test]
fn exec_cgroup_flag_picks_a_cgroup_below_the_containers_on_v2() {
    need_root!();
    let env = Env::new("exec-cgroup");
    let id = env.id("sub");
    paused(&env, &id, |_| {});
    let unified = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "));
    if !unified {
        let run = env.berth(&["exec", "--cgroup", "sub", &id, "true"]);
        assert_eq!(run.code, 255);
        assert!(
            run.stderr.contains("--cgroup \"sub\" needs cgroup v2"),
            "{}",
            run.stderr
        );
        runtime_tests::skip(
            "exec --cgroup on cgroup v2",
            "this host is not pure v2 (scripts/test-cgroup-v2 runs it)",
        );
        return;
    }
    let dir = runtime_tests::cgroup_dirs(&env.cgroup_path(&id))[0].join("sub");
    std::fs::create_dir(&dir).unwrap();
    let pid_file = env.scratch.join("sub.pid");
    env.berth(&[
        "exec",
        "-d",
        "--cgroup",
        "sub",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "30",
    ])
    .ok();
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), pid.to_string());
    let run = env.berth(&["exec", "--cgroup", "../escape", &id, "true"]);
    assert!(
        run.stderr
            .contains("must name a cgroup below the container's"),
        "{}",
        run.stderr
    );
    let run = env.berth(&["exec", "--cgroup", "missing", &id, "true"]);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
}

#[test]
fn exec_into_a_paused_container_needs_ignore_paused_and_completes_on_resume() {
    need_root!();
    let env = Env::new("exec-paused");
    let id = env.id("paused");
    paused(&env, &id, |_| {});
    env.berth(&["pause", &id]).ok();
    assert_eq!(env.state(&id)["status"], "paused");
    let refused = env.berth(&["exec", &id, "/bin/helper", "echo", "hi"]);
    assert_eq!(refused.code, 255);
    assert_eq!(
        refused.stderr.trim(),
        format!(
            "berth: error: cannot exec in container {id:?}: it is paused (use --ignore-paused to override)"
        )
    );
    // As runc: the process joins the frozen cgroup, and exec completes once it is resumed.
    let exec = env.spawn(&["exec", "--ignore-paused", &id, "/bin/helper", "echo", "ok"]);
    wait_until("the exec'd process in the frozen cgroup", || {
        env.cgroup_pids(&id).len() == 2
    });
    assert_eq!(env.state(&id)["status"], "paused");
    env.berth(&["resume", &id]).ok();
    let done = exec.wait();
    assert_eq!(
        (done.code, done.stdout.as_str()),
        (0, "ok\n"),
        "{}",
        done.stderr
    );
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_root_empty();
}
