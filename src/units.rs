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

/// Unix seconds as RFC 3339 UTC ("2024-05-01T12:00:00Z"), the format OCI configs use.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The seconds of an RFC 3339 time (fractions and zone offsets ignored; good enough for "ago").
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + hh * 3600 + mm * 60 + ss).ok()
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
