//! Reading lessons: the Markdown format (lessons/README.md) split into parts, loaded from
//! the binary or from `--lessons DIR`, found by number, listed.

use super::model::*;
use crate::error::{Error, Result};
use std::path::Path;

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
                if !["pretty", "verbose", "json", "off"].contains(&v) {
                    return Err(bad(
                        name,
                        line,
                        format!("trace={v}: use pretty, verbose, json or off"),
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
/// Splits a step's block into its command line and its `# expect` lines:
/// `# expect stdout: TEXT`, `# expect stderr: TEXT`, or `# expect: TEXT` (either output).
pub(super) fn split_expectations(
    name: &str,
    line: usize,
    body: &str,
) -> Result<(String, Vec<Expectation>)> {
    let mut command = Vec::new();
    let mut expect = Vec::new();
    for l in body.lines() {
        let Some(rest) = l.trim_start().strip_prefix("# expect") else {
            command.push(l);
            continue;
        };
        let (stream, text) = if let Some(t) = rest.strip_prefix(" stdout:") {
            (Stream::Stdout, t)
        } else if let Some(t) = rest.strip_prefix(" stderr:") {
            (Stream::Stderr, t)
        } else if let Some(t) = rest.strip_prefix(':') {
            (Stream::Either, t)
        } else {
            return Err(bad(
                name,
                line,
                "write an expectation as `# expect stdout: TEXT`, `# expect stderr: TEXT` or `# expect: TEXT`",
            ));
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(bad(name, line, "an `# expect` line names no text"));
        }
        expect.push(Expectation {
            stream,
            text: text.to_string(),
        });
    }
    Ok((one_command(name, line, &command.join("\n"))?, expect))
}

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
                let (command, expect) = split_expectations(name, i + 1, &body)?;
                lesson.steps.push(Step {
                    section: section.clone(),
                    lead,
                    command,
                    keep,
                    exit,
                    trace,
                    expect,
                    line: i + 1,
                });
                lesson.parts.push(Part::Step(lesson.steps.len() - 1));
            }
            Some("stagebox-check") => {
                let (mut answer, mut writes) = (AnswerKind::Flags, false);
                for w in &words[1..] {
                    match *w {
                        "answer=flags" => answer = AnswerKind::Flags,
                        "answer=file" => answer = AnswerKind::File,
                        "workload=reads" => writes = false,
                        "workload=writes" => writes = true,
                        other => {
                            return Err(bad(
                                name,
                                i + 1,
                                format!("unknown stagebox-check option {other:?}; use answer=flags|file and workload=reads|writes"),
                            ))
                        }
                    }
                }
                lesson.checks.push(ExerciseCheck {
                    command: body.trim().to_string(),
                    answer,
                    writes,
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
            for (name, text) in super::model::embedded::LESSONS {
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
