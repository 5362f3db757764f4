//! Linting a lesson against this program: every stage, flag, nested subcommand and trace
//! fact a lesson names must exist, so a lesson cannot drift from the code it teaches.

use super::model::*;
use std::collections::{BTreeMap, BTreeSet};

/// What a lesson may name: the program's stages, flags and trace facts.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Stages that exist now (usable in --only/--without).
    pub stages: BTreeSet<String>,
    /// Every stage name, including the planned ones.
    pub all_stages: BTreeSet<String>,
    /// Long and short flags per subcommand ("" for the global ones), without dashes.
    pub flags: BTreeMap<String, BTreeSet<String>>,
    /// Trace fact names.
    pub facts: BTreeSet<String>,
    /// Per subcommand, the options that take a value (`--name NAME`), without dashes.
    pub valued: BTreeMap<String, BTreeSet<String>>,
    /// The same two for runc's command line (`stagebox create`, `stagebox --root DIR state`):
    /// a command line passes when it is right for either (`cli::oci` picks one at run time).
    pub oci_flags: BTreeMap<String, BTreeSet<String>>,
    pub oci_valued: BTreeMap<String, BTreeSet<String>>,
}

impl Known {
    /// From this program: the stage registry, clap's command and the observer's fact names.
    pub fn from_program() -> Known {
        use clap::CommandFactory;
        let names = |c: &clap::Command| -> BTreeSet<String> {
            let mut s: BTreeSet<String> = c
                .get_arguments()
                .flat_map(|a| {
                    a.get_long()
                        .map(str::to_string)
                        .into_iter()
                        .chain(a.get_short().map(|c| c.to_string()))
                })
                .collect();
            s.insert("help".into());
            s.insert("h".into());
            s
        };
        let valued_names = |c: &clap::Command| -> BTreeSet<String> {
            c.get_arguments()
                .filter(|a| !a.is_positional() && a.get_action().takes_values())
                .flat_map(|a| {
                    a.get_long()
                        .map(str::to_string)
                        .into_iter()
                        .chain(a.get_short().map(|c| c.to_string()))
                })
                .collect()
        };
        let tables = |cmd: &clap::Command| {
            let mut flags = BTreeMap::new();
            let mut valued = BTreeMap::new();
            flags.insert(String::new(), names(cmd));
            valued.insert(String::new(), valued_names(cmd));
            for sub in cmd.get_subcommands() {
                valued.insert(sub.get_name().to_string(), valued_names(sub));
                flags.insert(sub.get_name().to_string(), names(sub));
                // Nested subcommands (`volume rm`) under "volume rm".
                for nested in sub.get_subcommands() {
                    flags.insert(
                        format!("{} {}", sub.get_name(), nested.get_name()),
                        names(nested),
                    );
                }
            }
            (flags, valued)
        };
        let (flags, valued) = tables(&crate::cli::Cli::command());
        let (oci_flags, oci_valued) = tables(&crate::cli::oci::OciCli::command());
        Known {
            stages: crate::stages::registry::all()
                .iter()
                .map(|s| s.info().id.name().to_string())
                .collect(),
            all_stages: crate::stages::StageId::ORDER
                .iter()
                .map(|s| s.name().to_string())
                .collect(),
            flags,
            facts: crate::kernel::observe::fact_names().into_iter().collect(),
            valued,
            oci_flags,
            oci_valued,
        }
    }
}

/// Splits a shell command line into simple commands (at `|`, `;`, `&`, `(`, `)` outside
/// quotes), each a list of words with quotes removed. Good enough for lesson commands.
pub fn simple_commands(line: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let end_word = |word: &mut String, in_word: &mut bool, words: &mut Vec<String>| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => word.push(c),
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    in_word = true;
                }
                '|' | ';' | '&' | '(' | ')' | '\n' => {
                    end_word(&mut word, &mut in_word, &mut words);
                    if !words.is_empty() {
                        out.push(std::mem::take(&mut words));
                    }
                }
                c if c.is_whitespace() || c == '\\' => {
                    end_word(&mut word, &mut in_word, &mut words)
                }
                c => {
                    word.push(c);
                    in_word = true;
                }
            },
        }
    }
    end_word(&mut word, &mut in_word, &mut words);
    if !words.is_empty() {
        out.push(words);
    }
    out
}

/// Problems with one `stagebox ...` invocation (words after an optional `VAR=x` prefix):
/// none when it is right for the Docker-like command line or for runc's.
fn check_invocation(words: &[String], known: &Known, problems: &mut Vec<String>, at: &str) {
    let mut docker = Vec::new();
    check_against(words, known, &known.flags, &known.valued, &mut docker, at);
    if docker.is_empty() {
        return;
    }
    let mut oci = Vec::new();
    check_against(
        words,
        known,
        &known.oci_flags,
        &known.oci_valued,
        &mut oci,
        at,
    );
    // Wrong for both: the problems of the one it is nearer to.
    if oci.is_empty() {
        return;
    }
    let no_such = |v: &[String]| v.iter().any(|p| p.contains("there is no such subcommand"));
    let nearer_oci = (no_such(&docker) && !no_such(&oci)) || oci.len() < docker.len();
    problems.extend(if nearer_oci { oci } else { docker });
}

/// Problems with one invocation against one command line's flag tables.
fn check_against(
    words: &[String],
    known: &Known,
    all_flags: &BTreeMap<String, BTreeSet<String>>,
    all_valued: &BTreeMap<String, BTreeSet<String>>,
    problems: &mut Vec<String>,
    at: &str,
) {
    let global = all_flags.get("").cloned().unwrap_or_default();
    let global_valued = all_valued.get("").cloned().unwrap_or_default();
    let mut i = 1;
    // Global options before the subcommand.
    while i < words.len() && words[i].starts_with('-') {
        let f = words[i].trim_start_matches('-');
        let f = f.split('=').next().unwrap_or(f);
        if !global.contains(f) {
            problems.push(format!("{at}: `stagebox` has no option --{f}"));
        }
        let takes_value = global_valued.contains(f) || !global.contains(f);
        i += if words[i].contains('=') || !takes_value {
            1
        } else {
            2
        };
    }
    let Some(first) = words.get(i) else { return };
    let mut sub = first.clone();
    if let Some(next) = words.get(i + 1) {
        let nested = format!("{first} {next}");
        if all_flags.contains_key(&nested) {
            sub = nested;
            i += 1;
        }
    }
    let Some(sub_flags) = all_flags.get(sub.as_str()) else {
        problems.push(format!(
            "{at}: `stagebox {sub}`: there is no such subcommand"
        ));
        return;
    };
    let mut flags = sub_flags.clone();
    let valued = all_valued.get(sub.as_str()).cloned().unwrap_or_default();
    let mut toggles_next = false;
    let mut value_next = false;
    let mut after_dashdash = false;
    let mut probe = false;
    // `run [OPTIONS] [IMAGE] CMD...` and `exec [OPTIONS] CONTAINER CMD...`: the words after
    // this many positionals are the command's, whatever they look like.
    let positionals_before_command = match sub.as_str() {
        "run" => 0,
        "exec" => 1,
        _ => usize::MAX,
    };
    let mut positionals = 0;
    for w in &words[i + 1..] {
        if toggles_next {
            toggles_next = false;
            check_toggle_value(w, known, problems, at);
            continue;
        }
        if value_next {
            value_next = false;
            continue;
        }
        // `run [OPTIONS] IMAGE [CMD...]`: after the image, the words are the command's.
        if !after_dashdash && !w.starts_with('-') {
            if positionals >= positionals_before_command {
                break;
            }
            positionals += 1;
        }
        if w == "--" {
            if !(sub == "run" && probe) {
                break;
            }
            // `run --probe -- ARGS`: ARGS go to `stagebox probe`.
            flags = all_flags.get("probe").cloned().unwrap_or_default();
            after_dashdash = true;
            continue;
        }
        let Some(flag) = w.strip_prefix('-') else {
            continue;
        };
        let (name, value) = match flag.strip_prefix('-') {
            Some(long) => match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            },
            None => (
                flag.chars().next().map(String::from).unwrap_or_default(),
                None,
            ),
        };
        if !flags.contains(&name) && !global.contains(&name) {
            let cmd = if after_dashdash {
                "probe".to_string()
            } else {
                sub.clone()
            };
            problems.push(format!("{at}: `stagebox {cmd}` has no option {w}"));
            continue;
        }
        if name == "probe" {
            probe = true;
        }
        if name == "only" || name == "without" || name == "trace-stages" {
            match value {
                Some(v) => check_toggle_value(&v, known, problems, at),
                None => toggles_next = true,
            }
        } else if value.is_none()
            && !after_dashdash
            && valued.contains(&name)
            && w.starts_with("--")
        {
            value_next = true;
        } else if value.is_none() && !after_dashdash && valued.contains(&name) && flag.len() == 1 {
            value_next = true;
        }
    }
}

fn check_toggle_value(v: &str, known: &Known, problems: &mut Vec<String>, at: &str) {
    let v = v.trim_matches(['\'', '"']);
    for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !known.stages.contains(s) {
            problems.push(format!(
                "{at}: there is no stage {s:?} in this version (`stagebox stages`)"
            ));
        }
    }
}

/// Problems in every `stagebox` invocation of a command line.
fn check_command_line(line: &str, known: &Known, problems: &mut Vec<String>, at: &str) {
    for words in simple_commands(line) {
        let start = words
            .iter()
            .position(|w| !w.contains('=') || w.starts_with('-'))
            .unwrap_or(words.len());
        if words.get(start).map(String::as_str) == Some("stagebox") {
            check_invocation(&words[start..], known, problems, at);
        }
    }
}

/// The inline code spans of a Markdown text.
fn code_spans(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Everything in a lesson that does not match the program: sections missing or out of order,
/// stages, flags and trace facts that do not exist. Empty when the lesson is right.
pub fn validate(lesson: &Lesson, known: &Known) -> Vec<String> {
    let mut problems = Vec::new();
    let name = &lesson.name;
    let want_title = format!("{:02} · ", lesson.number);
    if !lesson.title.starts_with(&want_title) {
        problems.push(format!(
            "{name}: the title must start with {want_title:?}, it is {:?}",
            lesson.title
        ));
    }
    if lesson.sections != SECTIONS {
        problems.push(format!(
            "{name}: the sections must be exactly {:?} in this order, they are {:?}",
            SECTIONS, lesson.sections
        ));
    }
    if lesson.steps.is_empty() {
        problems.push(format!("{name}: the lesson has no `stagebox` step"));
    }
    for s in &lesson.steps {
        check_command_line(
            &s.command,
            known,
            &mut problems,
            &format!("{name}.md:{}", s.line),
        );
    }
    for c in &lesson.checks {
        check_command_line(
            &c.command,
            known,
            &mut problems,
            &format!("{name}.md:{}", c.line),
        );
    }
    let mut section = "";
    for part in &lesson.parts {
        match part {
            Part::Code { body, .. } => check_command_line(
                body,
                known,
                &mut problems,
                &format!("{name}.md (shown block)"),
            ),
            Part::Text(text) => {
                for line in text.lines() {
                    if let Some(h) = line.strip_prefix("## ") {
                        section = h.trim();
                    }
                    check_prose_line(line, section, known, &mut problems, name);
                }
            }
            _ => {}
        }
    }
    problems
}

fn check_prose_line(
    line: &str,
    section: &str,
    known: &Known,
    problems: &mut Vec<String>,
    name: &str,
) {
    let at = format!("{name}.md ({section})");
    let spans = code_spans(line);
    let all_flags: BTreeSet<&String> = known
        .flags
        .values()
        .chain(known.oci_flags.values())
        .flatten()
        .collect();
    for span in &spans {
        let s = span.trim();
        if s.starts_with("stagebox ") || s == "stagebox" {
            check_command_line(s, known, problems, &at);
        } else if let Some(flag) = s.strip_prefix("--") {
            let f = flag.split([' ', '=']).next().unwrap_or(flag);
            if !f.is_empty() && !all_flags.contains(&f.to_string()) {
                problems.push(format!("{at}: `--{f}` is not an option of stagebox"));
            }
            if f == "only" || f == "without" {
                if let Some(v) = flag.split([' ', '=']).nth(1) {
                    check_toggle_value(v, known, problems, &at);
                }
            }
        } else if s.starts_with("ns/") && !known.facts.contains(s) {
            problems.push(format!("{at}: `{s}` is not a trace fact"));
        }
    }
    // "the `uts` stage", "stage `uts`"
    let parts: Vec<&str> = line.split('`').collect();
    for (i, span) in parts.iter().enumerate().skip(1).step_by(2) {
        let after = parts.get(i + 1).copied().unwrap_or("");
        let before = parts[i - 1];
        let names_stage = after.starts_with(" stage") || before.ends_with("stage ");
        if names_stage && !known.all_stages.contains(*span) {
            problems.push(format!("{at}: `{span}` is not a stage (`stagebox stages`)"));
        }
    }
    // In "What to look for in the trace", a bullet starts with the fact it is about.
    if section == "What to look for in the trace" {
        if let Some(rest) = line.trim_start().strip_prefix("- `") {
            let fact = rest.split('`').next().unwrap_or("");
            let is_other = fact.contains('(') || fact.starts_with(['▶', '▷', '·', '■', '$']);
            if !is_other && !known.facts.contains(fact) {
                problems.push(format!(
                    "{at}: `{fact}` is not a trace fact (the facts are {:?})",
                    known.facts
                ));
            }
        }
    }
}
