//! Hooks: programs the runtime spec runs at points of the lifecycle, each given the container's
//! state JSON on stdin, with its path, args, env and timeout honoured.
//!
//! A hook's stdin, stdout and stderr are served together in one poll loop with its exit (a
//! pidfd), so a hook that writes much to stderr before it reads, or never closes its output,
//! cannot stall berth, and the timeout holds whatever it prints. What it prints is kept (its
//! last [`OUTPUT_KEPT`] bytes) for the error message.

use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::Hook;

/// How much of a hook's output an error message shows, at most (the end of it).
pub const OUTPUT_KEPT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{phase} hook {path}: cannot start it: {source}")]
    Spawn {
        phase: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{phase} hook {path} {outcome}{output}")]
    Failed {
        phase: &'static str,
        path: String,
        outcome: String,
        output: String,
    },
    #[error("{phase} hook {path} timed out after {seconds} s")]
    Timeout {
        phase: &'static str,
        path: String,
        seconds: i64,
    },
}

/// Runs `hooks` in order; the first failure stops the rest and is returned.
pub fn run(phase: &'static str, hooks: &[Hook], state_json: &str) -> Result<(), HookError> {
    for hook in hooks {
        run_one(phase, hook, state_json)?;
    }
    Ok(())
}

fn run_one(phase: &'static str, hook: &Hook, state_json: &str) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let mut command = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((first, rest)) = args.split_first() {
            command.arg0(first).args(rest);
        }
    }
    command.env_clear();
    for pair in hook.env().iter().flatten() {
        if let Some((key, value)) = pair.split_once('=') {
            command.env(key, value);
        }
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Only the three pipes reach the hook, as under runc: not the descriptors berth's caller
    // left open, nor those it preserves for the container's program. A startContainer hook
    // runs in the container, from a path the image controls.
    // SAFETY: close_range is async-signal-safe and touches no memory; it runs in the child
    // between fork and exec, after stdio is in place.
    unsafe {
        command.pre_exec(|| {
            libc::syscall(
                libc::SYS_close_range,
                3,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let spawn_error = |source| HookError::Spawn {
        phase,
        path: path.clone(),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    // The spec asks for a timeout above zero; check_hooks refuses others before anything runs.
    let timeout = hook
        .timeout()
        .filter(|&t| t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let served = serve(&mut child, state_json.as_bytes(), timeout);
    let Some(output) = served.map_err(spawn_error)? else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(HookError::Timeout {
            phase,
            path,
            seconds: hook.timeout().unwrap_or(0),
        });
    };
    let status = child.wait().map_err(spawn_error)?;
    if status.success() {
        return Ok(());
    }
    let outcome = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (_, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "failed".to_string(),
    };
    let output = String::from_utf8_lossy(&output);
    let output = output.trim();
    Err(HookError::Failed {
        phase,
        path,
        outcome,
        output: if output.is_empty() {
            String::new()
        } else {
            format!(": {output}")
        },
    })
}

/// Writes `input` to the hook's stdin and reads its stdout and stderr until it exits, all in one
/// poll loop. Returns what it printed (the last OUTPUT_KEPT bytes of both, in the order they
/// came), or None when `timeout` passed first (the hook is still running then). Output that a
/// hook's own children keep writing after it exited is not waited for.
fn serve(
    child: &mut Child,
    mut input: &[u8],
    timeout: Option<Duration>,
) -> std::io::Result<Option<Vec<u8>>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut stdin = child.stdin.take();
    let mut outputs = [
        child.stdout.take().map(OwnedFd::from),
        child.stderr.take().map(OwnedFd::from),
    ];
    for fd in outputs.iter().flatten() {
        set_nonblocking(fd.as_fd())?;
    }
    if let Some(pipe) = &stdin {
        set_nonblocking(pipe.as_fd())?;
    }
    // Without pidfds (before Linux 5.3) the loop looks at the child every 10 ms instead.
    let pidfd = pidfd_open(child.id() as i32);
    let mut kept = Vec::new();
    let mut exited = false;
    loop {
        if input.is_empty() {
            stdin = None; // end-of-file for a hook that reads to the end
        }
        exited = exited || (pidfd.is_none() && child.try_wait()?.is_some());
        if exited {
            // Whatever is in the pipes now, without waiting for writers that outlive the hook.
            for fd in outputs.iter().flatten() {
                drain(fd.as_fd(), &mut kept);
            }
            return Ok(Some(kept));
        }
        let mut wait = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) => left,
                None => return Ok(None),
            },
            None => Duration::MAX,
        };
        if pidfd.is_none() {
            wait = wait.min(Duration::from_millis(10));
        }
        let mut fds = Vec::with_capacity(4);
        let mut roles = Vec::with_capacity(4);
        if let Some(pipe) = &stdin {
            fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLOUT));
            roles.push(Role::Stdin);
        }
        for (index, fd) in outputs.iter().enumerate() {
            if let Some(fd) = fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                roles.push(Role::Output(index));
            }
        }
        if let Some(fd) = &pidfd {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            roles.push(Role::Exit);
        }
        let millis = wait.as_millis().min(i32::MAX as u128) as i32;
        match poll(
            &mut fds,
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno.into()),
        }
        let ready: Vec<(Role, bool)> = fds
            .iter()
            .zip(&roles)
            .map(|(fd, role)| (*role, fd.revents().is_some_and(|r| !r.is_empty())))
            .collect();
        drop(fds);
        for (role, ready) in ready {
            if !ready {
                continue;
            }
            match role {
                Role::Stdin => {
                    let Some(pipe) = stdin.as_mut() else { continue };
                    match pipe.write(input) {
                        Ok(n) => input = &input[n..],
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        // It closed its stdin (EPIPE): a hook need not read the state.
                        Err(_) => input = &[],
                    }
                }
                Role::Output(index) => {
                    let Some(fd) = &outputs[index] else { continue };
                    if !drain(fd.as_fd(), &mut kept) {
                        outputs[index] = None;
                    }
                }
                Role::Exit => exited = true,
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Role {
    Stdin,
    Output(usize),
    Exit,
}

/// Reads what the pipe holds now into `kept` (of which only the last OUTPUT_KEPT bytes stay),
/// at most a few pipes' worth, so a writer as fast as berth cannot keep it from its deadline.
/// Returns false at end-of-file or on an error: the pipe is done.
fn drain(fd: BorrowedFd, kept: &mut Vec<u8>) -> bool {
    let mut buffer = [0u8; 8192];
    for _ in 0..32 {
        match nix::unistd::read(fd, &mut buffer) {
            Ok(0) => return false,
            Ok(n) => {
                kept.extend_from_slice(&buffer[..n]);
                if kept.len() > OUTPUT_KEPT {
                    kept.drain(..kept.len() - OUTPUT_KEPT);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return true,
            Err(_) => return false,
        }
    }
    true
}

fn set_nonblocking(fd: BorrowedFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// A descriptor that polls readable once the process has exited, or None on kernels without it.
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a descriptor just returned to us, owned here.
    (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn state_arrives_on_stdin_and_args_and_env_are_honoured() {
        let out = std::env::temp_dir().join(format!("berth-hook-{}", std::process::id()));
        let script = format!(
            "read -r line; echo \"$0 $1 $HOOKVAR $line\" > {}",
            out.display()
        );
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["myhook","-c",{script:?},"first"],"env":["HOOKVAR=v"]}}"#
        ));
        // `sh -c SCRIPT NAME ARG` gives $0=NAME; here $0 is "first".
        run("prestart", &[h], "{\"id\":\"x\"}\n").unwrap();
        let written = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        assert_eq!(written.trim(), "first  v {\"id\":\"x\"}");
    }

    #[test]
    fn failure_names_the_hook_and_its_output() {
        let h = hook(r#"{"path":"/bin/sh","args":["sh","-c","echo broken >&2; exit 3"]}"#);
        let err = run("createRuntime", &[h], "{}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "createRuntime hook /bin/sh exited with status 3: broken"
        );
    }

    #[test]
    fn a_hook_that_floods_stderr_before_reading_its_stdin_neither_stalls_nor_loses_the_end() {
        // 1 MiB on stderr (sixteen pipes' worth) before the hook reads a byte of its 1 MiB stdin.
        let script = "head -c 1048576 /dev/zero | tr '\\0' x >&2; cat > /dev/null; \
                      echo the end >&2; exit 4";
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c",{script:?}],"timeout":20}}"#
        ));
        let state = format!("{{\"pad\":\"{}\"}}", "y".repeat(1 << 20));
        let started = std::time::Instant::now();
        let err = run("prestart", &[h], &state).unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            err.starts_with("prestart hook /bin/sh exited with status 4: xxx"),
            "{}",
            &err[..80]
        );
        assert!(err.ends_with("xxxthe end"), "{}", &err[err.len() - 40..]);
        // The message keeps the end of the output, not a mebibyte of it.
        assert!(err.len() < OUTPUT_KEPT + 100, "{}", err.len());
    }

    #[test]
    fn the_timeout_holds_while_the_hook_prints_without_end() {
        let h = hook(r#"{"path":"/bin/sh","args":["sh","-c","yes; yes >&2"],"timeout":1}"#);
        let started = std::time::Instant::now();
        let err = run("poststart", &[h], "{}").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(
            err.to_string(),
            "poststart hook /bin/sh timed out after 1 s"
        );
    }

    #[test]
    fn output_held_open_by_a_child_of_the_hook_is_not_waited_for() {
        // The hook exits at once; its background sleep keeps stdout and stderr open for 30 s.
        let h = hook(r#"{"path":"/bin/sh","args":["sh","-c","sleep 30 & echo bye; exit 0"]}"#);
        let started = std::time::Instant::now();
        run("createRuntime", &[h], "{}").unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn timeout_kills_the_hook() {
        let h = hook(r#"{"path":"/bin/sleep","args":["sleep","5"],"timeout":1}"#);
        let started = std::time::Instant::now();
        let err = run("poststart", &[h], "{}").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(
            err.to_string(),
            "poststart hook /bin/sleep timed out after 1 s"
        );
    }
}
