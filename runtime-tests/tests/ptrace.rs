//! CVE-2019-5736 from a container that holds CAP_SYS_PTRACE: non-dumpable does not stop it, so
//! the processes berth makes in a pid namespace such a container can see must start from a
//! sealed view of berth's binary (src/process/seal.rs, src/container/exposure.rs).
//!
//! The attacker is `helper steal-exe` (rootfs-fixtures/helper/src/steal.rs): it watches /proc,
//! opens the exe of every process that runs a program foreign to the container, reopens it for
//! writing at once, keeps what is busy (ETXTBSY), and tries again once berth no longer runs,
//! writing a script over the binary where it can. Each test runs a private copy of berth, so
//! "no berth runs" is a moment the test controls, and checks that the attacker did get hold of
//! berth's processes (the race happened) but never wrote, and that the copy is unchanged.
//!
//! The same containers then look at everything else a process of berth's shows them before its
//! program runs (`helper probe-procs`, rootfs-fixtures/helper/src/probe.rs): ptrace, and its root,
//! working directory, mount namespace and descriptors under /proc. Whatever of berth's they see
//! must hold no more than the container's own final privileges and view.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use runtime_tests::{
    berth_bin, join_namespace, need_root, read, run_to_files, wait_until, Env, Run,
};
use serde_json::{json, Value};

/// How many `exec`s race the attacker in the main test (the check).
const EXECS: usize = 300;

/// A copy of berth that only this test runs.
fn private_berth(env: &Env) -> PathBuf {
    let copy = env.scratch.join("berth");
    std::fs::copy(berth_bin(), &copy).unwrap();
    copy
}

fn berth_at(env: &Env, binary: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(binary);
    let (key, value) = SECRET.split_once('=').unwrap();
    cmd.env(key, value).arg("--root").arg(&env.root).args(args);
    run_to_files(&mut cmd, &env.scratch)
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether any process runs the file at `path` (not a view of it).
fn runs(path: &Path) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| std::fs::read_link(e.path().join("exe")).is_ok_and(|exe| exe == path))
}

/// The capabilities of the attacker: the template's plus CAP_SYS_PTRACE, or every capability
/// berth itself holds on this machine.
#[derive(Clone, Copy, Debug)]
enum Caps {
    Ptrace,
    Every,
}

fn every_capability(env: &Env) -> Vec<String> {
    let features: Value = serde_json::from_str(env.berth(&["features"]).ok()).unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap();
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").unwrap();
    let last: usize = last.trim().parse().unwrap();
    // `features` lists the names in the kernel's order, so the position is the number.
    features["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|&(bit, _)| bit <= last && bounding & (1 << bit) != 0)
        .map(|(_, name)| name.as_str().unwrap().to_string())
        .collect()
}

fn give(config: &mut Value, env: &Env, caps: Caps) {
    let names = match caps {
        Caps::Ptrace => vec!["CAP_SYS_PTRACE".to_string()],
        Caps::Every => every_capability(env),
    };
    for set in ["bounding", "effective", "permitted"] {
        let list = config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap();
        for name in &names {
            if !list.iter().any(|c| c == name.as_str()) {
                list.push(Value::from(name.as_str()));
            }
        }
    }
}

/// Bind-mounts the host folder `dir` at /shared in the container, read-write.
fn share(config: &mut Value, dir: &Path) {
    config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/shared", "type": "bind", "source": dir, "options": ["rbind", "rw"]
    }));
}

/// A folder for the attacker's report.
fn shared(env: &Env) -> PathBuf {
    let dir = env.scratch.join("shared");
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// Starts the attacker as the init of a container of its own (pid namespace included).
fn start_attacker(env: &Env, berth: &Path, shared: &Path, caps: Caps) -> String {
    let id = env.id("attacker");
    let bundle = env.bundle(&id, &["/bin/helper", "steal-exe", "/shared"], |c| {
        share(c, shared);
        give(c, env, caps);
    });
    berth_at(
        env,
        berth,
        &["run", "--detach", "--bundle", b(&bundle), &id],
    )
    .ok();
    id
}

fn b(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// How many processes running berth the attacker has opened the exe of so far.
fn seen(shared: &Path) -> u64 {
    std::fs::read_to_string(shared.join("seen"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until no process runs the copy of berth, tells the attacker to finish, and returns its
/// report: `processes` and a count per outcome.
fn finish(berth: &Path, shared: &Path) -> BTreeMap<String, u64> {
    wait_until("no process to run the copy of berth", || !runs(berth));
    std::fs::write(shared.join("stop"), "").unwrap();
    let report = shared.join("report");
    wait_until("the attacker's report", || report.exists());
    std::fs::read_to_string(report)
        .unwrap()
        .lines()
        .map(|line| {
            let (key, count) = line.rsplit_once(' ').unwrap();
            (key.to_string(), count.parse().unwrap())
        })
        .collect()
}

/// The attacker opened berth's processes (the race was real) and got nothing but refusals, and
/// the binary is as it was.
#[track_caller]
fn assert_refused(report: &BTreeMap<String, u64>, berth: &Path, before: &str, failed: &[String]) {
    eprintln!("the attacker's report: {report:?}");
    assert!(
        report.get("processes").is_some_and(|&n| n > 0),
        "the attacker never got hold of a process running berth: {report:?}"
    );
    for (outcome, count) in report {
        let refusal = ["processes", "EROFS", "EPERM", "ETXTBSY"].contains(&outcome.as_str())
            || outcome.starts_with("remount E");
        assert!(
            refusal,
            "the attacker got {outcome} {count} times: {report:?}"
        );
    }
    assert_eq!(sha256(berth), before, "berth's binary changed: {report:?}");
    assert!(
        failed.is_empty(),
        "{} execs failed, the first: {}",
        failed.len(),
        failed[0]
    );
}

/// `threads` threads run `count` `exec`s of /bin/true into `id` between them. Returns what the
/// failed ones printed: each must succeed, but a failure is reported after the attacker's
/// report (a replaced berth fails, printing what the container put in its place).
fn race_execs(env: &Env, berth: &Path, id: &str, count: usize, threads: usize) -> Vec<String> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    (0..count / threads)
                        .map(|_| berth_at(env, berth, &["exec", id, "/bin/true"]))
                        .filter(|run| run.code != 0)
                        .map(|run| format!("{}{}", run.stdout, run.stderr))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

fn exec_race(name: &str, caps: Caps) {
    let env = Env::new(name);
    let berth = private_berth(&env);
    let before = sha256(&berth);
    let shared = shared(&env);
    let attacker = start_attacker(&env, &berth, &shared, caps);
    let failed = race_execs(&env, &berth, &attacker, EXECS, 3);
    let report = finish(&berth, &shared);
    let _ = berth_at(&env, &berth, &["delete", "--force", &attacker]);
    assert_refused(&report, &berth, &before, &failed);
}

#[test]
fn a_container_with_cap_sys_ptrace_racing_300_execs_leaves_berth_unchanged() {
    need_root!();
    exec_race("ptrace-exec", Caps::Ptrace);
}

#[test]
fn a_container_with_every_capability_racing_300_execs_leaves_berth_unchanged() {
    need_root!();
    exec_race("ptrace-exec-every", Caps::Every);
}

/// A container created into the attacker's pid namespace (as in a Kubernetes pod with
/// shareProcessNamespace) waits for `start` as a process of berth's.
fn created_init(name: &str, caps: Caps) {
    let env = Env::new(name);
    let berth = private_berth(&env);
    let before = sha256(&berth);
    let shared = shared(&env);
    let attacker = start_attacker(&env, &berth, &shared, caps);
    let pid_ns = format!("/proc/{}/ns/pid", env.pid(&attacker));
    let victim = env.id("victim");
    let bundle = env.bundle(&victim, &["/bin/helper", "pause"], |c| {
        join_namespace(c, "pid", &pid_ns)
    });
    berth_at(&env, &berth, &["create", "--bundle", b(&bundle), &victim]).ok();
    wait_until("the attacker to open the created init's exe", || {
        seen(&shared) > 0
    });
    let start = berth_at(&env, &berth, &["start", &victim]);
    let report = finish(&berth, &shared);
    let _ = berth_at(&env, &berth, &["delete", "--force", &victim]);
    let _ = berth_at(&env, &berth, &["delete", "--force", &attacker]);
    let failed: Vec<String> = (start.code != 0)
        .then_some(start.stderr)
        .into_iter()
        .collect();
    assert_refused(&report, &berth, &before, &failed);
}

#[test]
fn a_created_init_in_the_pid_namespace_of_a_container_with_cap_sys_ptrace_is_sealed() {
    need_root!();
    created_init("ptrace-created", Caps::Ptrace);
}

#[test]
fn a_created_init_in_the_pid_namespace_of_a_container_with_every_capability_is_sealed() {
    need_root!();
    created_init("ptrace-created-every", Caps::Every);
}

/// A container of Docker's kind (its own pid namespace, no CAP_SYS_PTRACE) into which a process
/// with CAP_SYS_PTRACE is exec'd: every exec after it is sealed.
#[test]
fn an_exec_with_cap_sys_ptrace_seals_the_execs_after_it() {
    need_root!();
    let env = Env::new("ptrace-later-exec");
    let berth = private_berth(&env);
    let before = sha256(&berth);
    let shared = shared(&env);
    let id = env.id("target");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| share(c, &shared));
    berth_at(
        &env,
        &berth,
        &["run", "--detach", "--bundle", b(&bundle), &id],
    )
    .ok();
    let attack = ["exec", "--detach", "--cap", "CAP_SYS_PTRACE", &id];
    let attack = [&attack[..], &["/bin/helper", "steal-exe", "/shared"]].concat();
    berth_at(&env, &berth, &attack).ok();
    let failed = race_execs(&env, &berth, &id, 60, 2);
    let report = finish(&berth, &shared);
    let _ = berth_at(&env, &berth, &["delete", "--force", &id]);
    assert_refused(&report, &berth, &before, &failed);
}

/// The same container kind, whose pid namespace a container with CAP_SYS_PTRACE joins later:
/// every exec into the first one after that is sealed.
#[test]
fn a_container_with_cap_sys_ptrace_joining_a_pid_namespace_seals_its_owners_execs() {
    need_root!();
    let env = Env::new("ptrace-joiner");
    let berth = private_berth(&env);
    let before = sha256(&berth);
    let shared = shared(&env);
    let owner = env.id("owner");
    let bundle = env.bundle(&owner, &["/bin/helper", "pause"], |_| {});
    berth_at(
        &env,
        &berth,
        &["run", "--detach", "--bundle", b(&bundle), &owner],
    )
    .ok();
    let pid_ns = format!("/proc/{}/ns/pid", env.pid(&owner));
    let joiner = env.id("joiner");
    let bundle = env.bundle(&joiner, &["/bin/helper", "steal-exe", "/shared"], |c| {
        share(c, &shared);
        give(c, &env, Caps::Ptrace);
        join_namespace(c, "pid", &pid_ns);
    });
    berth_at(
        &env,
        &berth,
        &["run", "--detach", "--bundle", b(&bundle), &joiner],
    )
    .ok();
    let failed = race_execs(&env, &berth, &owner, 60, 2);
    let report = finish(&berth, &shared);
    let _ = berth_at(&env, &berth, &["delete", "--force", &joiner]);
    let _ = berth_at(&env, &berth, &["delete", "--force", &owner]);
    assert_refused(&report, &berth, &before, &failed);
}

/// Whether an exclusive flock on the namespace file `path` can be had now (released at once).
fn lock_exclusively(path: &str) -> bool {
    let ns = std::fs::File::open(path).unwrap();
    // SAFETY: flock on a descriptor we own; closing it releases the lock.
    unsafe { libc::flock(ns.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// A created init of Docker's kind is not sealed (that costs nothing), so nothing that could
/// ptrace may enter its pid namespace before it starts; after `start`, it may.
#[test]
fn nothing_that_could_ptrace_enters_the_pid_namespace_of_a_created_container() {
    need_root!();
    let env = Env::new("ptrace-refused");
    let owner = env.id("owner");
    let bundle = env.bundle(&owner, &["/bin/helper", "pause"], |_| {});
    env.create(&bundle, &owner, &[]);
    // The common path: the created init runs berth's own binary, not a sealed view of it.
    let init = env.pid(&owner);
    assert_eq!(
        std::fs::read_link(format!("/proc/{init}/exe")).unwrap(),
        berth_bin()
    );
    let expected = format!(
        "cannot give a process that could use CAP_SYS_PTRACE the pid namespace of container \
         \"{owner}\" before it starts: its init still runs berth's code"
    );
    let exec = env.berth(&["exec", "--cap", "CAP_SYS_PTRACE", &owner, "/bin/true"]);
    assert!(exec.fails().contains(&expected), "{}", exec.stderr);

    let pid_ns = format!("/proc/{init}/ns/pid");
    let joiner = env.id("joiner");
    let bundle = env.bundle(&joiner, &["/bin/true"], |c| {
        give(c, &env, Caps::Ptrace);
        join_namespace(c, "pid", &pid_ns);
    });
    let create = env.berth(&["create", "--bundle", b(&bundle), &joiner]);
    assert!(create.fails().contains(&expected), "{}", create.stderr);
    env.assert_gone(&joiner);
    assert_eq!(env.state(&owner)["status"], "created");

    // The created init holds its pid namespace shared until its execve, so marking it would
    // wait for that; it is free once the program runs.
    assert!(
        !lock_exclusively(&pid_ns),
        "the created init does not hold its pid namespace"
    );
    env.berth(&["start", &owner]).ok();
    wait_until("the started init to let go of its pid namespace", || {
        lock_exclusively(&pid_ns)
    });
    env.berth(&["exec", "--cap", "CAP_SYS_PTRACE", &owner, "/bin/true"])
        .ok();
    env.berth(&["delete", "--force", &owner]).ok();
    env.assert_root_empty();
}

/// The folder the prober shares with the test: the path of a file only the host has (the
/// prober reports reaching it), and the host's mount namespace.
/// The host's file the prober looks for through every process it sees.
fn marker(env: &Env) -> PathBuf {
    env.scratch.join("only-the-host-has-this")
}

/// No file of the host's was made through a process of berth's: the prober tries to make
/// `MARKER.written` beside the marker through each one's root, working directory and descriptors.
#[track_caller]
fn assert_no_host_file_written(env: &Env) {
    let written = marker(env).with_extension("written");
    assert!(
        !written.exists(),
        "the prober made {} on the host",
        written.display()
    );
}

fn probe_dir(env: &Env) -> PathBuf {
    let dir = shared(env);
    let marker = marker(env);
    std::fs::write(&marker, "host").unwrap();
    std::fs::write(dir.join("marker"), marker.to_str().unwrap()).unwrap();
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    std::fs::write(dir.join("host-mnt"), host_mnt.to_str().unwrap()).unwrap();
    // berth's caller's environment, which its processes show until their execve.
    std::fs::write(dir.join("secret"), SECRET.split_once('=').unwrap().1).unwrap();
    dir
}

/// A variable of the environment berth runs in, which no container may read.
const SECRET: &str = "BERTH_TEST_CALLER_SECRET=the-callers-environment-is-not-the-containers";

/// A filter that allows everything but `swapon`: a process under it says `Seccomp: 2`.
fn confine(config: &mut Value) {
    config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["swapon"], "action": "SCMP_ACT_ERRNO"}]
    });
}

/// The capability bits of a config's set, as /proc/PID/status shows them.
fn cap_mask(env: &Env, config: &Value, set: &str) -> u64 {
    let features: Value = serde_json::from_str(env.berth(&["features"]).ok()).unwrap();
    let known: Vec<&str> = features["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    config["process"]["capabilities"][set]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| {
            let bit = known.iter().position(|k| *k == name.as_str().unwrap());
            1u64 << bit.expect("a capability features names")
        })
        .fold(0, |all, bit| all | bit)
}

/// The pid namespace of container `id`'s init, as /proc links name it (`pid:[N]`).
fn pid_namespace(env: &Env, id: &str) -> String {
    let link = std::fs::read_link(format!("/proc/{}/ns/pid", env.pid(id))).unwrap();
    link.to_string_lossy().into_owned()
}

fn config_of(bundle: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap()
}

/// Starts the prober as the init of a container of its own, confined by [`confine`].
fn start_prober(env: &Env, shared: &Path, caps: Caps) -> (String, PathBuf) {
    let id = env.id("prober");
    let bundle = env.bundle(&id, &["/bin/helper", "probe-procs", "/shared"], |c| {
        share(c, shared);
        give(c, env, caps);
        confine(c);
    });
    berth_at(
        env,
        &berth_bin(),
        &["run", "--detach", "--bundle", b(&bundle), &id],
    )
    .ok();
    (id, bundle)
}

/// Tells the prober to finish and returns its report, one count per line.
fn probe_report(shared: &Path) -> Vec<(String, u64)> {
    std::fs::write(shared.join("stop"), "").unwrap();
    let report = shared.join("report");
    wait_until("the prober's report", || report.exists());
    std::fs::read_to_string(report)
        .unwrap()
        .lines()
        .map(|line| {
            let (what, count) = line.rsplit_once(' ').unwrap();
            (what.to_string(), count.parse().unwrap())
        })
        .collect()
}

fn count(report: &[(String, u64)], what: &str) -> u64 {
    report
        .iter()
        .filter(|(w, _)| w == what)
        .map(|(_, n)| n)
        .sum()
}

/// The prober reached nothing of the host, found no directory, regular file or namespace of
/// berth's among any process's descriptors, and every process it held under ptrace had at most
/// the capabilities of `config`, no_new_privs, its seccomp filter, and not the host's mount
/// namespace. Capabilities count over the user namespace that holds them: a process in another
/// one than the prober's (berth's procfs helper on kernels before 6.18, `process::procfs`, whose
/// user namespace owns nothing but its mount namespace of an empty tmpfs) holds none of the
/// host's, so only its no_new_privs, filter and mount namespace are checked.
#[track_caller]
fn assert_nothing_gained(env: &Env, report: &[(String, u64)], config: &Value, pid_ns: &str) {
    eprintln!("the prober's report: {report:#?}");
    let (bounding, permitted) = (
        cap_mask(env, config, "bounding"),
        cap_mask(env, config, "permitted"),
    );
    for (what, n) in report {
        assert!(
            !what.starts_with("reached "),
            "the prober {what} of the host {n} times"
        );
        if let Some(fd) = what.strip_prefix("fd ") {
            // A process's own pid namespace is no more than it has: a created init holds its
            // pid namespace locked (container::exposure), which is the prober's own.
            assert_eq!(
                fd,
                format!("ns {pid_ns}"),
                "a process the prober could see held a descriptor of berth's ({n} times)"
            );
        }
        if let Some(state) = what.strip_prefix("attach ") {
            let fields: Vec<&str> = state.split(' ').collect();
            let hex = |i: usize| u64::from_str_radix(fields[i], 16).unwrap();
            let host_user_ns = fields[6] == "1";
            assert!(
                !host_user_ns || hex(0) & !bounding == 0,
                "held a process with more bounding capabilities: {state}"
            );
            assert!(
                !host_user_ns || hex(1) & !permitted == 0,
                "held a process with more permitted capabilities: {state}"
            );
            assert!(
                !host_user_ns || hex(2) & !permitted == 0,
                "held a process with more effective capabilities: {state}"
            );
            assert_eq!(
                fields[3], "1",
                "held a process without no_new_privs: {state}"
            );
            assert_eq!(
                fields[4], "2",
                "held a process without its seccomp filter: {state}"
            );
            assert_eq!(
                fields[5], "0",
                "held a process in the host's mount namespace: {state}"
            );
        }
    }
}

/// What every prober test asserts at its end: the prober gained nothing, wrote no host file,
/// every exec raced against it worked, and nothing of the containers is left.
fn assert_probe_ended_clean(
    env: &Env,
    report: &[(String, u64)],
    bundle: &Path,
    pid_ns: &str,
    failed: &[String],
) {
    assert_nothing_gained(env, report, &config_of(bundle), pid_ns);
    assert_no_host_file_written(env);
    assert!(
        failed.is_empty(),
        "{} execs failed, the first: {}",
        failed.len(),
        failed[0]
    );
    env.assert_root_empty();
}

fn probe_execs(name: &str, caps: Caps) {
    let env = Env::new(name);
    let shared = probe_dir(&env);
    let (prober, bundle) = start_prober(&env, &shared, caps);
    let pid_ns = pid_namespace(&env, &prober);
    let failed = race_execs(&env, &berth_bin(), &prober, EXECS, 3);
    let report = probe_report(&shared);
    env.berth(&["delete", "--force", &prober]).ok();
    assert!(
        count(&report, "processes") > 0,
        "the prober saw none of the exec'd processes: {report:?}"
    );
    assert_probe_ended_clean(&env, &report, &bundle, &pid_ns, &failed);
}

#[test]
fn a_container_with_cap_sys_ptrace_gains_nothing_from_300_execs() {
    need_root!();
    probe_execs("probe-exec", Caps::Ptrace);
}

#[test]
fn a_container_with_every_capability_gains_nothing_from_300_execs() {
    need_root!();
    probe_execs("probe-exec-every", Caps::Every);
}

/// How many `exec`s race the prober after a created init starts: 60, or `BERTH_TEST_PTRACE_EXECS`
/// (the cgroup v2 VM lane, where each exec of the sealed debug binary takes seconds, runs a few:
/// there the created init on a kernel without procfs's pidns option is what it is for).
fn created_execs() -> usize {
    std::env::var("BERTH_TEST_PTRACE_EXECS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60)
}

/// A container created into the prober's pid namespace (a Kubernetes pod with
/// shareProcessNamespace), held while it waits for `start`, then raced by `exec`s.
fn probe_created(name: &str, caps: Caps) {
    let env = Env::new(name);
    let shared = probe_dir(&env);
    let (prober, _) = start_prober(&env, &shared, caps);
    let pid_ns = pid_namespace(&env, &prober);
    let victim = env.id("victim");
    let path = format!("/proc/{}/ns/pid", env.pid(&prober));
    let bundle = env.bundle(&victim, &["/bin/helper", "pause"], |c| {
        join_namespace(c, "pid", &path);
        confine(c);
    });
    berth_at(
        &env,
        &berth_bin(),
        &["create", "--bundle", b(&bundle), &victim],
    )
    .ok();
    wait_until("the prober to hold the created init", || {
        read(&shared.join("seen"))
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
            > 0
    });
    // Long enough for the prober to have tried everything on the waiting init.
    std::thread::sleep(std::time::Duration::from_millis(300));
    berth_at(&env, &berth_bin(), &["start", &victim]).ok();
    let failed = race_execs(&env, &berth_bin(), &victim, created_execs(), 2);
    let report = probe_report(&shared);
    env.berth(&["delete", "--force", &victim]).ok();
    env.berth(&["delete", "--force", &prober]).ok();
    assert!(
        count(&report, "attached") > 0,
        "the prober never held the created init: {report:?}"
    );
    assert_probe_ended_clean(&env, &report, &bundle, &pid_ns, &failed);
}

#[test]
fn a_created_init_seen_from_a_container_with_cap_sys_ptrace_holds_only_its_own_privileges() {
    need_root!();
    probe_created("probe-created", Caps::Ptrace);
}

#[test]
fn a_created_init_seen_from_a_container_with_every_capability_holds_only_its_own_privileges() {
    need_root!();
    probe_created("probe-created-every", Caps::Every);
}

/// A profile that forbids clone leaves the setup process unable to fork the process into the
/// container under the filter. The filter then waits for the execve, where nothing that could
/// ptrace the process shares its pid namespace; where something could, `exec` is refused,
/// naming the call.
#[test]
fn a_profile_that_forbids_the_fork_waits_for_the_execve_only_where_nothing_could_ptrace() {
    need_root!();
    let env = Env::new("ptrace-no-fork");
    let no_fork = |c: &mut Value| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["clone", "clone3", "fork", "vfork"], "action": "SCMP_ACT_ERRNO"}]
        });
    };
    let plain = env.id("plain");
    let bundle = env.bundle(&plain, &["/bin/helper", "pause"], no_fork);
    env.berth(&["run", "--detach", "--bundle", b(&bundle), &plain])
        .ok();
    let exec = env.berth(&["exec", &plain, "/bin/helper", "seccomp"]);
    assert_eq!(
        exec.ok().trim(),
        "2",
        "the exec'd process runs under its filter"
    );

    let exposed = env.id("exposed");
    let bundle = env.bundle(&exposed, &["/bin/helper", "pause"], |c| {
        no_fork(c);
        give(c, &env, Caps::Ptrace);
    });
    env.berth(&["run", "--detach", "--bundle", b(&bundle), &exposed])
        .ok();
    let refused = env.berth(&["exec", &exposed, "/bin/true"]);
    let expected = format!(
        "berth: error: cannot exec in container {exposed:?}: linux.seccomp forbids clone, which \
         berth needs after the filter is in place to start the process inside the container's \
         pid namespace; a process that could ptrace it may share that namespace, so the filter \
         cannot wait for the execve"
    );
    assert_eq!(refused.fails().trim(), expected);
    assert_eq!(env.state(&exposed)["status"], "running");
    for id in [&plain, &exposed] {
        env.berth(&["delete", "--force", id]).ok();
    }
    env.assert_root_empty();
}
