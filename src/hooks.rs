//! Hooks: programs the runtime spec runs at points of the lifecycle, each given the container's
//! state JSON on stdin, with its path, args, env and timeout honoured.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::Duration;

use oci_spec::runtime::Hook;

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
    let mut child = command.spawn().map_err(|source| HookError::Spawn {
        phase,
        path: path.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that exits without reading its stdin is fine.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    if let Some(seconds) = hook.timeout().filter(|&t| t > 0) {
        if !wait_with_timeout(child.id() as i32, Duration::from_secs(seconds as u64)) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout {
                phase,
                path,
                seconds,
            });
        }
    }
    let mut output = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut output);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut output);
    }
    let status = child.wait().map_err(|source| HookError::Spawn {
        phase,
        path: path.clone(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    let outcome = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (_, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "failed".to_string(),
    };
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

/// Waits until the process exits (true) or the time is up (false), without reaping it.
fn wait_with_timeout(pid: i32, timeout: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return true; // Old kernel: fall back to waiting without a limit.
    }
    // SAFETY: the descriptor was just returned to us and is owned here.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let mut pollfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        // SAFETY: one pollfd, valid for the call.
        let rc = unsafe {
            libc::poll(
                &mut pollfd,
                1,
                left.as_millis().min(i32::MAX as u128) as i32,
            )
        };
        match rc {
            1 => return true,
            0 => return false,
            _ if nix::errno::Errno::last() == nix::errno::Errno::EINTR => continue,
            _ => return true,
        }
    }
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
