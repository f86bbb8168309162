//! seccomp through berth: Docker's default profile, errnoRet, argument comparisons, and
//! SCMP_ACT_NOTIFY with a seccomp agent (written here) that answers the container's syscall.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use runtime_tests::{need_root, receive_seccomp_listener, workspace, Env};
use serde_json::{json, Value};

/// Docker's default profile as dockerd sends it (see src/seccomp/testdata/docker-default.jq).
fn docker_profile() -> Value {
    let path = workspace().join("src/seccomp/testdata/docker-default.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Adds capabilities to every set, so only seccomp stands between the helper and the call.
fn add_caps(config: &mut Value, caps: &[&str]) {
    for set in ["bounding", "effective", "permitted"] {
        let list = config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap();
        list.extend(caps.iter().map(|c| Value::from(*c)));
    }
}

#[test]
fn dockers_default_profile_denies_unshare_with_eperm() {
    need_root!();
    let env = Env::new("seccomp-docker");
    // CAP_SYS_ADMIN makes unshare possible, so the EPERM comes from the profile alone.
    let id = env.id("plain");
    let bundle = env.bundle(&id, &["/bin/helper", "try-syscall", "unshare"], |c| {
        add_caps(c, &["CAP_SYS_ADMIN"])
    });
    assert_eq!(env.run(&bundle, &id).stdout, "ok\n", "control run");

    // Docker leaves no_new_privs off unless asked: then berth installs the filter before it
    // drops capabilities (which needs CAP_SYS_ADMIN), and the profile allows what follows.
    for no_new_privs in [true, false] {
        let id = env.id(&format!("docker-nnp-{no_new_privs}"));
        let script = "helper try-syscall unshare; helper try-syscall unshare-user; \
                      helper seccomp; helper nnp; echo still runs: $(echo a b | wc -w)";
        let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
            add_caps(c, &["CAP_SYS_ADMIN"]);
            c["process"]["noNewPrivileges"] = Value::from(no_new_privs);
            c["linux"]["seccomp"] = docker_profile();
        });
        let out = env.run(&bundle, &id);
        // seccomp mode 2 is a filter; the shell and its pipes work under the profile.
        let nnp = u8::from(no_new_privs);
        assert_eq!(
            out.stdout,
            format!("EPERM\nEPERM\n2\n{nnp}\nstill runs: 2\n"),
            "{}",
            out.stderr
        );
        env.assert_gone(&id);
    }
}

#[test]
fn errno_ret_and_argument_comparisons_pick_the_calls() {
    need_root!();
    let env = Env::new("seccomp-args");
    let id = env.id("args");
    let script = "helper try-syscall uname; helper try-syscall getcwd; \
                  helper try-syscall socket-raw; helper try-syscall bind-low";
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        add_caps(c, &["CAP_NET_RAW"]);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOTBLK},
                // arm's call exists, just not here: skipped, as libseccomp skips it.
                {"names": ["arm_fadvise64_64", "getcwd"], "action": "SCMP_ACT_ERRNO"},
                // socket(AF_INET, SOCK_RAW, …) only: the TCP socket of bind-low passes.
                {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES,
                 "args": [{"index": 0, "value": libc::AF_INET, "op": "SCMP_CMP_EQ"},
                          {"index": 1, "value": 0xf, "valueTwo": libc::SOCK_RAW,
                           "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        });
    });
    let out = env.run(&bundle, &id);
    assert_eq!(out.stdout, "ENOTBLK\nEPERM\nEACCES\nok\n", "{}", out.stderr);
}

#[test]
fn conditions_on_one_argument_each_match_as_under_runc_and_crun() {
    need_root!();
    let env = Env::new("seccomp-same-arg");
    let id = env.id("same");
    // socket(AF_INET6 or AF_INET, …): two conditions on argument 0 are two rules, as runc and
    // crun read them (both at once could never hold). The raw IPv4 socket is refused.
    let bundle = env.bundle(&id, &["/bin/helper", "try-syscall", "socket-raw"], |c| {
        add_caps(c, &["CAP_NET_RAW"]);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES,
                          "args": [{"index": 0, "value": libc::AF_INET6, "op": "SCMP_CMP_EQ"},
                                   {"index": 0, "value": libc::AF_INET, "op": "SCMP_CMP_EQ"}]}]
        });
    });
    let out = env.run(&bundle, &id);
    assert_eq!(out.stdout, "EACCES\n", "{}", out.stderr);
    env.assert_gone(&id);
}

#[test]
fn a_profile_that_forbids_what_berth_calls_still_starts_without_no_new_privileges() {
    need_root!();
    let env = Env::new("seccomp-early");
    let id = env.id("early");
    // Without noNewPrivileges the filter goes in while berth still holds CAP_SYS_ADMIN, before
    // the user change; the working directory is entered (and checked with getcwd) before it.
    // faccessat2, which berth asks whether the program may run, is denied too (runtime-tools'
    // profile does): execve decides then.
    let bundle = env.bundle(&id, &["/bin/helper", "try-syscall", "getcwd"], |c| {
        c["process"]["noNewPrivileges"] = json!(false);
        c["process"]["cwd"] = json!("/tmp");
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd", "chdir", "faccessat2"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    let out = env.run(&bundle, &id);
    assert_eq!(out.stdout, "EPERM\n", "{}", out.stderr);
    env.assert_gone(&id);
}

#[test]
fn syscalls_newer_than_linux_6_1_follow_dockers_profile_and_newer_than_it_get_enosys() {
    need_root!();
    let env = Env::new("seccomp-new");
    let id = env.id("new");
    // fchmodat2 (Linux 6.6) Docker allows by name; file_getattr (468, Linux 6.17) and 1000 (no
    // kernel's yet) are above removexattrat (466), the profile's highest: ENOSYS, as on a
    // kernel without them, so glibc falls back. mount (165) is below it and not allowed: EPERM.
    let script = "helper try-syscall fchmodat2; helper raw-syscall 468; \
                  helper raw-syscall 1000; helper raw-syscall 165";
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        c["linux"]["seccomp"] = docker_profile();
    });
    let out = env.run(&bundle, &id);
    assert_eq!(out.stdout, "ok\nENOSYS\nENOSYS\nEPERM\n", "{}", out.stderr);
    // Control: without the profile the kernel runs each (fchmodat2 changes nothing, 468 and
    // mount fail on their zero arguments, 1000 does not exist).
    let id = env.id("control");
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        add_caps(c, &["CAP_SYS_ADMIN"]);
    });
    let out = env.run(&bundle, &id);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "ok", "{}", out.stdout);
    assert_ne!(
        lines[1], "ENOSYS",
        "file_getattr exists on this kernel: {}",
        out.stdout
    );
    assert_eq!(lines[2], "ENOSYS", "{}", out.stdout);
    assert_ne!(lines[3], "EPERM", "{}", out.stdout);
}

#[test]
fn an_unknown_syscall_name_fails_create_where_it_would_restrict_and_warns_otherwise() {
    need_root!();
    let env = Env::new("seccomp-unknown");
    let id = env.id("restrict");
    let bundle = env.bundle(&id, &["true"], |c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["uname", "no_such_syscall"], "action": "SCMP_ACT_ERRNO"}]
        });
    });
    let err = env
        .berth(&["create", "--bundle", bundle.to_str().unwrap(), &id])
        .fails()
        .to_string();
    assert!(
        err.contains("linux.seccomp.syscalls[0] restricts \"no_such_syscall\", a syscall berth does not know"),
        "{err}"
    );
    env.assert_gone(&id);
    // Allowing a syscall berth does not know, under a default that denies, runs with a warning.
    let id = env.id("allow");
    let bundle = env.bundle(&id, &["/bin/helper", "try-syscall", "uname"], |c| {
        let mut profile = docker_profile();
        profile["syscalls"][0]["names"]
            .as_array_mut()
            .unwrap()
            .push("no_such_syscall".into());
        c["linux"]["seccomp"] = profile;
    });
    let out = env.run(&bundle, &id);
    assert_eq!(out.ok(), "ok\n");
    assert!(
        out.stderr
            .contains("level=warning msg=\"linux.seccomp names syscalls berth does not know")
            && out
                .stderr
                .contains("no_such_syscall; they keep the default action"),
        "{}",
        out.stderr
    );
    env.assert_root_empty();
}

#[test]
fn a_bad_profile_fails_create_and_leaves_nothing() {
    need_root!();
    let env = Env::new("seccomp-bad");
    let id = env.id("bad");
    let bundle = env.bundle(&id, &["true"], |c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_NOTIFY"}]
        });
    });
    let err = env
        .berth(&["create", "--bundle", bundle.to_str().unwrap(), &id])
        .fails()
        .to_string();
    assert!(
        err.contains("linux.seccomp.listenerPath is not set, but a rule uses SCMP_ACT_NOTIFY"),
        "{err}"
    );
    env.assert_gone(&id);
}

/// What the agent saw and did.
struct AgentReport {
    state: Value,
    /// The syscall numbers it answered, in order.
    syscalls: Vec<i32>,
}

/// A seccomp agent: takes one connection on `listener`, reads the container process state and
/// the notify descriptor, then answers every notification with `errno` until the container's
/// processes are gone (or 20 s pass).
fn agent(listener: UnixListener, errno: i32) -> AgentReport {
    let (stream, _) = listener.accept().unwrap();
    let (state, notify_fd) = receive_seccomp_listener(&stream);

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut syscalls = Vec::new();
    while Instant::now() < deadline {
        let mut poll = libc::pollfd {
            fd: notify_fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd.
        if unsafe { libc::poll(&mut poll, 1, 1000) } < 1 || poll.revents & libc::POLLIN == 0 {
            if poll.revents & libc::POLLHUP != 0 {
                break; // no process uses the filter any more
            }
            continue;
        }
        // SAFETY: seccomp_notif is plain data; NOTIF_RECV wants it zeroed.
        let mut request: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the ioctl fills `request`.
        let rc = unsafe {
            libc::ioctl(
                notify_fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV as _,
                &mut request,
            )
        };
        if rc != 0 {
            continue; // the caller went away meanwhile
        }
        let response = libc::seccomp_notif_resp {
            id: request.id,
            val: 0,
            error: -errno,
            flags: 0,
        };
        // SAFETY: the ioctl reads `response`.
        unsafe {
            libc::ioctl(
                notify_fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND as _,
                &response,
            )
        };
        syscalls.push(request.data.nr);
    }
    AgentReport { state, syscalls }
}

#[test]
fn notify_reaches_the_agent_at_listener_path_which_answers() {
    need_root!();
    let env = Env::new("seccomp-notify");
    let id = env.id("notify");
    let socket = env.scratch.join("agent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let agent = std::thread::spawn(move || agent(listener, libc::ECONNREFUSED));
    let script = "helper try-syscall getcwd; helper try-syscall chroot";
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": socket.to_str().unwrap(),
            "listenerMetadata": "from the berth tests",
            "syscalls": [{"names": ["chroot"], "action": "SCMP_ACT_NOTIFY"}]
        });
    });
    let out = env.run(&bundle, &id);
    let report = agent.join().expect("the agent ran");
    // The container lacks CAP_SYS_CHROOT: without the agent's answer chroot fails with EPERM.
    assert_eq!(out.stdout, "ok\nECONNREFUSED\n", "{}", out.stderr);
    assert_eq!(report.syscalls, [libc::SYS_chroot as i32]);
    assert_eq!(report.state["fds"], json!(["seccompFd"]));
    assert_eq!(report.state["metadata"], "from the berth tests");
    assert_eq!(report.state["state"]["id"], id.as_str());
    assert_eq!(report.state["state"]["status"], "creating");
    assert!(report.state["pid"].as_i64().unwrap() > 0);
    env.assert_gone(&id);
}

#[test]
fn notify_with_no_agent_listening_fails_create_and_leaves_nothing() {
    need_root!();
    let env = Env::new("seccomp-noagent");
    let id = env.id("noagent");
    let socket = env.scratch.join("nobody.sock");
    let bundle = env.bundle(&id, &["true"], |c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": socket.to_str().unwrap(),
            "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_NOTIFY"}]
        });
    });
    let err = env
        .berth(&["create", "--bundle", bundle.to_str().unwrap(), &id])
        .fails()
        .to_string();
    assert!(
        err.contains(&format!(
            "sending the seccomp listener to {}",
            socket.display()
        )),
        "{err}"
    );
    env.assert_gone(&id);
}
