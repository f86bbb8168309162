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

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use runtime_tests::{berth_bin, join_namespace, need_root, run_to_files, wait_until, Env, Run};
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
    cmd.arg("--root").arg(&env.root).args(args);
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
