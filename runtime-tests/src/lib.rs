//! The harness for berth's integration tests: each test gets its own `--root`, bundles made from
//! `berth spec` on the shared busybox root filesystem, a unique cgroup, and (for network tests) a
//! throwaway network namespace that plays the host. Everything a test makes is removed when its
//! `Env` is dropped, also when the test fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

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

static COUNTER: AtomicUsize = AtomicUsize::new(0);

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
