//! A process's identity over time: its start time from /proc/PID/stat (field 22, in clock
//! ticks since boot). A pid is reused after its process dies; the pair (pid, start time) is
//! not, so a record that keeps both can tell its own process from a stranger with the same pid.

/// The start time (field 22 of /proc/PID/stat) of the process `pid`; None when it is gone.
pub fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&text)
}

/// Field 22 of a /proc/PID/stat line. The command name (field 2) is in parentheses and may hold
/// spaces and ')', so the fields are counted from the last ')'.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')': field 3 (state) is the first; field 22 is the 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Is `pid` the process that started at `start` (and not a zombie)?
pub fn is_same_process(pid: i32, start: u64) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = text
        .rfind(')')
        .and_then(|i| text[i + 1..].split_whitespace().next());
    parse_start_time(&text) == Some(start) && state != Some("Z") && state != Some("X")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_field_22_past_a_name_with_spaces_and_parens() {
        let line = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(line), Some(987654));
        assert_eq!(parse_start_time("42 (x) S 1"), None);
        let me = std::process::id() as i32;
        let st = start_time(me).unwrap();
        assert!(is_same_process(me, st));
        assert!(!is_same_process(me, st + 1));
        assert_eq!(start_time(-1), None);
    }
}
