//! Lessons: `lessons/NN-slug.md`, executable Markdown (the format is in lessons/README.md).
//!
//! The loader splits a lesson into parts (prose, steps, checks, shown-only code), the runner
//! runs its steps one by one with the trace (`stagebox lesson N`), the checker runs its
//! exercise checks (`--check`), and [`validate`] checks that every stage, flag and trace fact
//! a lesson names exists in this program. The book ([`crate::learn::book`]) reuses the parts and
//! [`StepEnv::capture`] to insert the real output of every step.
//!
//! Lessons are built into the binary (see build.rs); `--lessons DIR` reads a directory instead.

use crate::error::{Error, Result};
use colored::Colorize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The teaching text of a stage: the top comment of src/stages/NAME.rs.
pub fn stage_doc(name: &str) -> Option<&'static str> {
    embedded::STAGE_DOCS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
}

/// The `##` sections every lesson has, in this order.
pub const SECTIONS: [&str; 7] = [
    "What you will learn",
    "The idea",
    "Try it",
    "What to look for in the trace",
    "With the stage off",
    "Exercise",
    "What real runtimes do",
];

/// Which output of a step the book shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Stdout,
    Stderr,
    Both,
}

/// A `stagebox` block: one command line the runner runs and the book captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The `##` section it is in.
    pub section: String,
    /// The paragraph just before it (what the step is for).
    pub lead: String,
    pub command: String,
    pub keep: Keep,
    /// The exit status it must end with.
    pub exit: i32,
    /// STAGEBOX_TRACE for the step: pretty, json or off.
    pub trace: String,
    /// Line of the opening fence, for messages.
    pub line: usize,
}

/// A `stagebox-check` block: exits 0 when the learner's answer is right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExerciseCheck {
    pub command: String,
    pub line: usize,
}

/// A lesson in document order: prose, steps, checks and shown-only code blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Markdown outside fenced blocks, kept as written (lines joined with '\n').
    Text(String),
    /// Index into [`Lesson::steps`].
    Step(usize),
    /// Index into [`Lesson::checks`].
    Check(usize),
    /// A fenced block that is only shown.
    Code { info: String, body: String },
}

#[derive(Debug, Clone)]
pub struct Lesson {
    /// The NN of the file name.
    pub number: u32,
    /// The file name without .md: `01-uts-hostname`.
    pub name: String,
    /// The `#` heading.
    pub title: String,
    /// The `##` headings, in order.
    pub sections: Vec<String>,
    pub parts: Vec<Part>,
    pub steps: Vec<Step>,
    pub checks: Vec<ExerciseCheck>,
}

fn bad(name: &str, line: usize, msg: impl std::fmt::Display) -> Error {
    Error::usage(format!("lesson {name}.md, line {line}: {msg}"))
}

fn parse_options(name: &str, line: usize, words: &[&str]) -> Result<(Keep, i32, String)> {
    let (mut keep, mut exit, mut trace) = (Keep::Both, 0, "pretty".to_string());
    for w in words {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| bad(name, line, format!("option {w:?} is not key=value")))?;
        match k {
            "keep" => {
                keep = match v {
                    "stdout" => Keep::Stdout,
                    "stderr" => Keep::Stderr,
                    "both" => Keep::Both,
                    _ => {
                        return Err(bad(
                            name,
                            line,
                            format!("keep={v}: use stdout, stderr or both"),
                        ))
                    }
                }
            }
            "exit" => {
                exit = v
                    .parse()
                    .map_err(|_| bad(name, line, format!("exit={v}: not a number")))?
            }
            "trace" => {
                if !["pretty", "json", "off"].contains(&v) {
                    return Err(bad(
                        name,
                        line,
                        format!("trace={v}: use pretty, json or off"),
                    ));
                }
                trace = v.to_string();
            }
            _ => {
                return Err(bad(
                    name,
                    line,
                    format!("unknown option {k:?}; the options are keep, exit and trace"),
                ))
            }
        }
    }
    Ok((keep, exit, trace))
}

/// One command line: a single line, or lines joined by a trailing backslash.
fn one_command(name: &str, line: usize, body: &str) -> Result<String> {
    let cmd = body.trim().to_string();
    if cmd.is_empty() {
        return Err(bad(name, line, "the block holds no command"));
    }
    let lines: Vec<&str> = cmd.lines().collect();
    if lines[..lines.len() - 1]
        .iter()
        .any(|l| !l.trim_end().ends_with('\\'))
    {
        return Err(bad(
            name,
            line,
            "a step holds one command line (join lines with `&&`, or end them with a backslash)",
        ));
    }
    Ok(cmd)
}

/// The NN of `NN-slug`.
fn number_of(name: &str) -> Option<u32> {
    let (nn, slug) = name.split_once('-')?;
    if nn.len() != 2 || slug.is_empty() {
        return None;
    }
    nn.parse().ok()
}

/// Parses a lesson. `name` is the file name without .md (`01-uts-hostname`).
pub fn parse(name: &str, text: &str) -> Result<Lesson> {
    let number = number_of(name).ok_or_else(|| {
        Error::usage(format!(
            "lesson file {name}.md: the name must be NN-slug.md"
        ))
    })?;
    let mut lesson = Lesson {
        number,
        name: name.to_string(),
        title: String::new(),
        sections: Vec::new(),
        parts: Vec::new(),
        steps: Vec::new(),
        checks: Vec::new(),
    };
    let mut text_buf: Vec<&str> = Vec::new();
    // The paragraph being read and the last one finished, for a step's lead.
    let mut para: Vec<&str> = Vec::new();
    let mut last_para = String::new();
    let mut section = String::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let t = line.trim_start();
        let fence = ["```", "~~~"].into_iter().find(|f| t.starts_with(f));
        let Some(f) = fence else {
            if let Some(h) = t.strip_prefix("# ") {
                if lesson.title.is_empty() {
                    lesson.title = h.trim().to_string();
                }
                para.clear();
                last_para.clear();
            } else if let Some(h) = t.strip_prefix("## ") {
                section = h.trim().to_string();
                lesson.sections.push(section.clone());
                para.clear();
                last_para.clear();
            } else if t.is_empty() {
                if !para.is_empty() {
                    last_para = para.join(" ");
                    para.clear();
                }
            } else if !t.starts_with('#') {
                para.push(t);
            }
            text_buf.push(line);
            continue;
        };
        let open_len = t.len() - t.trim_start_matches(f.chars().next().unwrap_or('`')).len();
        let info = t[open_len..].trim().to_string();
        let mut body = Vec::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            let lt = l.trim();
            let fc = f.chars().next().unwrap_or('`');
            if lt.len() >= open_len && lt.chars().all(|c| c == fc) {
                closed = true;
                break;
            }
            body.push(l);
        }
        if !closed {
            return Err(bad(name, i + 1, "this fenced block is never closed"));
        }
        if !text_buf.is_empty() {
            lesson.parts.push(Part::Text(text_buf.join("\n")));
            text_buf.clear();
        }
        let body = body.join("\n");
        let words: Vec<&str> = info.split_whitespace().collect();
        let lead = if para.is_empty() {
            last_para.clone()
        } else {
            para.join(" ")
        };
        para.clear();
        last_para.clear();
        match words.first().copied() {
            Some("stagebox") => {
                let (keep, exit, trace) = parse_options(name, i + 1, &words[1..])?;
                lesson.steps.push(Step {
                    section: section.clone(),
                    lead,
                    command: one_command(name, i + 1, &body)?,
                    keep,
                    exit,
                    trace,
                    line: i + 1,
                });
                lesson.parts.push(Part::Step(lesson.steps.len() - 1));
            }
            Some("stagebox-check") => {
                if words.len() > 1 {
                    return Err(bad(name, i + 1, "a stagebox-check block takes no options"));
                }
                lesson.checks.push(ExerciseCheck {
                    command: body.trim().to_string(),
                    line: i + 1,
                });
                lesson.parts.push(Part::Check(lesson.checks.len() - 1));
            }
            _ => lesson.parts.push(Part::Code { info, body }),
        }
    }
    if !text_buf.is_empty() {
        lesson.parts.push(Part::Text(text_buf.join("\n")));
    }
    if lesson.title.is_empty() {
        return Err(bad(name, 1, "the lesson has no `# NN · Title` heading"));
    }
    Ok(lesson)
}

/// True for `NN-slug.md`.
pub fn is_lesson_file(file_name: &str) -> bool {
    file_name.strip_suffix(".md").and_then(number_of).is_some()
}

/// The lessons, sorted by number: from `dir` when given, else the ones built in.
pub fn load(dir: Option<&Path>) -> Result<Vec<Lesson>> {
    let mut out = Vec::new();
    match dir {
        None => {
            for (name, text) in embedded::LESSONS {
                out.push(parse(name, text)?);
            }
        }
        Some(dir) => {
            let rd = std::fs::read_dir(dir)
                .map_err(|e| Error::io(format!("reading lessons from {}", dir.display()), e))?;
            for e in rd.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                if !is_lesson_file(&file) {
                    continue;
                }
                let text = std::fs::read_to_string(e.path())
                    .map_err(|er| Error::io(format!("reading {}", e.path().display()), er))?;
                out.push(parse(file.trim_end_matches(".md"), &text)?);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    for w in out.windows(2) {
        if w[0].number == w[1].number {
            return Err(Error::usage(format!(
                "two lessons have the number {:02}: {}.md and {}.md",
                w[0].number, w[0].name, w[1].name
            )));
        }
    }
    Ok(out)
}

/// Lesson N, by number (`1`, `01`) or by name (`01-uts-hostname`).
pub fn find<'a>(lessons: &'a [Lesson], n: &str) -> Result<&'a Lesson> {
    let key = n.trim_end_matches(".md");
    let num: Option<u32> = key.parse().ok();
    lessons
        .iter()
        .find(|l| l.name == key || Some(l.number) == num)
        .ok_or_else(|| {
            Error::usage(format!(
                "there is no lesson {n:?}; `stagebox lesson --list` lists the {} there are",
                lessons.len()
            ))
        })
}

/// `stagebox lesson --list`.
pub fn list_text(lessons: &[Lesson]) -> String {
    let mut out = String::new();
    for l in lessons {
        let check = if l.checks.is_empty() {
            ""
        } else {
            ", checked exercise"
        };
        out.push_str(&format!(
            "{:02}  {:<28} {} ({} steps{check})\n",
            l.number,
            l.name,
            l.title
                .split_once('·')
                .map(|(_, t)| t.trim())
                .unwrap_or(&l.title),
            l.steps.len()
        ));
    }
    out.push_str(
        "\nrun one with `stagebox lesson N`; `stagebox lesson N --check` checks its exercise\n",
    );
    out
}

/// What a step's output looked like, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// As chosen by `keep=`, without ANSI colors.
    pub output: String,
    pub status: i32,
}

/// Removes ANSI escape sequences (colors).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The trace (stderr) and the workload's output (stdout) as one text. They come from two
/// pipes, so their interleaving is lost; the workload's output goes where the terminal
/// shows it: just before the trace's final `■` line (the exit), or at the end.
pub fn merge_output(stderr: &str, stdout: &str) -> String {
    if stdout.is_empty() {
        return stderr.to_string();
    }
    let lines: Vec<&str> = stderr.lines().collect();
    match lines.iter().rposition(|l| l.starts_with("■ ")) {
        Some(i) => {
            let mut out = String::new();
            for l in &lines[..i] {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str(stdout);
            if !stdout.ends_with('\n') {
                out.push('\n');
            }
            for l in &lines[i..] {
                out.push_str(l);
                out.push('\n');
            }
            out
        }
        None => format!("{stderr}{stdout}"),
    }
}

fn exit_status(s: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code()
        .or_else(|| s.signal().map(|n| 128 + n))
        .unwrap_or(-1)
}

/// How steps run: `/bin/sh -c LINE` with this `stagebox` first on PATH and its state dir.
#[derive(Debug, Clone)]
pub struct StepEnv {
    /// The stagebox binary the steps call.
    pub exe: PathBuf,
    pub state: PathBuf,
    /// Where the learner's answers are (`NN.txt`): $STAGEBOX_ANSWERS, else ./answers.
    pub answers: PathBuf,
}

impl StepEnv {
    pub fn new(exe: PathBuf, state: PathBuf) -> Self {
        let answers = std::env::var_os("STAGEBOX_ANSWERS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("answers"));
        StepEnv {
            exe,
            state,
            answers,
        }
    }

    /// Steps call the binary that is running now.
    pub fn for_this_binary(state: &Path) -> Result<Self> {
        let exe = std::env::current_exe()
            .map_err(|e| Error::io("finding stagebox's own executable", e))?;
        Ok(StepEnv::new(exe, state.to_path_buf()))
    }

    /// The shell for one command line. `color`: leave colors to the terminal (else NO_COLOR).
    pub fn command(&self, line: &str, trace: &str, color: bool) -> Command {
        let dir = self.exe.parent().map(Path::to_path_buf).unwrap_or_default();
        let path = match std::env::var_os("PATH") {
            Some(p) => {
                let mut v = vec![dir];
                v.extend(std::env::split_paths(&p));
                std::env::join_paths(v).unwrap_or(p)
            }
            None => dir.into_os_string(),
        };
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(line)
            .env("PATH", path)
            .env("STAGEBOX_STATE", &self.state)
            .env("STAGEBOX_TRACE", trace)
            .stdin(Stdio::null());
        if !color {
            c.env("NO_COLOR", "1");
        }
        c
    }

    /// Runs a step with its output captured, for the book and the tests.
    pub fn capture(&self, step: &Step) -> Result<Captured> {
        let out = self
            .command(&step.command, &step.trace, false)
            .output()
            .map_err(|e| Error::io(format!("running /bin/sh -c {:?}", step.command), e))?;
        let stdout = strip_ansi(&String::from_utf8_lossy(&out.stdout));
        let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
        let output = match step.keep {
            Keep::Stdout => stdout,
            Keep::Stderr => stderr,
            Keep::Both => merge_output(&stderr, &stdout),
        };
        Ok(Captured {
            output,
            status: exit_status(out.status),
        })
    }

    /// The learner's answer file for a lesson.
    pub fn answer_file(&self, lesson: &Lesson) -> PathBuf {
        self.answers.join(format!("{:02}.txt", lesson.number))
    }
}

fn flush() {
    let _ = std::io::stdout().flush();
}

/// `stagebox lesson N`: runs the steps one by one, output straight to the terminal. Returns
/// the exit status: 0 when every step ended as the lesson expects, 1 at the first that did not.
/// Containers kept in the state dir now (their ids).
pub fn kept_containers(env: &StepEnv) -> std::collections::BTreeSet<String> {
    crate::state::container::list(&env.state)
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Removes the containers a lesson's steps left behind (kept ones, as `docker run` keeps
/// them): a lesson leaves the host as it found it. Running ones are left alone.
pub fn remove_new_containers(env: &StepEnv, before: &std::collections::BTreeSet<String>) {
    for c in crate::state::container::list(&env.state) {
        if !before.contains(&c.id) && !c.is_running() {
            let _ = crate::state::container::remove(&env.state, &c.id, false);
        }
    }
}

pub fn run(lesson: &Lesson, env: &StepEnv, pause: bool) -> Result<i32> {
    let before = kept_containers(env);
    let r = run_steps(lesson, env, pause);
    remove_new_containers(env, &before);
    r
}

fn run_steps(lesson: &Lesson, env: &StepEnv, pause: bool) -> Result<i32> {
    let interactive = pause && std::io::stdin().is_terminal();
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    colored::control::set_override(color);
    let n = lesson.steps.len();
    println!("{}", lesson.title.bold());
    for (i, step) in lesson.steps.iter().enumerate() {
        println!();
        println!(
            "{}",
            format!("── step {}/{n} · {} ──", i + 1, step.section)
                .cyan()
                .bold()
        );
        if !step.lead.is_empty() {
            println!("{}", step.lead);
        }
        println!("{} {}", "$".dimmed(), step.command.yellow());
        flush();
        let status = env
            .command(&step.command, &step.trace, color)
            .status()
            .map_err(|e| Error::io(format!("running /bin/sh -c {:?}", step.command), e))?;
        let code = exit_status(status);
        if code != step.exit {
            println!(
                "{}",
                format!(
                    "✗ step {} ended with exit status {code}, and the lesson expects {}: stopping here",
                    i + 1,
                    step.exit
                )
                .red()
                .bold()
            );
            return Ok(1);
        }
        if code != 0 {
            println!(
                "{}",
                format!("(exit status {code}, as the lesson expects)").dimmed()
            );
        }
        if interactive && i + 1 < n {
            print!(
                "{}",
                "press Enter for the next step (q, Enter to stop) ".dimmed()
            );
            flush();
            let mut answer = String::new();
            if std::io::stdin().lock().read_line(&mut answer).unwrap_or(0) == 0
                || answer.trim() == "q"
            {
                return Ok(0);
            }
        }
    }
    println!();
    println!(
        "{}",
        format!(
            "✓ lesson {:02}: all {n} steps ended as expected",
            lesson.number
        )
        .green()
        .bold()
    );
    if !lesson.checks.is_empty() {
        println!(
            "exercise: write your answer in {}, then `stagebox lesson {} --check`",
            env.answer_file(lesson).display(),
            lesson.number
        );
    }
    Ok(0)
}

/// `stagebox lesson N --check`: runs the exercise's checks with $ANSWER set to the learner's
/// answer file. 0 when all pass; 1 with what is still wrong.
pub fn check(lesson: &Lesson, env: &StepEnv) -> Result<i32> {
    if lesson.checks.is_empty() {
        println!(
            "lesson {:02} has no checked exercise: its answer is in words",
            lesson.number
        );
        return Ok(0);
    }
    let answer = env.answer_file(lesson);
    if !answer.exists() {
        println!(
            "no answer yet: write it in {} (the exercise of lesson {:02} says what goes in it), then run this again",
            answer.display(),
            lesson.number
        );
        return Ok(1);
    }
    for (i, c) in lesson.checks.iter().enumerate() {
        let out = env
            .command(&c.command, "off", false)
            .env("ANSWER", &answer)
            .output()
            .map_err(|e| Error::io(format!("running the check at line {}", c.line), e))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            print!("{text}");
            println!(
                "✗ check {} of lesson {:02}: not yet, see above for what is still wrong",
                i + 1,
                lesson.number
            );
            return Ok(1);
        }
    }
    println!(
        "✓ lesson {:02}: your answer passes every check",
        lesson.number
    );
    Ok(0)
}

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
}

impl Known {
    /// From this program: the stage registry, clap's command and the observer's fact names.
    pub fn from_program() -> Known {
        use clap::CommandFactory;
        let cmd = crate::cli::Cli::command();
        let mut flags = BTreeMap::new();
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
        let mut valued = BTreeMap::new();
        flags.insert(String::new(), names(&cmd));
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

/// Problems with one `stagebox ...` invocation (words after an optional `VAR=x` prefix).
fn check_invocation(words: &[String], known: &Known, problems: &mut Vec<String>, at: &str) {
    let global = known.flags.get("").cloned().unwrap_or_default();
    let mut i = 1;
    // Global options before the subcommand.
    while i < words.len() && words[i].starts_with('-') {
        let f = words[i].trim_start_matches('-');
        let f = f.split('=').next().unwrap_or(f);
        if !global.contains(f) {
            problems.push(format!("{at}: `stagebox` has no option --{f}"));
        }
        i += if words[i].contains('=') || f == "help" || f == "version" {
            1
        } else {
            2
        };
    }
    let Some(first) = words.get(i) else { return };
    let mut sub = first.clone();
    if let Some(next) = words.get(i + 1) {
        let nested = format!("{first} {next}");
        if known.flags.contains_key(&nested) {
            sub = nested;
            i += 1;
        }
    }
    let Some(sub_flags) = known.flags.get(sub.as_str()) else {
        problems.push(format!(
            "{at}: `stagebox {sub}`: there is no such subcommand"
        ));
        return;
    };
    let mut flags = sub_flags.clone();
    let valued = known.valued.get(sub.as_str()).cloned().unwrap_or_default();
    let mut toggles_next = false;
    let mut value_next = false;
    let mut after_dashdash = false;
    let mut probe = false;
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
        if sub == "run" && !after_dashdash && !w.starts_with('-') {
            break;
        }
        if w == "--" {
            if !(sub == "run" && probe) {
                break;
            }
            // `run --probe -- ARGS`: ARGS go to `stagebox probe`.
            flags = known.flags.get("probe").cloned().unwrap_or_default();
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
        if name == "only" || name == "without" {
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
    let all_flags: BTreeSet<&String> = known.flags.values().flatten().collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# 09 · Sample\n\n## Try it\n\nSee the name.\n\n```stagebox keep=stdout exit=3\nstagebox run -- sh -c 'exit 3'\n```\n\n```sh\nnot run\n```\n\n```stagebox-check\ntest -s \"$ANSWER\"\n```\n";

    #[test]
    fn parses_steps_options_checks_and_code() {
        let l = parse("09-sample", SAMPLE).expect("parses");
        assert_eq!(l.number, 9);
        assert_eq!(l.title, "09 · Sample");
        assert_eq!(l.sections, vec!["Try it"]);
        assert_eq!(l.steps.len(), 1);
        let s = &l.steps[0];
        assert_eq!(
            (s.keep, s.exit, s.trace.as_str()),
            (Keep::Stdout, 3, "pretty")
        );
        assert_eq!(s.lead, "See the name.");
        assert_eq!(s.section, "Try it");
        assert_eq!(l.checks.len(), 1);
        assert!(matches!(&l.parts[3], Part::Code { info, .. } if info == "sh"));
    }

    #[test]
    fn bad_options_and_unclosed_blocks_are_errors_with_the_line() {
        let e = parse("01-x", "# 01 · X\n```stagebox keep=all\ntrue\n```\n").unwrap_err();
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("keep=all"),
            "{e}"
        );
        let e = parse("01-x", "# 01 · X\n```stagebox\ntrue\n").unwrap_err();
        assert!(e.to_string().contains("never closed"), "{e}");
        let e = parse("01-x", "# 01 · X\n```stagebox\ntrue\nfalse\n```\n").unwrap_err();
        assert!(e.to_string().contains("one command line"), "{e}");
        assert!(parse("x-y", "# t").is_err());
    }

    #[test]
    fn finds_by_number_or_name() {
        let l = vec![parse("09-sample", SAMPLE).expect("parses")];
        assert_eq!(find(&l, "9").map(|l| l.number).ok(), Some(9));
        assert_eq!(find(&l, "09-sample").map(|l| l.number).ok(), Some(9));
        assert!(find(&l, "10").is_err());
    }

    #[test]
    fn merge_puts_stdout_before_the_exit_line() {
        let m = merge_output("▶ uts\n■ exited 0\n", "hello\n");
        assert_eq!(m, "▶ uts\nhello\n■ exited 0\n");
        assert_eq!(strip_ansi("\u{1b}[1;32mok\u{1b}[0m"), "ok");
    }

    #[test]
    fn simple_commands_split_outside_quotes() {
        let c = simple_commands("m=$(mktemp) && stagebox run --only uts -- sh -c 'a; b' | grep x");
        assert_eq!(c[1], vec!["mktemp"]);
        assert_eq!(
            c[2],
            vec!["stagebox", "run", "--only", "uts", "--", "sh", "-c", "a; b"]
        );
        assert_eq!(c[3], vec!["grep", "x"]);
    }

    #[test]
    fn validate_names_unknown_flags_stages_and_facts() {
        let text = "# 09 · Bad\n\n## What to look for in the trace\n\n- `ns/bogus`: no\n- `hostname`: yes\n\nThe `warp` stage.\n\n```stagebox\nstagebox run --frobnicate --without pdi -- true\n```\n";
        let l = parse("09-bad", text).expect("parses");
        let p = validate(&l, &Known::from_program()).join("\n");
        for needle in [
            "--frobnicate",
            "\"pdi\"",
            "`ns/bogus`",
            "`warp`",
            "sections must be",
        ] {
            assert!(p.contains(needle), "{needle} not in:\n{p}");
        }
        assert!(!p.contains("`hostname`"), "{p}");
    }
}
