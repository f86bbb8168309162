//! Subcommands that attempt something a container may forbid and report `ok` or the errno name:
//! try-syscall, raw-syscall, mknod-open and open-exe.

use crate::{names, Failure, Outcome};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::net::TcpListener;
use std::{fs, mem, ptr};

/// The calls `try-syscall` knows, as shown in the usage.
pub const SYSCALL_NAMES: &str =
    "unshare|unshare-user|mount|chroot|sethostname|setuid|socket-raw|bind-low|getcwd|uname|fchmodat2";

type Attempt = fn() -> io::Result<()>;

/// Each call `try-syscall` can attempt. Every one is harmless when it succeeds: it changes
/// nothing that outlives the helper, or puts back what it changed.
const SYSCALLS: &[(&str, Attempt)] = &[
    ("unshare", unshare_mount_namespace),
    ("unshare-user", unshare_user_namespace),
    ("mount", mount_tmp_on_itself),
    ("chroot", chroot_to_root),
    ("sethostname", set_same_hostname),
    ("setuid", become_nobody),
    ("socket-raw", open_raw_socket),
    ("bind-low", bind_low_port),
    ("getcwd", || std::env::current_dir().map(drop)),
    ("uname", call_uname),
    ("fchmodat2", chmod_dev_null_as_it_is),
];

/// `try-syscall NAME`: attempts the call, prints `ok` or the errno name, exits 0 or 1.
pub fn try_syscall(args: &[String]) -> Outcome {
    let [name] = args else {
        return Err(Failure::Usage);
    };
    let (_, attempt) = SYSCALLS
        .iter()
        .find(|(known, _)| known == name)
        .ok_or(Failure::Usage)?;
    report(attempt())
}

/// `raw-syscall NR`: makes syscall number NR with six zero arguments, as a program built for a
/// newer kernel would, and prints `ok` or the errno name (exit 0 or 1). Meant for numbers no
/// kernel has yet, or calls for which zero arguments do nothing.
pub fn raw_syscall(args: &[String]) -> Outcome {
    let [nr] = args else {
        return Err(Failure::Usage);
    };
    let nr: libc::c_long = nr.parse().map_err(|_| Failure::Usage)?;
    // SAFETY: the caller picks a number for which six zero arguments touch no memory of ours.
    let rc = unsafe { libc::syscall(nr, 0, 0, 0, 0, 0, 0) };
    report(if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    })
}

/// `mknod-open PATH MAJOR MINOR`: makes a block device node and opens it for reading, printing
/// `mknod RESULT` and `open RESULT`; the node is removed again if it was made here.
pub fn mknod_open(args: &[String]) -> Outcome {
    let [path, major, minor] = args else {
        return Err(Failure::Usage);
    };
    let major: u32 = major.parse().map_err(|_| Failure::Usage)?;
    let minor: u32 = minor.parse().map_err(|_| Failure::Usage)?;
    let device = libc::makedev(major, minor);
    let node = c_path(path).map_err(|error| Failure::io(path, error))?;
    // SAFETY: `node` is a valid C string.
    let made = check(unsafe { libc::mknod(node.as_ptr(), libc::S_IFBLK | 0o600, device) });
    let opened = OpenOptions::new().read(true).open(path).map(drop);
    println!("mknod {}", result_word(&made));
    println!("open {}", result_word(&opened));
    if made.is_ok() {
        fs::remove_file(path).map_err(|error| Failure::io(path, error))?;
    }
    Ok(if made.is_ok() && opened.is_ok() { 0 } else { 1 })
}

/// `open-exe PATH`: opens PATH for writing, without truncating or writing anything, and prints
/// `ok` or the errno name. A container must not be able to do this to the runtime's binary
/// through /proc/PID/exe (CVE-2019-5736).
pub fn open_exe(args: &[String]) -> Outcome {
    let [path] = args else {
        return Err(Failure::Usage);
    };
    report(OpenOptions::new().write(true).open(path).map(drop))
}

/// Prints `ok` and exits 0, or prints the errno name and exits 1.
pub fn report(result: io::Result<()>) -> Outcome {
    println!("{}", result_word(&result));
    Ok(if result.is_ok() { 0 } else { 1 })
}

fn result_word(result: &io::Result<()>) -> String {
    match result {
        Ok(()) => "ok".to_string(),
        Err(error) => match error.raw_os_error() {
            Some(errno) => names::errno_name(errno),
            None => error.to_string(),
        },
    }
}

/// A new mount namespace needs CAP_SYS_ADMIN, and Docker's seccomp profile blocks it.
fn unshare_mount_namespace() -> io::Result<()> {
    // SAFETY: unshare takes no pointers; the new namespace dies with the helper.
    check(unsafe { libc::unshare(libc::CLONE_NEWNS) })
}

fn unshare_user_namespace() -> io::Result<()> {
    // SAFETY: unshare takes no pointers; the new namespace dies with the helper.
    check(unsafe { libc::unshare(libc::CLONE_NEWUSER) })
}

/// Bind-mounts /tmp on itself and unmounts it again at once, so nothing is left changed.
fn mount_tmp_on_itself() -> io::Result<()> {
    let tmp = c_path("/tmp")?;
    // SAFETY: source and target are a valid C string; type and data may be null for a bind.
    check(unsafe {
        libc::mount(
            tmp.as_ptr(),
            tmp.as_ptr(),
            ptr::null(),
            libc::MS_BIND,
            ptr::null(),
        )
    })?;
    // SAFETY: `tmp` is a valid C string; this undoes the bind mount just made.
    check(unsafe { libc::umount2(tmp.as_ptr(), libc::MNT_DETACH) })
}

/// Needs CAP_SYS_CHROOT; changing the root to itself changes nothing.
fn chroot_to_root() -> io::Result<()> {
    let root = c_path("/")?;
    // SAFETY: `root` is a valid C string.
    check(unsafe { libc::chroot(root.as_ptr()) })
}

/// Sets the hostname to what it already is; needs CAP_SYS_ADMIN over the UTS namespace.
fn set_same_hostname() -> io::Result<()> {
    let mut name = [0u8; 65];
    // SAFETY: the buffer is 65 bytes, the longest hostname plus its NUL.
    check(unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) })?;
    let length = name
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(name.len());
    // SAFETY: the first `length` bytes of the buffer are the current hostname.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), length) })
}

/// Becoming `nobody` needs CAP_SETUID; the helper exits right after.
fn become_nobody() -> io::Result<()> {
    // SAFETY: setuid takes no pointers.
    check(unsafe { libc::setuid(65534) })
}

/// A raw ICMP socket needs CAP_NET_RAW.
fn open_raw_socket() -> io::Result<()> {
    // SAFETY: socket takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    check(fd)?;
    // SAFETY: `fd` is the socket just opened, owned by nobody else.
    check(unsafe { libc::close(fd) })
}

/// Ports below 1024 need CAP_NET_BIND_SERVICE; port 1 is almost never in use.
fn bind_low_port() -> io::Result<()> {
    TcpListener::bind("0.0.0.0:1").map(drop)
}

/// A harmless call, for seccomp profiles written to deny it.
fn call_uname() -> io::Result<()> {
    // SAFETY: utsname is plain data that uname fills in.
    let mut names: libc::utsname = unsafe { mem::zeroed() };
    // SAFETY: `names` is a valid utsname owned by this frame.
    check(unsafe { libc::uname(&mut names) })
}

/// fchmodat2 (Linux 6.6), as glibc 2.39 calls it for `fchmodat(AT_SYMLINK_NOFOLLOW)` and
/// `lchmod`: sets /dev/null's mode to what it is, through the raw syscall number.
fn chmod_dev_null_as_it_is() -> io::Result<()> {
    let path = c_path("/dev/null")?;
    let mode = fs::metadata("/dev/null")?.permissions();
    let mode = std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777;
    // SAFETY: `path` is a valid C string; the other arguments are plain numbers.
    let rc = unsafe {
        libc::syscall(
            SYS_FCHMODAT2,
            libc::AT_FDCWD,
            path.as_ptr(),
            mode,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(rc as libc::c_int)
}

/// fchmodat2's number, the same on x86_64 and aarch64 (older libc crates lack the constant).
const SYS_FCHMODAT2: libc::c_long = 452;

fn c_path(path: &str) -> io::Result<CString> {
    CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Turns a libc status, -1 with errno set on failure, into a result.
fn check(status: libc::c_int) -> io::Result<()> {
    if status == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
