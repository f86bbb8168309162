//! What a person looks at on the host (here: the throwaway network and mount namespace that
//! plays it) to see what a pod is made of: processes and their namespaces, cgroup directories
//! and their files, mounts, network links, network namespace files, and the runtime's own state.

use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A process, known by pid and start time so that a reused pid is not taken for it.
#[derive(Clone, Debug)]
pub struct Process {
    pub pid: u32,
    start: u64,
}

impl Process {
    pub fn of(pid: u32) -> Result<Self> {
        let start = start_time(pid).with_context(|| format!("process {pid} is not running"))?;
        Ok(Process { pid, start })
    }

    /// Whether it still exists (a zombie counts: it still holds its pid).
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }

    /// The namespace of `kind` (`net`, `ipc`, `uts`, `pid` …), as `net:[4026532181]`.
    pub fn namespace(&self, kind: &str) -> Result<String> {
        namespace_of(&format!("/proc/{}/ns/{kind}", self.pid))
    }

    /// The process's cgroup directories on the host, one per hierarchy it is in (none once it
    /// has exited).
    pub fn cgroup_dirs(&self) -> Result<Vec<PathBuf>> {
        let text = fs::read_to_string(format!("/proc/{}/cgroup", self.pid))
            .with_context(|| format!("cannot read /proc/{}/cgroup", self.pid))?;
        let mounts = cgroup_mounts()?;
        let mut dirs = Vec::new();
        for line in text.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            // A process that has exited (a zombie) is shown in the root cgroup: not its own.
            if path == "/" {
                continue;
            }
            let wanted: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
            let mount = mounts.iter().find(|m| {
                if wanted.is_empty() {
                    m.v2
                } else {
                    !m.v2 && wanted.iter().all(|c| m.options.iter().any(|o| o == c))
                }
            });
            if let Some(mount) = mount {
                dirs.push(mount.point.join(path.trim_start_matches('/')));
            }
        }
        Ok(dirs)
    }

    /// The first of `files` (e.g. `memory.limit_in_bytes` or `memory.max`) found in one of the
    /// process's cgroup directories, and its contents, trimmed.
    pub fn cgroup_value(&self, files: &[&str]) -> Result<String> {
        for dir in self.cgroup_dirs()? {
            for file in files {
                if let Ok(value) = fs::read_to_string(dir.join(file)) {
                    return Ok(value.trim().to_string());
                }
            }
        }
        bail!("none of {files:?} in the cgroups of process {}", self.pid)
    }
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The namespace a `/proc/PID/ns/KIND` link (or a bind-mounted namespace file) names.
pub fn namespace_of(path: &str) -> Result<String> {
    Ok(fs::read_link(path)
        .with_context(|| format!("cannot read {path}"))?
        .to_string_lossy()
        .into_owned())
}

/// This process's own namespace of `kind`: the "host's".
pub fn own_namespace(kind: &str) -> Result<String> {
    namespace_of(&format!("/proc/self/ns/{kind}"))
}

struct CgroupMount {
    point: PathBuf,
    v2: bool,
    /// The super options: the v1 controllers (`cpu`, `cpuacct`, `name=systemd` …).
    options: Vec<String>,
}

fn cgroup_mounts() -> Result<Vec<CgroupMount>> {
    let text = fs::read_to_string("/proc/self/mountinfo").context("cannot read mountinfo")?;
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let point = left.split(' ').nth(4).unwrap_or_default();
        let mut right = right.split(' ');
        let fstype = right.next().unwrap_or_default();
        let options = right.nth(1).unwrap_or_default();
        if fstype == "cgroup" || fstype == "cgroup2" {
            mounts.push(CgroupMount {
                point: PathBuf::from(point),
                v2: fstype == "cgroup2",
                options: options.split(',').map(str::to_string).collect(),
            });
        }
    }
    Ok(mounts)
}

/// The lines of /proc/self/mountinfo that mention any of `words` (container ids, a netns name).
pub fn mounts_mentioning(words: &[String]) -> Result<Vec<String>> {
    let text = fs::read_to_string("/proc/self/mountinfo").context("cannot read mountinfo")?;
    Ok(text
        .lines()
        .filter(|line| words.iter().any(|word| line.contains(word.as_str())))
        .map(str::to_string)
        .collect())
}

/// The processes whose command line mentions `word` (a shim names its sandbox: `-id ID`).
pub fn processes_mentioning(word: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == std::process::id().to_string() {
            continue;
        }
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(word) {
                found.push(format!("pid {pid}: {}", cmdline.trim_end()));
            }
        }
    }
    found
}

/// The names of the network links in this namespace (`ip -o link`), with their kind when
/// `kind` is given (`veth`, `bridge`).
pub fn links(kind: Option<&str>) -> Result<Vec<String>> {
    let mut args = vec!["-o", "link", "show"];
    if let Some(kind) = kind {
        args.extend(["type", kind]);
    }
    let out = run("ip", &args)?;
    Ok(out
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect())
}

/// Runs a program and returns its standard output; a non-zero exit is an error naming it.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        return Err(anyhow!(
            "{program} {} exited with {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The runtime's command line, which answers `state` for the containers it made.
pub struct RuntimeCli {
    pub binary: PathBuf,
    pub root: PathBuf,
}

impl RuntimeCli {
    /// Whether this runtime is berth, which logs what it did (runc logs only failures).
    pub fn is_berth(&self) -> bool {
        self.binary
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("berth"))
    }

    /// `RUNTIME --root ROOT state ID`, parsed.
    pub fn state(&self, id: &str) -> Result<serde_json::Value> {
        let root = self.root.to_string_lossy();
        let binary = self.binary.to_string_lossy();
        let out = run(&binary, &["--root", &root, "state", id])?;
        serde_json::from_str(&out).with_context(|| format!("{binary} state {id} printed {out:?}"))
    }

    /// The runtime's state folder of container `id`.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }
}

/// The runtime calls a wrapper recorded (scripts/engines/capture-runtime: one file per call,
/// whose first line is `argv: …`), that mention `id`.
pub fn recorded_calls(dir: &Path, id: &str) -> Result<Vec<String>> {
    let mut calls = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "call"))
        .collect();
    entries.sort();
    for path in entries {
        let text = fs::read_to_string(&path).unwrap_or_default();
        if let Some(argv) = text.lines().next().and_then(|l| l.strip_prefix("argv: ")) {
            if argv
                .split(' ')
                .any(|word| word == id || word.contains(&format!("/{id}/")))
            {
                calls.push(argv.to_string());
            }
        }
    }
    Ok(calls)
}
