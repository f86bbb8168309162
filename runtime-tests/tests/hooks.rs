//! Hooks: the six kinds run in order at their points of the lifecycle with the state on stdin
//! (the real pid, the right status), with path, args, env and timeout honoured; a failing
//! createRuntime hook fails `create` and leaves nothing, a failing startContainer or poststart
//! one fails `start` and removes the container (runtime-spec 1.3 for poststart), a failing
//! poststop one only warns; a hook that
//! floods its output neither stalls berth nor escapes its timeout.

use std::path::{Path, PathBuf};

use runtime_tests::{need_root, read, wait_until, workspace, Env};
use serde_json::{json, Value};

/// A hook that appends its name to `DIR/order` and saves the state it read as `DIR/NAME.json`.
fn recording_hook(name: &str, dir: &Path) -> Value {
    let script = format!(
        "echo {name} >> {dir}/order; cat > {dir}/{name}.json",
        dir = dir.display()
    );
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

/// The folder the hooks write into, bound at /run in the container for the one hook that runs
/// inside it after the switch to the container's root (startContainer).
fn hooks_folder(env: &Env, config: &mut Value) -> PathBuf {
    let dir = env.scratch.join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/run", "type": "bind", "source": dir, "options": ["rbind", "rw"]
    }));
    dir
}

fn state_read_by(dir: &Path, hook: &str) -> Value {
    serde_json::from_str(&read(&dir.join(format!("{hook}.json"))))
        .unwrap_or_else(|e| panic!("{hook} read no state JSON: {e}"))
}

#[test]
fn hooks_run_in_order_with_the_state() {
    need_root!();
    let env = Env::new("hooks-order");
    let id = env.id("order");
    let mut dir = PathBuf::new();
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        dir = hooks_folder(&env, c);
        let on_host = |name| json!([recording_hook(name, &dir)]);
        c["hooks"] = json!({
            "prestart": on_host("prestart"),
            "createRuntime": on_host("createRuntime"),
            "createContainer": on_host("createContainer"),
            "startContainer": [recording_hook("startContainer", Path::new("/run"))],
            "poststart": on_host("poststart"),
            "poststop": on_host("poststop"),
        });
    });
    let order = || read(&dir.join("order"));

    let out = env.create(&bundle, &id, &[]);
    assert_eq!(order(), "prestart\ncreateRuntime\ncreateContainer\n");
    let pid = env.pid(&id);
    for hook in ["prestart", "createRuntime", "createContainer"] {
        let state = state_read_by(&dir, hook);
        assert_eq!(state["id"], id.as_str(), "{hook}: {state}");
        assert_eq!(
            state["pid"], pid,
            "{hook} got another pid than the init's: {state}"
        );
        assert_eq!(state["status"], "creating", "{hook}: {state}");
        assert_eq!(state["bundle"], bundle.to_str().unwrap(), "{hook}: {state}");
        assert_eq!(state["ociVersion"], "1.3.0", "{hook}: {state}");
    }

    env.berth(&["start", &id]).ok();
    // startContainer runs before the program, poststart after it and before start returns.
    assert_eq!(
        order(),
        "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\n"
    );
    wait_until("the program to run", || read(&out) == "pausing\n");
    // As runc gives it: startContainer runs before the program, in the container, so its state
    // says `created` and has the init's pid as the container's pid namespace sees it.
    let state = state_read_by(&dir, "startContainer");
    assert_eq!(state["pid"], 1, "{state}");
    assert_eq!(state["status"], "created", "{state}");
    assert_eq!(state["id"], id.as_str(), "{state}");
    let state = state_read_by(&dir, "poststart");
    assert_eq!(state["pid"], pid, "{state}");
    assert_eq!(state["status"], "running", "{state}");

    env.berth(&["delete", "--force", &id]).ok();
    assert_eq!(
        order(),
        "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\npoststop\n"
    );
    let state = state_read_by(&dir, "poststop");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["status"], "stopped");
    env.assert_gone(&id);
}

#[test]
fn hook_args_env_and_timeout_are_honoured() {
    need_root!();
    let env = Env::new("hooks-args");
    let id = env.id("args");
    let seen = env.scratch.join("seen");
    // sh -c SCRIPT NAME ARG: the hook's args[3] becomes $0 and args[4] $1.
    let script = format!("echo \"$0 $1\" > {0}; env | sort >> {0}", seen.display());
    let bundle = env.bundle(&id, &["/bin/true"], |c| {
        c["hooks"] = json!({"createRuntime": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", script, "named", "first"],
            "env": ["HOOK_COLOR=blue", "HOOK_SIZE=3"],
            "timeout": 5
        }]});
    });
    env.run(&bundle, &id).ok();
    let text = read(&seen);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("named first"));
    let vars: Vec<&str> = lines.collect();
    assert!(vars.contains(&"HOOK_COLOR=blue"), "{text}");
    assert!(vars.contains(&"HOOK_SIZE=3"), "{text}");
    // Only the hook's env: nothing of berth's own environment leaks in.
    assert!(!vars.iter().any(|v| v.starts_with("CARGO")), "{text}");

    // A hook that outlives its timeout is killed and fails create, which leaves nothing.
    let id = env.id("slow");
    let bundle = env.bundle(&id, &["/bin/true"], |c| {
        c["hooks"] = json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]});
    });
    let started = std::time::Instant::now();
    let err = env
        .berth(&["create", "--bundle", bundle.to_str().unwrap(), &id])
        .fails()
        .to_string();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(
        err.trim(),
        "berth: error: prestart hook /bin/sleep timed out after 1 s"
    );
    env.assert_gone(&id);
    env.assert_root_empty();
}

#[test]
fn a_failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    need_root!();
    let env = Env::new("hooks-fail");
    let id = env.id("fail");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        c["hooks"] = json!({"createRuntime": [{
            "path": "/bin/sh", "args": ["sh", "-c", "echo no network for you >&2; exit 3"]
        }]});
    });
    let err = env
        .berth(&["create", "--bundle", bundle.to_str().unwrap(), &id])
        .fails()
        .to_string();
    assert_eq!(
        err.trim(),
        "berth: error: createRuntime hook /bin/sh exited with status 3: no network for you"
    );
    env.assert_gone(&id);
    env.assert_root_empty();
}

#[test]
fn a_failing_poststop_hook_only_warns() {
    need_root!();
    let env = Env::new("hooks-poststop");
    let id = env.id("poststop");
    let bundle = env.bundle(&id, &["/bin/echo", "done"], |c| {
        c["hooks"] = json!({"poststop": [{"path": "/bin/false"}]});
    });
    let run = env.run(&bundle, &id);
    assert_eq!(run.ok(), "done\n");
    assert!(
        run.stderr
            .contains("poststop hook /bin/false exited with status 1"),
        "{}",
        run.stderr
    );
    env.assert_gone(&id);
}

#[test]
fn a_start_container_hook_without_env_gets_the_programs_environment() {
    need_root!();
    let env = Env::new("hooks-startenv");
    let id = env.id("startenv");
    let mut dir = PathBuf::new();
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        dir = hooks_folder(&env, c);
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push("GREETING=hello".into());
        let dump = |file: &str| format!("env | sort > /run/{file}");
        c["hooks"] = json!({"startContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", dump("inherited")]},
            {"path": "/bin/sh", "args": ["sh", "-c", dump("own")], "env": ["ONLY=this"]},
        ]});
    });
    env.create(&bundle, &id, &[]);
    env.berth(&["start", &id]).ok();
    let inherited = read(&dir.join("inherited"));
    for var in ["GREETING=hello", "TERM=xterm", "HOME=/root"] {
        assert!(inherited.lines().any(|l| l == var), "{var} in {inherited}");
    }
    let own = read(&dir.join("own"));
    assert!(own.lines().any(|l| l == "ONLY=this"), "{own}");
    assert!(!own.contains("GREETING"), "{own}");
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_root_empty();
}

#[test]
fn a_start_container_hook_is_confined_also_with_no_new_privileges() {
    need_root!();
    let env = Env::new("hooks-seccomp-nnp");
    let id = env.id("seccomp");
    // It runs in the container, a program of its image: confined as the program is, as in runc
    // (seccomp.bats), also with noNewPrivileges, where the filter otherwise waits for the execve.
    let bundle = env.bundle(&id, &["/bin/helper", "true"], |c| {
        c["process"]["noNewPrivileges"] = json!(true);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOTBLK}]
        });
        c["hooks"] = json!({"startContainer": [
            {"path": "/bin/helper", "args": ["helper", "try-syscall", "uname"]}
        ]});
    });
    let err = env.run(&bundle, &id).fails().to_string();
    assert!(
        err.contains("startContainer hook /bin/helper exited with status 1"),
        "{err}"
    );
    env.assert_gone(&id);
}

#[test]
fn a_failing_start_container_or_poststart_hook_fails_start_and_removes_the_container() {
    need_root!();
    let env = Env::new("hooks-poststart");
    let seen = env.scratch.join("poststop-ran");
    let failing = json!([{"path": "/bin/sh", "args": ["sh", "-c", "echo not today >&2; exit 2"]}]);
    for kind in ["startContainer", "poststart"] {
        for how in ["start", "run"] {
            let id = env.id(how);
            let record = format!("echo {kind}-{how} >> {}", seen.display());
            let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
                c["hooks"] = json!({
                    kind: failing,
                    "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", record]}],
                });
            });
            let err = if how == "start" {
                env.create(&bundle, &id, &[]);
                let pid = env.pid(&id);
                let err = env.berth(&["start", &id]).fails().to_string();
                wait_until("the init to be gone", || runtime_tests::process_gone(pid));
                err
            } else {
                env.run(&bundle, &id).fails().to_string()
            };
            let hook = format!("{kind} hook /bin/sh exited with status 2: not today");
            let expected = match kind {
                // The init reports it from inside the container.
                "startContainer" => format!("container {id:?} could not start: {hook}"),
                _ => hook,
            };
            assert_eq!(
                err.trim(),
                format!("berth: error: {expected}"),
                "{kind} {how}"
            );
            // Stopped, destroyed, and the poststop hooks ran (lifecycle steps 12 and 13).
            env.assert_gone(&id);
            let ran = format!("{kind}-{how}");
            assert!(
                read(&seen).lines().any(|l| l == ran),
                "{ran}: {}",
                read(&seen)
            );
        }
    }
    env.assert_root_empty();
}

#[test]
fn a_hook_flooding_its_output_neither_stalls_create_nor_escapes_its_timeout() {
    need_root!();
    let env = Env::new("hooks-flood");
    // Two pipes' worth on stderr before reading the state: berth must read while it writes.
    let id = env.id("flood");
    let flood = "head -c 200000 /dev/zero >&2; cat >/dev/null; exit 0";
    let bundle = env.bundle(&id, &["/bin/true"], |c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", flood], "timeout": 20}]});
    });
    env.run(&bundle, &id).ok();
    // Printing without end, the hook is still ended by its timeout.
    let id = env.id("endless");
    let bundle = env.bundle(&id, &["/bin/true"], |c| {
        c["hooks"] = json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "yes >&2"], "timeout": 1}]});
    });
    let started = std::time::Instant::now();
    let err = env
        .berth(&["create", "--bundle", bundle.to_str().unwrap(), &id])
        .fails()
        .to_string();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(
        err.trim(),
        "berth: error: prestart hook /bin/sh timed out after 1 s"
    );
    env.assert_gone(&id);
    env.assert_root_empty();
}

/// Docker's default profile as dockerd sends it (see src/seccomp/testdata/docker-default.json).
fn docker_profile() -> Value {
    let path = workspace().join("src/seccomp/testdata/docker-default.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A startContainer hook runs in the container from a path the image controls: it must run
/// under the container's seccomp filter, and so must whatever it leaves running (runc installs
/// the filter before the hooks too). Under the late filter berth used to install right before
/// execve, the image's "hook" ran unfiltered and could unshare a user namespace that Docker's
/// profile refuses.
#[test]
fn a_start_container_hook_runs_under_the_containers_seccomp_filter() {
    need_root!();
    let env = Env::new("hooks-seccomp");
    let id = env.id("hookseccomp");
    let mut dir = PathBuf::new();
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        dir = hooks_folder(&env, c);
        c["linux"]["seccomp"] = docker_profile();
        let script = "helper seccomp > /run/mode; helper try-syscall unshare-user > /run/unshare; \
                      (helper seccomp > /run/left-behind &)";
        c["hooks"] = json!({"startContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", script]},
        ]});
    });
    let out = env.create(&bundle, &id, &[]);
    env.berth(&["start", &id]).ok();
    wait_until("the program to run", || read(&out) == "pausing\n");
    assert_eq!(
        read(&dir.join("mode")).trim(),
        "2",
        "the hook ran unfiltered"
    );
    assert_eq!(read(&dir.join("unshare")).trim(), "EPERM");
    wait_until("the hook's child to report", || {
        !read(&dir.join("left-behind")).is_empty()
    });
    assert_eq!(read(&dir.join("left-behind")).trim(), "2");
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_root_empty();
}

/// Every kind of hook gets its three pipes and nothing else: not the descriptors berth's
/// caller left open (a careless engine's), which the startContainer hook — the image's program,
/// in the container — would otherwise hold: here a host folder and a host file open for
/// writing. runc gives its hooks stdio only.
#[test]
fn hooks_get_no_descriptor_of_berths_caller() {
    need_root!();
    let env = Env::new("hooks-fds");
    let id = env.id("hookfds");
    let mut dir = PathBuf::new();
    let helper = runtime_tests::rootfs().join("bin/helper");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        dir = hooks_folder(&env, c);
        let listing = |helper: &Path, dir: &Path, name: &str| {
            let script = format!(
                "{} fds > {}/{name}",
                helper.display(),
                dir.display()
            );
            json!([{"path": "/bin/sh", "args": ["sh", "-c", script]}])
        };
        c["hooks"] = json!({
            "prestart": listing(&helper, &dir, "prestart"),
            "createRuntime": listing(&helper, &dir, "createRuntime"),
            "createContainer": listing(&helper, &dir, "createContainer"),
            "startContainer": listing(Path::new("/bin/helper"), Path::new("/run"), "startContainer"),
            "poststart": listing(&helper, &dir, "poststart"),
            "poststop": listing(&helper, &dir, "poststop"),
        });
    });
    let secret = env.scratch.join("secret");
    std::fs::write(&secret, "the host's\n").unwrap();
    // Descriptors 7 and 8 left open by the caller (not close-on-exec).
    let script = format!("exec 7</ 8>>{}; exec \"$0\" \"$@\"", secret.display());
    let with_fds = |args: &[&str]| {
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", &script])
            .arg(runtime_tests::berth_bin())
            .arg("--root")
            .arg(&env.root)
            .args(args);
        runtime_tests::run_to_files(&mut cmd, &env.scratch)
    };
    let bundle_arg = bundle.to_str().unwrap();
    with_fds(&["create", "--bundle", bundle_arg, &id]).ok();
    with_fds(&["start", &id]).ok();
    with_fds(&["delete", "--force", &id]).ok();
    for hook in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        let fds = read(&dir.join(hook));
        let numbers: Vec<&str> = fds
            .lines()
            .map(|line| line.split(' ').next().unwrap())
            .collect();
        assert_eq!(numbers, ["0", "1", "2"], "{hook} got:\n{fds}");
    }
    env.assert_root_empty();
}
