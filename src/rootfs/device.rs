//! `/dev`: the device nodes (bind mounts of the host's inside a user namespace), the standard
//! symlinks, and `/dev/ptmx` pointing into the devpts instance.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;

use super::resolve::{clean, fd_path, is_device, make_in_root};
use super::{DevicePlan, RootfsError, RootfsPlan};
use crate::syscall::Kernel;

/// Fills `/dev`: device nodes (bind mounts from the host inside a user namespace), the standard
/// symlinks, and `/dev/ptmx` pointing into the devpts instance.
pub(super) fn make_devices(
    kernel: &dyn Kernel,
    root: &OwnedFd,
    plan: &RootfsPlan,
) -> Result<(), RootfsError> {
    let dev =
        make_in_root(root, Path::new("/dev"), false).map_err(|source| RootfsError::MountPoint {
            target: "/dev".into(),
            source,
        })?;
    for device in &plan.devices {
        make_device(kernel, root, plan.in_userns, device)?;
    }
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    let dev_path = fd_path(dev.as_raw_fd());
    for (target, name) in links {
        match kernel.symlink(Path::new(target), &dev_path.join(name)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(source) => {
                return Err(RootfsError::Device {
                    path: format!("/dev/{name}"),
                    source,
                })
            }
        }
    }
    // /dev/ptmx must be the devpts instance's, whatever the image shipped.
    let ptmx = dev_path.join("ptmx");
    let _ = nix::unistd::unlinkat(dev.as_fd(), "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir);
    kernel
        .symlink(Path::new("pts/ptmx"), &ptmx)
        .map_err(|source| RootfsError::Device {
            path: "/dev/ptmx".into(),
            source,
        })?;
    Ok(())
}

fn make_device(
    kernel: &dyn Kernel,
    root: &OwnedFd,
    in_userns: bool,
    device: &DevicePlan,
) -> Result<(), RootfsError> {
    let shown = device.path.display().to_string();
    let err = |source| RootfsError::Device {
        path: shown.clone(),
        source,
    };
    let relative = clean(&device.path);
    let (Some(parent), Some(name)) = (relative.parent(), relative.file_name()) else {
        return Err(err(Errno::EINVAL));
    };
    let dir = make_in_root(root, parent, false).map_err(err)?;
    let path = fd_path(dir.as_raw_fd()).join(name);
    if in_userns {
        // mknod is refused in a user namespace: bind the host's node onto an empty file. The
        // spec's path is then a host path too: bind it only if it is the device the spec names.
        let host = nix::fcntl::open(
            &device.path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        if !is_device(&host, device.kind, device.major, device.minor) {
            return Err(RootfsError::NotDevice {
                path: shown,
                major: device.major,
                minor: device.minor,
            });
        }
        let target = make_in_root(root, &device.path, true).map_err(err)?;
        return kernel
            .mount(
                Some(&fd_path(host.as_raw_fd())),
                &fd_path(target.as_raw_fd()),
                None,
                MsFlags::MS_BIND,
                None,
            )
            .map_err(err);
    }
    let dev = nix::sys::stat::makedev(device.major, device.minor);
    match kernel.mknod(
        &path,
        device.kind,
        Mode::from_bits_truncate(device.mode),
        dev,
    ) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(()),
        Err(e) => return Err(err(e)),
    }
    kernel.chown(&path, device.uid, device.gid).map_err(err)
}
