//! The Containerfile (Dockerfile) parser: lines joined at a trailing `\`, comments
//! dropped, each instruction parsed into a [`Step`], and `$VAR` substitution. Errors name the
//! line they are on.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Component, Path};

/// One instruction, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    From(String),
    Run(Vec<String>),
    Copy {
        add: bool,
        chown: Option<String>,
        srcs: Vec<String>,
        dest: String,
    },
    Workdir(String),
    Env(Vec<(String, String)>),
    Arg(String, Option<String>),
    User(String),
    Label(Vec<(String, String)>),
    Expose(Vec<String>),
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Line {
    /// 1-based line number where the instruction starts.
    pub line: usize,
    /// The instruction as written (continuations joined).
    pub text: String,
    pub step: Step,
}

pub(super) fn perr(line: usize, msg: impl std::fmt::Display) -> Error {
    Error::usage(format!("Containerfile line {line}: {msg}"))
}

/// Splits words, honouring "double" and 'single' quotes and backslash escapes.
pub(super) fn words(s: &str, line: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(perr(line, "a quote is not closed"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `["a", "b"]` (exec form) or anything else (shell form: /bin/sh -c "...").
pub(super) fn command_form(rest: &str) -> Vec<String> {
    let t = rest.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return v;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), t.to_string()]
}

pub(super) fn key_values(rest: &str, line: usize, what: &str) -> Result<Vec<(String, String)>> {
    let ws = words(rest, line)?;
    if ws.is_empty() {
        return Err(perr(line, format!("{what} needs KEY=VALUE")));
    }
    if !ws[0].contains('=') {
        // The old form: ENV KEY VALUE WITH SPACES
        let (k, v) = rest
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| perr(line, format!("{what} {} has no value", ws[0])))?;
        return Ok(vec![(k.to_string(), words(v, line)?.join(" "))]);
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(perr(line, format!("{what} {w:?} is not KEY=VALUE"))),
        })
        .collect()
}

/// Parses a Containerfile; every error names its line.
pub fn parse(text: &str) -> Result<Vec<Line>> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = raw.trim();
        if pending.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if pending.is_some() && trimmed.starts_with('#') {
            continue; // comments inside a continued instruction are dropped, as Docker does
        }
        let (start, mut acc) = pending.take().unwrap_or((n, String::new()));
        if let Some(body) = trimmed.strip_suffix('\\') {
            acc.push_str(body);
            acc.push(' ');
            pending = Some((start, acc));
            continue;
        }
        acc.push_str(trimmed);
        out.push(parse_line(start, acc.trim())?);
    }
    if let Some((start, acc)) = pending {
        out.push(parse_line(start, acc.trim())?);
    }
    if !matches!(
        out.iter().find(|l| !matches!(l.step, Step::Arg(..))),
        Some(Line {
            step: Step::From(_),
            ..
        })
    ) {
        let line = out.first().map(|l| l.line).unwrap_or(1);
        return Err(perr(
            line,
            "the first instruction must be FROM (only ARG may come before it)",
        ));
    }
    Ok(out)
}

pub(super) fn parse_line(n: usize, text: &str) -> Result<Line> {
    let (kw, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let rest = rest.trim();
    let kw = kw.to_ascii_uppercase();
    if rest.is_empty() {
        return Err(perr(n, format!("{kw} needs arguments")));
    }
    let step = match kw.as_str() {
        "FROM" => {
            let ws = words(rest, n)?;
            if ws.len() != 1 {
                return Err(perr(n, "FROM takes one image (FROM IMAGE[:TAG]; multi-stage builds are not supported)"));
            }
            Step::From(ws[0].clone())
        }
        "RUN" => Step::Run(command_form(rest)),
        "CMD" => Step::Cmd(command_form(rest)),
        "ENTRYPOINT" => Step::Entrypoint(command_form(rest)),
        "COPY" | "ADD" => {
            let mut ws = if rest.starts_with('[') {
                serde_json::from_str::<Vec<String>>(rest).map_err(|e| perr(n, format!("{kw} [..] is not a JSON array of strings: {e}")))?
            } else {
                words(rest, n)?
            };
            let mut chown = None;
            while ws.first().is_some_and(|w| w.starts_with("--")) {
                let flag = ws.remove(0);
                match flag.split_once('=') {
                    Some(("--chown", v)) => chown = Some(v.to_string()),
                    _ => return Err(perr(n, format!("{kw} option {flag} is not supported (only --chown)"))),
                }
            }
            if ws.len() < 2 {
                return Err(perr(n, format!("{kw} needs a source and a destination")));
            }
            let dest = ws.pop().unwrap_or_default();
            Step::Copy { add: kw == "ADD", chown, srcs: ws, dest }
        }
        "WORKDIR" => Step::Workdir(rest.to_string()),
        "USER" => Step::User(rest.to_string()),
        "ENV" => Step::Env(key_values(rest, n, "ENV")?),
        "LABEL" => Step::Label(key_values(rest, n, "LABEL")?),
        "ARG" => {
            let ws = words(rest, n)?;
            match ws.as_slice() {
                [one] => match one.split_once('=') {
                    Some((k, v)) => Step::Arg(k.to_string(), Some(v.to_string())),
                    None => Step::Arg(one.clone(), None),
                },
                _ => return Err(perr(n, "ARG takes one NAME[=DEFAULT]")),
            }
        }
        "EXPOSE" => {
            let ports = words(rest, n)?;
            for p in &ports {
                let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                if num.parse::<u16>().is_err() && !num.starts_with('$') || !["tcp", "udp", "sctp"].contains(&proto) {
                    return Err(perr(n, format!("EXPOSE {p}: write PORT or PORT/tcp|udp")));
                }
            }
            Step::Expose(ports)
        }
        other => {
            return Err(perr(
                n,
                format!("unknown instruction {other}; stagebox knows FROM RUN COPY ADD WORKDIR ENV ARG USER LABEL EXPOSE CMD ENTRYPOINT"),
            ))
        }
    };
    Ok(Line {
        line: n,
        text: format!("{kw} {rest}"),
        step,
    })
}

/// Replaces $VAR, ${VAR}, ${VAR:-default} and ${VAR:+alt}; `\$` is a literal `$`.
pub fn substitute(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '\\' && b.get(i + 1) == Some(&'$') {
            out.push('$');
            i += 2;
            continue;
        }
        if b[i] != '$' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        if b.get(i + 1) == Some(&'{') {
            if let Some(end) = b[i + 2..].iter().position(|c| *c == '}') {
                let inner: String = b[i + 2..i + 2 + end].iter().collect();
                let v = match inner.split_once(":-") {
                    Some((k, d)) => vars
                        .get(k)
                        .filter(|v| !v.is_empty())
                        .cloned()
                        .unwrap_or_else(|| d.to_string()),
                    None => match inner.split_once(":+") {
                        Some((k, a)) => {
                            if vars.get(k).is_some_and(|v| !v.is_empty()) {
                                a.to_string()
                            } else {
                                String::new()
                            }
                        }
                        None => vars.get(&inner).cloned().unwrap_or_default(),
                    },
                };
                out.push_str(&v);
                i += 3 + end;
                continue;
            }
        }
        let name: String = b[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .collect();
        if name.is_empty() {
            out.push('$');
            i += 1;
        } else {
            out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
            i += 1 + name.chars().count();
        }
    }
    out
}

/// A path made absolute and without `.` or `..` (never above `/`).
pub(super) fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}
