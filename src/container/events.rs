//! `events`: a container's resource figures and OOM kills as runc's JSON events
//! (`{"type":"stats","id":ID,"data":{...}}`, `{"type":"oom","id":ID}`), once or every interval
//! until the container stops.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{status, ContainerError};
use crate::state::{Root, Status};

/// One event, written as runc writes it: `type`, `id`, then `data`, in that order (readers such
/// as runc's own tests match a line by that beginning).
#[derive(Debug, serde::Serialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl std::fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = serde_json::to_string(self).map_err(|_| std::fmt::Error)?;
        f.write_str(&line)
    }
}

/// Emits a stats event now (`once`), or stats every `interval` and an oom event whenever the
/// OOM killer strikes, until the container stops or is deleted, or `emit` returns false.
pub fn watch(
    root: &Root,
    id: &str,
    interval: Duration,
    once: bool,
    mut emit: impl FnMut(Event) -> bool,
) -> Result<(), ContainerError> {
    let state = root.read_state(id)?;
    let dir = root.container_dir(id);
    if status(&state, &dir) == Status::Stopped {
        return Err(ContainerError::NotRunning { id: id.into() });
    }
    let manager = crate::cgroups::manager(&state.cgroup);
    let stats_event = || -> Result<Event, ContainerError> {
        let stats = manager.stats()?;
        Ok(Event {
            kind: "stats",
            id,
            data: serde_json::to_value(stats).ok(),
        })
    };
    if once {
        emit(stats_event()?);
        return Ok(());
    }
    let mut oom_kills = manager.oom_kills();
    let mut next_stats = Instant::now();
    let tick = interval.min(Duration::from_millis(100));
    loop {
        let kills = manager.oom_kills();
        if kills > oom_kills {
            let oom = Event {
                kind: "oom",
                id,
                data: None,
            };
            if !emit(oom) {
                return Ok(());
            }
            oom_kills = kills;
        }
        if !dir.exists() || status(&state, &dir) == Status::Stopped {
            return Ok(());
        }
        if Instant::now() >= next_stats {
            if !emit(stats_event()?) {
                return Ok(());
            }
            next_stats += interval;
        }
        std::thread::sleep(tick);
    }
}

/// A duration as Go writes them (runc's `--interval`): `5s`, `100ms`, `1m30s`, `1.5h`.
pub fn parse_duration(text: &str) -> Result<Duration, ContainerError> {
    let bad = || ContainerError::BadValue {
        what: "duration",
        value: text.to_string(),
        expected: "a number with a unit: ns, us, ms, s, m or h (e.g. 5s)",
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| bad())?;
        let unit_end = rest[number_end..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .map_or(rest.len(), |i| number_end + i);
        let seconds = match &rest[number_end..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    if total <= 0.0 || !total.is_finite() {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_keep_runcs_field_order() {
        let oom = Event {
            kind: "oom",
            id: "web",
            data: None,
        };
        assert_eq!(oom.to_string(), r#"{"type":"oom","id":"web"}"#);
        let stats = Event {
            kind: "stats",
            id: "web",
            data: Some(serde_json::json!({"pids": {"current": 1}})),
        };
        assert_eq!(
            stats.to_string(),
            r#"{"type":"stats","id":"web","data":{"pids":{"current":1}}}"#
        );
    }

    #[test]
    fn durations_parse_like_gos() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(
            parse_duration("5x").unwrap_err().to_string(),
            "\"5x\" is not a valid duration: expected a number with a unit: ns, us, ms, s, m or h (e.g. 5s)"
        );
    }
}
