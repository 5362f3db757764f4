//! `stagebox build -f Containerfile -t NAME[:TAG] CONTEXT`: an image, step by step.
//!
//! - FROM starts from an image (or `scratch`: nothing).
//! - RUN runs its command in a container on the layers so far, through the normal runtime;
//!   the container's writable layer becomes the next layer (a commit).
//! - COPY and ADD make a layer from files of the context directory, never from outside it.
//! - WORKDIR, ENV, ARG, USER, LABEL, EXPOSE, CMD and ENTRYPOINT only change the config.
//!
//! A step that makes a layer is cached under a key of its parent (the layers and the config
//! so far), the instruction and, for COPY/ADD, a hash of the copied files: the same step on
//! the same parent reuses its layer ("using cache").

use super::layer::{self, clean_entry_path, sha256};
use super::run::{Built, ImageSource, RunImage};
use super::store::{LayerDesc, Store};
use super::Reference;
use crate::error::{Error, Result};
use oci_spec::image::ImageConfiguration;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

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

fn perr(line: usize, msg: impl std::fmt::Display) -> Error {
    Error::usage(format!("Containerfile line {line}: {msg}"))
}

/// Splits words, honouring "double" and 'single' quotes and backslash escapes.
fn words(s: &str, line: usize) -> Result<Vec<String>> {
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
fn command_form(rest: &str) -> Vec<String> {
    let t = rest.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return v;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), t.to_string()]
}

fn key_values(rest: &str, line: usize, what: &str) -> Result<Vec<(String, String)>> {
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

fn parse_line(n: usize, text: &str) -> Result<Line> {
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

/// Changes the config for one config-only instruction; false if it is not one.
fn apply_config(
    cfg: &mut ImageConfiguration,
    step: &Step,
    vars: &BTreeMap<String, String>,
    cmd_set: &mut bool,
) -> bool {
    let mut c = cfg.config().clone().unwrap_or_default();
    match step {
        Step::Workdir(w) => {
            let w = substitute(w, vars);
            let base = c.working_dir().clone().unwrap_or_else(|| "/".into());
            let joined = if w.starts_with('/') {
                PathBuf::from(&w)
            } else {
                Path::new(&base).join(&w)
            };
            c.set_working_dir(Some(normalize(&joined)));
        }
        Step::Env(kvs) => {
            let mut env = c.env().clone().unwrap_or_default();
            for (k, v) in kvs {
                let v = substitute(v, &env_vars(&env, vars));
                env.retain(|e| e.split('=').next() != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            c.set_env(Some(env));
        }
        Step::User(u) => {
            c.set_user(Some(substitute(u, vars)));
        }
        Step::Label(kvs) => {
            let mut labels = c.labels().clone().unwrap_or_default();
            for (k, v) in kvs {
                labels.insert(substitute(k, vars), substitute(v, vars));
            }
            c.set_labels(Some(labels));
        }
        Step::Expose(ports) => {
            let mut e = c.exposed_ports().clone().unwrap_or_default();
            for p in ports {
                let p = substitute(p, vars);
                let p = if p.contains('/') {
                    p
                } else {
                    format!("{p}/tcp")
                };
                if !e.contains(&p) {
                    e.push(p);
                }
            }
            c.set_exposed_ports(Some(e));
        }
        Step::Cmd(v) => {
            c.set_cmd(Some(v.clone()));
            *cmd_set = true;
        }
        Step::Entrypoint(v) => {
            c.set_entrypoint(Some(v.clone()));
            // As Docker: a new ENTRYPOINT drops the CMD inherited from the base image.
            if !*cmd_set {
                c.set_cmd(None);
            }
        }
        _ => return false,
    }
    cfg.set_config(Some(c));
    true
}

/// `commit -c INSTRUCTION`: one config-only instruction applied to a config.
pub fn apply_change(cfg: &mut ImageConfiguration, change: &str) -> Result<()> {
    let line = parse_line(1, change.trim())
        .map_err(|e| Error::usage(format!("--change {change:?}: {e}")))?;
    let env = cfg
        .config()
        .as_ref()
        .and_then(|c| c.env().clone())
        .unwrap_or_default();
    if !apply_config(
        cfg,
        &line.step,
        &env_vars(&env, &BTreeMap::new()),
        &mut true,
    ) {
        return Err(Error::usage(format!(
            "--change {change:?}: only CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL and EXPOSE can change a commit's config"
        )));
    }
    Ok(())
}

fn env_vars(env: &[String], args: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut m = args.clone();
    for e in env {
        if let Some((k, v)) = e.split_once('=') {
            m.insert(k.to_string(), v.to_string());
        }
    }
    m
}

/// A path made absolute and without `.` or `..` (never above `/`).
fn normalize(p: &Path) -> String {
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

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub file: PathBuf,
    pub tag: String,
    pub context: PathBuf,
    pub build_args: Vec<String>,
    pub no_cache: bool,
}

/// The in-progress image.
struct State {
    config: ImageConfiguration,
    layers: Vec<LayerDesc>,
    label: String,
}

fn cache_key(st: &State, what: &str, args: &BTreeMap<String, String>) -> String {
    let c = st.config.config().clone().unwrap_or_default();
    let text = serde_json::json!({
        "parent": st.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
        "env": c.env(),
        "workdir": c.working_dir(),
        "user": c.user(),
        "args": args,
        "step": what,
    })
    .to_string();
    sha256(text.as_bytes())
        .trim_start_matches("sha256:")
        .to_string()
}

fn say(s: impl std::fmt::Display) {
    eprintln!("{s}");
}

/// Builds and names the image; returns its ID.
pub fn build(state: &Path, opts: &BuildOptions) -> Result<String> {
    let reference = Reference::parse(&opts.tag)?;
    let text = std::fs::read_to_string(&opts.file)
        .map_err(|e| Error::io(format!("read {}", opts.file.display()), e))?;
    let lines = parse(&text)?;
    let context = std::fs::canonicalize(&opts.context).map_err(|_| {
        Error::usage(format!(
            "the build context {} does not exist; give a directory",
            opts.context.display()
        ))
    })?;
    if !context.is_dir() {
        return Err(Error::usage(format!(
            "the build context {} is not a directory",
            opts.context.display()
        )));
    }
    let mut given: BTreeMap<String, String> = BTreeMap::new();
    for a in &opts.build_args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| Error::usage(format!("--build-arg {a:?} is not NAME=VALUE")))?;
        given.insert(k.to_string(), v.to_string());
    }
    let store = super::open_with_default(state)?;
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut st: Option<State> = None;
    let mut cmd_set = false;
    let total = lines.len();
    for (i, l) in lines.iter().enumerate() {
        say(format_args!("STEP {}/{total}: {}", i + 1, l.text));
        if let Step::Arg(k, default) = &l.step {
            let v = given
                .get(k)
                .cloned()
                .or_else(|| default.clone())
                .unwrap_or_default();
            args.insert(k.clone(), v);
            if let Some(s) = st.as_mut() {
                super::push_history(&mut s.config, &l.text, None, true);
            }
            continue;
        }
        if let Step::From(img) = &l.step {
            let name = substitute(img, &args);
            st = Some(if name == "scratch" {
                State {
                    config: super::store::new_config(),
                    layers: Vec::new(),
                    label: "scratch".into(),
                }
            } else {
                let base = store
                    .find(&name)
                    .map_err(|e| Error::usage(format!("Containerfile line {}: {e}", l.line)))?;
                let layers = base.layers()?;
                say(format_args!(
                    "--> {} ({})",
                    base.reference.as_deref().unwrap_or(&name),
                    base.short_id()
                ));
                State {
                    config: base.config,
                    layers,
                    label: name,
                }
            });
            cmd_set = false;
            continue;
        }
        let Some(s) = st.as_mut() else {
            return Err(perr(l.line, "an instruction before FROM"));
        };
        let env = s
            .config
            .config()
            .as_ref()
            .and_then(|c| c.env().clone())
            .unwrap_or_default();
        let vars = env_vars(&env, &args);
        if apply_config(&mut s.config, &l.step, &vars, &mut cmd_set) {
            super::push_history(&mut s.config, &l.text, None, true);
            say("--> config only, no layer");
            continue;
        }
        let (key, made): (String, Box<dyn FnOnce(&Store, &State) -> Result<LayerDesc>>) = match &l
            .step
        {
            Step::Run(argv) => {
                let key = cache_key(s, &format!("RUN {}", serde_json::json!(argv)), &args);
                let (argv, args2, line) = (argv.clone(), args.clone(), l.line);
                let st2 = state.to_path_buf();
                (
                    key,
                    Box::new(move |store: &Store, s: &State| {
                        run_step(&st2, store, s, &argv, &args2, line)
                    }),
                )
            }
            Step::Copy {
                add,
                chown,
                srcs,
                dest,
            } => {
                let srcs: Vec<String> = srcs.iter().map(|x| substitute(x, &vars)).collect();
                let dest = substitute(dest, &vars);
                let files = collect_sources(&context, &srcs, *add, l.line)?;
                let mut h = <sha2::Sha256 as sha2::Digest>::new();
                for f in &files {
                    sha2::Digest::update(&mut h, f.fingerprint()?.as_bytes());
                }
                let content = layer::hex(&sha2::Digest::finalize(h));
                let key = cache_key(s, &format!("{} {chown:?} {dest} {content}", l.text), &args);
                let (chown, line) = (chown.clone(), l.line);
                (
                    key,
                    Box::new(move |store: &Store, s: &State| {
                        copy_step(store, s, &files, &dest, chown.as_deref(), line)
                    }),
                )
            }
            _ => return Err(perr(l.line, "this instruction is not supported here")),
        };
        let cached = if opts.no_cache {
            None
        } else {
            store.cache_get(&key)
        };
        let layer = match cached {
            Some(layer) => {
                say(format_args!("--> using cache {}", layer.digest));
                layer
            }
            None => {
                let layer = made(&store, s)?;
                store.cache_put(&key, &layer)?;
                layer
            }
        };
        say(format_args!(
            "--> layer {} ({})",
            layer.digest,
            super::human_size(layer.size)
        ));
        super::add_layer_to_config(&mut s.config, &layer, &l.text, None);
        s.layers.push(layer);
    }
    let s = st.ok_or_else(|| perr(1, "no FROM"))?;
    let m = store.write_image(&s.config, &s.layers)?;
    store.tag(&m, &reference)?;
    let img = store.find(&reference.to_string())?;
    say(format_args!("--> {} tagged {}", img.short_id(), reference));
    Ok(img.config_digest)
}

/// RUN: a container on the layers so far, through the normal runtime (trace off); its
/// writable layer becomes the step's layer, then the container is removed.
fn run_step(
    state: &Path,
    store: &Store,
    s: &State,
    argv: &[String],
    args: &BTreeMap<String, String>,
    line: usize,
) -> Result<LayerDesc> {
    let name = format!("build-{}", crate::config::new_id());
    let plan = crate::plan::Plan::resolve(
        &crate::plan::Toggles {
            only: None,
            without: Vec::new(),
            volumes_given: false,
        },
        crate::plan::RootSwitch::Pivot,
    )?;
    let env: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let cfg = crate::config::RunConfig {
        command: argv.to_vec(),
        rootfs: None,
        default_source: crate::rootfs::default::Source::Auto,
        hostname: None,
        plan,
        probe: None,
        state_dir: state.to_path_buf(),
        env,
        workdir: None,
        trace: crate::trace::TraceMode::Off,
        name: Some(name.clone()),
        remove: false,
        read_only: false,
        volumes: Vec::new(),
        limits: Default::default(),
        image: RunImage {
            source: Some(ImageSource::Built(Box::new(Built {
                label: format!("(build of {})", s.label),
                config: s.config.clone(),
                layers: s.layers.clone(),
            }))),
            entrypoint: Some(String::new()),
            user: None,
        },
    };
    // The runtime blocks the signals it forwards and leaves them blocked: put the mask back
    // so the next step's workload starts with the mask we had.
    let mut mask = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        None,
        Some(&mut mask),
    );
    let result = crate::runtime::run(&cfg);
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&mask), None);
    let layer = match result {
        Ok(0) => crate::container::find(state, &name)
            .and_then(|c| store.pack_layer(&c.upper(state), layer::PackMode::Upper)),
        Ok(code) => Err(Error::usage(format!(
            "Containerfile line {line}: RUN {} exited with status {code}",
            argv.join(" ")
        ))),
        Err(e) => Err(Error::usage(format!("Containerfile line {line}: {e}"))),
    };
    let _ = crate::container::remove(state, &name, true);
    layer
}

/// A file (or directory, or archive for ADD) from the context, checked to be inside it.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path in the context as written.
    pub given: String,
    /// The host path (symlinks resolved, inside the context).
    pub path: PathBuf,
    /// ADD of a local tar archive: unpack it at the destination.
    pub archive: bool,
}

impl Source {
    /// What the cache key sees of it: names, modes, owners, contents (not times).
    fn fingerprint(&self) -> Result<String> {
        let mut out = format!("{}|{}|", self.given, self.archive);
        let mut stack = vec![self.path.clone()];
        while let Some(p) = stack.pop() {
            let md = std::fs::symlink_metadata(&p)
                .map_err(|e| Error::io(format!("stat {}", p.display()), e))?;
            let rel = p
                .strip_prefix(&self.path)
                .unwrap_or(&p)
                .display()
                .to_string();
            out.push_str(&format!("{rel}:{:o}:", md.mode()));
            if md.is_dir() {
                let mut names: Vec<PathBuf> = std::fs::read_dir(&p)
                    .map_err(|e| Error::io(format!("read {}", p.display()), e))?
                    .flatten()
                    .map(|e| e.path())
                    .collect();
                names.sort();
                names.reverse();
                stack.extend(names);
            } else if md.file_type().is_symlink() {
                out.push_str(
                    &std::fs::read_link(&p)
                        .map(|t| t.display().to_string())
                        .unwrap_or_default(),
                );
            } else if md.is_file() {
                let bytes =
                    std::fs::read(&p).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
                out.push_str(&sha256(&bytes));
            }
            out.push('\n');
        }
        Ok(out)
    }
}

fn is_archive(p: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    head[..n].starts_with(&[0x1f, 0x8b]) || (n >= 262 && &head[257..262] == b"ustar")
}

/// Checks the sources of a COPY/ADD: inside the context, symlinks included.
pub fn collect_sources(
    context: &Path,
    srcs: &[String],
    add: bool,
    line: usize,
) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for s in srcs {
        if add && (s.contains("://") || s.starts_with("git@")) {
            return Err(perr(
                line,
                format!("ADD {s}: URLs are not supported (stagebox builds without network)"),
            ));
        }
        let mut rel = PathBuf::new();
        for c in Path::new(s).components() {
            match c {
                Component::Normal(x) => rel.push(x),
                Component::ParentDir => {
                    if !rel.pop() {
                        return Err(perr(
                            line,
                            format!("COPY {s}: the source is outside the build context"),
                        ));
                    }
                }
                _ => {}
            }
        }
        let joined = context.join(&rel);
        let path = std::fs::canonicalize(&joined).map_err(|_| {
            perr(
                line,
                format!(
                    "COPY {s}: no such file in the build context {}",
                    context.display()
                ),
            )
        })?;
        if !path.starts_with(context) {
            return Err(perr(
                line,
                format!(
                    "COPY {s}: it is a symlink to {}, outside the build context",
                    path.display()
                ),
            ));
        }
        let archive = add && path.is_file() && is_archive(&path);
        out.push(Source {
            given: s.clone(),
            path,
            archive,
        });
    }
    Ok(out)
}

/// The metadata a COPY writes for a directory on the way to its destination: the image's own
/// when it has the directory (so /tmp keeps its sticky bit), else root's 0755.
fn parent_header(layers: &[PathBuf], inside: &Path) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    match crate::rootfs::resolve_in_layers(layers, inside)
        .ok()
        .and_then(|p| std::fs::symlink_metadata(p).ok())
        .filter(|m| m.is_dir())
    {
        Some(md) => {
            h.set_mode(md.mode() & 0o7777);
            h.set_uid(md.uid() as u64);
            h.set_gid(md.gid() as u64);
            h.set_mtime(md.mtime().max(0) as u64);
        }
        None => {
            h.set_mode(0o755);
            h.set_mtime(crate::container::now());
        }
    }
    h
}

/// COPY/ADD: one layer holding the destination's directories and the copied files.
fn copy_step(
    store: &Store,
    s: &State,
    files: &[Source],
    dest: &str,
    chown: Option<&str>,
    line: usize,
) -> Result<LayerDesc> {
    let mut lower = Vec::new();
    for l in s.layers.iter().rev() {
        lower.push(store.layer_dir(l)?);
    }
    let ids = match chown {
        Some(u) => Some(super::user::resolve(&lower, u)?),
        None => None,
    };
    let workdir = s
        .config
        .config()
        .as_ref()
        .and_then(|c| c.working_dir().clone())
        .unwrap_or_else(|| "/".into());
    let as_dir = dest.ends_with('/')
        || files.len() > 1
        || files.iter().any(|f| f.path.is_dir() || f.archive);
    let dest_abs = if dest.starts_with('/') {
        PathBuf::from(dest)
    } else {
        Path::new(&workdir).join(dest)
    };
    // Resolve symlinks of the image on the way (a COPY to /bin/ lands in /usr/bin when /bin
    // is a link), then write the result as plain directories.
    let target_dir_inside = if as_dir {
        dest_abs.clone()
    } else {
        dest_abs
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| "/".into())
    };
    let resolved: PathBuf = if lower.is_empty() {
        PathBuf::from(normalize(&target_dir_inside))
    } else {
        let comps =
            crate::rootfs::resolve_inside(&lower, &target_dir_inside).map_err(|e| perr(line, e))?;
        let mut p = PathBuf::from("/");
        p.extend(comps);
        p
    };
    let rel_dir =
        clean_entry_path(resolved.strip_prefix("/").unwrap_or(&resolved))?.unwrap_or_default();
    let (digest, size) = store.put_blob_with(|w| {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        let mut so_far = PathBuf::new();
        for c in rel_dir.components() {
            so_far.push(c);
            let mut h = parent_header(&lower, &Path::new("/").join(&so_far));
            b.append_data(&mut h, &so_far, std::io::empty())
                .map_err(tar_err)?;
        }
        for f in files {
            if f.archive {
                add_archive(&mut b, &f.path, &rel_dir)?;
            } else if f.path.is_dir() {
                append_tree(&mut b, &f.path, &rel_dir, ids.as_ref())?;
            } else {
                let name = if as_dir {
                    rel_dir.join(f.path.file_name().unwrap_or_default())
                } else {
                    rel_dir.join(dest_abs.file_name().unwrap_or_default())
                };
                append_one(&mut b, &f.path, &name, ids.as_ref())?;
            }
        }
        b.finish().map_err(tar_err)
    })?;
    Ok(LayerDesc {
        diff_id: digest.clone(),
        digest,
        size,
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
    })
}

fn tar_err(e: std::io::Error) -> Error {
    Error::io("write layer tar", e)
}

fn append_one<W: Write>(
    b: &mut tar::Builder<W>,
    src: &Path,
    name: &Path,
    ids: Option<&super::user::Ids>,
) -> Result<()> {
    let md = std::fs::symlink_metadata(src)
        .map_err(|e| Error::io(format!("stat {}", src.display()), e))?;
    let mut h = tar::Header::new_gnu();
    h.set_mode(md.mode() & 0o7777);
    // COPY makes files owned by root unless --chown says otherwise, as Docker does.
    h.set_uid(ids.map(|i| i.uid).unwrap_or(0) as u64);
    h.set_gid(ids.map(|i| i.gid).unwrap_or(0) as u64);
    h.set_mtime(md.mtime().max(0) as u64);
    if md.file_type().is_symlink() {
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        let t = std::fs::read_link(src)
            .map_err(|e| Error::io(format!("readlink {}", src.display()), e))?;
        b.append_link(&mut h, name, t).map_err(tar_err)
    } else if md.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, name, std::io::empty())
            .map_err(tar_err)
    } else if md.is_file() {
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(md.len());
        let f = std::fs::File::open(src)
            .map_err(|e| Error::io(format!("open {}", src.display()), e))?;
        b.append_data(&mut h, name, f.take(md.len()))
            .map_err(tar_err)
    } else {
        Err(Error::usage(format!(
            "COPY {}: only files, directories and symlinks can be copied",
            src.display()
        )))
    }
}

/// A directory's contents (not the directory itself, as Docker copies them) under `dest`.
fn append_tree<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Path,
    dest: &Path,
    ids: Option<&super::user::Ids>,
) -> Result<()> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("read {}", dir.display()), e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for p in names {
        let name = dest.join(p.file_name().unwrap_or_default());
        append_one(b, &p, &name, ids)?;
        if std::fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            append_tree(b, &p, &name, ids)?;
        }
    }
    Ok(())
}

/// ADD of a local archive: its entries, checked, under `dest`.
fn add_archive<W: Write>(b: &mut tar::Builder<W>, archive: &Path, dest: &Path) -> Result<()> {
    let f = std::fs::File::open(archive)
        .map_err(|e| Error::io(format!("open {}", archive.display()), e))?;
    let what = archive.display().to_string();
    let mut a = tar::Archive::new(layer::decompressed(f, &what)?);
    for e in a
        .entries()
        .map_err(|e| Error::io(format!("read {what}"), e))?
    {
        let mut e = e.map_err(|e| Error::io(format!("read {what}"), e))?;
        let raw = e
            .path()
            .map_err(|e| Error::io(format!("read {what}"), e))?
            .into_owned();
        let Some(rel) = clean_entry_path(&raw)? else {
            continue;
        };
        let mut h = e.header().clone();
        let name = dest.join(rel);
        match h.entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let t = e
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let t = if h.entry_type() == tar::EntryType::Link {
                    dest.join(clean_entry_path(&t)?.unwrap_or_default())
                } else {
                    t
                };
                b.append_link(&mut h, &name, t).map_err(tar_err)?;
            }
            _ => b.append_data(&mut h, &name, &mut e).map_err(tar_err)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_classic_containerfile() {
        let text = "# the classic\nFROM default\nWORKDIR /app\nCOPY server /app/\nEXPOSE 80\nRUN echo a \\\n  && echo b\nCMD [\"/app/server\"]\nENTRYPOINT echo hi\n";
        let l = parse(text).unwrap();
        assert_eq!(l.len(), 7);
        assert_eq!(l[0].step, Step::From("default".into()));
        assert_eq!(l[4].line, 6);
        assert_eq!(
            l[4].step,
            Step::Run(vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo a  && echo b".into()
            ])
        );
        assert_eq!(l[5].step, Step::Cmd(vec!["/app/server".into()]));
        assert_eq!(
            l[6].step,
            Step::Entrypoint(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
    }

    #[test]
    fn parse_errors_name_the_line() {
        let e = parse("FROM x\n\nFROBNICATE y\n").unwrap_err().to_string();
        assert!(
            e.starts_with("Containerfile line 3: unknown instruction FROBNICATE"),
            "{e}"
        );
        let e = parse("RUN true\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("FROM"), "{e}");
        assert!(parse("FROM x\nCOPY onlyone\n")
            .unwrap_err()
            .to_string()
            .contains("line 2"));
        assert!(parse("FROM x\nENV A=\"open\n")
            .unwrap_err()
            .to_string()
            .contains("line 2"));
        assert!(parse("FROM x\nEXPOSE http\n")
            .unwrap_err()
            .to_string()
            .contains("line 2"));
    }

    #[test]
    fn env_forms_and_substitution() {
        assert_eq!(
            key_values("A=1 B=\"two words\"", 1, "ENV").unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), "two words".into())]
        );
        assert_eq!(
            key_values("A one two", 1, "ENV").unwrap(),
            vec![("A".into(), "one two".into())]
        );
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(
            substitute("$A/${A}/${B:-d}/${A:+y}/\\$A", &vars),
            "x/x/d/y/$A"
        );
    }

    #[test]
    fn sources_outside_the_context_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let ctx = d.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        std::fs::write(d.path().join("secret"), "s").unwrap();
        std::fs::write(ctx.join("ok"), "o").unwrap();
        std::os::unix::fs::symlink("../secret", ctx.join("link")).unwrap();
        let ctx = ctx.canonicalize().unwrap();
        assert!(collect_sources(&ctx, &["ok".into()], false, 1).is_ok());
        let e = collect_sources(&ctx, &["../secret".into()], false, 4)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 4") && e.contains("outside the build context"),
            "{e}"
        );
        let e = collect_sources(&ctx, &["link".into()], false, 5)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("symlink") && e.contains("outside the build context"),
            "{e}"
        );
    }
}
