//! The harness for berth's integration tests: each test gets its own `--root`, bundles made from
//! `berth spec` on the shared busybox root filesystem, a unique cgroup, and (for network tests) a
//! throwaway network namespace that plays the host. Everything a test makes is removed when its
//! `Env` is dropped, also when the test fails.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

mod rootless;
pub use rootless::{subordinate_ranges, TestUser};

/// The workspace folder.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The berth binary under test: `$BERTH_BIN`, or the workspace's debug build.
pub fn berth_bin() -> PathBuf {
    let path = std::env::var_os("BERTH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/debug/berth"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build` (scripts/test does)",
        path.display()
    );
    path
}

/// The busybox root filesystem from `rootfs-fixtures/make-rootfs`.
pub fn rootfs() -> PathBuf {
    let path = std::env::var_os("BERTH_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("rootfs-fixtures/out/rootfs"));
    assert!(
        path.join("bin/helper").exists(),
        "{} has no bin/helper: run rootfs-fixtures/make-rootfs (scripts/test does)",
        path.display()
    );
    path
}

/// Says that `test` is skipped and why, on a line starting "SKIP" that scripts/test collects.
/// The line goes straight to standard error: the test harness captures `eprintln!` and shows it
/// only for failing tests, which would hide every skip. It starts on a new line, since a
/// single-threaded or `-q` run has printed part of a line already.
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "\nSKIP {test}: {why}");
}

/// Whether the tests can run: they need root. Prints why they skip otherwise.
pub fn is_root(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip(test, "needs root (run scripts/test as root)");
    }
    root
}

/// Whether this run drives berth with `--systemd-cgroup` (`BERTH_TEST_SYSTEMD_CGROUP=1`, set by
/// `scripts/test-systemd-cgroup`): cgroup paths are then `slice:prefix:name` and each container's
/// cgroup is a systemd scope.
pub fn systemd_cgroup() -> bool {
    std::env::var_os("BERTH_TEST_SYSTEMD_CGROUP").is_some_and(|v| v == "1")
}

/// Whether what this run asks for is here: systemd, when the run uses `--systemd-cgroup`. Prints
/// why the test skips otherwise.
pub fn has_systemd_if_asked(test: &str) -> bool {
    let ready = !systemd_cgroup() || Path::new("/run/systemd/system").exists();
    if !ready {
        skip(
            test,
            "BERTH_TEST_SYSTEMD_CGROUP=1 but systemd is not running here",
        );
    }
    ready
}

/// Skips the calling test, with a reason, unless it runs as root (and, for a `--systemd-cgroup`
/// run, with systemd).
#[macro_export]
macro_rules! need_root {
    () => {
        if !$crate::is_root(module_path!()) || !$crate::has_systemd_if_asked(module_path!()) {
            return;
        }
    };
}

pub(crate) static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One test's world: a `--root`, a scratch folder, and the containers made in it.
pub struct Env {
    pub name: String,
    pub root: PathBuf,
    pub scratch: PathBuf,
    /// When set, berth runs inside this network namespace (a throwaway "host").
    pub netns: Option<NetNs>,
}

/// What a berth command did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with stdin closed and stdout and stderr in files under `scratch`.
pub fn run_to_files(cmd: &mut Command, scratch: &Path) -> Run {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let out_path = scratch.join(format!("out-{n}"));
    let err_path = scratch.join(format!("err-{n}"));
    let out = std::fs::File::create(&out_path).unwrap();
    let err = std::fs::File::create(&err_path).unwrap();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .expect("the command runs");
    // A detached container may still write to these files; read what is there now.
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// How long a test waits for something that should happen at once before it fails: generous,
/// since a failing wait is the only one that lasts, and the cgroup v2 VM lane (software
/// emulation) is some fifty times slower than the machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `check` every 10 ms until it holds; panics naming `what` after [`PATIENCE`].
#[track_caller]
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A file's text, or "" if it does not exist (yet).
pub fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Whether process `pid` has ended (gone, or a zombie nobody reaped yet).
pub fn process_gone(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => true,
    }
}

/// `helper ns` output (`net -> net:[4026532181]` per line) as a map from name to namespace.
pub fn parse_namespaces(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once(" -> "))
        .map(|(name, ns)| (name.to_string(), ns.to_string()))
        .collect()
}

/// The namespaces of process `pid` (`self` for the test itself), as `helper ns` prints them.
pub fn namespaces_of(pid: &str) -> BTreeMap<String, String> {
    std::fs::read_dir(format!("/proc/{pid}/ns"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            let link = std::fs::read_link(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                link.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// One line of /proc/PID/mountinfo.
#[derive(Clone, Debug)]
pub struct Mount {
    /// The filesystem's device, `major:minor`.
    pub device: String,
    /// The folder of the filesystem mounted (`/` unless a bind mount or a cgroup's own folder).
    pub root: String,
    pub point: String,
    /// The mount's own options (`ro`, `nosuid` …).
    pub options: Vec<String>,
    /// The propagation tags (`shared:4`, `master:2`, `unbindable`).
    pub tags: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// The filesystem's options (`size=1024k`, `mode=700` …).
    pub fs_options: Vec<String>,
}

impl Mount {
    pub fn has_option(&self, option: &str) -> bool {
        self.options.iter().any(|o| o == option)
    }
    pub fn has_fs_option(&self, option: &str) -> bool {
        self.fs_options.iter().any(|o| o == option)
    }
}

/// Parses mountinfo text (`helper mounts` prints it) into its lines.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let list = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            if left.len() < 6 || right.len() < 3 {
                return None;
            }
            Some(Mount {
                device: left[2].to_string(),
                root: left[3].to_string(),
                point: left[4].to_string(),
                options: list(left[5]),
                tags: left[6..].iter().map(|t| t.to_string()).collect(),
                fstype: right[0].to_string(),
                source: right[1].to_string(),
                fs_options: list(right[2]),
            })
        })
        .collect()
}

/// The mount on top at `point` in mountinfo text; panics if there is none.
#[track_caller]
pub fn mount_at(text: &str, point: &str) -> Mount {
    parse_mountinfo(text)
        .into_iter()
        .rfind(|m| m.point == point)
        .unwrap_or_else(|| panic!("nothing is mounted at {point}:\n{text}"))
}

/// A tmpfs this test mounted on the host (a source with a mount inside, for rbind); unmounted
/// when dropped, also when the test fails. Declare it after the `Env` so it goes first.
pub struct HostTmpfs {
    pub path: PathBuf,
}

impl HostTmpfs {
    pub fn new(path: &Path) -> HostTmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "berth-test"])
            .arg(path)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount tmpfs on {}", path.display());
        HostTmpfs {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Removes the `typ` entry from `linux.namespaces`: the container shares the host's.
pub fn drop_namespace(config: &mut Value, typ: &str) {
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|ns| ns["type"] != typ);
}

/// Sets `linux.namespaces` entry `typ` (added if missing) to join the namespace at `path`.
pub fn join_namespace(config: &mut Value, typ: &str, path: &str) {
    drop_namespace(config, typ);
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": typ, "path": path}));
}

/// A berth command running in the background (`run` in the foreground, a `start` racing
/// another), with its output in files. Dropping it kills it if it still runs.
pub struct Background {
    pub(crate) child: Option<Child>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Background {
    /// The berth process's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Sends `signal` to the berth process (one this test started, by pid).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill with a pid of our own child and a signal number.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill {} {signal}", self.pid());
    }

    /// Waits until stdout holds `text`.
    #[track_caller]
    pub fn wait_for_stdout(&self, text: &str) {
        wait_until(&format!("{text:?} on stdout"), || {
            read(&self.stdout).contains(text)
        });
    }

    /// Waits for the command to end (at most [`PATIENCE`]) and returns what it did.
    #[track_caller]
    pub fn wait(mut self) -> Run {
        let mut child = self.child.take().unwrap();
        let mut status = None;
        wait_until("the background berth to exit", || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        Run {
            code: status.unwrap().code().unwrap_or(-1),
            stdout: read(&self.stdout),
            stderr: read(&self.stderr),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Run {
    /// Panics with both streams unless the command succeeded; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Panics unless the command failed; returns stderr.
    #[track_caller]
    pub fn fails(&self) -> &str {
        assert_ne!(
            self.code, 0,
            "command succeeded but should fail\nstdout: {}",
            self.stdout
        );
        &self.stderr
    }
}

impl Env {
    /// A fresh world named after the test.
    pub fn new(name: &str) -> Env {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}-{}-{n}",
            name.replace(['_', ':'], "-"),
            std::process::id()
        );
        let scratch = std::env::temp_dir().join(format!("berth-rt-{name}"));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        Env {
            root: scratch.join("root"),
            scratch,
            name,
            netns: None,
        }
    }

    /// The same, with berth running in a throwaway network namespace that plays the host.
    pub fn with_netns(name: &str) -> Env {
        let mut env = Env::new(name);
        env.netns = Some(NetNs::new(&env.name));
        env
    }

    /// A unique container id for this test.
    pub fn id(&self, tag: &str) -> String {
        format!("{tag}-{}", self.name)
    }

    /// The cgroup path tests give their containers, so leftovers can be found: `/berth-tests/ID`,
    /// or with `--systemd-cgroup` the scope `berth-test-ID.scope` in `system.slice`, as runc's
    /// tests do.
    pub fn cgroup_path(&self, id: &str) -> String {
        if systemd_cgroup() {
            format!("system.slice:{SYSTEMD_PREFIX}:{id}")
        } else {
            format!("/berth-tests/{id}")
        }
    }

    /// The container's cgroup folder as /proc/PID/cgroup and mountinfo show it: `/berth-tests/ID`,
    /// or the systemd scope's folder with `--systemd-cgroup`.
    pub fn cgroup_folder(&self, id: &str) -> String {
        let path = self.cgroup_path(id);
        match systemd_cgroup_dir(&path) {
            Some(dir) => format!("/{}", dir.display()),
            None => path,
        }
    }

    /// A command running `program` where berth runs (inside the test's netns if it has one).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={}", ns.path.display()))
                    .arg("--")
                    .arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// `berth --root ROOT ARGS…`, waiting for it, stdin closed. Its output goes through files,
    /// not pipes: a container made by `create` or `run -d` keeps berth's stdio open, and a pipe
    /// would not reach end-of-file until the container exits.
    pub fn berth(&self, args: &[&str]) -> Run {
        let mut cmd = self.berth_command(args);
        run_to_files(&mut cmd, &self.scratch)
    }

    /// The command for `berth --root ROOT ARGS…`, to adjust before running.
    pub fn berth_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(berth_bin());
        if systemd_cgroup() {
            cmd.arg("--systemd-cgroup");
        }
        cmd.arg("--root").arg(&self.root).args(args);
        cmd
    }

    /// A bundle from `berth spec` on the shared root filesystem (read-only), running `args`, with
    /// terminal off and this test's cgroup path; `edit` changes the config further.
    pub fn bundle(&self, id: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> PathBuf {
        let dir = self.scratch.join(format!("bundle-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let spec = Command::new(berth_bin())
            .args(["spec", "--bundle"])
            .arg(&dir)
            .output()
            .expect("berth spec runs");
        assert!(
            spec.status.success(),
            "berth spec: {}",
            String::from_utf8_lossy(&spec.stderr)
        );
        let path = dir.join("config.json");
        let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["root"]["path"] = Value::from(rootfs().to_str().unwrap());
        config["process"]["terminal"] = Value::from(false);
        config["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        config["linux"]["cgroupsPath"] = Value::from(self.cgroup_path(id));
        edit(&mut config);
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        dir
    }

    /// `berth ARGS…` started in the background, stdin closed, output in files.
    pub fn spawn(&self, args: &[&str]) -> Background {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let stdout = self.scratch.join(format!("bg-out-{n}"));
        let stderr = self.scratch.join(format!("bg-err-{n}"));
        let child = self
            .berth_command(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("berth starts");
        Background {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// `berth create --bundle B [EXTRA…] ID`, which must succeed. The container keeps berth's
    /// stdout and stderr: both go to the file returned, `SCRATCH/ID.out`, which `start` then
    /// fills with the program's output.
    #[track_caller]
    pub fn create(&self, bundle: &Path, id: &str, extra: &[&str]) -> PathBuf {
        self.create_by(self.berth_command(&[]), bundle, id, extra)
    }

    /// `create` run by `berth`, a command naming berth (as a user, in a namespace) with no
    /// arguments yet; the container's output goes to the file returned, `SCRATCH/ID.out`.
    #[track_caller]
    pub fn create_by(
        &self,
        mut berth: Command,
        bundle: &Path,
        id: &str,
        extra: &[&str],
    ) -> PathBuf {
        let out = self.scratch.join(format!("{id}.out"));
        let file = std::fs::File::create(&out).unwrap();
        let mut args = vec!["create", "--bundle", bundle.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(id);
        let status = berth
            .args(&args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .status()
            .expect("berth runs");
        assert!(status.success(), "berth create {id}: {}", read(&out));
        out
    }

    /// The init's pid, from `berth state`.
    #[track_caller]
    pub fn pid(&self, id: &str) -> i64 {
        self.state(id)["pid"].as_i64().expect("state has a pid")
    }

    /// Waits until `berth state` reports `status`.
    #[track_caller]
    pub fn wait_for_status(&self, id: &str, status: &str) {
        wait_until(&format!("{id} to be {status}"), || {
            self.state(id)["status"] == status
        });
    }

    /// The pids in the container's cgroup, from every hierarchy.
    pub fn cgroup_pids(&self, id: &str) -> Vec<i64> {
        let mut pids: Vec<i64> = cgroup_dirs(&self.cgroup_path(id))
            .iter()
            .flat_map(|dir| {
                read(&dir.join("cgroup.procs"))
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i64>>()
            })
            .collect();
        pids.sort();
        pids.dedup();
        pids
    }

    /// Asserts that `--root` holds no container at all (bad input must leave nothing behind).
    #[track_caller]
    pub fn assert_root_empty(&self) {
        assert_eq!(self.containers(), Vec::<String>::new(), "left in --root");
    }

    /// `berth run --bundle B ID` in the foreground.
    pub fn run(&self, bundle: &Path, id: &str) -> Run {
        self.berth(&["run", "--bundle", bundle.to_str().unwrap(), id])
    }

    /// The parsed `berth state ID`.
    pub fn state(&self, id: &str) -> Value {
        let out = self.berth(&["state", id]);
        serde_json::from_str(out.ok()).expect("state is JSON")
    }

    /// The containers under this test's root.
    pub fn containers(&self) -> Vec<String> {
        match std::fs::read_dir(&self.root) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Asserts that the container left nothing: no state folder and no cgroup directory.
    #[track_caller]
    pub fn assert_gone(&self, id: &str) {
        assert!(!self.root.join(id).exists(), "state folder of {id} is left");
        for dir in cgroup_dirs(&self.cgroup_path(id)) {
            assert!(!dir.exists(), "cgroup {} is left", dir.display());
        }
    }
}

/// The prefix of the systemd scopes tests make with `--systemd-cgroup`.
const SYSTEMD_PREFIX: &str = "berth-test";

/// The cgroup directory systemd gives `slice:prefix:name`: the slice's ancestors each in turn
/// (`a-b.slice` lives in `a.slice/a-b.slice`), then the scope `prefix-name.scope`.
pub fn systemd_cgroup_dir(path: &str) -> Option<PathBuf> {
    let mut parts = path.split(':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || name.is_empty() {
        return None;
    }
    let mut dir = PathBuf::new();
    if !slice.is_empty() && slice != "-.slice" {
        let stem = slice.strip_suffix(".slice")?;
        let mut ancestor = String::new();
        for piece in stem.split('-') {
            if !ancestor.is_empty() {
                ancestor.push('-');
            }
            ancestor.push_str(piece);
            dir.push(format!("{ancestor}.slice"));
        }
    }
    dir.push(format!("{prefix}-{name}.scope"));
    Some(dir)
}

/// Where a cgroup path (`/a/b`, or `slice:prefix:name` for systemd) would live in each mounted
/// hierarchy.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let relative = match systemd_cgroup_dir(path) {
        Some(dir) => dir,
        None => PathBuf::from(path.trim_start_matches('/')),
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| left.split(' ').nth(4).map(PathBuf::from))?
        })
        .map(|mount| mount.join(&relative))
        .collect()
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in self.containers() {
            let _ = self
                .berth_command(&["delete", "--force", &id])
                .stdin(Stdio::null())
                .output();
        }
        for id in self.containers() {
            let _ = std::fs::remove_dir_all(self.root.join(&id));
        }
        // With --systemd-cgroup each container is a scope: stop what is left of this test's.
        if systemd_cgroup() {
            let _ = Command::new("systemctl")
                .args(["stop", &format!("{SYSTEMD_PREFIX}-*-{}.scope", self.name)])
                .output();
        }
        // Each test's cgroups live under /berth-tests/<id>: remove what is left of this test's.
        for dir in cgroup_dirs("/berth-tests") {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.filter_map(|e| e.ok()) {
                    if entry.file_name().to_string_lossy().ends_with(&self.name) {
                        let _ = std::fs::remove_dir(entry.path());
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// A throwaway network namespace (`ip netns add`) that plays the host; removed on drop, and with
/// it every bridge, veth and firewall rule made inside.
pub struct NetNs {
    pub name: String,
    pub path: PathBuf,
}

impl NetNs {
    pub fn new(tag: &str) -> NetNs {
        let mut name = format!("berth-{tag}");
        name.truncate(60);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip runs");
        assert!(status.success(), "ip netns add {name}");
        let path = PathBuf::from("/run/netns").join(&name);
        let ns = NetNs { name, path };
        let up = ns
            .command("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(up.success());
        ns
    }

    /// `program` run inside this namespace (through nsenter, which leaves /sys alone).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path.display()))
            .arg("--")
            .arg(program);
        cmd
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// What a seccomp agent receives from berth on `stream`: the container process state (JSON) and
/// the notify listener passed with SCM_RIGHTS in the same message.
pub fn receive_seccomp_listener(
    stream: &std::os::unix::net::UnixStream,
) -> (Value, std::os::fd::OwnedFd) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    // SAFETY: msghdr is plain data; the pointers below stay valid for the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr().cast();
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.len();
    // SAFETY: msg describes live buffers.
    let len = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    assert!(len > 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel filled msg_control; CMSG_FIRSTHDR and CMSG_DATA walk inside it.
    let listener = unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        assert!(!header.is_null(), "no descriptor came with the state");
        assert_eq!((*header).cmsg_type, libc::SCM_RIGHTS);
        OwnedFd::from_raw_fd(std::ptr::read_unaligned(
            libc::CMSG_DATA(header).cast::<RawFd>(),
        ))
    };
    let state = serde_json::from_slice(&buf[..len as usize]).expect("the state is JSON");
    (state, listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_paths_map_to_the_scope_under_each_ancestor_slice() {
        let dir = |p| systemd_cgroup_dir(p).map(|d| d.display().to_string());
        assert_eq!(
            dir("system.slice:berth-test:web").as_deref(),
            Some("system.slice/berth-test-web.scope")
        );
        assert_eq!(
            dir("machine-ci-jobs.slice:docker:abc").as_deref(),
            Some("machine.slice/machine-ci.slice/machine-ci-jobs.slice/docker-abc.scope")
        );
        assert_eq!(dir(":berth:x").as_deref(), Some("berth-x.scope"));
        assert_eq!(dir("-.slice:berth:x").as_deref(), Some("berth-x.scope"));
        assert_eq!(dir("/berth-tests/web"), None);
        assert_eq!(dir("system.slice:berth:"), None);
        assert_eq!(dir("system:berth:web"), None, "a slice name ends in .slice");
        assert_eq!(dir("a.slice:b:c:d"), None);
    }
}
