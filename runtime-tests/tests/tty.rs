//! Terminals: `run` and `exec -t` relaying a pty of the test's own (raw mode, typing, window
//! size, exit status), the pty master sent over `--console-socket` with a shell run through it,
//! `consoleSize`, `/dev/console`, and the refusals when nothing would receive the terminal.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runtime_tests::{need_root, Env};
use serde_json::{json, Value};

/// A pty pair of the test's, playing the terminal a person runs berth in.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn open_pty(rows: u16, cols: u16) -> Pty {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors; the name and termios pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty just returned these descriptors; they are ours.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    set_cloexec(&master);
    set_cloexec(&slave);
    Pty { master, slave }
}

fn set_cloexec(fd: &OwnedFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// Spawns `cmd` with the pty's slave as its stdio and controlling terminal, in a session of its
/// own (so it is the terminal's foreground process group, and gets SIGWINCH).
fn spawn_on(cmd: &mut Command, pty: &Pty) -> Child {
    let stdio = || Stdio::from(pty.slave.try_clone().unwrap());
    cmd.stdin(stdio()).stdout(stdio()).stderr(stdio());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// Reads from `fd` until the text read so far contains `want`; panics after ten seconds.
fn read_until(fd: &OwnedFd, want: &str, seen: &mut String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {want:?}; read {seen:?}"
        );
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes one pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis() as i32) };
        if ready <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: read writes at most buf.len() bytes into buf.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        assert!(
            n > 0,
            "the terminal closed before {want:?} arrived; read {seen:?}"
        );
        seen.push_str(&String::from_utf8_lossy(&buf[..n as usize]));
    }
}

fn type_in(fd: &OwnedFd, text: &str) {
    // SAFETY: write reads text.len() bytes from text.
    let n = unsafe { libc::write(fd.as_raw_fd(), text.as_ptr().cast(), text.len()) };
    assert_eq!(n, text.len() as isize);
}

fn local_flags(fd: &OwnedFd) -> libc::tcflag_t {
    // SAFETY: termios is plain data that tcgetattr fills in.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr writes one termios.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    t.c_lflag
}

fn set_size(fd: &OwnedFd, rows: u16, cols: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    assert_eq!(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) },
        0
    );
}

fn wait_for(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "berth did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn with_terminal(args: &[&str]) -> impl FnOnce(&mut Value) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    move |config| {
        config["process"]["terminal"] = json!(true);
        config["process"]["args"] = json!(args);
    }
}

#[test]
fn run_relays_the_callers_terminal_in_raw_mode_with_its_size() {
    need_root!();
    let env = Env::new("tty-run");
    let id = env.id("winch");
    let script = "/bin/helper isatty; /bin/helper winsize; /bin/helper wait-winch";
    let bundle = env.bundle(&id, &[], with_terminal(&["sh", "-c", script]));
    let pty = open_pty(24, 80);
    let cooked = local_flags(&pty.slave);
    assert_ne!(cooked & libc::ICANON, 0);
    let mut berth = spawn_on(
        &mut env.berth_command(&["run", "--bundle", bundle.to_str().unwrap(), &id]),
        &pty,
    );
    let mut seen = String::new();
    read_until(&pty.master, "waiting\r\n", &mut seen);
    assert!(seen.starts_with("true\r\n24 80\r\n"), "{seen:?}");
    // While berth relays, the caller's terminal is raw: keys go to the container as typed.
    let raw = local_flags(&pty.slave);
    assert_eq!(raw & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
    // The caller's terminal is resized: berth gets SIGWINCH and resizes the container's.
    set_size(&pty.master, 50, 132);
    read_until(&pty.master, "50 132\r\n", &mut seen);
    assert_eq!(wait_for(&mut berth), 0);
    // And back as it was.
    assert_eq!(local_flags(&pty.slave), cooked);
    env.assert_gone(&id);
}

#[test]
fn typing_reaches_the_shell_and_its_status_is_berths() {
    need_root!();
    let env = Env::new("tty-type");
    let id = env.id("shell");
    let bundle = env.bundle(&id, &[], with_terminal(&["sh"]));
    let pty = open_pty(24, 80);
    let mut berth = spawn_on(
        &mut env.berth_command(&["run", "--bundle", bundle.to_str().unwrap(), &id]),
        &pty,
    );
    let mut seen = String::new();
    read_until(&pty.master, "# ", &mut seen);
    type_in(&pty.master, "echo answer=$((6*7)); tty; exit 3\r");
    read_until(&pty.master, "answer=42\r\n/dev/pts/0\r\n", &mut seen);
    assert_eq!(wait_for(&mut berth), 3);
    env.assert_gone(&id);
}

#[test]
fn a_container_with_a_terminal_gets_only_the_pty_as_stdio() {
    need_root!();
    let env = Env::new("tty-fds");
    let id = env.id("fds");
    let bundle = env.bundle(&id, &[], with_terminal(&["/bin/helper", "fds"]));
    // Not from a terminal: berth relays to its files all the same, the program's "\n" as it
    // wrote it (the pty's "\r\n" is for a terminal; runc clears ONLCR likewise).
    let run = env.run(&bundle, &id);
    assert_eq!(
        run.ok(),
        "0 -> /dev/pts/0\n1 -> /dev/pts/0\n2 -> /dev/pts/0\n"
    );
    env.assert_gone(&id);
}

#[test]
fn the_terminal_belongs_to_the_programs_user() {
    need_root!();
    let env = Env::new("tty-owner");
    let id = env.id("owner");
    // As from runc: a program that is not root can reopen its terminal (the group is devpts's).
    let script = "stat -Lc %u:%g /proc/self/fd/0; echo hi > $(tty) && echo reopened";
    let bundle = env.bundle(&id, &[], |c| {
        with_terminal(&["sh", "-c", script])(c);
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    });
    let run = env.run(&bundle, &id);
    assert_eq!(run.ok(), "1000:5\nhi\nreopened\n");
    env.assert_gone(&id);
}

#[test]
fn exec_t_relays_a_terminal_and_keeps_the_exit_status() {
    need_root!();
    let env = Env::new("tty-exec");
    let id = env.id("exec");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    env.berth(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id])
        .ok();
    let pty = open_pty(30, 90);
    let script = "/bin/helper isatty; /bin/helper winsize; tty; /bin/helper fds; exit 4";
    let mut berth = spawn_on(
        &mut env.berth_command(&["exec", "-t", &id, "sh", "-c", script]),
        &pty,
    );
    let mut seen = String::new();
    read_until(&pty.master, "2 -> /dev/pts/", &mut seen);
    assert_eq!(wait_for(&mut berth), 4);
    assert!(seen.starts_with("true\r\n30 90\r\n/dev/pts/"), "{seen:?}");
    // The container's own devpts: the exec's pty is the first there (the init has none).
    assert!(seen.contains("0 -> /dev/pts/0\r\n"), "{seen:?}");
    // Without a terminal around berth, the pty is relayed to its files.
    assert_eq!(
        env.berth(&["exec", "--tty", &id, "/bin/helper", "isatty"])
            .ok(),
        "true\n"
    );
}

/// Accepts one connection on a console socket and receives the descriptor and the name sent.
fn receive_master(listener: &UnixListener) -> (OwnedFd, String) {
    let (conn, _): (UnixStream, _) = listener.accept().unwrap();
    let mut name = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut name)];
    // SAFETY: cmsghdr space for one descriptor, aligned as the kernel wants (u64 words).
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
        assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd)
    };
    // SAFETY: the descriptor just arrived and is ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(&fd);
    let name = String::from_utf8_lossy(&name[..n as usize]).into_owned();
    (fd, name)
}

#[test]
fn console_socket_receives_the_master_and_a_shell_runs_through_it() {
    need_root!();
    let env = Env::new("tty-socket");
    let id = env.id("console");
    let bundle = env.bundle(&id, &[], |config| {
        with_terminal(&["sh"])(config);
        config["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    });
    let socket = env.scratch.join("console.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    // create returns once the master is sent: the socket holds it until we accept.
    env.berth(&[
        "create",
        "--console-socket",
        socket.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
        &id,
    ])
    .ok();
    let (master, name) = receive_master(&listener);
    assert_eq!(name, "/dev/pts/0");
    env.berth(&["start", &id]).ok();
    let mut seen = String::new();
    read_until(&master, "# ", &mut seen);
    type_in(
        &master,
        "/bin/helper winsize; /bin/helper stat /dev/console; tty; echo done-$((40+2))\r",
    );
    read_until(&master, "done-42\r\n", &mut seen);
    assert!(seen.contains("\r\n30 100\r\n"), "{seen:?}");
    // /dev/console is the container's pty (devpts' major 136), bound over an empty file.
    assert!(
        seen.contains("type=char mode=0620 uid=0 gid=5 rdev=136:0\r\n"),
        "{seen:?}"
    );
    assert!(seen.contains("/dev/pts/0\r\n"), "{seen:?}");
    type_in(&master, "exit 0\r");
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.state(&id)["status"] != "stopped" {
        assert!(Instant::now() < deadline, "the shell did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    env.berth(&["delete", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn exec_sends_its_terminal_to_the_console_socket() {
    need_root!();
    let env = Env::new("tty-exec-socket");
    let id = env.id("exec-socket");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    env.berth(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id])
        .ok();
    let socket = env.scratch.join("exec.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let process = env.scratch.join("process.json");
    let spec = json!({"terminal": true, "args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin"], "consoleSize": {"height": 12, "width": 34}});
    std::fs::write(&process, spec.to_string()).unwrap();
    // As podman: a process file, --tty as well, detached, with a pid file and a console socket.
    let pid_file = env.scratch.join("exec.pid");
    env.berth(&[
        "exec",
        "--process",
        process.to_str().unwrap(),
        "--tty",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--console-socket",
        socket.to_str().unwrap(),
        &id,
    ])
    .ok();
    let (master, name) = receive_master(&listener);
    assert!(name.starts_with("/dev/pts/"), "{name}");
    let mut seen = String::new();
    type_in(
        &master,
        "/bin/helper winsize; echo in-exec-$((2+3)); exit\r",
    );
    read_until(&master, "in-exec-5\r\n", &mut seen);
    assert!(seen.contains("12 34\r\n"), "{seen:?}");
    assert_eq!(env.state(&id)["status"], "running");
}

#[test]
fn a_terminal_with_nothing_to_receive_it_is_refused() {
    need_root!();
    let env = Env::new("tty-refused");
    let id = env.id("refused");
    let bundle = env.bundle(&id, &[], with_terminal(&["sh"]));
    let b = bundle.to_str().unwrap();
    let expected = "berth: error: process.terminal is true: give --console-socket to receive the terminal, or use `run` without --detach";
    for args in [
        vec!["create", "--bundle", b, &id],
        vec!["run", "-d", "--bundle", b, &id],
    ] {
        assert_eq!(env.berth(&args).fails().trim(), expected);
        env.assert_gone(&id);
    }
    let missing = env.scratch.join("missing.sock");
    let run = env.berth(&[
        "create",
        "--console-socket",
        missing.to_str().unwrap(),
        "--bundle",
        b,
        &id,
    ]);
    assert!(
        run.fails().starts_with(&format!(
            "berth: error: cannot connect to the console socket {}:",
            missing.display()
        )),
        "{}",
        run.stderr
    );
    env.assert_gone(&id);
    let plain = env.bundle(&id, &["true"], |_| {});
    let socket = env.scratch.join("unused.sock");
    let _listener = UnixListener::bind(&socket).unwrap();
    let run = env.berth(&[
        "create",
        "--console-socket",
        socket.to_str().unwrap(),
        "--bundle",
        plain.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(
        run.fails().trim(),
        "berth: error: --console-socket was given but process.terminal is false"
    );
    env.assert_gone(&id);
    // exec: a detached terminal needs the socket too.
    let id = env.id("running");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    env.berth(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id])
        .ok();
    let run = env.berth(&["exec", "-d", "-t", &id, "sh"]);
    assert_eq!(run.code, 255);
    assert_eq!(
        run.stderr.trim(),
        "berth: error: a detached exec with a terminal needs --console-socket to receive it"
    );
}
