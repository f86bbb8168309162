//! A container's resource figures, in the JSON shape of runc's `events --stats` (runc's
//! `types/events.go`), which containerd's shim and Docker read.

use std::collections::BTreeMap;

use serde::Serialize;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// Nanoseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// Bytes. A limit of "max" is `u64::MAX`, as runc reports it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as it is.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0 when unlimited.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// v1's `blkio.throttle.io_service_bytes_recursive` lines: `8:0 Read 4096`; the `Total` lines
/// are left out, as runc does.
pub fn parse_v1_blkio(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (major, minor) = fields.next()?.split_once(':')?;
            let op = fields.next()?.to_string();
            let value = fields.next()?.parse().ok()?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op,
                value,
            })
        })
        .collect()
}

/// v2's `io.stat` lines, `8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0`, as the
/// (bytes, operations) entries runc reports.
pub fn parse_v2_io(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse() else {
                continue;
            };
            let (list, op) = match key {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    (bytes, ios)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_lines_parse() {
        let v1 = parse_v1_blkio("8:0 Read 4096\n8:0 Write 0\n8:0 Total 4096\nTotal 4096\n");
        assert_eq!(v1.len(), 3);
        assert_eq!(
            v1[0],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 4096
            }
        );
        let (bytes, ios) =
            parse_v2_io("254:0 rbytes=8192 wbytes=512 rios=2 wios=1 dbytes=0 dios=0\n");
        assert_eq!(bytes.len(), 2);
        assert_eq!(bytes[1].op, "Write");
        assert_eq!(bytes[1].value, 512);
        assert_eq!(ios[0].value, 2);
    }

    #[test]
    fn the_json_has_runcs_names() {
        let mut stats = Stats::default();
        stats.memory.usage.usage = 4096;
        stats.memory.usage.limit = 33_554_432;
        stats.cpu.throttling.throttled_periods = 3;
        stats.pids.current = 2;
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["memory"]["usage"]["usage"], 4096);
        assert_eq!(json["memory"]["usage"]["limit"], 33_554_432);
        assert_eq!(json["memory"]["swap"]["failcnt"], 0);
        assert!(json["memory"]["kernelTCP"].is_object());
        assert_eq!(json["cpu"]["throttling"]["throttledPeriods"], 3);
        assert_eq!(json["cpu"]["usage"]["kernel"], 0);
        assert_eq!(json["pids"]["current"], 2);
        assert!(json["hugetlb"].is_object());
    }
}
