//! Tests that install filters in forked children and watch the kernel apply them. Installing
//! needs no root (the child sets no_new_privs first); taking a notify listener out of a child
//! with pidfd_getfd needs ptrace rights over it, which root has.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use oci_spec::runtime::{
    ContainerProcessState, ContainerProcessStateBuilder, ContainerState, StateBuilder,
};
use serde_json::json;

use super::{compile, install, send_to_listener, Filter};

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Exited(i32),
    KilledBy(i32),
}

/// Exit codes that tell a test the child could not even run its body.
const NO_NEW_PRIVS_FAILED: i32 = 250;
const INSTALL_FAILED: i32 = 251;

fn compiled(json: serde_json::Value) -> Filter {
    compile(&serde_json::from_value(json).unwrap()).unwrap()
}

/// Forks a child that sets no_new_privs, installs the filter, and exits with what `body`
/// returns. The test harness runs other threads, so the child must not allocate or take locks:
/// it makes raw syscalls only (and `install` allocates nothing).
fn in_child(filter: &Filter, body: impl FnOnce(Option<OwnedFd>) -> i32) -> Outcome {
    // SAFETY: the child below only makes syscalls and leaves through _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", Errno::last());
    if pid == 0 {
        // SAFETY: prctl and _exit are plain syscalls.
        let code = if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            NO_NEW_PRIVS_FAILED
        } else {
            match install(filter) {
                Ok(listener) => body(listener),
                Err(_) => INSTALL_FAILED,
            }
        };
        // SAFETY: leaves the child without running the parent's destructors or atexit handlers.
        unsafe { libc::_exit(code) };
    }
    wait(pid)
}

fn wait(pid: libc::pid_t) -> Outcome {
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid: {}", Errno::last());
    if libc::WIFEXITED(status) {
        Outcome::Exited(libc::WEXITSTATUS(status))
    } else {
        Outcome::KilledBy(libc::WTERMSIG(status))
    }
}

/// A raw syscall: its return value, or the errno it failed with.
fn syscall(nr: libc::c_long, args: [u64; 6]) -> Result<i64, i32> {
    // SAFETY: the tests only make syscalls whose arguments are plain numbers or null.
    let rc = unsafe { libc::syscall(nr, args[0], args[1], args[2], args[3], args[4], args[5]) };
    if rc == -1 {
        Err(Errno::last_raw())
    } else {
        Ok(rc)
    }
}

/// The errno a syscall fails with, 0 when it succeeds.
fn errno_of(nr: libc::c_long, args: [u64; 6]) -> i32 {
    syscall(nr, args).err().unwrap_or(0)
}

fn getppid_errno() -> i32 {
    errno_of(libc::SYS_getppid, [0; 6])
}

/// An i386 syscall without arguments, through int 0x80, as a 32-bit program would make it.
fn i386_syscall(nr: u32) -> i32 {
    let rc: i32;
    // SAFETY: int 0x80 enters the kernel's compat entry; it returns in eax, and r8-r11 are
    // declared clobbered in case the kernel does not preserve them.
    unsafe {
        std::arch::asm!("int 0x80", inlateout("eax") nr => rc,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _, options(nostack));
    }
    rc
}

#[test]
fn errno_returns_the_errno_ret() {
    let filter = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42 }]
    }));
    let outcome = in_child(&filter, |_| {
        if syscall(libc::SYS_getpid, [0; 6]).is_err() {
            return 200;
        }
        getppid_errno()
    });
    assert_eq!(outcome, Outcome::Exited(42));
}

#[test]
fn unlisted_syscalls_get_the_default_action() {
    let filter = compiled(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 13,
        "syscalls": [{ "names": ["exit_group", "exit", "getpid"], "action": "SCMP_ACT_ALLOW" }]
    }));
    let outcome = in_child(&filter, |_| {
        if syscall(libc::SYS_getpid, [0; 6]).is_err() {
            return 200;
        }
        getppid_errno()
    });
    assert_eq!(outcome, Outcome::Exited(libc::EACCES));
}

#[test]
fn each_operator_compares_the_full_64_bits() {
    // The probes, passed as getppid's first argument (the kernel ignores it, seccomp sees it),
    // around the value 0x1_0000_0005; bit i of the child's exit code says whether probe i matched.
    const PROBES: [u64; 8] = [
        5,
        0x1_0000_0004,
        0x1_0000_0005,
        0x1_0000_0006,
        0x2_0000_0000,
        0,
        u64::MAX,
        0x1_0000_0000,
    ];
    let cases = [
        ("SCMP_CMP_EQ", 0x1_0000_0005u64, 0u64, 0b0000_0100),
        ("SCMP_CMP_NE", 0x1_0000_0005, 0, 0b1111_1011),
        ("SCMP_CMP_LT", 0x1_0000_0005, 0, 0b1010_0011),
        ("SCMP_CMP_LE", 0x1_0000_0005, 0, 0b1010_0111),
        ("SCMP_CMP_GT", 0x1_0000_0005, 0, 0b0101_1000),
        ("SCMP_CMP_GE", 0x1_0000_0005, 0, 0b0101_1100),
        // Bit 32 set and bit 0 clear.
        (
            "SCMP_CMP_MASKED_EQ",
            0x1_0000_0001,
            0x1_0000_0000,
            0b1000_1010,
        ),
    ];
    for (op, value, value_two, expected) in cases {
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{
                "names": ["getppid"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 42,
                "args": [{ "index": 0, "value": value, "valueTwo": value_two, "op": op }]
            }]
        }));
        let outcome = in_child(&filter, |_| {
            let mut matched = 0;
            for (bit, probe) in PROBES.into_iter().enumerate() {
                if errno_of(libc::SYS_getppid, [probe, 0, 0, 0, 0, 0]) == 42 {
                    matched |= 1 << bit;
                }
            }
            matched
        });
        assert_eq!(outcome, Outcome::Exited(expected), "{op}");
    }
}

#[test]
fn kill_actions_kill_with_sigsys() {
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
    ] {
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["getppid"], "action": action }]
        }));
        let outcome = in_child(&filter, |_| getppid_errno() + 100);
        assert_eq!(outcome, Outcome::KilledBy(libc::SIGSYS), "{action}");
    }
}

#[test]
fn trace_without_a_tracer_fails_with_enosys() {
    let filter = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_TRACE" }]
    }));
    assert_eq!(
        in_child(&filter, |_| getppid_errno()),
        Outcome::Exited(libc::ENOSYS)
    );
}

#[test]
fn the_log_flag_and_the_log_action_are_accepted() {
    let filter = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                  "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [
            { "names": ["getppid"], "action": "SCMP_ACT_LOG" },
            { "names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42 }
        ]
    }));
    let parent = std::process::id() as i64;
    let outcome = in_child(&filter, |_| {
        if syscall(libc::SYS_getppid, [0; 6]) != Ok(parent) {
            return 200;
        }
        errno_of(libc::SYS_getpgid, [0; 6])
    });
    assert_eq!(outcome, Outcome::Exited(42));
}

#[test]
fn i386_syscalls_follow_the_x86_rules_or_die_when_x86_is_not_listed() {
    const I386_GETPPID: u32 = 64;
    let rule = json!([{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42 }]);
    let with_x86 = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": rule
    }));
    assert_eq!(
        in_child(&with_x86, |_| -i386_syscall(I386_GETPPID)),
        Outcome::Exited(42)
    );
    let without = compiled(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": rule }));
    let outcome = in_child(&without, |_| -i386_syscall(I386_GETPPID));
    assert_eq!(outcome, Outcome::KilledBy(libc::SIGSYS));
}

#[test]
fn x32_syscalls_follow_the_x32_rules_or_die_when_x32_is_not_listed() {
    // The x32 getppid, as seccomp sees it whether or not the kernel runs x32 programs.
    const X32_GETPPID: libc::c_long = 0x4000_0000 | 110;
    let rule = json!([{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42 }]);
    let with_x32 = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
        "syscalls": rule
    }));
    let x32_getppid = |_| errno_of(X32_GETPPID, [0; 6]);
    assert_eq!(in_child(&with_x32, x32_getppid), Outcome::Exited(42));
    let without = compiled(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": rule }));
    assert_eq!(
        in_child(&without, x32_getppid),
        Outcome::KilledBy(libc::SIGSYS)
    );
}

fn docker_profile() -> Filter {
    compiled(serde_json::from_str(include_str!("testdata/docker-default.json")).unwrap())
}

#[test]
fn dockers_profile_denies_unshare_of_a_user_namespace() {
    let unshare_user = |_| {
        errno_of(
            libc::SYS_unshare,
            [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
        )
    };
    // Without the filter this root child may make a user namespace, so the EPERM is the filter's.
    let allow_all = compiled(json!({ "defaultAction": "SCMP_ACT_ALLOW" }));
    assert_eq!(in_child(&allow_all, unshare_user), Outcome::Exited(0));
    assert_eq!(
        in_child(&docker_profile(), unshare_user),
        Outcome::Exited(libc::EPERM)
    );
}

#[test]
fn dockers_profile_answers_clone3_with_enosys_and_checks_socket_families() {
    let filter = docker_profile();
    let clone3 = |_| errno_of(libc::SYS_clone3, [0; 6]);
    assert_eq!(in_child(&filter, clone3), Outcome::Exited(libc::ENOSYS));
    let socket = |family: i32| errno_of(libc::SYS_socket, [family as u64, 1, 0, 0, 0, 0]);
    assert_eq!(
        in_child(&filter, |_| socket(libc::AF_VSOCK)),
        Outcome::Exited(libc::EPERM)
    );
    assert_eq!(
        in_child(&filter, |_| socket(libc::AF_UNIX)),
        Outcome::Exited(0)
    );
}

/// Reads the container process state and the fd that came with it, as a seccomp agent does.
fn receive_state(agent: &UnixListener) -> (ContainerProcessState, OwnedFd) {
    let (mut stream, _) = agent.accept().unwrap();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (received, fd) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let fds: Vec<RawFd> = message
            .cmsgs()
            .unwrap()
            .flat_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds,
                other => panic!("unexpected control message {other:?}"),
            })
            .collect();
        assert_eq!(fds.len(), 1, "exactly one fd, with the first sendmsg");
        // SAFETY: SCM_RIGHTS gave this process a new fd that nothing else owns.
        (message.bytes, unsafe { OwnedFd::from_raw_fd(fds[0]) })
    };
    buffer.truncate(received);
    stream.read_to_end(&mut buffer).unwrap();
    (serde_json::from_slice(&buffer).unwrap(), fd)
}

/// Answers the next notification with `value` as the syscall's return, after checking it is
/// `nr` from `pid`.
fn answer_notification(listener: &OwnedFd, pid: libc::pid_t, nr: libc::c_long, value: i64) {
    // SAFETY: seccomp_notif is plain data; zeroed is what NOTIF_RECV wants.
    let mut notification: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl fills `notification`, which outlives the call.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut notification,
        )
    };
    assert_eq!(rc, 0, "NOTIF_RECV: {}", Errno::last());
    assert_eq!(notification.pid, pid as u32);
    assert_eq!(notification.data.nr, nr as i32);
    let mut response = libc::seccomp_notif_resp {
        id: notification.id,
        val: value,
        error: 0,
        flags: 0,
    };
    // SAFETY: the ioctl reads `response`, which outlives the call.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut response,
        )
    };
    assert_eq!(rc, 0, "NOTIF_SEND: {}", Errno::last());
}

#[test]
fn notify_hands_a_listener_to_the_agent_which_answers_the_syscall() {
    let socket_path =
        std::env::temp_dir().join(format!("berth-seccomp-agent-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket_path);
    let agent = UnixListener::bind(&socket_path).unwrap();
    let filter = compiled(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket_path,
        "listenerMetadata": "answer=77",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_NOTIFY" }]
    }));
    assert!(filter.has_notify());

    // The child tells its listener's fd number over one pipe, waits on another until the
    // parent has taken a copy, closes its own, and makes the notified syscall.
    let (fd_number_read, fd_number_write) = nix::unistd::pipe().unwrap();
    let (go_read, go_write) = nix::unistd::pipe().unwrap();
    // SAFETY: the child below only makes syscalls and leaves through _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork: {}", Errno::last());
    if child == 0 {
        // SAFETY: raw syscalls on fds this process holds; the buffers outlive the calls.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            let Ok(Some(listener)) = install(&filter) else {
                libc::_exit(INSTALL_FAILED)
            };
            let number: RawFd = listener.as_raw_fd();
            libc::write(
                fd_number_write.as_raw_fd(),
                (&number as *const RawFd).cast(),
                4,
            );
            let mut go = 0u8;
            libc::read(go_read.as_raw_fd(), (&mut go as *mut u8).cast(), 1);
            drop(listener);
            libc::_exit(syscall(libc::SYS_getppid, [0; 6]).unwrap_or(-1) as i32)
        }
    }
    // So that reads see the end of file if the child dies early.
    drop((fd_number_write, go_read));

    let mut number = [0u8; 4];
    let got = nix::unistd::read(&fd_number_read, &mut number).unwrap();
    assert_eq!(
        got,
        4,
        "the child died before telling its listener: {:?}",
        wait(child)
    );
    let pidfd = syscall(libc::SYS_pidfd_open, [child as u64, 0, 0, 0, 0, 0]).unwrap();
    // SAFETY: pidfd_open returned a new fd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    let copy = [
        pidfd.as_raw_fd() as u64,
        i32::from_ne_bytes(number) as u64,
        0,
        0,
        0,
        0,
    ];
    let listener = syscall(libc::SYS_pidfd_getfd, copy).unwrap();
    // SAFETY: pidfd_getfd returned a new fd that nothing else owns.
    let listener = unsafe { OwnedFd::from_raw_fd(listener as RawFd) };
    nix::unistd::write(&go_write, b"g").unwrap();

    let agent_thread = std::thread::spawn(move || {
        let (state, fd) = receive_state(&agent);
        answer_notification(&fd, child, libc::SYS_getppid, 77);
        state
    });
    let state = ContainerProcessStateBuilder::default()
        .version("1.2.0")
        .pid(child)
        .state(
            StateBuilder::default()
                .version("1.2.0")
                .id("c1")
                .status(ContainerState::Creating)
                .pid(child)
                .bundle("/bundles/c1")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    send_to_listener(&socket_path, "answer=77", &state, listener.as_fd()).unwrap();
    drop(listener);
    let received = agent_thread.join().unwrap();
    std::fs::remove_file(&socket_path).unwrap();

    assert_eq!(received.fds(), &["seccompFd".to_string()]);
    assert_eq!(received.metadata().as_deref(), Some("answer=77"));
    assert_eq!(received.pid(), &child);
    assert_eq!(received.state().id(), "c1");
    assert_eq!(wait(child), Outcome::Exited(77));
}

#[test]
fn sending_to_a_missing_listener_names_the_path() {
    let (read_end, _write_end) = nix::unistd::pipe().unwrap();
    let path = std::path::Path::new("/nonexistent/berth-agent.sock");
    let state = ContainerProcessState::default();
    let error = send_to_listener(path, "", &state, read_end.as_fd()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "sending the seccomp listener to /nonexistent/berth-agent.sock: \
         No such file or directory (os error 2)"
    );
}
