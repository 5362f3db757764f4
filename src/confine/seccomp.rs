//! Docker's seccomp profile format, compiled to BPF. (Skeleton: the seccomp helper fills
//! this in.)

/// One classic BPF instruction (struct sock_filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// A compiled profile: the filters to load, in order, and what the trace says of them.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// Each is loaded with its own seccomp(SECCOMP_SET_MODE_FILTER) call, first to last.
    pub filters: Vec<Vec<Insn>>,
    /// Where the profile came from: "Docker's default profile" or the file's path.
    pub source: String,
    /// How many syscall rules the profile has after its conditions were applied.
    pub rules: usize,
}

/// Reads and compiles a profile (None: Docker's default). (Skeleton.)
pub fn compile(_profile: Option<&std::path::Path>, _caps: u64) -> crate::Result<Program> {
    Ok(Program::default())
}
