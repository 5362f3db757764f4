//! The limits a user asks for, parsed the way Docker parses its flags (`-m 64M`, `--cpus 0.5`,
//! `--pids-limit 10` ...), and checked before anything touches the host. Every refusal is one
//! sentence that names the flag and says what would be accepted.

use crate::error::{Error, Result};

/// The CFS period stagebox uses with `--cpus`, as Docker does: 100 ms.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The kernel refuses a CFS quota below 1 ms (cpu.cfs_quota_us / cpu.max).
pub const MIN_CPU_QUOTA_US: u64 = 1_000;
/// Docker's minimum for `--memory`: below this, the runtime itself cannot start in the cgroup.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// The flags as typed, before parsing (what `stagebox run` got on its command line).
#[derive(Debug, Clone, Default)]
pub struct LimitFlags {
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub cpus: Option<String>,
    pub cpu_shares: Option<String>,
    pub cpu_weight: Option<String>,
    pub pids_limit: Option<String>,
    pub cpuset_cpus: Option<String>,
}

/// `--memory-swap`: memory plus swap, or no limit on swap (-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    Unlimited,
    Total(u64),
}

/// `--cpus N`: N CPUs' worth of time in every period (quota over period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

impl CpuQuota {
    /// The number of CPUs as the user wrote it back: "0.5", "2".
    pub fn cpus(&self) -> String {
        let hundredths = self.quota_us * 100 / self.period_us;
        if hundredths.is_multiple_of(100) {
            format!("{}", hundredths / 100)
        } else {
            format!("{}.{:02}", hundredths / 100, hundredths % 100)
                .trim_end_matches('0')
                .to_string()
        }
    }
}

/// Parsed and checked limits. `None` everywhere: a cgroup without limits (still useful: the
/// kernel counts what the container uses, and it can be killed as a whole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<u64>,
    pub memory_swap: Option<Swap>,
    pub cpus: Option<CpuQuota>,
    pub cpu_shares: Option<u64>,
    pub cpu_weight: Option<u64>,
    /// `Some(None)`: -1, no limit ("max").
    pub pids: Option<Option<u64>>,
    pub cpuset_cpus: Option<String>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Parses and checks the flags; nothing on the host is read or changed.
    pub fn from_flags(f: &LimitFlags) -> Result<Limits> {
        let memory = match &f.memory {
            Some(s) => {
                let m = parse_size(s, "--memory")?;
                if m < MIN_MEMORY {
                    return Err(Error::usage(format!(
                        "--memory {s} is below the minimum of 6M: the kernel would kill the container's first process before it could start; give at least 6m"
                    )));
                }
                Some(m)
            }
            None => None,
        };
        let memory_swap = match &f.memory_swap {
            None => None,
            Some(s) => {
                let Some(m) = memory else {
                    return Err(Error::usage(
                        "--memory-swap limits memory plus swap, so it needs --memory too; add -m SIZE",
                    ));
                };
                if s.trim() == "-1" {
                    Some(Swap::Unlimited)
                } else {
                    let total = parse_size(s, "--memory-swap")?;
                    if total < m {
                        return Err(Error::usage(format!(
                            "--memory-swap {s} is smaller than --memory: it counts memory plus swap, so give at least the memory limit (or -1 for unlimited swap)"
                        )));
                    }
                    Some(Swap::Total(total))
                }
            }
        };
        let cpus = match &f.cpus {
            Some(s) => Some(parse_cpus(s)?),
            None => None,
        };
        if f.cpu_shares.is_some() && f.cpu_weight.is_some() {
            return Err(Error::usage(
                "--cpu-shares and --cpu-weight say the same thing (cgroup v1 and v2 names of one knob); give only one",
            ));
        }
        let cpu_shares = match &f.cpu_shares {
            Some(s) => Some(parse_in_range(s, "--cpu-shares", 2, 262_144)?),
            None => None,
        };
        let cpu_weight = match &f.cpu_weight {
            Some(s) => Some(parse_in_range(s, "--cpu-weight", 1, 10_000)?),
            None => None,
        };
        let pids = match &f.pids_limit {
            Some(s) if s.trim() == "-1" => Some(None),
            Some(s) => Some(Some(parse_in_range(s, "--pids-limit", 1, i64::MAX as u64).map_err(|_| {
                Error::usage(format!(
                    "--pids-limit {s} is not a positive whole number; give the most processes the container may have (or -1 for no limit)"
                ))
            })?)),
            None => None,
        };
        let cpuset_cpus = match &f.cpuset_cpus {
            Some(s) => {
                parse_cpu_list(s).ok_or_else(|| {
                    Error::usage(format!(
                        "--cpuset-cpus {s:?} is not a CPU list; write CPU numbers and ranges such as 0-2,4"
                    ))
                })?;
                Some(s.trim().to_string())
            }
            None => None,
        };
        Ok(Limits {
            memory,
            memory_swap,
            cpus,
            cpu_shares,
            cpu_weight,
            pids,
            cpuset_cpus,
        })
    }

    /// cgroup v2's cpu.weight for --cpu-shares or --cpu-weight (runc's conversion).
    pub fn weight(&self) -> Option<u64> {
        self.cpu_weight
            .or_else(|| self.cpu_shares.map(|s| 1 + ((s - 2) * 9999) / 262_142))
    }

    /// cgroup v1's cpu.shares for --cpu-shares or --cpu-weight (the inverse conversion).
    pub fn shares(&self) -> Option<u64> {
        self.cpu_shares
            .or_else(|| self.cpu_weight.map(|w| 2 + ((w - 1) * 262_142) / 9999))
    }

    /// The controllers these limits need, by their kernel names.
    pub fn needed_controllers(&self) -> Vec<(&'static str, &'static str)> {
        let mut v = Vec::new();
        if self.memory.is_some() {
            v.push(("memory", "--memory"));
        }
        if self.cpus.is_some() {
            v.push(("cpu", "--cpus"));
        }
        if self.cpu_shares.is_some() {
            v.push(("cpu", "--cpu-shares"));
        }
        if self.cpu_weight.is_some() {
            v.push(("cpu", "--cpu-weight"));
        }
        if self.pids.is_some() {
            v.push(("pids", "--pids-limit"));
        }
        if self.cpuset_cpus.is_some() {
            v.push(("cpuset", "--cpuset-cpus"));
        }
        v
    }
}

/// A size as Docker reads it (go-units RAMInBytes): a number, an optional space, an optional
/// unit b, k, m, g, t or p (binary: k = 1024), optionally followed by i and/or b, in any case.
/// "64M", "64m", "64MiB", "1.5g", "4096". Fractions are rounded down to whole bytes.
pub fn parse_size(s: &str, flag: &str) -> Result<u64> {
    let bad = || {
        Error::usage(format!(
            "{flag} {s} is not a size; write a positive number with an optional unit b, k, m or g (for example 64m)"
        ))
    };
    let t = s.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1
    {
        return Err(bad());
    }
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let mut rest = unit.as_str();
    let mult: u64 = match rest.chars().next() {
        Some('k') => 1 << 10,
        Some('m') => 1 << 20,
        Some('g') => 1 << 30,
        Some('t') => 1 << 40,
        Some('p') => 1 << 50,
        _ => 1,
    };
    if mult != 1 {
        rest = &rest[1..];
    }
    rest = rest.strip_prefix('i').unwrap_or(rest);
    rest = rest.strip_prefix('b').unwrap_or(rest);
    if !rest.is_empty() {
        return Err(bad());
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let int: u64 = int.parse().map_err(|_| bad())?;
    let mut bytes = int.checked_mul(mult).ok_or_else(bad)?;
    if !frac.is_empty() {
        let digits = frac.len().min(9) as u32;
        let f: u64 = frac[..digits as usize].parse().map_err(|_| bad())?;
        bytes = bytes.saturating_add(mult.saturating_mul(f) / 10u64.pow(digits));
    }
    Ok(bytes)
}

/// `--cpus`: a positive decimal number of CPUs, at least 0.01 (the kernel's 1 ms quota in a
/// 100 ms period). Whether the host has that many CPUs is checked by the cgroup stage.
pub fn parse_cpus(s: &str) -> Result<CpuQuota> {
    let t = s.trim();
    let ok_syntax = !t.is_empty()
        && t.chars().all(|c| c.is_ascii_digit() || c == '.')
        && t.matches('.').count() <= 1
        && t != ".";
    let value: f64 = if ok_syntax {
        t.parse().unwrap_or(-1.0)
    } else {
        -1.0
    };
    if value < 0.0 {
        return Err(Error::usage(format!(
            "--cpus {s} is not a number of CPUs; write a positive decimal such as 0.5 or 2"
        )));
    }
    let quota_us = (value * CPU_PERIOD_US as f64).round() as u64;
    if quota_us < MIN_CPU_QUOTA_US {
        return Err(Error::usage(format!(
            "--cpus {s} is too small: the kernel's smallest CPU quota is 1 ms per 100 ms period, so give at least 0.01"
        )));
    }
    Ok(CpuQuota {
        quota_us,
        period_us: CPU_PERIOD_US,
    })
}

fn parse_in_range(s: &str, flag: &str, min: u64, max: u64) -> Result<u64> {
    match s.trim().parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(Error::usage(format!(
            "{flag} {s} is out of range; give a whole number from {min} to {max}"
        ))),
    }
}

/// A kernel CPU list ("0-2,4") as the CPU numbers it names.
pub fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    let t = s.trim();
    if t.is_empty() {
        return Some(out);
    }
    for part in t.split(',') {
        let part = part.trim();
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u32 = a.trim().parse().ok()?;
        let b: u32 = b.trim().parse().ok()?;
        if a > b || b - a > 4096 {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(f: impl FnOnce(&mut LimitFlags)) -> Result<Limits> {
        let mut l = LimitFlags::default();
        f(&mut l);
        Limits::from_flags(&l)
    }

    #[test]
    fn sizes_parse_like_docker() {
        let m = |s: &str| parse_size(s, "-m").unwrap();
        assert_eq!(m("64M"), 64 << 20);
        assert_eq!(m("64m"), 64 << 20);
        assert_eq!(m("64mb"), 64 << 20);
        assert_eq!(m("64MiB"), 64 << 20);
        assert_eq!(m("64 m"), 64 << 20);
        assert_eq!(m("1g"), 1 << 30);
        assert_eq!(m("1.5G"), 3 << 29);
        assert_eq!(m("512k"), 512 << 10);
        assert_eq!(m("4096"), 4096);
        assert_eq!(m("4096b"), 4096);
        assert_eq!(m("4096B"), 4096);
        for bad in [
            "64Q", "-5", "-5m", "", "m", "1.2.3m", ".5m", "5.m", "64mm", "64 mb x", "1e3",
        ] {
            let e = parse_size(bad, "--memory").unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("--memory {bad} is not a size")),
                "{bad}: {e}"
            );
        }
        assert!(parse_size("99999999999p", "-m").is_err());
    }

    #[test]
    fn memory_has_docker_minimum_and_swap_rules() {
        assert_eq!(
            flags(|f| f.memory = Some("32M".into())).unwrap().memory,
            Some(32 << 20)
        );
        let e = flags(|f| f.memory = Some("4m".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("below the minimum of 6M"), "{e}");
        let e = flags(|f| f.memory_swap = Some("64m".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs --memory"), "{e}");
        let l = flags(|f| {
            f.memory = Some("32m".into());
            f.memory_swap = Some("-1".into())
        })
        .unwrap();
        assert_eq!(l.memory_swap, Some(Swap::Unlimited));
        let e = flags(|f| {
            f.memory = Some("64m".into());
            f.memory_swap = Some("32m".into())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("smaller than --memory"), "{e}");
    }

    #[test]
    fn cpus_are_quota_over_period() {
        assert_eq!(
            parse_cpus("0.5").unwrap(),
            CpuQuota {
                quota_us: 50_000,
                period_us: 100_000
            }
        );
        assert_eq!(parse_cpus("2").unwrap().quota_us, 200_000);
        assert_eq!(parse_cpus("0.01").unwrap().quota_us, 1_000);
        assert_eq!(parse_cpus("0.2").unwrap().cpus(), "0.2");
        assert_eq!(parse_cpus("1.25").unwrap().cpus(), "1.25");
        assert_eq!(parse_cpus("3").unwrap().cpus(), "3");
        for bad in ["0", "0.0", "0.001"] {
            let e = parse_cpus(bad).unwrap_err().to_string();
            assert!(e.contains("too small"), "{bad}: {e}");
        }
        for bad in ["-1", "abc", "", ".", "1e3", "inf", "NaN"] {
            let e = parse_cpus(bad).unwrap_err().to_string();
            assert!(e.contains("is not a number of CPUs"), "{bad}: {e}");
        }
    }

    #[test]
    fn shares_weight_pids_and_cpuset() {
        let l = flags(|f| f.cpu_shares = Some("1024".into())).unwrap();
        assert_eq!(l.shares(), Some(1024));
        assert_eq!(l.weight(), Some(39)); // runc: 1 + (1022 * 9999) / 262142
        let l = flags(|f| f.cpu_weight = Some("100".into())).unwrap();
        assert_eq!(l.weight(), Some(100));
        assert_eq!(l.shares(), Some(2597));
        assert!(flags(|f| f.cpu_shares = Some("1".into())).is_err());
        assert!(flags(|f| f.cpu_weight = Some("10001".into())).is_err());
        assert!(flags(|f| {
            f.cpu_shares = Some("512".into());
            f.cpu_weight = Some("50".into())
        })
        .is_err());
        assert_eq!(
            flags(|f| f.pids_limit = Some("10".into())).unwrap().pids,
            Some(Some(10))
        );
        assert_eq!(
            flags(|f| f.pids_limit = Some("-1".into())).unwrap().pids,
            Some(None)
        );
        for bad in ["0", "-5", "ten"] {
            let e = flags(|f| f.pids_limit = Some(bad.into()))
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a positive whole number"), "{bad}: {e}");
        }
        assert_eq!(parse_cpu_list("0-2,4").unwrap(), vec![0, 1, 2, 4]);
        assert!(parse_cpu_list("2-1").is_none());
        assert!(flags(|f| f.cpuset_cpus = Some("a".into())).is_err());
        let l = flags(|f| f.cpuset_cpus = Some("0".into())).unwrap();
        assert_eq!(l.needed_controllers(), vec![("cpuset", "--cpuset-cpus")]);
        assert!(flags(|_| {}).unwrap().is_empty());
    }
}
