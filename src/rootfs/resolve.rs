//! Paths inside the root filesystem, resolved inside it (openat2 with RESOLVE_IN_ROOT), so the
//! image's own symlinks and `..` cannot lead out of it.

use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};

/// A path inside the root filesystem without its leading `/` (the kernel resolves `..` inside).
pub(super) fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect()
}

/// The `/proc/self/fd/N` path that stands for an open descriptor.
pub(super) fn fd_path(fd: RawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

/// Opens `path` inside the root `root` as O_PATH, resolving symlinks and `..` as if `root` were `/`.
pub(super) fn open_in_root(
    root: &OwnedFd,
    path: &Path,
    extra: ResolveFlag,
) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | extra);
    let target = clean(path);
    let target = if target.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &target
    };
    nix::fcntl::openat2(root.as_fd(), target, how)
}

/// Opens `path` inside `root`, or `None` when it does not exist (masked and read-only paths the
/// image lacks are left alone).
pub(super) fn open_if_present(root: &OwnedFd, path: &Path) -> Result<Option<OwnedFd>, Errno> {
    match open_in_root(root, path, ResolveFlag::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens (making it if missing) the directory or file `path` inside `root`.
pub(crate) fn make_in_root(root: &OwnedFd, path: &Path, file: bool) -> Result<OwnedFd, Errno> {
    make_in_root_at(root, path, file, 0)
}

fn make_in_root_at(root: &OwnedFd, path: &Path, file: bool, depth: u32) -> Result<OwnedFd, Errno> {
    if depth > 40 {
        return Err(Errno::ELOOP);
    }
    match open_in_root(root, path, ResolveFlag::empty()) {
        Err(Errno::ENOENT) => {}
        other => return other,
    }
    let relative = clean(path);
    let (Some(parent), Some(name)) = (relative.parent(), relative.file_name()) else {
        return Err(Errno::ENOENT);
    };
    let dir = make_in_root_at(root, parent, false, depth + 1)?;
    let created = if file {
        nix::fcntl::openat(
            dir.as_fd(),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop)
    } else {
        nix::sys::stat::mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755))
    };
    match created {
        Ok(()) => open_in_root(root, path, ResolveFlag::empty()),
        Err(Errno::EEXIST) => match open_in_root(root, path, ResolveFlag::empty()) {
            // `name` is a symlink to something missing: make its target, inside the root.
            Err(Errno::ENOENT) => {
                let target = PathBuf::from(nix::fcntl::readlinkat(dir.as_fd(), name)?);
                let next = if target.is_absolute() {
                    target
                } else {
                    parent.join(target)
                };
                make_in_root_at(root, &next, file, depth + 1)
            }
            other => other,
        },
        Err(e) => Err(e),
    }
}

pub(super) fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

pub(super) fn is_directory(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// Whether `fd` is the device node `kind` `major:minor`.
pub(super) fn is_device(fd: &OwnedFd, kind: SFlag, major: u64, minor: u64) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| {
        SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
            && st.st_rdev == nix::sys::stat::makedev(major, minor)
    })
}
