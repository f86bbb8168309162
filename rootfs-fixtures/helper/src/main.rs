//! berth-helper: a static multi-call program that berth's tests run inside containers.
//!
//! `helper SUBCOMMAND ARGS...` prints plain, line-oriented output a test can assert on. Exit
//! status: what the subcommand reports (0 for success), 1 when it fails, 2 for a usage mistake.
#![cfg_attr(not(test), no_main)]

mod attacker;
mod files;
mod format;
mod info;
mod ipc;
mod names;
mod net;
mod probe;
mod probes;
mod process;
mod raw;
mod steal;

use std::fmt;
use std::io;

/// Why a subcommand could not do its work.
#[derive(Debug)]
pub enum Failure {
    /// The arguments do not fit the subcommand: its usage line is printed and the exit status is 2.
    Usage,
    /// An operation on `what` (a path, a call, an address) failed.
    Io { what: String, error: io::Error },
}

impl Failure {
    pub fn io(what: impl Into<String>, error: io::Error) -> Self {
        Failure::Io {
            what: what.into(),
            error,
        }
    }

    /// The failure of a libc call that reported it through errno.
    pub fn last_os(what: impl Into<String>) -> Self {
        Failure::io(what, io::Error::last_os_error())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage => write!(f, "wrong arguments"),
            Failure::Io { what, error } => match error.raw_os_error() {
                Some(errno) => write!(f, "{what}: {}: {error}", names::errno_name(errno)),
                None => write!(f, "{what}: {error}"),
            },
        }
    }
}

/// A subcommand's result: its exit status, or why it failed.
pub type Outcome = Result<i32, Failure>;

type Command = fn(&[String]) -> Outcome;

/// Every subcommand: its name, its arguments as shown in the usage, and the function that runs it.
const COMMANDS: &[(&str, &str, Command)] = &[
    ("true", "", process::succeed),
    ("false", "", process::fail),
    ("exit", "N", process::exit),
    ("echo", "ARGS...", process::echo),
    ("sleep", "SECONDS", process::sleep),
    ("pause", "", process::pause),
    ("alloc", "MIB", process::alloc),
    ("fork", "N", process::fork),
    ("ids", "", info::ids),
    ("caps", "", info::caps),
    ("has-cap", "NAME", info::has_cap),
    ("nnp", "", info::no_new_privs),
    ("seccomp", "", info::seccomp),
    ("signals", "", info::signals),
    ("env", "", info::env),
    ("cwd", "", info::cwd),
    ("hostname", "", info::hostname),
    ("umask", "", info::umask),
    ("rlimits", "", info::rlimits),
    ("oom-score-adj", "", info::oom_score_adj),
    ("mounts", "", info::mounts),
    ("cgroup", "", info::cgroup),
    ("ns", "", info::namespaces),
    ("pid", "", info::pid),
    ("fds", "", info::fds),
    ("isatty", "[FD]", info::isatty),
    ("winsize", "", info::winsize),
    ("wait-winch", "", info::wait_winch),
    ("cat", "FILE", files::cat),
    ("write", "FILE TEXT", files::write),
    ("stat", "PATH", files::stat),
    ("ls", "DIR", files::ls),
    ("listen", "tcp|udp PORT [TEXT]", net::listen),
    ("connect", "HOST PORT", net::connect),
    (
        "raw-frame",
        "IFACE DST_MAC SRC_MAC SRC_IP DST_IP udp|tcp PORT",
        raw::raw_frame,
    ),
    ("msgq-send", "KEY TEXT", ipc::send),
    ("msgq-recv", "KEY", ipc::receive),
    ("try-syscall", probes::SYSCALL_NAMES, probes::try_syscall),
    ("raw-syscall", "NR", probes::raw_syscall),
    ("mknod-open", "PATH MAJOR MINOR", probes::mknod_open),
    ("open-exe", "PATH", probes::open_exe),
    ("steal-exe", "DIR", steal::steal_exe),
    ("probe-procs", "DIR", probe::probe_procs),
];

/// Runs `helper SUBCOMMAND ARGS...` (`args` includes the program name) and returns the exit status.
fn run(args: &[String]) -> i32 {
    let Some((name, rest)) = args.get(1..).and_then(|args| args.split_first()) else {
        print_usage();
        return 2;
    };
    let Some(&(_, synopsis, command)) = COMMANDS.iter().find(|(known, ..)| known == name) else {
        eprintln!("helper: unknown subcommand {name}");
        print_usage();
        return 2;
    };
    match command(rest) {
        Ok(status) => status,
        Err(Failure::Usage) => {
            eprintln!("usage: helper {}", format!("{name} {synopsis}").trim_end());
            2
        }
        Err(failure) => {
            eprintln!("helper {name}: {failure}");
            1
        }
    }
}

fn print_usage() {
    eprintln!("usage: helper SUBCOMMAND [ARGS...]");
    for (name, synopsis, _) in COMMANDS {
        eprintln!("  {}", format!("{name} {synopsis}").trim_end());
    }
}

// The helper starts from a C `main` rather than Rust's usual entry point, which would set SIGPIPE
// to ignored and reopen closed standard descriptors on /dev/null: `signals` and `fds` must report
// exactly what the runtime handed over. (std still finds the arguments on glibc.)
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    let args: Vec<String> = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    // process::exit flushes stdout, which returning to libc would not.
    std::process::exit(run(&args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(args: &[&str]) -> i32 {
        let args: Vec<String> = ["helper"]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect();
        run(&args)
    }

    #[test]
    fn exit_statuses_follow_the_subcommand() {
        assert_eq!(run_with(&["true"]), 0);
        assert_eq!(run_with(&["false"]), 1);
        assert_eq!(run_with(&["exit", "7"]), 7);
        assert_eq!(run_with(&["exit", "255"]), 255);
    }

    #[test]
    fn usage_mistakes_exit_2() {
        assert_eq!(run_with(&[]), 2);
        assert_eq!(run_with(&["no-such-subcommand"]), 2);
        assert_eq!(run_with(&["exit"]), 2);
        assert_eq!(run_with(&["exit", "256"]), 2);
        assert_eq!(run_with(&["exit", "seven"]), 2);
        assert_eq!(run_with(&["true", "extra"]), 2);
        assert_eq!(run_with(&["sleep", "-1"]), 2);
        assert_eq!(run_with(&["has-cap", "CAP_NO_SUCH_THING"]), 2);
        assert_eq!(run_with(&["listen", "sctp", "80"]), 2);
        assert_eq!(run_with(&["try-syscall", "no-such-call"]), 2);
        assert_eq!(run_with(&["raw-syscall", "fork"]), 2);
    }

    #[test]
    fn subcommand_names_are_unique() {
        for (index, (name, ..)) in COMMANDS.iter().enumerate() {
            assert!(
                COMMANDS[index + 1..]
                    .iter()
                    .all(|(other, ..)| other != name),
                "{name} is listed twice"
            );
        }
    }

    #[test]
    fn failures_name_the_errno() {
        let failure = Failure::io("/nope", io::Error::from_raw_os_error(libc::ENOENT));
        assert!(failure.to_string().starts_with("/nope: ENOENT: "));
    }
}
