//! Telling a static binary from a dynamic one by its ELF header, without running it: a
//! static busybox can be copied alone into a rootfs, a dynamic program needs its loader
//! and libraries too.

use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// What an ELF file says about how it is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfKind {
    /// Not an ELF file (a script, say).
    NotElf,
    /// No PT_INTERP program header: the kernel runs it with no loader and no libraries.
    Static,
    /// Needs this ELF interpreter (the dynamic loader) and whatever libraries it loads.
    Dynamic(String),
}

/// Reads the ELF header and program headers of `path` (following symlinks) and reports
/// whether it has a PT_INTERP, and which.
pub fn elf_kind(path: &Path) -> Result<ElfKind> {
    let mut f =
        std::fs::File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let mut data = Vec::new();
    // Program headers sit near the start; 64 KiB is plenty for the header, the table and the
    // interpreter's name in every real binary. What is missing is reported as not ELF.
    f.by_ref()
        .take(64 * 1024)
        .read_to_end(&mut data)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    Ok(parse_elf_kind(&data))
}

/// [`elf_kind`] on bytes already read (the start of the file).
pub fn parse_elf_kind(data: &[u8]) -> ElfKind {
    const PT_INTERP: u32 = 3;
    if data.len() < 0x34 || &data[..4] != b"\x7fELF" {
        return ElfKind::NotElf;
    }
    let is64 = match data[4] {
        1 => false,
        2 => true,
        _ => return ElfKind::NotElf,
    };
    let le = match data[5] {
        1 => true,
        2 => false,
        _ => return ElfKind::NotElf,
    };
    let rd = |off: usize, n: usize| -> Option<u64> {
        let b = data.get(off..off + n)?;
        let mut v: u64 = 0;
        for i in 0..n {
            let byte = if le { b[n - 1 - i] } else { b[i] };
            v = (v << 8) | byte as u64;
        }
        Some(v)
    };
    let (phoff, phentsize, phnum) = if is64 {
        (rd(0x20, 8), rd(0x36, 2), rd(0x38, 2))
    } else {
        (rd(0x1c, 4), rd(0x2a, 2), rd(0x2c, 2))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        return ElfKind::NotElf;
    };
    for i in 0..phnum {
        let Some(base) = (phoff + i * phentsize).try_into().ok() else {
            return ElfKind::NotElf;
        };
        let base: usize = base;
        let Some(p_type) = rd(base, 4) else {
            return ElfKind::NotElf;
        };
        if p_type as u32 != PT_INTERP {
            continue;
        }
        let (off, size) = if is64 {
            (rd(base + 8, 8), rd(base + 32, 8))
        } else {
            (rd(base + 4, 4), rd(base + 16, 4))
        };
        let name = match (off, size) {
            (Some(o), Some(s)) => data
                .get(o as usize..(o as usize).saturating_add(s as usize))
                .map(|b| {
                    let b = b.split(|c| *c == 0).next().unwrap_or(b);
                    String::from_utf8_lossy(b).into_owned()
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        return ElfKind::Dynamic(name);
    }
    ElfKind::Static
}

/// True when `path` is an ELF binary with no ELF interpreter (runs with no libraries).
pub fn is_static_binary(path: &Path) -> bool {
    matches!(elf_kind(path), Ok(ElfKind::Static))
}
