//! What a run is told about its life beyond the stages: `-d`, `-i`, `-t`, `--restart`,
//! `--stop-signal`, `--stop-timeout`, and, for `start` and the monitor's restarts, the
//! container it runs again (`reuse`). Plain data: `monitor` acts on it.

use crate::error::{Error, Result};

/// `--restart`, as Docker reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    #[default]
    No,
    /// Restart after a non-zero exit, at most this many times (None: no limit).
    OnFailure(Option<u32>),
    Always,
    /// As `always` here (stagebox has no daemon that restarts, so no difference shows).
    UnlessStopped,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Result<RestartPolicy> {
        let bad = || {
            Error::usage(format!(
                "--restart {s:?} is not a restart policy; use no, on-failure[:N], always or unless-stopped"
            ))
        };
        Ok(match s {
            "" | "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure(None),
            other => match other.strip_prefix("on-failure:") {
                Some(n) => RestartPolicy::OnFailure(Some(n.parse().map_err(|_| bad())?)),
                None => return Err(bad()),
            },
        })
    }

    /// Should a container that exited with `code`, restarted `count` times already, run again?
    pub fn restarts(&self, code: i32, count: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure(max) => code != 0 && max.is_none_or(|m| count < m),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

/// A signal as `kill -s`, `--stop-signal` and an image's StopSignal give it: `SIGTERM`,
/// `TERM`, `term` or `15`.
pub fn parse_signal(s: &str, what: &str) -> Result<nix::sys::signal::Signal> {
    use nix::sys::signal::Signal;
    let upper = s.trim().to_ascii_uppercase();
    let parsed = match upper.parse::<i32>() {
        Ok(n) => Signal::try_from(n).ok(),
        Err(_) => {
            let name = if upper.starts_with("SIG") {
                upper
            } else {
                format!("SIG{upper}")
            };
            name.parse::<Signal>().ok()
        }
    };
    parsed.ok_or_else(|| {
        Error::usage(format!(
            "{what} {s:?} is not a signal; give a name such as TERM, SIGKILL or USR1, or a number"
        ))
    })
}

#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    /// `-d`: a monitor process holds the container; the command prints its id and returns.
    pub detach: bool,
    /// `-i`: the workload's stdin stays open (a pipe the monitor holds).
    pub interactive: bool,
    /// `-t`: the workload's stdio is a pseudo-terminal.
    pub tty: bool,
    pub restart: RestartPolicy,
    /// `--restart` as given, for the record.
    pub restart_text: String,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u64>,
    /// The arguments after `run`, kept in the record for `start`.
    pub run_args: Vec<String>,
    /// The container's id, chosen before the run (a detached run prints it).
    pub id: Option<String>,
    /// Run this kept container again (`start`, a restart): its record, directory and
    /// writable layer are reused instead of made.
    pub reuse: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_decide() {
        assert_eq!(RestartPolicy::parse("no").unwrap(), RestartPolicy::No);
        let p = RestartPolicy::parse("on-failure:2").unwrap();
        assert_eq!(p, RestartPolicy::OnFailure(Some(2)));
        assert!(p.restarts(1, 0) && p.restarts(1, 1) && !p.restarts(1, 2));
        assert!(!p.restarts(0, 0));
        assert!(RestartPolicy::parse("always").unwrap().restarts(0, 99));
        assert!(RestartPolicy::parse("sometimes").is_err());
        assert!(RestartPolicy::parse("on-failure:x").is_err());
    }

    #[test]
    fn signals_by_name_and_number() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("TERM", "-s").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("sigusr1", "-s").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("9", "-s").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE", "-s").is_err());
    }
}
