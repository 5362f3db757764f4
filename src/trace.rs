//! The trace: what each stage did and what the kernel now shows, on stderr.
//!
//! Stages and the runtime emit `tracing` events with the target `stagebox` and these fields:
//! `stage`, `event` (`stage`, `off`, `syscall`, `fact`, `note`, `error`, `exit`), and per
//! event `syscall` + `result`, `fact` + `before` + `after`, or `message`. A layer here prints
//! them in one of two formats:
//!
//! - `pretty`: for people; colored unless NO_COLOR is set or stderr is not a terminal. The
//!   host mounts the root switch takes out of view ([`Change::is_host_mount_gone`]) are
//!   folded into one line, `mount  N host mounts gone from view`.
//! - `verbose`: `pretty` with every one of those mounts on a line of its own.
//! - `json`: one JSON object per line with exactly those field names (stable; `before` and
//!   `after` are null where a mount was only added or only removed). Every fact is emitted,
//!   nothing is folded.
//!
//! A [`Focus`] (`--trace-stages`) keeps only the lines of some stages, in every format; the
//! exec line, the exit line and errors always show.
//!
//! stdout is never written here: it belongs to the workload.

use crate::kernel::observe::Change;
use colored::Colorize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMode {
    Pretty,
    /// Pretty, with every host mount the root switch takes out of view on a line of its own.
    Verbose,
    Json,
    Off,
}

impl std::str::FromStr for TraceMode {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pretty" => Ok(TraceMode::Pretty),
            "verbose" => Ok(TraceMode::Verbose),
            "json" => Ok(TraceMode::Json),
            "off" | "none" => Ok(TraceMode::Off),
            other => Err(crate::Error::usage(format!(
                "unknown trace format {other:?}; use pretty, verbose, json or off"
            ))),
        }
    }
}

const TARGET: &str = "stagebox";
/// The `stage` field of the line that says which program is exec'd.
const EXEC: &str = "exec";
/// The `fold` field: a `summary` line stands for the `detail` lines after it. Only pretty
/// prints summaries, and only verbose and json print details.
const SUMMARY: &str = "summary";
const DETAIL: &str = "detail";

/// Which stages the trace shows (`--trace-stages`). The exec line, the exit line and errors
/// always show. It filters printing only: every stage still runs and is still checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Focus(Option<BTreeSet<String>>);

impl Focus {
    /// Every stage's lines (no `--trace-stages`).
    pub fn all() -> Self {
        Focus(None)
    }

    /// Only these stages' lines (names as the trace prints them in its `stage` field).
    pub fn stages<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Focus(Some(names.into_iter().map(Into::into).collect()))
    }

    fn shows(&self, f: &BTreeMap<&'static str, String>) -> bool {
        let Some(stages) = &self.0 else {
            return true;
        };
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
        matches!(get("event"), "exit" | "error")
            || get("stage") == EXEC
            || stages.contains(get("stage"))
    }
}

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
    focus: Focus,
    /// Where the lines go instead of stderr (an OCI runtime's `--log` file).
    sink: Option<std::sync::Mutex<std::fs::File>>,
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
                (None, None) if f.contains_key("message") => {
                    let message = get("message");
                    // "N host mounts gone from view (--trace verbose lists them)"
                    let (what, hint) =
                        message.split_at(message.find(" (").unwrap_or(message.len()));
                    format!("    {:<18} {}{}", fact.bold(), what.red(), hint.dimmed())
                }
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

impl StageboxLayer {
    /// The line one event prints, if this mode and focus print it.
    fn line(&self, f: &BTreeMap<&'static str, String>) -> Option<String> {
        let fold = f.get("fold").map(String::as_str);
        let folded_away = match self.mode {
            TraceMode::Pretty => fold == Some(DETAIL),
            _ => fold == Some(SUMMARY),
        };
        if folded_away || !self.focus.shows(f) {
            return None;
        }
        match self.mode {
            TraceMode::Json => Some(json_line(f)),
            TraceMode::Pretty | TraceMode::Verbose => Some(pretty_line(f)),
            TraceMode::Off => None,
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for StageboxLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET || self.mode == TraceMode::Off {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(line) = self.line(&fields.0) {
            match &self.sink {
                Some(file) => {
                    if let Ok(mut f) = file.lock() {
                        let _ = writeln!(f, "{line}");
                    }
                }
                None => {
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(err, "{line}");
                }
            }
        }
    }
}

/// Installs the trace layer for the whole process. Colors follow NO_COLOR and whether stderr
/// is a terminal.
pub fn init(mode: TraceMode, focus: Focus) {
    init_to(mode, focus, None)
}

/// As `init`, the lines going to `file` when one is given (no colors there).
pub fn init_to(mode: TraceMode, focus: Focus, file: Option<std::fs::File>) {
    use std::io::IsTerminal;
    let color =
        file.is_none() && std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    colored::control::set_override(color);
    let sink = file.map(std::sync::Mutex::new);
    let subscriber = tracing_subscriber::registry().with(StageboxLayer { mode, focus, sink });
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

/// One fact (`before` or `after` left out where the change has none).
pub fn fact(stage: &str, c: &Change) {
    fact_folded(stage, c, None);
}

fn fact_folded(stage: &str, c: &Change, fold: Option<&str>) {
    tracing::info!(
        target: "stagebox",
        stage,
        event = "fact",
        fact = c.fact.as_str(),
        before = c.before.as_deref(),
        after = c.after.as_deref(),
        fold
    );
}

/// What one stage changed, in order. The host mounts the root switch takes out of view
/// ([`Change::is_host_mount_gone`]) get one summary line in pretty mode, where the first of
/// them would be; verbose and json print each of them instead.
pub fn facts(stage: &str, changes: &[Change]) {
    let gone = changes.iter().filter(|c| c.is_host_mount_gone()).count();
    let mut summarised = false;
    for c in changes {
        if !c.is_host_mount_gone() {
            fact(stage, c);
            continue;
        }
        if !summarised {
            summarised = true;
            let message = format!(
                "{gone} host mount{} gone from view (--trace verbose lists them)",
                if gone == 1 { "" } else { "s" }
            );
            tracing::info!(target: "stagebox", stage, event = "fact", fact = c.fact.as_str(), message, fold = SUMMARY);
        }
        fact_folded(stage, c, Some(DETAIL));
    }
}

pub fn note(stage: &str, message: &str) {
    tracing::info!(target: "stagebox", stage, event = "note", message);
}

/// The line that says which program is exec'd; it shows whatever the [`Focus`].
pub fn exec(message: &str) {
    tracing::info!(target: "stagebox", stage = EXEC, event = "note", message);
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

    /// Keeps the fields of every event, to print them afterwards in each mode.
    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<BTreeMap<&'static str, String>>>>);

    impl<S: tracing::Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            if let Ok(mut v) = self.0.lock() {
                v.push(fields.0);
            }
        }
    }

    fn captured(f: impl FnOnce()) -> Vec<BTreeMap<&'static str, String>> {
        let cap = Capture::default();
        let subscriber = tracing_subscriber::registry().with(cap.clone());
        tracing::subscriber::with_default(subscriber, f);
        let v = cap.0.lock().map(|v| v.clone()).unwrap_or_default();
        v
    }

    fn printed(
        events: &[BTreeMap<&'static str, String>],
        mode: TraceMode,
        focus: Focus,
    ) -> Vec<String> {
        let layer = StageboxLayer {
            mode,
            focus,
            sink: None,
        };
        events.iter().filter_map(|f| layer.line(f)).collect()
    }

    fn mount(before: Option<&str>, after: Option<&str>) -> Change {
        Change {
            fact: "mount".into(),
            before: before.map(str::to_string),
            after: after.map(str::to_string),
        }
    }

    #[test]
    fn pretty_folds_host_mounts_gone_and_verbose_and_json_keep_each() {
        colored::control::set_override(false);
        let changes = vec![
            Change {
                fact: "mount count".into(),
                before: Some("5".into()),
                after: Some("2".into()),
            },
            mount(Some("/box overlay overlay"), Some("/ overlay overlay")),
            mount(None, Some("/proc proc proc")),
            mount(Some("/ ext4 /dev/vda"), None),
            mount(Some("/sys sysfs sysfs"), None),
        ];
        let events = captured(|| facts("pivot", &changes));
        assert_eq!(
            printed(&events, TraceMode::Pretty, Focus::all()),
            vec![
                "    mount count        5 -> 2",
                "    mount              /box overlay overlay -> / overlay overlay",
                "    mount              + /proc proc proc",
                "    mount              2 host mounts gone from view (--trace verbose lists them)",
            ]
        );
        let verbose = printed(&events, TraceMode::Verbose, Focus::all());
        assert_eq!(verbose.len(), 5, "{verbose:?}");
        assert_eq!(verbose[3], "    mount              - / ext4 /dev/vda");
        assert_eq!(verbose[4], "    mount              - /sys sysfs sysfs");
        let json = printed(&events, TraceMode::Json, Focus::all());
        assert_eq!(json.len(), 5, "{json:?}");
        assert_eq!(
            json[3],
            r#"{"stage":"pivot","event":"fact","fact":"mount","before":"/ ext4 /dev/vda","after":null}"#
        );
        assert!(json
            .iter()
            .all(|l| !l.contains("fold") && !l.contains("gone from view")));
    }

    #[test]
    fn one_host_mount_is_singular() {
        colored::control::set_override(false);
        let events = captured(|| facts("pivot", &[mount(Some("/ ext4 /dev/vda"), None)]));
        assert_eq!(
            printed(&events, TraceMode::Pretty, Focus::all()),
            vec!["    mount              1 host mount gone from view (--trace verbose lists them)"]
        );
    }

    #[test]
    fn focus_keeps_its_stages_the_exec_line_the_exit_and_errors() {
        colored::control::set_override(false);
        let events = captured(|| {
            stage("uts", "new UTS namespace");
            note("uts", "a note");
            stage("pid", "new PID namespace");
            off("net", "--without");
            error("proc", "it failed");
            exec("execve(\"/bin/true\")");
            exit("the workload exited with status 0");
        });
        let shown = printed(&events, TraceMode::Pretty, Focus::stages(["uts"]));
        assert_eq!(
            shown,
            vec![
                "▶ uts  new UTS namespace",
                "    · a note",
                "✗ proc: it failed",
                "    · execve(\"/bin/true\")",
                "■ the workload exited with status 0",
            ]
        );
        let json = printed(&events, TraceMode::Json, Focus::stages(["pid", "net"]));
        assert_eq!(json.len(), 5, "{json:?}");
        assert_eq!(printed(&events, TraceMode::Pretty, Focus::all()).len(), 7);
    }

    #[test]
    fn verbose_is_a_trace_mode() {
        assert_eq!(
            "verbose".parse::<TraceMode>().ok(),
            Some(TraceMode::Verbose)
        );
        let e = "loud".parse::<TraceMode>().unwrap_err().to_string();
        assert!(e.contains("pretty, verbose, json or off"), "{e}");
    }
}
