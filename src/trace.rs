//! The trace: what each stage did and what the kernel now shows, on stderr.
//!
//! Stages and the runtime emit `tracing` events with the target `stagebox` and these fields:
//! `stage`, `event` (`stage`, `off`, `syscall`, `fact`, `note`, `error`, `exit`), and per
//! event `syscall` + `result`, `fact` + `before` + `after`, or `message`. A layer here prints
//! them in one of two formats:
//!
//! - `pretty`: for people; colored unless NO_COLOR is set or stderr is not a terminal.
//! - `json`: one JSON object per line with exactly those field names (stable; `before` and
//!   `after` are null where a mount was only added or only removed).
//!
//! stdout is never written here: it belongs to the workload.

use colored::Colorize;
use std::collections::BTreeMap;
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMode {
    Pretty,
    Json,
    Off,
}

impl std::str::FromStr for TraceMode {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pretty" => Ok(TraceMode::Pretty),
            "json" => Ok(TraceMode::Json),
            "off" | "none" => Ok(TraceMode::Off),
            other => Err(crate::Error::usage(format!(
                "unknown trace format {other:?}; use pretty, json or off"
            ))),
        }
    }
}

const TARGET: &str = "stagebox";

#[derive(Default)]
struct Fields(BTreeMap<&'static str, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

struct StageboxLayer {
    mode: TraceMode,
}

fn json_line(f: &BTreeMap<&'static str, String>) -> String {
    let mut obj = serde_json::Map::new();
    let event = f.get("event").cloned().unwrap_or_default();
    for key in [
        "stage", "event", "syscall", "result", "fact", "before", "after", "message",
    ] {
        match f.get(key) {
            Some(v) => {
                obj.insert(key.to_string(), serde_json::Value::String(v.clone()));
            }
            None if event == "fact" && (key == "before" || key == "after") => {
                obj.insert(key.to_string(), serde_json::Value::Null);
            }
            None => {}
        }
    }
    serde_json::Value::Object(obj).to_string()
}

fn pretty_line(f: &BTreeMap<&'static str, String>) -> String {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let stage = get("stage");
    match get("event") {
        "stage" => format!(
            "{} {}  {}",
            "▶".cyan().bold(),
            stage.cyan().bold(),
            get("message").dimmed()
        ),
        "off" => format!(
            "{} {}  {}",
            "▷".dimmed(),
            stage.dimmed(),
            format!("off ({})", get("message")).dimmed()
        ),
        "syscall" => {
            let result = get("result");
            let r = if result == "0" {
                result.green()
            } else {
                result.red()
            };
            format!("    {} {} = {}", "$".dimmed(), get("syscall").yellow(), r)
        }
        "fact" => {
            let fact = get("fact");
            match (f.get("before"), f.get("after")) {
                (Some(b), Some(a)) => format!(
                    "    {:<18} {} {} {}",
                    fact.bold(),
                    b.red(),
                    "->".dimmed(),
                    a.green()
                ),
                (None, Some(a)) => format!("    {:<18} {} {}", fact.bold(), "+".green(), a.green()),
                (Some(b), None) => format!("    {:<18} {} {}", fact.bold(), "-".red(), b.red()),
                (None, None) => format!("    {}", fact.bold()),
            }
        }
        "note" => format!("    {} {}", "·".blue(), get("message")),
        "error" => format!(
            "{} {}: {}",
            "✗".red().bold(),
            stage.red().bold(),
            get("message")
        ),
        "exit" => format!("{} {}", "■".cyan(), get("message")),
        other => format!("{stage} {other} {}", get("message")),
    }
}

impl<S: tracing::Subscriber> Layer<S> for StageboxLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET || self.mode == TraceMode::Off {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = match self.mode {
            TraceMode::Json => json_line(&fields.0),
            TraceMode::Pretty => pretty_line(&fields.0),
            TraceMode::Off => return,
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

/// Installs the trace layer for the whole process. Colors follow NO_COLOR and whether stderr
/// is a terminal.
pub fn init(mode: TraceMode) {
    use std::io::IsTerminal;
    let color = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    colored::control::set_override(color);
    let subscriber = tracing_subscriber::registry().with(StageboxLayer { mode });
    let _ = tracing::subscriber::set_global_default(subscriber);
}

pub fn stage(stage: &str, summary: &str) {
    tracing::info!(target: "stagebox", stage, event = "stage", message = summary);
}

pub fn off(stage: &str, why: &str) {
    tracing::info!(target: "stagebox", stage, event = "off", message = why);
}

pub fn syscall(stage: &str, rec: &crate::kernel::sys::SyscallRecord) {
    tracing::info!(target: "stagebox", stage, event = "syscall", syscall = rec.call.as_str(), result = rec.result.as_str());
}

pub fn fact(stage: &str, c: &crate::kernel::observe::Change) {
    match (&c.before, &c.after) {
        (Some(b), Some(a)) => {
            tracing::info!(target: "stagebox", stage, event = "fact", fact = c.fact.as_str(), before = b.as_str(), after = a.as_str())
        }
        (None, Some(a)) => {
            tracing::info!(target: "stagebox", stage, event = "fact", fact = c.fact.as_str(), after = a.as_str())
        }
        (Some(b), None) => {
            tracing::info!(target: "stagebox", stage, event = "fact", fact = c.fact.as_str(), before = b.as_str())
        }
        (None, None) => {
            tracing::info!(target: "stagebox", stage, event = "fact", fact = c.fact.as_str())
        }
    }
}

pub fn note(stage: &str, message: &str) {
    tracing::info!(target: "stagebox", stage, event = "note", message);
}

pub fn error(stage: &str, message: &str) {
    tracing::info!(target: "stagebox", stage, event = "error", message);
}

pub fn exit(message: &str) {
    tracing::info!(target: "stagebox", stage = "run", event = "exit", message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_stable_names_and_null_for_missing_side() {
        let mut f = BTreeMap::new();
        f.insert("stage", "proc".to_string());
        f.insert("event", "fact".to_string());
        f.insert("fact", "mount".to_string());
        f.insert("after", "/proc proc proc".to_string());
        assert_eq!(
            json_line(&f),
            r#"{"stage":"proc","event":"fact","fact":"mount","before":null,"after":"/proc proc proc"}"#
        );
    }
}
