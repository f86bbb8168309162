//! A container's resource figures for the Stats call, in containerd's types: the cgroup v1
//! `io.containerd.cgroups.v1.Metrics` on v1 and hybrid hosts (where the controllers are v1), the
//! v2 `io.containerd.cgroups.v2.Metrics` on unified ones. The figures are berth's own
//! (`cgroups::Manager::stats`, what `berth events --stats` prints), only put in these shapes.

use std::collections::BTreeMap;

use berth::cgroups::stats::{BlkioEntry, Stats};
use berth::cgroups::Layout;
use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageField;

/// The figures as containerd's Any for the host's layout.
pub fn to_any(stats: &Stats, layout: Option<Layout>) -> Any {
    match layout {
        Some(Layout::Unified) => {
            crate::events::any("io.containerd.cgroups.v2.Metrics", &v2_metrics(stats))
        }
        _ => crate::events::any("io.containerd.cgroups.v1.Metrics", &v1_metrics(stats)),
    }
}

fn raw(stats: &Stats, key: &str) -> u64 {
    stats.memory.raw.get(key).copied().unwrap_or(0)
}

fn v1_entry(e: &berth::cgroups::stats::MemoryEntry) -> MessageField<v1::MemoryEntry> {
    MessageField::some(v1::MemoryEntry {
        limit: e.limit,
        usage: e.usage,
        max: e.max,
        failcnt: e.failcnt,
        ..Default::default()
    })
}

fn v1_metrics(stats: &Stats) -> v1::Metrics {
    let r = |key| raw(stats, key);
    let memory = v1::MemoryStat {
        cache: r("cache"),
        rss: r("rss"),
        rss_huge: r("rss_huge"),
        mapped_file: r("mapped_file"),
        dirty: r("dirty"),
        writeback: r("writeback"),
        pg_pg_in: r("pgpgin"),
        pg_pg_out: r("pgpgout"),
        pg_fault: r("pgfault"),
        pg_maj_fault: r("pgmajfault"),
        inactive_anon: r("inactive_anon"),
        active_anon: r("active_anon"),
        inactive_file: r("inactive_file"),
        active_file: r("active_file"),
        unevictable: r("unevictable"),
        hierarchical_memory_limit: r("hierarchical_memory_limit"),
        hierarchical_swap_limit: r("hierarchical_memsw_limit"),
        total_cache: r("total_cache"),
        total_rss: r("total_rss"),
        total_rss_huge: r("total_rss_huge"),
        total_mapped_file: r("total_mapped_file"),
        total_dirty: r("total_dirty"),
        total_writeback: r("total_writeback"),
        total_pg_pg_in: r("total_pgpgin"),
        total_pg_pg_out: r("total_pgpgout"),
        total_pg_fault: r("total_pgfault"),
        total_pg_maj_fault: r("total_pgmajfault"),
        total_inactive_anon: r("total_inactive_anon"),
        total_active_anon: r("total_active_anon"),
        total_inactive_file: r("total_inactive_file"),
        total_active_file: r("total_active_file"),
        total_unevictable: r("total_unevictable"),
        usage: v1_entry(&stats.memory.usage),
        swap: v1_entry(&stats.memory.swap),
        kernel: v1_entry(&stats.memory.kernel),
        kernel_tcp: v1_entry(&stats.memory.kernel_tcp),
        ..Default::default()
    };
    let usage = &stats.cpu.usage;
    let cpu = v1::CPUStat {
        usage: MessageField::some(v1::CPUUsage {
            total: usage.total,
            kernel: usage.kernel,
            user: usage.user,
            per_cpu: usage.percpu.clone(),
            ..Default::default()
        }),
        throttling: MessageField::some(v1::Throttle {
            periods: stats.cpu.throttling.periods,
            throttled_periods: stats.cpu.throttling.throttled_periods,
            throttled_time: stats.cpu.throttling.throttled_time,
            ..Default::default()
        }),
        ..Default::default()
    };
    let blkio_entries = |entries: &[BlkioEntry]| -> Vec<v1::BlkIOEntry> {
        entries
            .iter()
            .map(|e| v1::BlkIOEntry {
                op: e.op.clone(),
                major: e.major,
                minor: e.minor,
                value: e.value,
                ..Default::default()
            })
            .collect()
    };
    v1::Metrics {
        hugetlb: stats
            .hugetlb
            .iter()
            .map(|(size, h)| v1::HugetlbStat {
                usage: h.usage,
                max: h.max,
                failcnt: h.failcnt,
                pagesize: size.clone(),
                ..Default::default()
            })
            .collect(),
        pids: MessageField::some(v1::PidsStat {
            current: stats.pids.current,
            limit: stats.pids.limit,
            ..Default::default()
        }),
        cpu: MessageField::some(cpu),
        memory: MessageField::some(memory),
        blkio: MessageField::some(v1::BlkIOStat {
            io_service_bytes_recursive: blkio_entries(&stats.blkio.io_service_bytes_recursive),
            io_serviced_recursive: blkio_entries(&stats.blkio.io_serviced_recursive),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn v2_metrics(stats: &Stats) -> v2::Metrics {
    let r = |key| raw(stats, key);
    let memory = v2::MemoryStat {
        anon: r("anon"),
        file: r("file"),
        kernel_stack: r("kernel_stack"),
        slab: r("slab"),
        sock: r("sock"),
        shmem: r("shmem"),
        file_mapped: r("file_mapped"),
        file_dirty: r("file_dirty"),
        file_writeback: r("file_writeback"),
        anon_thp: r("anon_thp"),
        inactive_anon: r("inactive_anon"),
        active_anon: r("active_anon"),
        inactive_file: r("inactive_file"),
        active_file: r("active_file"),
        unevictable: r("unevictable"),
        slab_reclaimable: r("slab_reclaimable"),
        slab_unreclaimable: r("slab_unreclaimable"),
        pgfault: r("pgfault"),
        pgmajfault: r("pgmajfault"),
        workingset_refault: r("workingset_refault"),
        workingset_activate: r("workingset_activate"),
        workingset_nodereclaim: r("workingset_nodereclaim"),
        pgrefill: r("pgrefill"),
        pgscan: r("pgscan"),
        pgsteal: r("pgsteal"),
        pgactivate: r("pgactivate"),
        pgdeactivate: r("pgdeactivate"),
        pglazyfree: r("pglazyfree"),
        pglazyfreed: r("pglazyfreed"),
        thp_fault_alloc: r("thp_fault_alloc"),
        thp_collapse_alloc: r("thp_collapse_alloc"),
        usage: stats.memory.usage.usage,
        usage_limit: stats.memory.usage.limit,
        // berth reports swap as memory plus swap, as runc's v1-shaped figures do; v2's own
        // figures are swap alone.
        swap_usage: stats
            .memory
            .swap
            .usage
            .saturating_sub(stats.memory.usage.usage),
        swap_limit: stats
            .memory
            .swap
            .limit
            .saturating_sub(stats.memory.usage.limit),
        max_usage: stats.memory.usage.max,
        ..Default::default()
    };
    // io.stat, per device: bytes and operations read and written.
    let mut io: BTreeMap<(u64, u64), v2::IOEntry> = BTreeMap::new();
    let lists = [
        (&stats.blkio.io_service_bytes_recursive, true),
        (&stats.blkio.io_serviced_recursive, false),
    ];
    for (list, bytes) in lists {
        for e in list {
            let entry = io.entry((e.major, e.minor)).or_insert_with(|| v2::IOEntry {
                major: e.major,
                minor: e.minor,
                ..Default::default()
            });
            match (e.op.as_str(), bytes) {
                ("Read", true) => entry.rbytes = e.value,
                ("Write", true) => entry.wbytes = e.value,
                ("Read", false) => entry.rios = e.value,
                ("Write", false) => entry.wios = e.value,
                _ => {}
            }
        }
    }
    let usage = &stats.cpu.usage;
    let throttling = &stats.cpu.throttling;
    v2::Metrics {
        pids: MessageField::some(v2::PidsStat {
            current: stats.pids.current,
            limit: stats.pids.limit,
            ..Default::default()
        }),
        cpu: MessageField::some(v2::CPUStat {
            usage_usec: usage.total / 1000,
            user_usec: usage.user / 1000,
            system_usec: usage.kernel / 1000,
            nr_periods: throttling.periods,
            nr_throttled: throttling.throttled_periods,
            throttled_usec: throttling.throttled_time / 1000,
            ..Default::default()
        }),
        memory: MessageField::some(memory),
        io: MessageField::some(v2::IOStat {
            usage: io.into_values().collect(),
            ..Default::default()
        }),
        hugetlb: stats
            .hugetlb
            .iter()
            .map(|(size, h)| v2::HugeTlbStat {
                current: h.usage,
                max: h.max,
                failcnt: h.failcnt,
                pagesize: size.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::Message;

    fn sample() -> Stats {
        let mut stats = Stats::default();
        stats.pids.current = 2;
        stats.pids.limit = 100;
        stats.cpu.usage.total = 5_000_000;
        stats.cpu.usage.user = 3_000_000;
        stats.memory.usage.usage = 4096;
        stats.memory.usage.limit = 1 << 20;
        stats.memory.swap.usage = 4096 + 512;
        stats.memory.raw.insert("cache".into(), 7);
        stats.memory.raw.insert("anon".into(), 9);
        stats.blkio.io_service_bytes_recursive.push(BlkioEntry {
            major: 8,
            minor: 0,
            op: "Read".into(),
            value: 4096,
        });
        stats
    }

    #[test]
    fn v1_and_hybrid_hosts_get_v1_metrics() {
        let any = to_any(&sample(), Some(Layout::Hybrid));
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = v1::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.pids.current, 2);
        assert_eq!(m.pids.limit, 100);
        assert_eq!(m.memory.cache, 7);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.cpu.usage.total, 5_000_000);
        assert_eq!(m.blkio.io_service_bytes_recursive[0].value, 4096);
    }

    #[test]
    fn unified_hosts_get_v2_metrics() {
        let any = to_any(&sample(), Some(Layout::Unified));
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.pids.current, 2);
        assert_eq!(m.cpu.usage_usec, 5000);
        assert_eq!(m.cpu.user_usec, 3000);
        assert_eq!(m.memory.anon, 9);
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.memory.swap_usage, 512);
        assert_eq!(m.io.usage[0].rbytes, 4096);
    }
}
