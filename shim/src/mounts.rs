//! The container's root filesystem as containerd hands it to a shim: a list of mounts (an
//! overlay of the image's snapshots, or a bind mount) for `BUNDLE/rootfs`, made before the
//! container and undone after it, as the runc shim does. berth reads the options as it reads
//! those of config.json's mounts (`rootfs::parse_options`).

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// One mount of the root filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

impl From<&containerd_shim::protos::types::mount::Mount> for Mount {
    fn from(m: &containerd_shim::protos::types::mount::Mount) -> Self {
        Mount {
            kind: m.type_.clone(),
            source: m.source.clone(),
            options: m.options.clone(),
        }
    }
}

/// Mounts each in turn on `target`; on failure, undoes the ones made.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), String> {
    for (made, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            if made > 0 {
                unmount_all(target);
            }
            return Err(format!(
                "cannot mount the root filesystem ({} {} on {}): {e}",
                m.kind,
                m.source,
                target.display()
            ));
        }
    }
    Ok(())
}

fn mount_one(m: &Mount, target: &Path) -> Result<(), nix::errno::Errno> {
    let options = berth::rootfs::parse_options(&m.options);
    let flags = options.flags;
    let kind = (!m.kind.is_empty() && m.kind != "bind").then_some(m.kind.as_str());
    let data = options.data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());
    mount(Some(m.source.as_str()), target, kind, flags, data)?;
    // A bind mount takes its read-only flag only from a remount.
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            flags | MsFlags::MS_REMOUNT,
            None::<&str>,
        )?;
    }
    for propagation in options.propagation {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            propagation,
            None::<&str>,
        )?;
    }
    Ok(())
}

/// Unmounts everything mounted on `target`, the last mount first, until nothing is left.
pub fn unmount_all(target: &Path) {
    for _ in 0..64 {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EBUSY) => {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            Err(_) => return,
        }
    }
}
