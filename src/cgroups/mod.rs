//! Cgroups: where a container's cgroup lives on each layout (legacy v1, the hybrid layout of v1
//! controllers beside a cgroup2 mount, and unified v2), behind one `Manager` trait.

mod v1;
mod v2;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read the cgroup layout from {path}: {source}")]
    Layout {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
    #[error("cgroupsPath {0:?} is not a valid cgroup path")]
    BadPath(String),
    #[error("cannot create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How the cgroup hierarchies of this host are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only v1 hierarchies.
    Legacy,
    /// v1 controllers, plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`) holding few or no
    /// controllers.
    Hybrid,
    /// cgroup2 alone at `/sys/fs/cgroup`.
    Unified,
}

/// One mounted hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// The v1 controllers it holds (`memory`, `name=systemd` …); empty for cgroup2.
    pub controllers: Vec<String>,
    /// Whether this is the cgroup2 hierarchy.
    pub v2: bool,
}

/// Where a container's cgroup is, kept in its state so later commands find it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupConfig {
    pub layout: Option<Layout>,
    /// The container's cgroup directory in each hierarchy, e.g. `/sys/fs/cgroup/memory/default/web`.
    pub dirs: Vec<(Hierarchy, PathBuf)>,
}

impl CgroupConfig {
    /// The container's directory in the cgroup2 hierarchy, if there is one.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(h, _)| h.v2)
            .map(|(_, d)| d.as_path())
    }

    /// The container's directory in the v1 hierarchy holding `controller`.
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(h, _)| !h.v2 && h.controllers.iter().any(|c| c == controller))
            .map(|(_, d)| d.as_path())
    }
}

/// What berth does with a container's cgroup.
pub trait Manager {
    /// Makes the cgroup directories.
    fn create(&self) -> Result<(), CgroupError>;
    /// Moves a process into the cgroup.
    fn add_process(&self, pid: i32) -> Result<(), CgroupError>;
    /// The pids of every process in the cgroup and below it.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// Whether the cgroup is frozen (the container is paused).
    fn is_frozen(&self) -> bool;
    /// Removes the cgroup directories (the cgroup must be empty).
    fn remove(&self) -> Result<(), CgroupError>;
}

/// The manager for a container's cgroup.
pub fn manager(config: &CgroupConfig) -> Box<dyn Manager> {
    match config.layout {
        Some(Layout::Unified) => Box::new(v2::V2Manager::new(config.clone())),
        _ => Box::new(v1::V1Manager::new(config.clone())),
    }
}

/// Works out where the container's cgroup goes. An absolute `cgroupsPath` is taken from each
/// hierarchy's root; a relative one (or none, which means the container id) lands under the cgroup
/// berth itself runs in, as runc does.
pub fn config_for(cgroups_path: Option<&Path>, id: &str) -> Result<CgroupConfig, CgroupError> {
    let (layout, hierarchies) = discover()?;
    let wanted = match cgroups_path {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from(id),
    };
    let clean =
        clean_path(&wanted).ok_or_else(|| CgroupError::BadPath(wanted.display().to_string()))?;
    let own = own_cgroups()?;
    let mut dirs = Vec::new();
    for hierarchy in hierarchies {
        let base = if wanted.is_absolute() {
            PathBuf::from("/")
        } else {
            own_path_in(&own, &hierarchy).unwrap_or_else(|| PathBuf::from("/"))
        };
        let dir = hierarchy
            .mount_point
            .join(base.strip_prefix("/").unwrap_or(&base))
            .join(&clean);
        dirs.push((hierarchy, dir));
    }
    Ok(CgroupConfig {
        layout: Some(layout),
        dirs,
    })
}

/// Strips the leading `/` and refuses `..`, so a cgroups path cannot leave its hierarchy.
fn clean_path(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::Normal(p) => out.push(p),
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// The mounted cgroup hierarchies, from /proc/self/mountinfo.
pub fn discover() -> Result<(Layout, Vec<Hierarchy>), CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(|source| CgroupError::Layout {
        path: path.to_path_buf(),
        source,
    })?;
    let hierarchies = parse_mountinfo(&text);
    let v1 = hierarchies.iter().any(|h| !h.v2);
    let v2 = hierarchies.iter().any(|h| h.v2);
    let layout = match (v1, v2) {
        (true, true) => Layout::Hybrid,
        (true, false) => Layout::Legacy,
        (false, true) => Layout::Unified,
        (false, false) => return Err(CgroupError::NoHierarchy),
    };
    Ok((layout, hierarchies))
}

fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for line in text.lines() {
        // Fields: id parent major:minor root mount-point options [optional...] - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let mount_point = PathBuf::from(unescape(left[4]));
        let hierarchy = match right[0] {
            "cgroup2" => Hierarchy {
                mount_point,
                controllers: Vec::new(),
                v2: true,
            },
            "cgroup" => Hierarchy {
                mount_point,
                controllers: right[2]
                    .split(',')
                    .filter(|o| is_v1_controller(o))
                    .map(str::to_string)
                    .collect(),
                v2: false,
            },
            _ => continue,
        };
        // A hierarchy mounted twice is used once, at its first mount point.
        let duplicate = found
            .iter()
            .any(|h| h.v2 == hierarchy.v2 && h.controllers == hierarchy.controllers);
        if !duplicate && (hierarchy.v2 || !hierarchy.controllers.is_empty()) {
            found.push(hierarchy);
        }
    }
    found
}

fn is_v1_controller(option: &str) -> bool {
    const CONTROLLERS: &[&str] = &[
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "blkio",
        "pids",
        "net_cls",
        "net_prio",
        "perf_event",
        "hugetlb",
        "rdma",
        "misc",
    ];
    CONTROLLERS.contains(&option) || option.starts_with("name=")
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let code = u8::from_str_radix(&field[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(code as char);
            i += 4;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

/// berth's own cgroups, from /proc/self/cgroup: (controllers, path) per line.
fn own_cgroups() -> Result<Vec<(Vec<String>, PathBuf)>, CgroupError> {
    let path = Path::new("/proc/self/cgroup");
    let text = std::fs::read_to_string(path).map_err(|source| CgroupError::Layout {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_proc_cgroup(&text))
}

fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, PathBuf)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let controllers = controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            Some((controllers, PathBuf::from(path)))
        })
        .collect()
}

fn own_path_in(own: &[(Vec<String>, PathBuf)], hierarchy: &Hierarchy) -> Option<PathBuf> {
    own.iter()
        .find(|(controllers, _)| {
            if hierarchy.v2 {
                controllers.is_empty()
            } else {
                !controllers.is_empty()
                    && controllers
                        .iter()
                        .all(|c| hierarchy.controllers.contains(c))
            }
        })
        .map(|(_, p)| p.clone())
}

/// Reads a cgroup file, trimmed.
pub(crate) fn read_file(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes one value to a cgroup file.
pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// The pids in `cgroup.procs` of `dir` and of every cgroup below it.
pub(crate) fn procs_below(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let procs = dir.join("cgroup.procs");
        match std::fs::read_to_string(&procs) {
            Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(CgroupError::Read {
                    path: procs,
                    source,
                })
            }
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// Removes `dir` and the cgroups below it, deepest first. A cgroup whose last process is still
/// exiting reports EBUSY for a moment, so that is retried briefly.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path())?;
            }
        }
    }
    let mut delay = std::time::Duration::from_micros(200);
    for attempt in 0.. {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 30 => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_millis(100));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
    unreachable!()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 30 0:29 / /mnt/again rw - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid_mountinfo() {
        let found = parse_mountinfo(HYBRID);
        assert_eq!(found.len(), 4);
        assert!(found[0].v2);
        assert_eq!(found[1].controllers, vec!["name=systemd"]);
        assert_eq!(found[3].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(
            found[3].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
    }

    #[test]
    fn own_paths_match_hierarchies() {
        let own = parse_proc_cgroup("4:memory:/a/b\n3:cpu,cpuacct:/\n1:name=systemd:/s\n0::/u\n");
        let found = parse_mountinfo(HYBRID);
        assert_eq!(own_path_in(&own, &found[0]), Some(PathBuf::from("/u")));
        assert_eq!(own_path_in(&own, &found[1]), Some(PathBuf::from("/s")));
        assert_eq!(own_path_in(&own, &found[2]), Some(PathBuf::from("/a/b")));
        assert_eq!(own_path_in(&own, &found[3]), Some(PathBuf::from("/")));
    }

    #[test]
    fn paths_stay_inside() {
        assert_eq!(
            clean_path(Path::new("/docker/abc")),
            Some(PathBuf::from("docker/abc"))
        );
        assert_eq!(clean_path(Path::new("rel/x")), Some(PathBuf::from("rel/x")));
        assert_eq!(clean_path(Path::new("/a/../../etc")), None);
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
