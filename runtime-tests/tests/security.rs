//! What a container must not reach: berth's binary through /proc/PID/exe (CVE-2019-5736), berth's
//! descriptors, the host's tree through its working directory (CVE-2024-21626), the masked and
//! read-only parts of /proc, and the host's disk through a device node.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime_tests::{berth_bin, need_root, receive_seccomp_listener, run_to_files, Env, Run};
use serde_json::{json, Value};

/// A copy of berth that only this test runs, so that "no berth is running" is a moment the test
/// controls (the shared binary is executed by every test at once).
fn private_berth(env: &Env) -> PathBuf {
    let copy = env.scratch.join("berth");
    std::fs::copy(berth_bin(), &copy).unwrap();
    copy
}

fn berth_at(env: &Env, binary: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(binary);
    cmd.arg("--root").arg(&env.root).args(args);
    run_to_files(&mut cmd, &env.scratch)
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bind-mounts the host folder `dir` at /shared in the container, read-write.
fn share(config: &mut Value, dir: &Path) {
    config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/shared", "type": "bind", "source": dir, "options": ["rbind", "rw"]
    }));
}

/// The pid of host process `pid` in the innermost pid namespace it belongs to.
fn pid_in_namespace(pid: i64) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    line.split_whitespace().last().unwrap().to_string()
}

/// The shell script of the attacker: once the test names a pid in /shared/pid, it attacks that
/// process's /proc/PID/exe for writing, then through a descriptor it keeps, then, when told, reopens what it held.
const ATTACK: &str = r#"
    until [ -e /shared/go ]; do sleep 0.02; done
    pid=$(cat /shared/pid)
    {
        echo "link $(readlink /proc/$pid/exe || echo refused)"
        echo "write $(helper open-exe /proc/$pid/exe)"
        echo "root $(ls /proc/$pid/root/ >/dev/null 2>&1 && echo listed || echo refused)"
        if cat /proc/$pid/exe >/dev/null 2>&1; then echo "read ok"; exec 3</proc/$pid/exe
        else echo "read refused"; fi
    } >/shared/out 2>&1
    touch /shared/done
    until [ -e /shared/later ]; do sleep 0.02; done
    if [ -e /proc/self/fd/3 ]; then echo "reopen $(helper open-exe /proc/self/fd/3)"
    else echo "reopen nothing held"; fi >>/shared/out 2>&1
    touch /shared/done2
    sleep 600
"#;

/// The attack of CVE-2019-5736, from a container that shares its pid namespace with the one
/// being created (as the containers of a Kubernetes pod may): once `create` has returned, the
/// new container's init waits for `start` as a clone of berth, with the container's user and
/// capabilities, so `/proc/<init>/exe` is berth's binary. The attacker tries to open it for
/// writing, and to keep a descriptor to reopen for writing once no berth runs any more (which
/// ETXTBSY does not stop). Both must fail, and berth's binary must stay as it was.
#[test]
fn a_container_cannot_open_berth_through_the_exe_of_a_created_init() {
    need_root!();
    let env = Env::new("exe-create");
    let berth = private_berth(&env);
    let before = sha256(&berth);
    let shared = env.scratch.join("shared");
    std::fs::create_dir(&shared).unwrap();

    let attacker = env.id("attacker");
    let bundle = env.bundle(&attacker, &["sh", "-c", ATTACK], |c| share(c, &shared));
    let b = bundle.to_str().unwrap();
    env.berth(&["run", "--detach", "--bundle", b, &attacker])
        .ok();
    let attacker_pid = env.state(&attacker)["pid"].as_i64().unwrap();

    let victim = env.id("victim");
    let pid_ns = format!("/proc/{attacker_pid}/ns/pid");
    let bundle = env.bundle(&victim, &["/bin/helper", "pause"], |c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "pid" {
                ns["path"] = Value::from(pid_ns.as_str());
            }
        }
    });
    let b = bundle.to_str().unwrap();
    berth_at(&env, &berth, &["create", "--bundle", b, &victim]).ok();
    let init = env.state(&victim)["pid"].as_i64().unwrap();
    std::fs::write(shared.join("pid"), pid_in_namespace(init)).unwrap();
    std::fs::write(shared.join("go"), "").unwrap();
    wait_for(&shared.join("done"), "the attack on the created init");

    // Start the victim, and wait until its init runs its program and no copy of berth runs.
    berth_at(&env, &berth, &["start", &victim]).ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_link(format!("/proc/{init}/exe")).is_ok_and(|exe| exe == berth) {
        assert!(
            Instant::now() < deadline,
            "the victim's init never ran its program"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(shared.join("later"), "").unwrap();
    wait_for(&shared.join("done2"), "the late reopen");

    let out = std::fs::read_to_string(shared.join("out")).unwrap();
    assert_eq!(
        out,
        "link refused\nwrite EACCES\nroot refused\nread refused\nreopen nothing held\n"
    );
    assert_eq!(sha256(&berth), before, "berth's binary changed");
}

/// Lets a notified syscall go on as if there were no filter.
fn let_continue(listener: &OwnedFd, id: u64) {
    let response = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
    };
    // SAFETY: the ioctl reads `response`; an id whose caller went away just fails.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND as _,
            &response,
        )
    };
}

/// A seccomp agent that lets every notified call go on, except the first one, once `armed`, made
/// by a process still running `berth` (a process of `berth exec` before its execve): that one it
/// holds while the attacker in the container attacks it, named through /shared. Returns its pid.
fn holding_agent(
    socket: UnixListener,
    berth: PathBuf,
    shared: PathBuf,
    armed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Option<i64> {
    socket.set_nonblocking(true).unwrap();
    let mut listeners: Vec<OwnedFd> = Vec::new();
    let mut held: Option<(usize, u64, i64)> = None;
    let mut released = false;
    while !stop.load(Ordering::SeqCst) {
        if let Ok((stream, _)) = socket.accept() {
            stream.set_nonblocking(false).unwrap();
            listeners.push(receive_seccomp_listener(&stream).1);
        }
        if let (Some((index, id, _)), false) = (held, released) {
            if shared.join("done").exists() {
                let_continue(&listeners[index], id);
                released = true;
            }
        }
        let mut polls: Vec<libc::pollfd> = listeners
            .iter()
            .map(|fd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `polls` is a live array of pollfd.
        unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as _, 20) };
        for (index, poll) in polls.iter().enumerate() {
            if poll.revents & libc::POLLIN == 0 {
                continue;
            }
            // SAFETY: seccomp_notif is plain data; NOTIF_RECV wants it zeroed.
            let mut request: libc::seccomp_notif = unsafe { std::mem::zeroed() };
            // SAFETY: the ioctl fills `request`.
            let fd = listeners[index].as_raw_fd();
            if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV as _, &mut request) } != 0 {
                continue;
            }
            let pid = i64::from(request.pid);
            let runs_berth =
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == berth);
            if held.is_none() && armed.load(Ordering::SeqCst) && runs_berth {
                held = Some((index, request.id, pid));
                std::fs::write(shared.join("pid"), pid_in_namespace(pid)).unwrap();
                std::fs::write(shared.join("go"), "").unwrap();
            } else {
                let_continue(&listeners[index], request.id);
            }
        }
    }
    held.map(|(_, _, pid)| pid)
}

/// The same attack against `berth exec`: the process it adds is a clone of berth until its
/// execve. A seccomp agent holds it there (at the execve itself, a call the profile sends to
/// the agent: the process makes no other call under its filter) while the container's program
/// attacks it.
#[test]
fn a_container_cannot_open_berth_through_the_exe_of_an_exec_process() {
    need_root!();
    let env = Env::new("exe-exec");
    let berth = private_berth(&env);
    let before = sha256(&berth);
    let shared = env.scratch.join("shared");
    std::fs::create_dir(&shared).unwrap();
    let socket = env.scratch.join("agent.sock");
    let armed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let agent = {
        let (listener, berth, shared) = (
            UnixListener::bind(&socket).unwrap(),
            berth.clone(),
            shared.clone(),
        );
        let (armed, stop) = (armed.clone(), stop.clone());
        std::thread::spawn(move || holding_agent(listener, berth, shared, armed, stop))
    };

    let id = env.id("target");
    let bundle = env.bundle(&id, &["sh", "-c", ATTACK], |c| {
        share(c, &shared);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": socket,
            "syscalls": [{"names": ["execve"], "action": "SCMP_ACT_NOTIFY"}]
        });
    });
    let b = bundle.to_str().unwrap();
    berth_at(&env, &berth, &["run", "--detach", "--bundle", b, &id]).ok();
    armed.store(true, Ordering::SeqCst);
    let exec = berth_at(&env, &berth, &["exec", &id, "/bin/true"]);
    stop_after(&stop, || {
        exec.ok();
        assert!(
            shared.join("done").exists(),
            "the agent never held the exec process"
        );
        // Wait until no process runs this copy of berth, then let the attacker reopen.
        let deadline = Instant::now() + Duration::from_secs(20);
        while runs(&berth) {
            assert!(Instant::now() < deadline, "a copy of berth still runs");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::write(shared.join("later"), "").unwrap();
        wait_for(&shared.join("done2"), "the late reopen");
    });
    let held = agent.join().unwrap();
    assert!(held.is_some());
    let out = std::fs::read_to_string(shared.join("out")).unwrap();
    assert_eq!(
        out,
        "link refused\nwrite EACCES\nroot refused\nread refused\nreopen nothing held\n"
    );
    assert_eq!(sha256(&berth), before, "berth's binary changed");
}

/// Runs `body`, then sets `stop`, also when `body` panics (so the agent thread ends).
fn stop_after(stop: &AtomicBool, body: impl FnOnce()) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    stop.store(true, Ordering::SeqCst);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Whether any process runs the binary at `path`.
fn runs(path: &Path) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|exe| exe == path))
}

#[test]
fn only_stdio_reaches_the_container_unless_descriptors_are_preserved() {
    need_root!();
    let env = Env::new("fds");
    let id = env.id("fds");
    let bundle = env.bundle(&id, &["/bin/helper", "fds"], |_| {});
    // berth's caller leaves descriptors 3 to 5 open (not close-on-exec), as a careless engine
    // might: a host directory, a host file and a pipe.
    let run = |extra: &[&str]| {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend(["--bundle", bundle.to_str().unwrap(), &id]);
        let script = format!(
            "exec 3</ 4<{} 5</dev/null; exec \"$0\" \"$@\"",
            env.scratch.display()
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script])
            .arg(berth_bin())
            .arg("--root")
            .arg(&env.root)
            .args(&args);
        run_to_files(&mut cmd, &env.scratch)
    };
    let out = run(&[]);
    let fds: Vec<&str> = out
        .ok()
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(fds, ["0", "1", "2"], "{}", out.stdout);
    env.assert_gone(&id);

    let out = run(&["--preserve-fds", "1"]);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert_eq!(lines[3], "3 -> /");
}

/// The masked and read-only paths of `berth spec` (runc's template) that this kernel has.
#[test]
fn masked_and_read_only_paths_hold() {
    need_root!();
    let env = Env::new("masked");
    let existing = |list: &[&'static str]| -> Vec<&'static str> {
        list.iter()
            .copied()
            .filter(|p| Path::new(p).exists())
            .collect()
    };
    let files = existing(&[
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/latency_stats",
        "/proc/timer_stats",
        "/proc/sched_debug",
    ]);
    let dirs = existing(&["/proc/acpi", "/proc/asound", "/proc/scsi", "/sys/firmware"]);
    let readonly = existing(&[
        "/proc/sysrq-trigger",
        "/proc/sys/kernel/hostname",
        "/proc/irq/default_smp_affinity",
    ]);
    assert!(!files.is_empty() && !dirs.is_empty() && !readonly.is_empty());
    let mut script = String::new();
    let mut expected = String::new();
    for file in &files {
        // A masked file is the null device: nothing to read.
        script += &format!("helper stat {file}; wc -c <{file}; ");
        expected += "type=char mode=0666 uid=0 gid=0 rdev=1:3\n0\n";
    }
    for dir in &dirs {
        script += &format!("ls {dir} | wc -l; ");
        expected += "0\n";
    }
    for path in &readonly {
        script += &format!("helper write {path} h; ");
        expected += "EROFS\n";
    }
    let id = env.id("masked");
    let bundle = env.bundle(&id, &["sh", "-c", &script], |c| {
        // Permissions do not matter: the mounts refuse the writes.
        for set in ["bounding", "effective", "permitted"] {
            let list = c["process"]["capabilities"][set].as_array_mut().unwrap();
            list.push(Value::from("CAP_DAC_OVERRIDE"));
        }
    });
    let out = env.run(&bundle, &id);
    assert_eq!(out.stdout, expected, "{}", out.stderr);
}

/// CVE-2024-21626: a working directory named through a descriptor berth holds (here one its
/// caller leaked, open on a host folder) would put the container's program in the host's tree.
#[test]
fn a_working_directory_outside_the_root_filesystem_is_refused() {
    need_root!();
    let env = Env::new("cwd");
    let secret = env.scratch.join("host-only");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("marker"), "host").unwrap();
    let id = env.id("cwd");
    let bundle = env.bundle(&id, &["/bin/helper", "ls", "."], |c| {
        c["process"]["cwd"] = Value::from("/proc/self/fd/7");
    });
    let script = format!("exec 7<{}; exec \"$0\" \"$@\"", secret.display());
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script])
        .arg(berth_bin())
        .arg("--root")
        .arg(&env.root)
        .args(["run", "--bundle", bundle.to_str().unwrap(), &id]);
    let out = run_to_files(&mut cmd, &env.scratch);
    assert!(!out.stdout.contains("marker"), "{}", out.stdout);
    // The leaked descriptor never reaches the container: the init closes what it was not given.
    let err = out.fails();
    assert!(
        err.contains("cannot change to the working directory /proc/self/fd/7: ENOENT"),
        "{err}"
    );
    env.assert_gone(&id);
    // One passed on on purpose (--preserve-fds) is there, and is caught as outside the root.
    let bundle = env.bundle(&id, &["/bin/helper", "ls", "."], |c| {
        c["process"]["cwd"] = Value::from("/proc/self/fd/3");
    });
    let script = format!("exec 3<{}; exec \"$0\" \"$@\"", secret.display());
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script])
        .arg(berth_bin())
        .arg("--root")
        .arg(&env.root)
        .args([
            "run",
            "--preserve-fds",
            "1",
            "--bundle",
            bundle.to_str().unwrap(),
            &id,
        ]);
    let out = run_to_files(&mut cmd, &env.scratch);
    assert!(!out.stdout.contains("marker"), "{}", out.stdout);
    let err = out.fails();
    assert!(
        err.contains(
            "the working directory /proc/self/fd/3 is outside the container's root filesystem"
        ),
        "{err}"
    );
    env.assert_gone(&id);

    // A symlink in the image that names the host folder leads to the same path in the image.
    let rootfs = env.scratch.join("rootfs");
    let copy = Command::new("cp")
        .arg("-a")
        .arg(runtime_tests::rootfs())
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(copy.success());
    std::os::unix::fs::symlink(&secret, rootfs.join("work")).unwrap();
    let inside = rootfs.join(secret.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::write(inside.join("image-only"), "image").unwrap();
    let id = env.id("link");
    let bundle = env.bundle(&id, &["/bin/helper", "ls", "."], |c| {
        c["root"]["path"] = Value::from(rootfs.to_str().unwrap());
        c["process"]["cwd"] = Value::from("/work");
    });
    assert_eq!(env.run(&bundle, &id).ok(), "image-only\n");
    env.assert_gone(&id);
}

/// The host's disk: the device of the host's `/`, or the first disk the kernel lists.
fn host_disk() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata("/").unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let partitions = std::fs::read_to_string("/proc/partitions").unwrap();
    let listed: Vec<(u32, u32)> = partitions
        .lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?))
        })
        .collect();
    if listed.contains(&(major, minor)) {
        (major, minor)
    } else {
        *listed.first().expect("the host has a block device")
    }
}

#[test]
fn mknod_of_the_host_disk_cannot_be_opened_even_with_cap_mknod() {
    need_root!();
    let env = Env::new("mknod");
    let id = env.id("mknod");
    let (major, minor) = host_disk();
    let bundle = env.bundle(
        &id,
        &[
            "/bin/helper",
            "mknod-open",
            "/dev/disk",
            &major.to_string(),
            &minor.to_string(),
        ],
        |c| {
            for set in ["bounding", "effective", "permitted"] {
                c["process"]["capabilities"][set]
                    .as_array_mut()
                    .unwrap()
                    .push(Value::from("CAP_MKNOD"));
            }
        },
    );
    let out = env.run(&bundle, &id);
    assert_eq!(out.stdout, "mknod ok\nopen EPERM\n", "{}", out.stderr);
}
