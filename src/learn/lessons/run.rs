//! Running a lesson: each step runs for real, with the trace, its output captured (the book
//! uses the same capture); `--check` runs a lesson's exercise checks against the answer.

use super::model::*;
use crate::error::{Error, Result};
use colored::Colorize;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a step's output looked like, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// As chosen by `keep=`, without ANSI colors.
    pub output: String,
    pub status: i32,
    /// What is wrong with how the step ended ([`Step::judge`]); None when it ended as the
    /// lesson says.
    pub problem: Option<String>,
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
        let status = exit_status(out.status);
        let problem = step.judge(status, &stdout, &stderr);
        let output = match step.keep {
            Keep::Stdout => stdout,
            Keep::Stderr => stderr,
            Keep::Both => merge_output(&stderr, &stdout),
        };
        Ok(Captured {
            output,
            status,
            problem,
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
        let (code, stdout, stderr) = tee(env.command(&step.command, &step.trace, color))
            .map_err(|e| Error::io(format!("running /bin/sh -c {:?}", step.command), e))?;
        if let Some(problem) = step.judge(code, &strip_ansi(&stdout), &strip_ansi(&stderr)) {
            println!(
                "{}",
                format!("✗ step {}: {problem}: stopping here", i + 1)
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

/// Runs a command with its stdout and stderr shown as they come and also kept; returns the
/// exit status and both outputs.
fn tee(mut cmd: Command) -> std::io::Result<(i32, String, String)> {
    use std::io::Read;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let copy = |mut from: Box<dyn Read + Send>, to_err: bool| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                let _ = if to_err {
                    std::io::stderr().write_all(&buf[..n])
                } else {
                    std::io::stdout()
                        .write_all(&buf[..n])
                        .and_then(|_| std::io::stdout().flush())
                };
            }
            String::from_utf8_lossy(&kept).into_owned()
        })
    };
    let out = child.stdout.take().map(|o| copy(Box::new(o), false));
    let err = child.stderr.take().map(|e| copy(Box::new(e), true));
    let status = child.wait()?;
    let out = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let err = err.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok((exit_status(status), out, err))
}

/// Why a check must not run the learner's answer, in one sentence; None when it may.
///
/// An answer of flags is pasted after `stagebox run` by the check's shell (`$flags`, split at
/// white space and expanded as a glob). So it must be flags only: no command, image or probe,
/// no glob characters. When the check's workload deletes or writes files, the answer must
/// also keep the rootfs and pivot stages on (the workload then writes into the container's
/// own overlay layer, a disposable copy) and bind no host directory in.
pub fn refuse_answer(check: &ExerciseCheck, answer: &str) -> Option<String> {
    if check.answer != AnswerKind::Flags {
        return None;
    }
    if answer.contains(['*', '?', '[', '$', '`', ';', '|', '&', '<', '>', '(', ')']) {
        return Some(
            "the answer holds shell characters (* ? [ $ ` ; | & < > ( )): write only the flags for `stagebox run`".into(),
        );
    }
    let mut argv = vec!["stagebox", "run"];
    argv.extend(answer.split_whitespace());
    if argv.contains(&"--") {
        return Some(
            "the answer holds `--` and a command: write only the flags for `stagebox run`; the check supplies the command".into(),
        );
    }
    let cli = match <crate::cli::Cli as clap::Parser>::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            return Some(format!("`stagebox run {answer}` is refused: {first}"));
        }
    };
    let crate::cli::Cmd::Run(args) = cli.cmd else {
        return Some("the answer is not flags for `stagebox run`".into());
    };
    if args.image.positional.is_some()
        || !args.image.args.is_empty()
        || args.image.image.is_some()
        || !args.command.is_empty()
    {
        return Some(
            "the answer names an image or a command: write only the flags for `stagebox run`; the check supplies the command".into(),
        );
    }
    if args.probe || args.image.entrypoint.is_some() {
        return Some(
            "--probe and --entrypoint change what runs: the check chooses the workload, so leave them out".into(),
        );
    }
    let volumes: Vec<String> = args.volume.clone();
    let confine = match args.security.parse() {
        Ok((t, _)) => t,
        Err(e) => return Some(format!("`stagebox run {answer}` is refused: {e}")),
    };
    let plan = match args.toggles.plan_confined(!volumes.is_empty(), confine) {
        Ok(p) => p,
        Err(e) => return Some(format!("`stagebox run {answer}` is refused: {e}")),
    };
    if check.writes {
        use crate::stages::StageId;
        // A writing workload with root's powers back could write to the host's disk or its
        // kernel settings: the confinement stays as Docker has it.
        let s = &args.security;
        if s.privileged
            || !s.device.is_empty()
            || !s.cap_add.is_empty()
            || !s.security_opt.is_empty()
            || [
                StageId::Devices,
                StageId::Paths,
                StageId::Caps,
                StageId::Seccomp,
            ]
            .iter()
            .any(|id| !plan.is_on(*id))
        {
            return Some(
                "this check's workload deletes and writes files, so it runs only with root's powers cut as Docker cuts them; leave out --privileged, --device, --cap-add and --security-opt, and keep the devices, paths, caps and seccomp stages on".into(),
            );
        }
        if !plan.is_on(StageId::Rootfs) || !plan.is_on(StageId::Pivot) {
            return Some(
                "this check's workload deletes and writes files, so it runs only on a disposable copy of the rootfs with the root switch on; keep the rootfs and pivot stages on".into(),
            );
        }
        for v in &volumes {
            match crate::state::volume::parse(v) {
                Ok(crate::state::volume::VolumeSpec::Bind { source, .. }) => {
                    return Some(format!(
                        "this check's workload deletes and writes files, and -v {v} would let it write into {} on the host; use a named volume (NAME:/path)",
                        source.display()
                    ))
                }
                Ok(_) => {}
                Err(e) => return Some(format!("`stagebox run {answer}` is refused: {e}")),
            }
        }
    }
    None
}

/// `stagebox lesson N --check`: runs the exercise's checks with $ANSWER set to the learner's
/// answer file. 0 when all pass; 1 with what is still wrong.
pub fn check(lesson: &Lesson, env: &StepEnv) -> Result<i32> {
    // A check leaves the host as it found it: containers its runs kept are removed after.
    let before = kept_containers(env);
    let r = run_checks(lesson, env);
    remove_new_containers(env, &before);
    r
}

fn run_checks(lesson: &Lesson, env: &StepEnv) -> Result<i32> {
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
    let answer_text = std::fs::read_to_string(&answer).unwrap_or_default();
    for c in &lesson.checks {
        if let Some(why) = refuse_answer(c, &answer_text) {
            println!("✗ the answer in {} is not run: {why}", answer.display());
            return Ok(1);
        }
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
