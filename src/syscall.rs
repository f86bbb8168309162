//! The kernel seam: the privileged calls berth makes while it builds a container, behind a trait,
//! so unit tests can run the same code without root and assert the exact calls it made.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};

/// The calls that need privileges. Every method is a thin wrapper over one system call.
pub trait Kernel {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> Result<(), Errno>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno>;
    fn chroot(&self, path: &Path) -> Result<(), Errno>;
    fn fchdir(&self, fd: RawFd) -> Result<(), Errno>;
    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> Result<(), Errno>;
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<(), Errno>;
    fn symlink(&self, target: &Path, link: &Path) -> Result<(), Errno>;
    fn sethostname(&self, name: &str) -> Result<(), Errno>;
    fn setdomainname(&self, name: &str) -> Result<(), Errno>;
    fn setns(&self, fd: RawFd, nstype: CloneFlags) -> Result<(), Errno>;
    fn unshare(&self, flags: CloneFlags) -> Result<(), Errno>;
}

/// The real kernel.
pub struct Linux;

impl Kernel for Linux {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> Result<(), Errno> {
        nix::mount::umount2(target, flags)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chroot(&self, path: &Path) -> Result<(), Errno> {
        nix::unistd::chroot(path)
    }

    fn fchdir(&self, fd: RawFd) -> Result<(), Errno> {
        // SAFETY: fchdir only reads the descriptor; the caller keeps it open for the call.
        Errno::result(unsafe { libc::fchdir(fd) }).map(drop)
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> Result<(), Errno> {
        nix::sys::stat::mknod(path, kind, perm, dev)
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<(), Errno> {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            path,
            Some(uid.into()),
            Some(gid.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<(), Errno> {
        nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, link)
    }

    fn sethostname(&self, name: &str) -> Result<(), Errno> {
        nix::unistd::sethostname(name)
    }

    fn setdomainname(&self, name: &str) -> Result<(), Errno> {
        // SAFETY: the pointer and length describe `name`, which outlives the call.
        let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        Errno::result(rc).map(drop)
    }

    fn setns(&self, fd: RawFd, nstype: CloneFlags) -> Result<(), Errno> {
        // SAFETY: setns only reads the descriptor; the caller keeps it open for the call.
        let rc = unsafe { libc::setns(fd, nstype.bits()) };
        Errno::result(rc).map(drop)
    }

    fn unshare(&self, flags: CloneFlags) -> Result<(), Errno> {
        nix::sched::unshare(flags)
    }
}

/// A double that records each call as one line of text and succeeds, for unit tests.
#[derive(Default)]
pub struct Recorder {
    pub calls: RefCell<Vec<String>>,
}

impl Recorder {
    fn record(&self, line: String) -> Result<(), Errno> {
        self.calls.borrow_mut().push(line);
        Ok(())
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.calls.borrow_mut())
    }
}

/// Flag names joined by `|`, or `0` when there are none.
fn names<B: bitflags::Flags>(flags: B) -> String {
    let list: Vec<&str> = flags.iter_names().map(|(name, _)| name).collect();
    if list.is_empty() {
        "0".into()
    } else {
        list.join("|")
    }
}

/// Shows `/proc/self/fd/N` targets as the path they stand for, so recorded calls read naturally.
fn shown(path: &Path) -> String {
    let mut parts = path.components();
    let fd_dir: PathBuf = parts.by_ref().take(5).collect();
    if fd_dir.starts_with("/proc/self/fd") && fd_dir.components().count() == 5 {
        if let Ok(real) = std::fs::read_link(&fd_dir) {
            let rest = parts.as_path();
            let real = if rest.as_os_str().is_empty() {
                real
            } else {
                real.join(rest)
            };
            return real.display().to_string();
        }
    }
    path.display().to_string()
}

impl Kernel for Recorder {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        self.record(format!(
            "mount {} {} {} {} {}",
            source.map(shown).unwrap_or_else(|| "-".into()),
            shown(target),
            fstype.unwrap_or("-"),
            names(flags),
            data.unwrap_or("-")
        ))
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> Result<(), Errno> {
        self.record(format!("umount2 {} {}", shown(target), names(flags)))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno> {
        self.record(format!("pivot_root {} {}", shown(new_root), shown(put_old)))
    }

    fn chroot(&self, path: &Path) -> Result<(), Errno> {
        self.record(format!("chroot {}", shown(path)))
    }

    fn fchdir(&self, fd: RawFd) -> Result<(), Errno> {
        self.record(format!(
            "fchdir {}",
            shown(Path::new(&format!("/proc/self/fd/{fd}")))
        ))
    }

    fn mknod(&self, path: &Path, kind: SFlag, perm: Mode, dev: u64) -> Result<(), Errno> {
        let (major, minor) = (libc::major(dev), libc::minor(dev));
        self.record(format!(
            "mknod {} {} {:o} {major}:{minor}",
            shown(path),
            names(kind),
            perm.bits()
        ))
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<(), Errno> {
        self.record(format!("chown {} {uid}:{gid}", shown(path)))
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<(), Errno> {
        self.record(format!("symlink {} {}", target.display(), shown(link)))
    }

    fn sethostname(&self, name: &str) -> Result<(), Errno> {
        self.record(format!("sethostname {name}"))
    }

    fn setdomainname(&self, name: &str) -> Result<(), Errno> {
        self.record(format!("setdomainname {name}"))
    }

    fn setns(&self, fd: RawFd, nstype: CloneFlags) -> Result<(), Errno> {
        self.record(format!("setns {fd} {}", names(nstype)))
    }

    fn unshare(&self, flags: CloneFlags) -> Result<(), Errno> {
        self.record(format!("unshare {}", names(flags)))
    }
}
