//! Device access: the rules a container gets (the spec's `linux.resources.devices`, then the
//! devices every container needs, as runc does; the last matching rule wins and anything
//! unmatched is denied), written as v1 `devices.allow` / `devices.deny` lines or compiled into an
//! eBPF program for cgroup v2. A `linux.devices` entry makes a node and grants nothing: whether
//! the container may use it is for `linux.resources.devices` to say (engines send both).

use oci_spec::runtime::{Linux, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::CgroupError;

/// Access bits, as the kernel's BPF_DEVCG_ACC_* flags.
pub const MKNOD: u32 = 1;
pub const READ: u32 = 2;
pub const WRITE: u32 = 4;
const ALL_ACCESS: u32 = MKNOD | READ | WRITE;

/// One rule: `kind` is `a` (every device), `b` (block) or `c` (character); `None` for a major or
/// minor number means any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

/// The devices every container may use, after the spec's rules: mknod of any node (opening it
/// is what counts), /dev/null, zero, full, random, urandom, tty, ptmx, the pty slaves, and tun.
fn default_rules() -> Vec<DeviceRule> {
    let rule = |kind, major, minor: Option<u32>, access| DeviceRule {
        allow: true,
        kind,
        major,
        minor,
        access,
    };
    let rwm = ALL_ACCESS;
    vec![
        rule('c', None, None, MKNOD),
        rule('b', None, None, MKNOD),
        rule('c', Some(1), Some(3), rwm),
        rule('c', Some(1), Some(5), rwm),
        rule('c', Some(1), Some(7), rwm),
        rule('c', Some(1), Some(8), rwm),
        rule('c', Some(1), Some(9), rwm),
        rule('c', Some(5), Some(0), rwm),
        rule('c', Some(5), Some(2), rwm),
        rule('c', Some(136), None, rwm),
        rule('c', Some(10), Some(200), rwm),
    ]
}

/// The rules for a container: its `linux.resources.devices`, then the defaults.
pub fn rules_for(linux: Option<&Linux>) -> Result<Vec<DeviceRule>, CgroupError> {
    let mut rules = Vec::new();
    let resources = linux.and_then(|l| l.resources().as_ref());
    for (index, entry) in resources
        .and_then(|r| r.devices().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        rules.push(from_spec(entry, index)?);
    }
    rules.extend(default_rules());
    Ok(rules)
}

/// What `create` applies: the spec's `linux.resources`, checked, and the complete device rules.
pub fn resources_for(
    linux: Option<&Linux>,
) -> Result<(LinuxResources, Vec<DeviceRule>), CgroupError> {
    let resources = linux
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    super::resources::check(&resources)?;
    Ok((resources, rules_for(linux)?))
}

fn from_spec(entry: &LinuxDeviceCgroup, index: usize) -> Result<DeviceRule, CgroupError> {
    let field = format!("linux.resources.devices[{index}]");
    let invalid = |reason: String| CgroupError::Invalid {
        field: field.clone(),
        reason,
    };
    let kind = match entry.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => 'a',
        LinuxDeviceType::B => 'b',
        LinuxDeviceType::C => 'c',
        other => {
            return Err(invalid(format!(
                "type {:?} cannot be used in a device rule (only a, b or c)",
                other.as_str()
            )))
        }
    };
    let number = |value: Option<i64>, what: &str| match value {
        None => Ok(None),
        Some(n) if n < 0 => Ok(None),
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| invalid(format!("{what} {n} is too large"))),
    };
    let access = match entry.access().as_deref() {
        None | Some("") => ALL_ACCESS,
        Some(text) => {
            let mut bits = 0;
            for c in text.chars() {
                bits |= match c {
                    'r' => READ,
                    'w' => WRITE,
                    'm' => MKNOD,
                    _ => return Err(invalid(format!("access {text:?} may hold only r, w and m"))),
                };
            }
            bits
        }
    };
    Ok(DeviceRule {
        allow: entry.allow(),
        kind,
        major: number(entry.major(), "major")?,
        minor: number(entry.minor(), "minor")?,
        access,
    })
}

impl DeviceRule {
    /// The v1 line for a block or character rule, e.g. `c 1:3 rwm` or `b *:* m`.
    fn v1_line(&self, kind: char) -> String {
        let number = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let mut access = String::new();
        for (bit, c) in [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')] {
            if self.access & bit != 0 {
                access.push(c);
            }
        }
        format!(
            "{kind} {}:{} {access}",
            number(self.major),
            number(self.minor)
        )
    }

    fn matches_everything(&self) -> bool {
        self.kind == 'a'
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ALL_ACCESS
    }
}

/// The v1 writes, in order: (file, line). The cgroup starts from "deny everything"; a rule that
/// matches everything resets the default, as `a` does in the kernel.
pub fn v1_writes(rules: &[DeviceRule]) -> Vec<(&'static str, String)> {
    let mut writes = vec![("devices.deny", "a".to_string())];
    for rule in rules {
        let file = if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        if rule.matches_everything() {
            writes.push((file, "a".to_string()));
        } else if rule.kind == 'a' {
            // v1's `a` always means every access to every device: say it per type instead.
            writes.push((file, rule.v1_line('b')));
            writes.push((file, rule.v1_line('c')));
        } else {
            writes.push((file, rule.v1_line(rule.kind)));
        }
    }
    writes
}

/// One eBPF instruction, as `struct bpf_insn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        }
    }

    /// The 8 bytes the kernel reads.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0] = self.code;
        out[1] = self.regs;
        out[2..4].copy_from_slice(&self.off.to_ne_bytes());
        out[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        out
    }
}

// Opcodes: class | operation | source.
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU64_AND_K: u8 = 0x57; // dst &= imm
const ALU64_RSH_K: u8 = 0x77; // dst >>= imm
const ALU64_MOV_K: u8 = 0xb7; // dst = imm
const ALU64_MOV_X: u8 = 0xbf; // dst = src
const JMP_JEQ_K: u8 = 0x15; // if dst == imm: pc += off
const JMP_JNE_K: u8 = 0x55; // if dst != imm: pc += off
const JMP_JSET_K: u8 = 0x45; // if dst & imm: pc += off
const JMP_EXIT: u8 = 0x95;

/// One step of a rule's test: a jump past the rule when the device does not match, or the
/// arithmetic before one.
enum Check {
    Jump(u8, u8, i32),
    Move(u8, u8),
    And(u8, i32),
}

/// The device program for a BPF_PROG_TYPE_CGROUP_DEVICE hook. Its context is
/// `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`, with the device type
/// (1 block, 2 char) in the low 16 bits of `access_type` and the access bits above. It checks the
/// rules from the last to the first and returns the verdict of the first that matches (so the
/// last matching rule wins, as with v1), and 0 (deny) when none does. An allow rule matches a
/// request it grants entirely; a deny rule one that asks for any access it names (opening a
/// disk read-write is stopped by a rule denying writes).
pub fn bpf_program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut prog = vec![
        Insn::new(LDX_MEM_W, 2, 1, 0, 0),
        Insn::new(ALU64_AND_K, 2, 0, 0, 0xffff),
        Insn::new(LDX_MEM_W, 3, 1, 0, 0),
        Insn::new(ALU64_RSH_K, 3, 0, 0, 16),
        Insn::new(LDX_MEM_W, 4, 1, 4, 0),
        Insn::new(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        // Each check jumps past the rest of this rule's block when the device does not match.
        let mut checks = Vec::new();
        match rule.kind {
            'b' => checks.push(Check::Jump(JMP_JNE_K, 2, 1)),
            'c' => checks.push(Check::Jump(JMP_JNE_K, 2, 2)),
            _ => {}
        }
        let partial = rule.access & ALL_ACCESS != ALL_ACCESS;
        if partial && rule.allow {
            // An allow rule covers a request only if it grants every bit asked for.
            checks.push(Check::Jump(
                JMP_JSET_K,
                3,
                (!rule.access & ALL_ACCESS) as i32,
            ));
        } else if partial {
            // A deny rule stops a request that asks for any bit it names.
            checks.push(Check::Move(1, 3));
            checks.push(Check::And(1, rule.access as i32));
            checks.push(Check::Jump(JMP_JEQ_K, 1, 0));
        }
        if let Some(major) = rule.major {
            checks.push(Check::Jump(JMP_JNE_K, 4, major as i32));
        }
        if let Some(minor) = rule.minor {
            checks.push(Check::Jump(JMP_JNE_K, 5, minor as i32));
        }
        let block = checks.len() + 2;
        for (i, check) in checks.into_iter().enumerate() {
            prog.push(match check {
                Check::Jump(code, reg, imm) => Insn::new(code, reg, 0, (block - 1 - i) as i16, imm),
                Check::Move(dst, src) => Insn::new(ALU64_MOV_X, dst, src, 0, 0),
                Check::And(dst, imm) => Insn::new(ALU64_AND_K, dst, 0, 0, imm),
            });
        }
        prog.push(Insn::new(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow)));
        prog.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
        if rule.matches_everything() {
            // Nothing before it can be reached.
            return prog;
        }
    }
    prog.push(Insn::new(ALU64_MOV_K, 0, 0, 0, 0));
    prog.push(Insn::new(JMP_EXIT, 0, 0, 0, 0));
    prog
}

/// What the program decides for one access: an interpreter of the instructions `bpf_program`
/// emits, so the tests check the program itself rather than a model of it.
#[cfg(test)]
fn run_program(prog: &[Insn], kind: char, major: u32, minor: u32, access: u32) -> bool {
    let device_type = match kind {
        'b' => 1u64,
        _ => 2u64,
    };
    let ctx = [
        (access << 16) as u64 | device_type,
        major as u64,
        minor as u64,
    ];
    let mut regs = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let insn = prog[pc];
        let dst = (insn.regs & 0x0f) as usize;
        let src = (insn.regs >> 4) as usize;
        let imm = insn.imm as i64 as u64;
        pc += 1;
        match insn.code {
            LDX_MEM_W => {
                assert_eq!(src, 1, "loads come from the context");
                regs[dst] = ctx[insn.off as usize / 4] & 0xffff_ffff;
            }
            ALU64_AND_K => regs[dst] &= imm,
            ALU64_RSH_K => regs[dst] >>= imm,
            ALU64_MOV_K => regs[dst] = imm,
            ALU64_MOV_X => regs[dst] = regs[src],
            JMP_JEQ_K if regs[dst] == imm => pc += insn.off as usize,
            JMP_JNE_K if regs[dst] != imm => pc += insn.off as usize,
            JMP_JSET_K if regs[dst] & imm != 0 => pc += insn.off as usize,
            JMP_JEQ_K | JMP_JNE_K | JMP_JSET_K => {}
            JMP_EXIT => return regs[0] != 0,
            other => panic!("unknown opcode {other:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_linux(json: &str) -> Linux {
        serde_json::from_str(json).unwrap()
    }

    fn template_rules() -> Vec<DeviceRule> {
        let linux = spec_linux(
            r#"{"resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]}"#,
        );
        rules_for(Some(&linux)).unwrap()
    }

    #[test]
    fn the_template_denies_disks_and_allows_the_basics() {
        let rules = template_rules();
        let prog = bpf_program(&rules);
        // mknod of anything is allowed; reading or writing a disk is not.
        assert!(run_program(&prog, 'b', 8, 0, MKNOD));
        assert!(!run_program(&prog, 'b', 8, 0, READ));
        assert!(!run_program(&prog, 'b', 253, 0, READ | WRITE));
        assert!(!run_program(&prog, 'b', 7, 0, WRITE));
        assert!(!run_program(&prog, 'c', 1, 1, READ)); // /dev/mem
        for (major, minor) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 2),
            (136, 4),
        ] {
            assert!(run_program(&prog, 'c', major, minor, READ | WRITE));
        }
        // A linux.devices entry is not allowed by itself: the deny rule holds for it.
        assert!(!run_program(&prog, 'c', 10, 229, READ | WRITE));
        assert!(!run_program(&prog, 'c', 10, 230, READ));
    }

    #[test]
    fn the_last_matching_rule_wins() {
        let linux = spec_linux(
            r#"{"resources": {"devices": [
                {"allow": true, "access": "rwm"},
                {"allow": false, "type": "b", "major": 8, "access": "w"},
                {"allow": true, "type": "b", "major": 8, "minor": 1, "access": "rw"}]}}"#,
        );
        let rules = rules_for(Some(&linux)).unwrap();
        let prog = bpf_program(&rules);
        assert!(run_program(&prog, 'b', 8, 0, READ));
        assert!(!run_program(&prog, 'b', 8, 0, WRITE));
        assert!(!run_program(&prog, 'b', 8, 0, READ | WRITE));
        assert!(run_program(&prog, 'b', 8, 1, READ | WRITE));
        assert!(run_program(&prog, 'c', 4, 4, READ | WRITE));
        // An allow-all rule ends the program: the rules before it are never reached.
        let first_allow_all = prog
            .windows(2)
            .position(|w| w[0].code == ALU64_MOV_K && w[0].imm == 1 && w[1].code == JMP_EXIT)
            .unwrap();
        assert!(first_allow_all < prog.len() - 2);
    }

    #[test]
    fn nothing_matches_means_deny() {
        let prog = bpf_program(&[]);
        assert!(!run_program(&prog, 'c', 1, 3, READ));
    }

    #[test]
    fn v1_lines_start_from_deny_all() {
        let writes = v1_writes(&template_rules());
        assert_eq!(writes[0], ("devices.deny", "a".to_string()));
        assert_eq!(writes[1], ("devices.deny", "a".to_string()));
        assert!(!writes.iter().any(|(_, line)| line.starts_with("c 10:229")));
        assert!(writes.contains(&("devices.allow", "b *:* m".to_string())));
        assert!(writes.contains(&("devices.allow", "c 136:* rwm".to_string())));
        assert_eq!(writes.last().unwrap().1, "c 10:200 rwm");
        let linux = spec_linux(r#"{"resources": {"devices": [{"allow": true, "access": "r"}]}}"#);
        let writes = v1_writes(&rules_for(Some(&linux)).unwrap());
        assert_eq!(writes[1], ("devices.allow", "b *:* r".to_string()));
        assert_eq!(writes[2], ("devices.allow", "c *:* r".to_string()));
    }

    #[test]
    fn bad_rules_name_the_entry() {
        let linux = spec_linux(r#"{"resources": {"devices": [{"allow": true, "access": "rwx"}]}}"#);
        assert_eq!(
            rules_for(Some(&linux)).unwrap_err().to_string(),
            "linux.resources.devices[0]: access \"rwx\" may hold only r, w and m"
        );
        let linux = spec_linux(r#"{"resources": {"devices": [{"allow": true, "type": "p"}]}}"#);
        assert!(rules_for(Some(&linux)).is_err());
    }

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        let insn = Insn::new(JMP_JNE_K, 4, 0, 3, 136);
        let bytes = insn.to_bytes();
        assert_eq!(bytes[0], 0x55);
        assert_eq!(bytes[1], 0x04);
        assert_eq!(i16::from_ne_bytes([bytes[2], bytes[3]]), 3);
        assert_eq!(i32::from_ne_bytes(bytes[4..8].try_into().unwrap()), 136);
        assert_eq!(Insn::new(LDX_MEM_W, 2, 1, 0, 0).to_bytes()[1], 0x12);
    }
}
