//! The container's process: args, env, cwd, user, umask, the five capability sets,
//! noNewPrivileges, rlimits, oomScoreAdj, HOME and --preserve-fds, as the program itself reports
//! them.

use runtime_tests::{need_root, Env};
use serde_json::{json, Value};

/// Runs `args` in a container configured by `edit`; returns what it printed.
#[track_caller]
fn output(env: &Env, tag: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> String {
    let id = env.id(tag);
    let bundle = env.bundle(&id, args, edit);
    let out = env.run(&bundle, &id).ok().to_string();
    env.assert_gone(&id);
    out
}

/// Whether this test process holds CAP_SYS_RESOURCE (24; the development machine lacks it).
fn has_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap();
    u64::from_str_radix(eff.trim(), 16).unwrap() & (1 << 24) != 0
}

#[test]
fn args_env_and_cwd_are_the_programs() {
    need_root!();
    let env = Env::new("process-args");
    let out = output(
        &env,
        "args",
        &["/bin/helper", "echo", "two words", "x"],
        |_| {},
    );
    assert_eq!(out, "two words x\n");
    // The environment exactly as given, in order, with HOME added from /etc/passwd.
    let out = output(&env, "env", &["helper", "env"], |c| {
        c["process"]["env"] = json!(["PATH=/bin", "GREETING=hello world", "EMPTY="]);
    });
    assert_eq!(out, "PATH=/bin\nGREETING=hello world\nEMPTY=\nHOME=/root\n");
    let out = output(&env, "cwd", &["/bin/helper", "cwd"], |c| {
        c["process"]["cwd"] = "/home/berth".into();
    });
    assert_eq!(out, "/home/berth\n");
}

#[test]
fn user_groups_and_umask_are_set() {
    need_root!();
    let env = Env::new("process-user");
    let out = output(
        &env,
        "user",
        &["sh", "-c", "/bin/helper ids; /bin/helper umask"],
        |c| {
            c["process"]["user"] =
                json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 65534], "umask": 0o077});
        },
    );
    assert_eq!(
        out,
        "uid=1000 gid=1000 euid=1000 egid=1000 groups=5,65534\n0077\n"
    );
    // Root with no additional groups has none, and the default umask.
    let out = output(
        &env,
        "root",
        &["sh", "-c", "/bin/helper ids; /bin/helper umask"],
        |_| {},
    );
    assert_eq!(out, "uid=0 gid=0 euid=0 egid=0 groups=\n0022\n");
}

#[test]
fn home_comes_from_etc_passwd_unless_set() {
    need_root!();
    let env = Env::new("process-home");
    let home = |tag: &str, user: Value, env_list: Value| {
        let out = output(&env, tag, &["/bin/helper", "env"], |c| {
            c["process"]["user"] = user;
            c["process"]["env"] = env_list;
        });
        out.lines()
            .find_map(|l| l.strip_prefix("HOME="))
            .map(String::from)
    };
    let plain = json!(["PATH=/bin"]);
    let user = |uid: u32| json!({"uid": uid, "gid": uid});
    assert_eq!(home("root", user(0), plain.clone()).unwrap(), "/root");
    assert_eq!(
        home("berth", user(1000), plain.clone()).unwrap(),
        "/home/berth"
    );
    assert_eq!(home("unknown", user(4242), plain).unwrap(), "/");
    let given = json!(["PATH=/bin", "HOME=/var/www"]);
    assert_eq!(home("given", user(1000), given).unwrap(), "/var/www");
}

#[test]
fn a_variable_given_twice_keeps_its_last_value_and_an_empty_home_is_filled_in() {
    need_root!();
    let env = Env::new("process-dup-env");
    // As `docker run -e ONE=two -e ONE=three` means: one ONE, the last, where it stood.
    let out = output(&env, "dup", &["/bin/helper", "env"], |c| {
        c["process"]["env"] = json!(["ONE=two", "PATH=/bin", "ONE=three", "HOME=/x", "HOME="]);
    });
    assert_eq!(out, "PATH=/bin\nONE=three\nHOME=/root\n");
    // An entry that is no NAME=VALUE is refused before anything is made.
    let id = env.id("bad");
    let bundle = env.bundle(&id, &["/bin/helper", "env"], |c| {
        c["process"]["env"] = json!(["PATH=/bin", "NOVALUE"]);
    });
    let err = env.run(&bundle, &id).fails().to_string();
    assert_eq!(
        err,
        "berth: error: process.env[1] \"NOVALUE\" is not NAME=VALUE\n"
    );
    env.assert_gone(&id);
    env.assert_root_empty();
}

#[test]
fn the_working_directory_is_entered_as_root_first_or_else_as_the_user() {
    need_root!();
    let env = Env::new("process-cwd");
    let user = json!({"uid": 1000, "gid": 1000});
    // /root is 0700 and root's: the program starts there, as under runc, though it may not look
    // inside.
    let out = output(
        &env,
        "root-only",
        &["sh", "-c", "/bin/helper cwd; ls 2>&- || echo may not look"],
        |c| {
            c["process"]["user"] = user.clone();
            c["process"]["cwd"] = "/root".into();
        },
    );
    assert_eq!(out, "/root\nmay not look\n");
    // A folder that only the user's group may enter, whose owner the user namespace does not map:
    // its root may not enter it, the user may.
    let folder = env.scratch.join("group-only");
    std::fs::create_dir(&folder).unwrap();
    std::os::unix::fs::chown(&folder, Some(5000), Some(1000)).unwrap();
    std::fs::set_permissions(&folder, std::os::unix::fs::PermissionsExt::from_mode(0o070)).unwrap();
    let id = env.id("user-only");
    let bundle = env.bundle(&id, &["/bin/helper", "cwd"], |c| {
        c["process"]["user"] = user.clone();
        c["process"]["cwd"] = "/run".into();
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/run", "type": "bind", "source": folder, "options": ["bind"]
        }));
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536},
                                            {"containerID": 65536, "hostID": 1000, "size": 1}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536},
                                            {"containerID": 65536, "hostID": 1000, "size": 1}]);
        c["process"]["user"] = json!({"uid": 65536, "gid": 65536});
    });
    let run = env.run(&bundle, &id);
    assert_eq!(run.stdout, "/run\n", "{}", run.stderr);
}

#[test]
fn cap_dac_override_runs_a_program_only_its_owner_may_run() {
    need_root!();
    let env = Env::new("process-dac");
    // A copy of the helper that only root may run (0744), for user 1000: refused without
    // CAP_DAC_OVERRIDE, run with it, as execve decides (runc's start_hello.bats).
    let tools = env.scratch.join("tools");
    std::fs::create_dir(&tools).unwrap();
    std::fs::copy(
        runtime_tests::rootfs().join("bin/helper"),
        tools.join("helper"),
    )
    .unwrap();
    std::fs::set_permissions(
        tools.join("helper"),
        std::os::unix::fs::PermissionsExt::from_mode(0o744),
    )
    .unwrap();
    let config = |with_cap: bool| {
        let tools = tools.clone();
        move |c: &mut Value| {
            c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/run", "type": "bind", "source": tools, "options": ["bind"]
            }));
            if with_cap {
                for set in [
                    "bounding",
                    "effective",
                    "permitted",
                    "inheritable",
                    "ambient",
                ] {
                    let list = c["process"]["capabilities"][set].as_array_mut();
                    match list {
                        Some(list) => list.push("CAP_DAC_OVERRIDE".into()),
                        None => c["process"]["capabilities"][set] = json!(["CAP_DAC_OVERRIDE"]),
                    }
                }
            }
        }
    };
    let id = env.id("without");
    let bundle = env.bundle(&id, &["/run/helper", "echo", "ran"], config(false));
    let err = env.run(&bundle, &id).fails().to_string();
    assert!(
        err.contains("cannot run \"/run/helper\": /run/helper is not executable"),
        "{err}"
    );
    let out = output(&env, "with", &["/run/helper", "echo", "ran"], config(true));
    assert_eq!(out, "ran\n");
}

#[test]
fn a_container_does_not_inherit_the_cpus_berth_was_pinned_to() {
    need_root!();
    let host = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    if host.trim() == "0" {
        return runtime_tests::skip("CPU affinity", "this machine has a single CPU");
    }
    let env = Env::new("process-affinity");
    // berth run under `taskset -c 0` (a daemon pinned to its CPUs): the container runs on the
    // CPUs its cpuset allows, here all of them, as under runc (cpu_affinity.bats); exec too.
    let look = "grep Cpus_allowed_list /proc/self/status | cut -f2";
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new("taskset");
        cmd.args(["-c", "0"])
            .arg(runtime_tests::berth_bin())
            .arg("--root")
            .arg(&env.root)
            .args(args);
        runtime_tests::run_to_files(&mut cmd, &env.scratch)
    };
    let id = env.id("run");
    let bundle = env.bundle(&id, &["sh", "-c", look], |_| {});
    let ran = run(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    assert_eq!(ran.ok(), host, "{}", ran.stderr);
    let id = env.id("exec");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    env.berth(&["run", "--detach", "--bundle", bundle.to_str().unwrap(), &id])
        .ok();
    let exec = run(&["exec", &id, "sh", "-c", look]);
    assert_eq!(exec.ok(), host, "{}", exec.stderr);
    env.berth(&["delete", "--force", &id]).ok();
}

#[test]
fn a_user_that_is_not_root_may_reopen_its_stdout() {
    need_root!();
    let env = Env::new("process-stdio");
    // berth's stdout here is a pipe berth was given: the program's user gets it, as from runc,
    // so /dev/stdout opens (it is 0600 and root's otherwise).
    let id = env.id("reopen");
    let script = "echo reopened > /dev/stdout; stat -Lc %u /proc/self/fd/1";
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000})
    });
    let out = env
        .berth_command(&["run", "--bundle", bundle.to_str().unwrap(), &id])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "reopened\n1000\n",
        "{stderr}"
    );
    env.assert_gone(&id);
    // A file berth writes to is the caller's, and stays as it is.
    let file = env.run(&bundle, &id);
    assert_eq!(file.stdout, "0\n", "{}", file.stderr);
}

/// The `helper caps` lines as (name, mask).
fn caps(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .map(|l| {
            let (name, hex) = l.split_once('=').unwrap();
            (name.to_string(), u64::from_str_radix(hex, 16).unwrap())
        })
        .collect()
}

const CHOWN: u64 = 1 << 0;
const KILL: u64 = 1 << 5;
const NET_BIND_SERVICE: u64 = 1 << 10;
const NET_RAW: u64 = 1 << 13;
const AUDIT_WRITE: u64 = 1 << 29;

#[test]
fn the_five_capability_sets_are_applied() {
    need_root!();
    let env = Env::new("process-caps");
    // A user other than root keeps across execve only its ambient set (which must be permitted
    // and inheritable); the inheritable and bounding sets stay as given.
    let out = output(&env, "user", &["/bin/helper", "caps"], |c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
            "effective": ["CAP_KILL", "CAP_NET_RAW"],
            "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
            "ambient": ["CAP_KILL", "CAP_NET_RAW"]
        });
    });
    let ambient = KILL | NET_RAW;
    assert_eq!(
        caps(&out),
        [
            ("CapInh".to_string(), KILL | NET_RAW),
            ("CapPrm".to_string(), ambient),
            ("CapEff".to_string(), ambient),
            (
                "CapBnd".to_string(),
                CHOWN | KILL | NET_RAW | NET_BIND_SERVICE
            ),
            ("CapAmb".to_string(), ambient),
        ]
    );
    // Root gets its bounding set as permitted and effective; berth spec's template, like runc's,
    // asks for no ambient or inheritable ones.
    let out = output(&env, "root", &["/bin/helper", "caps"], |_| {});
    let template = AUDIT_WRITE | KILL | NET_BIND_SERVICE;
    assert_eq!(
        caps(&out),
        [
            ("CapInh".to_string(), 0),
            ("CapPrm".to_string(), template),
            ("CapEff".to_string(), template),
            ("CapBnd".to_string(), template),
            ("CapAmb".to_string(), 0),
        ]
    );
    // What a person would try: without CAP_NET_RAW a raw socket is refused, with it allowed.
    let raw_socket = ["sh", "-c", "/bin/helper try-syscall socket-raw; true"];
    let out = output(&env, "no-raw", &raw_socket, |_| {});
    assert_eq!(out, "EPERM\n");
    let out = output(&env, "raw", &raw_socket, |c| {
        for set in ["bounding", "permitted", "effective"] {
            c["process"]["capabilities"][set] = json!(["CAP_NET_RAW"]);
        }
    });
    assert_eq!(out, "ok\n");
}

#[test]
fn no_new_privileges_is_set_as_asked() {
    need_root!();
    let env = Env::new("process-nnp");
    assert_eq!(output(&env, "on", &["/bin/helper", "nnp"], |_| {}), "1\n");
    let out = output(&env, "off", &["/bin/helper", "nnp"], |c| {
        c["process"]["noNewPrivileges"] = false.into();
    });
    assert_eq!(out, "0\n");
}

#[test]
fn rlimits_are_set_and_one_above_the_hard_limit_fails_clearly() {
    need_root!();
    let env = Env::new("process-rlimits");
    let out = output(&env, "limits", &["/bin/helper", "rlimits"], |c| {
        c["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 321, "hard": 4321},
            {"type": "RLIMIT_NPROC", "soft": 77, "hard": 88},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ]);
    });
    for line in [
        "RLIMIT_NOFILE 321 4321",
        "RLIMIT_NPROC 77 88",
        "RLIMIT_CORE 0 0",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} missing:\n{out}");
    }
    if has_sys_resource() {
        runtime_tests::skip(
            module_path!(),
            "CAP_SYS_RESOURCE is held here, so no hard limit refuses an rlimit",
        );
        return;
    }
    // This machine's hard limit on open files is 20000; berth's test process has it too.
    let id = env.id("too-high");
    let bundle = env.bundle(&id, &["/bin/true"], |c| {
        c["process"]["rlimits"] =
            json!([{"type": "RLIMIT_NOFILE", "soft": 1000000, "hard": 1000000}]);
    });
    let err = env.run(&bundle, &id).fails().to_string();
    assert_eq!(
        err.trim(),
        format!(
            "berth: error: container {id:?} could not be created: cannot set process.rlimits \
             RLIMIT_NOFILE to soft 1000000, hard 1000000: EPERM: Operation not permitted \
             (raising a hard limit needs CAP_SYS_RESOURCE)"
        )
    );
    env.assert_gone(&id);
    env.assert_root_empty();
}

#[test]
fn oom_score_adj_is_set_and_lowering_it_needs_sys_resource() {
    need_root!();
    let env = Env::new("process-oom");
    let out = output(&env, "raise", &["/bin/helper", "oom-score-adj"], |c| {
        c["process"]["oomScoreAdj"] = 500.into();
    });
    assert_eq!(out, "500\n");
    let id = env.id("lower");
    let bundle = env.bundle(&id, &["/bin/helper", "oom-score-adj"], |c| {
        c["process"]["oomScoreAdj"] = (-500).into();
    });
    let run = env.run(&bundle, &id);
    if has_sys_resource() {
        assert_eq!(run.ok(), "-500\n");
    } else {
        assert_eq!(
            run.fails().trim(),
            format!(
                "berth: error: container {id:?} could not be created: cannot set process.oomScoreAdj \
                 to -500: Permission denied (os error 13) (lowering it needs CAP_SYS_RESOURCE)"
            )
        );
    }
    env.assert_gone(&id);
    env.assert_root_empty();
}

#[test]
fn preserve_fds_passes_descriptors_beyond_stdio() {
    need_root!();
    let env = Env::new("process-fds");
    let id = env.id("fds");
    let bundle = env.bundle(&id, &["/bin/helper", "fds"], |_| {});
    let marker = env.scratch.join("marker");
    std::fs::write(&marker, "x").unwrap();
    // A shell opens descriptors 3 and 4 (not close-on-exec) and becomes berth.
    let with_fds = |extra: &[&str]| {
        let mut cmd = env.command("sh");
        cmd.arg("-c")
            .arg(format!(
                "exec 3<{} 4>/dev/null; exec \"$0\" \"$@\"",
                marker.display()
            ))
            .arg(runtime_tests::berth_bin())
            .arg("--root")
            .arg(&env.root)
            .arg("run")
            .args(extra)
            .args(["--bundle", bundle.to_str().unwrap(), &id]);
        runtime_tests::run_to_files(&mut cmd, &env.scratch)
    };
    let out = with_fds(&["--preserve-fds", "2"]).ok().to_string();
    let fds: Vec<&str> = out.lines().collect();
    assert_eq!(fds.len(), 5, "{out}");
    assert_eq!(fds[3], format!("3 -> {}", marker.display()));
    assert_eq!(fds[4], "4 -> /dev/null");
    // Without the flag only stdio reaches the program.
    let out = with_fds(&[]).ok().to_string();
    let numbers: Vec<&str> = out.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(numbers, ["0", "1", "2"], "{out}");
    env.assert_gone(&id);
}
