//! Compiles `linux.seccomp` into a seccomp BPF program: the rules are gathered per architecture,
//! then each architecture gets a binary search over syscall numbers whose leaves return an action
//! or check the arguments.

use std::collections::BTreeMap;

use nix::errno::Errno;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use super::bpf::{Assembler, Cmp, Label};
use super::{syscall_table, Filter, SeccompError};

/// Offsets in `struct seccomp_data`.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARGS: u32 = 16;

/// `seccomp_data.arch` values (AUDIT_ARCH_* in linux/audit.h).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
/// x32 syscalls arrive with AUDIT_ARCH_X86_64 and this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// What a syscall of an architecture the filter does not handle gets. libseccomp's default is to
/// kill the thread; killing the whole process leaves nothing half-alive.
const BAD_ARCH_ACTION: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// The errno that SCMP_ACT_ERRNO and SCMP_ACT_TRACE carry when the profile names none.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// What syscalls newer than the profile get (see `enosys_above_highest`).
const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

/// Syscall arguments are compared as 64-bit values in two halves, or, on 32-bit ABIs, as their
/// low 32 bits only (as libseccomp does for x86 and x32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Width {
    Bits32,
    Bits64,
}

/// An architecture the compiler has a syscall table for.
pub(super) struct ArchTable {
    pub(super) arch: Arch,
    audit: u32,
    /// `name number` lines, sorted by name (see `syscall_table`).
    syscalls: &'static str,
    width: Width,
}

pub(super) const TABLES: [ArchTable; 4] = [
    ArchTable {
        arch: Arch::ScmpArchX86_64,
        audit: AUDIT_ARCH_X86_64,
        syscalls: syscall_table::X86_64,
        width: Width::Bits64,
    },
    ArchTable {
        arch: Arch::ScmpArchX32,
        audit: AUDIT_ARCH_X86_64,
        syscalls: syscall_table::X32,
        width: Width::Bits32,
    },
    ArchTable {
        arch: Arch::ScmpArchX86,
        audit: AUDIT_ARCH_I386,
        syscalls: syscall_table::X86,
        width: Width::Bits32,
    },
    ArchTable {
        arch: Arch::ScmpArchAarch64,
        audit: AUDIT_ARCH_AARCH64,
        syscalls: syscall_table::AARCH64,
        width: Width::Bits64,
    },
];

#[cfg(target_arch = "x86_64")]
const NATIVE: Arch = Arch::ScmpArchX86_64;
#[cfg(target_arch = "aarch64")]
const NATIVE: Arch = Arch::ScmpArchAarch64;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the seccomp compiler knows the syscalls of x86_64 and aarch64 hosts only");

/// The `seccomp_data.arch` value of this machine's own syscalls.
pub(super) fn native_audit() -> u32 {
    TABLES
        .iter()
        .find(|t| t.arch == NATIVE)
        .map(|t| t.audit)
        .expect("the native architecture has a table")
}

/// The syscall's number on this architecture, if the architecture has it.
fn syscall_number(table: &ArchTable, name: &str) -> Option<u32> {
    look_up(table.syscalls, name)?.parse().ok()
}

/// In `lines` (lines sorted by their first word, each ending in a newline), the rest of the line
/// whose first word is `word`. A binary search over bytes: the line that holds the middle byte
/// of the range is compared, and the range shrinks to the lines before or after it.
fn look_up<'t>(lines: &'t str, word: &str) -> Option<&'t str> {
    let bytes = lines.as_bytes();
    let (mut low, mut high) = (0, bytes.len());
    while low < high {
        let middle = low + (high - low) / 2;
        let start = bytes[low..middle]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(low, |i| low + i + 1);
        let end = start + bytes[start..high].iter().position(|&b| b == b'\n')?;
        // Both ends sit beside a newline, so on character boundaries.
        let line = &lines[start..end];
        let (first, rest) = line.split_once(' ').unwrap_or((line, ""));
        match first.cmp(word) {
            std::cmp::Ordering::Equal => return Some(rest),
            std::cmp::Ordering::Less => low = end + 1,
            std::cmp::Ordering::Greater => high = start,
        }
    }
    None
}

/// The rules of one syscall on one architecture. As in libseccomp, an unconditional rule (the
/// first one) decides alone; otherwise the conditional rules are tried in profile order and the
/// first whose arguments all match decides; if none matches, the default action applies.
struct SyscallRules<'a> {
    width: Width,
    unconditional: Option<u32>,
    conditional: Vec<(u32, &'a [LinuxSeccompArg])>,
}

/// Everything that reaches the filter with one `seccomp_data.arch` value.
struct ArchFilter<'a> {
    audit: u32,
    /// The action of each range of syscall numbers not listed in the profile, by first number.
    regions: Vec<(u32, u32)>,
    syscalls: BTreeMap<u32, SyscallRules<'a>>,
}

impl ArchFilter<'_> {
    /// Gives ENOSYS to the numbers above `highest` in the region of the ABI whose numbers start
    /// at `base` (the x32 region ends below -1, the number a tracer sets to skip a syscall).
    fn enosys_above(&mut self, base: u32, highest: u32) {
        let Some(at) = self.regions.iter().position(|&(start, _)| start == base) else {
            return;
        };
        let end = self
            .regions
            .get(at + 1)
            .map_or(u32::MAX, |&(start, _)| start);
        let next = highest.saturating_add(1);
        if next < end {
            self.regions.insert(at + 1, (next, ENOSYS));
        }
    }
}

/// How a range of syscall numbers ends up: a plain action, or the argument checks of one syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaf {
    Return(u32),
    Check(u32),
}

pub(super) fn compile(spec: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let default = action_value(spec.default_action(), spec.default_errno_ret(), || {
        "defaultErrnoRet".to_string()
    })?;
    if spec.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::NotifyDefault);
    }

    let tables = requested_tables(spec.architectures().as_deref().unwrap_or_default());
    let mut arches = arch_filters(&tables, default);
    let mut has_notify = false;
    let mut unknown = Vec::new();
    // The highest syscall number the profile names, per table (any rule, any action).
    let mut highest: Vec<Option<u32>> = vec![None; tables.len()];
    for (index, syscall) in spec.syscalls().iter().flatten().enumerate() {
        if syscall.names().is_empty() {
            return Err(SeccompError::NoNames { index });
        }
        let action = action_value(syscall.action(), syscall.errno_ret(), || {
            format!("syscalls[{index}].errnoRet")
        })?;
        for name in syscall.names() {
            if known_to_linux(name) {
                continue;
            }
            // Under a default that allows, every rule restricts: a name berth cannot resolve
            // would leave that syscall allowed where the profile forbids it.
            if allows(default) && action != default {
                return Err(SeccompError::UnknownRestricted {
                    index,
                    name: name.clone(),
                    linux: syscall_table::LINUX,
                });
            }
            unknown.push(name.clone());
        }
        for (table, highest) in tables.iter().zip(highest.iter_mut()) {
            let numbers = syscall
                .names()
                .iter()
                .filter_map(|n| syscall_number(table, n));
            *highest = numbers.chain(*highest).max();
        }
        let args = syscall.args().as_deref().unwrap_or_default();
        if let Some((arg, bad)) = args.iter().enumerate().find(|(_, a)| a.index() >= 6) {
            return Err(SeccompError::ArgIndex {
                syscall: index,
                arg,
                value: bad.index(),
            });
        }
        // Like runc, a rule that asks for the default action changes nothing and is dropped.
        if action == default {
            continue;
        }
        // The process hands its listener to berth with sendmsg once the filter is in: were
        // that call the agent's, it would wait for an agent that has no listener yet.
        if action == libc::SECCOMP_RET_USER_NOTIF && syscall.names().iter().any(|n| n == "sendmsg")
        {
            return Err(SeccompError::NotifySendmsg { index });
        }
        for table in &tables {
            let filter = arches
                .iter_mut()
                .find(|f| f.audit == table.audit)
                .expect("every table has its filter");
            // Names this architecture lacks are skipped, as libseccomp skips them.
            for nr in syscall
                .names()
                .iter()
                .filter_map(|n| syscall_number(table, n))
            {
                let rules = filter.syscalls.entry(nr).or_insert(SyscallRules {
                    width: table.width,
                    unconditional: None,
                    conditional: Vec::new(),
                });
                if args.is_empty() {
                    rules.unconditional.get_or_insert(action);
                } else if repeats_an_argument(args) {
                    // runc and crun make such a rule one rule per condition (any of them
                    // matches): profiles are written for them, and `arg0 == 1, arg0 == 2`
                    // could never hold as a whole.
                    let each = args.iter().map(|arg| (action, std::slice::from_ref(arg)));
                    rules.conditional.extend(each);
                } else {
                    rules.conditional.push((action, args));
                }
                has_notify |= action == libc::SECCOMP_RET_USER_NOTIF;
            }
        }
    }

    if has_notify && spec.listener_path().is_none() {
        return Err(SeccompError::NotifyWithoutListener);
    }
    if spec.listener_metadata().is_some() && spec.listener_path().is_none() {
        return Err(SeccompError::MetadataWithoutListener);
    }

    if enosys_above_highest(default) {
        for (table, highest) in tables.iter().zip(&highest) {
            let Some(highest) = highest else { continue };
            let filter = arches
                .iter_mut()
                .find(|f| f.audit == table.audit)
                .expect("every table has its filter");
            let base = if table.arch == Arch::ScmpArchX32 {
                X32_SYSCALL_BIT
            } else {
                0
            };
            filter.enosys_above(base, *highest);
        }
    }

    let program = generate(&arches, default);
    if program.len() > usize::from(libc::BPF_MAXINSNS as u16) {
        return Err(SeccompError::TooLarge {
            instructions: program.len(),
        });
    }
    let flags = kernel_flags(spec.flags().as_deref().unwrap_or_default(), has_notify)?;
    unknown.sort();
    unknown.dedup();
    Ok(Filter {
        program,
        flags,
        has_notify,
        unknown,
    })
}

/// Whether two conditions of a rule compare the same argument.
fn repeats_an_argument(args: &[LinuxSeccompArg]) -> bool {
    let mut seen = 0u8;
    args.iter().any(|arg| {
        let bit = 1 << arg.index();
        let repeated = seen & bit != 0;
        seen |= bit;
        repeated
    })
}

/// Whether a syscall of this name exists on some architecture of the Linux version the tables
/// come from. Names of other architectures (Docker's profile lists arm's and s390's) are skipped
/// where they do not exist, as libseccomp skips them.
fn known_to_linux(name: &str) -> bool {
    TABLES.iter().any(|t| syscall_number(t, name).is_some())
        || look_up(syscall_table::ELSEWHERE, name).is_some()
}

/// Whether the action lets a syscall run (what runc counts as allowing: a tracer, too, should
/// handle syscalls it does not know).
fn allows(action: u32) -> bool {
    let base = action & libc::SECCOMP_RET_ACTION_FULL;
    base == libc::SECCOMP_RET_ALLOW
        || base == libc::SECCOMP_RET_LOG
        || base == libc::SECCOMP_RET_TRACE
}

/// runc's rule for syscalls newer than the profile: with a default that denies, every number
/// above the highest one the profile names gets ENOSYS instead, so a program (glibc) falls back
/// to an older syscall as it does on an older kernel, rather than failing on EPERM. A profile
/// cannot deny by default what it has never heard of.
fn enosys_above_highest(default: u32) -> bool {
    !allows(default) && default != ENOSYS
}

/// The action as the kernel encodes it; the errno (or trace message) goes in the low 16 bits.
fn action_value(
    action: LinuxSeccompAction,
    errno: Option<u32>,
    field: impl Fn() -> String,
) -> Result<u32, SeccompError> {
    use LinuxSeccompAction as A;
    let with_data = |base: u32| match errno.unwrap_or(DEFAULT_ERRNO) {
        data @ 0..=0xffff => Ok(base | data),
        value => Err(SeccompError::ErrnoRange {
            field: field(),
            value,
        }),
    };
    let plain = |value: u32| match errno {
        None => Ok(value),
        Some(_) => Err(SeccompError::ErrnoNotAllowed {
            field: field(),
            action,
        }),
    };
    match action {
        A::ScmpActErrno => with_data(libc::SECCOMP_RET_ERRNO),
        A::ScmpActTrace => with_data(libc::SECCOMP_RET_TRACE),
        A::ScmpActKill | A::ScmpActKillThread => plain(libc::SECCOMP_RET_KILL_THREAD),
        A::ScmpActKillProcess => plain(libc::SECCOMP_RET_KILL_PROCESS),
        A::ScmpActTrap => plain(libc::SECCOMP_RET_TRAP),
        A::ScmpActAllow => plain(libc::SECCOMP_RET_ALLOW),
        A::ScmpActLog => plain(libc::SECCOMP_RET_LOG),
        A::ScmpActNotify => plain(libc::SECCOMP_RET_USER_NOTIF),
    }
}

/// The tables for the listed architectures and the native one (libseccomp always includes it,
/// so SCMP_ARCH_NATIVE needs nothing more). Architectures without a table are left out, so their
/// syscalls get the bad-architecture action; on an x86_64 or aarch64 kernel only the compat ABIs
/// of the same machine can arrive, and of those only 32-bit arm lacks a table.
fn requested_tables(listed: &[Arch]) -> Vec<&'static ArchTable> {
    TABLES
        .iter()
        .filter(|t| t.arch == NATIVE || listed.contains(&t.arch))
        .collect()
}

/// One filter per `seccomp_data.arch` value, with the background action of each number range.
fn arch_filters<'a>(tables: &[&ArchTable], default: u32) -> Vec<ArchFilter<'a>> {
    let mut filters: Vec<ArchFilter> = Vec::new();
    for table in tables {
        if filters.iter().any(|f| f.audit == table.audit) {
            continue;
        }
        let regions = if table.audit == AUDIT_ARCH_X86_64 {
            // Numbers below the x32 bit are x86_64 syscalls, the rest x32 ones, except -1,
            // which tracers use to skip a syscall and which must not kill (libseccomp does this).
            let has = |arch| tables.iter().any(|t| t.arch == arch);
            let or_bad = |listed: bool| if listed { default } else { BAD_ARCH_ACTION };
            vec![
                (0, or_bad(has(Arch::ScmpArchX86_64))),
                (X32_SYSCALL_BIT, or_bad(has(Arch::ScmpArchX32))),
                (u32::MAX, default),
            ]
        } else {
            vec![(0, default)]
        };
        filters.push(ArchFilter {
            audit: table.audit,
            regions,
            syscalls: BTreeMap::new(),
        });
    }
    filters
}

/// The kernel flags for seccomp(2): the profile's, plus NEW_LISTENER when a rule notifies.
fn kernel_flags(
    listed: &[LinuxSeccompFilterFlag],
    has_notify: bool,
) -> Result<libc::c_ulong, SeccompError> {
    use LinuxSeccompFilterFlag as F;
    let mut flags = 0;
    for &flag in listed {
        let bit = match flag {
            F::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            F::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            F::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            F::SeccompFilterFlagWaitKillableRecv => {
                // It only means something for a listener, and the kernel refuses it without one;
                // kernels before 5.19 lack it, and then the flag is left out.
                let with_listener = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
                    | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
                if has_notify && kernel_accepts(with_listener) {
                    flags |= libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
                }
                continue;
            }
        };
        if !kernel_accepts(bit) {
            return Err(SeccompError::FlagUnsupported { flag });
        }
        flags |= bit;
    }
    if has_notify {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        // The kernel refuses TSYNC with a listener unless a failed sync reports ESRCH instead
        // of a thread id, which could not be told apart from the listener's fd.
        if flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
            flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
        }
    }
    Ok(flags)
}

/// Whether the kernel knows these filter flags. It checks the flags before it reads the program,
/// so a null program fails with EFAULT for known flags and EINVAL for unknown ones, and installs
/// nothing (the probe libseccomp uses). Any other failure (seccomp itself refused) is left for
/// `install` to report.
pub(super) fn kernel_accepts(flags: libc::c_ulong) -> bool {
    // SAFETY: seccomp(2) only reads the program pointer, and a null one makes it fail with EFAULT.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    rc == -1 && Errno::last() != Errno::EINVAL
}

/// The whole program: dispatch on the architecture, then one search tree per architecture.
fn generate(arches: &[ArchFilter], default: u32) -> Vec<libc::sock_filter> {
    let mut asm = Assembler::default();
    let starts: Vec<Label> = arches.iter().map(|_| asm.label()).collect();
    asm.load(OFFSET_ARCH);
    for (filter, start) in arches.iter().zip(&starts) {
        asm.jump(Cmp::Eq, filter.audit, Some(*start), None);
    }
    asm.ret(BAD_ARCH_ACTION);
    for (filter, start) in arches.iter().zip(starts) {
        asm.place(start);
        asm.load(OFFSET_NR);
        search(&mut asm, &leaves(filter), filter, default);
    }
    asm.assemble()
}

/// The ranges of syscall numbers with what each gets, by first number, neighbours merged.
fn leaves(filter: &ArchFilter) -> Vec<(u32, Leaf)> {
    let mut bounds: Vec<u32> = filter.regions.iter().map(|&(start, _)| start).collect();
    for &nr in filter.syscalls.keys() {
        bounds.push(nr);
        bounds.extend(nr.checked_add(1));
    }
    bounds.sort_unstable();
    bounds.dedup();
    let mut leaves: Vec<(u32, Leaf)> = Vec::with_capacity(bounds.len());
    for start in bounds {
        let leaf = match filter.syscalls.get(&start) {
            Some(rules) => match rules.unconditional {
                Some(action) => Leaf::Return(action),
                None => Leaf::Check(start),
            },
            None => {
                let region = filter.regions.iter().rev().find(|(s, _)| *s <= start);
                Leaf::Return(region.expect("the first region starts at 0").1)
            }
        };
        if leaves.last().map(|&(_, l)| l) != Some(leaf) {
            leaves.push((start, leaf));
        }
    }
    leaves
}

/// A binary search over the ranges, with the syscall number in the accumulator.
fn search(asm: &mut Assembler, leaves: &[(u32, Leaf)], filter: &ArchFilter, default: u32) {
    if let [(_, leaf)] = leaves {
        match *leaf {
            Leaf::Return(action) => asm.ret(action),
            Leaf::Check(nr) => check_arguments(asm, &filter.syscalls[&nr], default),
        }
        return;
    }
    let middle = leaves.len() / 2;
    let upper = asm.label();
    asm.jump(Cmp::Ge, leaves[middle].0, Some(upper), None);
    search(asm, &leaves[..middle], filter, default);
    asm.place(upper);
    search(asm, &leaves[middle..], filter, default);
}

/// The conditional rules of one syscall in order; the first whose arguments all match returns
/// its action, and if none does, the default action.
fn check_arguments(asm: &mut Assembler, rules: &SyscallRules, default: u32) {
    for &(action, args) in &rules.conditional {
        let next_rule = asm.label();
        for arg in args {
            compare(asm, arg, rules.width, next_rule);
        }
        asm.ret(action);
        asm.place(next_rule);
    }
    asm.ret(default);
}

/// Falls through when the argument matches and jumps to `fail` when it does not. A 64-bit
/// comparison decides on the high halves unless they are equal, then on the low halves.
fn compare(asm: &mut Assembler, arg: &LinuxSeccompArg, width: Width, fail: Label) {
    use LinuxSeccompOperator as Op;
    let offset = OFFSET_ARGS + 8 * arg.index() as u32;
    let (value, value_two) = (arg.value(), arg.value_two().unwrap_or(0));
    // MASKED_EQ: (argument & value) == valueTwo.
    let low = |v: u64| v as u32;
    let high = |v: u64| (v >> 32) as u32;
    let (value_low, value_high) = (low(value), high(value));
    let pass = asm.label();
    let fail = Some(fail);
    if width == Width::Bits64 {
        // The high half of a little-endian u64 is its second word.
        asm.load(offset + 4);
        match arg.op() {
            Op::ScmpCmpEq => asm.jump(Cmp::Eq, value_high, None, fail),
            Op::ScmpCmpNe => asm.jump(Cmp::Eq, value_high, None, Some(pass)),
            Op::ScmpCmpGt | Op::ScmpCmpGe => {
                asm.jump(Cmp::Gt, value_high, Some(pass), None);
                asm.jump(Cmp::Eq, value_high, None, fail);
            }
            Op::ScmpCmpLt | Op::ScmpCmpLe => {
                asm.jump(Cmp::Gt, value_high, fail, None);
                asm.jump(Cmp::Eq, value_high, None, Some(pass));
            }
            Op::ScmpCmpMaskedEq => {
                asm.and(value_high);
                asm.jump(Cmp::Eq, high(value_two), None, fail);
            }
        }
    }
    asm.load(offset);
    match arg.op() {
        Op::ScmpCmpEq => asm.jump(Cmp::Eq, value_low, None, fail),
        Op::ScmpCmpNe => asm.jump(Cmp::Eq, value_low, fail, None),
        Op::ScmpCmpGt => asm.jump(Cmp::Gt, value_low, None, fail),
        Op::ScmpCmpGe => asm.jump(Cmp::Ge, value_low, None, fail),
        Op::ScmpCmpLt => asm.jump(Cmp::Ge, value_low, fail, None),
        Op::ScmpCmpLe => asm.jump(Cmp::Gt, value_low, fail, None),
        Op::ScmpCmpMaskedEq => {
            asm.and(value_low);
            asm.jump(Cmp::Eq, low(value_two), None, fail);
        }
    }
    asm.place(pass);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::bpf;
    use serde_json::json;

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    const fn errno(value: u32) -> u32 {
        libc::SECCOMP_RET_ERRNO | value
    }
    // Syscall numbers, from the kernel's tables.
    const X86_64_GETPPID: u32 = 110;
    const X86_GETPPID: u32 = 64;
    const X32_GETPPID: u32 = X32_SYSCALL_BIT | 110;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).expect("a valid linux.seccomp")
    }

    fn compiled(json: serde_json::Value) -> Filter {
        compile(&profile(json)).expect("the profile compiles")
    }

    /// What the filter returns for a syscall, as the kernel would compute it.
    fn verdict(filter: &Filter, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, arg) in args.iter().enumerate() {
            let at = 16 + 8 * i;
            data[at..at + 8].copy_from_slice(&arg.to_ne_bytes());
        }
        bpf::run(&filter.program, &data).expect("a well-formed program")
    }

    /// An x86_64 (or x32) syscall with no arguments.
    fn x86_64(filter: &Filter, nr: u32) -> u32 {
        verdict(filter, AUDIT_ARCH_X86_64, nr, [0; 6])
    }

    /// The program as text, one instruction a line, jumps by absolute index.
    fn listing(program: &[libc::sock_filter]) -> String {
        let mut text = String::new();
        for (pc, insn) in program.iter().enumerate() {
            let (code, k) = (u32::from(insn.code), insn.k);
            let to = |offset: u8| pc + 1 + usize::from(offset);
            let line = match code & !libc::BPF_K {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => format!("ld [{k}]"),
                c if c == libc::BPF_ALU | libc::BPF_AND => format!("and {k:#x}"),
                c if c == libc::BPF_RET => format!("ret {k:#x}"),
                c if c == libc::BPF_JMP | libc::BPF_JA => format!("ja {}", pc + 1 + k as usize),
                c => {
                    let name = match c & !libc::BPF_JMP {
                        op if op == libc::BPF_JEQ => "jeq",
                        op if op == libc::BPF_JGT => "jgt",
                        op if op == libc::BPF_JGE => "jge",
                        _ => panic!("unexpected code {c:#x}"),
                    };
                    format!("{name} {k:#x} ? {} : {}", to(insn.jt), to(insn.jf))
                }
            };
            text += &format!("{pc}: {line}\n");
        }
        text
    }

    #[test]
    fn small_profile_compiles_to_exactly_this_program() {
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42 }]
        }));
        // Architecture check, then a search over [0,110) [110] [111,x32 bit) [x32 bits) [-1].
        let expected = "\
0: ld [4]
1: jeq 0xc000003e ? 3 : 2
2: ret 0x80000000
3: ld [0]
4: jge 0x6f ? 8 : 5
5: jge 0x6e ? 7 : 6
6: ret 0x7fff0000
7: ret 0x5002a
8: jge 0x40000000 ? 10 : 9
9: ret 0x7fff0000
10: jge 0xffffffff ? 12 : 11
11: ret 0x80000000
12: ret 0x7fff0000
";
        assert_eq!(listing(&filter.program), expected);
        assert_eq!(filter.flags, 0);
        assert!(!filter.has_notify);
    }

    #[test]
    fn argument_checks_compile_to_exactly_this_program() {
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{
                "names": ["getppid"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{ "index": 1, "value": 0x5_0000_0007u64, "op": "SCMP_CMP_GE" }]
            }]
        }));
        let expected = "\
0: ld [4]
1: jeq 0xc000003e ? 3 : 2
2: ret 0x80000000
3: ld [0]
4: jge 0x6f ? 14 : 5
5: jge 0x6e ? 7 : 6
6: ret 0x50001
7: ld [28]
8: jgt 0x5 ? 12 : 9
9: jeq 0x5 ? 10 : 13
10: ld [24]
11: jge 0x7 ? 12 : 13
12: ret 0x7fff0000
13: ret 0x50001
14: jge 0x40000000 ? 16 : 15
15: ret 0x50026
16: jge 0xffffffff ? 18 : 17
17: ret 0x80000000
18: ret 0x50001
";
        // Above getppid (110), the highest syscall named, x86_64 numbers get ENOSYS (15).
        assert_eq!(listing(&filter.program), expected);
    }

    /// What each operator means, on the full 64 bits or the low 32 bits only.
    fn holds(op: &str, arg: u64, value: u64, value_two: u64, width: Width) -> bool {
        let (arg, value, value_two) = match width {
            Width::Bits64 => (arg, value, value_two),
            Width::Bits32 => (
                arg as u32 as u64,
                value as u32 as u64,
                value_two as u32 as u64,
            ),
        };
        match op {
            "SCMP_CMP_NE" => arg != value,
            "SCMP_CMP_LT" => arg < value,
            "SCMP_CMP_LE" => arg <= value,
            "SCMP_CMP_EQ" => arg == value,
            "SCMP_CMP_GE" => arg >= value,
            "SCMP_CMP_GT" => arg > value,
            "SCMP_CMP_MASKED_EQ" => arg & value == value_two,
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_operator_compares_like_its_definition_on_each_abi() {
        const OPS: [&str; 7] = [
            "SCMP_CMP_NE",
            "SCMP_CMP_LT",
            "SCMP_CMP_LE",
            "SCMP_CMP_EQ",
            "SCMP_CMP_GE",
            "SCMP_CMP_GT",
            "SCMP_CMP_MASKED_EQ",
        ];
        // Values around the edges of each 32-bit half.
        let interesting: Vec<u64> = [0, 1, 0x7fff_ffff, 0xffff_ffff, 1 << 32, 0x5_0000_0007]
            .into_iter()
            .chain([0x8000_0000_0000_0000, u64::MAX, 0xffff_0000_0000_ffff])
            .flat_map(|v: u64| [v.wrapping_sub(1), v, v.wrapping_add(1)])
            .collect();
        // (arch, syscall number, width): x86_64, i386 and x32 syscalls of getppid.
        let abis = [
            (AUDIT_ARCH_X86_64, X86_64_GETPPID, Width::Bits64),
            (AUDIT_ARCH_I386, X86_GETPPID, Width::Bits32),
            (AUDIT_ARCH_X86_64, X32_GETPPID, Width::Bits32),
        ];
        for op in OPS {
            for &value in &interesting {
                let value_two = value & 0x0000_ffff_0000_ff0f;
                let filter = compiled(json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                    "syscalls": [{
                        "names": ["getppid"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [{ "index": 3, "value": value, "valueTwo": value_two, "op": op }]
                    }]
                }));
                for &(arch, nr, width) in &abis {
                    for &arg in &interesting {
                        let expected = if holds(op, arg, value, value_two, width) {
                            errno(1)
                        } else {
                            ALLOW
                        };
                        let got = verdict(&filter, arch, nr, [7, 7, 7, arg, 7, 7]);
                        assert_eq!(got, expected, "{op} {value:#x} on {arg:#x} ({width:?})");
                    }
                }
            }
        }
    }

    #[test]
    fn arguments_of_a_rule_are_anded_and_rules_of_a_syscall_are_ored() {
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                { "names": ["getppid"], "action": "SCMP_ACT_ALLOW", "args": [
                    { "index": 0, "value": 1, "op": "SCMP_CMP_EQ" },
                    { "index": 5, "value": 10, "op": "SCMP_CMP_GT" },
                    { "index": 4, "value": 20, "op": "SCMP_CMP_LT" }
                ]},
                { "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7, "args": [
                    { "index": 0, "value": 2, "op": "SCMP_CMP_EQ" }
                ]},
                { "names": ["getppid"], "action": "SCMP_ACT_LOG", "args": [
                    { "index": 0, "value": 2, "op": "SCMP_CMP_GE" }
                ]}
            ]
        }));
        let call = |a0, a5| {
            verdict(
                &filter,
                AUDIT_ARCH_X86_64,
                X86_64_GETPPID,
                [a0, 0, 0, 0, 15, a5],
            )
        };
        assert_eq!(call(1, 15), ALLOW);
        assert_eq!(call(1, 10), errno(1), "arg5 > 10 fails");
        assert_eq!(
            verdict(
                &filter,
                AUDIT_ARCH_X86_64,
                X86_64_GETPPID,
                [1, 0, 0, 0, 20, 15]
            ),
            errno(1),
            "arg4 < 20 fails"
        );
        assert_eq!(call(0, 15), errno(1), "arg0 == 1 fails");
        assert_eq!(call(2, 15), errno(7), "the first matching rule decides");
        assert_eq!(call(3, 0), libc::SECCOMP_RET_LOG);
    }

    #[test]
    fn conditions_on_the_same_argument_are_each_a_rule_of_their_own_as_in_runc_and_crun() {
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                { "names": ["getppid"], "action": "SCMP_ACT_ALLOW", "args": [
                    { "index": 0, "value": 100, "op": "SCMP_CMP_EQ" },
                    { "index": 0, "value": 9001, "op": "SCMP_CMP_EQ" },
                    { "index": 1, "value": 7, "op": "SCMP_CMP_EQ" }
                ]}
            ]
        }));
        let call = |a0, a1| {
            verdict(
                &filter,
                AUDIT_ARCH_X86_64,
                X86_64_GETPPID,
                [a0, a1, 0, 0, 0, 0],
            )
        };
        assert_eq!(call(100, 0), ALLOW);
        assert_eq!(call(9001, 0), ALLOW);
        assert_eq!(call(0, 7), ALLOW, "any one condition is enough");
        assert_eq!(call(0, 0), errno(1));
    }

    #[test]
    fn an_unconditional_rule_overrides_the_conditional_ones_and_the_first_one_wins() {
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                { "names": ["getppid"], "action": "SCMP_ACT_LOG",
                  "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_EQ" }] },
                { "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5 },
                { "names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS" }
            ]
        }));
        assert_eq!(
            verdict(&filter, AUDIT_ARCH_X86_64, X86_64_GETPPID, [1; 6]),
            errno(5)
        );
        assert_eq!(x86_64(&filter, X86_64_GETPPID), errno(5));
    }

    #[test]
    fn a_rule_with_the_default_action_is_dropped() {
        // As runc does: otherwise this ERRNO rule would shadow the ALLOW one for arg0 == 1.
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                { "names": ["getppid"], "action": "SCMP_ACT_ERRNO",
                  "args": [{ "index": 0, "value": 1, "op": "SCMP_CMP_EQ" }] },
                { "names": ["getppid"], "action": "SCMP_ACT_ALLOW" }
            ]
        }));
        assert_eq!(
            verdict(&filter, AUDIT_ARCH_X86_64, X86_64_GETPPID, [1; 6]),
            ALLOW
        );
    }

    #[test]
    fn each_action_has_its_kernel_value() {
        let cases = [
            ("SCMP_ACT_KILL", None, libc::SECCOMP_RET_KILL_THREAD),
            ("SCMP_ACT_KILL_THREAD", None, libc::SECCOMP_RET_KILL_THREAD),
            ("SCMP_ACT_KILL_PROCESS", None, KILL_PROCESS),
            ("SCMP_ACT_TRAP", None, libc::SECCOMP_RET_TRAP),
            ("SCMP_ACT_ERRNO", None, errno(1)),
            ("SCMP_ACT_ERRNO", Some(38), errno(38)),
            ("SCMP_ACT_TRACE", None, libc::SECCOMP_RET_TRACE | 1),
            ("SCMP_ACT_TRACE", Some(9), libc::SECCOMP_RET_TRACE | 9),
            ("SCMP_ACT_LOG", None, libc::SECCOMP_RET_LOG),
            ("SCMP_ACT_NOTIFY", None, libc::SECCOMP_RET_USER_NOTIF),
            ("SCMP_ACT_ALLOW", None, ALLOW),
        ];
        for (action, errno_ret, expected) in cases {
            let filter = compiled(json!({
                "defaultAction": if action == "SCMP_ACT_ALLOW" { "SCMP_ACT_LOG" } else { "SCMP_ACT_ALLOW" },
                "listenerPath": "/run/agent.sock",
                "syscalls": [{ "names": ["getppid"], "action": action, "errnoRet": errno_ret }]
            }));
            assert_eq!(x86_64(&filter, X86_64_GETPPID), expected, "{action}");
            assert_eq!(filter.has_notify, action == "SCMP_ACT_NOTIFY", "{action}");
        }
        let filter = compiled(json!({ "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38 }));
        assert_eq!(x86_64(&filter, 0), errno(38));
    }

    #[test]
    fn syscalls_of_architectures_not_listed_kill_the_process() {
        let rule = json!([{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3 }]);
        let native_only = compiled(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": rule }));
        assert_eq!(x86_64(&native_only, X86_64_GETPPID), errno(3));
        assert_eq!(x86_64(&native_only, 1), ALLOW);
        assert_eq!(x86_64(&native_only, X32_GETPPID), KILL_PROCESS);
        assert_eq!(x86_64(&native_only, X32_SYSCALL_BIT), KILL_PROCESS);
        assert_eq!(x86_64(&native_only, u32::MAX), ALLOW, "-1 skips, not kills");
        let i386 = |f: &Filter, nr| verdict(f, AUDIT_ARCH_I386, nr, [0; 6]);
        assert_eq!(i386(&native_only, X86_GETPPID), KILL_PROCESS);
        assert_eq!(
            verdict(&native_only, AUDIT_ARCH_AARCH64, 173, [0; 6]),
            KILL_PROCESS
        );

        // ARM has no table here: listing it adds nothing, so its syscalls still die.
        let all = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_ARM"],
            "syscalls": rule
        }));
        assert_eq!(i386(&all, X86_GETPPID), errno(3));
        assert_eq!(i386(&all, X86_64_GETPPID), ALLOW, "110 is iopl on i386");
        assert_eq!(x86_64(&all, X32_GETPPID), errno(3));
        assert_eq!(x86_64(&all, X32_SYSCALL_BIT), ALLOW);
        assert_eq!(x86_64(&all, X86_64_GETPPID), errno(3));
        assert_eq!(verdict(&all, 0x4000_0028, 64, [0; 6]), KILL_PROCESS, "arm");
    }

    #[test]
    fn the_aarch64_table_is_used_for_aarch64() {
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_AARCH64"],
            "syscalls": [{ "names": ["getppid", "open"], "action": "SCMP_ACT_ERRNO" }]
        }));
        let aarch64 = |nr| verdict(&filter, AUDIT_ARCH_AARCH64, nr, [0; 6]);
        assert_eq!(aarch64(173), errno(1), "getppid is 173 on aarch64");
        assert_eq!(aarch64(110), ALLOW);
        assert_eq!(aarch64(2), ALLOW, "aarch64 has no open, only openat");
        assert_eq!(x86_64(&filter, 2), errno(1), "open on x86_64");
    }

    #[test]
    fn names_of_other_architectures_are_skipped_and_unknown_ones_reported() {
        // Docker's profile lists arm's and s390's calls; those exist, just not here.
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                { "names": ["getppid", "socketcall", "arm_fadvise64_64", "s390_runtime_instr"],
                  "action": "SCMP_ACT_ALLOW" },
                { "names": ["no_such_syscall", "getppid"], "action": "SCMP_ACT_ALLOW" },
                { "names": ["also_unknown"], "action": "SCMP_ACT_KILL" }
            ]
        }));
        assert_eq!(x86_64(&filter, X86_64_GETPPID), ALLOW);
        assert_eq!(x86_64(&filter, 0), errno(1));
        assert_eq!(
            filter.unknown_names_warning().unwrap(),
            format!(
                "linux.seccomp names syscalls berth does not know (its tables are from Linux {}): \
                 also_unknown, no_such_syscall; they keep the default action",
                syscall_table::LINUX
            )
        );
        let known = compiled(json!({ "defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            { "names": ["arm_fadvise64_64"], "action": "SCMP_ACT_ALLOW" }
        ]}));
        assert_eq!(known.unknown_names_warning(), None);
    }

    #[test]
    fn an_unknown_name_that_would_restrict_under_an_allowing_default_is_refused() {
        for default in ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG"] {
            let err = compile(&profile(json!({
                "defaultAction": default,
                "syscalls": [
                    { "names": ["getppid"], "action": "SCMP_ACT_ERRNO" },
                    { "names": ["read", "mseal_twice"], "action": "SCMP_ACT_KILL_PROCESS" }
                ]
            })))
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "linux.seccomp.syscalls[1] restricts \"mseal_twice\", a syscall berth does \
                     not know (its tables are from Linux {}), so it cannot be applied",
                    syscall_table::LINUX
                )
            );
        }
        // A rule that only repeats the default changes nothing, known or not.
        compiled(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            { "names": ["mseal_twice"], "action": "SCMP_ACT_ALLOW" }
        ]}));
    }

    #[test]
    fn syscalls_above_the_highest_the_profile_names_get_enosys() {
        let rules = json!([
            { "names": ["read", "getppid"], "action": "SCMP_ACT_ALLOW" },
            { "names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }
        ]);
        let enosys = errno(libc::ENOSYS as u32);
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": rules
        }));
        // x86_64: read 0, getpid 39, getppid 110 (the highest, though one rule repeats the
        // default).
        assert_eq!(x86_64(&filter, 0), ALLOW);
        assert_eq!(
            x86_64(&filter, 50),
            errno(1),
            "a hole below keeps the default"
        );
        assert_eq!(x86_64(&filter, X86_64_GETPPID), ALLOW);
        assert_eq!(x86_64(&filter, X86_64_GETPPID + 1), enosys);
        assert_eq!(x86_64(&filter, 452), enosys, "fchmodat2");
        assert_eq!(x86_64(&filter, X32_SYSCALL_BIT - 1), enosys);
        // x32 counts its own numbers; -1 (a tracer's skip) keeps the default.
        assert_eq!(x86_64(&filter, X32_GETPPID), ALLOW);
        assert_eq!(x86_64(&filter, X32_GETPPID + 1), enosys);
        assert_eq!(x86_64(&filter, u32::MAX - 1), enosys);
        assert_eq!(x86_64(&filter, u32::MAX), errno(1));
        // i386: getppid is 64, getpid 20, read 3.
        let i386 = |nr| verdict(&filter, AUDIT_ARCH_I386, nr, [0; 6]);
        assert_eq!(i386(X86_GETPPID), ALLOW);
        assert_eq!(i386(X86_GETPPID + 1), enosys);
        assert_eq!(i386(10), errno(1));

        // An ABI the profile does not list still dies, whatever the number.
        let native =
            compiled(json!({ "defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": rules }));
        assert_eq!(x86_64(&native, 200), enosys);
        assert_eq!(x86_64(&native, 50), KILL_PROCESS);
        assert_eq!(x86_64(&native, X32_GETPPID + 1), KILL_PROCESS);

        // Defaults that let syscalls run need no such rule (runc adds none); neither does a
        // default that already says ENOSYS.
        for (default, errno_ret) in [
            ("SCMP_ACT_ALLOW", None),
            ("SCMP_ACT_LOG", None),
            ("SCMP_ACT_TRACE", Some(1)),
            ("SCMP_ACT_ERRNO", Some(libc::ENOSYS)),
        ] {
            let mut json = json!({ "defaultAction": default, "syscalls": [
                { "names": ["getppid"], "action": "SCMP_ACT_KILL" }
            ]});
            if let Some(errno_ret) = errno_ret {
                json["defaultErrnoRet"] = errno_ret.into();
            }
            let filter = compiled(json);
            let default = x86_64(&filter, 0);
            assert_eq!(x86_64(&filter, 300), default, "{default:#x}");
        }
    }

    #[test]
    fn bad_profiles_are_refused_with_the_field_named() {
        let refused = |json| compile(&profile(json)).unwrap_err().to_string();
        assert_eq!(
            refused(json!({ "defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1 })),
            "linux.seccomp.defaultErrnoRet is set, but SCMP_ACT_ALLOW takes no errno"
        );
        assert_eq!(
            refused(json!({ "defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                { "names": ["read"], "action": "SCMP_ACT_ALLOW" },
                { "names": ["write"], "action": "SCMP_ACT_KILL", "errnoRet": 1 }
            ]})),
            "linux.seccomp.syscalls[1].errnoRet is set, but SCMP_ACT_KILL takes no errno"
        );
        assert_eq!(
            refused(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                { "names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 65536 }
            ]})),
            "linux.seccomp.syscalls[0].errnoRet is 65536, more than 65535"
        );
        assert_eq!(
            refused(json!({ "defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a" })),
            "linux.seccomp.defaultAction cannot be SCMP_ACT_NOTIFY"
        );
        assert_eq!(
            refused(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                { "names": [], "action": "SCMP_ACT_ERRNO" }
            ]})),
            "linux.seccomp.syscalls[0].names is empty"
        );
        assert_eq!(
            refused(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                { "names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [
                    { "index": 0, "value": 1, "op": "SCMP_CMP_EQ" },
                    { "index": 6, "value": 1, "op": "SCMP_CMP_EQ" }
                ]}
            ]})),
            "linux.seccomp.syscalls[0].args[1].index is 6, more than 5"
        );
        assert_eq!(
            refused(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                { "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }
            ]})),
            "linux.seccomp.listenerPath is not set, but a rule uses SCMP_ACT_NOTIFY"
        );
        assert!(refused(
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a",
            "syscalls": [
                { "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" },
                { "names": ["write", "sendmsg"], "action": "SCMP_ACT_NOTIFY" }
            ]})
        )
        .starts_with("linux.seccomp.syscalls[1] gives sendmsg to the seccomp agent"));
        assert_eq!(
            refused(json!({ "defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x" })),
            "linux.seccomp.listenerMetadata is set without listenerPath"
        );
        // Five-argument rules take over 20 instructions each: 200 of them pass the limit.
        let args: Vec<_> = (0..5)
            .map(|index| json!({ "index": index, "value": 1u64 << 40, "op": "SCMP_CMP_GT" }))
            .collect();
        let rule = json!({ "names": ["read"], "action": "SCMP_ACT_ERRNO", "args": args });
        let message = refused(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": vec![rule; 200]
        }));
        assert!(message.starts_with("the seccomp filter has "), "{message}");
        assert!(
            message.ends_with(" instructions, more than the kernel's 4096"),
            "{message}"
        );
    }

    #[test]
    fn flags_become_kernel_flags() {
        let flags = |extra: serde_json::Value, notify: bool| {
            let action = if notify {
                "SCMP_ACT_NOTIFY"
            } else {
                "SCMP_ACT_ERRNO"
            };
            let mut json = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": "/run/agent.sock",
                "syscalls": [{ "names": ["mkdir"], "action": action }]
            });
            json["flags"] = extra;
            compiled(json).flags
        };
        assert_eq!(flags(json!([]), false), 0);
        assert_eq!(
            flags(
                json!(["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]),
                false
            ),
            libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
        assert_eq!(
            flags(json!(["SECCOMP_FILTER_FLAG_TSYNC"]), false),
            libc::SECCOMP_FILTER_FLAG_TSYNC
        );
        assert_eq!(
            flags(json!(["SECCOMP_FILTER_FLAG_TSYNC"]), true),
            libc::SECCOMP_FILTER_FLAG_TSYNC
                | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH
                | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        );
        let wait_killable = json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]);
        assert_eq!(
            flags(wait_killable.clone(), false),
            0,
            "meaningless without a listener"
        );
        let kernel_has_it = kernel_accepts(
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        );
        let expected = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
            | if kernel_has_it {
                libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            } else {
                0
            };
        assert_eq!(flags(wait_killable, true), expected);
    }

    #[test]
    fn the_kernel_probe_tells_known_flags_from_unknown_ones() {
        assert!(kernel_accepts(libc::SECCOMP_FILTER_FLAG_LOG));
        assert!(!kernel_accepts(1 << 30));
    }

    #[test]
    fn the_syscall_tables_are_sorted_and_hold_known_numbers() {
        let first_words = |lines: &str| -> Vec<String> {
            lines
                .lines()
                .map(|l| l.split(' ').next().unwrap().to_owned())
                .collect()
        };
        for table in &TABLES {
            let names = first_words(table.syscalls);
            assert!(names.windows(2).all(|w| w[0] < w[1]), "{:?}", table.arch);
            // Every name is found, with the number its line gives.
            for line in table.syscalls.lines() {
                let (name, nr) = line.split_once(' ').unwrap();
                assert_eq!(syscall_number(table, name), nr.parse().ok(), "{line}");
            }
        }
        let number = |arch: Arch, name| {
            let table = TABLES.iter().find(|t| t.arch == arch).unwrap();
            syscall_number(table, name)
        };
        assert_eq!(number(Arch::ScmpArchX86_64, "read"), Some(0));
        assert_eq!(number(Arch::ScmpArchX86_64, "execve"), Some(59));
        assert_eq!(number(Arch::ScmpArchX86_64, "unshare"), Some(272));
        assert_eq!(number(Arch::ScmpArchX86_64, "clone3"), Some(435));
        assert_eq!(number(Arch::ScmpArchX86_64, "socketcall"), None);
        assert_eq!(number(Arch::ScmpArchX86, "socketcall"), Some(102));
        assert_eq!(number(Arch::ScmpArchX86, "unshare"), Some(310));
        assert_eq!(number(Arch::ScmpArchX32, "read"), Some(X32_SYSCALL_BIT));
        assert_eq!(
            number(Arch::ScmpArchX32, "rt_sigaction"),
            Some(X32_SYSCALL_BIT | 512)
        );
        assert_eq!(number(Arch::ScmpArchAarch64, "openat"), Some(56));
        assert_eq!(number(Arch::ScmpArchAarch64, "renameat"), Some(38));
        assert_eq!(number(Arch::ScmpArchAarch64, "fcntl"), Some(25));
        assert_eq!(number(Arch::ScmpArchAarch64, "newfstatat"), Some(79));
        assert_eq!(number(Arch::ScmpArchAarch64, "clone"), Some(220));
        assert_eq!(number(Arch::ScmpArchAarch64, "clone3"), Some(435));
        assert_eq!(number(Arch::ScmpArchAarch64, "open"), None);
        // Newer than Linux 6.1, where the tables once stopped.
        for (name, nr) in [
            ("cachestat", 451),
            ("fchmodat2", 452),
            ("map_shadow_stack", 453),
            ("statmount", 457),
            ("listmount", 458),
            ("lsm_get_self_attr", 459),
            ("lsm_set_self_attr", 460),
            ("lsm_list_modules", 461),
            ("mseal", 462),
        ] {
            assert_eq!(number(Arch::ScmpArchX86_64, name), Some(nr), "{name}");
            assert_eq!(number(Arch::ScmpArchX86, name), Some(nr), "{name}");
        }
        assert_eq!(number(Arch::ScmpArchAarch64, "fchmodat2"), Some(452));
        let elsewhere = first_words(syscall_table::ELSEWHERE);
        assert!(elsewhere.windows(2).all(|w| w[0] < w[1]));
        assert!(elsewhere.iter().all(|name| known_to_linux(name)));
        assert!(known_to_linux("arm_fadvise64_64"));
        assert!(!known_to_linux("no_such_syscall"));
    }

    #[test]
    fn look_up_finds_every_line_and_nothing_between_them() {
        let lines = "a 1\nab 2\nb 3\nbb\nc 5\n";
        assert_eq!(look_up(lines, "a"), Some("1"));
        assert_eq!(look_up(lines, "ab"), Some("2"));
        assert_eq!(look_up(lines, "b"), Some("3"));
        assert_eq!(look_up(lines, "bb"), Some(""));
        assert_eq!(look_up(lines, "c"), Some("5"));
        for missing in ["", "0", "aa", "abc", "ba", "d", "a 1"] {
            assert_eq!(look_up(lines, missing), None, "{missing:?}");
        }
        assert_eq!(look_up("", "a"), None);
        assert_eq!(look_up("only 7\n", "only"), Some("7"));
    }

    fn docker_profile() -> LinuxSeccomp {
        serde_json::from_str(include_str!("testdata/docker-default.json")).unwrap()
    }

    #[test]
    fn dockers_default_profile_compiles_and_decides_like_docker() {
        let spec = docker_profile();
        let filter = compile(&spec).unwrap();
        assert!(
            filter.program.len() < 1000,
            "{} instructions",
            filter.program.len()
        );
        assert_eq!(filter.flags, 0);
        let eperm = errno(libc::EPERM as u32);
        let x86_64_table = &TABLES[0];
        let allowed = spec.syscalls().as_ref().unwrap()[0].names();
        assert!(allowed.len() > 300);
        for name in allowed {
            if let Some(nr) = syscall_number(x86_64_table, name) {
                assert_eq!(x86_64(&filter, nr), ALLOW, "{name}");
            }
        }
        let call = |nr: i64, args| verdict(&filter, AUDIT_ARCH_X86_64, nr as u32, args);
        assert_eq!(
            call(
                libc::SYS_unshare,
                [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]
            ),
            eperm
        );
        assert_eq!(call(libc::SYS_mount, [0; 6]), eperm);
        assert_eq!(call(libc::SYS_clone3, [0; 6]), errno(libc::ENOSYS as u32));
        let clone = |flags: i32| call(libc::SYS_clone, [flags as u64, 0, 0, 0, 0, 0]);
        assert_eq!(clone(libc::SIGCHLD), ALLOW);
        assert_eq!(
            clone(libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND),
            ALLOW
        );
        assert_eq!(clone(libc::CLONE_NEWUSER | libc::SIGCHLD), eperm);
        assert_eq!(clone(libc::CLONE_NEWNS), eperm);
        let socket = |family: i32| call(libc::SYS_socket, [family as u64, 1, 0, 0, 0, 0]);
        assert_eq!(socket(libc::AF_UNIX), ALLOW);
        assert_eq!(socket(libc::AF_INET6), ALLOW);
        assert_eq!(socket(libc::AF_VSOCK), eperm);
        assert_eq!(socket(libc::AF_ALG), eperm);
        let personality = |persona: u64| call(libc::SYS_personality, [persona, 0, 0, 0, 0, 0]);
        assert_eq!(personality(0xffff_ffff), ALLOW);
        assert_eq!(personality(0x0040_0000), eperm);
        // The i386 and x32 ABIs are handled too.
        let i386_unshare = verdict(&filter, AUDIT_ARCH_I386, 310, [0; 6]);
        assert_eq!(i386_unshare, eperm);
        assert_eq!(
            verdict(&filter, AUDIT_ARCH_I386, X86_GETPPID, [0; 6]),
            ALLOW
        );
        assert_eq!(
            verdict(&filter, AUDIT_ARCH_I386, 102, [0; 6]),
            ALLOW,
            "socketcall"
        );
        assert_eq!(x86_64(&filter, X32_GETPPID), ALLOW);
        assert_eq!(x86_64(&filter, X32_SYSCALL_BIT | 272), eperm, "x32 unshare");
        assert_eq!(
            verdict(&filter, AUDIT_ARCH_AARCH64, 0, [0; 6]),
            KILL_PROCESS
        );
        // Calls newer than Linux 6.1 that Docker allows by name; the ones newer than the
        // profile (its highest is removexattrat, 466) get ENOSYS, so glibc falls back.
        for nr in [451, 452, 457, 458, 462, 466] {
            assert_eq!(call(nr, [0; 6]), ALLOW, "{nr}");
        }
        let enosys = errno(libc::ENOSYS as u32);
        for nr in [467, 468, 471, 1000] {
            assert_eq!(call(nr, [0; 6]), enosys, "{nr}");
        }
        assert_eq!(
            call(libc::SYS_kexec_load, [0; 6]),
            eperm,
            "below the highest: EPERM"
        );
        assert_eq!(verdict(&filter, AUDIT_ARCH_I386, 467, [0; 6]), enosys);
        assert_eq!(x86_64(&filter, X32_SYSCALL_BIT | 600), enosys);
        assert_eq!(filter.unknown_names_warning(), None);
    }

    #[test]
    fn allows_says_what_the_kernel_lets_through_on_this_machine() {
        // Docker's profile allows clone without namespace flags, and setsid and ioctl.
        let docker = compile(&docker_profile()).unwrap();
        let fork = (libc::CLONE_PARENT | libc::SIGCHLD) as u64;
        assert!(docker.allows(libc::SYS_clone, [fork, 0, 0, 0, 0, 0]));
        let new_user = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
        assert!(!docker.allows(libc::SYS_clone, [new_user, 0, 0, 0, 0, 0]));
        assert!(docker.allows(libc::SYS_setsid, [0; 6]));
        let tiocsctty = [0, libc::TIOCSCTTY, 0, 0, 0, 0];
        assert!(docker.allows(libc::SYS_ioctl, tiocsctty));
        // Logged, and left to the agent, count as let through; an errno or a kill do not.
        let filter = compiled(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "listenerPath": "/run/agent.sock",
            "syscalls": [
                {"names": ["getpid"], "action": "SCMP_ACT_LOG"},
                {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["execve"], "action": "SCMP_ACT_NOTIFY"},
                {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}
            ]
        }));
        assert!(filter.allows(libc::SYS_getpid, [0; 6]));
        assert!(filter.allows(libc::SYS_execve, [0; 6]));
        assert!(filter.allows(libc::SYS_write, [1, 0, 0, 0, 0, 0]));
        assert!(!filter.allows(libc::SYS_getppid, [0; 6]));
        assert!(!filter.allows(libc::SYS_clone, [fork, 0, 0, 0, 0, 0]));
    }

    /// Run with `cargo test --release -- --ignored --nocapture compile_time`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn compile_time_of_dockers_default_profile() {
        let spec = docker_profile();
        let rounds = 2000;
        let mut times: Vec<std::time::Duration> = (0..rounds)
            .map(|_| {
                let start = std::time::Instant::now();
                std::hint::black_box(compile(std::hint::black_box(&spec)).unwrap());
                start.elapsed()
            })
            .collect();
        times.sort();
        let instructions = compile(&spec).unwrap().program.len();
        eprintln!(
            "docker's default profile: {instructions} instructions, compiled in {:?} median, \
             {:?} min, {:?} p99 over {rounds} rounds",
            times[rounds / 2],
            times[0],
            times[rounds * 99 / 100]
        );
    }
}
