//! `probe-procs DIR`: the attacker of a container that may hold CAP_SYS_PTRACE (or every
//! capability), run against every process it can see, as a runtime's process would be seen
//! while it sets up (`berth exec`'s, a created init's).
//!
//! For each process it sees (again whenever the file it runs changes) it tries:
//! - `/proc/PID/root` and `/proc/PID/cwd`: to open, through them, a file only the host has
//!   (`DIR/marker` holds its absolute path), and to make a new one beside it, `MARKER.written`;
//! - `/proc/PID/ns/mnt`: whether it is the host's mount namespace (`DIR/host-mnt` holds the
//!   host's link text, `mnt:[N]`);
//! - `/proc/PID/environ`: whether it shows the environment of berth's caller (`DIR/secret`
//!   holds a value the test put there);
//! - `/proc/PID/fd/N` for N from 3 up: what each is; through a directory, the host's file (read,
//!   and `MARKER.written` made);
//! - PTRACE_SEIZE, then PTRACE_INTERRUPT: once the process is stopped under its control, its
//!   capability sets, no_new_privs, seccomp mode, mount namespace and program; then it detaches.
//!
//! DIR is shared with the test: it writes `DIR/seen` (processes probed so far) as it goes,
//! stops when `DIR/stop` appears, and writes `DIR/report`, one count a line:
//! - `processes N`, `foreign N` (of them, those running a program that is not one of the
//!   container's: a runtime before it runs the container's program), `attached N`;
//! - `reached HOW N`: the host's file opened through `root`, `cwd` or `fd`, a file of the
//!   host's written through them (`write-root`, `write-cwd`, `write-fd`), `host-mnt` for a
//!   process in the host's mount namespace, `environ` for the caller's environment;
//! - `attach CAPBND CAPPRM CAPEFF NNP SECCOMP HOSTMNT OWNUSER EXE N`: each state in which it
//!   held a process (capability sets in hex as /proc shows them, which count over the process's
//!   own user namespace; `OWNUSER` is 1 when that is the prober's, 0 when it is another;
//!   `EXE` is `own` or `foreign`);
//! - `fd KIND TARGET N`: each descriptor it found that is a directory (`dir`), a regular file
//!   (`file`) or a namespace (`ns`).

use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use crate::attacker::{identity, open, other_pids, own_programs, write_report};
use crate::{Failure, Outcome};

/// How the prober tries to make a file of the host's.
const WRITE: libc::c_int = libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC;

/// Enough `..` to climb from any directory to the top of its mount namespace.
const CLIMB: &str = "../../../../../../../../../../../../../../../../../../../../../../../../";

struct Probe {
    /// The host's file, without its leading `/`.
    marker: String,
    host_mnt: String,
    /// The prober's own user namespace, as /proc links name it.
    user_ns: String,
    secret: String,
    own: HashSet<(u64, u64)>,
    counts: BTreeMap<String, u64>,
}

pub fn probe_procs(args: &[String]) -> Outcome {
    let [dir] = args else {
        return Err(Failure::Usage);
    };
    let dir = Path::new(dir);
    let read = |name: &str| {
        fs::read_to_string(dir.join(name))
            .map(|s| s.trim().to_string())
            .map_err(|e| Failure::io(dir.join(name).display().to_string(), e))
    };
    let mut probe = Probe {
        marker: read("marker")?.trim_start_matches('/').to_string(),
        host_mnt: read("host-mnt")?,
        user_ns: fs::read_link("/proc/self/ns/user")
            .map(|l| l.to_string_lossy().into_owned())
            .map_err(|e| Failure::io("/proc/self/ns/user", e))?,
        secret: read("secret")?,
        own: own_programs(),
        counts: BTreeMap::new(),
    };
    let mut seen: HashSet<(String, (u64, u64))> = HashSet::new();
    let mut processes = 0u64;
    while !dir.join("stop").exists() {
        for name in other_pids()? {
            // A process whose exe cannot be read (a kernel thread, or one gone) is still probed
            // once: its root and descriptors may be open to us where its exe is not.
            let exe = fs::metadata(format!("/proc/{name}/exe"))
                .map(|m| identity(&m))
                .unwrap_or((0, 0));
            if !seen.insert((name.clone(), exe)) {
                continue;
            }
            processes += 1;
            if exe != (0, 0) && !probe.own.contains(&exe) {
                probe.count("foreign".into());
            }
            probe.process(&name);
            let _ = fs::write(dir.join("seen"), processes.to_string());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    write_report(dir, processes, &probe.counts)?;
    Ok(0)
}

impl Probe {
    fn count(&mut self, line: String) {
        *self.counts.entry(line).or_default() += 1;
    }

    fn process(&mut self, pid: &str) {
        let through_root = format!("/proc/{pid}/root/{}", self.marker);
        if open(&through_root, libc::O_RDONLY).is_ok() {
            self.count("reached root".into());
        }
        let through_cwd = format!("/proc/{pid}/cwd/{CLIMB}{}", self.marker);
        if open(&through_cwd, libc::O_RDONLY).is_ok() {
            self.count("reached cwd".into());
        }
        if open(&format!("{through_root}.written"), WRITE).is_ok() {
            self.count("reached write-root".into());
        }
        if open(&format!("{through_cwd}.written"), WRITE).is_ok() {
            self.count("reached write-cwd".into());
        }
        if self.in_host_mnt(pid) {
            self.count("reached host-mnt".into());
        }
        let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let secret = self.secret.as_bytes();
        if environ.windows(secret.len()).any(|w| w == secret) {
            self.count("reached environ".into());
        }
        self.descriptors(pid);
        self.attach(pid);
    }

    fn in_host_mnt(&self, pid: &str) -> bool {
        fs::read_link(format!("/proc/{pid}/ns/mnt"))
            .is_ok_and(|link| link.to_string_lossy() == self.host_mnt)
    }

    fn descriptors(&mut self, pid: &str) {
        let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(fd) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if fd < 3 {
                // Standard input and output are what berth's caller handed over.
                continue;
            }
            let path = entry.path();
            let Ok(target) = fs::read_link(&path) else {
                continue;
            };
            let target = target.to_string_lossy().into_owned();
            let Ok(file) = open(&path.to_string_lossy(), libc::O_PATH) else {
                continue;
            };
            let kind = kind_of(&file, &target);
            if kind == "dir" {
                let through = CString::new(format!("{CLIMB}{}", self.marker)).unwrap();
                // SAFETY: openat reads a NUL-terminated path relative to a descriptor we own.
                let fd = unsafe {
                    libc::openat(
                        file.as_raw_fd(),
                        through.as_ptr(),
                        libc::O_RDONLY | libc::O_CLOEXEC,
                    )
                };
                if fd >= 0 {
                    // SAFETY: the descriptor was just opened and nothing else owns it.
                    drop(unsafe { OwnedFd::from_raw_fd(fd) });
                    self.count("reached fd".into());
                }
                let written = CString::new(format!("{CLIMB}{}.written", self.marker)).unwrap();
                // SAFETY: as above.
                let fd = unsafe { libc::openat(file.as_raw_fd(), written.as_ptr(), WRITE, 0o644) };
                if fd >= 0 {
                    // SAFETY: the descriptor was just opened and nothing else owns it.
                    drop(unsafe { OwnedFd::from_raw_fd(fd) });
                    self.count("reached write-fd".into());
                }
            }
            if kind == "ns" && target == self.host_mnt {
                self.count("reached host-mnt-fd".into());
            }
            if matches!(kind, "dir" | "file" | "ns") {
                self.count(format!("fd {kind} {target}"));
            }
        }
    }

    /// PTRACE_SEIZE and PTRACE_INTERRUPT; once the process is stopped, what it holds.
    fn attach(&mut self, pid: &str) {
        let Ok(number) = pid.parse::<libc::pid_t>() else {
            return;
        };
        // SAFETY: ptrace with integer arguments; it attaches or fails.
        let seized = unsafe { libc::ptrace(libc::PTRACE_SEIZE, number, 0, 0) } == 0;
        if !seized {
            return;
        }
        // SAFETY: as above, for a process this one now traces.
        unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, number, 0, 0) };
        let mut status = 0;
        // SAFETY: waitpid writes the status into a live integer.
        let waited = unsafe { libc::waitpid(number, &mut status, libc::__WALL) };
        if waited == number && libc::WIFSTOPPED(status) {
            self.count("attached".into());
            let line = self.state_of(pid);
            self.count(line);
        }
        // SAFETY: detaching lets the process go on as it was.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, number, 0, 0) };
    }

    fn state_of(&self, pid: &str) -> String {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| "?".into())
        };
        let exe = match fs::metadata(format!("/proc/{pid}/exe")) {
            Ok(m) if self.own.contains(&identity(&m)) => "own",
            Ok(_) => "foreign",
            Err(_) => "?",
        };
        format!(
            "attach {} {} {} {} {} {} {} {exe}",
            field("CapBnd:"),
            field("CapPrm:"),
            field("CapEff:"),
            field("NoNewPrivs:"),
            field("Seccomp:"),
            u8::from(self.in_host_mnt(pid)),
            u8::from(
                fs::read_link(format!("/proc/{pid}/ns/user"))
                    .is_ok_and(|link| link.to_string_lossy() == self.user_ns)
            ),
        )
    }
}

/// `dir`, `file`, `fifo`, `chr`, `ns` (a namespace), or the kind a link like `pipe:[N]` names.
fn kind_of(file: &OwnedFd, target: &str) -> &'static str {
    if !target.starts_with('/') {
        let prefix = target.split(':').next().unwrap_or("");
        return match prefix {
            "pipe" => "pipe",
            "socket" => "socket",
            "anon_inode" => "anon",
            "mnt" | "pid" | "net" | "ipc" | "uts" | "user" | "cgroup" | "time" => "ns",
            _ => "other",
        };
    }
    // SAFETY: stat is plain data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is open and `st` writable.
    if unsafe { libc::fstat(file.as_raw_fd(), &mut st) } != 0 {
        return "other";
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => "dir",
        libc::S_IFREG => "file",
        libc::S_IFIFO => "fifo",
        libc::S_IFCHR => "chr",
        _ => "other",
    }
}
