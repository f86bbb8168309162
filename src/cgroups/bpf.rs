//! The bpf(2) calls behind cgroup v2 device rules: load a BPF_PROG_TYPE_CGROUP_DEVICE program and
//! attach it to a cgroup. Part of the kernel seam: raw system calls with `#[repr(C)]` arguments.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::devices::Insn;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Other programs (systemd's, a parent's) keep running beside ours; every one must allow.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The head of `union bpf_attr` for BPF_PROG_LOAD; the kernel takes a prefix of the union.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The head of `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> libc::c_long {
    // SAFETY: `attr` is a valid, initialised `#[repr(C)]` prefix of `union bpf_attr` that lives
    // for the call, and its size is passed with it; pointers inside it point at live buffers.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    }
}

/// Loads a device program; on failure returns the errno and the verifier's log.
pub fn load_device_program(prog: &[Insn]) -> Result<OwnedFd, (Errno, String)> {
    let code: Vec<u8> = prog.iter().flat_map(|i| i.to_bytes()).collect();
    let license = b"Apache-2.0\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..13].copy_from_slice(b"berth_devices");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: code.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    let rc = bpf(BPF_PROG_LOAD, &mut attr);
    if rc < 0 {
        let errno = Errno::last();
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        return Err((
            errno,
            String::from_utf8_lossy(&log[..end]).trim().to_string(),
        ));
    }
    // SAFETY: the call returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

/// Attaches a device program to the cgroup2 directory `dir`. The attachment holds the program
/// until the cgroup is removed, so the descriptor may be closed afterwards.
pub fn attach_device_program(dir: &Path, prog: &OwnedFd) -> Result<(), Errno> {
    let cgroup = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    if bpf(BPF_PROG_ATTACH, &mut attr) < 0 {
        return Err(Errno::last());
    }
    Ok(())
}
