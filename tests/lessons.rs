//! The lessons: every one matches the program (stages, flags, trace facts), runs, and its
//! transcript is a reviewed snapshot; model answers pass the exercise checks; the committed
//! book (chapters and pictures) is what `stagebox book` writes now; mdbook renders every
//! chapter.
//!
//! Tests that run lesson steps take a lock: steps make System V segments and mounts on the
//! host for a moment, and another lesson's trace would count them.

mod common;
use common::*;
use stagebox::learn::lessons::{self, Known, Lesson, StepEnv};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn all_lessons() -> Vec<Lesson> {
    lessons::load(Some(&repo().join("lessons"))).expect("the lessons parse")
}

fn step_env() -> StepEnv {
    StepEnv::new(PathBuf::from(bin()), state_dir().to_path_buf())
}

/// What changes from run to run or from host to host: state paths, temp names, ids,
/// namespace inodes and every other number of two digits or more, the host's name, its
/// interfaces, its own mounts and the entries of its /.
pub fn redact(text: &str) -> String {
    let state = state_dir().display().to_string();
    let default_state = stagebox::state::dir::default_state_dir()
        .display()
        .to_string();
    let host = nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default();
    let quoted_host = format!("\"{host}\"");
    let mut out = String::new();
    for line in text.lines() {
        let replaced = line
            .replace(&state, "[STATE]")
            .replace(&default_state, "[STATE]")
            .replace(&quoted_host, "\"[HOST]\"");
        let t = replaced.trim_start();
        let mut l = replaced.clone();
        // The shared `stagebox` parent cgroup is made by whichever run finds it missing, and
        // the host's own SysV objects come and go: neither belongs to the lesson.
        if (t.starts_with("$ mkdir(\"/sys/fs/cgroup/") && t.ends_with("/stagebox\") = 0"))
            || t.starts_with("sysv ipc objects")
        {
            continue;
        }
        // The host's own mounts, listed as they go away at the root switch.
        if t.starts_with("mount ") && !t.contains("[STATE]") && !t.contains("->") {
            continue;
        }
        if let Some(rest) = t.strip_prefix("hostname ") {
            if let Some((_, after)) = rest.split_once(" -> ") {
                l = format!("    hostname           [HOST] -> {after}");
            }
        }
        if let Some(rest) = t.strip_prefix("interfaces ") {
            if let Some((_, after)) = rest.split_once(" -> ") {
                l = format!("    interfaces         [HOST INTERFACES] -> {after}");
            }
        }
        // Measurements of the kernel's accounting vary from run to run.
        for fact in ["memory peak", "cpu time", "cpu throttled"] {
            if let Some(rest) = t.strip_prefix(fact) {
                let file = rest.rfind(" (").map(|i| &rest[i..]).unwrap_or("");
                l = format!("    {fact:<18} + [MEASURED]{file}");
            }
        }
        // The cgroup the runner itself sits in differs from session to session.
        if let Some(rest) = t.strip_prefix("cgroup ") {
            if let Some((name_before, after)) = rest.split_once(" -> ") {
                let name = name_before.split_whitespace().next().unwrap_or("");
                l = format!("    cgroup {name:<11} [HOST CGROUP] -> {after}");
            }
        }
        // The host's own shared memory segment made for the SysV check: its id is whatever
        // the kernel's counter gives, one digit on a fresh machine.
        if let Some(i) = l.find("the host's shared memory segment ") {
            let start = i + "the host's shared memory segment ".len();
            let len = l[start..].chars().take_while(char::is_ascii_digit).count();
            if len > 0 {
                l.replace_range(start..start + len, "[N]");
            }
        }
        if t.starts_with("top of the tree:") {
            l = "  top of the tree:   [THE HOST'S / ENTRIES]".into();
        }
        out.push_str(&redact_words(&l));
        out.push('\n');
    }
    out
}

/// Digests (64 hex digits: layer directories, sha256:...), then "N seconds ago" ages.
fn redact_digests_and_ages(l: &str) -> String {
    let chars: Vec<char> = l.chars().collect();
    let is_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        if boundary && i + 64 <= chars.len() && chars[i..i + 64].iter().all(|c| is_hex(*c)) {
            out.push_str("[DIGEST]");
            i += 64;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    let mut words: Vec<String> = out.split(' ').map(str::to_string).collect();
    for k in 0..words.len().saturating_sub(2) {
        if words[k].chars().all(|c| c.is_ascii_digit())
            && !words[k].is_empty()
            && [
                "second", "seconds", "minute", "minutes", "hour", "hours", "day", "days",
            ]
            .contains(&words[k + 1].as_str())
            && words[k + 2] == "ago"
        {
            words[k] = "[AGO]".into();
            words[k + 1] = String::new();
            words[k + 2] = String::new();
        }
    }
    let mut joined = words.join(" ");
    while joined.contains("[AGO]  ") {
        joined = joined.replace("[AGO]  ", "[AGO] ");
    }
    joined
}

/// Container ids: runs of exactly 12 lowercase hex digits standing alone (in paths, in the
/// output of `stagebox rm`, in anonymous volume names).
fn redact_ids(l: &str) -> String {
    let chars: Vec<char> = l.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let is_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    while i < chars.len() {
        let boundary_before = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        if boundary_before && i + 12 <= chars.len() && chars[i..i + 12].iter().all(|c| is_hex(*c)) {
            let after = chars.get(i + 12).copied();
            if !after.is_some_and(|c| c.is_ascii_alphanumeric()) {
                out.push_str("[ID]");
                i += 12;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

fn redact_words(l: &str) -> String {
    let mut s = redact_ids(&redact_digests_and_ages(l));
    for (prefix, n, with) in [
        ("stagebox-lesson.", 6, "[TMP]"),
        ("stagebox-check.", 6, "[TMP]"),
        ("stagebox-", 6, "[ID]"),
    ] {
        let mut res = String::new();
        let mut rest = s.as_str();
        while let Some(i) = rest.find(prefix) {
            let tail = &rest[i + prefix.len()..];
            let id: String = tail.chars().take(n).collect();
            let ok = id.len() == n
                && id.chars().all(|c| c.is_ascii_alphanumeric())
                && (prefix != "stagebox-" || id.chars().all(|c| c.is_ascii_hexdigit()))
                && !tail[n..].starts_with(|c: char| c.is_ascii_alphanumeric());
            res.push_str(&rest[..i + prefix.len()]);
            if ok {
                res.push_str(with);
                rest = &tail[n..];
            } else {
                rest = tail;
            }
        }
        res.push_str(rest);
        s = res;
    }
    // Every other run of two or more digits: inodes, pids, counts of host things, device
    // numbers; not file modes (0o555, mode=755) nor a lesson's number in its title.
    let title = s
        .split_once(" · ")
        .is_some_and(|(a, _)| !a.is_empty() && a.chars().all(|c| c.is_ascii_digit()));
    let mut res = String::new();
    let mut digits = String::new();
    for c in s.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let kept = res.ends_with("0o") || res.ends_with("mode=") || (res.is_empty() && title);
        if digits.len() >= 2 && !kept {
            res.push_str("[N]");
        } else {
            res.push_str(&digits);
        }
        digits.clear();
        if c != '\0' {
            res.push(c);
        }
    }
    res
}

#[test]
fn every_lesson_names_only_what_exists() {
    let known = Known::from_program();
    let lessons = all_lessons();
    assert!(lessons.len() >= 7, "lessons 00-06 are missing");
    let mut problems = Vec::new();
    for l in &lessons {
        problems.extend(lessons::validate(l, &known));
    }
    assert!(
        problems.is_empty(),
        "lessons that do not match the program:\n{}",
        problems.join("\n")
    );
    // Every stage's lesson exists, and the built-in lessons are the files.
    for s in stagebox::stages::registry::all() {
        let want = s.info().lesson;
        assert!(
            lessons.iter().any(|l| l.name == want),
            "stage {} names lesson {want}, and lessons/{want}.md is missing",
            s.info().id
        );
    }
    let built_in: Vec<String> = lessons::load(None)
        .expect("built-in lessons")
        .into_iter()
        .map(|l| l.name)
        .collect();
    let files: Vec<String> = lessons.iter().map(|l| l.name.clone()).collect();
    assert_eq!(
        built_in, files,
        "the lessons built into the binary differ from lessons/ (rebuild)"
    );
}

#[test]
fn every_lesson_runs_and_matches_its_snapshot() {
    if !root_or_skip("lesson transcripts") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = step_env();
    for l in all_lessons() {
        let before = lessons::kept_containers(&env);
        let mut text = format!("{}\n", l.title);
        for (i, s) in l.steps.iter().enumerate() {
            let got = env.capture(s).expect("run the step");
            assert_eq!(
                got.status, s.exit,
                "{}.md line {}: exit status\n{}",
                l.name, s.line, got.output
            );
            text.push_str(&format!(
                "\n## step {} ({}), exit {}\n$ {}\n{}",
                i + 1,
                s.section,
                got.status,
                s.command,
                got.output
            ));
        }
        lessons::remove_new_containers(&env, &before);
        insta::assert_snapshot!(format!("lesson_{}", l.name), redact(&text));
    }
}

/// The answers a learner could give; each must pass its lesson's checks.
const MODEL_ANSWERS: &[(&str, &str)] = &[
    ("00", "--only ipc"),
    ("01", "--hostname lab"),
    ("02", "--without proc"),
    ("03", "--only mount"),
    ("04", "--only mount,rootfs,pivot --root-switch chroot"),
    ("05", "--only mount,rootfs,pivot"),
    ("06", "--without ipc"),
    ("08", "--name exercise-08"),
    ("09", "-v exercise-09:/v"),
    ("10", "FROM default\nCMD [\"echo\", \"hello from 10\"]\n"),
    ("11", "--without ipc"),
];

fn check(n: &str, answers: &Path) -> (i32, String) {
    let out = cmd(&["lesson", n, "--check"])
        .env("STAGEBOX_ANSWERS", answers)
        .output()
        .expect("run stagebox lesson --check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn model_answers_pass_and_wrong_ones_say_what_is_wrong() {
    if !root_or_skip("lesson checks") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    for (n, answer) in MODEL_ANSWERS {
        std::fs::write(dir.path().join(format!("{n}.txt")), answer).expect("write answer");
        let (code, out) = check(n, dir.path());
        assert_eq!(code, 0, "lesson {n} with {answer:?}: {out}");
        assert!(out.contains("passes every check"), "{out}");
    }
    std::fs::write(dir.path().join("03.txt"), "--only uts").expect("write answer");
    let (code, out) = check("3", dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("appeared on the host"), "{out}");
    let (code, out) = check("1", Path::new("/nonexistent"));
    assert_eq!(code, 1);
    assert!(out.contains("no answer yet"), "{out}");
    for (n, _) in MODEL_ANSWERS {
        assert!(
            lessons::find(&all_lessons(), n).is_ok_and(|l| !l.checks.is_empty()),
            "lesson {n} has no check"
        );
    }
}

#[test]
fn lesson_command_lists_runs_and_refuses_unknown_numbers() {
    let out = stagebox(&["lesson", "--list"]);
    assert!(out.status.success());
    let list = String::from_utf8_lossy(&out.stdout);
    for l in all_lessons() {
        assert!(
            list.contains(&l.name),
            "{} missing from --list:\n{list}",
            l.name
        );
    }
    let out = stagebox(&["lesson", "42"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no lesson \"42\""), "{err}");
    if !root_or_skip("lesson run") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = stagebox(&["lesson", "1", "--no-pause"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("── step 1/") && text.contains("$ stagebox run --hostname demo -- hostname"),
        "{text}"
    );
    assert!(text.contains("all 3 steps ended as expected"), "{text}");
}

/// Every file under `dir`, relative, with its text.
fn files(dir: &Path) -> Vec<(PathBuf, String)> {
    tree(dir)
        .into_iter()
        .filter(|p| dir.join(p).is_file())
        .map(|p| {
            let text = std::fs::read_to_string(dir.join(&p)).unwrap_or_default();
            (p, text)
        })
        .collect()
}

#[test]
fn committed_book_is_what_stagebox_book_writes_now() {
    if !root_or_skip("book up to date") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("temp dir");
    let n = stagebox::learn::book::generate(tmp.path(), &all_lessons(), &step_env())
        .expect("generate the book");
    assert!(n >= 10, "{n} chapters");
    // Chapters (.md) and pictures (images/*.svg) alike: the pictures hold inodes and ids
    // as text only, never in a coordinate, so the same redaction makes two runs comparable.
    let committed = files(&repo().join("book/src"));
    let fresh = files(&tmp.path().join("src"));
    let names = |v: &[(PathBuf, String)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    let svgs = |v: &[(PathBuf, String)]| {
        v.iter()
            .filter(|(p, _)| p.starts_with("images") && p.extension().is_some_and(|x| x == "svg"))
            .count()
    };
    assert!(
        svgs(&fresh) >= 4,
        "stagebox book drew {} pictures into src/images",
        svgs(&fresh)
    );
    let stale =
        "book/src is stale: run `stagebox book` as root in the repository, then commit book/src";
    assert_eq!(
        names(&committed),
        names(&fresh),
        "{stale} (the chapter and picture files differ)"
    );
    for ((path, old), (_, new)) in committed.iter().zip(&fresh) {
        let (old, new) = (redact(old), redact(new));
        if old != new {
            let first = old
                .lines()
                .zip(new.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(old.lines().count().min(new.lines().count()));
            panic!(
                "{stale}: book/src/{} differs from line {}:\ncommitted: {:?}\nnow:       {:?}",
                path.display(),
                first + 1,
                old.lines().nth(first),
                new.lines().nth(first)
            );
        }
    }
}

#[test]
fn mdbook_renders_every_chapter() {
    let Some(mdbook) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("mdbook"))
            .find(|f| f.is_file())
    }) else {
        if std::env::var("STAGEBOX_REQUIRE_MDBOOK").as_deref() == Ok("1") {
            panic!("mdbook is not on PATH, and STAGEBOX_REQUIRE_MDBOOK=1 forbids skipping");
        }
        eprintln!("SKIP mdbook build: mdbook is not on PATH (cargo install --locked mdbook --version 0.4.52)");
        return;
    };
    let book = repo().join("book");
    let out = tempfile::tempdir().expect("temp dir");
    let run = std::process::Command::new(mdbook)
        .arg("build")
        .arg(&book)
        .arg("--dest-dir")
        .arg(out.path())
        .output()
        .expect("run mdbook");
    assert!(
        run.status.success(),
        "mdbook build failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = std::fs::read_to_string(book.join("src/SUMMARY.md")).expect("SUMMARY.md");
    let mut chapters = 0;
    for line in summary.lines() {
        let Some((title, rest)) = line.split_once("](") else {
            continue;
        };
        let title = title.rsplit('[').next().unwrap_or(title);
        let md = rest.trim_end_matches(')');
        let html = out.path().join(md.replace(".md", ".html"));
        let text = std::fs::read_to_string(&html)
            .unwrap_or_else(|e| panic!("{md} did not render to {}: {e}", html.display()));
        let escaped = title
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            text.contains(&escaped) || text.contains(title),
            "{} does not hold its title {title:?}",
            html.display()
        );
        chapters += 1;
    }
    assert!(chapters >= 10, "only {chapters} chapters in SUMMARY.md");
}
