//! Subcommands that report what the runtime set up: identity, privileges, limits, namespaces,
//! descriptors and the terminal.

use crate::files::{copy_to_stdout, list_names};
use crate::process::{no_arguments, wait_for_signal};
use crate::{format, names, Failure, Outcome};
use std::ffi::CStr;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::{env, fs, mem, ptr};

const STATUS: &str = "/proc/self/status";

/// The value of `key` in /proc/self/status.
fn status_field(key: &str) -> Result<String, Failure> {
    let status = fs::read_to_string(STATUS).map_err(|error| Failure::io(STATUS, error))?;
    match format::status_field(&status, key) {
        Some(value) => Ok(value.to_string()),
        None => Err(Failure::io(
            format!("{STATUS} field {key}"),
            io::Error::new(io::ErrorKind::NotFound, "missing"),
        )),
    }
}

/// Prints `KEY=VALUE` for each of `keys` in /proc/self/status.
fn print_status_fields(args: &[String], keys: &[&str]) -> Outcome {
    no_arguments(args)?;
    for key in keys {
        println!("{key}={}", status_field(key)?);
    }
    Ok(0)
}

pub fn ids(args: &[String]) -> Outcome {
    no_arguments(args)?;
    // SAFETY: these calls only read the calling process's credentials.
    let (uid, gid, euid, egid) = unsafe {
        (
            libc::getuid(),
            libc::getgid(),
            libc::geteuid(),
            libc::getegid(),
        )
    };
    // SAFETY: with a size of zero getgroups writes nothing and returns the count.
    let count = unsafe { libc::getgroups(0, ptr::null_mut()) };
    let mut groups = vec![0; usize::try_from(count).map_err(|_| Failure::last_os("getgroups"))?];
    // SAFETY: `groups` has room for exactly `count` entries.
    let filled = unsafe { libc::getgroups(count, groups.as_mut_ptr()) };
    groups.truncate(usize::try_from(filled).map_err(|_| Failure::last_os("getgroups"))?);
    println!("{}", format::ids(uid, gid, euid, egid, &groups));
    Ok(0)
}

pub fn caps(args: &[String]) -> Outcome {
    print_status_fields(args, &["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"])
}

/// Prints `true` and exits 0 if the capability is effective, else prints `false` and exits 1.
pub fn has_cap(args: &[String]) -> Outcome {
    let [name] = args else {
        return Err(Failure::Usage);
    };
    let number = names::capability_number(name).ok_or(Failure::Usage)?;
    let effective = status_field("CapEff")?;
    let has = format::hex_mask_has_bit(&effective, number).ok_or_else(|| {
        Failure::io(
            format!("{STATUS} field CapEff"),
            io::Error::new(io::ErrorKind::InvalidData, effective.clone()),
        )
    })?;
    println!("{has}");
    Ok(if has { 0 } else { 1 })
}

pub fn no_new_privs(args: &[String]) -> Outcome {
    no_arguments(args)?;
    println!("{}", status_field("NoNewPrivs")?);
    Ok(0)
}

pub fn seccomp(args: &[String]) -> Outcome {
    no_arguments(args)?;
    println!("{}", status_field("Seccomp")?);
    Ok(0)
}

pub fn signals(args: &[String]) -> Outcome {
    print_status_fields(args, &["SigBlk", "SigIgn", "SigCgt"])
}

pub fn env(args: &[String]) -> Outcome {
    no_arguments(args)?;
    let mut out = io::stdout().lock();
    for (key, value) in env::vars_os() {
        let line = [key.as_bytes(), b"=", value.as_bytes(), b"\n"].concat();
        out.write_all(&line)
            .map_err(|error| Failure::io("stdout", error))?;
    }
    Ok(0)
}

pub fn cwd(args: &[String]) -> Outcome {
    no_arguments(args)?;
    let cwd = env::current_dir().map_err(|error| Failure::io("getcwd", error))?;
    println!("{}", cwd.display());
    Ok(0)
}

/// Prints `hostname=NAME` and `domainname=NAME` (the kernel's `(none)` when unset).
pub fn hostname(args: &[String]) -> Outcome {
    no_arguments(args)?;
    // SAFETY: utsname is plain data that uname fills in.
    let mut names: libc::utsname = unsafe { mem::zeroed() };
    // SAFETY: `names` is a valid utsname owned by this frame.
    if unsafe { libc::uname(&mut names) } != 0 {
        return Err(Failure::last_os("uname"));
    }
    // SAFETY: the kernel NUL-terminates both fields, and the zeroed buffer ends in NUL anyway.
    let (host, domain) = unsafe {
        (
            CStr::from_ptr(names.nodename.as_ptr()),
            CStr::from_ptr(names.domainname.as_ptr()),
        )
    };
    println!("hostname={}", host.to_string_lossy());
    println!("domainname={}", domain.to_string_lossy());
    Ok(0)
}

pub fn umask(args: &[String]) -> Outcome {
    no_arguments(args)?;
    // SAFETY: umask cannot fail; the second call puts the original mask back.
    let mask = unsafe {
        let mask = libc::umask(0);
        libc::umask(mask);
        mask
    };
    println!("{}", format::permissions(mask));
    Ok(0)
}

/// Prints `RLIMIT_NAME SOFT HARD` for every resource limit.
pub fn rlimits(args: &[String]) -> Outcome {
    no_arguments(args)?;
    for (name, resource) in names::RLIMITS {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid rlimit for getrlimit to fill in.
        if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
            return Err(Failure::last_os(format!("getrlimit {name}")));
        }
        let (soft, hard) = (format::limit(limit.rlim_cur), format::limit(limit.rlim_max));
        println!("{name} {soft} {hard}");
    }
    Ok(0)
}

pub fn oom_score_adj(args: &[String]) -> Outcome {
    no_arguments(args)?;
    let path = "/proc/self/oom_score_adj";
    let value = fs::read_to_string(path).map_err(|error| Failure::io(path, error))?;
    println!("{}", value.trim());
    Ok(0)
}

pub fn mounts(args: &[String]) -> Outcome {
    no_arguments(args)?;
    copy_to_stdout("/proc/self/mountinfo")
}

pub fn cgroup(args: &[String]) -> Outcome {
    no_arguments(args)?;
    copy_to_stdout("/proc/self/cgroup")
}

/// Prints `NAME -> TARGET` for each entry of /proc/self/ns, sorted by name.
pub fn namespaces(args: &[String]) -> Outcome {
    no_arguments(args)?;
    let directory = "/proc/self/ns";
    let mut names = list_names(directory)?;
    names.sort();
    for name in names {
        let path = format!("{directory}/{name}");
        let target = fs::read_link(&path).map_err(|error| Failure::io(path, error))?;
        println!("{name} -> {}", target.display());
    }
    Ok(0)
}

pub fn pid(args: &[String]) -> Outcome {
    no_arguments(args)?;
    // SAFETY: getpid and getppid have no preconditions.
    let (pid, parent) = unsafe { (libc::getpid(), libc::getppid()) };
    println!("pid={pid} ppid={parent}");
    Ok(0)
}

/// Prints `FD -> TARGET` for each open descriptor, in numeric order.
pub fn fds(args: &[String]) -> Outcome {
    no_arguments(args)?;
    let directory = "/proc/self/fd";
    let mut numbers: Vec<u32> = list_names(directory)?
        .iter()
        .filter_map(|name| name.parse().ok())
        .collect();
    numbers.sort_unstable();
    // The descriptor that listed the directory is closed by now, so it no longer resolves and is
    // left out; every other one still does.
    for number in numbers {
        if let Ok(target) = fs::read_link(format!("{directory}/{number}")) {
            println!("{number} -> {}", target.display());
        }
    }
    Ok(0)
}

/// Prints `true` and exits 0 if FD (default 0) is a terminal, else prints `false` and exits 1.
pub fn isatty(args: &[String]) -> Outcome {
    let fd = match args {
        [] => 0,
        [fd] => fd.parse().map_err(|_| Failure::Usage)?,
        _ => return Err(Failure::Usage),
    };
    // SAFETY: isatty only inspects the descriptor number, open or not.
    let is_terminal = unsafe { libc::isatty(fd) } == 1;
    println!("{is_terminal}");
    Ok(if is_terminal { 0 } else { 1 })
}

/// Prints `ROWS COLS` of stdin's terminal, like `stty size`.
pub fn winsize(args: &[String]) -> Outcome {
    no_arguments(args)?;
    print_window_size()
}

/// Prints `waiting`, then waits for SIGWINCH and prints the new `ROWS COLS`.
pub fn wait_winch(args: &[String]) -> Outcome {
    no_arguments(args)?;
    wait_for_signal(&[libc::SIGWINCH], "waiting")?;
    print_window_size()
}

fn print_window_size() -> Outcome {
    // SAFETY: winsize is plain data that the ioctl fills in.
    let mut size: libc::winsize = unsafe { mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize to the pointer, which is valid.
    if unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut size) } != 0 {
        return Err(Failure::last_os("TIOCGWINSZ on stdin"));
    }
    println!("{} {}", size.ws_row, size.ws_col);
    Ok(0)
}
