//! The calls that make or end processes (create, start, exec, delete) run in a helper: a fork of
//! the shim, without exec, that calls berth's library as `berth create` would and exits.
//!
//! Why not in the shim itself: the shim has threads (ttrpc's, the reaper's), and berth clones the
//! container's first process from the calling process, which must then be single-threaded: a
//! clone inherits only the calling thread, and with it any lock another thread held at that
//! moment. libc's fork resets malloc's locks in the child, the helper takes no lock of the shim's
//! threads (it logs through berth's own log file, never the shim's logger), and being a process
//! of its own it can put the container's stdio on its descriptors 0, 1 and 2 as berth's init
//! expects. The processes it starts (the init, an exec'd process, hooks) are its children; when
//! it exits, those still alive pass to the shim, a subreaper, which reaps them and reports their
//! exit. Hooks and `nft`, which the library waits for itself, stay the helper's to reap: the
//! shim's reaper, which takes every child it has, never races the library for them.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use berth::container::{self, ContainerError, CreateOptions, ExecOptions};
use berth::state::{Root, StateError};
use containerd_shim::protos::protobuf::Enum;
use containerd_shim::protos::ttrpc::Code;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::unistd::{fork, ForkResult};

use crate::mounts::Mount;

/// One call of the library, with what it needs.
pub enum Call<'a> {
    /// Mount the root filesystem containerd gave (if any), then create the container.
    Create {
        root: &'a Root,
        opts: CreateOptions,
        rootfs: &'a [Mount],
    },
    Start {
        root: &'a Root,
        id: &'a str,
    },
    Exec {
        root: &'a Root,
        opts: ExecOptions,
    },
    /// Delete the container, then unmount its root filesystem if the shim mounted it.
    Delete {
        root: &'a Root,
        id: &'a str,
        force: bool,
        rootfs: Option<PathBuf>,
    },
}

/// What a call gives back: the pid it started (0 for none) and a pty master it kept.
pub struct Reply {
    pub pid: i32,
    pub console: Option<OwnedFd>,
}

/// A failed call: containerd's error code for it and the library's message.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// Runs `call` in a helper whose descriptors 0, 1 and 2 are `stdio` (None: /dev/null), logging
/// to `log`, and returns its reply.
pub fn run(call: Call, stdio: [Option<&OwnedFd>; 3], log: &Path) -> Result<Reply, Failure> {
    let internal = |what: &str, e: nix::errno::Errno| {
        Failure::new(
            Code::INTERNAL,
            format!("cannot {what} for berth's helper: {e}"),
        )
    };
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| internal("make a socket pair", e))?;
    let stdio_raw = stdio.map(|fd| fd.map(|f| f.as_raw_fd()));
    // SAFETY: the child only runs `child`, which takes none of the shim's locks (see the module
    // comment) and leaves through _exit.
    match unsafe { fork() }.map_err(|e| internal("fork", e))? {
        ForkResult::Child => {
            drop(ours);
            let code = child(call, stdio_raw, &theirs, log);
            // SAFETY: leave at once, running none of the shim's destructors or atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { .. } => {
            drop(theirs);
            receive(&ours)
        }
    }
}

/// The helper's side: puts stdio in place, makes the call, sends the reply.
fn child(call: Call, stdio: [Option<RawFd>; 3], socket: &OwnedFd, log: &Path) -> i32 {
    // The shim's signal handlers (its reaper's) are not the helper's, nor the container's.
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGPIPE,
    ] {
        // SAFETY: restoring the default disposition.
        let _ = unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) };
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    let reply = setup(stdio, socket.as_raw_fd(), log).and_then(|()| call_library(call));
    let (text, fd) = match &reply {
        Ok(reply) => (format!("ok {}", reply.pid), reply.console.as_ref()),
        Err(failure) => (
            format!("err {} {}", failure.code as i32, failure.message),
            None,
        ),
    };
    let fds = fd.map(|f| [f.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage> = fds.iter().map(|f| ControlMessage::ScmRights(f)).collect();
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(text.as_bytes())],
        &cmsgs,
        MsgFlags::empty(),
        None,
    );
    i32::from(sent.is_err())
}

/// Descriptors 0, 1, 2 become the process's stdio; every other descriptor of the shim's but the
/// reply socket is closed (the container must see none of them).
fn setup(stdio: [Option<RawFd>; 3], socket: RawFd, log: &Path) -> Result<(), Failure> {
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Failure::new(Code::INTERNAL, format!("cannot open /dev/null: {e}")))?;
    // Sources first moved above the targets, so a dup2 never overwrites one still to be read.
    let mut sources = [0; 3];
    for (i, fd) in stdio.iter().enumerate() {
        let from = fd.unwrap_or(null.as_raw_fd());
        // SAFETY: F_DUPFD_CLOEXEC of a descriptor we hold returns a new one or -1.
        sources[i] = unsafe { libc::fcntl(from, libc::F_DUPFD_CLOEXEC, 10) };
        if sources[i] < 0 {
            return Err(Failure::new(
                Code::INTERNAL,
                format!(
                    "cannot duplicate stdio: {}",
                    std::io::Error::last_os_error()
                ),
            ));
        }
    }
    for (target, source) in sources.iter().enumerate() {
        // SAFETY: dup2 onto 0, 1, 2; the new descriptor is not close-on-exec.
        if unsafe { libc::dup2(*source, target as RawFd) } < 0 {
            return Err(Failure::new(
                Code::INTERNAL,
                format!("cannot set stdio: {}", std::io::Error::last_os_error()),
            ));
        }
    }
    // SAFETY: closing ranges of descriptor numbers; nothing in this process uses them after.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3, socket - 1, 0);
        libc::syscall(libc::SYS_close_range, socket + 1, u32::MAX, 0);
    }
    std::mem::forget(null);
    // berth's warnings go to the container's log file, not to its stderr (now the container's).
    let _ = berth::logging::init(Some(log), berth::logging::Format::Json, false);
    Ok(())
}

fn call_library(call: Call) -> Result<Reply, Failure> {
    let none = |pid: i32| Reply { pid, console: None };
    match call {
        Call::Create { root, opts, rootfs } => {
            let target = opts.bundle.join("rootfs");
            crate::mounts::mount_all(rootfs, &target)
                .map_err(|e| Failure::new(Code::INTERNAL, e))?;
            match container::create(root, &opts) {
                Ok(created) => Ok(Reply {
                    pid: created.pid.as_raw(),
                    console: created.console,
                }),
                Err(err) => {
                    if !rootfs.is_empty() {
                        crate::mounts::unmount_all(&target);
                    }
                    Err(failure(err))
                }
            }
        }
        Call::Start { root, id } => container::start(root, id)
            .map(|()| none(0))
            .map_err(failure),
        Call::Exec { root, opts } => container::exec::spawn(root, &opts)
            .map(|spawned| Reply {
                pid: spawned.pid.as_raw(),
                console: spawned.console,
            })
            .map_err(failure),
        Call::Delete {
            root,
            id,
            force,
            rootfs,
        } => {
            let result = container::delete(root, id, force);
            if let Some(rootfs) = rootfs {
                crate::mounts::unmount_all(&rootfs);
            }
            result.map(|()| none(0)).map_err(failure)
        }
    }
}

/// containerd's error code for a library error: it maps NOT_FOUND and FAILED_PRECONDITION to
/// its own "not found" and "failed precondition", which ctr and the CRI act on.
pub fn failure(err: ContainerError) -> Failure {
    let code = match &err {
        ContainerError::State(StateError::NotExist(_)) => Code::NOT_FOUND,
        ContainerError::State(StateError::Exists(_)) => Code::ALREADY_EXISTS,
        ContainerError::NotRunning { .. }
        | ContainerError::Exec(container::exec::ExecError::NotRunning { .. }) => Code::NOT_FOUND,
        ContainerError::NotCreated { .. }
        | ContainerError::NotStopped { .. }
        | ContainerError::WrongStatus { .. }
        | ContainerError::Exec(container::exec::ExecError::NotReady { .. }) => {
            Code::FAILED_PRECONDITION
        }
        ContainerError::Spec(_)
        | ContainerError::BadValue { .. }
        | ContainerError::BadSignal(_)
        | ContainerError::Unsupported(_)
        | ContainerError::Exec(container::exec::ExecError::Usage(_)) => Code::INVALID_ARGUMENT,
        _ => Code::UNKNOWN,
    };
    Failure::new(code, err.to_string())
}

/// The shim's side: the reply, or why there is none.
fn receive(socket: &OwnedFd) -> Result<Reply, Failure> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let (len, fd) = loop {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let fd = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                        _ => None,
                    })
                });
                break (msg.bytes, fd);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Failure::new(
                    Code::INTERNAL,
                    format!("cannot read berth's helper's reply: {e}"),
                ))
            }
        }
    };
    // SAFETY: SCM_RIGHTS gave us this new descriptor.
    let console = fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    let text = String::from_utf8_lossy(&buf[..len]);
    if len == 0 {
        return Err(Failure::new(
            Code::INTERNAL,
            "berth's helper went away without a reply",
        ));
    }
    let mut words = text.splitn(3, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some("ok"), Some(pid), None) => Ok(Reply {
            pid: pid.parse().unwrap_or(0),
            console,
        }),
        (Some("err"), Some(code), message) => Err(Failure::new(
            Code::from_i32(code.parse().unwrap_or(2)).unwrap_or(Code::UNKNOWN),
            message.unwrap_or_default(),
        )),
        _ => Err(Failure::new(
            Code::INTERNAL,
            format!("berth's helper replied {text:?}"),
        )),
    }
}
