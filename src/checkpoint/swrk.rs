//! One session with CRIU's RPC server, as runc and crun hold it: `criu swrk 3` runs as berth's
//! child with one end of a SOCK_SEQPACKET socketpair as its descriptor 3; each request and each
//! answer is one packet holding one protobuf message. While it works CRIU sends notifications
//! (`setup-namespaces`, `post-restore`, `orphan-pts-master` with a descriptor …); each is
//! answered before CRIU goes on. Descriptors CRIU must hold itself (namespaces and pipes it
//! restores into) are handed to it at 4, 5 …; others (the image folder) it opens through
//! /proc/BERTH/fd/N.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::sys::socket::{
    recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use prost::Message;

use super::rpc::{Features, ReqType, Request, Response};
use super::CheckpointError;

/// The largest answer berth reads (CRIU's are a few hundred bytes).
const MAX_MESSAGE: usize = 64 * 1024;

/// A running `criu swrk`.
pub struct Swrk {
    criu: PathBuf,
    child: Child,
    socket: OwnedFd,
}

/// A notification from CRIU: the script name, the pid it names, and a descriptor it passed.
pub struct Notification {
    pub script: String,
    pub pid: Option<i32>,
    pub fd: Option<OwnedFd>,
}

impl Swrk {
    /// Starts `criu swrk 3`, with `inherit[i]` as its descriptor 4 + i. Its standard streams are
    /// berth's: a restore hands them on to the container's pipes.
    pub fn start(criu: &Path, inherit: &[BorrowedFd]) -> Result<Swrk, CheckpointError> {
        let rpc = |source: nix::errno::Errno| CheckpointError::Rpc {
            reason: format!("cannot make the socket to talk to criu: {source}"),
        };
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(rpc)?;
        let mut sources: Vec<RawFd> = vec![theirs.as_raw_fd()];
        sources.extend(inherit.iter().map(|fd| fd.as_raw_fd()));
        let mut command = Command::new(criu);
        command.arg("swrk").arg("3");
        // SAFETY: between fork and exec the closure only calls fcntl and dup2, which are
        // async-signal-safe, and touches no memory but the vector made before the fork.
        unsafe {
            command.pre_exec(move || {
                // First out of the way (above every target), then into place: a source may sit
                // where another one goes. dup2 clears close-on-exec on the copies.
                let mut high = Vec::with_capacity(sources.len());
                for &fd in &sources {
                    let copy = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64);
                    if copy < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    high.push(copy);
                }
                for (i, &fd) in high.iter().enumerate() {
                    if libc::dup2(fd, 3 + i as RawFd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|source| CheckpointError::CriuStart {
                criu: criu.to_path_buf(),
                source,
            })?;
        // Only CRIU holds its end now: if it dies, berth reads end-of-file instead of hanging.
        drop(theirs);
        Ok(Swrk {
            criu: criu.to_path_buf(),
            child,
            socket: ours,
        })
    }

    /// The pid of the CRIU process.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn send(&self, req: &Request) -> Result<(), CheckpointError> {
        let bytes = req.encode_to_vec();
        nix::unistd::write(&self.socket, &bytes).map_err(|source| CheckpointError::Rpc {
            reason: format!("cannot write to criu: {source}"),
        })?;
        Ok(())
    }

    fn recv(&self) -> Result<(Response, Option<OwnedFd>), CheckpointError> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let (len, fds) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = loop {
                match recvmsg::<()>(
                    self.socket.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                ) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            }
            .map_err(|source| CheckpointError::Rpc {
                reason: format!("cannot read from criu: {source}"),
            })?;
            let mut fds = Vec::new();
            for cmsg in msg.cmsgs().into_iter().flatten() {
                if let ControlMessageOwned::ScmRights(received) = cmsg {
                    // SAFETY: the kernel just gave us these descriptors; nothing else owns them.
                    fds.extend(
                        received
                            .into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            (msg.bytes, fds)
        };
        if len == 0 {
            return Err(CheckpointError::Rpc {
                reason: "criu closed the connection without an answer".into(),
            });
        }
        let resp = Response::decode(&buf[..len]).map_err(|e| CheckpointError::Rpc {
            reason: format!("criu's answer is not a criu_resp: {e}"),
        })?;
        Ok((resp, fds.into_iter().next()))
    }

    /// Sends `req` and answers CRIU's notifications with `on_notify` until the final answer;
    /// then waits for CRIU to exit. A notification `on_notify` fails ends the session: CRIU is
    /// told, undoes what it did, and berth returns that error.
    pub fn call(
        mut self,
        req: Request,
        mut on_notify: impl FnMut(Notification) -> Result<(), CheckpointError>,
    ) -> Result<Response, CheckpointError> {
        let wanted = req.r#type;
        self.send(&req)?;
        let resp = loop {
            let (resp, fd) = self.recv()?;
            if resp.r#type != ReqType::Notify as i32 {
                break resp;
            }
            let notify = resp.notify.unwrap_or_default();
            let result = on_notify(Notification {
                script: notify.script.unwrap_or_default(),
                pid: notify.pid,
                fd,
            });
            let ok = result.is_ok();
            self.send(&Request {
                r#type: ReqType::Notify as i32,
                notify_success: Some(ok),
                ..Default::default()
            })?;
            if let Err(err) = result {
                let _ = self.finish();
                return Err(err);
            }
        };
        let status = self.finish();
        if !resp.success {
            return Err(CheckpointError::Criu {
                errno: resp.cr_errno.unwrap_or(0),
                message: resp.cr_errmsg.unwrap_or_default(),
            });
        }
        if resp.r#type != wanted {
            return Err(CheckpointError::Rpc {
                reason: format!("criu answered request {wanted} with type {}", resp.r#type),
            });
        }
        // A pre-dump's CRIU waits for more requests and is stopped here; any other must exit 0.
        match status {
            Some(status) if !status.success() && wanted != ReqType::PreDump as i32 => {
                Err(CheckpointError::Rpc {
                    reason: format!("{} swrk {status}", self.criu.display()),
                })
            }
            _ => Ok(resp),
        }
    }

    /// Closes berth's end and reaps CRIU.
    fn finish(&mut self) -> Option<std::process::ExitStatus> {
        let _ =
            nix::sys::socket::shutdown(self.socket.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        self.child.wait().ok()
    }
}

/// Asks CRIU whether it and the kernel can do `wanted`; returns what it answered.
pub fn features(criu: &Path, wanted: Features) -> Result<Features, CheckpointError> {
    let resp = Swrk::start(criu, &[])?.call(
        Request {
            r#type: ReqType::FeatureCheck as i32,
            features: Some(wanted),
            ..Default::default()
        },
        |_| Ok(()),
    )?;
    Ok(resp.features.unwrap_or_default())
}
