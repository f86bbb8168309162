//! The channel between berth and the container's init: a SOCK_SEQPACKET socketpair carrying
//! small tagged messages (and descriptors), so the init's errors become the command's error.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    recv, recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};

/// The largest message: an error text or the state JSON.
const MAX_MESSAGE: usize = 64 * 1024;
/// The most descriptors one message carries: the `tasks` files of a host's v1 hierarchies.
pub const MAX_FDS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// init → berth: setting up failed; the text says why.
    Error(String),
    /// init → berth: namespaces and mounts are made; run the prestart and createRuntime hooks.
    HooksPoint,
    /// init → berth: the container is created and waits for `start`.
    Ready,
    /// intermediate → berth: the pid of the init it forked.
    Pid(i32),
    /// berth → init: go on (uid/gid maps written, cgroup joined).
    Go,
    /// berth → init: the container's v1 cgroups are made; their `tasks` files follow, for the
    /// init to move itself in.
    Cgroups,
    /// init → berth: in its new user namespace and dumpable for the moment, so an ordinary
    /// user may write its uid and gid maps.
    MapIds,
    /// berth → init: the hooks ran; here is the state for the createContainer hooks.
    State(String),
    /// init → berth: a descriptor follows (a seccomp listener).
    Fd,
    /// init or exec → berth: the pty master follows; the text is the pty's name (`/dev/pts/0`).
    Console(String),
    /// init → berth: the container is built (namespaces, root filesystem); its process is to be
    /// started from outside its pid namespace (`process::exec`).
    Built,
}

impl Message {
    fn encode(&self) -> Vec<u8> {
        let (tag, body): (u8, &[u8]) = match self {
            Message::Error(text) => (b'E', text.as_bytes()),
            Message::HooksPoint => (b'H', b""),
            Message::Ready => (b'R', b""),
            Message::Pid(_) => (b'P', b""),
            Message::Go => (b'G', b""),
            Message::Cgroups => (b'T', b""),
            Message::MapIds => (b'M', b""),
            Message::State(json) => (b'S', json.as_bytes()),
            Message::Fd => (b'F', b""),
            Message::Console(name) => (b'C', name.as_bytes()),
            Message::Built => (b'B', b""),
        };
        let mut out = Vec::with_capacity(1 + body.len() + 4);
        out.push(tag);
        match self {
            Message::Pid(pid) => out.extend_from_slice(&pid.to_le_bytes()),
            _ => out.extend_from_slice(&body[..body.len().min(MAX_MESSAGE - 1)]),
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Message, ChannelError> {
        let (tag, body) = bytes.split_first().ok_or(ChannelError::Closed)?;
        let text = || String::from_utf8_lossy(body).into_owned();
        Ok(match tag {
            b'E' => Message::Error(text()),
            b'H' => Message::HooksPoint,
            b'R' => Message::Ready,
            b'P' => Message::Pid(i32::from_le_bytes(
                body.try_into().map_err(|_| ChannelError::Garbled)?,
            )),
            b'G' => Message::Go,
            b'T' => Message::Cgroups,
            b'M' => Message::MapIds,
            b'S' => Message::State(text()),
            b'F' => Message::Fd,
            b'C' => Message::Console(text()),
            b'B' => Message::Built,
            _ => return Err(ChannelError::Garbled),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("the other end closed the channel")]
    Closed,
    #[error("a garbled message arrived on the channel")]
    Garbled,
    #[error("channel: {0}")]
    Io(#[from] Errno),
}

/// One end of the channel.
pub struct Channel {
    fd: OwnedFd,
}

/// Makes both ends, close-on-exec.
pub fn pair() -> Result<(Channel, Channel), Errno> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, message: &Message) -> Result<(), ChannelError> {
        let bytes = message.encode();
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }

    /// Sends a descriptor with a `Fd` message.
    pub fn send_fd(&self, fd: RawFd) -> Result<(), ChannelError> {
        self.send_with_fd(&Message::Fd, fd)
    }

    /// Sends a descriptor with `message`.
    pub fn send_with_fd(&self, message: &Message, fd: RawFd) -> Result<(), ChannelError> {
        self.send_with_fds(message, &[fd])
    }

    /// Sends descriptors (at most [`MAX_FDS`]) with `message`.
    pub fn send_with_fds(&self, message: &Message, fds: &[RawFd]) -> Result<(), ChannelError> {
        let bytes = message.encode();
        sendmsg::<()>(
            self.fd.as_raw_fd(),
            &[IoSlice::new(&bytes)],
            &[ControlMessage::ScmRights(fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }

    /// Sends `message` with write(2), for a process under a seccomp filter that may allow no
    /// more (a SOCK_SEQPACKET socket takes one write as one message). Without MSG_NOSIGNAL: a
    /// process whose berth is gone may die of SIGPIPE.
    pub fn write(&self, message: &Message) -> Result<(), ChannelError> {
        let bytes = message.encode();
        nix::unistd::write(&self.fd, &bytes)?;
        Ok(())
    }

    /// Waits for the next message with read(2), for the same reason; it carries no descriptor.
    pub fn read(&self) -> Result<Message, ChannelError> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let len = loop {
            match nix::unistd::read(&self.fd, &mut buf) {
                Err(Errno::EINTR) => continue,
                other => break other?,
            }
        };
        if len == 0 {
            return Err(ChannelError::Closed);
        }
        Message::decode(&buf[..len])
    }

    /// Waits for the next message. A closed peer is `ChannelError::Closed`.
    pub fn recv(&self) -> Result<Message, ChannelError> {
        self.recv_with_fd().map(|(message, _)| message)
    }

    /// Waits for the next message and the descriptor that came with it, if any.
    pub fn recv_with_fd(&self) -> Result<(Message, Option<OwnedFd>), ChannelError> {
        let (message, fds) = self.recv_with_fds()?;
        Ok((message, fds.into_iter().next()))
    }

    /// Waits for the next message and the descriptors that came with it.
    pub fn recv_with_fds(&self) -> Result<(Message, Vec<OwnedFd>), ChannelError> {
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let mut reset = false;
        let (len, fds, buf) = loop {
            // The message's length first (MSG_TRUNC), without taking it (MSG_PEEK): most are a
            // few bytes, and a buffer ready for the longest (64 KiB) is zeroed each time, which
            // in the init, a copy of berth, is a page fault and a page copied per page.
            let len = match recv(
                self.fd.as_raw_fd(),
                &mut [],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Ok(0) => return Err(ChannelError::Closed),
                Ok(len) => len,
                Err(Errno::EINTR) => continue,
                // A peer that exited with our last message unread leaves ECONNRESET pending ahead
                // of what it sent before (its error, say): that is still queued, so read on.
                Err(Errno::ECONNRESET) if !reset => {
                    reset = true;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let mut buf = vec![0u8; len.min(MAX_MESSAGE)];
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut owned = Vec::new();
                    for cmsg in msg.cmsgs().map_err(ChannelError::Io)? {
                        if let ControlMessageOwned::ScmRights(fds) = cmsg {
                            // SAFETY: the kernel just gave us these descriptors; we own them now.
                            owned.extend(
                                fds.iter().map(|&raw| unsafe { OwnedFd::from_raw_fd(raw) }),
                            );
                        }
                    }
                    let bytes = msg.bytes;
                    break (bytes, owned, buf);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::ECONNRESET) if !reset => reset = true,
                Err(e) => return Err(e.into()),
            }
        };
        if len == 0 {
            return Err(ChannelError::Closed);
        }
        Ok((Message::decode(&buf[..len])?, fds))
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let (a, b) = pair().unwrap();
        let messages = [
            Message::Error("cannot mount proc".into()),
            Message::HooksPoint,
            Message::Ready,
            Message::Pid(4242),
            Message::Go,
            Message::Cgroups,
            Message::MapIds,
            Message::State("{\"id\":\"x\"}".into()),
            Message::Built,
        ];
        for m in &messages {
            a.send(m).unwrap();
            assert_eq!(&b.recv().unwrap(), m);
        }
        // A long message arrives whole, and one past the limit is cut to it.
        let long = Message::State("x".repeat(20_000));
        a.send(&long).unwrap();
        assert_eq!(b.recv().unwrap(), long);
        a.send(&Message::Error("y".repeat(MAX_MESSAGE * 2)))
            .unwrap();
        assert_eq!(
            b.recv().unwrap(),
            Message::Error("y".repeat(MAX_MESSAGE - 1))
        );
        // Plain writes and reads carry the same messages.
        a.write(&Message::Pid(7)).unwrap();
        assert_eq!(b.recv().unwrap(), Message::Pid(7));
        b.send(&Message::Go).unwrap();
        assert_eq!(a.read().unwrap(), Message::Go);
        drop(a);
        assert!(matches!(b.recv(), Err(ChannelError::Closed)));
    }

    #[test]
    fn a_peer_gone_with_a_message_unread_still_says_why() {
        let (berth, init) = pair().unwrap();
        init.send(&Message::Error("cannot join".into())).unwrap();
        berth.send(&Message::Go).unwrap();
        drop(init);
        assert_eq!(berth.recv().unwrap(), Message::Error("cannot join".into()));
        assert!(matches!(berth.recv(), Err(ChannelError::Closed)));
    }

    #[test]
    fn descriptors_travel() {
        let (a, b) = pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        a.send_fd(w.as_raw_fd()).unwrap();
        drop(w);
        let (message, fd) = b.recv_with_fd().unwrap();
        assert_eq!(message, Message::Fd);
        nix::unistd::write(fd.unwrap(), b"hi").unwrap();
        let mut buf = [0u8; 2];
        nix::unistd::read(&r, &mut buf).unwrap();
        assert_eq!(&buf, b"hi");

        let (r, w) = nix::unistd::pipe().unwrap();
        let console = Message::Console("/dev/pts/3".into());
        a.send_with_fd(&console, w.as_raw_fd()).unwrap();
        drop(w);
        let (message, fd) = b.recv_with_fd().unwrap();
        assert_eq!(message, console);
        nix::unistd::write(fd.unwrap(), b"ok").unwrap();
        nix::unistd::read(&r, &mut buf).unwrap();
        assert_eq!(&buf, b"ok");

        // Several at once, in their order.
        let pipes: Vec<_> = (0..12).map(|_| nix::unistd::pipe().unwrap()).collect();
        let raw: Vec<_> = pipes.iter().map(|(_, w)| w.as_raw_fd()).collect();
        a.send_with_fds(&Message::Cgroups, &raw).unwrap();
        let (message, fds) = b.recv_with_fds().unwrap();
        assert_eq!(message, Message::Cgroups);
        assert_eq!(fds.len(), pipes.len());
        for (i, fd) in fds.iter().enumerate() {
            nix::unistd::write(fd, &[i as u8]).unwrap();
        }
        for (i, (r, _)) in pipes.iter().enumerate() {
            let mut byte = [0u8; 1];
            nix::unistd::read(r, &mut byte).unwrap();
            assert_eq!(byte[0], i as u8);
        }
    }
}
