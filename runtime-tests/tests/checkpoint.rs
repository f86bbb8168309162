//! `checkpoint` and `restore` through the real `berth` binary and CRIU: a counter counts on from
//! where it was; `--leave-running` leaves it counting; a bridge-mode container keeps its address
//! and MAC, and its server answers on the published port again; a pre-dump then a dump; and the
//! refusals (`--lazy-pages`, a folder berth did not write, a container that is not running).
//!
//! They need CRIU 4 (Debian bookworm's 3.17 fails on this kernel even for runc), so they run in
//! the Debian sid root of `scripts/engine-tests --sid checkpoint` (see scripts/engines/README.md),
//! where a missing or older `criu` fails them; elsewhere they print SKIP and pass. The containers get pipes for
//! their standard streams, as engines give them: CRIU cannot save a file of the host's (a
//! `/dev/null` outside the container), and berth refuses that up front (tested too).

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtime_tests::{need_root, wait_until, Env, NetNs};
use serde_json::{json, Value};

/// The counter: once a second into /tmp/count, a tmpfs CRIU saves with the container; with a
/// web page of the count under /tmp/www when asked for a server.
const COUNTER: &str = "i=0; while true; do i=$((i+1)); echo $i >/tmp/count; sleep 1; done";
const SERVING_COUNTER: &str = "mkdir -p /tmp/www; httpd -f -p 80 -h /tmp/www & \
     i=0; while true; do i=$((i+1)); echo $i >/tmp/count; echo count $i >/tmp/www/index.html; sleep 1; done";

/// Whether `criu` 4 or newer is on the PATH. Where it is not (the host lane: bookworm's criu
/// 3.17, or none), the test prints a SKIP line naming the lane that runs it and passes; in that
/// lane (`BERTH_CHECKPOINT_TESTS=required`, set by scripts/engines/checkpoint.sh) it fails.
fn criu4(test: &str) -> bool {
    let version = Command::new("criu")
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
    let major: u32 = version
        .as_deref()
        .unwrap_or("")
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0);
    if major >= 4 {
        return true;
    }
    let why = match &version {
        Ok(text) => format!("criu 4 or newer is needed, this one says {:?}", text.trim()),
        Err(e) => format!("criu cannot run ({e})"),
    };
    if std::env::var("BERTH_CHECKPOINT_TESTS").as_deref() == Ok("required") {
        panic!("{why}");
    }
    runtime_tests::skip(
        test,
        &format!("{why}: scripts/engine-tests --sid checkpoint runs it in a Debian sid root"),
    );
    false
}

/// A pipe; the write end goes to berth (and so to the container), the read end stays here.
fn pipe() -> (File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which we own from here on.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    // SAFETY: both are new descriptors of ours.
    unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// The container's standard streams, as an engine holds them: three pipes whose other ends
/// this test keeps.
struct Streams {
    _stdin: OwnedFd,
    _stdout: File,
    _stderr: File,
}

/// `berth ARGS…` whose container gets pipes for its standard streams; returns berth's exit
/// code, what it said on stderr, and the pipes (the container may keep writing to them).
fn berth_with_pipes(env: &Env, args: &[&str]) -> (i32, String, Streams) {
    let (stdin_read, stdin_write) = {
        let (r, w) = pipe();
        (OwnedFd::from(r), w)
    };
    let (stdout_read, stdout_write) = pipe();
    let (stderr_read, stderr_write) = pipe();
    let status = env
        .berth_command(args)
        .stdin(Stdio::from(stdin_read))
        .stdout(Stdio::from(stdout_write))
        .stderr(Stdio::from(stderr_write))
        .status()
        .expect("berth runs");
    // What berth wrote before it exited: the container still holds the write end.
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        libc::fcntl(stderr_read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
    }
    let mut said = Vec::new();
    let _ = (&stderr_read).read_to_end(&mut said);
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&said).into_owned(),
        Streams {
            _stdin: stdin_write,
            _stdout: stdout_read,
            _stderr: stderr_read,
        },
    )
}

/// `berth run -d` with pipes; panics unless it succeeds.
#[track_caller]
fn run_detached(env: &Env, bundle: &Path, id: &str, flags: &[&str]) -> Streams {
    let mut args = vec!["run", "-d"];
    args.extend(flags);
    args.extend(["--bundle", bundle.to_str().unwrap(), id]);
    let (code, said, streams) = berth_with_pipes(env, &args);
    assert_eq!(code, 0, "berth {args:?}: {said}");
    streams
}

/// `berth restore -d` with pipes; panics unless it succeeds.
#[track_caller]
fn restore_detached(env: &Env, bundle: &Path, images: &Path, id: &str) -> Streams {
    let args = [
        "restore",
        "-d",
        "--image-path",
        images.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
        id,
    ];
    let (code, said, streams) = berth_with_pipes(env, &args);
    assert_eq!(code, 0, "berth {args:?}: {said}");
    streams
}

/// The counter inside, read with `berth exec`.
fn count(env: &Env, id: &str) -> Option<u64> {
    let out = env.berth(&["exec", id, "cat", "/tmp/count"]);
    out.stdout.trim().parse().ok().filter(|_| out.code == 0)
}

/// Waits until the counter shows at least `n`; returns what it shows.
#[track_caller]
fn count_reaches(env: &Env, id: &str, n: u64) -> u64 {
    let mut seen = None;
    wait_until(&format!("the counter of {id} to reach {n}"), || {
        seen = count(env, id);
        seen.is_some_and(|c| c >= n)
    });
    seen.unwrap()
}

/// A bundle running `script` with a tmpfs at /tmp.
fn counter_bundle(env: &Env, id: &str, script: &str) -> PathBuf {
    env.bundle(id, &["sh", "-c", script], |config| {
        config["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
    })
}

/// The same in the host's network namespace (no network entry, as host mode asks).
fn host_counter_bundle(env: &Env, id: &str) -> PathBuf {
    env.bundle(id, &["sh", "-c", COUNTER], |config| {
        config["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}));
        runtime_tests::drop_namespace(config, "network");
    })
}

#[test]
fn a_counter_counts_on_from_where_it_was_after_restore() {
    need_root!();
    if !criu4("a_counter_counts_on_from_where_it_was_after_restore") {
        return;
    }
    let env = Env::new("ckpt-counter");
    let id = env.id("count");
    let bundle = counter_bundle(&env, &id, COUNTER);
    let _streams = run_detached(&env, &bundle, &id, &[]);
    count_reaches(&env, &id, 2);

    // --leave-running: an image is written and the container goes on counting.
    let kept = env.scratch.join("kept");
    env.berth(&[
        "checkpoint",
        "--leave-running",
        "--image-path",
        kept.to_str().unwrap(),
        &id,
    ])
    .ok();
    assert!(kept.join("berth.json").exists() && kept.join("inventory.img").exists());
    assert_eq!(env.state(&id)["status"], "running");
    let before = count_reaches(&env, &id, 3);

    // A checkpoint ends the container and removes it: state folder, cgroup.
    let images = env.scratch.join("images");
    env.berth(&["checkpoint", "--image-path", images.to_str().unwrap(), &id])
        .ok();
    env.assert_gone(&id);
    let saved: Value =
        serde_json::from_slice(&std::fs::read(images.join("berth.json")).unwrap()).unwrap();
    assert!(
        saved["stdio"][1].as_str().unwrap().starts_with("pipe:["),
        "{saved}"
    );

    let restored = restore_detached(&env, &bundle, &images, &id);
    assert_eq!(env.state(&id)["status"], "running");
    // The restored process is the one that counted: it goes on from where it was, while a
    // fresh start would count from 1 again.
    let first = count(&env, &id).expect("the restored container answers exec");
    assert!(
        first >= before,
        "counted {before} before, {first} after restore"
    );
    let later = count_reaches(&env, &id, first + 1);
    assert!(later > before);
    // Its cgroup is the container's: the restored processes are in it.
    let pid = env.pid(&id);
    assert!(
        env.cgroup_pids(&id).contains(&pid),
        "{:?}",
        env.cgroup_pids(&id)
    );
    drop(restored);

    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    env.assert_root_empty();
}

/// `GET /` from the throwaway host `ns`: the page, or why not. A thread of ours enters the
/// namespace (busybox wget cannot run outside its root filesystem).
fn fetch(ns: &NetNs, address: &str, port: u16) -> Result<String, String> {
    let path = ns.path.clone();
    let target = format!("{address}:{port}");
    std::thread::spawn(move || {
        let netns = File::open(&path).map_err(|e| e.to_string())?;
        // SAFETY: setns on a descriptor we own; it moves only this thread, which ends here.
        if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        let timeout = Duration::from_secs(2);
        let mut stream = TcpStream::connect_timeout(&target.parse().unwrap(), timeout)
            .map_err(|e| format!("connect {target}: {e}"))?;
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: berth\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| format!("read {target}: {e}"))?;
        match response.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200 ") => Ok(body.to_string()),
            _ => Err(format!("{target} answered {response:?}")),
        }
    })
    .join()
    .unwrap()
}

/// The count the page shows, once it is served (retrying for up to 5 s).
#[track_caller]
fn served_count(ns: &NetNs, address: &str, port: u16) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match fetch(ns, address, port) {
            Ok(page) => {
                return page
                    .trim()
                    .strip_prefix("count ")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("the page says {page:?}"))
            }
            Err(err) if Instant::now() > deadline => panic!("GET {address}:{port}: {err}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `berth inspect ID`'s NetworkSettings.
fn settings(env: &Env, id: &str) -> Value {
    let out: Value = serde_json::from_str(env.berth(&["inspect", id]).ok()).unwrap();
    out[0]["NetworkSettings"].clone()
}

#[test]
fn a_bridge_container_keeps_its_address_and_serves_on_its_published_port_after_restore() {
    need_root!();
    if !criu4("a_bridge_container_keeps_its_address_and_serves_on_its_published_port_after_restore")
    {
        return;
    }
    let env = Env::with_netns("ckpt-bridge");
    let ns = env.netns.as_ref().unwrap();
    let id = env.id("web");
    let bundle = counter_bundle(&env, &id, SERVING_COUNTER);
    let _streams = run_detached(
        &env,
        &bundle,
        &id,
        &["--network", "bridge", "-p", "20480:80"],
    );
    let net = settings(&env, &id);
    let address = net["IPAddress"].as_str().unwrap().to_string();
    let before = served_count(ns, "127.0.0.1", 20480).max(served_count(ns, &address, 80));

    let images = env.scratch.join("images");
    env.berth(&["checkpoint", "--image-path", images.to_str().unwrap(), &id])
        .ok();
    env.assert_gone(&id);
    assert!(
        fetch(ns, "127.0.0.1", 20480).is_err(),
        "served while checkpointed"
    );

    let _restored = restore_detached(&env, &bundle, &images, &id);
    let after = settings(&env, &id);
    assert_eq!(after["IPAddress"], net["IPAddress"], "{after}");
    assert_eq!(after["MacAddress"], net["MacAddress"], "{after}");
    assert_eq!(after["Ports"], net["Ports"], "{after}");
    // The same server process answers, on the published port and at the container's address,
    // and the page it serves counts on from where it was.
    let on_port = served_count(ns, "127.0.0.1", 20480);
    assert!(
        on_port >= before,
        "served {before} before, {on_port} after restore"
    );
    assert!(served_count(ns, &address, 80) >= on_port);
    // eth0 inside has the address and the MAC again, on a new veth in docker0.
    let pid = env.pid(&id);
    let eth0 = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "ip",
            "-j",
            "addr",
            "show",
            "eth0",
        ])
        .output()
        .unwrap();
    let eth0: Value = serde_json::from_slice(&eth0.stdout).unwrap();
    assert_eq!(eth0[0]["address"], net["MacAddress"], "{eth0}");
    assert_eq!(eth0[0]["addr_info"][0]["local"], net["IPAddress"], "{eth0}");

    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    assert!(
        fetch(ns, "127.0.0.1", 20480).is_err(),
        "served after delete"
    );
}

#[test]
fn a_pre_dump_then_a_dump_restores() {
    need_root!();
    if !criu4("a_pre_dump_then_a_dump_restores") {
        return;
    }
    let env = Env::new("ckpt-predump");
    let id = env.id("count");
    let bundle = counter_bundle(&env, &id, COUNTER);
    let _streams = run_detached(&env, &bundle, &id, &[]);
    count_reaches(&env, &id, 2);
    let images = env.scratch.join("images");
    let pre = images.join("pre");
    let last = images.join("last");
    let pre_dump = env.berth(&[
        "checkpoint",
        "--pre-dump",
        "--image-path",
        pre.to_str().unwrap(),
        &id,
    ]);
    if pre_dump.code != 0 {
        // Kernels without CONFIG_MEM_SOFT_DIRTY (these machines') cannot track memory: berth
        // says so, and the container runs on.
        assert!(
            pre_dump.stderr.contains("--pre-dump needs memory tracking (soft-dirty pages), which this kernel or criu lacks"),
            "{}",
            pre_dump.stderr
        );
        assert_eq!(env.state(&id)["status"], "running");
        runtime_tests::skip(
            "a_pre_dump_then_a_dump_restores",
            "this kernel has no soft-dirty page tracking (CONFIG_MEM_SOFT_DIRTY): only the refusal was checked",
        );
        env.berth(&["delete", "--force", &id]).ok();
        env.assert_gone(&id);
        return;
    }
    assert_eq!(env.state(&id)["status"], "running");
    let before = count_reaches(&env, &id, 3);
    env.berth(&[
        "checkpoint",
        "--parent-path",
        "../pre",
        "--image-path",
        last.to_str().unwrap(),
        &id,
    ])
    .ok();
    env.assert_gone(&id);
    let _restored = restore_detached(&env, &bundle, &last, &id);
    let after = count_reaches(&env, &id, before + 1);
    assert!(after > before);
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn what_cannot_be_done_is_refused_and_leaves_nothing() {
    need_root!();
    if !criu4("what_cannot_be_done_is_refused_and_leaves_nothing") {
        return;
    }
    let env = Env::new("ckpt-refused");
    let id = env.id("count");
    let bundle = counter_bundle(&env, &id, COUNTER);
    let images = env.scratch.join("images");
    let images = images.to_str().unwrap();

    // A folder with no checkpoint of berth's.
    std::fs::create_dir_all(images).unwrap();
    let (code, said, _) = berth_with_pipes(
        &env,
        &[
            "restore",
            "-d",
            "--image-path",
            images,
            "--bundle",
            bundle.to_str().unwrap(),
            &id,
        ],
    );
    assert_eq!(code, 1);
    assert!(
        said.contains(&format!(
            "{images} holds no checkpoint berth made (berth.json is missing"
        )),
        "{said}"
    );
    env.assert_root_empty();

    // --lazy-pages needs a page server.
    let err = env
        .berth(&["restore", "--lazy-pages", "--image-path", images, &id])
        .fails()
        .to_string();
    assert!(err.contains("--lazy-pages is not supported"), "{err}");
    let err = env
        .berth(&["checkpoint", "--page-server", "127.0.0.1:20481", &id])
        .fails()
        .to_string();
    assert!(
        err.contains("--page-server 127.0.0.1:20481 is not supported"),
        "{err}"
    );

    // A container that has not started has nothing to save.
    let out = env.create(&bundle, &id, &[]);
    let err = env
        .berth(&["checkpoint", "--image-path", images, &id])
        .fails()
        .to_string();
    assert!(
        err.contains(&format!(
            "cannot checkpoint container \"{id}\": it is created"
        )),
        "{err}"
    );
    env.berth(&["delete", "--force", &id]).ok();
    let _ = out;

    // A container whose standard streams are files of the host (here the test's output files)
    // cannot be saved by CRIU: berth says so before CRIU tries, and the container runs on. (The
    // host's /dev/null, which engines give, the init replaces with the container's own.)
    env.berth(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id])
        .ok();
    let err = env
        .berth(&["checkpoint", "--image-path", images, &id])
        .fails()
        .to_string();
    let outside = format!("standard output is {}/out-", env.scratch.display());
    assert!(
        err.contains(&outside) && err.contains("a file outside the container"),
        "{err}"
    );
    assert_eq!(env.state(&id)["status"], "running");
    env.berth(&["delete", "--force", &id]).ok();

    // Without a mount namespace of its own, CRIU would take the host's mounts for the
    // container's: refused before CRIU runs, for a checkpoint and for a restore.
    let shared = env.id("shared");
    let shared_bundle = env.bundle(&shared, &["sleep", "1000"], |config| {
        runtime_tests::drop_namespace(config, "mount");
    });
    let (code, said, _streams) = berth_with_pipes(
        &env,
        &[
            "run",
            "-d",
            "--bundle",
            shared_bundle.to_str().unwrap(),
            &shared,
        ],
    );
    assert_eq!(code, 0, "{said}");
    let err = env
        .berth(&["checkpoint", "--image-path", images, &shared])
        .fails()
        .to_string();
    assert!(
        err.contains("a container without a mount namespace of its own cannot be checkpointed"),
        "{err}"
    );
    assert_eq!(env.state(&shared)["status"], "running");
    env.berth(&["delete", "--force", &shared]).ok();
    env.assert_root_empty();
}

#[test]
fn a_host_mode_container_gets_its_reserved_port_back() {
    need_root!();
    if !criu4("a_host_mode_container_gets_its_reserved_port_back") {
        return;
    }
    let env = Env::with_netns("ckpt-host");
    let id = env.id("count");
    let bundle = host_counter_bundle(&env, &id);
    let _streams = run_detached(&env, &bundle, &id, &["--network", "host", "-p", "20483"]);
    let before = count_reaches(&env, &id, 2);
    let images = env.scratch.join("images");
    env.berth(&["checkpoint", "--image-path", images.to_str().unwrap(), &id])
        .ok();
    env.assert_gone(&id);

    let _restored = restore_detached(&env, &bundle, &images, &id);
    assert!(count_reaches(&env, &id, before + 1) > before);
    let net = settings(&env, &id);
    assert_eq!(net["NetworkMode"], "host", "{net}");
    assert!(net["Ports"].get("20483/tcp").is_some(), "{net}");
    // The port is the restored container's again: a second one asking for it is refused.
    let other = env.id("other");
    let other_bundle = host_counter_bundle(&env, &other);
    let err = env
        .berth(&[
            "run",
            "-d",
            "--network",
            "host",
            "-p",
            "20483",
            "--bundle",
            other_bundle.to_str().unwrap(),
            &other,
        ])
        .fails()
        .to_string();
    assert!(
        err.contains("RESOURCE:PORTS: port 20483/tcp is already held by container"),
        "{err}"
    );
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    env.assert_root_empty();
}

/// Accepts one connection on a console socket; returns the descriptor sent with its message.
fn receive_master(listener: &std::os::unix::net::UnixListener) -> OwnedFd {
    let (conn, _) = listener.accept().unwrap();
    let mut name = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let mut space = [0u64; 8];
    // SAFETY: msghdr is plain data; the fields set below point at live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr().cast();
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&space);
    // SAFETY: recvmsg fills the buffers msg points at.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, 0) };
    assert!(n > 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel filled the control buffer; CMSG_FIRSTHDR and CMSG_DATA walk it.
    let fd = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null(), "no descriptor came with the message");
        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int)
    };
    // SAFETY: the descriptor just arrived and is ours.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Reads from the pty master until what was read holds `want` (10 s at most).
#[track_caller]
fn read_until(master: &OwnedFd, want: &str) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "waited for {want:?}; read {seen:?}");
        let mut poll = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes one pollfd.
        if unsafe { libc::poll(&mut poll, 1, left.as_millis() as i32) } <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: read writes at most buf.len() bytes into buf.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        assert!(n > 0, "the terminal closed; read {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n as usize]));
    }
    seen
}

fn type_in(master: &OwnedFd, text: &str) {
    // SAFETY: write reads text.len() bytes from text.
    let n = unsafe { libc::write(master.as_raw_fd(), text.as_ptr().cast(), text.len()) };
    assert_eq!(n, text.len() as isize);
}

#[test]
fn a_shell_on_a_terminal_goes_on_with_a_new_terminal_after_restore() {
    need_root!();
    if !criu4("a_shell_on_a_terminal_goes_on_with_a_new_terminal_after_restore") {
        return;
    }
    let env = Env::new("ckpt-tty");
    let id = env.id("shell");
    let bundle = env.bundle(&id, &["sh"], |config| {
        config["process"]["terminal"] = json!(true);
    });
    let socket = env.scratch.join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let socket = socket.to_str().unwrap();
    env.berth(&[
        "run",
        "-d",
        "--console-socket",
        socket,
        "--bundle",
        bundle.to_str().unwrap(),
        &id,
    ])
    .ok();
    let master = receive_master(&listener);
    read_until(&master, "# ");
    // The shell holds a value only it knows.
    type_in(&master, "x=41; echo set-$x\r");
    read_until(&master, "set-41\r\n");

    let images = env.scratch.join("images");
    env.berth(&["checkpoint", "--image-path", images.to_str().unwrap(), &id])
        .ok();
    env.assert_gone(&id);
    drop(master);

    // The restore sends the master of a new pty to the console socket; the shell is the same.
    env.berth(&[
        "restore",
        "-d",
        "--console-socket",
        socket,
        "--image-path",
        images.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
        &id,
    ])
    .ok();
    let master = receive_master(&listener);
    type_in(&master, "echo got-$((x+1))\r");
    read_until(&master, "got-42\r\n");
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
}
