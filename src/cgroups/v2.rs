//! cgroup v2, the unified layout: one directory, controllers enabled on the way down, device
//! rules as an eBPF program, and processes cloned straight into it. The helpers that work on a
//! cgroup2 directory are also used by the hybrid layout for what its v1 side lacks.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use super::devices::DeviceRule;
use super::resources::{cpu_weight_from_shares, io_weight_from_blkio, swap_max_v2, v2_limit};
use super::stats::{self, Hugetlb, Stats};
use super::{
    bpf, keyed, procs_below, read_file, read_keyed, read_u64, remove_tree, set, signal_each,
    wait_until, write_file, CgroupConfig, CgroupError, Manager,
};

/// How long a freeze may take before berth gives up and thaws the cgroup again.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct V2Manager {
    config: CgroupConfig,
}

impl V2Manager {
    pub fn new(config: CgroupConfig) -> Self {
        V2Manager { config }
    }

    fn dir(&self) -> &Path {
        self.config
            .unified_dir()
            .expect("a unified layout has a cgroup2 hierarchy")
    }
}

impl Manager for V2Manager {
    fn create(&self) -> Result<(), CgroupError> {
        let mount = self.config.unified_mount().expect("a cgroup2 hierarchy");
        create_dir(mount, self.dir(), None)
    }

    fn apply(&self, resources: &LinuxResources, devices: &[DeviceRule]) -> Result<(), CgroupError> {
        set_resources(self.dir(), resources)?;
        attach_devices(self.dir(), devices)
    }

    fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        set_resources(self.dir(), resources)
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        write_file(&self.dir().join("cgroup.procs"), &pid.to_string())
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        procs_below(self.dir())
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        freeze_dir(self.dir())
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        thaw_dir(self.dir())
    }

    fn is_frozen(&self) -> bool {
        is_frozen_dir(self.dir())
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        stats_of(self.dir())
    }

    fn oom_kills(&self) -> u64 {
        keyed(&read_keyed(&self.dir().join("memory.events")), "oom_kill")
    }

    fn kill_all(&self, signal: Signal) -> Result<(), CgroupError> {
        kill_dir(self.dir(), signal)
    }

    fn remove(&self) -> Result<(), CgroupError> {
        remove_tree(self.dir())
    }
}

/// Makes `dir` below the cgroup2 `mount`, enabling on each ancestor the controllers it offers
/// (all of them, or only `wanted`), as systemd does for a delegated subtree. A controller that
/// cannot be enabled is left out; writing its files then fails with an error naming it.
pub(crate) fn create_dir(
    mount: &Path,
    dir: &Path,
    wanted: Option<&[&str]>,
) -> Result<(), CgroupError> {
    let relative = dir
        .strip_prefix(mount)
        .map_err(|_| CgroupError::BadPath(dir.display().to_string()))?;
    let mut current = mount.to_path_buf();
    for part in relative.components() {
        enable_controllers(&current, wanted);
        current.push(part);
        match std::fs::create_dir(&current) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(CgroupError::Create {
                    path: current,
                    source,
                })
            }
        }
    }
    Ok(())
}

fn enable_controllers(dir: &Path, wanted: Option<&[&str]>) {
    let available = read_file(&dir.join("cgroup.controllers")).unwrap_or_default();
    let enabled = read_file(&dir.join("cgroup.subtree_control")).unwrap_or_default();
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    for controller in available.split_whitespace() {
        if enabled.contains(&controller) || wanted.is_some_and(|w| !w.contains(&controller)) {
            continue;
        }
        let path = dir.join("cgroup.subtree_control");
        if let Err(err) = write_file(&path, &format!("+{controller}")) {
            crate::logging::debug(&err.to_string());
        }
    }
}

/// Writes `linux.resources` (but the device rules) into the cgroup2 directory `dir`.
pub(crate) fn set_resources(dir: &Path, resources: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(memory) = resources.memory() {
        set_memory(dir, memory)?;
    }
    if let Some(cpu) = resources.cpu() {
        set_cpu(dir, cpu)?;
    }
    if let Some(pids) = resources.pids() {
        set(
            dir,
            "pids.max",
            &super::resources::pids_max(pids.limit()),
            "linux.resources.pids.limit",
        )?;
    }
    if let Some(io) = resources.block_io() {
        set_io(dir, io)?;
    }
    for limit in resources.hugepage_limits().iter().flatten() {
        set_hugetlb(dir, limit.page_size(), limit.limit())?;
    }
    if resources.network().is_some() {
        crate::logging::warn(
            "linux.resources.network is ignored: net_cls and net_prio exist only on cgroup v1",
        );
    }
    for (key, value) in resources.unified().iter().flatten() {
        set(
            dir,
            key,
            value,
            &format!("linux.resources.unified[{key:?}]"),
        )?;
    }
    Ok(())
}

fn set_memory(dir: &Path, memory: &LinuxMemory) -> Result<(), CgroupError> {
    let field = "linux.resources.memory";
    if let Some(limit) = memory.limit().filter(|&l| l > 0) {
        if memory.check_before_update() == Some(true) {
            let usage = read_u64(&dir.join("memory.current"))?;
            if usage > limit as u64 {
                return Err(CgroupError::Invalid {
                    field: format!("{field}.limit"),
                    reason: format!("{limit} is below the current usage of {usage} bytes"),
                });
            }
        }
    }
    if let Some(swap) = swap_max_v2(memory.swap(), memory.limit())? {
        if !dir.join("memory.swap.max").exists() && dir.join("memory.max").exists() {
            return Err(CgroupError::Unsupported {
                field: format!("{field}.swap"),
                layout: "cgroup v2".into(),
                reason: format!(
                    "swap accounting is off in this kernel (no memory.swap.max in {})",
                    dir.display()
                ),
            });
        }
        set(dir, "memory.swap.max", &swap, &format!("{field}.swap"))?;
    }
    if let Some(limit) = memory.limit().filter(|&l| l != 0) {
        set(
            dir,
            "memory.max",
            &v2_limit(limit),
            &format!("{field}.limit"),
        )?;
    }
    if let Some(low) = memory.reservation().filter(|&l| l != 0) {
        set(
            dir,
            "memory.low",
            &v2_limit(low),
            &format!("{field}.reservation"),
        )?;
    }
    #[allow(deprecated)]
    let v1_only = [
        ("kernel", memory.kernel().is_some()),
        ("kernelTCP", memory.kernel_tcp().is_some()),
        ("swappiness", memory.swappiness().is_some()),
        (
            "disableOOMKiller",
            memory.disable_oom_killer() == Some(true),
        ),
    ];
    for (name, given) in v1_only {
        if given {
            crate::logging::warn(&format!(
                "{field}.{name} is ignored: cgroup v2 has no such setting"
            ));
        }
    }
    Ok(())
}

fn set_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    let field = "linux.resources.cpu";
    if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
        let weight = cpu_weight_from_shares(shares).to_string();
        set(dir, "cpu.weight", &weight, &format!("{field}.shares"))?;
    }
    let quota = cpu.quota().filter(|&q| q != 0);
    let period = cpu.period().filter(|&p| p != 0);
    if quota.is_some() || period.is_some() {
        // cpu.max holds both: keep the half that is not being changed.
        let current = read_file(&dir.join("cpu.max")).unwrap_or_else(|_| "max 100000".into());
        let mut parts = current.split_whitespace();
        let old_quota = parts.next().unwrap_or("max").to_string();
        let old_period = parts.next().unwrap_or("100000").to_string();
        let quota = quota.map_or(old_quota, v2_limit);
        let period = period.map_or(old_period, |p| p.to_string());
        set(
            dir,
            "cpu.max",
            &format!("{quota} {period}"),
            &format!("{field}.quota"),
        )?;
    }
    if let Some(burst) = cpu.burst() {
        set(
            dir,
            "cpu.max.burst",
            &burst.to_string(),
            &format!("{field}.burst"),
        )?;
    }
    if let Some(idle) = cpu.idle() {
        set(dir, "cpu.idle", &idle.to_string(), &format!("{field}.idle"))?;
    }
    if cpu.realtime_runtime().is_some_and(|r| r != 0)
        || cpu.realtime_period().is_some_and(|p| p != 0)
    {
        return Err(CgroupError::Unsupported {
            field: format!("{field}.realtimeRuntime"),
            layout: "cgroup v2".into(),
            reason: "real-time CPU time can only be limited on cgroup v1".into(),
        });
    }
    if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        set(dir, "cpuset.cpus", cpus, &format!("{field}.cpus"))?;
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        set(dir, "cpuset.mems", mems, &format!("{field}.mems"))?;
    }
    Ok(())
}

fn set_io(dir: &Path, io: &LinuxBlockIo) -> Result<(), CgroupError> {
    let field = "linux.resources.blockIO";
    // BFQ takes blkio's own range; the default io.weight is on the v2 scale.
    let bfq = dir.join("io.bfq.weight").exists();
    let (weight_file, scale): (&str, fn(u16) -> u64) = if bfq {
        ("io.bfq.weight", u64::from)
    } else {
        ("io.weight", io_weight_from_blkio)
    };
    if let Some(weight) = io.weight().filter(|&w| w != 0) {
        set(
            dir,
            weight_file,
            &scale(weight).to_string(),
            &format!("{field}.weight"),
        )?;
    }
    for device in io.weight_device().iter().flatten() {
        if let Some(weight) = device.weight() {
            let line = format!("{}:{} {}", device.major(), device.minor(), scale(weight));
            set(dir, weight_file, &line, &format!("{field}.weightDevice"))?;
        }
    }
    let throttles = [
        (
            "rbps",
            "throttleReadBpsDevice",
            io.throttle_read_bps_device(),
        ),
        (
            "wbps",
            "throttleWriteBpsDevice",
            io.throttle_write_bps_device(),
        ),
        (
            "riops",
            "throttleReadIOPSDevice",
            io.throttle_read_iops_device(),
        ),
        (
            "wiops",
            "throttleWriteIOPSDevice",
            io.throttle_write_iops_device(),
        ),
    ];
    for (key, name, devices) in throttles {
        for device in devices.iter().flatten() {
            let rate = match device.rate() {
                0 => "max".to_string(),
                rate => rate.to_string(),
            };
            let line = format!("{}:{} {key}={rate}", device.major(), device.minor());
            set(dir, "io.max", &line, &format!("{field}.{name}"))?;
        }
    }
    if io.leaf_weight().is_some() {
        crate::logging::warn(&format!(
            "{field}.leafWeight is ignored: cgroup v2 has no such setting"
        ));
    }
    Ok(())
}

/// `hugetlb.<size>.max`, with a clear error for a page size this host does not have.
pub(crate) fn set_hugetlb(dir: &Path, page_size: &str, limit: i64) -> Result<(), CgroupError> {
    let file = format!("hugetlb.{page_size}.max");
    let field = "linux.resources.hugepageLimits";
    if !dir.join(&file).exists() && dir.join("cgroup.controllers").exists() {
        let sizes = hugetlb_sizes(dir, ".max");
        if !sizes.is_empty() {
            return Err(CgroupError::Invalid {
                field: field.into(),
                reason: format!(
                    "page size {page_size:?} is not one of this host's: {}",
                    sizes.join(", ")
                ),
            });
        }
    }
    set(dir, &file, &v2_limit(limit), field)
}

/// The hugetlb page sizes with a file `hugetlb.<size><suffix>` in `dir`, e.g. `2MB`.
pub(crate) fn hugetlb_sizes(dir: &Path, suffix: &str) -> Vec<String> {
    let mut sizes: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    sizes
}

/// Loads the device rules as an eBPF program and attaches it to `dir`.
pub(crate) fn attach_devices(dir: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
    let program = super::devices::bpf_program(rules);
    let prog = bpf::load_device_program(&program).map_err(|(source, log)| {
        if !log.is_empty() {
            crate::logging::warn(&format!("the eBPF verifier said: {log}"));
        }
        CgroupError::Bpf {
            what: "load the device program",
            path: dir.to_path_buf(),
            source,
        }
    })?;
    bpf::attach_device_program(dir, &prog).map_err(|source| CgroupError::Bpf {
        what: "attach the device program",
        path: dir.to_path_buf(),
        source,
    })
}

pub(crate) fn freeze_dir(dir: &Path) -> Result<(), CgroupError> {
    write_file(&dir.join("cgroup.freeze"), "1")?;
    let events = dir.join("cgroup.events");
    if wait_until(FREEZE_TIMEOUT, || {
        keyed(&read_keyed(&events), "frozen") == 1
    }) {
        return Ok(());
    }
    let _ = write_file(&dir.join("cgroup.freeze"), "0");
    Err(CgroupError::Stuck {
        path: dir.to_path_buf(),
        state: "freezing".into(),
        waited: FREEZE_TIMEOUT,
    })
}

pub(crate) fn thaw_dir(dir: &Path) -> Result<(), CgroupError> {
    write_file(&dir.join("cgroup.freeze"), "0")?;
    let events = dir.join("cgroup.events");
    if wait_until(FREEZE_TIMEOUT, || {
        keyed(&read_keyed(&events), "frozen") == 0
    }) {
        return Ok(());
    }
    Err(CgroupError::Stuck {
        path: dir.to_path_buf(),
        state: "frozen".into(),
        waited: FREEZE_TIMEOUT,
    })
}

pub(crate) fn is_frozen_dir(dir: &Path) -> bool {
    read_file(&dir.join("cgroup.freeze")).is_ok_and(|v| v == "1")
}

/// SIGKILL through `cgroup.kill` (Linux 5.14+), which reaches every process below `dir` and
/// leaves none a chance to fork; other signals pid by pid with the cgroup frozen meanwhile.
pub(crate) fn kill_dir(dir: &Path, signal: Signal) -> Result<(), CgroupError> {
    let kill_file = dir.join("cgroup.kill");
    if signal == Signal::SIGKILL && kill_file.exists() {
        return write_file(&kill_file, "1");
    }
    let was_frozen = is_frozen_dir(dir);
    if !was_frozen {
        let _ = freeze_dir(dir);
    }
    signal_each(&procs_below(dir)?, signal);
    // A paused container stays paused, unless it is being killed.
    if !was_frozen || signal == Signal::SIGKILL {
        thaw_dir(dir)?;
    }
    Ok(())
}

pub(crate) fn stats_of(dir: &Path) -> Result<Stats, CgroupError> {
    let mut stats = Stats::default();
    let memory_stat = read_keyed(&dir.join("memory.stat"));
    if dir.join("memory.current").exists() {
        let memory = &mut stats.memory;
        memory.usage.usage = read_u64(&dir.join("memory.current"))?;
        memory.usage.limit = read_u64(&dir.join("memory.max"))?;
        memory.usage.max = read_u64(&dir.join("memory.peak")).unwrap_or(0);
        memory.usage.failcnt = keyed(&read_keyed(&dir.join("memory.events")), "max");
        // As runc does: v1 reported memory plus swap, so v2's swap figures are added up too.
        if let Ok(swap) = read_u64(&dir.join("memory.swap.current")) {
            memory.swap.usage = swap + memory.usage.usage;
            let limit = read_u64(&dir.join("memory.swap.max"))?;
            memory.swap.limit = limit.saturating_add(memory.usage.limit);
        }
        memory.cache = keyed(&memory_stat, "file");
        memory.raw = memory_stat.into_iter().collect();
    }
    let cpu = read_keyed(&dir.join("cpu.stat"));
    stats.cpu.usage.total = keyed(&cpu, "usage_usec") * 1000;
    stats.cpu.usage.user = keyed(&cpu, "user_usec") * 1000;
    stats.cpu.usage.kernel = keyed(&cpu, "system_usec") * 1000;
    stats.cpu.throttling.periods = keyed(&cpu, "nr_periods");
    stats.cpu.throttling.throttled_periods = keyed(&cpu, "nr_throttled");
    stats.cpu.throttling.throttled_time = keyed(&cpu, "throttled_usec") * 1000;
    if dir.join("pids.current").exists() {
        stats.pids.current = read_u64(&dir.join("pids.current"))?;
        stats.pids.limit = match read_u64(&dir.join("pids.max"))? {
            u64::MAX => 0,
            limit => limit,
        };
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("io.stat")) {
        let (bytes, ios) = stats::parse_v2_io(&text);
        stats.blkio.io_service_bytes_recursive = bytes;
        stats.blkio.io_serviced_recursive = ios;
    }
    stats.hugetlb = hugetlb_stats(dir);
    Ok(stats)
}

pub(crate) fn hugetlb_stats(dir: &Path) -> std::collections::BTreeMap<String, Hugetlb> {
    hugetlb_sizes(dir, ".current")
        .into_iter()
        .map(|size| {
            let file = |name: &str| dir.join(format!("hugetlb.{size}.{name}"));
            // v2 keeps no peak figure for hugetlb, so `max` stays 0 as with runc.
            let entry = Hugetlb {
                usage: read_u64(&file("current")).unwrap_or(0),
                max: 0,
                failcnt: keyed(&read_keyed(&file("events")), "max"),
            };
            (size, entry)
        })
        .collect()
}
