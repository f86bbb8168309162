//! cgroup v1, used for the legacy layout and for the hybrid one (v1 controllers plus a cgroup2
//! mount, which is handled like one more hierarchy): one directory per hierarchy.

use std::path::Path;

use super::{procs_below, read_file, remove_tree, write_file, CgroupConfig, CgroupError, Manager};

pub struct V1Manager {
    config: CgroupConfig,
}

impl V1Manager {
    pub fn new(config: CgroupConfig) -> Self {
        V1Manager { config }
    }
}

impl Manager for V1Manager {
    fn create(&self) -> Result<(), CgroupError> {
        for (hierarchy, dir) in &self.config.dirs {
            let is_cpuset = hierarchy.controllers.iter().any(|c| c == "cpuset");
            create_dir(dir, is_cpuset)?;
        }
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for (_, dir) in &self.config.dirs {
            write_file(&dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        // Every hierarchy holds the same processes; prefer one the container cannot escape.
        let dir = self
            .config
            .v1_dir("pids")
            .or_else(|| self.config.v1_dir("freezer"))
            .or_else(|| self.config.dirs.first().map(|(_, d)| d.as_path()));
        match dir {
            Some(dir) => procs_below(dir),
            None => Ok(Vec::new()),
        }
    }

    fn is_frozen(&self) -> bool {
        self.config
            .v1_dir("freezer")
            .and_then(|dir| read_file(&dir.join("freezer.state")).ok())
            .is_some_and(|state| state == "FROZEN")
    }

    fn remove(&self) -> Result<(), CgroupError> {
        for (_, dir) in &self.config.dirs {
            remove_tree(dir)?;
        }
        Ok(())
    }
}

/// Makes `dir` and its missing parents. A new v1 cpuset cgroup starts with no cpus and no memory
/// nodes, and a process cannot join it until both are filled in from the parent.
fn create_dir(dir: &Path, is_cpuset: bool) -> Result<(), CgroupError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.is_dir() {
            create_dir(parent, is_cpuset)?;
        }
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Create {
                path: dir.to_path_buf(),
                source,
            })
        }
    }
    if is_cpuset {
        let parent = dir.parent().unwrap_or(dir);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if read_file(&dir.join(file))?.is_empty() {
                write_file(&dir.join(file), &read_file(&parent.join(file))?)?;
            }
        }
    }
    Ok(())
}
