//! runtime-spec 1.3 and no setting silently ignored: the versions berth accepts, fields it does
//! not know, fields it refuses (naming them, leaving nothing behind), and the process settings
//! 1.x added, each seen from inside the container: `ionice`, `/proc/self/stat`, `uname -m`,
//! `/proc/uptime`, `/proc/self/numa_maps`, the pids cgroup, the CPUs an exec'd process runs on,
//! and the AppArmor and SELinux fields where the host has (or lacks) the module.

use runtime_tests::{need_root, read, wait_until, Env};
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

/// Runs a container configured by `edit`, which `create` must refuse; returns the error line
/// and checks that nothing is left.
#[track_caller]
fn refused(env: &Env, tag: &str, edit: impl FnOnce(&mut Value)) -> String {
    let id = env.id(tag);
    let bundle = env.bundle(&id, &["/bin/true"], edit);
    let err = env.run(&bundle, &id).fails().trim().to_string();
    env.assert_root_empty();
    env.assert_gone(&id);
    err
}

#[test]
fn a_1_3_bundle_runs_and_a_later_minor_runs_with_its_new_fields_named() {
    need_root!();
    let env = Env::new("spec13-versions");
    // berth spec writes 1.3.0.
    let id = env.id("v13");
    let bundle = env.bundle(&id, &["/bin/helper", "echo", "ran"], |_| {});
    let config: Value =
        serde_json::from_str(&read(&bundle.join("config.json"))).expect("config.json");
    assert_eq!(config["ociVersion"], "1.3.0");
    assert_eq!(env.run(&bundle, &id).ok(), "ran\n");
    // A later minor with a field berth does not know: ignored, named under --debug.
    let id = env.id("v14");
    let bundle = env.bundle(&id, &["/bin/helper", "echo", "ran"], |c| {
        c["ociVersion"] = "1.4.0".into();
        c["linux"]["futureSetting"] = json!({"on": true});
    });
    let run = env.berth(&["--debug", "run", "--bundle", bundle.to_str().unwrap(), &id]);
    assert_eq!(run.ok(), "ran\n");
    assert!(
        run.stderr.contains(
            "config.json (ociVersion 1.4.0): ignoring fields berth does not know: linux.futureSetting"
        ),
        "{}",
        run.stderr
    );
    // 0.x and 2.x are refused.
    for version in ["0.9.0", "2.0.0"] {
        let err = refused(&env, "old", |c| c["ociVersion"] = version.into());
        assert_eq!(
            err,
            format!("berth: error: unsupported ociVersion {version:?}: berth supports 1.0.0 and every later 1.x version")
        );
    }
    let features: Value = serde_json::from_str(env.berth(&["features"]).ok()).unwrap();
    assert_eq!(features["ociVersionMax"], "1.3.0");
    assert_eq!(features["linux"]["seccomp"]["enabled"], true);
}

#[test]
fn fields_berth_cannot_apply_are_refused_by_name() {
    need_root!();
    let env = Env::new("spec13-refused");
    type Case = (&'static str, fn(&mut Value), &'static str);
    let cases: [Case; 4] = [
        (
            "rdt",
            |c| c["linux"]["intelRdt"] = json!({"closID": "guaranteed_group"}),
            "berth: error: linux.intelRdt is set but this host has no resctrl filesystem",
        ),
        (
            "idmap",
            |c| {
                c["mounts"].as_array_mut().unwrap().push(json!({
                    "destination": "/mnt", "type": "bind", "source": "/tmp",
                    "options": ["bind"],
                    "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]
                }))
            },
            "berth: error: mounts[7].uidMappings is set but berth does not make id-mapped mounts",
        ),
        (
            "windows",
            |c| c["process"]["commandLine"] = "cmd.exe".into(),
            "berth: error: process.commandLine is set but it is a Windows field and berth runs Linux containers",
        ),
        (
            "personality",
            |c| c["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["x"]}),
            "berth: error: linux.personality.flags: the runtime-spec defines no flags yet",
        ),
    ];
    let has_resctrl = read(std::path::Path::new("/proc/self/mountinfo")).contains(" - resctrl ");
    for (tag, edit, expected) in cases {
        let err = refused(&env, tag, edit);
        if tag == "rdt" && has_resctrl {
            assert_eq!(
                err,
                "berth: error: linux.intelRdt is set but berth does not manage resctrl groups yet"
            );
            continue;
        }
        assert_eq!(err, expected);
    }
}

#[test]
fn io_priority_is_idle_inside() {
    need_root!();
    let env = Env::new("spec13-ioprio");
    let out = output(&env, "idle", &["ionice", "-p", "1"], |c| {
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 7});
    });
    assert_eq!(out.trim(), "idle");
    // Best effort at level 2, in the program and its children.
    let out = output(&env, "be", &["sh", "-c", "ionice; ionice -p 1"], |c| {
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 2});
    });
    assert_eq!(out, "best-effort: prio 2\nbest-effort: prio 2\n");
    let err = refused(&env, "bad", |c| {
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 9});
    });
    assert_eq!(
        err,
        "berth: error: process.ioPriority.priority: 9 is outside 0 (highest) … 7 (lowest)"
    );
}

/// The scheduling policy and nice value of the process whose /proc/PID/stat this is.
fn policy_and_nice(stat: &str) -> (String, String) {
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    // After the name: state is field 3, nice 19, policy 41.
    (fields[41 - 3].to_string(), fields[19 - 3].to_string())
}

#[test]
fn the_scheduler_is_sched_batch_inside() {
    need_root!();
    let env = Env::new("spec13-sched");
    let out = output(&env, "batch", &["cat", "/proc/self/stat"], |c| {
        c["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5});
    });
    // SCHED_BATCH is policy 3.
    assert_eq!(policy_and_nice(&out), ("3".into(), "5".into()));
    let out = output(&env, "other", &["cat", "/proc/self/stat"], |_| {});
    assert_eq!(policy_and_nice(&out), ("0".into(), "0".into()));
    let err = refused(&env, "bad", |c| {
        c["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "priority": 3});
    });
    assert_eq!(
        err,
        "berth: error: process.scheduler.priority: only SCHED_FIFO and SCHED_RR take a priority"
    );
    // The spec's flag names are taken, though oci-spec spells one otherwise.
    let out = output(&env, "flag", &["cat", "/proc/self/stat"], |c| {
        c["process"]["scheduler"] =
            json!({"policy": "SCHED_BATCH", "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
    });
    // cat is a child of nothing here: it is the program, so the policy holds.
    assert_eq!(policy_and_nice(&out).0, "3");
}

#[test]
fn linux32_makes_uname_say_i686() {
    need_root!();
    let env = Env::new("spec13-personality");
    let out = output(&env, "linux32", &["uname", "-m"], |c| {
        c["linux"]["personality"] = json!({"domain": "LINUX32"});
    });
    let expected = match std::env::consts::ARCH {
        "x86_64" => "i686",
        "aarch64" => "armv8l",
        other => other,
    };
    assert_eq!(out.trim(), expected);
    let out = output(&env, "linux", &["uname", "-m"], |c| {
        c["linux"]["personality"] = json!({"domain": "LINUX"});
    });
    assert_eq!(out.trim(), std::env::consts::ARCH);
}

const YEAR: f64 = 365.0 * 24.0 * 3600.0;

fn uptime(text: &str) -> f64 {
    text.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn a_year_of_boottime_offset_shows_in_proc_uptime() {
    need_root!();
    let env = Env::new("spec13-timens");
    let host = uptime(&read(std::path::Path::new("/proc/uptime")));
    assert!(
        host < YEAR,
        "this host has been up a year: the test cannot tell"
    );
    let id = env.id("year");
    let bundle = env.bundle(&id, &["sh", "-c", "cat /proc/uptime; sleep 100"], |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({
            "boottime": {"secs": YEAR as i64, "nanosecs": 0},
            "monotonic": {"secs": 7200}
        });
    });
    let out = env.create(&bundle, &id, &[]);
    env.berth(&["start", &id]).ok();
    wait_until("the uptime", || read(&out).contains('\n'));
    let inside = uptime(&read(&out));
    assert!(
        (YEAR..YEAR + host + 60.0).contains(&inside),
        "uptime inside {inside}, on the host {host}"
    );
    // A process exec'd into the container sees the same clocks.
    let exec = env.berth(&["exec", &id, "cat", "/proc/uptime"]);
    assert!(uptime(exec.ok()) >= YEAR, "{}", exec.stdout);
    // Berth itself went back to the host's time namespace.
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/time")).unwrap();
    assert_ne!(ns(&env.pid(&id).to_string()), ns("self"));
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    // Offsets need a time namespace of the container's own.
    let err = refused(&env, "nons", |c| {
        c["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1}});
    });
    assert_eq!(
        err,
        "berth: error: linux.timeOffsets: offsets need a time namespace of the container's own in linux.namespaces"
    );
}

#[test]
fn a_bind_memory_policy_shows_in_numa_maps() {
    need_root!();
    let env = Env::new("spec13-mempolicy");
    let out = output(&env, "bind", &["cat", "/proc/self/numa_maps"], |c| {
        c["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
    });
    assert!(
        out.lines().any(|l| l.split(' ').nth(1) == Some("bind:0")),
        "{out}"
    );
    let out = output(&env, "default", &["cat", "/proc/self/numa_maps"], |_| {});
    assert!(!out.contains("bind:"), "{out}");
    let err = refused(&env, "nonodes", |c| {
        c["linux"]["memoryPolicy"] = json!({"mode": "MPOL_INTERLEAVE"});
    });
    assert_eq!(
        err,
        "berth: error: linux.memoryPolicy.nodes: MPOL_INTERLEAVE needs at least one node"
    );
    // A node this host does not have: the kernel's refusal is create's error.
    let err = refused(&env, "nonode", |c| {
        c["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "63"});
    });
    assert!(
        err.contains("cannot set linux.memoryPolicy: EINVAL"),
        "{err}"
    );
}

/// The pids.max of a container, read on the host.
fn pids_max(env: &Env, id: &str) -> String {
    runtime_tests::cgroup_dirs(&env.cgroup_path(id))
        .iter()
        .map(|dir| dir.join("pids.max"))
        .find(|f| f.exists())
        .map(|f| read(&f).trim().to_string())
        .expect("a pids.max")
}

#[test]
fn a_pids_limit_of_0_is_a_limit_from_1_3_on() {
    need_root!();
    let env = Env::new("spec13-pids");
    let cases = [
        ("1.3.0", json!({"limit": 0}), "1"),
        ("1.3.0", json!({}), "max"),
        ("1.2.1", json!({"limit": 0}), "max"),
        ("1.3.0", json!({"limit": 5}), "5"),
    ];
    for (version, pids, expected) in cases {
        let id = env.id("pids");
        let bundle = env.bundle(&id, &["sleep", "100"], |c| {
            c["ociVersion"] = version.into();
            c["linux"]["resources"]["pids"] = pids.clone();
        });
        env.create(&bundle, &id, &[]);
        assert_eq!(pids_max(&env, &id), expected, "{version} {pids}");
        env.berth(&["delete", "--force", &id]).ok();
        env.assert_gone(&id);
    }
    // With 0, the program runs but can start nothing.
    let id = env.id("nofork");
    let bundle = env.bundle(&id, &["sh", "-c", "/bin/true; echo forked"], |c| {
        c["linux"]["resources"]["pids"] = json!({"limit": 0});
    });
    let run = env.run(&bundle, &id);
    assert!(run.fails().contains("sh: can't fork"), "{}", run.stderr);
    env.assert_gone(&id);
}

#[test]
fn an_exec_runs_on_its_final_cpus() {
    need_root!();
    let env = Env::new("spec13-affinity");
    let id = env.id("cpus");
    let bundle = env.bundle(&id, &["sleep", "100"], |_| {});
    env.create(&bundle, &id, &[]);
    env.berth(&["start", &id]).ok();
    let process = env.scratch.join("process.json");
    let spec = json!({
        "args": ["grep", "Cpus_allowed_list", "/proc/self/status"], "cwd": "/",
        "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"],
        "execCPUAffinity": {"initial": "0", "final": "0"}
    });
    std::fs::write(&process, spec.to_string()).unwrap();
    let out = env.berth(&["exec", "--process", process.to_str().unwrap(), &id]);
    assert_eq!(out.ok().split_whitespace().last(), Some("0"));
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn a_cpu_list_that_is_not_one_is_refused() {
    need_root!();
    let env = Env::new("spec13-badaffinity");
    // Arabic-Indic digit three: a digit, but no CPU number.
    for list in ["0-", "0,,1", "\u{663}"] {
        let id = env.id("cpus");
        let bundle = env.bundle(&id, &["/bin/true"], |c| {
            c["process"]["execCPUAffinity"] = json!({"initial": list});
        });
        let run = env.run(&bundle, &id);
        let stderr = run.fails();
        assert!(
            stderr.contains("Invalid execCPUAffinity format"),
            "{list}: {stderr}"
        );
        env.assert_gone(&id);
    }
}

#[test]
fn an_impossible_ambient_set_is_warned_about() {
    need_root!();
    let env = Env::new("spec13-ambient");
    let id = env.id("ambient");
    let bundle = env.bundle(&id, &["/bin/true"], |c| {
        c["process"]["capabilities"]["ambient"] = json!(["CAP_KILL"]);
    });
    let run = env.run(&bundle, &id);
    run.ok();
    assert!(
        run.stderr
            .contains("can't raise ambient capability CAP_KILL: operation not permitted"),
        "{}",
        run.stderr
    );
    // The template asks for nothing impossible: no warning.
    let id = env.id("template");
    let bundle = env.bundle(&id, &["/bin/true"], |_| {});
    let run = env.run(&bundle, &id);
    run.ok();
    assert!(!run.stderr.contains("ambient"), "{}", run.stderr);
}

fn apparmor_enabled() -> bool {
    std::path::Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|v| v.starts_with('Y'))
}

/// A profile of our own, loaded for one test and unloaded after it (whatever happens): it lets
/// everything but reading /etc/hostname.
struct TestProfile {
    file: std::path::PathBuf,
}

const PROFILE: &str = "berth-test-spec13";

impl TestProfile {
    fn load(env: &Env) -> TestProfile {
        let file = env.scratch.join("apparmor-profile");
        std::fs::write(
            &file,
            format!(
                "profile {PROFILE} flags=(attach_disconnected,mediate_deleted) {{\n  file,\n  \
                 capability,\n  network,\n  unix,\n  signal,\n  ptrace,\n  \
                 deny /etc/hostname r,\n}}\n"
            ),
        )
        .unwrap();
        let loaded = std::process::Command::new("apparmor_parser")
            .args(["--skip-cache", "--replace"])
            .arg(&file)
            .status()
            .expect("apparmor_parser runs (scripts/install --set vm installs it)");
        assert!(loaded.success(), "apparmor_parser could not load {PROFILE}");
        TestProfile { file }
    }
}

impl Drop for TestProfile {
    fn drop(&mut self) {
        let _ = std::process::Command::new("apparmor_parser")
            .arg("--remove")
            .arg(&self.file)
            .status();
    }
}

#[test]
fn an_apparmor_profile_confines_the_program_or_is_refused() {
    need_root!();
    let env = Env::new("spec13-apparmor");
    if !apparmor_enabled() {
        // As runc: a profile named where AppArmor is absent fails the create.
        let err = refused(&env, "none", |c| {
            c["process"]["apparmorProfile"] = "docker-default".into();
        });
        assert_eq!(
            err,
            "berth: error: process.apparmorProfile is set but AppArmor is not enabled on this host"
        );
        // An empty profile asks for nothing.
        output(&env, "empty", &["/bin/true"], |c| {
            c["process"]["apparmorProfile"] = "".into()
        });
        return;
    }
    // Where AppArmor runs: the program runs in the profile, which holds, for exec'd processes
    // too; without one it is unconfined; an unknown profile fails the create.
    let _profile = TestProfile::load(&env);
    let args = [
        "sh",
        "-c",
        "cat /proc/self/attr/current; cat /etc/hostname || echo denied",
    ];
    let out = output(&env, "confined", &args, |c| {
        c["process"]["apparmorProfile"] = PROFILE.into();
    });
    assert_eq!(out, format!("{PROFILE} (enforce)\ndenied\n"));
    let out = output(&env, "unconfined", &args, |_| {});
    assert_eq!(out, "unconfined\nberth\n");
    let id = env.id("exec");
    let bundle = env.bundle(&id, &["sleep", "100"], |c| {
        c["process"]["apparmorProfile"] = PROFILE.into();
    });
    env.create(&bundle, &id, &[]);
    let exec = env.berth(&["exec", &id, "cat", "/proc/self/attr/current"]);
    assert_eq!(exec.ok(), format!("{PROFILE} (enforce)\n"));
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    let err = refused(&env, "unknown", |c| {
        c["process"]["apparmorProfile"] = "no-such-profile-spec13".into();
    });
    assert!(
        err.contains("cannot apply process.apparmorProfile \"no-such-profile-spec13\""),
        "{err}"
    );
}

#[test]
fn selinux_labels_are_refused_where_selinux_is_absent() {
    need_root!();
    if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        runtime_tests::skip(module_path!(), "SELinux is enabled on this host");
        return;
    }
    let env = Env::new("spec13-selinux");
    let err = refused(&env, "process", |c| {
        c["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0".into();
    });
    assert_eq!(
        err,
        "berth: error: process.selinuxLabel is set but SELinux is not enabled on this host"
    );
    let err = refused(&env, "mount", |c| {
        c["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0".into();
    });
    assert_eq!(
        err,
        "berth: error: linux.mountLabel is set but SELinux is not enabled on this host"
    );
}
