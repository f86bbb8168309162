//! Runs the built helper as a test inside a container would, and checks what it prints. Some
//! checks need root (a throwaway network namespace for listen/connect).

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

const HELPER: &str = env!("CARGO_BIN_EXE_helper");

fn helper(args: &[&str]) -> Output {
    Command::new(HELPER)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the helper")
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a shell command line, with `$HELPER` set to the helper's path.
fn shell(script: &str) -> Output {
    Command::new("sh")
        .args(["-c", script])
        .env("HELPER", HELPER)
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

#[test]
fn echo_and_exit_statuses() {
    let echoed = helper(&["echo", "one", "two"]);
    assert_eq!(stdout_of(&echoed), "one two\n");
    assert_eq!(helper(&["exit", "42"]).status.code(), Some(42));
    assert_eq!(helper(&["false"]).status.code(), Some(1));
    let unknown = helper(&["frobnicate"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("usage: helper"));
}

#[test]
fn ids_match_the_caller() {
    // SAFETY: getuid and getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let line = stdout_of(&helper(&["ids"]));
    assert!(
        line.starts_with(&format!(
            "uid={uid} gid={gid} euid={uid} egid={gid} groups="
        )),
        "{line}"
    );
}

#[test]
fn caps_prints_the_five_sets() {
    let output = stdout_of(&helper(&["caps"]));
    let keys: Vec<&str> = output
        .lines()
        .map(|line| line.split('=').next().unwrap())
        .collect();
    assert_eq!(keys, ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]);
}

#[test]
fn startup_leaves_signals_and_descriptors_as_inherited() {
    // Rust's usual entry point would ignore SIGPIPE and reopen a closed stdin on /dev/null.
    let signals = stdout_of(&helper(&["signals"]));
    let ignored = signals
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn="))
        .expect("a SigIgn line");
    let ignored = u64::from_str_radix(ignored, 16).unwrap();
    assert_eq!(
        ignored & 1 << (libc::SIGPIPE - 1),
        0,
        "SIGPIPE is ignored: {signals}"
    );
    let fds = stdout_of(&shell("exec 0<&- 3<&-; exec \"$HELPER\" fds"));
    let numbers: Vec<&str> = fds
        .lines()
        .map(|line| line.split(' ').next().unwrap())
        .collect();
    assert!(!numbers.contains(&"0"), "stdin should stay closed: {fds}");
    assert!(numbers.contains(&"1") && numbers.contains(&"2"), "{fds}");
}

#[test]
fn isatty_is_false_on_a_pipe() {
    let output = helper(&["isatty", "1"]);
    assert_eq!(stdout_of(&output), "false\n");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn pause_reports_the_signal() {
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGUSR1, "SIGUSR1")] {
        let mut child = Command::new(HELPER)
            .arg("pause")
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the helper");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "pausing");
        let pid = i32::try_from(child.id()).unwrap();
        // SAFETY: `pid` is our own unreaped child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        assert_eq!(lines.next().unwrap().unwrap(), name);
        assert!(child.wait().unwrap().success());
    }
}

#[test]
fn alloc_and_fork() {
    assert_eq!(stdout_of(&helper(&["alloc", "16"])), "allocated 16\n");
    let forked = helper(&["fork", "4"]);
    assert_eq!(stdout_of(&forked), "forked=4 error=none\n");
    assert!(forked.status.success());
}

#[test]
fn fork_reports_the_first_error_under_a_process_limit() {
    // RLIMIT_NPROC does not bind root; run the helper as `nobody` with a limit of 3 processes.
    let output = shell(
        "exec prlimit --nproc=3:3 setpriv --reuid=65534 --regid=65534 --clear-groups \"$HELPER\" fork 50",
    );
    let line = stdout_of(&output);
    assert!(line.starts_with("forked="), "{output:?}");
    assert!(line.ends_with(" error=EAGAIN\n"), "{line}");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn open_exe_refuses_a_running_binary() {
    let output = helper(&["open-exe", "/proc/self/exe"]);
    assert_eq!(stdout_of(&output), "ETXTBSY\n");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn write_and_stat_report_errno_names_and_modes() {
    assert_eq!(
        stdout_of(&helper(&["write", "/proc/no-such-file", "x"])),
        "ENOENT\n"
    );
    assert_eq!(
        stdout_of(&helper(&["stat", "/dev/null"])),
        "type=char mode=0666 uid=0 gid=0 rdev=1:3\n"
    );
}

#[test]
fn listen_and_connect_over_loopback_in_a_throwaway_namespace() {
    let script = r#"
        ip link set lo up || exit 1
        "$HELPER" listen tcp 8080 > /dev/null & tcp=$!
        "$HELPER" listen tcp 8081 custom-line > /dev/null & custom=$!
        sleep 0.3
        "$HELPER" connect 127.0.0.1 8080
        "$HELPER" connect 127.0.0.1 8081
        "$HELPER" connect 127.0.0.1 8082
        kill $tcp $custom
    "#;
    let output = Command::new("unshare")
        .args(["-n", "sh", "-c", script])
        .env("HELPER", HELPER)
        .output()
        .expect("run unshare");
    assert_eq!(
        stdout_of(&output),
        "hello from berth-helper\ncustom-line\n",
        "{output:?}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("ECONNREFUSED"));
}

#[test]
fn message_queues_are_seen_within_an_ipc_namespace_only() {
    // One IPC namespace for the sender and the first reader, a fresh one for the second: the
    // queue is there in the first, and ENOENT in the other.
    let script = r#"
        "$HELPER" msgq-send 4242 "from one process" || exit 1
        unshare -i "$HELPER" msgq-recv 4242
        "$HELPER" msgq-recv 4242
        "$HELPER" msgq-recv 4242
    "#;
    let output = Command::new("unshare")
        .args(["-i", "sh", "-c", script])
        .env("HELPER", HELPER)
        .output()
        .expect("run unshare");
    assert_eq!(stdout_of(&output), "sent\nfrom one process\n", "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("msgget 4242: ENOENT"), "{stderr}");
    assert!(stderr.contains("msgrcv 4242: ENOMSG"), "{stderr}");
}
