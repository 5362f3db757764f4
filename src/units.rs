//! Numbers for people: sizes and ages, each in one place.
//!
//! Two size formats exist because Docker uses two: resource limits are written in binary
//! units (`-m 32m` is 32 MiB, shown as `32M`), while `docker images` shows sizes in decimal
//! units (`5.2MB`). The function names say which one you get.
//!
//! May import: nothing from the crate (a leaf, like `error`).

/// Seconds since the epoch, by the wall clock (0 if the clock is before 1970).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// "12 seconds ago", "3 minutes ago", "2 hours ago", "5 days ago", as `docker ps` says it.
pub fn ago(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} seconds ago"),
        60..=3599 => format!("{} minutes ago", secs / 60),
        3600..=86399 => format!("{} hours ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

/// Binary units, as resource limits are written: 32 MiB -> "32M", 1 GiB -> "1G", 512 -> "512B".
pub fn size_binary(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
    for (size, unit) in UNITS {
        if bytes >= size {
            return if bytes.is_multiple_of(size) {
                format!("{}{unit}", bytes / size)
            } else {
                format!("{:.1}{unit}", bytes as f64 / size as f64)
            };
        }
    }
    format!("{bytes}B")
}

/// Decimal units, as `docker images` shows sizes: 5_200_000 -> "5.2MB".
pub fn size_decimal(n: u64) -> String {
    match n {
        0..=999 => format!("{n}B"),
        1000..=999_999 => format!("{:.1}kB", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}MB", n as f64 / 1e6),
        _ => format!("{:.2}GB", n as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_sizes() {
        assert_eq!(size_binary(32 << 20), "32M");
        assert_eq!(size_binary((32 << 20) - 100_000), "31.9M");
        assert_eq!(size_binary(1 << 30), "1G");
        assert_eq!(size_binary(512), "512B");
    }

    #[test]
    fn decimal_sizes_and_ages() {
        assert_eq!(size_decimal(999), "999B");
        assert_eq!(size_decimal(5_200_000), "5.2MB");
        assert_eq!(ago(59), "59 seconds ago");
        assert_eq!(ago(7200), "2 hours ago");
    }
}
