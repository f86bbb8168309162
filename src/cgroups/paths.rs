//! Where a container's cgroup goes: the mounted hierarchies (from /proc/self/mountinfo), berth's
//! own cgroups (from /proc/self/cgroup), and the spec's `cgroupsPath`.
//!
//! - An absolute `cgroupsPath` (`/default/ID` from containerd, `/docker/ID` from Docker) is taken
//!   from the root of each hierarchy.
//! - A relative one, or none (which means the container id), lands under the *parent* of the
//!   cgroup berth runs in, in each hierarchy, as runc does on cgroup v2: berth's own cgroup holds
//!   processes (berth and its caller), and v2's no-internal-processes rule forbids enabling
//!   controllers for children of a cgroup with processes in it. berth in `/a/b` puts `web` in
//!   `/a/web`; berth in the root cgroup puts it in `/web`. The same rule holds on v1, so a
//!   container lands in the same place in every hierarchy whatever the layout.
//! - With `--systemd-cgroup`, `slice:prefix:name` names a systemd scope; see `systemd`.

use std::path::{Component, Path, PathBuf};

use super::{systemd, CgroupConfig, CgroupError, Hierarchy, Layout};

/// Works out where the container's cgroup goes (see the module's notes).
pub fn config_for(
    cgroups_path: Option<&Path>,
    id: &str,
    use_systemd: bool,
) -> Result<CgroupConfig, CgroupError> {
    let (layout, hierarchies) = discover()?;
    if use_systemd {
        let scope = systemd::Scope::parse(cgroups_path, id)?;
        systemd::ensure_running()?;
        let path = scope.cgroup_path();
        let clean = clean_path(&path).ok_or_else(|| CgroupError::BadPath(scope.spec.clone()))?;
        let dirs = hierarchies
            .into_iter()
            .map(|h| {
                let dir = h.mount_point.join(&clean);
                (h, dir)
            })
            .collect();
        return Ok(CgroupConfig {
            layout: Some(layout),
            dirs,
            systemd: Some(scope),
            left_out: Vec::new(),
        });
    }
    let wanted = match cgroups_path {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from(id),
    };
    let clean =
        clean_path(&wanted).ok_or_else(|| CgroupError::BadPath(wanted.display().to_string()))?;
    if clean.as_os_str().is_empty() {
        return Err(CgroupError::BadPath(wanted.display().to_string()));
    }
    let own = own_cgroups()?;
    let mut dirs = Vec::new();
    for hierarchy in hierarchies {
        let base = if wanted.is_absolute() {
            PathBuf::new()
        } else {
            let own_path = own_path_in(&own, &hierarchy).unwrap_or_else(|| PathBuf::from("/"));
            let parent = own_path.parent().unwrap_or(Path::new("/")).to_path_buf();
            clean_path(&parent).unwrap_or_default()
        };
        let dir = hierarchy.mount_point.join(base).join(&clean);
        dirs.push((hierarchy, dir));
    }
    Ok(CgroupConfig {
        layout: Some(layout),
        dirs,
        systemd: None,
        left_out: Vec::new(),
    })
}

/// Strips the leading `/` and refuses `..`, so a cgroups path cannot leave its hierarchy.
pub(crate) fn clean_path(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// The mounted cgroup hierarchies, from /proc/self/mountinfo.
pub fn discover() -> Result<(Layout, Vec<Hierarchy>), CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = crate::procfs::read(path).map_err(|source| CgroupError::Layout {
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

/// The folder of the cgroup berth runs in, in `hierarchy` (its root when /proc/self/cgroup does
/// not name it).
pub(crate) fn own_dir(hierarchy: &Hierarchy) -> Result<PathBuf, CgroupError> {
    let own = own_cgroups()?;
    let path = own_path_in(&own, hierarchy).unwrap_or_else(|| PathBuf::from("/"));
    let relative = clean_path(&path).unwrap_or_default();
    Ok(match relative.as_os_str().is_empty() {
        true => hierarchy.mount_point.clone(),
        false => hierarchy.mount_point.join(relative),
    })
}

/// berth's own cgroups, from /proc/self/cgroup: (controllers, path) per line.
fn own_cgroups() -> Result<Vec<(Vec<String>, PathBuf)>, CgroupError> {
    let path = Path::new("/proc/self/cgroup");
    let text = crate::procfs::read(path).map_err(|source| CgroupError::Layout {
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

    #[test]
    fn absolute_and_relative_paths_on_this_host() {
        // Whatever this host's layout, an absolute path sits at each hierarchy's root and a
        // relative one under the parent of this process's own cgroup.
        let Ok((_, hierarchies)) = discover() else {
            return;
        };
        let own = own_cgroups().unwrap();
        let absolute = config_for(Some(Path::new("/default/web")), "web", false).unwrap();
        let relative = config_for(Some(Path::new("pods/web")), "web", false).unwrap();
        let none = config_for(None, "web", false).unwrap();
        for (i, hierarchy) in hierarchies.iter().enumerate() {
            let mount = &hierarchy.mount_point;
            assert_eq!(absolute.dirs[i].1, mount.join("default/web"));
            let own_path = own_path_in(&own, hierarchy).unwrap_or_else(|| "/".into());
            let parent = clean_path(own_path.parent().unwrap_or(Path::new("/"))).unwrap();
            assert_eq!(relative.dirs[i].1, mount.join(&parent).join("pods/web"));
            assert_eq!(none.dirs[i].1, mount.join(&parent).join("web"));
        }
        assert!(config_for(Some(Path::new("/")), "web", false).is_err());
        assert!(config_for(Some(Path::new("../x")), "web", false).is_err());
    }
}
