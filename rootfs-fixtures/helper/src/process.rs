//! Subcommands that control the process itself: exit statuses, sleeping, signals, memory, forks.

use crate::{format, names, Failure, Outcome};
use std::{io, mem, ptr, thread};

pub fn succeed(args: &[String]) -> Outcome {
    no_arguments(args)?;
    Ok(0)
}

pub fn fail(args: &[String]) -> Outcome {
    no_arguments(args)?;
    Ok(1)
}

pub fn exit(args: &[String]) -> Outcome {
    let [status] = args else {
        return Err(Failure::Usage);
    };
    let status: u8 = status.parse().map_err(|_| Failure::Usage)?;
    Ok(i32::from(status))
}

pub fn echo(args: &[String]) -> Outcome {
    println!("{}", args.join(" "));
    Ok(0)
}

pub fn sleep(args: &[String]) -> Outcome {
    let [seconds] = args else {
        return Err(Failure::Usage);
    };
    thread::sleep(format::parse_seconds(seconds).ok_or(Failure::Usage)?);
    Ok(0)
}

/// Prints `pausing`, then waits for SIGTERM, SIGINT, SIGUSR1 or SIGHUP and prints its name.
pub fn pause(args: &[String]) -> Outcome {
    no_arguments(args)?;
    let signal = wait_for_signal(
        &[libc::SIGTERM, libc::SIGINT, libc::SIGUSR1, libc::SIGHUP],
        "pausing",
    )?;
    println!("{}", names::signal_name(signal));
    Ok(0)
}

/// Blocks `signals`, prints `ready_line`, and returns the first of them to arrive.
///
/// Blocked signals are queued even for a PID namespace's init, which drops signals it has no
/// handler for; and blocking them before saying we are ready means none can be missed.
pub fn wait_for_signal(signals: &[libc::c_int], ready_line: &str) -> Result<libc::c_int, Failure> {
    // SAFETY: sigset_t is plain data, and sigemptyset initialises it before any other use.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame.
    unsafe {
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
    }
    // SAFETY: `set` is initialised; the old mask is not wanted.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, ptr::null_mut()) } != 0 {
        return Err(Failure::last_os("sigprocmask"));
    }
    println!("{ready_line}");
    let mut received = 0;
    // SAFETY: `set` is initialised and `received` is a valid place for the signal number.
    let status = unsafe { libc::sigwait(&set, &mut received) };
    if status != 0 {
        return Err(Failure::io("sigwait", io::Error::from_raw_os_error(status)));
    }
    Ok(received)
}

/// Allocates MIB mebibytes and writes to every byte, so the memory is really charged to us.
pub fn alloc(args: &[String]) -> Outcome {
    let [mebibytes] = args else {
        return Err(Failure::Usage);
    };
    let mebibytes: usize = mebibytes.parse().map_err(|_| Failure::Usage)?;
    let bytes = mebibytes.checked_mul(1 << 20).ok_or(Failure::Usage)?;
    let buffer = vec![1u8; bytes];
    // Keeps the compiler from skipping the writes to memory nobody reads.
    std::hint::black_box(&buffer);
    println!("allocated {mebibytes}");
    Ok(0)
}

/// Forks up to N children that sleep, stopping at the first error; prints
/// `forked=COUNT error=ERRNO|none`, kills and reaps the children, and exits 0 only if all N forked.
pub fn fork(args: &[String]) -> Outcome {
    let [count] = args else {
        return Err(Failure::Usage);
    };
    let count: usize = count.parse().map_err(|_| Failure::Usage)?;
    let mut children = Vec::with_capacity(count);
    let mut first_error = None;
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    while children.len() < count {
        // SAFETY: this process has a single thread, and the child only makes async-signal-safe
        // calls before it is killed.
        match unsafe { libc::fork() } {
            -1 => {
                first_error = io::Error::last_os_error().raw_os_error();
                break;
            }
            0 => sleep_until_killed(parent),
            child => children.push(child),
        }
    }
    for &child in &children {
        // SAFETY: `child` is our own child, still unreaped, so its pid cannot have been reused.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, ptr::null_mut(), 0);
        }
    }
    let error = first_error.map_or("none".to_string(), names::errno_name);
    println!("forked={} error={error}", children.len());
    Ok(if first_error.is_none() { 0 } else { 1 })
}

fn sleep_until_killed(parent: libc::pid_t) -> ! {
    // SAFETY: prctl, getppid, _exit and pause touch no memory of ours. The parent-death signal
    // keeps the child from outliving the helper even if the helper is killed first; the getppid
    // check covers a parent that died before the prctl.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        loop {
            libc::pause();
        }
    }
}

pub fn no_arguments(args: &[String]) -> Result<(), Failure> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(Failure::Usage)
    }
}
