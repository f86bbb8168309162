//! What the two attackers (`steal-exe`, `probe-procs`) share: the container's own programs, the
//! other processes /proc shows, opening a file with open(2), and the report they leave in DIR.

use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::Failure;

/// A file's identity: its device and inode.
pub fn identity(meta: &fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// The files the container's own processes run: busybox, and this helper.
pub fn own_programs() -> HashSet<(u64, u64)> {
    ["/bin/busybox", "/proc/self/exe"]
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| identity(&m))
        .collect()
}

/// The pids /proc shows now, but this process's.
pub fn other_pids() -> Result<Vec<String>, Failure> {
    let me = std::process::id().to_string();
    let entries = fs::read_dir("/proc").map_err(|e| Failure::io("/proc", e))?;
    Ok(entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| *name != me && name.bytes().all(|b| b.is_ascii_digit()))
        .collect())
}

/// open(2) with O_CLOEXEC added (and mode 0644 should FLAGS create the file).
pub fn open(path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let path = CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `path` is a valid C string; the mode is read only with O_CREAT.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Writes `DIR/report` at once (through a rename): `processes N`, then `LINE COUNT` for each
/// count.
pub fn write_report(
    dir: &Path,
    processes: u64,
    counts: &BTreeMap<String, u64>,
) -> Result<(), Failure> {
    let mut report = format!("processes {processes}\n");
    for (line, count) in counts {
        report += &format!("{line} {count}\n");
    }
    let tmp = dir.join("report.tmp");
    fs::write(&tmp, report).map_err(|e| Failure::io(tmp.display().to_string(), e))?;
    fs::rename(&tmp, dir.join("report")).map_err(|e| Failure::io("report", e))
}
