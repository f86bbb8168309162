//! Hostile bundles: root filesystems whose symlinks and device nodes try to lead berth out of
//! them, path traversal in ids, `--root` and `cgroupsPath`, and absurd values. Each must fail with
//! an error naming what is wrong and leave nothing behind, or run confined with the host untouched.

use std::path::{Path, PathBuf};
use std::process::Command;

use runtime_tests::{cgroup_dirs, need_root, rootfs, Env};
use serde_json::{json, Value};

/// A private copy of the test root filesystem that a test may make hostile.
fn hostile_rootfs(env: &Env) -> PathBuf {
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

fn use_rootfs(config: &mut Value, rootfs: &Path) {
    config["root"]["path"] = Value::from(rootfs.to_str().unwrap());
    config["root"]["readonly"] = Value::from(false);
}

/// Runs `create` on `bundle`, which must fail with `expected` in its message and leave nothing.
#[track_caller]
fn create_fails(env: &Env, bundle: &Path, id: &str, expected: &str) {
    let err = env
        .berth(&["create", "--bundle", bundle.to_str().unwrap(), id])
        .fails()
        .to_string();
    assert!(err.contains(expected), "{err:?} should say {expected:?}");
    env.assert_gone(id);
}

fn replace_with_symlink(path: &Path, target: &str) {
    let _ = std::fs::remove_dir_all(path);
    let _ = std::fs::remove_file(path);
    std::os::unix::fs::symlink(target, path).unwrap();
}

#[test]
fn proc_or_sys_symlinked_out_of_the_root_is_refused() {
    need_root!();
    let env = Env::new("hostile-proc");
    let rootfs = hostile_rootfs(&env);
    for (dir, target, fstype) in [
        ("proc", "/", "proc"),
        ("sys", "../../../../../sys", "sysfs"),
    ] {
        replace_with_symlink(&rootfs.join(dir), target);
        let id = env.id(dir);
        let bundle = env.bundle(&id, &["true"], |c| use_rootfs(c, &rootfs));
        let expected = format!(
            "/{dir} must be a real directory inside the root filesystem to mount {fstype} on it"
        );
        create_fails(&env, &bundle, &id, &expected);
        std::fs::remove_file(rootfs.join(dir)).unwrap();
        std::fs::create_dir(rootfs.join(dir)).unwrap();
    }
}

#[test]
fn symlinked_mount_targets_and_dotdot_destinations_stay_inside() {
    need_root!();
    let env = Env::new("hostile-mounts");
    let rootfs = hostile_rootfs(&env);
    // The image points /data at a host folder by its absolute path, and a relative link climbs.
    let outside = env.scratch.join("outside");
    std::fs::create_dir(&outside).unwrap();
    replace_with_symlink(&rootfs.join("data"), outside.to_str().unwrap());
    replace_with_symlink(&rootfs.join("up"), "../../../../../../..");
    let hosts = env.scratch.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 bound\n").unwrap();
    let escape = format!("/../../../..{}/escape", env.scratch.display());
    let id = env.id("mounts");
    let script = "ls /data; cat /data/hosts; ls -d /up/climbed";
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        use_rootfs(c, &rootfs);
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/data/tmp", "type": "tmpfs", "source": "tmpfs"}));
        mounts.push(json!({"destination": "/data/hosts", "type": "bind",
                           "source": hosts, "options": ["rbind", "ro"]}));
        mounts.push(json!({"destination": "/up/climbed", "type": "tmpfs", "source": "tmpfs"}));
        mounts.push(json!({"destination": escape, "type": "tmpfs", "source": "tmpfs"}));
    });
    let out = env.run(&bundle, &id);
    assert_eq!(
        out.stdout, "hosts\ntmp\n127.0.0.1 bound\n/up/climbed\n",
        "{}",
        out.stderr
    );
    env.assert_gone(&id);
    // Nothing was made on the host: the targets were made inside the root filesystem.
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!env.scratch.join("escape").exists());
    assert!(!Path::new("/climbed").exists());
    let inside = rootfs.join(outside.strip_prefix("/").unwrap());
    assert!(inside.join("tmp").is_dir() && inside.join("hosts").is_file());
    assert!(rootfs.join("climbed").is_dir());
    assert!(rootfs
        .join(env.scratch.strip_prefix("/").unwrap())
        .join("escape")
        .is_dir());
}

#[test]
fn a_dev_null_that_is_not_the_null_device_is_never_used_to_mask() {
    need_root!();
    let env = Env::new("hostile-devnull");
    let rootfs = hostile_rootfs(&env);
    let core_pattern = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
    // Without berth's tmpfs on /dev the image's own /dev is used; its /dev/null is a symlink to
    // a host-wide sysctl file, then a block device node of the host's disk.
    let dev = rootfs.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    let null = dev.join("null");
    let cases: [&dyn Fn(); 2] = [
        &|| replace_with_symlink(&null, "/proc/sys/kernel/core_pattern"),
        &|| {
            let _ = std::fs::remove_file(&null);
            let path = std::ffi::CString::new(null.to_str().unwrap()).unwrap();
            // SAFETY: a valid path; the node is made in the test's own copy of the image.
            let rc =
                unsafe { libc::mknod(path.as_ptr(), libc::S_IFBLK | 0o666, libc::makedev(7, 0)) };
            assert_eq!(rc, 0);
        },
    ];
    for (n, make_hostile) in cases.iter().enumerate() {
        make_hostile();
        let id = env.id(&format!("null{n}"));
        let bundle = env.bundle(&id, &["true"], |c| {
            use_rootfs(c, &rootfs);
            c["mounts"]
                .as_array_mut()
                .unwrap()
                .retain(|m| m["destination"] != "/dev");
        });
        create_fails(&env, &bundle, &id, "/dev/null is not the device 1:3");
    }
    assert_eq!(
        std::fs::read("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
}

#[test]
fn ids_with_path_traversal_are_refused_by_every_command() {
    need_root!();
    let env = Env::new("hostile-ids");
    let id = env.id("ok");
    let bundle = env.bundle(&id, &["true"], |_| {});
    let b = bundle.to_str().unwrap();
    let long = "a".repeat(201);
    for bad in [
        "../escape",
        "..",
        ".",
        "a/b",
        "/etc",
        ".hidden",
        "x\ny",
        &long,
    ] {
        for args in [
            vec!["create", "--bundle", b, bad],
            vec!["run", "--bundle", b, bad],
            vec!["start", bad],
            vec!["state", bad],
            vec!["kill", bad],
            vec!["delete", "--force", bad],
            vec!["exec", bad, "true"],
        ] {
            let err = env.berth(&args).fails().to_string();
            assert!(
                err.starts_with("berth: error: container id"),
                "{args:?}: {err}"
            );
        }
    }
    let err = env
        .berth(&["create", "--bundle", b, ""])
        .fails()
        .to_string();
    assert!(err.contains("container id must not be empty"), "{err}");
    // Nothing was made, inside the root or beside it.
    assert!(env.containers().is_empty(), "{:?}", env.containers());
    assert!(!env.scratch.join("escape").exists());
    assert!(Path::new("/etc/passwd").exists());
}

#[test]
fn a_root_with_dotdot_or_writable_by_others_is_refused() {
    need_root!();
    let env = Env::new("hostile-root");
    let id = env.id("r");
    let bundle = env.bundle(&id, &["true"], |_| {});
    let b = bundle.to_str().unwrap();
    let sneaky = format!("{}/x/../../escape", env.scratch.display());
    let mut cmd = Command::new(runtime_tests::berth_bin());
    cmd.args(["--root", &sneaky, "run", "--bundle", b, &id]);
    let out = runtime_tests::run_to_files(&mut cmd, &env.scratch);
    assert!(
        out.fails().contains("must not contain '..'"),
        "{}",
        out.stderr
    );
    assert!(!env.scratch.parent().unwrap().join("escape").exists());

    let open = env.scratch.join("open-root");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut cmd = Command::new(runtime_tests::berth_bin());
    cmd.arg("--root")
        .arg(&open)
        .args(["run", "--bundle", b, &id]);
    let out = runtime_tests::run_to_files(&mut cmd, &env.scratch);
    assert!(
        out.fails().contains("is writable by others (mode 777)"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);

    // The root berth makes is its own: mode 0700, and so is each container's folder.
    env.berth(&["create", "--bundle", b, &id]).ok();
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(&env.root), 0o700);
    assert_eq!(mode(&env.root.join(&id)), 0o700);
}

#[test]
fn cgroups_path_traversal_is_refused() {
    need_root!();
    let env = Env::new("hostile-cgroup");
    for (n, path) in [
        "/../../escape-berth-test",
        "../escape-berth-test",
        "/a/../../escape-berth-test",
    ]
    .into_iter()
    .enumerate()
    {
        let id = env.id(&format!("cg{n}"));
        let bundle = env.bundle(&id, &["true"], |c| {
            c["linux"]["cgroupsPath"] = Value::from(path);
        });
        create_fails(
            &env,
            &bundle,
            &id,
            &format!("cgroupsPath {path:?} is not a valid cgroup path"),
        );
    }
    for dir in cgroup_dirs("/escape-berth-test") {
        assert!(!dir.exists(), "{} was made", dir.display());
    }
}

#[test]
fn host_wide_sysctls_are_refused() {
    need_root!();
    let env = Env::new("hostile-sysctl");
    let core_pattern = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
    let cases = [
        ("kernel.core_pattern", "is not namespaced"),
        ("net/../../kernel/core_pattern", "is not a sysctl name"),
        ("kernel..core_pattern", "is not a sysctl name"),
        (
            "net.ipv4.ip_forward",
            "would change the host's network namespace",
        ),
    ];
    for (n, (key, reason)) in cases.into_iter().enumerate() {
        let id = env.id(&format!("sysctl{n}"));
        let bundle = env.bundle(&id, &["true"], |c| {
            c["linux"]["sysctl"] = json!({ key: "|/tmp/owned %p" });
            if key.starts_with("net.") {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|ns| ns["type"] != "network");
            }
        });
        create_fails(
            &env,
            &bundle,
            &id,
            &format!("linux.sysctl {key:?}: {reason}"),
        );
    }
    assert_eq!(
        std::fs::read("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
}

#[test]
fn absurd_values_fail_clearly_and_leave_nothing() {
    need_root!();
    let env = Env::new("hostile-absurd");
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, &str); 9] = [
        (
            "uid",
            |c| c["process"]["user"]["uid"] = json!(4294967295u32),
            "process.user.uid 4294967295 is not a valid id",
        ),
        (
            "gid",
            |c| c["process"]["user"]["additionalGids"] = json!([4294967295u32]),
            "process.user.additionalGids 4294967295 is not a valid id",
        ),
        (
            "device",
            |c| {
                c["linux"]["devices"] =
                    json!([{"path": "/dev/../../etc/shadow", "type": "c", "major": 1, "minor": 3}])
            },
            "linux.devices[0].path \"/dev/../../etc/shadow\" must be an absolute path without '..'",
        ),
        (
            "hostname",
            |c| c["hostname"] = json!("h".repeat(300)),
            "cannot set the hostname",
        ),
        (
            "rlimit",
            |c| {
                c["process"]["rlimits"] =
                    json!([{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}])
            },
            "the soft limit of RLIMIT_NOFILE is above its hard limit",
        ),
        (
            "nofile",
            |c| {
                c["process"]["rlimits"] =
                    json!([{"type": "RLIMIT_NOFILE", "soft": 1048576, "hard": 1048576}])
            },
            "cannot set process.rlimits RLIMIT_NOFILE to soft 1048576",
        ),
        (
            "oom",
            |c| c["process"]["oomScoreAdj"] = json!(5000),
            "cannot set process.oomScoreAdj to 5000",
        ),
        (
            "nsfile",
            |c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "ipc", "path": "/etc/hostname"}))
            },
            "linux.namespaces lists \"ipc\" twice",
        ),
        (
            "nul",
            |c| c["process"]["args"] = json!(["/bin/echo\u{0}x"]),
            "process.args holds a NUL byte",
        ),
    ];
    for (tag, edit, expected) in cases {
        let id = env.id(tag);
        let bundle = env.bundle(&id, &["true"], edit);
        create_fails(&env, &bundle, &id, expected);
    }
    // A namespace path that is not a namespace.
    let id = env.id("notns");
    let bundle = env.bundle(&id, &["true"], |c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "ipc" {
                ns["path"] = json!("/etc/hostname");
            }
        }
    });
    create_fails(
        &env,
        &bundle,
        &id,
        "cannot join the ipc namespace /etc/hostname",
    );
}

/// The image ships a device node of the host's disk: with CAP_MKNOD or not, the device rules
/// (deny all, allow the defaults) must keep the container from opening it.
#[test]
fn a_device_node_of_the_host_disk_in_the_image_cannot_be_opened() {
    need_root!();
    let env = Env::new("hostile-disk");
    let rootfs = hostile_rootfs(&env);
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").unwrap().dev();
    let node = std::ffi::CString::new(rootfs.join("disk").to_str().unwrap()).unwrap();
    // SAFETY: a valid path in the test's own copy of the image.
    let rc = unsafe { libc::mknod(node.as_ptr(), libc::S_IFBLK | 0o666, dev) };
    assert_eq!(rc, 0);
    let id = env.id("disk");
    // At most one sector is read, should the rules be missing.
    let bundle = env.bundle(&id, &["sh", "-c", "head -c 512 /disk | wc -c"], |c| {
        use_rootfs(c, &rootfs)
    });
    let out = env.run(&bundle, &id);
    assert_eq!(out.stdout, "0\n");
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
}

/// Runs `berth --root ROOT ARGS…` (not the test's own root).
fn berth_in(env: &Env, root: &Path, args: &[&str]) -> runtime_tests::Run {
    let mut cmd = Command::new(runtime_tests::berth_bin());
    cmd.arg("--root").arg(root).args(args);
    runtime_tests::run_to_files(&mut cmd, &env.scratch)
}

/// A `--root` that someone else can write to holds state that is not berth's: whoever planted
/// a container's state there (a poststop hook, a cgroup to kill and remove) would have berth act
/// on it as root. Every command that reads the folder refuses it, not only `create`: a folder
/// of another user's (mode 0700, as that user would make it), and one writable by all.
#[test]
fn a_root_of_another_user_or_writable_by_others_is_never_read() {
    need_root!();
    let env = Env::new("hostile-owner");
    let id = env.id("planted");
    let bundle = env.bundle(&id, &["true"], |_| {});
    env.berth(&["create", "--bundle", bundle.to_str().unwrap(), &id])
        .ok();
    let marker = env.scratch.join("hook-ran");
    let mut state: Value = serde_json::from_str(
        &std::fs::read_to_string(env.root.join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    env.berth(&["delete", "--force", &id]).ok();
    state["status"] = json!("stopped");
    state["hooks"] = json!({"poststop": [{"path": "/bin/sh",
        "args": ["sh", "-c", format!("touch {}", marker.display())]}]});

    for (name, owner, mode) in [("others", 65534, 0o700), ("open", 0, 0o777)] {
        let root = env.scratch.join(name);
        std::fs::create_dir_all(root.join(&id)).unwrap();
        std::fs::write(root.join(&id).join("state.json"), state.to_string()).unwrap();
        for path in [root.join(&id), root.clone()] {
            std::os::unix::fs::chown(&path, Some(owner), Some(owner)).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap();
        }
        let expected = match owner {
            0 => "is writable by others (mode 777)".to_string(),
            _ => format!("belongs to uid {owner}, not to berth's user (0)"),
        };
        for args in [
            vec!["delete", &id],
            vec!["delete", "--force", &id],
            vec!["state", &id],
            vec!["kill", &id, "KILL"],
            vec!["list"],
        ] {
            let err = berth_in(&env, &root, &args).fails().to_string();
            assert!(err.contains(&expected), "{args:?}: {err}");
        }
        assert!(!marker.exists(), "berth ran the planted poststop hook");
        assert!(root.join(&id).join("state.json").exists());
    }
}

/// The pid file goes where berth's caller says; whoever can write into that folder could
/// have put a symlink where berth writes its temporary sibling (`PIDFILE.tmp`), and berth, as
/// root, would truncate and write the file it leads to. runc makes its sibling with O_EXCL.
#[test]
fn a_pid_file_never_writes_through_a_planted_symlink() {
    need_root!();
    let env = Env::new("hostile-pidfile");
    let id = env.id("pidfile");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    let victim = env.scratch.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let dir = env.scratch.join("pids");
    std::fs::create_dir(&dir).unwrap();
    for name in ["init.pid.tmp", "exec.pid.tmp"] {
        std::os::unix::fs::symlink(&victim, dir.join(name)).unwrap();
    }
    let pid_file = dir.join("init.pid");
    env.create(&bundle, &id, &["--pid-file", pid_file.to_str().unwrap()]);
    let exec_pid = dir.join("exec.pid");
    env.berth(&[
        "exec",
        "--detach",
        "--pid-file",
        exec_pid.to_str().unwrap(),
        &id,
        "/bin/helper",
        "pause",
    ])
    .ok();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    for path in [&pid_file, &exec_pid] {
        assert!(
            !path.is_symlink(),
            "{} is still the symlink",
            path.display()
        );
        let pid: i64 = std::fs::read_to_string(path).unwrap().parse().unwrap();
        assert!(pid > 0);
    }
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        env.pid(&id).to_string()
    );
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_root_empty();
}
