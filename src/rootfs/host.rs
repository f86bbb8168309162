//! A container without a mount namespace of its own runs in berth's: the runtime-spec says a
//! namespace not listed is the runtime's. Its root filesystem then gets a mount of its own in
//! that namespace, made by berth before the init exists: everything berth mounts for the
//! container goes below it (nothing of it reaches other mount namespaces: it is private), the
//! init chroots into it (pivot_root would move the host's own root), and `delete` detaches it,
//! with everything below it, in one call. Its mount id, kept in the container's state, makes
//! sure that call detaches that mount and nothing else. runc runs such a container too, but
//! makes the host's `/` a slave and leaves every mount behind.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

use super::resolve::fd_path;
use super::RootfsError;
use crate::syscall::{Kernel, MountAttr};

/// The mount berth made for a container's root filesystem in the host's mount namespace.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostMount {
    pub path: PathBuf,
    /// Its mount id, as /proc/PID/mountinfo shows it (the kernel may give it to another mount
    /// once this one is gone).
    pub id: u64,
    /// Its unique mount id (Linux 6.8 and later), never given to another mount.
    #[serde(default)]
    pub unique_id: Option<u64>,
}

/// The mount ids of the mount `fd` is on: the one mountinfo shows, and the unique one where the
/// kernel has it.
fn mount_ids(fd: BorrowedFd) -> Result<(u64, Option<u64>), Errno> {
    let ask = |mask: libc::c_uint| -> Result<Option<u64>, Errno> {
        // SAFETY: statx fills the zeroed struct it is given, about the descriptor itself (an
        // empty path with AT_EMPTY_PATH); both outlive the call.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::statx(
                fd.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                mask,
                &mut stx,
            )
        };
        Errno::result(rc)?;
        Ok((stx.stx_mask & mask != 0).then_some(stx.stx_mnt_id))
    };
    let id = ask(libc::STATX_MNT_ID)?.ok_or(Errno::ENOSYS)?;
    Ok((id, ask(libc::STATX_MNT_ID_UNIQUE)?))
}

fn open_path(path: &Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Gives the root filesystem `rootfs` a private mount of its own (a copy of it and of the mounts
/// below it, attached on itself), in berth's mount namespace.
pub fn bind_root(kernel: &dyn Kernel, rootfs: &Path) -> Result<HostMount, RootfsError> {
    let err = |step: &'static str| {
        move |source| RootfsError::Attach {
            what: "the root filesystem".into(),
            target: rootfs.display().to_string(),
            step,
            source,
            hint: String::new(),
        }
    };
    let target = open_path(rootfs).map_err(err("open"))?;
    let tree = kernel.open_tree(rootfs, true).map_err(err("open_tree"))?;
    kernel
        .move_mount(tree.as_fd(), target.as_fd())
        .map_err(err("move_mount"))?;
    let private = MountAttr {
        propagation: MsFlags::MS_PRIVATE,
        ..MountAttr::default()
    };
    let made = kernel
        .mount_setattr(tree.as_fd(), true, &private)
        .map_err(err("propagation"))
        .and_then(|()| mount_ids(tree.as_fd()).map_err(err("statx")));
    match made {
        Ok((id, unique_id)) => Ok(HostMount {
            path: rootfs.to_path_buf(),
            id,
            unique_id,
        }),
        Err(e) => {
            let _ = kernel.umount2(&fd_path(tree.as_raw_fd()), MntFlags::MNT_DETACH);
            Err(e)
        }
    }
}

/// The parent mount id of mount `id`, from berth's mountinfo.
fn parent_of(id: u64) -> Option<u64> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let this = fields.next()?.parse::<u64>().ok()?;
        let parent = fields.next()?.parse::<u64>().ok()?;
        (this == id).then_some(parent)
    })
}

/// Detaches the mount `bind_root` made, with every mount below it. Mounts the container made
/// over its own root are detached first; a path where that mount no longer is is left alone.
pub fn detach_root(kernel: &dyn Kernel, mount: &HostMount) -> Result<(), RootfsError> {
    let err = |source| RootfsError::Attach {
        what: "the root filesystem".into(),
        target: mount.path.display().to_string(),
        step: "detach",
        source,
        hint: String::new(),
    };
    for _ in 0..16 {
        let top = match open_path(&mount.path) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(()),
            Err(source) => return Err(err(source)),
        };
        let (id, unique_id) = mount_ids(top.as_fd()).map_err(err)?;
        let ours = match (mount.unique_id, unique_id) {
            (Some(a), Some(b)) => a == b,
            _ => id == mount.id,
        };
        if !ours && parent_of(id) != Some(mount.id) {
            return Ok(());
        }
        kernel
            .umount2(&fd_path(top.as_raw_fd()), MntFlags::MNT_DETACH)
            .map_err(err)?;
        if ours {
            return Ok(());
        }
    }
    Err(err(Errno::ELOOP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::Recorder;
    use crate::testutil::TempDir;

    #[test]
    fn the_root_gets_a_private_mount_of_its_own_made_detached() {
        let tmp = TempDir::new("host-root");
        let kernel = Recorder::default();
        let mount = bind_root(&kernel, tmp.path()).unwrap();
        let t = tmp.path().display();
        assert_eq!(
            kernel.take(),
            [
                format!("open_tree {t} AT_RECURSIVE"),
                format!("move_mount {t} {t}"),
                format!("mount_setattr {t} MS_PRIVATE AT_RECURSIVE"),
            ]
        );
        assert_eq!(mount.path, tmp.path());
        // The Recorder's mount is not at the path: delete finds nothing of it to detach.
        detach_root(&kernel, &mount).unwrap();
        assert_eq!(kernel.take(), Vec::<String>::new());
    }
}
