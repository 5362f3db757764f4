//! A container's output in Docker's json-file format: one JSON object per line,
//! `{"log":"hello\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}`, in
//! STATE/containers/ID/ID-json.log (see `lifecycle::log_path`). The monitor of a detached
//! container writes it (`LineSplitter` cuts what a pipe delivers into lines, `entry_line`
//! formats one); `stagebox logs` reads it (`read_from`, `parse_since`).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// One line of output, as Docker's json-file driver writes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogEntry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Docker cuts a line longer than this into several entries.
pub const MAX_ENTRY: usize = 16 * 1024;

/// RFC 3339 with nanoseconds, UTC: Docker's `time` field.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = crate::units::rfc3339(d.as_secs());
    format!("{}.{:09}Z", secs.trim_end_matches('Z'), d.subsec_nanos())
}

/// Nanoseconds since the epoch of an RFC 3339 time with or without a fraction.
pub fn time_nanos(s: &str) -> Option<u128> {
    let secs = crate::units::parse_rfc3339(s)?;
    let frac = s.get(19..).unwrap_or("");
    let nanos = match frac.strip_prefix('.') {
        Some(rest) => {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            let mut padded = digits.chars().take(9).collect::<String>();
            while padded.len() < 9 {
                padded.push('0');
            }
            padded.parse::<u128>().unwrap_or(0)
        }
        None => 0,
    };
    Some(u128::from(secs) * 1_000_000_000 + nanos)
}

/// One entry as the json-file line it is written as (with its newline).
pub fn entry_line(stream: &str, data: &[u8], at: SystemTime) -> String {
    let e = LogEntry {
        log: String::from_utf8_lossy(data).into_owned(),
        stream: stream.to_string(),
        time: rfc3339_nano(at),
    };
    let mut s = serde_json::to_string(&e).unwrap_or_default();
    s.push('\n');
    s
}

/// Cuts a stream of bytes into lines (each with its `\n`), and lines longer than
/// `MAX_ENTRY` into pieces, as Docker does.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            match self.pending.iter().position(|b| *b == b'\n') {
                Some(i) if i < MAX_ENTRY => {
                    out.push(self.pending.drain(..=i).collect());
                }
                _ if self.pending.len() >= MAX_ENTRY => {
                    out.push(self.pending.drain(..MAX_ENTRY).collect());
                }
                _ => break,
            }
        }
        out
    }

    /// What is left at the end of the stream (a last line without `\n`).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// The complete entries from byte `offset` on, and the offset after the last complete line
/// (a line the monitor is still writing is left for the next call).
pub fn read_from(path: &Path, offset: u64) -> Result<(Vec<LogEntry>, u64)> {
    let mut f =
        std::fs::File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let entries = buf[..end]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    Ok((entries, offset + end as u64))
}

/// `logs --since`: an RFC 3339 time, Unix seconds (`1700000000`, `1700000000.5`), or a
/// duration before `now` (`30s`, `10m`, `2h`). Returns nanoseconds since the epoch.
pub fn parse_since(s: &str, now: SystemTime) -> Result<u128> {
    let now_ns = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    if let Some(t) = time_nanos(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs >= 0.0 {
            return Ok((secs * 1e9) as u128);
        }
    }
    let unit = s.chars().last().unwrap_or(' ');
    let scale: u128 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        _ => 0,
    };
    if let (true, Ok(n)) = (scale > 0, s[..s.len() - 1].parse::<u64>()) {
        return Ok(now_ns.saturating_sub(u128::from(n) * scale * 1_000_000_000));
    }
    Err(Error::usage(format!(
        "--since {s:?} is not a time; give an RFC 3339 time (2024-05-01T12:00:00Z), Unix seconds, or a duration such as 10m"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_are_cut_where_docker_cuts_them() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"a\nb"), vec![b"a\n".to_vec()]);
        assert_eq!(s.push(b"c\n\n"), vec![b"bc\n".to_vec(), b"\n".to_vec()]);
        assert_eq!(s.finish(), None);
        let long = vec![b'x'; MAX_ENTRY + 3];
        assert_eq!(s.push(&long).len(), 1);
        assert_eq!(s.finish().unwrap().len(), 3);
    }

    #[test]
    fn entries_round_trip_with_nanoseconds() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        let line = entry_line("stderr", b"oops\n", t);
        assert_eq!(
            line,
            "{\"log\":\"oops\\n\",\"stream\":\"stderr\",\"time\":\"2023-11-14T22:13:20.000000005Z\"}\n"
        );
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x-json.log");
        std::fs::write(&p, format!("{line}{{\"log\":\"partial")).unwrap();
        let (entries, off) = read_from(&p, 0).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].log, "oops\n");
        assert_eq!(off, line.len() as u64);
        assert_eq!(
            time_nanos(&entries[0].time),
            Some(1_700_000_000_000_000_005)
        );
    }

    #[test]
    fn since_takes_times_seconds_and_durations() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(parse_since("10s", now).unwrap(), 990_000_000_000);
        assert_eq!(parse_since("1m", now).unwrap(), 940_000_000_000);
        assert_eq!(parse_since("500", now).unwrap(), 500_000_000_000);
        assert_eq!(
            parse_since("1970-01-01T00:00:01Z", now).unwrap(),
            1_000_000_000
        );
        assert!(parse_since("yesterday", now).is_err());
    }
}
