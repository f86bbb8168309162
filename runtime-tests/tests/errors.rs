//! Bad input: each mistake gets the one sentence a person reads, a non-zero exit, and leaves
//! nothing behind (no state folder, cgroup or process); with `--log-format json` the error is a
//! JSON line in the log file, as containerd reads it.

use runtime_tests::{join_namespace, need_root, process_gone, read, Env};
use serde_json::Value;

/// Asserts that `create` of the bundle made by `edit` (then `mangle`d on disk) fails with
/// `berth: error: MESSAGE`, where `{bundle}` in the message stands for the bundle's path, and that it
/// leaves nothing behind.
#[track_caller]
fn create_fails(
    env: &Env,
    tag: &str,
    edit: impl FnOnce(&mut Value),
    mangle: impl FnOnce(&std::path::Path),
    message: &str,
) {
    let id = env.id(tag);
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], edit);
    mangle(&bundle);
    let run = env.berth(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
    let expected = format!(
        "berth: error: {}",
        message.replace("{bundle}", bundle.to_str().unwrap())
    );
    assert_eq!(run.fails().trim(), expected, "{tag}");
    assert_eq!(run.stdout, "", "{tag}");
    env.assert_gone(&id);
    env.assert_root_empty();
}

fn keep(_: &std::path::Path) {}

#[test]
fn a_bad_config_json_is_refused_before_anything_is_made() {
    need_root!();
    let env = Env::new("errors-config");
    let remove = |b: &std::path::Path| std::fs::remove_file(b.join("config.json")).unwrap();
    create_fails(
        &env,
        "missing",
        |_| {},
        remove,
        "cannot read {bundle}/config.json: No such file or directory (os error 2)",
    );
    let truncate = |b: &std::path::Path| {
        std::fs::write(
            b.join("config.json"),
            "{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": {",
        )
        .unwrap()
    };
    create_fails(
        &env,
        "truncated",
        |_| {},
        truncate,
        "{bundle}/config.json is not a valid runtime spec: EOF while parsing an object at line 3 column 14",
    );
    let wrong_type = |b: &std::path::Path| {
        let text = "{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": {\"cwd\": \"/\", \"args\": \"sh\"}\n}\n";
        std::fs::write(b.join("config.json"), text).unwrap()
    };
    create_fails(
        &env,
        "wrong-type",
        |_| {},
        wrong_type,
        "{bundle}/config.json is not a valid runtime spec: invalid type: string \"sh\", expected a sequence at line 3 column 38",
    );
    create_fails(
        &env,
        "version",
        |c| c["ociVersion"] = "2.0.0".into(),
        keep,
        "unsupported ociVersion \"2.0.0\": berth supports 1.0.0 and every later 1.x version",
    );
    create_fails(
        &env,
        "no-root",
        |c| {
            c.as_object_mut().unwrap().remove("root");
        },
        keep,
        "config.json has no \"root\" section",
    );
    create_fails(
        &env,
        "no-process",
        |c| {
            c.as_object_mut().unwrap().remove("process");
        },
        keep,
        "config.json has no \"process\" section",
    );
    create_fails(
        &env,
        "no-args",
        |c| {
            c["process"].as_object_mut().unwrap().remove("args");
        },
        keep,
        "process.args must name a program",
    );
    create_fails(
        &env,
        "empty-args",
        |c| c["process"]["args"] = serde_json::json!([]),
        keep,
        "process.args must name a program",
    );
    create_fails(
        &env,
        "no-rootfs",
        |c| c["root"]["path"] = "rootfs-that-is-not-there".into(),
        keep,
        "root.path \"rootfs-that-is-not-there\" does not exist (resolved to {bundle}/rootfs-that-is-not-there)",
    );
    create_fails(
        &env,
        "no-namespace",
        |c| join_namespace(c, "network", "/run/netns/berth-no-such-namespace"),
        keep,
        "linux.namespaces: the network namespace path /run/netns/berth-no-such-namespace does not exist",
    );
    create_fails(
        &env,
        "relative-cwd",
        |c| c["process"]["cwd"] = "tmp".into(),
        keep,
        "process.cwd \"tmp\" must be an absolute path",
    );
    // runtime-spec: "If set, timeout MUST be greater than zero".
    create_fails(
        &env,
        "hook-timeout",
        |c| c["hooks"] = serde_json::json!({"poststart": [{"path": "/bin/true", "timeout": 0}]}),
        keep,
        "hooks.poststart[0].timeout is 0: it must be greater than zero",
    );
}

#[test]
fn a_program_that_cannot_run_fails_create() {
    need_root!();
    let env = Env::new("errors-program");
    create_fails(
        &env,
        "missing",
        |c| c["process"]["args"] = serde_json::json!(["/bin/not-there"]),
        keep,
        &format!(
            "container {:?} could not be created: cannot run \"/bin/not-there\": /bin/not-there: No such file or directory (os error 2)",
            env.id("missing")
        ),
    );
    create_fails(
        &env,
        "cwd",
        |c| c["process"]["cwd"] = "/not/there".into(),
        keep,
        &format!(
            "container {:?} could not be created: cannot change to the working directory /not/there: ENOENT: No such file or directory",
            env.id("cwd")
        ),
    );
}

#[test]
fn ids_that_exist_or_are_not_names_are_refused() {
    need_root!();
    let env = Env::new("errors-ids");
    let id = env.id("taken");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    let b = bundle.to_str().unwrap();
    env.create(&bundle, &id, &[]);
    let pid = env.pid(&id);
    let err = env
        .berth(&["create", "--bundle", b, &id])
        .fails()
        .to_string();
    assert_eq!(
        err.trim(),
        format!("berth: error: container {id:?} already exists")
    );
    // The first container is untouched.
    assert_eq!(env.state(&id)["status"], "created");
    assert_eq!(env.pid(&id), pid);
    env.berth(&["delete", &id]).ok();
    assert!(process_gone(pid));

    for bad in ["a/b", "..", "../escape", ".hidden", "with space"] {
        let err = env
            .berth(&["create", "--bundle", b, bad])
            .fails()
            .to_string();
        assert_eq!(
            err.trim(),
            format!(
                "berth: error: container id {bad:?} may hold only letters, digits and _ + - . and must not start with '.'"
            )
        );
    }
    env.assert_root_empty();
    assert!(!env.scratch.join("escape").exists());
    assert!(!env.root.parent().unwrap().join("escape").exists());
}

#[test]
fn commands_on_missing_containers_and_bad_signals_are_refused() {
    need_root!();
    let env = Env::new("errors-commands");
    let ghost = env.id("ghost");
    for command in ["state", "start", "kill", "delete"] {
        let err = env.berth(&[command, &ghost]).fails().to_string();
        assert_eq!(
            err.trim(),
            format!("berth: error: container {ghost:?} does not exist"),
            "{command}"
        );
    }
    let id = env.id("target");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    let out = env.create(&bundle, &id, &[]);
    env.berth(&["start", &id]).ok();
    for signal in ["FLY", "99", "SIGNOPE", "0x9"] {
        let err = env.berth(&["kill", &id, signal]).fails().to_string();
        assert_eq!(
            err.trim(),
            format!("berth: error: {signal:?} is not a signal")
        );
    }
    // None of them reached the container.
    assert_eq!(env.state(&id)["status"], "running");
    assert_eq!(read(&out), "pausing\n");
}

#[test]
fn json_logs_carry_the_error_as_containerd_reads_it() {
    need_root!();
    let env = Env::new("errors-json");
    let log = env.scratch.join("berth.log");
    let id = env.id("json");
    let bundle = env.bundle(&id, &["/bin/true"], |c| c["ociVersion"] = "0.9.0".into());
    let b = bundle.to_str().unwrap();
    let l = log.to_str().unwrap();
    let run = env.berth(&[
        "--log",
        l,
        "--log-format",
        "json",
        "create",
        "--bundle",
        b,
        &id,
    ]);
    run.fails();
    let ghost = env.id("ghost");
    env.berth(&["--log", l, "--log-format", "json", "delete", &ghost])
        .fails();
    let lines: Vec<Value> = read(&log)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each log line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let messages = [
        "unsupported ociVersion \"0.9.0\": berth supports 1.0.0 and every later 1.x version"
            .to_string(),
        format!("container {ghost:?} does not exist"),
    ];
    for (line, msg) in lines.iter().zip(messages) {
        assert_eq!(line["level"], "error");
        assert_eq!(line["msg"], msg.as_str());
        let time = line["time"].as_str().unwrap();
        // RFC 3339 in UTC: 2026-11-29T01:02:03.123456789Z
        assert_eq!(time.len(), 30, "{time}");
        assert_eq!(
            (&time[4..5], &time[10..11], &time[29..]),
            ("-", "T", "Z"),
            "{time}"
        );
    }
    env.assert_root_empty();
}

#[test]
fn a_failure_says_error_on_stderr_and_in_every_log_format() {
    need_root!();
    let env = Env::new("errors-level");
    let ghost = env.id("ghost");
    let msg = format!("container {ghost:?} does not exist");
    // The person at a terminal: one sentence, with the level a tool can find.
    let plain = env.berth(&["state", &ghost]);
    assert_eq!(plain.fails().trim(), format!("berth: error: {msg}"));
    // JSON on stderr when there is no log file.
    let json = env.berth(&["--log-format", "json", "state", &ghost]);
    let line: Value = serde_json::from_str(json.fails().trim()).expect("one JSON line");
    assert_eq!(
        (line["level"].as_str(), line["msg"].as_str()),
        (Some("error"), Some(msg.as_str()))
    );
    // A text log file gets logrus's `level=error`, and stderr still the sentence.
    let log = env.scratch.join("text.log");
    let l = log.to_str().unwrap();
    let text = env.berth(&["--log", l, "--log-format", "text", "state", &ghost]);
    assert_eq!(text.fails().trim(), format!("berth: error: {msg}"));
    let logged = read(&log);
    assert!(
        logged.contains(&format!("level=error msg={msg:?}")),
        "{logged}"
    );
    env.assert_root_empty();
}

#[test]
fn the_log_file_names_each_container_made_started_and_removed() {
    need_root!();
    let env = Env::new("errors-info");
    let log = env.scratch.join("berth.log");
    let l = log.to_str().unwrap();
    let id = env.id("info");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    let b = bundle.to_str().unwrap();
    let json = ["--log", l, "--log-format", "json"];
    let with_log = |args: &[&str]| env.berth(&[&json[..], args].concat());
    with_log(&["create", "--bundle", b, &id]).ok();
    let pid = env.pid(&id);
    with_log(&["start", &id]).ok();
    with_log(&["kill", &id, "KILL"]).ok();
    env.wait_for_status(&id, "stopped");
    // What engines read back as errors is unchanged: these lines are info, and stderr is empty.
    let deleted = with_log(&["delete", &id]);
    assert_eq!(deleted.ok(), "");
    assert_eq!(deleted.stderr, "");
    let lines: Vec<(String, String)> = read(&log)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("each log line is JSON");
            (
                v["level"].as_str().unwrap().to_string(),
                v["msg"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let info = |msg: String| ("info".to_string(), msg);
    assert_eq!(
        lines,
        vec![
            info(format!(
                "created container {id:?} from bundle {b}, init pid {pid}"
            )),
            info(format!("started container {id:?}")),
            info(format!("sent signal SIGKILL to container {id:?}")),
            info(format!("deleted container {id:?}")),
        ]
    );
    env.assert_root_empty();
}
