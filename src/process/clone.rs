//! Making the container's process: clone3 straight from berth (no re-execution of the binary),
//! falling back to clone on kernels without clone3.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Which side of a clone this is.
#[derive(Debug, PartialEq, Eq)]
pub enum Cloned {
    Child,
    /// The parent, with the child's pid, and whether the child was born in the cgroup asked for.
    Parent {
        pid: Pid,
        in_cgroup: bool,
    },
}

/// Whether the kernel clones straight into a cgroup (Linux 5.7 and later).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Makes the calling process non-dumpable, which its clones inherit, and which lasts until they
/// execve the container's program (a process whose credentials change may become dumpable again
/// when `fs.suid_dumpable` is 1: the init calls this again after each change).
///
/// This is berth's first protection against CVE-2019-5736. A container's process is a clone of
/// berth, so until its execve `/proc/PID/exe` is berth's own binary, and `/proc/PID/{fd,root,cwd}`
/// are berth's descriptors and the host's root. Once the init has dropped to the container's user
/// and capabilities, every process of the container may ptrace-read it, so could open berth for
/// writing through that link (or keep an O_PATH descriptor and reopen it once berth is no longer
/// running, which ETXTBSY does not stop). The kernel lets no one but a holder of CAP_SYS_PTRACE
/// over berth's user namespace resolve those links of a non-dumpable process (EACCES). Where a
/// process holding it could see berth's, berth starts them from a sealed view of its binary
/// instead (`container::exposure` decides, `process::seal` does it).
pub fn undumpable() -> Result<(), Errno> {
    nix::sys::prctl::set_dumpable(false)
}

/// Clones the calling process with `flags` (namespace flags, and CLONE_PARENT), straight into the
/// cgroup2 directory `cgroup` where the kernel can. The caller becomes non-dumpable first, so the
/// child is never dumpable while it runs berth's code (see [`undumpable`]).
///
/// The caller must be single-threaded: the child is a copy of this process and goes on running
/// Rust code (berth never starts threads).
pub fn clone(flags: CloneFlags, cgroup: Option<BorrowedFd>) -> Result<Cloned, Errno> {
    if let Some(cgroup) = cgroup {
        if let Some(cloned) = clone_into(flags, cgroup)? {
            return Ok(cloned);
        }
    }
    undumpable()?;
    let args = clone3::CloneArgs {
        flags: flags.bits() as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    // SAFETY: no stack is given, so the child runs on a copy of our address space like fork;
    // the argument struct outlives the call.
    let mut rc = unsafe { clone3::clone3_system_call(&args) };
    if rc == -1 && Errno::last() == Errno::ENOSYS {
        // SAFETY: clone with a null stack behaves like fork; SIGCHLD is the exit signal.
        rc = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags.bits() | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
    }
    match rc {
        -1 => Err(Errno::last()),
        0 => Ok(Cloned::Child),
        pid => Ok(Cloned::Parent {
            pid: Pid::from_raw(pid as i32),
            in_cgroup: false,
        }),
    }
}

/// Clones straight into the cgroup2 directory `cgroup`, non-dumpable, as [`clone`] does;
/// `Ok(None)` when the kernel cannot (before Linux 5.7), and no process was made.
pub fn clone_into(flags: CloneFlags, cgroup: BorrowedFd) -> Result<Option<Cloned>, Errno> {
    undumpable()?;
    let args = clone3::CloneArgs {
        flags: flags.bits() as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: no stack is given, so the child runs on a copy of our address space like fork;
    // the argument struct outlives the call.
    match unsafe { clone3::clone3_system_call(&args) } {
        0 => Ok(Some(Cloned::Child)),
        -1 => match Errno::last() {
            // Kernels before 5.7 do not know the flag or the larger struct.
            Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL => Ok(None),
            errno => Err(errno),
        },
        pid => Ok(Some(Cloned::Parent {
            pid: Pid::from_raw(pid as i32),
            in_cgroup: true,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_without_namespaces_behaves_like_fork() {
        match clone(CloneFlags::empty(), None).unwrap() {
            Cloned::Child => {
                // SAFETY: leave the child at once, without running the test harness's destructors.
                unsafe { libc::_exit(42) }
            }
            Cloned::Parent { pid, in_cgroup } => {
                assert!(!in_cgroup);
                let status = nix::sys::wait::waitpid(pid, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 42));
            }
        }
    }

    #[test]
    fn clones_are_born_non_dumpable() {
        match clone(CloneFlags::empty(), None).unwrap() {
            Cloned::Child => {
                let code = match nix::sys::prctl::get_dumpable() {
                    Ok(false) => 0,
                    _ => 1,
                };
                // SAFETY: leave the child at once, without running the test harness's destructors.
                unsafe { libc::_exit(code) }
            }
            Cloned::Parent { pid, .. } => {
                let status = nix::sys::wait::waitpid(pid, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 0));
            }
        }
    }
}
