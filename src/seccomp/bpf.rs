//! A small assembler for classic BPF seccomp programs: instructions with symbolic jump targets,
//! laid out into `sock_filter`s with trampolines where a conditional jump cannot reach.

use libc::sock_filter;

/// A position in the program, placed with [`Assembler::place`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Label(usize);

/// The conditional jumps seccomp programs use; all compare the accumulator, unsigned, with a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Gt,
    Ge,
}

/// Where a conditional jump goes: the next instruction, or a label.
pub(super) type Target = Option<Label>;

#[derive(Clone, Copy, Debug)]
enum Insn {
    /// Load the 32-bit word at this offset of `seccomp_data` into the accumulator.
    Load(u32),
    /// Accumulator &= constant.
    And(u32),
    /// Compare the accumulator with a constant and jump.
    Jump {
        cmp: Cmp,
        k: u32,
        on_true: Target,
        on_false: Target,
    },
    /// Jump unconditionally; reaches anywhere.
    Goto(Label),
    Return(u32),
    /// Not an instruction: marks where a label points.
    Place(Label),
}

/// Collects instructions, then lays them out with [`Assembler::assemble`].
#[derive(Default)]
pub(super) struct Assembler {
    insns: Vec<Insn>,
    labels: usize,
}

/// A conditional jump's offset is a u8 counted from the next instruction.
const MAX_JUMP: usize = u8::MAX as usize;

impl Assembler {
    pub(super) fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    pub(super) fn place(&mut self, label: Label) {
        self.insns.push(Insn::Place(label));
    }

    pub(super) fn load(&mut self, offset: u32) {
        self.insns.push(Insn::Load(offset));
    }

    pub(super) fn and(&mut self, mask: u32) {
        self.insns.push(Insn::And(mask));
    }

    pub(super) fn jump(&mut self, cmp: Cmp, k: u32, on_true: Target, on_false: Target) {
        self.insns.push(Insn::Jump {
            cmp,
            k,
            on_true,
            on_false,
        });
    }

    pub(super) fn ret(&mut self, action: u32) {
        self.insns.push(Insn::Return(action));
    }

    /// Lays the program out. A conditional jump whose target is more than 255 instructions ahead
    /// gets a `ja` trampoline right after it; inserting trampolines can push other jumps out of
    /// reach, so this repeats until every jump reaches (each jump is rewritten at most once).
    pub(super) fn assemble(mut self) -> Vec<sock_filter> {
        loop {
            let positions = self.positions();
            let far = |pos: usize, target: Target| match target {
                Some(label) => positions.labels[label.0] - pos - 1 > MAX_JUMP,
                None => false,
            };
            let mut laid_out = Vec::with_capacity(self.insns.len());
            let mut rewritten = false;
            for (index, insn) in self.insns.iter().enumerate() {
                let Insn::Jump {
                    cmp,
                    k,
                    on_true,
                    on_false,
                } = *insn
                else {
                    laid_out.push(*insn);
                    continue;
                };
                let pos = positions.insns[index];
                if !far(pos, on_true) && !far(pos, on_false) {
                    laid_out.push(*insn);
                    continue;
                }
                rewritten = true;
                // jump → trampolines → the original next instruction.
                let next = Label(self.labels);
                self.labels += 1;
                let bounce = |target: Target, labels: &mut usize, after: &mut Vec<Insn>| {
                    if !far(pos, target) {
                        return Some(target.unwrap_or(next));
                    }
                    let trampoline = Label(*labels);
                    *labels += 1;
                    after.push(Insn::Place(trampoline));
                    after.push(Insn::Goto(target.expect("a far target is a label")));
                    Some(trampoline)
                };
                let mut trampolines = Vec::new();
                let on_true = bounce(on_true, &mut self.labels, &mut trampolines);
                let on_false = bounce(on_false, &mut self.labels, &mut trampolines);
                laid_out.push(Insn::Jump {
                    cmp,
                    k,
                    on_true,
                    on_false,
                });
                laid_out.extend(trampolines);
                laid_out.push(Insn::Place(next));
            }
            self.insns = laid_out;
            if !rewritten {
                return self.encode(&positions);
            }
        }
    }

    /// The index of each instruction and of each label once laid out.
    fn positions(&self) -> Positions {
        let mut positions = Positions {
            insns: Vec::with_capacity(self.insns.len()),
            labels: vec![usize::MAX; self.labels],
        };
        let mut pos = 0;
        for insn in &self.insns {
            positions.insns.push(pos);
            match insn {
                Insn::Place(label) => positions.labels[label.0] = pos,
                _ => pos += 1,
            }
        }
        positions
    }

    fn encode(&self, positions: &Positions) -> Vec<sock_filter> {
        let offset = |pos: usize, label: Label| {
            let target = positions.labels[label.0];
            assert!(target != usize::MAX, "label {label:?} was never placed");
            assert!(target > pos, "seccomp programs only jump forward");
            target - pos - 1
        };
        let mut program = Vec::with_capacity(self.insns.len());
        for (index, insn) in self.insns.iter().enumerate() {
            let pos = positions.insns[index];
            let (code, jt, jf, k) = match *insn {
                Insn::Place(_) => continue,
                Insn::Load(offset) => (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, offset),
                Insn::And(mask) => (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 0, 0, mask),
                Insn::Return(action) => (libc::BPF_RET | libc::BPF_K, 0, 0, action),
                Insn::Goto(label) => {
                    let k = u32::try_from(offset(pos, label)).expect("programs are short");
                    (libc::BPF_JMP | libc::BPF_JA, 0, 0, k)
                }
                Insn::Jump {
                    cmp,
                    k,
                    on_true,
                    on_false,
                } => {
                    let op = match cmp {
                        Cmp::Eq => libc::BPF_JEQ,
                        Cmp::Gt => libc::BPF_JGT,
                        Cmp::Ge => libc::BPF_JGE,
                    };
                    let reach = |target: Target| match target {
                        None => 0,
                        Some(label) => u8::try_from(offset(pos, label)).expect("laid out to reach"),
                    };
                    (
                        libc::BPF_JMP | op | libc::BPF_K,
                        reach(on_true),
                        reach(on_false),
                        k,
                    )
                }
            };
            // BPF opcodes fit in 16 bits; libc spells them as u32.
            program.push(sock_filter {
                code: code as u16,
                jt,
                jf,
                k,
            });
        }
        program
    }
}

struct Positions {
    insns: Vec<usize>,
    labels: Vec<usize>,
}

/// Runs a seccomp program on one `seccomp_data` (given as its bytes) the way the kernel does, and
/// returns its action; `None` for anything a seccomp program must not do (an unknown instruction,
/// a jump out of the program, a load outside `seccomp_data`, falling off the end), which the
/// kernel would have refused to load. berth asks it what a filter does to the few syscalls the
/// confined process makes before its program runs (`Filter::allows`).
pub(super) fn run(program: &[sock_filter], data: &[u8; 64]) -> Option<u32> {
    let mut acc: u32 = 0;
    let mut pc = 0;
    loop {
        let insn = *program.get(pc)?;
        pc += 1;
        let k = insn.k;
        match u32::from(insn.code) {
            c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                let at = k as usize;
                if k % 4 != 0 || at >= data.len() {
                    return None;
                }
                acc = u32::from_ne_bytes(data[at..at + 4].try_into().ok()?);
            }
            c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => acc &= k,
            c if c == libc::BPF_RET | libc::BPF_K => return Some(k),
            c if c == libc::BPF_JMP | libc::BPF_JA => pc += k as usize,
            c if c & 0x07 == libc::BPF_JMP => {
                let taken = match c & !(libc::BPF_JMP | libc::BPF_K) {
                    op if op == libc::BPF_JEQ => acc == k,
                    op if op == libc::BPF_JGT => acc > k,
                    op if op == libc::BPF_JGE => acc >= k,
                    op if op == libc::BPF_JSET => acc & k != 0,
                    _ => return None,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_with_nr(nr: u32) -> [u8; 64] {
        let mut data = [0; 64];
        data[..4].copy_from_slice(&nr.to_ne_bytes());
        data
    }

    #[test]
    fn near_jumps_are_encoded_directly() {
        let mut asm = Assembler::default();
        let yes = asm.label();
        asm.load(0);
        asm.jump(Cmp::Eq, 7, Some(yes), None);
        asm.ret(1);
        asm.place(yes);
        asm.ret(2);
        let program = asm.assemble();
        let codes: Vec<_> = program
            .iter()
            .map(|i| (u32::from(i.code), i.jt, i.jf, i.k))
            .collect();
        let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
        let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        let ret = libc::BPF_RET | libc::BPF_K;
        assert_eq!(
            codes,
            [
                (ld, 0, 0, 0),
                (jeq, 1, 0, 7),
                (ret, 0, 0, 1),
                (ret, 0, 0, 2)
            ]
        );
    }

    #[test]
    fn far_jumps_go_through_trampolines() {
        // Two jumps whose targets lie beyond 255 instructions, one on each branch, and a chain
        // of near jumps that the inserted trampolines push out of reach.
        let mut asm = Assembler::default();
        let far = asm.label();
        let end = asm.label();
        asm.load(0);
        asm.jump(Cmp::Eq, 1, Some(far), None);
        asm.jump(Cmp::Ge, 2, None, Some(end));
        for n in 3..300 {
            asm.jump(Cmp::Eq, n, Some(end), None);
        }
        asm.ret(0xdead);
        asm.place(far);
        asm.ret(1);
        asm.place(end);
        asm.ret(2);
        let program = asm.assemble();
        assert!(program.len() > 300);
        assert_eq!(run(&program, &data_with_nr(1)), Some(1));
        assert_eq!(run(&program, &data_with_nr(0)), Some(2));
        for n in 3..300 {
            assert_eq!(run(&program, &data_with_nr(n)), Some(2), "nr {n}");
        }
        assert_eq!(run(&program, &data_with_nr(300)), Some(0xdead));
    }
}
