//! A process's standard streams as containerd names them: FIFO paths (what ctr and the CRI
//! pass), `file:///PATH` (appended to), `binary:///PATH?ARGS` (a logging program reading
//! descriptors 3 and 4), or nothing (/dev/null); and a terminal, whose pty master the shim
//! keeps.
//!
//! Without a terminal, the process writes straight into the FIFO, file or logger pipe: the shim
//! copies nothing, so it runs no thread and holds no buffer for it. It keeps a read descriptor
//! of each output FIFO open, as the runc shim does, so a process never gets EPIPE (and dies of
//! SIGPIPE) when ctr goes away; its output then waits in the FIFO. Standard input is copied by a
//! thread from the FIFO into a pipe, so the process sees end-of-file when the writer leaves or
//! containerd calls CloseIO. With a terminal, two threads copy: the master to the output, and
//! the input FIFO to the master.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use containerd_shim::protos::ttrpc::Code;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use crate::helper::Failure;

/// What containerd asked for, as State reports it back.
#[derive(Clone, Debug, Default)]
pub struct Paths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Where an output stream goes.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Null,
    Fifo(PathBuf),
    File(PathBuf),
    Binary { path: PathBuf, args: Vec<String> },
}

fn bad(what: &str, uri: &str, why: &str) -> Failure {
    Failure::new(
        Code::INVALID_ARGUMENT,
        format!("{what} {uri:?} cannot be used: {why}"),
    )
}

/// Reads a stream's name: a path, or a `file://` or `binary://` URI.
fn target(what: &str, uri: &str) -> Result<Target, Failure> {
    if uri.is_empty() {
        return Ok(Target::Null);
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Ok(Target::Fifo(PathBuf::from(uri)));
    };
    if !matches!(scheme, "file" | "binary" | "fifo") {
        return Err(bad(
            what,
            uri,
            &format!("scheme {scheme:?} is not file, binary or fifo"),
        ));
    }
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    // `scheme:///path`: no host.
    if !path.starts_with('/') {
        return Err(bad(what, uri, "the path must be absolute, with no host"));
    }
    let path = PathBuf::from(percent_decode(path));
    match scheme {
        "file" => Ok(Target::File(path)),
        // As the runc shim: each query pair is an argument, then its value if it has one.
        "binary" => {
            let mut args = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                args.push(percent_decode(key));
                if !value.is_empty() {
                    args.push(percent_decode(value));
                }
            }
            Ok(Target::Binary { path, args })
        }
        _ => Ok(Target::Fifo(path)),
    }
}

/// `%XX` escapes and `+` (a space), as Go's URL query decoding reads them.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The process's descriptors 0, 1, 2 (None: /dev/null), until it exists.
pub struct ChildStdio(pub [Option<OwnedFd>; 3]);

impl ChildStdio {
    pub fn fds(&self) -> [Option<&OwnedFd>; 3] {
        [self.0[0].as_ref(), self.0[1].as_ref(), self.0[2].as_ref()]
    }
}

/// What the shim keeps of a process's streams while it lives.
#[derive(Default)]
pub struct Io {
    pub paths: Paths,
    /// Read ends of the output FIFOs, so the process never writes into a FIFO without a reader.
    keep: Vec<OwnedFd>,
    /// Where the copy of standard input writes: the pipe to the process, or the pty master.
    /// CloseIO takes it, so the process reads end-of-file.
    stdin: Arc<Mutex<Option<File>>>,
    /// The input FIFO, until a terminal's copy takes it.
    stdin_fifo: Option<OwnedFd>,
    /// Signalled to end the input copy when the process is gone.
    stop: Option<Arc<OwnedFd>>,
    /// Where a terminal's output goes, until the copy takes it.
    terminal_out: Option<File>,
    /// The pty master, for ResizePty.
    console: Option<OwnedFd>,
    /// Ends when a terminal's output has all been copied.
    output_done: Option<mpsc::Receiver<()>>,
}

/// Opens what the process will write to and read from, before it exists.
pub fn prepare(paths: &Paths, id: &str, namespace: &str) -> Result<(ChildStdio, Io), Failure> {
    let mut io = Io {
        paths: paths.clone(),
        ..Io::default()
    };
    let mut child: [Option<OwnedFd>; 3] = [None, None, None];
    let stdout = target("stdout", &paths.stdout)?;
    let stderr = target("stderr", &paths.stderr)?;
    if !paths.stdin.is_empty() {
        let fifo = open_fifo(&paths.stdin, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
        io.stop = Some(Arc::new(eventfd()?));
        if paths.terminal {
            io.stdin_fifo = Some(fifo);
        } else {
            let (read, write) = pipe()?;
            child[0] = Some(read);
            *io.stdin.lock().unwrap() = Some(File::from(write));
            copy_input(fifo, io.stdin.clone(), io.stop.clone().unwrap())?;
        }
    }
    if paths.terminal {
        // The pty's output comes on the master; the process's own descriptors do not matter.
        io.terminal_out = match &stdout {
            Target::Null => None,
            Target::Binary { .. } => {
                let (read, write) = pipe()?;
                spawn_logger(&stdout, id, namespace, read, None)?;
                Some(File::from(write))
            }
            other => Some(File::from(writer(other, &mut io.keep)?)),
        };
        return Ok((ChildStdio(child), io));
    }
    match (&stdout, &stderr) {
        (Target::Binary { .. }, _) => {
            let (out_read, out_write) = pipe()?;
            let (err_read, err_write) = pipe()?;
            spawn_logger(&stdout, id, namespace, out_read, Some(err_read))?;
            child[1] = Some(out_write);
            child[2] = Some(err_write);
        }
        _ => {
            child[1] = writer_or_null(&stdout, &mut io.keep)?;
            child[2] = writer_or_null(&stderr, &mut io.keep)?;
        }
    }
    Ok((ChildStdio(child), io))
}

fn writer_or_null(target: &Target, keep: &mut Vec<OwnedFd>) -> Result<Option<OwnedFd>, Failure> {
    match target {
        Target::Null => Ok(None),
        other => writer(other, keep).map(Some),
    }
}

/// A descriptor to write the stream to.
fn writer(target: &Target, keep: &mut Vec<OwnedFd>) -> Result<OwnedFd, Failure> {
    match target {
        Target::Fifo(path) => {
            let path = path.to_string_lossy();
            // The reader first: then opening to write does not wait for one.
            keep.push(open_fifo(&path, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?);
            open_fifo(&path, OFlag::O_WRONLY)
        }
        Target::File(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_failure(path, e))?;
            }
            nix::fcntl::open(
                path,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o640),
            )
            .map_err(|e| io_failure(path, e.into()))
        }
        Target::Null | Target::Binary { .. } => unreachable!("handled by the caller"),
    }
}

fn io_failure(path: &Path, e: std::io::Error) -> Failure {
    Failure::new(
        Code::INTERNAL,
        format!(
            "cannot open {} for the process's output: {e}",
            path.display()
        ),
    )
}

fn open_fifo(path: &str, flags: OFlag) -> Result<OwnedFd, Failure> {
    nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
        Failure::new(
            Code::INTERNAL,
            format!("cannot open the process's stream {path}: {e}"),
        )
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Failure> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Failure::new(Code::INTERNAL, format!("cannot make a pipe: {e}")))
}

fn eventfd() -> Result<OwnedFd, Failure> {
    // SAFETY: eventfd returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(Failure::new(
            Code::INTERNAL,
            format!(
                "cannot make an eventfd: {}",
                std::io::Error::last_os_error()
            ),
        ));
    }
    // SAFETY: just made, ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Starts the logging program of a `binary://` URI: the process's output on its descriptor 3,
/// its error output on 4, and 5 to close once it is ready, which the shim waits for (10 s).
fn spawn_logger(
    target: &Target,
    id: &str,
    namespace: &str,
    out: OwnedFd,
    err: Option<OwnedFd>,
) -> Result<(), Failure> {
    let Target::Binary { path, args } = target else {
        unreachable!("only for binary targets")
    };
    let (ready_read, ready_write) = pipe()?;
    let err = match err {
        Some(fd) => fd,
        None => nix::fcntl::open(
            "/dev/null",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Failure::new(Code::INTERNAL, format!("cannot open /dev/null: {e}")))?,
    };
    let fds: [RawFd; 3] = [out.as_raw_fd(), err.as_raw_fd(), ready_write.as_raw_fd()];
    let mut command = std::process::Command::new(path);
    command
        .args(args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the closure runs between fork and exec and makes only fcntl and dup2 calls,
    // which are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            let mut moved = [0; 3];
            for (i, fd) in fds.iter().enumerate() {
                moved[i] = libc::fcntl(*fd, libc::F_DUPFD, 10);
                if moved[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in moved.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    // The shim's reaper reaps it when it exits: nothing waits for it here.
    let child = command.spawn().map_err(|e| {
        Failure::new(
            Code::INTERNAL,
            format!("cannot start the logging program {}: {e}", path.display()),
        )
    })?;
    drop((out, err, ready_write));
    let mut fds = [PollFd::new(ready_read.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(10_000u16)) {
        Ok(n) if n > 0 => Ok(()),
        _ => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            Err(Failure::new(
                Code::DEADLINE_EXCEEDED,
                format!(
                    "the logging program {} did not close descriptor 5 within 10 s",
                    path.display()
                ),
            ))
        }
    }
}

/// Copies the input FIFO into `to` until its writer leaves or `stop` is signalled; then closes
/// `to`, so the process reads end-of-file.
fn copy_input(
    fifo: OwnedFd,
    to: Arc<Mutex<Option<File>>>,
    stop: Arc<OwnedFd>,
) -> Result<(), Failure> {
    spawn("stdin", move || {
        let mut fifo = File::from(fifo);
        let mut buf = [0u8; 4096];
        loop {
            let mut fds = [
                PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
                Ok(_) => {}
            }
            if fds[1].any().unwrap_or(true) {
                break;
            }
            match fifo.read(&mut buf) {
                // No writer any more (ctr closed its end).
                Ok(0) => break,
                Ok(n) => {
                    let mut to = to.lock().unwrap();
                    let written = to.as_mut().map(|out| out.write_all(&buf[..n]));
                    if !matches!(written, Some(Ok(()))) {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        to.lock().unwrap().take();
    })
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), Failure> {
    std::thread::Builder::new()
        .name(name.into())
        // The copies keep a 4 KiB buffer: a small stack is plenty.
        .stack_size(64 * 1024)
        .spawn(f)
        .map(drop)
        .map_err(|e| Failure::new(Code::INTERNAL, format!("cannot start a thread: {e}")))
}

impl Io {
    /// The streams of a process that does not exist yet (an exec before its start).
    pub fn named(paths: Paths) -> Io {
        Io {
            paths,
            ..Io::default()
        }
    }

    /// Takes the terminal's pty master and starts copying: its output to stdout, the input FIFO
    /// to it.
    pub fn attach_console(&mut self, master: OwnedFd) -> Result<(), Failure> {
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| Failure::new(Code::INTERNAL, format!("cannot dup the pty: {e}")))
        };
        if let Some(out) = self.terminal_out.take() {
            let (done, output_done) = mpsc::channel();
            self.output_done = Some(output_done);
            let mut from = File::from(dup(&master)?);
            let mut out = out;
            spawn("pty-out", move || {
                let mut buf = [0u8; 4096];
                loop {
                    match from.read(&mut buf) {
                        // EIO: the last holder of the pty's other end closed it.
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if out.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                drop(out);
                let _ = done.send(());
            })?;
        }
        if let (Some(fifo), Some(stop)) = (self.stdin_fifo.take(), self.stop.clone()) {
            *self.stdin.lock().unwrap() = Some(File::from(dup(&master)?));
            copy_input(fifo, self.stdin.clone(), stop)?;
        }
        self.console = Some(master);
        Ok(())
    }

    /// CloseIO: the process reads end-of-file on its standard input.
    pub fn close_stdin(&self) {
        self.stdin.lock().unwrap().take();
    }

    /// ResizePty.
    pub fn resize(&self, width: u32, height: u32) -> Result<(), Failure> {
        let Some(master) = &self.console else {
            return Err(Failure::new(
                Code::FAILED_PRECONDITION,
                "the process has no terminal to resize",
            ));
        };
        let size = libc::winsize {
            ws_row: height as u16,
            ws_col: width as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize we own, on a pty master we hold.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
            return Err(Failure::new(
                Code::INTERNAL,
                format!(
                    "cannot resize the terminal: {}",
                    std::io::Error::last_os_error()
                ),
            ));
        }
        Ok(())
    }

    /// The process is gone: the input copy ends.
    pub fn stop_input(&self) {
        if let Some(stop) = &self.stop {
            let one: u64 = 1;
            // SAFETY: an 8-byte write to an eventfd we hold.
            unsafe { libc::write(stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// What to wait on for a terminal's output to be copied to the end (the runc shim waits up
    /// to 2 s before it deletes); to be waited on without holding the shim's lock.
    pub fn output_done(&mut self) -> Option<mpsc::Receiver<()>> {
        self.output_done.take()
    }

    /// Lets go of everything: the FIFOs' read ends, the terminal.
    pub fn close(&mut self) {
        self.stop_input();
        self.output_done = None;
        self.keep.clear();
        self.console = None;
        self.stdin.lock().unwrap().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_read_as_containerd_writes_them() {
        assert_eq!(target("stdout", "").unwrap(), Target::Null);
        assert_eq!(
            target("stdout", "/run/containerd/fifo/1/web-stdout").unwrap(),
            Target::Fifo("/run/containerd/fifo/1/web-stdout".into())
        );
        assert_eq!(
            target("stdout", "file:///var/log/web%20app.log").unwrap(),
            Target::File("/var/log/web app.log".into())
        );
        assert_eq!(
            target("stdout", "binary:///usr/bin/logger?tag=web&debug&x=a+b%2Fc").unwrap(),
            Target::Binary {
                path: "/usr/bin/logger".into(),
                args: vec![
                    "tag".into(),
                    "web".into(),
                    "debug".into(),
                    "x".into(),
                    "a b/c".into()
                ]
            }
        );
        let err = target("stdout", "http://example/x").unwrap_err();
        assert_eq!(err.code, Code::INVALID_ARGUMENT);
        assert!(err.message.contains("\"http\""), "{}", err.message);
        assert!(target("stdout", "file://host/x").is_err());
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
        assert_eq!(percent_decode("%41%42"), "AB");
    }
}
