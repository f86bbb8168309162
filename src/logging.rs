//! Logging: `--log FILE`, `--log-format text|json` and `--debug`. With json, each line is one
//! object `{"level":"error","msg":"…","time":"RFC3339"}`, which containerd reads back. A line a
//! person reads on stderr names its level too (`berth: error: …`), as runc's `level=error` does:
//! tools that watch a runtime's stderr key on that word.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
        }
    }
}

struct Logger {
    file: Option<Mutex<File>>,
    format: Format,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets up logging once, from the global flags.
pub fn init(log: Option<&Path>, format: Format, debug: bool) -> std::io::Result<()> {
    let file = match log {
        Some(path) => Some(Mutex::new(
            File::options().create(true).append(true).open(path)?,
        )),
        None => None,
    };
    let _ = LOGGER.set(Logger {
        file,
        format,
        debug,
    });
    Ok(())
}

/// One log line in the chosen format, without the trailing newline.
pub fn format_line(format: Format, level: Level, msg: &str, time: &str) -> String {
    match format {
        Format::Json => {
            serde_json::json!({"level": level.name(), "msg": msg, "time": time}).to_string()
        }
        Format::Text => format!("time=\"{time}\" level={} msg={msg:?}", level.name()),
    }
}

/// Writes a message to the log file (or to stderr when there is none). Debug messages appear
/// only under `--debug`.
pub fn log(level: Level, msg: &str) {
    let Some(logger) = LOGGER.get() else {
        if level >= Level::Warn {
            eprintln!("{}", stderr_line(level, msg));
        }
        return;
    };
    if level == Level::Debug && !logger.debug {
        return;
    }
    let line = format_line(logger.format, level, msg, &rfc3339_now());
    match &logger.file {
        Some(file) => {
            if let Ok(mut file) = file.lock() {
                let _ = writeln!(file, "{line}");
            }
        }
        None if level >= Level::Warn || logger.debug => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
        None => {}
    }
}

/// The log file's descriptor, if there is one: a process forked off to work on once berth has
/// exited (the network cleaner) keeps it, and closes every other it inherited.
pub fn file_descriptor() -> Option<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    let file = LOGGER.get()?.file.as_ref()?.lock().ok()?;
    Some(file.as_raw_fd())
}

/// A line for the log file only (never stderr): what a command did, so that an engine's
/// `--log` shows every container berth made and removed, not only failures.
pub fn info(msg: &str) {
    log(Level::Info, msg);
}

pub fn warn(msg: &str) {
    log(Level::Warn, msg);
}

pub fn debug(msg: &str) {
    log(Level::Debug, msg);
}

/// Reports the command's failure: a JSON line in the log under `--log-format json`, and one
/// plain sentence on stderr for the person at the terminal.
pub fn report_error(msg: &str) {
    let logger = LOGGER.get();
    if let Some(Logger {
        file: Some(file),
        format,
        ..
    }) = logger
    {
        if let Ok(mut file) = file.lock() {
            let _ = writeln!(
                file,
                "{}",
                format_line(*format, Level::Error, msg, &rfc3339_now())
            );
        }
    }
    match logger {
        Some(Logger {
            file: None,
            format: Format::Json,
            ..
        }) => {
            let _ = writeln!(
                std::io::stderr(),
                "{}",
                format_line(Format::Json, Level::Error, msg, &rfc3339_now())
            );
        }
        _ => eprintln!("{}", stderr_line(Level::Error, msg)),
    }
}

/// The plain line for a person at the terminal: `berth: error: container "x" does not exist`.
pub fn stderr_line(level: Level, msg: &str) -> String {
    format!("berth: {}: {msg}", level.name())
}

/// The current time in UTC as RFC 3339, with nanoseconds, as Go's time format gives it.
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(
            rfc3339(1_795_910_400 + 3_723, 0),
            "2026-11-29T01:02:03.000000000Z"
        );
    }

    #[test]
    fn lines_for_people_say_their_level() {
        assert_eq!(
            stderr_line(Level::Error, "container \"x\" does not exist"),
            "berth: error: container \"x\" does not exist"
        );
        assert_eq!(
            stderr_line(Level::Warn, "poststop hook failed"),
            "berth: warning: poststop hook failed"
        );
        let text = format_line(Format::Text, Level::Error, "gone", "T");
        assert_eq!(text, "time=\"T\" level=error msg=\"gone\"");
    }

    #[test]
    fn json_lines_are_what_containerd_reads() {
        let line = format_line(
            Format::Json,
            Level::Error,
            "container \"x\" does not exist",
            "T",
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["level"], "error");
        assert_eq!(value["msg"], "container \"x\" does not exist");
        assert_eq!(value["time"], "T");
    }
}
