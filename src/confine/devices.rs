//! The devices a container may use: Docker's default allow list, the rules `--device` adds,
//! and the same list in the two forms the kernel takes it.
//!
//! A device node is only a name for a number: `mknod /tmp/d b 254 0` makes a node for the
//! host's disk anywhere a process may write, and opening it reaches the disk, namespaces or
//! not. So the kernel checks every open(2) and mknod(2) of a device node against the
//! opener's cgroup:
//!
//! - **cgroup v1**: the `devices` controller. The container's cgroup gets `devices.deny`
//!   `a` (nothing), then one `devices.allow` line per rule (`c 1:3 rwm`: character device,
//!   major 1, minor 3, read, write, mknod); `devices.list` reads the list back.
//! - **cgroup v2**: there is no devices controller. Instead a small eBPF program of type
//!   `BPF_PROG_TYPE_CGROUP_DEVICE` is attached to the cgroup; the kernel runs it on each
//!   open and mknod with a `struct bpf_cgroup_dev_ctx` (access and type, major, minor), and
//!   the program returns 1 (allow) or 0 (deny: EPERM). [`program`] assembles it from the
//!   rules, instruction by instruction, and [`disassemble`] prints it for the trace.
//!
//! The default list is runc's `AllowedDevices`, which Docker uses today: mknod of any node
//! (`c *:* m`, `b *:* m`: making a node is harmless, using it is what counts), then read,
//! write and mknod of null, zero, full, random, urandom, tty, console, ptmx, the pseudo
//! terminals (`c 136:*`) and tun (`c 10:200`, which runc took out in 1.2.0 and put back in
//! 1.2.2). fuse (`c 10:229`) is not in it: Docker denies it unless asked with `--device`.
//!
//! May import: `error`, `kernel`.

use std::path::PathBuf;

/// One device node `--device HOST[:CONTAINER][:rwm]` adds to the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Device {
    /// The device node on the host.
    pub host: PathBuf,
    /// Where it appears in the container: an absolute path under /dev.
    pub container: String,
    /// 'c' (character) or 'b' (block).
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    /// Any of r, w, m.
    pub access: String,
    /// The host node's permission bits (the node in the container gets the same).
    #[serde(default)]
    pub mode: u32,
    /// The host node's owner and group.
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

/// The allow list's additions: the devices `--device` gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceConfig {
    pub extra: Vec<Device>,
}

impl DeviceConfig {
    /// The whole allow list: Docker's defaults, then one rule per `--device`.
    pub fn rules(&self) -> Vec<Rule> {
        let mut v: Vec<Rule> = DEFAULT_RULES.to_vec();
        // A FIFO ('p', an OCI config's linux.devices) is no device: no rule.
        for d in self.extra.iter().filter(|d| d.kind != 'p') {
            v.push(Rule {
                kind: if d.kind == 'b' {
                    Kind::Block
                } else {
                    Kind::Char
                },
                major: Some(d.major as u32),
                minor: Some(d.minor as u32),
                access: Access::parse(&d.access).unwrap_or(Access::RWM),
                allow: true,
            });
        }
        v
    }
}

/// Which devices a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `a`: every device, character and block.
    All,
    /// `c`.
    Char,
    /// `b`.
    Block,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::All => 'a',
            Kind::Char => 'c',
            Kind::Block => 'b',
        }
    }
    /// `BPF_DEVCG_DEV_BLOCK` (1) or `BPF_DEVCG_DEV_CHAR` (2); None for all.
    fn bpf(self) -> Option<i32> {
        match self {
            Kind::All => None,
            Kind::Block => Some(1),
            Kind::Char => Some(2),
        }
    }
}

/// Read, write, mknod, as `BPF_DEVCG_ACC_*` bits: mknod 1, read 2, write 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access(pub u8);

impl Access {
    pub const M: Access = Access(1);
    pub const RWM: Access = Access(7);

    /// `rwm`, `r`, `mw` ... (each letter at most once, at least one).
    pub fn parse(s: &str) -> Option<Access> {
        let mut bits = 0u8;
        for c in s.chars() {
            let b = match c {
                'm' => 1,
                'r' => 2,
                'w' => 4,
                _ => return None,
            };
            if bits & b != 0 {
                return None;
            }
            bits |= b;
        }
        (bits != 0).then_some(Access(bits))
    }

    /// In the order devices.list prints it: `rwm`, `rw`, `m` ...
    pub fn letters(self) -> String {
        [(2, 'r'), (4, 'w'), (1, 'm')]
            .iter()
            .filter(|(b, _)| self.0 & b != 0)
            .map(|(_, c)| *c)
            .collect()
    }
}

/// One line of the list: `c 1:3 rwm` (None is `*`, any number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: Access,
    pub allow: bool,
}

const fn chr(major: u32, minor: Option<u32>, access: Access) -> Rule {
    Rule {
        kind: Kind::Char,
        major: Some(major),
        minor,
        access,
        allow: true,
    }
}

/// runc's `AllowedDevices`, in its order.
pub const DEFAULT_RULES: &[Rule] = &[
    Rule {
        kind: Kind::Char,
        major: None,
        minor: None,
        access: Access::M,
        allow: true,
    },
    Rule {
        kind: Kind::Block,
        major: None,
        minor: None,
        access: Access::M,
        allow: true,
    },
    chr(1, Some(3), Access::RWM),    // null
    chr(1, Some(8), Access::RWM),    // random
    chr(1, Some(7), Access::RWM),    // full
    chr(5, Some(0), Access::RWM),    // tty
    chr(1, Some(5), Access::RWM),    // zero
    chr(1, Some(9), Access::RWM),    // urandom
    chr(5, Some(1), Access::RWM),    // console
    chr(136, None, Access::RWM),     // pts/*
    chr(5, Some(2), Access::RWM),    // ptmx
    chr(10, Some(200), Access::RWM), // net/tun
];

impl std::fmt::Display for Rule {
    /// The cgroup v1 form, as `devices.allow` takes it and `devices.list` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |x: Option<u32>| x.map(|v| v.to_string()).unwrap_or_else(|| "*".into());
        write!(
            f,
            "{} {}:{} {}",
            self.kind.letter(),
            n(self.major),
            n(self.minor),
            self.access.letters()
        )
    }
}

/// Parses one line of `devices.list` (`c 1:3 rwm`, `a *:* rwm`) as an allow rule.
pub fn parse_list_line(line: &str) -> Option<Rule> {
    let mut f = line.split_whitespace();
    let kind = match f.next()? {
        "a" => Kind::All,
        "c" => Kind::Char,
        "b" => Kind::Block,
        _ => return None,
    };
    let (maj, min) = f.next()?.split_once(':')?;
    let num = |s: &str| -> Option<Option<u32>> {
        if s == "*" {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    Some(Rule {
        kind,
        major: num(maj)?,
        minor: num(min)?,
        access: Access::parse(f.next()?)?,
        allow: true,
    })
}

/// Parses `--device HOST[:CONTAINER][:rwm]` (Docker's form) and stats the host node: it must
/// be a character or block device. The node keeps its path in the container unless one is
/// given; permissions default to rwm.
pub fn parse_flag(flag: &str) -> crate::Result<Device> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let parts: Vec<&str> = flag.split(':').collect();
    let (host, container, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, x] if Access::parse(x).is_some() => (*h, *h, *x),
        [h, c] => (*h, *c, "rwm"),
        [h, c, a] => (*h, *c, *a),
        _ => {
            return Err(crate::Error::usage(format!(
                "--device {flag}: too many ':'; give HOST[:CONTAINER][:PERMISSIONS], such as /dev/fuse:/dev/fuse:rwm"
            )))
        }
    };
    if Access::parse(access).is_none() {
        return Err(crate::Error::usage(format!(
            "--device {flag}: bad permissions {access:?}; use letters from rwm (read, write, mknod), each at most once"
        )));
    }
    if !host.starts_with('/') {
        return Err(crate::Error::usage(format!(
            "--device {flag}: the host path must be absolute, such as /dev/fuse"
        )));
    }
    let md = std::fs::metadata(host).map_err(|e| {
        crate::Error::usage(format!(
            "--device {flag}: cannot stat {host} ({e}); give an existing device node such as /dev/fuse"
        ))
    })?;
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return Err(crate::Error::usage(format!(
            "--device {host}: not a device node; give a character or block device such as /dev/fuse"
        )));
    };
    if !container.starts_with("/dev/")
        || container.split('/').any(|c| c == ".." || c == ".")
        || container.ends_with('/')
    {
        return Err(crate::Error::usage(format!(
            "--device {flag}: the path in the container must be a file under /dev, such as /dev/fuse"
        )));
    }
    let rdev = md.rdev();
    Ok(Device {
        host: PathBuf::from(host),
        container: container.to_string(),
        kind,
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
        access: access.to_string(),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
    })
}

/// One eBPF instruction, as the kernel takes it (`struct bpf_insn`, 8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u8,
    /// dst register in the low 4 bits, src register in the high 4.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// The only opcodes the program uses (include/uapi/linux/bpf.h, bpf_common.h).
/// `dst = *(u32 *)(src + off)`: BPF_LDX | BPF_MEM | BPF_W.
const LDX_W: u8 = 0x61;
/// `dst &= imm` on 32 bits: BPF_ALU | BPF_AND | BPF_K.
const AND32_K: u8 = 0x54;
/// `dst >>= imm` on 32 bits: BPF_ALU | BPF_RSH | BPF_K.
const RSH32_K: u8 = 0x74;
/// `dst = src`: BPF_ALU64 | BPF_MOV | BPF_X.
const MOV64_X: u8 = 0xbf;
/// `dst = imm`: BPF_ALU64 | BPF_MOV | BPF_K.
const MOV64_K: u8 = 0xb7;
/// `if dst != imm goto +off`: BPF_JMP | BPF_JNE | BPF_K.
const JNE_K: u8 = 0x55;
/// `if dst != src goto +off`: BPF_JMP | BPF_JNE | BPF_X.
const JNE_X: u8 = 0x5d;
/// `return r0`: BPF_JMP | BPF_EXIT.
const EXIT: u8 = 0x95;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// The program for a list of rules. Registers: r1 is the context on entry (`struct
/// bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`, access_type holding the
/// access bits above the 16 type bits); r2 = type, r3 = access, r4 = major, r5 = minor; r1 is
/// scratch. Each rule is a block of compares that jumps past itself on the first mismatch,
/// and otherwise returns its verdict. The rules are checked last first, so that, as with
/// devices.allow and devices.deny, a later rule wins. No rule matched: 0, deny.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    assemble(rules).0
}

/// The program, and where each rule's block starts (instruction index, the rule).
fn assemble(rules: &[Rule]) -> (Vec<Insn>, Vec<(usize, Rule)>) {
    let mut starts = Vec::new();
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND32_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH32_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Each compare is one jump, except access (three instructions, the jump last).
        let mut block: Vec<(Insn, bool)> = Vec::new();
        if let Some(t) = r.kind.bpf() {
            block.push((insn(JNE_K, 2, 0, 0, t), true));
        }
        if r.access != Access::RWM {
            // Allowed only if every bit asked for is in the rule: (access & rule) == access.
            block.push((insn(MOV64_X, 1, 3, 0, 0), false));
            block.push((insn(AND32_K, 1, 0, 0, i32::from(r.access.0)), false));
            block.push((insn(JNE_X, 1, 3, 0, 0), true));
        }
        if let Some(m) = r.major {
            block.push((insn(JNE_K, 4, 0, 0, m as i32), true));
        }
        if let Some(m) = r.minor {
            block.push((insn(JNE_K, 5, 0, 0, m as i32), true));
        }
        block.push((insn(MOV64_K, 0, 0, 0, i32::from(r.allow)), false));
        block.push((insn(EXIT, 0, 0, 0, 0), false));
        starts.push((p.len(), *r));
        let len = block.len();
        let matches_all = !block.iter().any(|(_, j)| *j);
        for (i, (mut ins, jumps)) in block.into_iter().enumerate() {
            if jumps {
                // To the first instruction after the block: offsets count from the next one.
                ins.off = (len - i - 1) as i16;
            }
            p.push(ins);
        }
        if matches_all {
            // `a *:* rwm` decides everything: the verifier refuses unreachable instructions.
            return (p, starts);
        }
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    (p, starts)
}

/// [`disassemble`] of the program for these rules, each rule's block marked with the rule
/// it checks (`; c 1:3 rwm`), for the trace.
pub fn listing(rules: &[Rule]) -> Vec<String> {
    let (prog, starts) = assemble(rules);
    let mut lines = disassemble(&prog);
    let mut mark = |i: usize, what: String| {
        if let Some(l) = lines.get_mut(i) {
            *l = format!("{l:<34} ; {what}");
        }
    };
    mark(0, "r2 = type (1 block, 2 char)".into());
    mark(2, "r3 = access (1 mknod, 2 read, 4 write)".into());
    mark(4, "r4 = major".into());
    mark(5, "r5 = minor".into());
    for (i, r) in starts {
        mark(i, format!("{} {r}", if r.allow { "allow" } else { "deny" }));
    }
    let n = prog.len();
    if n >= 2 && prog[n - 2] == insn(MOV64_K, 0, 0, 0, 0) {
        mark(n - 2, "no rule matched: deny (EPERM)".into());
    }
    lines
}

/// The program as bpf(BPF_PROG_LOAD) takes it: 8 bytes per instruction, little-endian.
pub fn bytes(prog: &[Insn]) -> Vec<u8> {
    let mut v = Vec::with_capacity(prog.len() * 8);
    for x in prog {
        v.push(x.code);
        v.push(x.regs);
        v.extend_from_slice(&x.off.to_le_bytes());
        v.extend_from_slice(&x.imm.to_le_bytes());
    }
    v
}

/// One line per instruction, for the trace: `4: if r4 != 1 goto +3`. Only the opcodes
/// [`program`] emits are known; anything else prints as raw bytes.
pub fn disassemble(prog: &[Insn]) -> Vec<String> {
    prog.iter()
        .enumerate()
        .map(|(i, x)| {
            let (dst, src) = (x.regs & 0x0f, x.regs >> 4);
            let text = match x.code {
                LDX_W => format!("r{dst} = *(u32 *)(r{src} + {})", x.off),
                AND32_K => format!("w{dst} &= {:#x}", x.imm),
                RSH32_K => format!("w{dst} >>= {}", x.imm),
                MOV64_X => format!("r{dst} = r{src}"),
                MOV64_K => format!("r{dst} = {}", x.imm),
                JNE_K => format!("if r{dst} != {} goto +{}", x.imm, x.off),
                JNE_X => format!("if r{dst} != r{src} goto +{}", x.off),
                EXIT => "exit".to_string(),
                c => format!(
                    "(code {c:#04x} regs {:#04x} off {} imm {})",
                    x.regs, x.off, x.imm
                ),
            };
            format!("{i:>3}: {text}")
        })
        .collect()
}

/// What the program answers for one access, computed here without the kernel (unit tests
/// check [`program`] with it): an interpreter of just the opcodes above.
pub fn run(prog: &[Insn], kind: Kind, access: Access, major: u32, minor: u32) -> Option<u64> {
    let ctx = [
        (u32::from(access.0) << 16) | kind.bpf().unwrap_or(0) as u32,
        major,
        minor,
    ];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let x = prog.get(pc)?;
        let (d, s) = ((x.regs & 0x0f) as usize, (x.regs >> 4) as usize);
        pc += 1;
        match x.code {
            LDX_W if s == 1 => r[d] = u64::from(*ctx.get(x.off as usize / 4)?),
            AND32_K => r[d] = u64::from((r[d] as u32) & x.imm as u32),
            RSH32_K => r[d] = u64::from((r[d] as u32) >> x.imm),
            MOV64_X => r[d] = r[s],
            MOV64_K => r[d] = x.imm as i64 as u64,
            JNE_K if r[d] != x.imm as i64 as u64 => pc += x.off as usize,
            JNE_X if r[d] != r[s] => pc += x.off as usize,
            JNE_K | JNE_X => {}
            EXIT => return Some(r[0]),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(rules: &[Rule], kind: Kind, acc: &str, major: u32, minor: u32) -> bool {
        let p = program(rules);
        run(&p, kind, Access::parse(acc).unwrap(), major, minor).unwrap() == 1
    }

    #[test]
    fn the_default_list_allows_the_default_nodes_and_mknod_only() {
        let r = DeviceConfig::default().rules();
        for (maj, min) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 1),
            (5, 2),
            (136, 4),
            (10, 200),
        ] {
            for acc in ["r", "w", "rw", "m", "rwm"] {
                assert!(
                    allowed(&r, Kind::Char, acc, maj, min),
                    "c {maj}:{min} {acc}"
                );
            }
        }
        // The host's disk: mknod yes, read and write no.
        assert!(allowed(&r, Kind::Block, "m", 254, 0));
        for acc in ["r", "w", "rw", "rm"] {
            assert!(!allowed(&r, Kind::Block, acc, 254, 0), "b 254:0 {acc}");
        }
        // kmem (1:2), fuse, a block device with a char's numbers.
        assert!(!allowed(&r, Kind::Char, "r", 1, 2));
        assert!(!allowed(&r, Kind::Char, "rw", 10, 229));
        assert!(!allowed(&r, Kind::Block, "r", 1, 3));
        assert!(allowed(&r, Kind::Char, "m", 10, 229));
    }

    #[test]
    fn a_later_rule_wins_and_extra_devices_are_allowed() {
        let mut cfg = DeviceConfig::default();
        cfg.extra.push(Device {
            host: "/dev/fuse".into(),
            container: "/dev/fuse".into(),
            kind: 'c',
            major: 10,
            minor: 229,
            access: "r".into(),
            mode: 0o666,
            uid: 0,
            gid: 0,
        });
        let r = cfg.rules();
        assert!(allowed(&r, Kind::Char, "r", 10, 229));
        assert!(!allowed(&r, Kind::Char, "w", 10, 229));
        let mut rules = r.clone();
        rules.push(Rule {
            kind: Kind::All,
            major: None,
            minor: None,
            access: Access::RWM,
            allow: false,
        });
        assert!(!allowed(&rules, Kind::Char, "r", 1, 3));
    }

    #[test]
    fn rules_print_as_devices_list_lines_and_parse_back() {
        let lines: Vec<String> = DEFAULT_RULES.iter().map(|r| r.to_string()).collect();
        assert_eq!(lines[0], "c *:* m");
        assert_eq!(lines[1], "b *:* m");
        assert_eq!(lines[2], "c 1:3 rwm");
        assert!(lines.contains(&"c 136:* rwm".to_string()));
        for (l, r) in lines.iter().zip(DEFAULT_RULES) {
            assert_eq!(parse_list_line(l).as_ref(), Some(r));
        }
        assert_eq!(parse_list_line("a *:* rwm").unwrap().kind, Kind::All);
        assert_eq!(Access::parse("mr").unwrap().letters(), "rm");
        assert!(Access::parse("rr").is_none());
        assert!(Access::parse("").is_none());
        assert!(Access::parse("x").is_none());
    }

    #[test]
    fn the_disassembly_names_every_instruction() {
        let p = program(&DeviceConfig::default().rules());
        let d = disassemble(&p);
        assert_eq!(d.len(), p.len());
        assert!(d.iter().all(|l| !l.contains("code")), "{d:#?}");
        assert_eq!(d[0], "  0: r2 = *(u32 *)(r1 + 0)");
        assert!(d.last().unwrap().ends_with("exit"));
        assert!(d.iter().any(|l| l.contains("if r4 != 136 goto +")));
        let l = listing(&DeviceConfig::default().rules());
        assert_eq!(l.len(), p.len());
        assert!(
            l.iter().any(|x| x.ends_with("; allow c 136:* rwm")),
            "{l:#?}"
        );
        assert!(l[l.len() - 2].ends_with("deny (EPERM)"), "{l:#?}");
    }

    #[test]
    fn the_device_flag_is_checked() {
        let d = parse_flag("/dev/null:/dev/mynull").unwrap();
        assert_eq!((d.kind, d.major, d.minor), ('c', 1, 3));
        assert_eq!(
            (d.container.as_str(), d.access.as_str()),
            ("/dev/mynull", "rwm")
        );
        let d = parse_flag("/dev/null:r").unwrap();
        assert_eq!(
            (d.container.as_str(), d.access.as_str()),
            ("/dev/null", "r")
        );
        let d = parse_flag("/dev/null:/dev/x:rw").unwrap();
        assert_eq!(d.access, "rw");
        let e = parse_flag("/etc/passwd").unwrap_err().to_string();
        assert!(e.contains("/etc/passwd: not a device node"), "{e}");
        let e = parse_flag("/dev/null:/dev/x:rwx").unwrap_err().to_string();
        assert!(e.contains("bad permissions"), "{e}");
        let e = parse_flag("/dev/null:/etc/x").unwrap_err().to_string();
        assert!(e.contains("under /dev"), "{e}");
        let e = parse_flag("/nonexistent/dev").unwrap_err().to_string();
        assert!(e.contains("cannot stat"), "{e}");
        for bad in [
            "/dev/null:/dev/../etc/x",
            "/dev/null:/dev/x:rwm:z",
            "dev/null",
        ] {
            assert!(parse_flag(bad).is_err(), "{bad}");
        }
    }
}
