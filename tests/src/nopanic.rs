//! Proves that no panic is reachable from given functions of a Cortex-M ELF.
//!
//! The ELF is disassembled with `arm-none-eabi-objdump`; every branch whose target lies in another
//! function (calls, and tail calls through `b`/`b.w`/conditional branches) is an edge of a static
//! call graph. From the entry functions, every reachable function is visited; a call into a panic
//! function (see [`is_panic`]) is a violation, and so is any control transfer whose target the
//! disassembly does not show (`blx rN`, `bx rN`, a computed `pc`): it could go anywhere, so the
//! proof stops there. Each violation comes with the shortest call chain from an entry.
//!
//! Within a function only the instructions control can reach from its start are read (alignment
//! padding after a return disassembles as a stray branch), following fall-through, branches and
//! `it` blocks. Jump tables are the one computed branch that is followed: a `tbb`/`tbh`, or its
//! Thumb-1 forms ending in `add pc, rT` or `mov pc, rT`, with the table inline right after it and
//! its length given by the bounds check (`cmp rI, #last`) just before; every entry must land in
//! the same function.

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::process::Command;

/// One instruction (or one `.word`/`.short`/`.byte` of inline data).
#[derive(Debug, Clone)]
pub struct Insn {
    pub addr: u64,
    pub mnemonic: String,
    pub operands: String,
}

/// A symbol's code: its instructions up to the next symbol.
#[derive(Debug, Clone)]
pub struct Function {
    /// Demangled, without the hash.
    pub name: String,
    pub start: u64,
    /// End of its code: the next symbol, or after its last instruction.
    pub end: u64,
    pub insns: Vec<Insn>,
}

/// The functions of one ELF's executable sections, by address.
#[derive(Debug, Default)]
pub struct Disassembly {
    pub functions: Vec<Function>,
}

/// Why a reachable function is not proven panic-free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A call or tail call of a panic function.
    Panic(String),
    /// A branch whose target is unknown (an indirect call or jump, or an address outside every
    /// function).
    Unprovable(String),
}

/// One problem, where it is and how the entry gets there.
#[derive(Debug, Clone)]
pub struct Violation {
    pub problem: Problem,
    /// Address of the offending instruction.
    pub at: u64,
    /// Function names from an entry to the function holding the instruction (shortest chain).
    pub chain: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.problem {
            Problem::Panic(_) => write!(f, "panic reachable: ")?,
            Problem::Unprovable(insn) => write!(f, "unprovable branch `{insn}`: ")?,
        }
        write!(f, "{}", self.chain.join("\n    -> "))?;
        match &self.problem {
            Problem::Panic(sink) => write!(f, "\n    -> {sink}  (call at {:#x})", self.at),
            Problem::Unprovable(_) => write!(f, "  (at {:#x})", self.at),
        }
    }
}

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Functions reachable from the entries (panic functions excluded).
    pub reachable: Vec<String>,
    pub violations: Vec<Violation>,
}

/// Whether `name` is part of the panic machinery: the `core::panicking` functions, the
/// out-of-line failures of indexing, slicing, `unwrap`, `expect`, `copy_from_slice` and `RefCell`,
/// and the panic handler (`rust_begin_unwind`).
pub fn is_panic(name: &str) -> bool {
    name == "rust_begin_unwind"
        || name.starts_with("core::panicking::")
        || name.starts_with("core::slice::index::")
        || name.starts_with("core::panic::")
        || name.starts_with("std::panicking::")
        || name.contains("panic")
        || name.ends_with("_fail")
        || name.ends_with("_failed")
}

impl Disassembly {
    /// Disassembles the executable sections of `elf` with `arm-none-eabi-objdump`.
    pub fn of_elf(elf: &Path) -> std::io::Result<Disassembly> {
        let out = Command::new("arm-none-eabi-objdump")
            .args(["-d", "-C", "--no-show-raw-insn"])
            .arg(elf)
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "arm-none-eabi-objdump {}: {}",
                elf.display(),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(Disassembly::parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Parses `objdump -d -C --no-show-raw-insn` output.
    pub fn parse(text: &str) -> Disassembly {
        let mut functions: Vec<Function> = Vec::new();
        for line in text.lines() {
            if let Some((addr, name)) = label(line) {
                functions.push(Function {
                    name,
                    start: addr,
                    end: addr,
                    insns: Vec::new(),
                });
            } else if let (Some(f), Some(insn)) = (functions.last_mut(), instruction(line)) {
                f.insns.push(insn);
            }
        }
        functions.sort_by_key(|f| f.start);
        let next_starts: Vec<u64> = functions.iter().skip(1).map(|f| f.start).collect();
        for (i, f) in functions.iter_mut().enumerate() {
            let after_last = f.insns.last().map_or(f.start, |l| l.addr + 4);
            f.end = next_starts
                .get(i)
                .map_or(after_last, |&n| n.min(after_last));
        }
        Disassembly { functions }
    }

    /// Index of the function whose code holds `addr`.
    fn function_at(&self, addr: u64) -> Option<usize> {
        let i = self.functions.partition_point(|f| f.start <= addr);
        let f = self.functions.get(i.checked_sub(1)?)?;
        f.contains(addr).then_some(i - 1)
    }

    /// Visits everything reachable from the functions named `entries` (every symbol of each name,
    /// so all instances of a generic function). Entries that are not in the ELF are an error: an
    /// inlined entry would silently check nothing.
    pub fn check(&self, entries: &[&str]) -> Result<Report, String> {
        // parent[i]: the function that first reached i (None for entries and unreached ones).
        let mut parent: Vec<Option<usize>> = vec![None; self.functions.len()];
        let mut reached = vec![false; self.functions.len()];
        let mut queue = VecDeque::new();
        for entry in entries {
            let found: Vec<usize> = (0..self.functions.len())
                .filter(|&i| self.functions[i].name == *entry)
                .collect();
            if found.is_empty() {
                return Err(format!("entry {entry} is not in the ELF (inlined?)"));
            }
            for i in found {
                reached[i] = true;
                queue.push_back(i);
            }
        }
        let chain = |parent: &[Option<usize>], mut i: usize| {
            let mut names = vec![self.functions[i].name.clone()];
            while let Some(p) = parent[i] {
                names.push(self.functions[p].name.clone());
                i = p;
            }
            names.reverse();
            names
        };
        let mut report = Report::default();
        while let Some(i) = queue.pop_front() {
            report.reachable.push(self.functions[i].name.clone());
            let mut problem = |problem, at| {
                report.violations.push(Violation {
                    problem,
                    at,
                    chain: chain(&parent, i),
                });
            };
            let mut callees = Vec::new();
            let panics = |t| {
                self.function_at(t)
                    .is_some_and(|j| is_panic(&self.functions[j].name))
            };
            for (insn, flow) in self.functions[i].walk(panics) {
                let describe = || format!("{} {}", insn.mnemonic, insn.operands);
                if flow.unknown {
                    problem(Problem::Unprovable(describe()), insn.addr);
                }
                for t in flow.targets {
                    match self.function_at(t) {
                        None => problem(
                            Problem::Unprovable(format!("{} (no function there)", describe())),
                            insn.addr,
                        ),
                        Some(j) if j == i => {}
                        Some(j) if is_panic(&self.functions[j].name) => {
                            problem(Problem::Panic(self.functions[j].name.clone()), insn.addr)
                        }
                        Some(j) => callees.push(j),
                    }
                }
            }
            for j in callees {
                if !reached[j] {
                    reached[j] = true;
                    parent[j] = Some(i);
                    queue.push_back(j);
                }
            }
        }
        Ok(report)
    }
}

impl Function {
    fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr < self.end
    }

    /// The instructions control reaches from the start, each with where it goes. Calls to
    /// addresses where `panics` do not return (what follows them is often padding).
    fn walk(&self, panics: impl Fn(u64) -> bool) -> Vec<(&Insn, Flow)> {
        let index = |addr: u64| self.insns.binary_search_by_key(&addr, |i| i.addr).ok();
        let mut seen = vec![false; self.insns.len()];
        // (instruction, instructions still conditional in the current `it` block)
        let mut work = vec![(0usize, 0usize)];
        let mut out = Vec::new();
        while let Some((n, it)) = work.pop() {
            if n >= self.insns.len() || std::mem::replace(&mut seen[n], true) {
                continue;
            }
            let insn = &self.insns[n];
            if is_data(insn) {
                // Only after a call that does not return (objdump shows literal pools as data).
                continue;
            }
            let mut flow = flow(self, n, it > 0, &panics);
            let it = match insn.mnemonic.strip_prefix("it") {
                Some(mask) if mask.len() <= 3 && mask.chars().all(|c| c == 't' || c == 'e') => {
                    mask.len() + 1
                }
                _ => it.saturating_sub(1),
            };
            if flow.falls_through {
                work.push((n + 1, it));
            }
            flow.targets.retain(|&t| {
                if !self.contains(t) {
                    return true;
                }
                match index(t) {
                    Some(m) => work.push((m, 0)),
                    None => flow.unknown = true, // into the middle of an instruction
                }
                false
            });
            out.push((insn, flow));
        }
        out
    }
}

/// Where an instruction sends control: to the next one, to `targets`, or somewhere unknown.
struct Flow {
    targets: Vec<u64>,
    unknown: bool,
    falls_through: bool,
}

fn is_data(insn: &Insn) -> bool {
    matches!(insn.mnemonic.as_str(), ".word" | ".short" | ".byte")
}

/// Condition suffixes (`b<cond>`, and instructions inside an `it` block).
const CONDITIONS: [&str; 16] = [
    "eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le",
];

/// Instructions that can transfer control, by their unconditional mnemonic.
const CONTROL: [&str; 16] = [
    "b", "bl", "blx", "bx", "cbz", "cbnz", "tbb", "tbh", "pop", "ldm", "ldmia", "ldr", "mov",
    "add", "udf", "ldmfd",
];

/// `beq.n` -> (`b`, true), `bxeq` -> (`bx`, true), `ldr.w` -> (`ldr`, false).
fn base_mnemonic(m: &str) -> (&str, bool) {
    let m = m.trim_end_matches(".n").trim_end_matches(".w");
    match m.len().checked_sub(2).map(|i| m.split_at(i)) {
        Some((base, cond)) if CONDITIONS.contains(&cond) && CONTROL.contains(&base) => (base, true),
        _ => (m, false),
    }
}

/// How a jump table's entries give targets.
#[derive(Clone, Copy)]
enum Table {
    /// `tbb` (and its Thumb-1 form ending in `add pc, rT`): bytes, target = instruction + 4 +
    /// 2 * entry.
    Bytes,
    /// `tbh` (and its Thumb-1 form): halfwords, target = instruction + 4 + 2 * entry.
    Halfwords,
    /// `mov pc, rN` (Thumb-1): words that are the targets (bit 0 set for Thumb).
    Addresses,
}

/// Where instruction `n` of `f` sends control; `in_it` if it is inside an `it` block. A call
/// returns unless it calls an address where `panics`.
fn flow(f: &Function, n: usize, in_it: bool, panics: impl Fn(u64) -> bool) -> Flow {
    let insn = &f.insns[n];
    let (m, cond) = base_mnemonic(&insn.mnemonic);
    let conditional = cond || in_it;
    let ops = insn.operands.as_str();
    let first = ops.split(',').next().unwrap_or("").trim();
    let go = |targets: Vec<u64>, unknown: bool, ends: bool| Flow {
        targets,
        unknown,
        falls_through: conditional || !ends,
    };
    match m {
        "b" | "bl" | "blx" | "bx" | "cbz" | "cbnz" => {
            // A direct target is printed as `addr <symbol+offset>` (after a register for cbz).
            let target = ops
                .split([',', ' '])
                .map(str::trim)
                .find_map(|w| u64::from_str_radix(w, 16).ok());
            let ends = m == "b" || m == "bx";
            let calls = m == "bl" || m == "blx";
            match target {
                Some(t) if ops.contains('<') => Flow {
                    targets: vec![t],
                    unknown: false,
                    falls_through: conditional || (calls && !panics(t)) || m.starts_with("cb"),
                },
                _ if m == "bx" && first == "lr" => go(vec![], false, true), // return
                _ => go(vec![], true, ends),
            }
        }
        "tbb" => jump_table(f, n, Table::Bytes),
        "tbh" => jump_table(f, n, Table::Halfwords),
        "udf" => go(vec![], false, true),
        // Returns: pc loaded from the stack.
        "pop" | "ldm" | "ldmia" | "ldmfd" if ops.contains("pc") => {
            go(vec![], !(m == "pop" || first.starts_with("sp")), true)
        }
        "mov" if first == "pc" && !conditional => jump_table(f, n, Table::Addresses),
        // Thumb-1 relative table: `add rT, pc; ldrb/ldrh rT, [rT, #4]; lsls rT, rT, #1; add pc, rT`.
        "add" if first == "pc" && !conditional && n >= 2 => {
            let (load, shift) = (&f.insns[n - 2], &f.insns[n - 1]);
            let reg = ops.split(',').nth(1).unwrap_or("").trim();
            let shifted = shift.mnemonic == "lsls"
                && shift.operands.replace(' ', "") == format!("{reg},{reg},#1");
            match load.mnemonic.as_str() {
                "ldrb" if shifted => jump_table(f, n, Table::Bytes),
                "ldrh" if shifted => jump_table(f, n, Table::Halfwords),
                _ => go(vec![], true, true),
            }
        }
        _ if first == "pc" && !m.starts_with("cmp") && !m.starts_with("str") => {
            go(vec![], true, true)
        }
        _ => go(vec![], false, false),
    }
}

/// The targets of the jump table inline after instruction `n` of `f`. Its length comes from the
/// bounds check before it (`cmp rI, #last`, within a few instructions) or, for a relative table
/// without one, from its nearest target; all its entries must land inside `f`. Anything else is
/// unknown.
fn jump_table(f: &Function, n: usize, table: Table) -> Flow {
    let unknown = Flow {
        targets: Vec::new(),
        unknown: true,
        falls_through: false,
    };
    let bound = f.insns[n.saturating_sub(8)..n].iter().rev().find_map(|i| {
        let imm = i.operands.split_once(", #")?.1;
        (i.mnemonic.trim_end_matches(".w") == "cmp")
            .then(|| imm.parse::<u64>().ok().or_else(|| parse_hex(imm)))
            .flatten()
    });
    let at = f.insns[n].addr;
    let Some(start) = f.insns.get(n + 1).filter(|i| is_data(i)).map(|i| i.addr) else {
        return unknown;
    };
    let mut bytes = Vec::new();
    for d in f.insns[n + 1..].iter().take_while(|i| is_data(i)) {
        let width = match d.mnemonic.as_str() {
            ".word" => 4,
            ".short" => 2,
            _ => 1,
        };
        let Some(v) = parse_hex(&d.operands) else {
            break;
        };
        bytes.extend((0..width).map(|b| (v >> (8 * b)) as u8));
    }
    let le = |c: &[u8]| c.iter().rev().fold(0u64, |acc, &b| acc << 8 | b as u64);
    let targets: Vec<u64> = match table {
        Table::Bytes => bytes.iter().map(|&b| at + 4 + 2 * b as u64).collect(),
        Table::Halfwords => bytes.chunks_exact(2).map(|c| at + 4 + 2 * le(c)).collect(),
        Table::Addresses => bytes.chunks_exact(4).map(|c| le(c) & !1).collect(),
    };
    let width = match table {
        Table::Bytes => 1,
        Table::Halfwords => 2,
        Table::Addresses => 4,
    };
    // Without a bounds check (a `match` on an enum, whose range the compiler knows), the table
    // of a forward jump ends where the nearest target begins.
    let entries = match bound {
        Some(last) => usize::try_from(last + 1).unwrap_or(usize::MAX),
        None if !matches!(table, Table::Addresses) => {
            let mut nearest = u64::MAX;
            let mut count = 0;
            for (i, &t) in targets.iter().enumerate() {
                if start + width * i as u64 >= nearest {
                    break;
                }
                nearest = nearest.min(t);
                count += 1;
            }
            count
        }
        None => return unknown,
    };
    let mut entries = entries.min(targets.len());
    if bound.is_none() {
        // The last slot before the code may be alignment padding (a `nop`, or a zero byte after
        // an odd number of byte entries), landing anywhere, or inside the table itself.
        let table = start..start + bytes.len() as u64;
        while entries > 1
            && (!f.contains(targets[entries - 1]) || table.contains(&targets[entries - 1]))
        {
            entries -= 1;
        }
    }
    if entries == 0
        || bound.is_some_and(|last| (entries as u64) < last + 1)
        || !targets[..entries].iter().all(|&t| f.contains(t))
    {
        return unknown;
    }
    Flow {
        targets: targets[..entries].to_vec(),
        unknown: false,
        falls_through: false,
    }
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// `0000d00c <name>:` -> (address, name).
fn label(line: &str) -> Option<(u64, String)> {
    let (addr, rest) = line.split_once(' ')?;
    let name = rest.strip_prefix('<')?.strip_suffix(">:")?;
    Some((u64::from_str_radix(addr, 16).ok()?, name.to_owned()))
}

/// `    d00c:\tpush\t{r4, lr}` -> instruction (comments after `@` dropped).
fn instruction(line: &str) -> Option<Insn> {
    let (addr, rest) = line.trim_start().split_once(":\t")?;
    let addr = u64::from_str_radix(addr, 16).ok()?;
    let rest = rest.split('@').next().unwrap_or("").trim_end();
    let (mnemonic, operands) = rest.split_once('\t').unwrap_or((rest, ""));
    Some(Insn {
        addr,
        mnemonic: mnemonic.trim().to_owned(),
        operands: operands.trim().to_owned(),
    })
}
