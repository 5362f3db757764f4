//! Container ids: 12 hex digits from the kernel's random pool, as short Docker ids look.

/// 12 random hex digits from the kernel's random pool.
pub fn new_id() -> String {
    let mut buf = [0u8; 6];
    // SAFETY: getrandom(2) writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < buf.len() as isize {
        // Practically never: fall back to time and pid, still unique enough for a name.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!(
            "{:012x}",
            (t ^ std::process::id() as u128) & 0xffff_ffff_ffff
        );
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
