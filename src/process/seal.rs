//! Running berth from a sealed view of its own binary (CVE-2019-5736).
//!
//! berth clones itself instead of re-executing, so until a container's process runs its program,
//! `/proc/PID/exe` of that process is the file berth was started from. A container process that
//! holds CAP_SYS_PTRACE over berth's user namespace may open that link (non-dumpable is no
//! obstacle to it), keep the descriptor, and reopen `/proc/self/fd/N` for writing once no berth
//! runs any more: the host's berth binary would be replaced. When such a process could see
//! berth's (see `container::exposure`, which decides), berth first re-executes itself from a
//! view of its binary that no one can write, whatever their capabilities:
//!
//! - a private overlayfs with two lower layers and no upper one (the binary's folder over an
//!   empty tmpfs), never attached anywhere: its superblock is read-only, and no mount flag or
//!   remount makes an overlay without an upper layer writable. About 0.1 ms, no copy;
//! - where the kernel cannot make that (no overlayfs, or a kernel older than 6.13, which takes no
//!   layer by descriptor), a memfd copy sealed against writes, shrinking and growing (runc's
//!   older way; the 4 MB copy costs about 2.5 ms).
//!
//! A process started from the view, and every clone of it, shows the view as its exe: opening it
//! for writing fails with EROFS (overlay) and writing to the memfd with EPERM.
//!
//! Use: [`is_sealed`] says whether this process already runs from such a view; [`reexec`]
//! replaces the process with the same program, arguments and environment run from a new view
//! (the command starts again, from `main`). A long-running caller that clones container
//! processes (the shim) calls [`ensure_sealed`] once at start and keeps the view for its life.

use std::ffi::{CStr, CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use nix::errno::Errno;

/// Set in the environment of the re-executed berth, so a view that this process does not
/// recognise as sealed ends in an error rather than in a loop of re-executions.
const REEXEC_MARK: &str = "_BERTH_SEALED_REEXEC";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot open berth's own binary (/proc/self/exe): {0}")]
    Exe(Errno),
    #[error("cannot copy berth's binary into a sealed memfd: {what}: {source}")]
    Memfd { what: &'static str, source: Errno },
    #[error("cannot re-execute berth from a sealed view of its binary: {0}")]
    Exec(Errno),
    #[error(
        "berth was re-executed from a sealed view of its binary but does not see it as sealed"
    )]
    Loop,
}

/// Whether this process runs from a view of its binary that nobody can write: a read-only
/// overlayfs, or a memfd sealed against writes.
pub fn is_sealed() -> bool {
    let Ok(exe) = open(c"/proc/self/exe", libc::O_RDONLY) else {
        return false;
    };
    // SAFETY: statfs and statvfs are plain data; fstatfs and fstatvfs fill them.
    let (mut fs, mut vfs): (libc::statfs, libc::statvfs) = unsafe { std::mem::zeroed() };
    // SAFETY: `exe` is open and both structs are writable.
    let stated = unsafe {
        libc::fstatfs(exe.as_raw_fd(), &mut fs) == 0
            && libc::fstatvfs(exe.as_raw_fd(), &mut vfs) == 0
    };
    if stated && fs.f_type == libc::OVERLAYFS_SUPER_MAGIC && vfs.f_flag & libc::ST_RDONLY != 0 {
        return true;
    }
    // SAFETY: F_GET_SEALS only reads the descriptor's seals (EINVAL for files that have none).
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_WRITE != 0
}

/// Returns at once when this process runs from a sealed view; otherwise re-executes it from a
/// new one (see [`reexec`]) and returns only the error that prevented it.
pub fn ensure_sealed() -> Result<(), SealError> {
    if is_sealed() {
        Ok(())
    } else {
        Err(reexec())
    }
}

/// Replaces this process with berth run from a sealed view of its binary, with the same
/// arguments and environment (and pid, descriptors that are not close-on-exec, signal mask).
/// Returns only if that failed. The caller must hold nothing it would need to undo: the new
/// process starts from `main`.
pub fn reexec() -> SealError {
    if std::env::var_os(REEXEC_MARK).is_some() {
        return SealError::Loop;
    }
    let view = match sealed_view() {
        Ok(view) => view,
        Err(err) => return err,
    };
    let args: Vec<CString> = std::env::args_os().map(c_string).collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .map(|(key, value)| {
            let mut pair = key;
            pair.push("=");
            pair.push(value);
            c_string(pair)
        })
        .collect();
    env.push(c_string(format!("{REEXEC_MARK}=1").into()));
    let pointers = |list: &[CString]| -> Vec<*const libc::c_char> {
        list.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let (argv, envp) = (pointers(&args), pointers(&env));
    // SAFETY: execveat reads the NUL-terminated arrays of C strings, which outlive the call; on
    // success it does not return.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            view.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    SealError::Exec(Errno::last())
}

/// A descriptor of berth's binary seen through a sealed view: the overlay where the kernel can
/// make one, a sealed memfd copy otherwise.
pub fn sealed_view() -> Result<OwnedFd, SealError> {
    match overlay_view() {
        Ok(view) => Ok(view),
        Err(errno) => {
            crate::logging::debug(&format!(
                "no read-only overlay of berth's binary ({errno}): using a sealed memfd copy"
            ));
            memfd_copy()
        }
    }
}

/// Opens berth's binary through a private overlayfs whose lower layers are the binary's folder
/// and an empty tmpfs, with no upper layer (overlayfs needs two lower layers to run without
/// one). Neither mount is attached anywhere: they live as long as a descriptor or a process
/// running the binary holds them.
pub fn overlay_view() -> Result<OwnedFd, Errno> {
    let exe = open(c"/proc/self/exe", libc::O_PATH)?;
    let path = std::fs::read_link("/proc/self/exe").map_err(|_| Errno::ENOENT)?;
    let (folder, name) = split(&path).ok_or(Errno::ENOENT)?;
    // Layers by descriptor came with Linux 6.13, O_PATH ones only with 6.15: open them for reading.
    let folder = open(&folder, libc::O_RDONLY | libc::O_DIRECTORY)?;
    // The name in that folder must still be the file this process runs (not replaced since).
    if identity_at(&folder, &name)? != identity(&exe)? {
        return Err(Errno::ESTALE);
    }
    let empty = fs_context(c"tmpfs")?;
    config(&empty, libc::FSCONFIG_CMD_CREATE, None, None, 0)?;
    let empty = fs_mount(&empty, libc::MOUNT_ATTR_RDONLY)?;
    let empty = open_at(&empty, c".", libc::O_RDONLY | libc::O_DIRECTORY)?;
    let overlay = fs_context(c"overlay")?;
    // The binary's folder on top, so no file of the other layer can stand in for it.
    config(
        &overlay,
        libc::FSCONFIG_SET_FD,
        Some(c"lowerdir+"),
        None,
        folder.as_raw_fd(),
    )?;
    config(
        &overlay,
        libc::FSCONFIG_SET_FD,
        Some(c"lowerdir+"),
        None,
        empty.as_raw_fd(),
    )?;
    // Inode-number mapping is of no use here and logs warnings when the layers' filesystems
    // differ; older kernels may not know the option.
    let _ = config(
        &overlay,
        libc::FSCONFIG_SET_STRING,
        Some(c"xino"),
        Some(c"off"),
        0,
    );
    config(&overlay, libc::FSCONFIG_CMD_CREATE, None, None, 0)?;
    let overlay = fs_mount(
        &overlay,
        libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOSUID,
    )?;
    open_at(&overlay, &name, libc::O_PATH | libc::O_NOFOLLOW)
}

/// Copies berth's binary into a memfd sealed against writes, shrinking and growing, and against
/// changes to its seals.
pub fn memfd_copy() -> Result<OwnedFd, SealError> {
    let err = |what| move |source| SealError::Memfd { what, source };
    let exe = open(c"/proc/self/exe", libc::O_RDONLY).map_err(SealError::Exe)?;
    let size = std::fs::File::from(exe.try_clone().map_err(|e| err("dup")(io_errno(e)))?)
        .metadata()
        .map_err(|e| err("stat")(io_errno(e)))?
        .len();
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3) keeps the copy executable where vm.memfd_noexec asks for it;
    // older kernels refuse the flag and make every memfd executable.
    let memfd = memfd_create(flags | libc::MFD_EXEC)
        .or_else(|e| match e {
            Errno::EINVAL => memfd_create(flags),
            e => Err(e),
        })
        .map_err(err("memfd_create"))?;
    let mut copied = 0u64;
    while copied < size {
        // SAFETY: sendfile copies between two descriptors we own; a null offset uses the file's.
        let n = unsafe {
            libc::sendfile(
                memfd.as_raw_fd(),
                exe.as_raw_fd(),
                std::ptr::null_mut(),
                (size - copied) as usize,
            )
        };
        match n {
            n if n > 0 => copied += n as u64,
            0 => return Err(err("copy")(Errno::EIO)),
            _ if Errno::last() == Errno::EINTR => {}
            _ => return Err(err("copy")(Errno::last())),
        }
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS takes an integer argument.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(err("seal")(Errno::last()));
    }
    Ok(memfd)
}

fn memfd_create(flags: libc::c_uint) -> Result<OwnedFd, Errno> {
    // SAFETY: memfd_create reads a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"berth".as_ptr(), flags) };
    owned(fd)
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn c_string(s: OsString) -> CString {
    // Arguments and environment from the kernel hold no NUL byte.
    CString::new(s.into_vec()).unwrap_or_default()
}

/// The folder and the name of an absolute path.
fn split(path: &Path) -> Option<(CString, CString)> {
    let folder = path.parent()?;
    let name = path.file_name()?;
    let c = |p: &std::ffi::OsStr| CString::new(p.as_encoded_bytes()).ok();
    Some((c(folder.as_os_str())?, c(name)?))
}

fn owned(fd: libc::c_int) -> Result<OwnedFd, Errno> {
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open(path: &CStr, flags: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: open reads a NUL-terminated path.
    owned(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })
}

fn open_at(dir: &OwnedFd, name: &CStr, flags: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: openat reads a NUL-terminated name relative to a descriptor we own.
    owned(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// The device and inode of an open file.
fn identity(fd: &OwnedFd) -> Result<(u64, u64), Errno> {
    identity_at(fd, c"")
}

fn identity_at(dir: &OwnedFd, name: &CStr) -> Result<(u64, u64), Errno> {
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: stat is plain data; fstatat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated and `st` writable.
    if unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, flags) } != 0 {
        return Err(Errno::last());
    }
    Ok((st.st_dev, st.st_ino))
}

fn fs_context(fstype: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: fsopen reads a NUL-terminated filesystem name.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) };
    owned(fd as libc::c_int)
}

fn config(
    context: &OwnedFd,
    command: libc::c_uint,
    key: Option<&CStr>,
    value: Option<&CStr>,
    aux: RawFd,
) -> Result<(), Errno> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: fsconfig reads the NUL-terminated key and value, or nothing where they are null.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            context.as_raw_fd(),
            command,
            ptr(key),
            ptr(value),
            aux,
        )
    };
    Errno::result(rc).map(drop)
}

fn fs_mount(context: &OwnedFd, attributes: u64) -> Result<OwnedFd, Errno> {
    // SAFETY: fsmount takes integer arguments and returns a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            context.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attributes,
        )
    };
    owned(fd as libc::c_int)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn reopen(fd: &OwnedFd, flags: libc::c_int) -> Result<OwnedFd, Errno> {
        let path = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        open(&path, flags)
    }

    fn contents(fd: OwnedFd) -> Vec<u8> {
        let mut bytes = Vec::new();
        std::fs::File::from(fd).read_to_end(&mut bytes).unwrap();
        bytes
    }

    fn own_binary() -> Vec<u8> {
        std::fs::read("/proc/self/exe").unwrap()
    }

    #[test]
    fn a_plain_binary_is_not_sealed() {
        // The test binary runs from the build folder, as berth runs from where it is installed.
        assert!(!is_sealed());
    }

    #[test]
    fn the_memfd_copy_is_the_binary_and_refuses_writes() {
        let copy = memfd_copy().unwrap();
        let written = reopen(&copy, libc::O_WRONLY).and_then(|fd| {
            // SAFETY: write reads one byte from a live buffer.
            Errno::result(unsafe { libc::write(fd.as_raw_fd(), b"x".as_ptr().cast(), 1) })
        });
        assert_eq!(written, Err(Errno::EPERM));
        assert_eq!(
            contents(reopen(&copy, libc::O_RDONLY).unwrap()),
            own_binary()
        );
    }

    #[test]
    fn the_overlay_view_is_the_binary_and_read_only() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP the_overlay_view_is_the_binary_and_read_only: needs root");
            return;
        }
        let view = overlay_view().unwrap();
        assert_eq!(reopen(&view, libc::O_WRONLY).unwrap_err(), Errno::EROFS);
        assert_eq!(reopen(&view, libc::O_RDWR).unwrap_err(), Errno::EROFS);
        assert_eq!(
            contents(reopen(&view, libc::O_RDONLY).unwrap()),
            own_binary()
        );
        // Clearing the read-only flag of the mount does not reach the superblock.
        let attr = [0u64, libc::MOUNT_ATTR_RDONLY, 0, 0];
        // SAFETY: mount_setattr reads the attribute struct, which outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                view.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                attr.as_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        assert_eq!(Errno::result(rc).map(drop), Err(Errno::EINVAL));
        assert_eq!(reopen(&view, libc::O_WRONLY).unwrap_err(), Errno::EROFS);
    }
}
