//! seccomp: compiles `linux.seccomp` into a BPF filter (our own compiler, no libseccomp),
//! installs it in the container's process, and hands a SCMP_ACT_NOTIFY listener to the agent.
//!
//! The runtime calls [`compile`] at create time, before any process exists, so a bad profile fails
//! early; the container's init (or exec) calls [`install`] right before execve; the runtime then
//! passes a notify listener to `listenerPath` with [`send_to_listener`].
//!
//! The filter follows libseccomp where the runtime spec is silent: the native architecture is
//! always handled; a syscall of an architecture the filter does not handle kills the process;
//! a rule whose action equals the default is dropped (as runc does); for one syscall the first
//! unconditional rule wins, otherwise its conditional rules are tried in profile order; arguments
//! are compared on 64 bits, or on their low 32 bits for the x86 and x32 ABIs.
//!
//! Syscall names resolve through tables generated from Debian's newest kernel headers
//! (`gen-syscall-table.sh`). As runc does, under a default that denies, every syscall number
//! above the highest the profile names gets ENOSYS, so programs built for newer kernels fall back
//! as glibc does on older ones. A name of another architecture is skipped; a name no Linux berth
//! knows has (newer than its tables, or mistyped) is refused where its rule would restrict a
//! syscall the default allows (berth could not apply it), and otherwise reported as a warning —
//! where runc ignores it silently.

mod bpf;
mod compile;
#[cfg(test)]
mod kernel_tests;
mod syscall_table;

use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::{
    ContainerProcessState, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag,
    SECCOMP_FD_NAME,
};

/// A compiled seccomp filter, ready to install.
pub struct Filter {
    program: Vec<libc::sock_filter>,
    /// Flags for seccomp(2), NEW_LISTENER included when a rule notifies.
    flags: libc::c_ulong,
    has_notify: bool,
    /// Syscall names of the profile that no Linux berth knows has, sorted.
    unknown: Vec<String>,
}

impl Filter {
    /// Whether a rule uses SCMP_ACT_NOTIFY, so that [`install`] returns a listener that the
    /// runtime must pass to `listenerPath`.
    pub fn has_notify(&self) -> bool {
        self.has_notify
    }

    /// A warning naming the profile's syscalls that berth's tables hold on no architecture
    /// (newer than they, or mistyped), if any: their rules cannot apply, so those syscalls keep
    /// the default action (ENOSYS when above the profile's highest). runc ignores such names
    /// silently; under a default that allows, `compile` refuses them instead.
    pub fn unknown_names_warning(&self) -> Option<String> {
        (!self.unknown.is_empty()).then(|| {
            format!(
                "linux.seccomp names syscalls berth does not know (its tables are from Linux {}): \
                 {}; they keep the default action",
                syscall_table::LINUX,
                self.unknown.join(", ")
            )
        })
    }

    /// Whether the filter lets syscall `nr` with `args`, made on this machine's architecture,
    /// through, as the kernel would run it: allowed, allowed and logged, or left to the seccomp
    /// agent (SCMP_ACT_NOTIFY), which decides it as it decides the container's own calls. berth
    /// asks before it relies on a syscall that a process makes after its filter is in.
    pub fn allows(&self, nr: libc::c_long, args: [u64; 6]) -> bool {
        // struct seccomp_data: nr, arch, instruction_pointer, args[6].
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as u32).to_ne_bytes());
        data[4..8].copy_from_slice(&compile::native_audit().to_ne_bytes());
        for (i, arg) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_ne_bytes());
        }
        const ACTION: u32 = 0xffff_0000;
        matches!(
            bpf::run(&self.program, &data).map(|action| action & ACTION),
            Some(libc::SECCOMP_RET_ALLOW | libc::SECCOMP_RET_LOG | libc::SECCOMP_RET_USER_NOTIF)
        )
    }

    /// The number of BPF instructions.
    pub fn instructions(&self) -> usize {
        self.program.len()
    }
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("has_notify", &self.has_notify)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("linux.seccomp.{field} is {value}, more than 65535")]
    ErrnoRange { field: String, value: u32 },
    #[error("linux.seccomp.{field} is set, but {action} takes no errno")]
    ErrnoNotAllowed {
        field: String,
        action: LinuxSeccompAction,
    },
    #[error("linux.seccomp.defaultAction cannot be SCMP_ACT_NOTIFY")]
    NotifyDefault,
    #[error(
        "linux.seccomp.syscalls[{index}] restricts {name:?}, a syscall berth does not know \
         (its tables are from Linux {linux}), so it cannot be applied"
    )]
    UnknownRestricted {
        index: usize,
        name: String,
        linux: &'static str,
    },
    #[error("linux.seccomp.syscalls[{index}].names is empty")]
    NoNames { index: usize },
    #[error("linux.seccomp.syscalls[{syscall}].args[{arg}].index is {value}, more than 5")]
    ArgIndex {
        syscall: usize,
        arg: usize,
        value: usize,
    },
    #[error("linux.seccomp.listenerPath is not set, but a rule uses SCMP_ACT_NOTIFY")]
    NotifyWithoutListener,
    #[error(
        "linux.seccomp.syscalls[{index}] gives sendmsg to the seccomp agent (SCMP_ACT_NOTIFY), \
         but berth hands the agent its listener with sendmsg from under the filter: the \
         container would wait for an agent that never gets it"
    )]
    NotifySendmsg { index: usize },
    #[error("linux.seccomp.listenerMetadata is set without listenerPath")]
    MetadataWithoutListener,
    #[error("linux.seccomp.flags: this kernel does not support {flag}")]
    FlagUnsupported { flag: LinuxSeccompFilterFlag },
    #[error("the seccomp filter has {instructions} instructions, more than the kernel's 4096")]
    TooLarge { instructions: usize },
    #[error("installing the seccomp filter: {0}")]
    Install(Errno),
    #[error("installing the seccomp filter: thread {tid} could not be synchronized (TSYNC)")]
    ThreadSync { tid: i64 },
    #[error("encoding the container process state for the seccomp listener: {0}")]
    StateJson(#[from] serde_json::Error),
    #[error("sending the seccomp listener to {}: {source}", path.display())]
    SendListener {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Compiles `linux.seccomp`: checks the profile, resolves syscall names for each architecture
/// (names an architecture lacks are skipped; see the module's comment for unknown ones) and
/// generates the BPF program, with ENOSYS above the profile's highest syscall.
pub fn compile(spec: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    compile::compile(spec)
}

/// The architectures whose syscalls a filter can name: those with a syscall table.
pub fn architectures() -> Vec<oci_spec::runtime::Arch> {
    compile::TABLES.iter().map(|t| t.arch).collect()
}

/// Whether this kernel takes `flag` (for `features`' supportedFlags).
pub fn flag_supported(flag: LinuxSeccompFilterFlag) -> bool {
    use LinuxSeccompFilterFlag as F;
    compile::kernel_accepts(match flag {
        F::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
        F::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
        F::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        F::SeccompFilterFlagWaitKillableRecv => {
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        }
    })
}

/// Installs the filter in the calling thread (all threads with TSYNC). Allocates nothing, so it is
/// safe between fork and exec. Needs no_new_privs or CAP_SYS_ADMIN. Returns the notify listener
/// when the filter has SCMP_ACT_NOTIFY rules.
pub fn install(filter: &Filter) -> Result<Option<OwnedFd>, SeccompError> {
    let program = libc::sock_fprog {
        // compile keeps programs within the kernel's 4096 instructions.
        len: filter.program.len() as u16,
        filter: filter.program.as_ptr().cast_mut(),
    };
    // SAFETY: `program` points at `filter.program`, alive for the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            filter.flags,
            &program as *const libc::sock_fprog,
        )
    };
    if rc < 0 {
        return Err(SeccompError::Install(Errno::last()));
    }
    if filter.has_notify {
        // SAFETY: with NEW_LISTENER the kernel returns a new fd that nothing else owns.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as i32) }));
    }
    if rc > 0 {
        // TSYNC without ESRCH reports a thread it could not synchronize by its id.
        return Err(SeccompError::ThreadSync { tid: rc });
    }
    Ok(None)
}

/// Sends the notify listener to the seccomp agent at `path`, as the runtime spec says: one
/// connection to a SOCK_STREAM unix socket carrying the container process state as JSON, with
/// `fds` set to `["seccompFd"]`, `metadata` to `listenerMetadata` (left out when empty), and the
/// listener passed with SCM_RIGHTS in the first sendmsg; then the connection is closed.
pub fn send_to_listener(
    path: &Path,
    metadata: &str,
    state: &ContainerProcessState,
    fd: BorrowedFd,
) -> Result<(), SeccompError> {
    let mut message = state.clone();
    message.set_fds(vec![SECCOMP_FD_NAME.to_string()]);
    message.set_metadata((!metadata.is_empty()).then(|| metadata.to_string()));
    let payload = serde_json::to_vec(&message)?;
    let failed = |source| SeccompError::SendListener {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(failed)?;
    let fds = [fd.as_raw_fd()];
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(&payload)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|errno| failed(errno.into()))?;
    stream.write_all(&payload[sent..]).map_err(failed)?;
    Ok(())
}
