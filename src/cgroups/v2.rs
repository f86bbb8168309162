//! cgroup v2, the unified layout: one directory, and processes can be cloned straight into it.

use super::{procs_below, read_file, remove_tree, write_file, CgroupConfig, CgroupError, Manager};

pub struct V2Manager {
    config: CgroupConfig,
}

impl V2Manager {
    pub fn new(config: CgroupConfig) -> Self {
        V2Manager { config }
    }

    fn dir(&self) -> &std::path::Path {
        self.config
            .unified_dir()
            .expect("a unified layout has a cgroup2 hierarchy")
    }
}

impl Manager for V2Manager {
    fn create(&self) -> Result<(), CgroupError> {
        std::fs::create_dir_all(self.dir()).map_err(|source| CgroupError::Create {
            path: self.dir().to_path_buf(),
            source,
        })
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        write_file(&self.dir().join("cgroup.procs"), &pid.to_string())
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        procs_below(self.dir())
    }

    fn is_frozen(&self) -> bool {
        read_file(&self.dir().join("cgroup.freeze")).is_ok_and(|v| v == "1")
    }

    fn remove(&self) -> Result<(), CgroupError> {
        remove_tree(self.dir())
    }
}
