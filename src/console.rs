//! Terminals: the container's pty (opened from its own devpts, so the slave belongs to the
//! container), the console socket that receives the pty master (runc's protocol, which
//! containerd's shim and conmon use), and berth's own relay for `run` and `exec -t` in the
//! foreground: the caller's terminal in raw mode, stdin and stdout copied, SIGWINCH as TIOCSWINSZ.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;
use nix::sys::termios::{self, SetArg, Termios};

use crate::process::channel::{Channel, Message};
use crate::syscall::Kernel;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot open the container's /dev/pts/ptmx to make its terminal (process.terminal needs devpts mounted on /dev/pts): {0}")]
    OpenPtmx(Errno),
    #[error("cannot {what} of the container's terminal: {source}")]
    Pty { what: &'static str, source: Errno },
    #[error("lost contact with berth while handing over the container's terminal")]
    HandOver,
    #[error("cannot bind the container's terminal onto /dev/console: {0}")]
    DevConsole(Errno),
    #[error("cannot connect to the console socket {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot send the terminal to the console socket {path}: {source}")]
    Send { path: PathBuf, source: Errno },
    #[error("cannot {what} the terminal berth runs in: {source}")]
    Caller { what: &'static str, source: Errno },
}

/// A terminal's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

impl WindowSize {
    /// `process.consoleSize`, if given.
    pub fn from_spec(process: &oci_spec::runtime::Process) -> Option<WindowSize> {
        process.console_size().as_ref().map(|size| WindowSize {
            rows: size.height().min(u16::MAX as u64) as u16,
            cols: size.width().min(u16::MAX as u64) as u16,
        })
    }
}

fn pty_err(what: &'static str) -> impl FnOnce(Errno) -> ConsoleError {
    move |source| ConsoleError::Pty { what, source }
}

/// Reads a terminal's size.
pub fn window_size(fd: BorrowedFd) -> Result<WindowSize, Errno> {
    // SAFETY: winsize is plain data.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize to the pointer, which is valid.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) })?;
    Ok(WindowSize {
        rows: size.ws_row,
        cols: size.ws_col,
    })
}

/// Sets a terminal's size; the kernel sends SIGWINCH to its foreground process group.
pub fn set_window_size(fd: BorrowedFd, size: WindowSize) -> Result<(), Errno> {
    let size = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) }).map(drop)
}

/// A new pty of the container.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    /// The slave's name inside the container, e.g. `/dev/pts/0`.
    pub name: String,
}

/// Makes a pty from the container's devpts: runs in the container's process, after its root is
/// the container's. The slave is opened through the master (TIOCGPTPEER), not by its path.
pub fn open_pty(size: Option<WindowSize>) -> Result<Pty, ConsoleError> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let master = nix::fcntl::openat2(nix::fcntl::AT_FDCWD, "/dev/pts/ptmx", how)
        .map_err(ConsoleError::OpenPtmx)?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, which is valid.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })
        .map_err(pty_err("unlock the slave"))?;
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int to the pointer, which is valid.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) })
        .map_err(pty_err("read the number"))?;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor of the slave.
    let raw = Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) })
        .map_err(pty_err("open the slave"))?;
    // SAFETY: the descriptor was just returned to us and nothing else owns it.
    let slave = unsafe { OwnedFd::from_raw_fd(raw) };
    if let Some(size) = size {
        set_window_size(master.as_fd(), size).map_err(pty_err("set the size"))?;
    }
    Ok(Pty {
        master,
        slave,
        name: format!("/dev/pts/{number}"),
    })
}

/// Makes `slave` the controlling terminal of a new session, and the process's stdio.
pub fn attach_stdio(slave: &OwnedFd) -> Result<(), ConsoleError> {
    use_as_stdio(slave)?;
    new_session()
}

/// Makes `terminal` the process's stdin, stdout and stderr.
pub fn use_as_stdio(terminal: &OwnedFd) -> Result<(), ConsoleError> {
    nix::unistd::dup2_stdin(terminal).map_err(pty_err("make stdin"))?;
    nix::unistd::dup2_stdout(terminal).map_err(pty_err("make stdout"))?;
    nix::unistd::dup2_stderr(terminal).map_err(pty_err("make stderr"))?;
    Ok(())
}

/// Starts a new session whose controlling terminal is the one on stdin. Two calls, which is all
/// the process `exec` forks into the container makes before its program (`process::exec`).
pub fn new_session() -> Result<(), ConsoleError> {
    nix::unistd::setsid().map_err(pty_err("start a session for"))?;
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal it from another session).
    Errno::result(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) })
        .map_err(pty_err("take control"))?;
    Ok(())
}

/// In the container's process: makes its terminal, hands the master to berth over `channel`
/// (berth sends it on to the console socket or relays it), and makes the slave the process's
/// stdio and controlling terminal. Returns the slave, which the init also binds onto
/// `/dev/console`. A pty berth relays to its own stdio (`relayed`) passes the program's "\n" as
/// it is, not as "\r\n", so a pipe or file gets what was written (runc clears ONLCR likewise);
/// one sent to a console socket keeps the usual settings for its receiver.
pub fn setup(
    size: Option<WindowSize>,
    relayed: bool,
    channel: &Channel,
) -> Result<OwnedFd, ConsoleError> {
    let slave = hand_over(size, relayed, channel)?;
    attach_stdio(&slave)?;
    Ok(slave)
}

/// Makes the container's terminal and hands its master to berth over `channel`; returns the
/// slave. `relayed`: as for [`setup`].
pub fn hand_over(
    size: Option<WindowSize>,
    relayed: bool,
    channel: &Channel,
) -> Result<OwnedFd, ConsoleError> {
    let pty = open_pty(size)?;
    if relayed {
        // Before the program can write: berth's relay only starts once it runs (`exec`).
        let mut settings = termios::tcgetattr(&pty.master).map_err(pty_err("read the settings"))?;
        settings.output_flags.remove(termios::OutputFlags::ONLCR);
        termios::tcsetattr(&pty.master, SetArg::TCSANOW, &settings)
            .map_err(pty_err("clear ONLCR"))?;
    }
    channel
        .send_with_fd(&Message::Console(pty.name.clone()), pty.master.as_raw_fd())
        .map_err(|_| ConsoleError::HandOver)?;
    Ok(pty.slave)
}

/// Opens the container's `/dev/console` (the terminal its init made, bound there), refusing a
/// symlink.
pub fn open_dev_console() -> Result<OwnedFd, ConsoleError> {
    let how = OpenHow::new()
        .flags(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    nix::fcntl::openat2(nix::fcntl::AT_FDCWD, "/dev/console", how).map_err(ConsoleError::DevConsole)
}

/// Bind-mounts the slave onto the container's `/dev/console` (made as an empty file if missing),
/// for the init. Runs after the switch to the container's root; symlinks are refused.
pub fn mount_dev_console(kernel: &dyn Kernel, slave: &OwnedFd) -> Result<(), ConsoleError> {
    let open = |flags: OFlag| {
        // openat2 takes a mode only with O_CREAT.
        let mode = if flags.contains(OFlag::O_CREAT) {
            0o666
        } else {
            0
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(Mode::from_bits_truncate(mode))
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
        nix::fcntl::openat2(nix::fcntl::AT_FDCWD, "/dev/console", how)
    };
    let console = match open(OFlag::O_PATH) {
        Err(Errno::ENOENT) => {
            drop(
                open(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY)
                    .map_err(ConsoleError::DevConsole)?,
            );
            open(OFlag::O_PATH)
        }
        other => other,
    }
    .map_err(ConsoleError::DevConsole)?;
    // Descriptor to descriptor: /proc may have no `self` for this process (a container built
    // from outside its pid namespace, `process::init`).
    let slave = kernel
        .clone_mount(slave.as_fd(), false)
        .map_err(ConsoleError::DevConsole)?;
    kernel
        .move_mount(slave.as_fd(), console.as_fd())
        .map_err(ConsoleError::DevConsole)
}

/// Connects to a console socket; done before anything is made, so a bad path fails early.
pub fn connect_socket(path: &Path) -> Result<UnixStream, ConsoleError> {
    UnixStream::connect(path).map_err(|source| ConsoleError::Connect {
        path: path.to_path_buf(),
        source,
    })
}

/// Sends the pty master over the console socket with SCM_RIGHTS, the pty's name as the payload,
/// as runc does.
pub fn send_master(
    socket: &UnixStream,
    path: &Path,
    master: BorrowedFd,
    name: &str,
) -> Result<(), ConsoleError> {
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(name.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
    .map_err(|source| ConsoleError::Send {
        path: path.to_path_buf(),
        source,
    })
}

/// One of berth's standard streams.
#[derive(Clone, Copy, Debug)]
enum Stdio {
    In,
    Out,
    Err,
}

fn with_stdio<R>(which: Stdio, f: impl FnOnce(BorrowedFd) -> R) -> R {
    match which {
        Stdio::In => f(std::io::stdin().as_fd()),
        Stdio::Out => f(std::io::stdout().as_fd()),
        Stdio::Err => f(std::io::stderr().as_fd()),
    }
}

/// The terminal berth runs in: the first of stdin, stdout and stderr that is one.
fn caller_terminal() -> Option<Stdio> {
    [Stdio::In, Stdio::Out, Stdio::Err]
        .into_iter()
        .find(|&s| with_stdio(s, |fd| nix::unistd::isatty(fd).unwrap_or(false)))
}

/// The size of the terminal berth runs in, if it runs in one.
pub fn caller_window_size() -> Option<WindowSize> {
    caller_terminal().and_then(|s| with_stdio(s, |fd| window_size(fd).ok()))
}

/// Copies between berth's stdio and a pty master while the container's process runs. The caller's
/// terminal, if there is one, is in raw mode for as long as this lives, so keys reach the
/// container as typed; dropping it restores the terminal.
pub struct Relay {
    master: OwnedFd,
    terminal: Option<Stdio>,
    /// The caller's terminal settings before raw mode.
    saved: Option<Termios>,
    stdin_open: bool,
    master_open: bool,
    /// Input read from stdin and not yet taken by the pty.
    pending: Vec<u8>,
}

impl Relay {
    /// Starts relaying through `master`: raw mode on, the pty sized like the caller's terminal.
    pub fn start(master: OwnedFd) -> Result<Relay, ConsoleError> {
        let caller = |what| move |source| ConsoleError::Caller { what, source };
        let flags = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_GETFL)
            .map_err(pty_err("read the flags"))?;
        let nonblocking = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(nonblocking))
            .map_err(pty_err("set the flags"))?;
        let mut relay = Relay {
            master,
            terminal: caller_terminal(),
            saved: None,
            stdin_open: true,
            master_open: true,
            pending: Vec::new(),
        };
        if let Some(terminal) = relay.terminal {
            relay.resize();
            let saved =
                with_stdio(terminal, |fd| termios::tcgetattr(fd)).map_err(caller("read"))?;
            let mut raw = saved.clone();
            termios::cfmakeraw(&mut raw);
            // The pty berth relays passes "\n" as is (`setup`): the terminal adds the "\r".
            raw.output_flags.insert(termios::OutputFlags::OPOST);
            with_stdio(terminal, |fd| termios::tcsetattr(fd, SetArg::TCSANOW, &raw))
                .map_err(caller("put in raw mode"))?;
            relay.saved = Some(saved);
        }
        Ok(relay)
    }

    /// Gives the pty the size of the caller's terminal (on start and on SIGWINCH).
    pub fn resize(&self) {
        if let Some(size) = self
            .terminal
            .and_then(|t| with_stdio(t, |fd| window_size(fd).ok()))
        {
            let _ = set_window_size(self.master.as_fd(), size);
        }
    }

    /// Copies whatever is ready between the caller and the pty, until `other` (berth's signalfd)
    /// is readable; returns whether it is.
    pub fn wait(&mut self, other: BorrowedFd) -> bool {
        let stdin = std::io::stdin();
        let mut master_events = PollFlags::empty();
        if self.master_open {
            master_events |= PollFlags::POLLIN;
            if !self.pending.is_empty() {
                master_events |= PollFlags::POLLOUT;
            }
        }
        let (other_ready, stdin_ready, master_ready) = {
            // Only descriptors worth waiting for are polled: a hung-up one would wake poll forever.
            let mut fds = vec![PollFd::new(other, PollFlags::POLLIN)];
            let stdin_at = (self.stdin_open && self.pending.is_empty()).then(|| {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let master_at = (!master_events.is_empty()).then(|| {
                fds.push(PollFd::new(self.master.as_fd(), master_events));
                fds.len() - 1
            });
            if nix::poll::poll(&mut fds, PollTimeout::NONE).is_err() {
                return false;
            }
            let events = |at: Option<usize>| {
                at.and_then(|i| fds[i].revents())
                    .unwrap_or(PollFlags::empty())
            };
            (events(Some(0)), events(stdin_at), events(master_at))
        };
        if !stdin_ready.is_empty() {
            self.read_stdin();
        }
        if !self.pending.is_empty() {
            self.write_pending();
        }
        if master_ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            self.copy_output();
        }
        !other_ready.is_empty()
    }

    /// Copies what the pty still holds once the process has exited: until every slave is closed,
    /// or nothing more arrives for a moment (a background process may still hold the slave).
    pub fn drain(&mut self) {
        while self.master_open {
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(0) | Err(_) => break,
                Ok(_) => self.copy_output(),
            }
        }
    }

    fn read_stdin(&mut self) {
        let mut buf = [0u8; 4096];
        match nix::unistd::read(std::io::stdin(), &mut buf) {
            Ok(0) => self.stdin_open = false,
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            Err(_) => self.stdin_open = false,
        }
    }

    fn write_pending(&mut self) {
        match nix::unistd::write(&self.master, &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
            }
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            Err(_) => self.pending.clear(),
        }
    }

    fn copy_output(&mut self) {
        let mut buf = [0u8; 16384];
        match nix::unistd::read(&self.master, &mut buf) {
            // EIO: every slave descriptor is closed.
            Ok(0) | Err(Errno::EIO) => self.master_open = false,
            Ok(n) => write_all_stdout(&buf[..n]),
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            Err(_) => self.master_open = false,
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let (Some(terminal), Some(saved)) = (self.terminal, &self.saved) {
            let _ = with_stdio(terminal, |fd| {
                termios::tcsetattr(fd, SetArg::TCSANOW, saved)
            });
        }
    }
}

/// Writes to berth's stdout without Rust's buffering; output is dropped if stdout is gone.
fn write_all_stdout(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match nix::unistd::write(std::io::stdout(), bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let stdout = std::io::stdout();
                let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut fds, PollTimeout::NONE);
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pty from the host's devpts stands in for the container's: what open_pty does with it
    /// is the same.
    fn host_pty() -> Option<Pty> {
        if !Path::new("/dev/pts/ptmx").exists() {
            eprintln!("SKIP console tests: no /dev/pts/ptmx");
            return None;
        }
        Some(
            open_pty(Some(WindowSize {
                rows: 33,
                cols: 101,
            }))
            .unwrap(),
        )
    }

    #[test]
    fn pty_is_sized_named_and_connected() {
        let Some(pty) = host_pty() else { return };
        assert!(pty.name.starts_with("/dev/pts/"), "{}", pty.name);
        assert_eq!(
            window_size(pty.slave.as_fd()).unwrap(),
            WindowSize {
                rows: 33,
                cols: 101
            }
        );
        assert!(nix::unistd::isatty(&pty.slave).unwrap());
        // The slave is the pty the name says.
        let by_name = std::fs::metadata(&pty.name).unwrap();
        let opened = nix::sys::stat::fstat(&pty.slave).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(by_name.rdev(), opened.st_rdev);
        // Bytes written to the slave come out of the master.
        let mut raw = termios::tcgetattr(&pty.slave).unwrap();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&pty.slave, SetArg::TCSANOW, &raw).unwrap();
        nix::unistd::write(&pty.slave, b"ping").unwrap();
        let mut buf = [0u8; 4];
        nix::unistd::read(&pty.master, &mut buf).unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[test]
    fn master_travels_over_a_console_socket() {
        let Some(pty) = host_pty() else { return };
        let dir = crate::testutil::TempDir::new("console");
        let path = dir.path().join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let socket = connect_socket(&path).unwrap();
        send_master(&socket, &path, pty.master.as_fd(), &pty.name).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let fds: Vec<_> = msg
            .cmsgs()
            .unwrap()
            .filter_map(|c| match c {
                nix::sys::socket::ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            .collect();
        let len = msg.bytes;
        assert_eq!(String::from_utf8_lossy(&buf[..len]), pty.name);
        assert_eq!(fds.len(), 1);
        // SAFETY: the descriptor just arrived and is ours.
        let received = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        assert_eq!(
            window_size(received.as_fd()).unwrap(),
            WindowSize {
                rows: 33,
                cols: 101
            }
        );
        let err = connect_socket(&dir.path().join("missing.sock")).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "cannot connect to the console socket {}/missing.sock:",
                dir.path().display()
            )),
            "{err}"
        );
    }
}
