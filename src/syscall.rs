//! The kernel seam: the privileged calls berth makes while it builds a container, behind a trait,
//! so unit tests can run the same code without root and assert the exact calls it made.

use std::cell::RefCell;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};

bitflags::bitflags! {
    /// The flags of one mount (not of its filesystem) that fsmount(2) and mount_setattr(2) set
    /// (`MOUNT_ATTR_*`); the access-time mode is [`Atime`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Attr: u64 {
        const RDONLY = libc::MOUNT_ATTR_RDONLY;
        const NOSUID = libc::MOUNT_ATTR_NOSUID;
        const NODEV = libc::MOUNT_ATTR_NODEV;
        const NOEXEC = libc::MOUNT_ATTR_NOEXEC;
        const NODIRATIME = libc::MOUNT_ATTR_NODIRATIME;
        const NOSYMFOLLOW = libc::MOUNT_ATTR_NOSYMFOLLOW;
    }
}

/// A mount's access-time mode: one of three, not flags (`MOUNT_ATTR__ATIME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Atime {
    Relatime,
    Noatime,
    Strictatime,
}

impl Atime {
    fn bits(self) -> u64 {
        match self {
            Atime::Relatime => libc::MOUNT_ATTR_RELATIME,
            Atime::Noatime => libc::MOUNT_ATTR_NOATIME,
            Atime::Strictatime => libc::MOUNT_ATTR_STRICTATIME,
        }
    }
}

/// What one mount_setattr(2) call changes: flags set and cleared, the access-time mode, and the
/// propagation (`MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE` or `MS_UNBINDABLE`; empty to keep it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountAttr {
    pub set: Attr,
    pub clear: Attr,
    pub atime: Option<Atime>,
    pub propagation: MsFlags,
}

impl Default for MountAttr {
    fn default() -> Self {
        MountAttr {
            set: Attr::empty(),
            clear: Attr::empty(),
            atime: None,
            propagation: MsFlags::empty(),
        }
    }
}

impl MountAttr {
    pub fn is_empty(&self) -> bool {
        *self == MountAttr::default()
    }
}

/// Shown as `+RDONLY -NOSUID atime=Noatime MS_SLAVE`, for recorded calls.
impl std::fmt::Display for MountAttr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.set.is_empty() {
            parts.push(format!("+{}", names(self.set)));
        }
        if !self.clear.is_empty() {
            parts.push(format!("-{}", names(self.clear)));
        }
        if let Some(atime) = self.atime {
            parts.push(format!("atime={atime:?}"));
        }
        if !self.propagation.is_empty() {
            parts.push(names(self.propagation));
        }
        f.write_str(&parts.join(" "))
    }
}

/// One fsconfig(2) command on a filesystem context.
#[derive(Clone, Copy, Debug)]
pub enum FsConfig<'a> {
    /// An option without a value (`ro`, `nosuid` for some filesystems, a cgroup controller).
    Flag(&'a str),
    /// An option with a value (`mode=755`).
    String(&'a str, &'a str),
    /// An option whose value is a descriptor (procfs's `pidns`).
    Fd(&'a str, BorrowedFd<'a>),
    /// Make the filesystem from the options given.
    Create,
}

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
    /// open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount at `source` (and of the
    /// mounts below it when `recursive`), which nothing can reach until it is moved somewhere.
    fn open_tree(&self, source: &Path, recursive: bool) -> Result<OwnedFd, Errno>;
    /// The same for the mount of what `source` is open on (AT_EMPTY_PATH): no path is looked
    /// up, so neither a swapped path nor a /proc without `self` gets in the way.
    fn clone_mount(&self, source: BorrowedFd, recursive: bool) -> Result<OwnedFd, Errno>;
    /// fsopen(2): a context to make a new filesystem of type `fstype` in.
    fn fsopen(&self, fstype: &str) -> Result<OwnedFd, Errno>;
    fn fsconfig(&self, context: BorrowedFd, command: FsConfig) -> Result<(), Errno>;
    /// fsmount(2): a detached mount of the filesystem made in `context`, with `attr`.
    fn fsmount(&self, context: BorrowedFd, attr: Attr, atime: Atime) -> Result<OwnedFd, Errno>;
    /// mount_setattr(2) on the mount `mount` is (on every mount below it too when `recursive`).
    fn mount_setattr(
        &self,
        mount: BorrowedFd,
        recursive: bool,
        attr: &MountAttr,
    ) -> Result<(), Errno>;
    /// move_mount(2): attaches the mount `mount` is on the directory or file `target` is.
    fn move_mount(&self, mount: BorrowedFd, target: BorrowedFd) -> Result<(), Errno>;
}

/// A descriptor a system call returned, or its error.
fn new_fd(rc: libc::c_long) -> Result<OwnedFd, Errno> {
    let fd = Errno::result(rc)?;
    // SAFETY: the call returned a new descriptor, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn c_string(text: &[u8]) -> Result<CString, Errno> {
    CString::new(text).map_err(|_| Errno::EINVAL)
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

    fn open_tree(&self, source: &Path, recursive: bool) -> Result<OwnedFd, Errno> {
        let path = c_string(source.as_os_str().as_bytes())?;
        let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
        if recursive {
            flags |= libc::AT_RECURSIVE as libc::c_uint;
        }
        // SAFETY: a NUL-terminated path that outlives the call.
        new_fd(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) })
    }

    fn clone_mount(&self, source: BorrowedFd, recursive: bool) -> Result<OwnedFd, Errno> {
        let mut flags =
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as libc::c_uint;
        if recursive {
            flags |= libc::AT_RECURSIVE as libc::c_uint;
        }
        // SAFETY: a descriptor and an empty NUL-terminated path that outlive the call.
        new_fd(unsafe {
            libc::syscall(libc::SYS_open_tree, source.as_raw_fd(), c"".as_ptr(), flags)
        })
    }

    fn fsopen(&self, fstype: &str) -> Result<OwnedFd, Errno> {
        let fstype = c_string(fstype.as_bytes())?;
        // SAFETY: a NUL-terminated name that outlives the call.
        new_fd(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) })
    }

    fn fsconfig(&self, context: BorrowedFd, command: FsConfig) -> Result<(), Errno> {
        let (cmd, key, value, aux) = match command {
            FsConfig::Flag(key) => (libc::FSCONFIG_SET_FLAG, Some(key), None, 0),
            FsConfig::String(key, value) => (libc::FSCONFIG_SET_STRING, Some(key), Some(value), 0),
            FsConfig::Fd(key, fd) => (libc::FSCONFIG_SET_FD, Some(key), None, fd.as_raw_fd()),
            FsConfig::Create => (libc::FSCONFIG_CMD_CREATE, None, None, 0),
        };
        let key = key.map(|k| c_string(k.as_bytes())).transpose()?;
        let value = value.map(|v| c_string(v.as_bytes())).transpose()?;
        let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        // SAFETY: NUL-terminated strings (or null) that outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                context.as_raw_fd(),
                cmd,
                ptr(&key),
                ptr(&value),
                aux,
            )
        };
        Errno::result(rc).map(drop)
    }

    fn fsmount(&self, context: BorrowedFd, attr: Attr, atime: Atime) -> Result<OwnedFd, Errno> {
        let flags = attr.bits() | atime.bits();
        // SAFETY: fsmount reads only the descriptor and the two numbers.
        new_fd(unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                context.as_raw_fd(),
                libc::FSMOUNT_CLOEXEC,
                flags,
            )
        })
    }

    fn mount_setattr(
        &self,
        mount: BorrowedFd,
        recursive: bool,
        attr: &MountAttr,
    ) -> Result<(), Errno> {
        // MsFlags are a c_ulong: 32 bits wide on 32-bit targets.
        #[allow(clippy::unnecessary_cast)]
        let propagation = attr.propagation.bits() as u64;
        let mut raw = libc::mount_attr {
            attr_set: attr.set.bits(),
            attr_clr: attr.clear.bits(),
            propagation,
            userns_fd: 0,
        };
        if let Some(atime) = attr.atime {
            // The mode is a field, not flags: clear the whole field, then set the one asked for.
            raw.attr_clr |= libc::MOUNT_ATTR__ATIME;
            raw.attr_set |= atime.bits();
        }
        let mut flags = libc::AT_EMPTY_PATH;
        if recursive {
            flags |= libc::AT_RECURSIVE;
        }
        // SAFETY: an empty NUL-terminated path and a mount_attr that outlive the call, with its
        // true size.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                mount.as_raw_fd(),
                c"".as_ptr(),
                flags,
                &raw as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        Errno::result(rc).map(drop)
    }

    fn move_mount(&self, mount: BorrowedFd, target: BorrowedFd) -> Result<(), Errno> {
        let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
        // SAFETY: two descriptors and empty NUL-terminated paths that outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                mount.as_raw_fd(),
                c"".as_ptr(),
                target.as_raw_fd(),
                c"".as_ptr(),
                flags,
            )
        };
        Errno::result(rc).map(drop)
    }
}

/// A double that records each call as one line of text and succeeds, for unit tests. The
/// descriptors it returns for detached mounts are empty memfds named after what they stand for
/// (the source of open_tree, the type of fsopen), and later lines show that name.
#[derive(Default)]
pub struct Recorder {
    pub calls: RefCell<Vec<String>>,
}

impl Recorder {
    fn record(&self, line: String) -> Result<(), Errno> {
        self.calls.borrow_mut().push(line);
        Ok(())
    }

    /// A new descriptor that later lines call `name`.
    fn named_fd(&self, name: String) -> Result<OwnedFd, Errno> {
        use nix::sys::memfd::{memfd_create, MFdFlags};
        memfd_create(name.as_str(), MFdFlags::MFD_CLOEXEC)
    }

    /// What `fd` stands for: the name `named_fd` gave it, or the path it is open on.
    fn fd_name(&self, fd: BorrowedFd) -> String {
        shown(Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())))
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
            // A memfd of `named_fd`: `/memfd:NAME (deleted)`.
            let text = real.to_string_lossy();
            if let Some(name) = text.strip_prefix("/memfd:") {
                return name.trim_end_matches(" (deleted)").to_string();
            }
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

    fn open_tree(&self, source: &Path, recursive: bool) -> Result<OwnedFd, Errno> {
        let source = shown(source);
        let rec = if recursive { " AT_RECURSIVE" } else { "" };
        self.record(format!("open_tree {source}{rec}"))?;
        self.named_fd(source)
    }

    fn clone_mount(&self, source: BorrowedFd, recursive: bool) -> Result<OwnedFd, Errno> {
        let source = self.fd_name(source);
        let rec = if recursive { " AT_RECURSIVE" } else { "" };
        self.record(format!("open_tree {source}{rec}"))?;
        self.named_fd(source)
    }

    fn fsopen(&self, fstype: &str) -> Result<OwnedFd, Errno> {
        self.record(format!("fsopen {fstype}"))?;
        self.named_fd(fstype.to_string())
    }

    fn fsconfig(&self, context: BorrowedFd, command: FsConfig) -> Result<(), Errno> {
        let what = match command {
            FsConfig::Flag(key) => key.to_string(),
            FsConfig::String(key, value) => format!("{key}={value}"),
            FsConfig::Fd(key, fd) => format!("{key}={}", self.fd_name(fd)),
            FsConfig::Create => "create".to_string(),
        };
        self.record(format!("fsconfig {} {what}", self.fd_name(context)))
    }

    fn fsmount(&self, context: BorrowedFd, attr: Attr, atime: Atime) -> Result<OwnedFd, Errno> {
        let name = self.fd_name(context);
        self.record(format!("fsmount {name} {} atime={atime:?}", names(attr)))?;
        self.named_fd(name)
    }

    fn mount_setattr(
        &self,
        mount: BorrowedFd,
        recursive: bool,
        attr: &MountAttr,
    ) -> Result<(), Errno> {
        let rec = if recursive { " AT_RECURSIVE" } else { "" };
        self.record(format!("mount_setattr {} {attr}{rec}", self.fd_name(mount)))
    }

    fn move_mount(&self, mount: BorrowedFd, target: BorrowedFd) -> Result<(), Errno> {
        let target = shown(Path::new(&format!("/proc/self/fd/{}", target.as_raw_fd())));
        self.record(format!("move_mount {} {target}", self.fd_name(mount)))
    }
}
