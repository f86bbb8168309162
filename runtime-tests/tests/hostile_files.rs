//! Hostile files: a `config.json`, an `exec --process` file, a namespace path or the image's
//! `/etc/passwd` that is a device without end (`/dev/zero`), a FIFO nobody writes, or far too
//! large. berth must fail at once with an error naming the file, with its memory bounded, and
//! leave nothing behind; never read without end or wait forever.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime_tests::{need_root, read, rootfs, Env, Run, PATIENCE};
use serde_json::Value;

/// What a berth command did, with its peak resident memory in KiB (from wait4's rusage).
struct Measured {
    run: Run,
    peak_kib: i64,
}

/// Runs `berth ARGS…`, killing it (and failing the test) if it outlasts PATIENCE.
// wait4, not Child::wait, reaps it: only wait4 reports the child's own peak memory.
#[allow(clippy::zombie_processes)]
fn berth_measured(env: &Env, args: &[&str]) -> Measured {
    let out = env.scratch.join("measured.out");
    let err = env.scratch.join("measured.err");
    let child = env
        .berth_command(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("berth starts");
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data that wait4 fills in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our child; status and usage are valid for the call.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            return Measured {
                run: Run {
                    code: if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        -1
                    },
                    stdout: read(&out),
                    stderr: read(&err),
                },
                peak_kib: usage.ru_maxrss,
            };
        }
        if Instant::now() > deadline {
            // SAFETY: ends our own child, then reaps it.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("berth {args:?} still ran after {PATIENCE:?}: it waits or reads without end");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Far above berth's own footprint (a few MiB), far below what reading /dev/zero costs.
const PEAK_KIB: i64 = 64 << 10;

fn fifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

fn symlink(target: &str, path: &Path) {
    let _ = std::fs::remove_file(path);
    std::os::unix::fs::symlink(target, path).unwrap();
}

#[test]
fn a_config_json_that_is_a_device_a_fifo_or_huge_fails_at_once() {
    need_root!();
    let env = Env::new("hostile-config");
    let id = env.id("config");
    let bundle = env.bundle(&id, &["true"], |_| {});
    let config = bundle.join("config.json");
    let b = bundle.to_str().unwrap();
    type Make = fn(&Path);
    let cases: [(&str, Make, String); 3] = [
        (
            "/dev/zero",
            |p| symlink("/dev/zero", p),
            format!(
                "{} is not a regular file but a character device",
                config.display()
            ),
        ),
        (
            "fifo",
            |p| fifo(p),
            format!("{} is not a regular file but a FIFO", config.display()),
        ),
        (
            "sparse 1 TiB",
            |p| {
                let _ = std::fs::remove_file(p);
                let file = std::fs::File::create(p).unwrap();
                file.set_len(1 << 40).unwrap();
            },
            format!(
                "{} is larger than 16 MiB, the most berth reads of it",
                config.display()
            ),
        ),
    ];
    for (what, make, message) in cases {
        make(&config);
        let measured = berth_measured(&env, &["create", "--bundle", b, &id]);
        assert_eq!(
            measured.run.fails().trim(),
            format!("berth: error: {message}"),
            "{what}"
        );
        assert!(
            measured.peak_kib < PEAK_KIB,
            "{what}: berth peaked at {} KiB",
            measured.peak_kib
        );
        env.assert_gone(&id);
        env.assert_root_empty();
        // `run` reads the same file the same way.
        let run = berth_measured(&env, &["run", "--bundle", b, &id]);
        assert_eq!(run.run.fails().trim(), format!("berth: error: {message}"));
    }
}

#[test]
fn a_namespace_path_that_is_a_fifo_or_a_device_is_refused_without_opening_it() {
    need_root!();
    let env = Env::new("hostile-nspath");
    let path = env.scratch.join("ns-fifo");
    fifo(&path);
    for (target, kind) in [
        (path.to_str().unwrap(), "a FIFO"),
        ("/dev/zero", "a character device"),
    ] {
        let id = env.id("ns");
        let bundle = env.bundle(&id, &["true"], |c| {
            runtime_tests::join_namespace(c, "ipc", target)
        });
        let measured = berth_measured(&env, &["create", "--bundle", bundle.to_str().unwrap(), &id]);
        let err = measured.run.fails().trim().to_string();
        assert!(
            err.ends_with(&format!(
                "{target} is not a regular file but {kind}, so it cannot be the ipc namespace"
            )),
            "{err}"
        );
        env.assert_gone(&id);
    }
    env.assert_root_empty();
}

/// A private copy of the test root filesystem whose /etc/passwd the test replaces.
fn rootfs_copy(env: &Env) -> PathBuf {
    let copy = env.scratch.join("rootfs");
    let status = Command::new("cp")
        .arg("-a")
        .arg(rootfs())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a of the root filesystem");
    copy
}

#[test]
fn an_image_passwd_that_is_a_device_or_a_fifo_fails_create_unless_home_is_set() {
    need_root!();
    let env = Env::new("hostile-passwd");
    let rootfs = rootfs_copy(&env);
    let passwd = rootfs.join("etc/passwd");
    let use_rootfs = |c: &mut Value| {
        c["root"]["path"] = Value::from(rootfs.to_str().unwrap());
    };
    for (what, kind) in [("/dev/zero", "a character device"), ("fifo", "a FIFO")] {
        if what == "fifo" {
            fifo(&passwd);
        } else {
            symlink(what, &passwd);
        }
        // runc reads /dev/zero until its line scanner gives up, and waits on a FIFO forever;
        // berth refuses at once, naming the file and why it was read.
        let id = env.id("nohome");
        let bundle = env.bundle(&id, &["/bin/helper", "env"], use_rootfs);
        let measured = berth_measured(&env, &["create", "--bundle", bundle.to_str().unwrap(), &id]);
        let err = measured.run.fails().trim().to_string();
        assert_eq!(
            err,
            format!(
                "berth: error: container {id:?} could not be created: cannot find HOME for uid 0 \
                 (process.env sets none): /etc/passwd is not a regular file but {kind}"
            ),
            "{what}"
        );
        env.assert_gone(&id);

        // With HOME set, nothing reads /etc/passwd: the container runs.
        let id = env.id("home");
        let bundle = env.bundle(&id, &["/bin/helper", "env"], |c| {
            use_rootfs(c);
            c["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push("HOME=/root".into());
        });
        let out = env.run(&bundle, &id).ok().to_string();
        assert!(out.lines().any(|l| l == "HOME=/root"), "{what}: {out}");

        // exec reads the container's /etc/passwd for a process without HOME: it fails too,
        // and leaves the container running.
        let id = env.id("exec");
        let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
            use_rootfs(c);
            c["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push("HOME=/root".into());
        });
        env.create(&bundle, &id, &[]);
        env.berth(&["start", &id]).ok();
        let process = env.scratch.join("process.json");
        std::fs::write(
            &process,
            r#"{"args":["/bin/helper","env"],"cwd":"/","user":{"uid":0,"gid":0}}"#,
        )
        .unwrap();
        let exec = berth_measured(&env, &["exec", "--process", process.to_str().unwrap(), &id]);
        assert_eq!(
            exec.run.fails().trim(),
            format!(
                "berth: error: cannot exec in container {id:?}: cannot find HOME for uid 0 \
                 (process.env sets none): /etc/passwd is not a regular file but {kind}"
            ),
            "{what}"
        );
        assert_eq!(env.state(&id)["status"], "running");
        env.berth(&["delete", "--force", &id]).ok();
    }
    env.assert_root_empty();
}

#[test]
fn an_exec_process_file_that_is_a_device_or_a_fifo_fails_at_once() {
    need_root!();
    let env = Env::new("hostile-process");
    let id = env.id("proc");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    env.create(&bundle, &id, &[]);
    let process = env.scratch.join("process.json");
    for (make, kind) in [
        (symlink as fn(&str, &Path), "a character device"),
        (|_: &str, p: &Path| fifo(p), "a FIFO"),
    ] {
        make("/dev/zero", &process);
        let measured = berth_measured(&env, &["exec", "--process", process.to_str().unwrap(), &id]);
        assert_eq!(
            measured.run.fails().trim(),
            format!(
                "berth: error: {} is not a regular file but {kind}",
                process.display()
            )
        );
        assert!(measured.peak_kib < PEAK_KIB, "{}", measured.peak_kib);
    }
    assert_eq!(env.state(&id)["status"], "created");
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_root_empty();
}
