//! `berth update`: change a container's limits, from runc's flags or from a LinuxResources JSON
//! document (`--resources -` reads it from stdin, as containerd and Docker send it). Flags given
//! beside `--resources` override its values.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use berth::container::update::parse_size;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxPids, LinuxResources};

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// LinuxResources JSON from this file, or from stdin with -
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Block I/O weight, 10 to 1000
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// CPU CFS period in microseconds
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds per period (-1: unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS burst in microseconds
    #[arg(long)]
    pub cpu_burst: Option<u64>,
    /// CPU shares (relative weight)
    #[arg(long)]
    pub cpu_share: Option<u64>,
    /// CPU real-time period in microseconds (cgroup v1)
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU real-time runtime in microseconds (cgroup v1)
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// SCHED_IDLE for the cgroup: 0 or 1
    #[arg(long)]
    pub cpu_idle: Option<i64>,
    /// CPUs to run on, e.g. 0-3 or 0,1
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use, e.g. 0-3 or 0,1
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit, e.g. 64m (-1: unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit, e.g. 32m
    #[arg(long, allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit, e.g. 128m (-1: unlimited swap)
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Kernel memory limit (cgroup v1)
    #[arg(long, allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    /// Kernel TCP buffer memory limit (cgroup v1)
    #[arg(long, allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    /// Maximum number of processes (-1: unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// The container id
    pub id: String,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    let resources = resources(&args)?;
    berth::container::update::update(&global.root, &args.id, &resources)?;
    Ok(0)
}

fn resources(args: &Args) -> anyhow::Result<LinuxResources> {
    let mut resources = match &args.resources {
        Some(path) => {
            let mut text = String::new();
            if path.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read the resources from stdin")?;
            } else {
                text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
            }
            let source = if path.as_os_str() == "-" {
                "stdin".to_string()
            } else {
                path.display().to_string()
            };
            let context = || format!("the resources from {source} are not LinuxResources JSON");
            let value: serde_json::Value = serde_json::from_str(&text).with_context(context)?;
            let mut resources: LinuxResources =
                serde_json::from_value(value.clone()).with_context(context)?;
            // Without a `limit`, pids asks for nothing (runtime-spec 1.3); a 0 is read by the
            // container's ociVersion when the update is applied.
            if value
                .pointer("/pids")
                .is_some_and(|p| p.get("limit").is_none_or(|l| l.is_null()))
            {
                resources.set_pids(None);
            }
            resources
        }
        None => LinuxResources::default(),
    };
    let size = |value: &Option<String>| value.as_deref().map(parse_size).transpose();

    let memory_flags = [
        &args.memory,
        &args.memory_reservation,
        &args.memory_swap,
        &args.kernel_memory,
        &args.kernel_memory_tcp,
    ];
    if memory_flags.iter().any(|f| f.is_some()) {
        let mut memory = resources.memory().unwrap_or_default();
        if let Some(limit) = size(&args.memory)? {
            memory.set_limit(Some(limit));
        }
        if let Some(reservation) = size(&args.memory_reservation)? {
            memory.set_reservation(Some(reservation));
        }
        if let Some(swap) = size(&args.memory_swap)? {
            memory.set_swap(Some(swap));
        }
        if let Some(kernel) = size(&args.kernel_memory)? {
            #[allow(deprecated)]
            memory.set_kernel(Some(kernel));
        }
        if let Some(tcp) = size(&args.kernel_memory_tcp)? {
            memory.set_kernel_tcp(Some(tcp));
        }
        resources.set_memory(Some(memory));
    }

    let cpu_flags = [
        args.cpu_period.is_some(),
        args.cpu_quota.is_some(),
        args.cpu_burst.is_some(),
        args.cpu_share.is_some(),
        args.cpu_rt_period.is_some(),
        args.cpu_rt_runtime.is_some(),
        args.cpu_idle.is_some(),
        args.cpuset_cpus.is_some(),
        args.cpuset_mems.is_some(),
    ];
    if cpu_flags.contains(&true) {
        let mut cpu: LinuxCpu = resources.cpu().clone().unwrap_or_default();
        if args.cpu_period.is_some() {
            cpu.set_period(args.cpu_period);
        }
        if args.cpu_quota.is_some() {
            cpu.set_quota(args.cpu_quota);
        }
        if args.cpu_burst.is_some() {
            cpu.set_burst(args.cpu_burst);
        }
        if args.cpu_share.is_some() {
            cpu.set_shares(args.cpu_share);
        }
        if args.cpu_rt_period.is_some() {
            cpu.set_realtime_period(args.cpu_rt_period);
        }
        if args.cpu_rt_runtime.is_some() {
            cpu.set_realtime_runtime(args.cpu_rt_runtime);
        }
        if args.cpu_idle.is_some() {
            cpu.set_idle(args.cpu_idle);
        }
        if args.cpuset_cpus.is_some() {
            cpu.set_cpus(args.cpuset_cpus.clone());
        }
        if args.cpuset_mems.is_some() {
            cpu.set_mems(args.cpuset_mems.clone());
        }
        resources.set_cpu(Some(cpu));
    }

    if let Some(limit) = args.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        resources.set_pids(Some(pids));
    }
    if let Some(weight) = args.blkio_weight {
        let mut io: LinuxBlockIo = resources.block_io().clone().unwrap_or_default();
        io.set_weight(Some(weight));
        resources.set_block_io(Some(io));
    }
    Ok(resources)
}
