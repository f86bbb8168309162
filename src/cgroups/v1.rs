//! cgroup v1, used for the legacy layout and for the hybrid one (v1 controllers plus a cgroup2
//! mount, which is one more hierarchy the processes join): one directory per hierarchy. What the
//! v1 side lacks on a hybrid host (freezer, device rules, hugetlb, `cgroup.kill`) is done in the
//! cgroup2 directory when that offers it.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxResources,
};

use super::devices::{self, DeviceRule};
use super::stats::{self, Hugetlb, MemoryEntry, Stats};
use super::{
    keyed, procs_below, read_file, read_keyed, read_u64, remove_tree, set, signal_each, v2,
    wait_until, write_file, CgroupConfig, CgroupError, Layout, Manager,
};

const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct V1Manager {
    config: CgroupConfig,
}

impl V1Manager {
    pub fn new(config: CgroupConfig) -> Self {
        V1Manager { config }
    }

    /// The container's directory for `controller`, or an error naming the spec field.
    fn dir_for(&self, controller: &str, field: &str) -> Result<&Path, CgroupError> {
        self.config
            .v1_dir(controller)
            .ok_or_else(|| CgroupError::NoController {
                field: field.to_string(),
                controller: controller.to_string(),
                dir: "this host's cgroup v1 hierarchies".to_string(),
            })
    }

    fn layout_name(&self) -> String {
        self.config.layout.unwrap_or(Layout::Legacy).to_string()
    }

    fn set_resources(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(memory) = resources.memory() {
            self.set_memory(memory)?;
        }
        if let Some(cpu) = resources.cpu() {
            self.set_cpu(cpu)?;
        }
        if let Some(pids) = resources.pids() {
            let field = "linux.resources.pids.limit";
            let dir = self.dir_for("pids", field)?;
            set(
                dir,
                "pids.max",
                &super::resources::pids_max(pids.limit()),
                field,
            )?;
        }
        if let Some(io) = resources.block_io() {
            self.set_blkio(io)?;
        }
        if let Some(limits) = resources.hugepage_limits() {
            self.set_hugetlb(limits)?;
        }
        if let Some(network) = resources.network() {
            self.set_network(network)?;
        }
        if let Some(unified) = resources.unified().as_ref().filter(|u| !u.is_empty()) {
            let field = "linux.resources.unified";
            let Some(dir) = self.config.unified_dir() else {
                return Err(CgroupError::Unsupported {
                    field: field.into(),
                    layout: self.layout_name(),
                    reason: "it names cgroup v2 files and no cgroup2 hierarchy is mounted".into(),
                });
            };
            for (key, value) in unified {
                set(dir, key, value, &format!("{field}[{key:?}]"))?;
            }
        }
        Ok(())
    }

    fn set_memory(&self, memory: &LinuxMemory) -> Result<(), CgroupError> {
        let field = "linux.resources.memory";
        let dir = self.dir_for("memory", field)?;
        let memsw = "memory.memsw.limit_in_bytes";
        let has_memsw = dir.join(memsw).exists();
        let limit = memory.limit().filter(|&l| l != 0);
        let mut swap = memory.swap().filter(|&s| s != 0);
        // An unlimited memory limit with swap unspecified means unlimited swap too.
        if limit == Some(-1) && swap.is_none() && has_memsw {
            swap = Some(-1);
        }
        if swap.is_some() && !has_memsw {
            return Err(CgroupError::Unsupported {
                field: format!("{field}.swap"),
                layout: self.layout_name(),
                reason: format!(
                    "swap accounting is off (no {memsw} in {}; boot with swapaccount=1)",
                    dir.display()
                ),
            });
        }
        let write_limit = |l: i64| set(dir, "memory.limit_in_bytes", &l.to_string(), field);
        let write_swap = |s: i64| set(dir, memsw, &s.to_string(), &format!("{field}.swap"));
        match (limit, swap) {
            (Some(limit), Some(swap)) => {
                // memsw must stay at or above the memory limit after each write.
                let current = read_u64(&dir.join("memory.limit_in_bytes"))?;
                if swap == -1 || current < swap as u64 {
                    write_swap(swap)?;
                    write_limit(limit)?;
                } else {
                    write_limit(limit)?;
                    write_swap(swap)?;
                }
            }
            (Some(limit), None) => write_limit(limit)?,
            (None, Some(swap)) => write_swap(swap)?,
            (None, None) => {}
        }
        if let Some(reservation) = memory.reservation().filter(|&r| r != 0) {
            let value = reservation.to_string();
            set(
                dir,
                "memory.soft_limit_in_bytes",
                &value,
                &format!("{field}.reservation"),
            )?;
        }
        #[allow(deprecated)]
        if let Some(kernel) = memory.kernel().filter(|&k| k != 0) {
            // Deprecated since Linux 5.4: later kernels refuse the write (EOPNOTSUPP) or, newer
            // still, take it and hold no limit (a line in dmesg is all they say), so only reading
            // it back tells. A limit held reads back rounded down to a page.
            let file = "memory.kmem.limit_in_bytes";
            let held = match set(dir, file, &kernel.to_string(), &format!("{field}.kernel")) {
                Ok(()) => kernel < 0 || read_u64(&dir.join(file))? <= kernel as u64,
                Err(CgroupError::Write { source, .. })
                    if source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
                {
                    false
                }
                Err(err) => return Err(err),
            };
            if !held {
                crate::logging::warn(&format!(
                    "{field}.kernel is ignored: this kernel keeps no kernel memory limit \
                     ({file} holds none)"
                ));
            }
        }
        if let Some(tcp) = memory.kernel_tcp().filter(|&k| k != 0) {
            let value = tcp.to_string();
            set(
                dir,
                "memory.kmem.tcp.limit_in_bytes",
                &value,
                &format!("{field}.kernelTCP"),
            )?;
        }
        if let Some(swappiness) = memory.swappiness() {
            let value = swappiness.to_string();
            set(
                dir,
                "memory.swappiness",
                &value,
                &format!("{field}.swappiness"),
            )?;
        }
        if memory.disable_oom_killer() == Some(true) {
            set(
                dir,
                "memory.oom_control",
                "1",
                &format!("{field}.disableOOMKiller"),
            )?;
        }
        Ok(())
    }

    fn set_cpu(&self, cpu: &LinuxCpu) -> Result<(), CgroupError> {
        let field = "linux.resources.cpu";
        let cpu_dir = || self.dir_for("cpu", field);
        if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
            set(
                cpu_dir()?,
                "cpu.shares",
                &shares.to_string(),
                &format!("{field}.shares"),
            )?;
        }
        let period = cpu.period().filter(|&p| p != 0);
        let quota = cpu.quota().filter(|&q| q != 0);
        if period.is_some() || quota.is_some() {
            let dir = cpu_dir()?;
            let write_period = || match period {
                Some(p) => set(
                    dir,
                    "cpu.cfs_period_us",
                    &p.to_string(),
                    &format!("{field}.period"),
                ),
                None => Ok(()),
            };
            let write_quota = || match quota {
                Some(q) => set(
                    dir,
                    "cpu.cfs_quota_us",
                    &q.to_string(),
                    &format!("{field}.quota"),
                ),
                None => Ok(()),
            };
            // The kernel checks the pair after each write: if the new period does not fit the
            // old quota, the quota goes first.
            match write_period() {
                Err(CgroupError::Write { source, .. })
                    if source.raw_os_error() == Some(libc::EINVAL) =>
                {
                    write_quota()?;
                    write_period()?;
                }
                other => {
                    other?;
                    write_quota()?;
                }
            }
        }
        if let Some(burst) = cpu.burst() {
            set(
                cpu_dir()?,
                "cpu.cfs_burst_us",
                &burst.to_string(),
                &format!("{field}.burst"),
            )?;
        }
        let rt_period = cpu.realtime_period().filter(|&p| p != 0);
        let rt_runtime = cpu.realtime_runtime().filter(|&r| r != 0);
        if rt_period.is_some() || rt_runtime.is_some() {
            let dir = cpu_dir()?;
            let write_period = || match rt_period {
                Some(p) => set(
                    dir,
                    "cpu.rt_period_us",
                    &p.to_string(),
                    &format!("{field}.realtimePeriod"),
                ),
                None => Ok(()),
            };
            let write_runtime = || match rt_runtime {
                Some(r) => set(
                    dir,
                    "cpu.rt_runtime_us",
                    &r.to_string(),
                    &format!("{field}.realtimeRuntime"),
                ),
                None => Ok(()),
            };
            // As with the CFS pair: a period shorter than the runtime in place is refused
            // until the runtime is lowered first (runc issue 4094).
            match write_period() {
                Err(CgroupError::Write { source, .. })
                    if source.raw_os_error() == Some(libc::EINVAL) =>
                {
                    write_runtime()?;
                    write_period()?;
                }
                other => {
                    other?;
                    write_runtime()?;
                }
            }
        }
        if let Some(idle) = cpu.idle() {
            set(
                cpu_dir()?,
                "cpu.idle",
                &idle.to_string(),
                &format!("{field}.idle"),
            )?;
        }
        for (name, value) in [("cpus", cpu.cpus()), ("mems", cpu.mems())] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                let field = format!("{field}.{name}");
                let dir = self.dir_for("cpuset", &field)?;
                set(dir, &format!("cpuset.{name}"), value, &field)?;
            }
        }
        Ok(())
    }

    fn set_blkio(&self, io: &LinuxBlockIo) -> Result<(), CgroupError> {
        let field = "linux.resources.blockIO";
        let dir = self.dir_for("blkio", field)?;
        // CFQ's files, or BFQ's where the kernel has no CFQ (Linux 5.0 and later).
        let pick = |name: &str| {
            let plain = format!("blkio.{name}");
            if dir.join(&plain).exists() {
                plain
            } else {
                format!("blkio.bfq.{name}")
            }
        };
        if let Some(weight) = io.weight().filter(|&w| w != 0) {
            let value = weight.to_string();
            set(dir, &pick("weight"), &value, &format!("{field}.weight"))?;
        }
        if let Some(weight) = io.leaf_weight().filter(|&w| w != 0) {
            let value = weight.to_string();
            set(
                dir,
                "blkio.leaf_weight",
                &value,
                &format!("{field}.leafWeight"),
            )?;
        }
        for device in io.weight_device().iter().flatten() {
            let name = format!("{field}.weightDevice");
            if let Some(weight) = device.weight() {
                let line = format!("{}:{} {weight}", device.major(), device.minor());
                set(dir, &pick("weight_device"), &line, &name)?;
            }
            if let Some(weight) = device.leaf_weight() {
                let line = format!("{}:{} {weight}", device.major(), device.minor());
                set(dir, "blkio.leaf_weight_device", &line, &name)?;
            }
        }
        let throttles = [
            (
                "read_bps_device",
                "throttleReadBpsDevice",
                io.throttle_read_bps_device(),
            ),
            (
                "write_bps_device",
                "throttleWriteBpsDevice",
                io.throttle_write_bps_device(),
            ),
            (
                "read_iops_device",
                "throttleReadIOPSDevice",
                io.throttle_read_iops_device(),
            ),
            (
                "write_iops_device",
                "throttleWriteIOPSDevice",
                io.throttle_write_iops_device(),
            ),
        ];
        for (file, name, devices) in throttles {
            for device in devices.iter().flatten() {
                let line = format!("{}:{} {}", device.major(), device.minor(), device.rate());
                set(
                    dir,
                    &format!("blkio.throttle.{file}"),
                    &line,
                    &format!("{field}.{name}"),
                )?;
            }
        }
        Ok(())
    }

    /// hugetlb in its v1 hierarchy; on a hybrid host whose cgroup2 mount holds the controller
    /// (as on these machines), in the cgroup2 directory, with the controller enabled down to it.
    fn set_hugetlb(&self, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
        let field = "linux.resources.hugepageLimits";
        if limits.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.config.v1_dir("hugetlb") {
            for limit in limits {
                let file = format!("hugetlb.{}.limit_in_bytes", limit.page_size());
                if !dir.join(&file).exists() {
                    return Err(CgroupError::Invalid {
                        field: field.into(),
                        reason: format!(
                            "page size {:?} is not one of this host's: {}",
                            limit.page_size(),
                            v2::hugetlb_sizes(dir, ".limit_in_bytes").join(", ")
                        ),
                    });
                }
                set(dir, &file, &limit.limit().to_string(), field)?;
            }
            return Ok(());
        }
        let unified = self.config.unified_dir().zip(self.config.unified_mount());
        let Some((dir, mount)) = unified else {
            return Err(CgroupError::NoController {
                field: field.into(),
                controller: "hugetlb".into(),
                dir: "this host's cgroup hierarchies".into(),
            });
        };
        let offered = read_file(&mount.join("cgroup.controllers")).unwrap_or_default();
        if !offered.split_whitespace().any(|c| c == "hugetlb") {
            return Err(CgroupError::NoController {
                field: field.into(),
                controller: "hugetlb".into(),
                dir: format!("{} or a v1 hierarchy", mount.display()),
            });
        }
        v2::create_dir(mount, dir, Some(&["hugetlb"]))?;
        for limit in limits {
            v2::set_hugetlb(dir, limit.page_size(), limit.limit())?;
        }
        Ok(())
    }

    fn set_network(&self, network: &LinuxNetwork) -> Result<(), CgroupError> {
        if let Some(class_id) = network.class_id() {
            let field = "linux.resources.network.classID";
            let dir = self.dir_for("net_cls", field)?;
            set(dir, "net_cls.classid", &class_id.to_string(), field)?;
        }
        for priority in network.priorities().iter().flatten() {
            let field = "linux.resources.network.priorities";
            let dir = self.dir_for("net_prio", field)?;
            let line = format!("{} {}", priority.name(), priority.priority());
            set(dir, "net_prio.ifpriomap", &line, field)?;
        }
        Ok(())
    }

    fn set_devices(&self, rules: &[DeviceRule]) -> Result<(), CgroupError> {
        if let Some(dir) = self.config.v1_dir("devices") {
            // One rule per write, but each file opened once (13 rules for the default spec).
            let mut files: Vec<(&str, std::fs::File)> = Vec::new();
            for (name, line) in devices::v1_writes(rules) {
                let path = dir.join(name);
                let err = |source| CgroupError::Write {
                    path: path.clone(),
                    value: line.clone(),
                    source,
                };
                let index = match files.iter().position(|(open, _)| *open == name) {
                    Some(index) => index,
                    None => {
                        let file = std::fs::File::options().write(true).open(&path);
                        files.push((name, file.map_err(err)?));
                        files.len() - 1
                    }
                };
                files[index].1.write_all(line.as_bytes()).map_err(err)?;
            }
            return Ok(());
        }
        match self.config.unified_dir() {
            Some(dir) => v2::attach_devices(dir, rules),
            None => Err(CgroupError::NoController {
                field: "linux.resources.devices".into(),
                controller: "devices".into(),
                dir: "this host's cgroup hierarchies (and there is no cgroup2 mount)".into(),
            }),
        }
    }

    fn freezer(&self) -> Result<Freezer<'_>, CgroupError> {
        if let Some(dir) = self.config.v1_dir("freezer") {
            return Ok(Freezer::V1(dir));
        }
        match self.config.unified_dir() {
            Some(dir) => Ok(Freezer::V2(dir)),
            None => Err(CgroupError::NoController {
                field: "pause".into(),
                controller: "freezer".into(),
                dir: "this host's cgroup hierarchies".into(),
            }),
        }
    }
}

/// Where a hybrid host freezes: the v1 freezer, or cgroup2's `cgroup.freeze`.
enum Freezer<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl Manager for V1Manager {
    fn create(&self) -> Result<(), CgroupError> {
        super::create_part(&self.config, false)?;
        super::create_part(&self.config, true)
    }

    fn apply(&self, resources: &LinuxResources, devices: &[DeviceRule]) -> Result<(), CgroupError> {
        self.set_resources(resources)?;
        self.set_devices(devices)
    }

    fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.set_resources(resources)
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

    fn freeze(&self) -> Result<(), CgroupError> {
        match self.freezer()? {
            Freezer::V2(dir) => v2::freeze_dir(dir),
            Freezer::V1(dir) => {
                let state = dir.join("freezer.state");
                // Writing FROZEN again nudges tasks that forked while the cgroup was freezing.
                let frozen = wait_until(FREEZE_TIMEOUT, || {
                    write_file(&state, "FROZEN").is_ok()
                        && read_file(&state).is_ok_and(|s| s == "FROZEN")
                });
                if frozen {
                    return Ok(());
                }
                let _ = write_file(&state, "THAWED");
                Err(CgroupError::Stuck {
                    path: dir.to_path_buf(),
                    state: "FREEZING".into(),
                    waited: FREEZE_TIMEOUT,
                })
            }
        }
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        match self.freezer()? {
            Freezer::V2(dir) => v2::thaw_dir(dir),
            Freezer::V1(dir) => {
                let state = dir.join("freezer.state");
                write_file(&state, "THAWED")?;
                if wait_until(FREEZE_TIMEOUT, || {
                    read_file(&state).is_ok_and(|s| s == "THAWED")
                }) {
                    return Ok(());
                }
                Err(CgroupError::Stuck {
                    path: dir.to_path_buf(),
                    state: "FROZEN".into(),
                    waited: FREEZE_TIMEOUT,
                })
            }
        }
    }

    fn is_frozen(&self) -> bool {
        match self.freezer() {
            Ok(Freezer::V1(dir)) => {
                read_file(&dir.join("freezer.state")).is_ok_and(|state| state == "FROZEN")
            }
            Ok(Freezer::V2(dir)) => v2::is_frozen_dir(dir),
            Err(_) => false,
        }
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let mut stats = Stats::default();
        if let Some(dir) = self.config.v1_dir("memory") {
            let entry = |prefix: &str| -> MemoryEntry {
                let file = |name: &str| dir.join(format!("{prefix}.{name}"));
                MemoryEntry {
                    limit: read_u64(&file("limit_in_bytes")).unwrap_or(0),
                    usage: read_u64(&file("usage_in_bytes")).unwrap_or(0),
                    max: read_u64(&file("max_usage_in_bytes")).unwrap_or(0),
                    failcnt: read_u64(&file("failcnt")).unwrap_or(0),
                }
            };
            stats.memory.usage = entry("memory");
            stats.memory.swap = entry("memory.memsw");
            stats.memory.kernel = entry("memory.kmem");
            stats.memory.kernel_tcp = entry("memory.kmem.tcp");
            let raw = read_keyed(&dir.join("memory.stat"));
            stats.memory.cache = keyed(&raw, "cache");
            stats.memory.raw = raw.into_iter().collect();
        }
        if let Some(dir) = self.config.v1_dir("cpuacct") {
            let usage = &mut stats.cpu.usage;
            usage.total = read_u64(&dir.join("cpuacct.usage")).unwrap_or(0);
            let list = |name: &str| -> Vec<u64> {
                read_file(&dir.join(name))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            };
            usage.percpu = list("cpuacct.usage_percpu");
            usage.percpu_kernel = list("cpuacct.usage_percpu_sys");
            usage.percpu_user = list("cpuacct.usage_percpu_user");
            // cpuacct.stat counts clock ticks.
            let tick_ns = 1_000_000_000 / clock_ticks_per_second();
            let ticks = read_keyed(&dir.join("cpuacct.stat"));
            usage.user = keyed(&ticks, "user") * tick_ns;
            usage.kernel = keyed(&ticks, "system") * tick_ns;
        }
        if let Some(dir) = self.config.v1_dir("cpu") {
            let cpu = read_keyed(&dir.join("cpu.stat"));
            stats.cpu.throttling.periods = keyed(&cpu, "nr_periods");
            stats.cpu.throttling.throttled_periods = keyed(&cpu, "nr_throttled");
            stats.cpu.throttling.throttled_time = keyed(&cpu, "throttled_time");
        }
        if let Some(dir) = self.config.v1_dir("pids") {
            stats.pids.current = read_u64(&dir.join("pids.current")).unwrap_or(0);
            stats.pids.limit = match read_u64(&dir.join("pids.max")) {
                Ok(u64::MAX) | Err(_) => 0,
                Ok(limit) => limit,
            };
        }
        if let Some(dir) = self.config.v1_dir("blkio") {
            let read = |names: [&str; 2]| {
                names
                    .iter()
                    .map(|n| stats::parse_v1_blkio(&read_file(&dir.join(n)).unwrap_or_default()))
                    .find(|entries| !entries.is_empty())
                    .unwrap_or_default()
            };
            stats.blkio.io_service_bytes_recursive = read([
                "blkio.io_service_bytes_recursive",
                "blkio.throttle.io_service_bytes_recursive",
            ]);
            stats.blkio.io_serviced_recursive = read([
                "blkio.io_serviced_recursive",
                "blkio.throttle.io_serviced_recursive",
            ]);
        }
        if let Some(dir) = self.config.v1_dir("hugetlb") {
            for size in v2::hugetlb_sizes(dir, ".limit_in_bytes") {
                let file = |name: &str| dir.join(format!("hugetlb.{size}.{name}"));
                let entry = Hugetlb {
                    usage: read_u64(&file("usage_in_bytes")).unwrap_or(0),
                    max: read_u64(&file("max_usage_in_bytes")).unwrap_or(0),
                    failcnt: read_u64(&file("failcnt")).unwrap_or(0),
                };
                stats.hugetlb.insert(size, entry);
            }
        } else if let Some(dir) = self.config.unified_dir() {
            stats.hugetlb = v2::hugetlb_stats(dir);
        }
        Ok(stats)
    }

    fn oom_kills(&self) -> u64 {
        self.config
            .v1_dir("memory")
            .map(|dir| keyed(&read_keyed(&dir.join("memory.oom_control")), "oom_kill"))
            .unwrap_or(0)
    }

    fn kill_all(&self, signal: Signal) -> Result<(), CgroupError> {
        let was_frozen = self.is_frozen();
        // The processes are in the cgroup2 directory too, and there `cgroup.kill` takes them all;
        // a v1 frozen task handles no signal, SIGKILL included, until it is thawed.
        if let Some(dir) = self.config.unified_dir() {
            if signal == Signal::SIGKILL && dir.join("cgroup.kill").exists() {
                write_file(&dir.join("cgroup.kill"), "1")?;
                return if was_frozen { self.thaw() } else { Ok(()) };
            }
        }
        let can_freeze = self.freezer().is_ok();
        if !was_frozen && can_freeze {
            let _ = self.freeze();
        }
        signal_each(&self.pids()?, signal);
        if can_freeze && (!was_frozen || signal == Signal::SIGKILL) {
            self.thaw()?;
        }
        Ok(())
    }

    fn remove(&self) -> Result<(), CgroupError> {
        for (_, dir) in &self.config.dirs {
            remove_tree(dir)?;
        }
        Ok(())
    }
}

fn clock_ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        _ => 100,
    }
}

/// Makes `dir` and its missing parents. A new v1 cpuset cgroup starts with no cpus and no memory
/// nodes, and a process cannot join it until both are filled in from the parent.
pub(crate) fn create_dir(dir: &Path, is_cpuset: bool) -> Result<(), CgroupError> {
    // mkdir first: the parents are there but on the first container of a cgroups path.
    let mut made = std::fs::create_dir(dir);
    if matches!(&made, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
        if let Some(parent) = dir.parent() {
            create_dir(parent, is_cpuset)?;
        }
        made = std::fs::create_dir(dir);
    }
    match made {
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
        for file in ["cpuset.cpus", "cpuset.mems"] {
            cpuset_value(dir, file)?;
        }
    }
    Ok(())
}

/// A cpuset's `cpus` or `mems`, filled from its parent's when empty (a new cpuset starts empty,
/// and takes no process so): up the tree as far as needed, since a parent made by someone
/// else (a pod's cgroup) may be empty too, as runc does.
fn cpuset_value(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let value = read_file(&dir.join(file))?;
    match dir.parent() {
        Some(parent) if value.is_empty() && parent.join(file).exists() => {
            let inherited = cpuset_value(parent, file)?;
            write_file(&dir.join(file), &inherited)?;
            Ok(inherited)
        }
        _ => Ok(value),
    }
}
