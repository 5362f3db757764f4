//! The lessons: every one matches the program (stages, flags, trace facts), runs, and its
//! transcript is a reviewed snapshot (one test per lesson, redacted by `common::redact`); model
//! answers pass the exercise checks; the committed book (chapters and pictures) is what
//! `stagebox book` writes now; mdbook renders every chapter.
//!
//! Tests that run lesson steps take a lock: steps make System V segments and mounts on the
//! host for a moment, and another lesson's trace would count them.

mod common;
use common::redact::redact;
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

/// Runs one lesson's steps and compares the transcript with its reviewed snapshot.
fn lesson_matches_its_snapshot(name: &str) {
    if !root_or_skip(&format!("lesson {name} transcript")) {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let l = all_lessons()
        .into_iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("lessons/{name}.md is missing"));
    let env = step_env();
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
    // A lesson whose output shows the cgroup layout keeps one transcript per layout; the v2
    // and v1 ones are made for real in the VMs of .ci/layout-tests.
    let name = if l.depends_on_cgroup_layout() {
        format!("lesson_{}_{}", l.name, host_layout())
    } else {
        format!("lesson_{}", l.name)
    };
    insta::assert_snapshot!(name, redact(&text));
}

fn host_layout() -> &'static str {
    stagebox::cgroup::Layout::detect()
        .map(|l| l.kind().name())
        .unwrap_or("none")
}

/// One test per lesson, so that one lesson's mismatch does not hide another's.
macro_rules! lesson_tests {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                lesson_matches_its_snapshot($name);
            }
        )*
        /// The lessons with a test of their own, in order.
        const LESSONS_WITH_A_TEST: &[&str] = &[$($name),*];
    };
}

lesson_tests! {
    lesson_00_a_process_is_a_process => "00-a-process-is-a-process",
    lesson_01_uts_hostname => "01-uts-hostname",
    lesson_02_pid_namespace => "02-pid-namespace",
    lesson_03_mount_namespace => "03-mount-namespace",
    lesson_04_rootfs_and_chroot => "04-rootfs-and-chroot",
    lesson_05_pivot_root => "05-pivot-root",
    lesson_06_ipc_and_net => "06-ipc-and-net",
    lesson_07_cgroups => "07-cgroups",
    lesson_08_layers_and_whiteouts => "08-layers-and-whiteouts",
    lesson_09_volumes => "09-volumes",
    lesson_10_images => "10-images",
    lesson_11_root_but_powerless => "11-root-but-powerless",
    lesson_12_user_namespaces => "12-user-namespaces",
    lesson_13_how_a_packet_gets_in => "13-how-a-packet-gets-in",
    lesson_14_docker_exec_is_setns => "14-docker-exec-is-setns",
    lesson_15_oci_bundle => "15-oci-bundle",
    lesson_16_comparing_isolation => "16-comparing-isolation",
}

#[test]
fn every_lesson_file_has_a_test() {
    let files: Vec<String> = all_lessons().into_iter().map(|l| l.name).collect();
    assert_eq!(
        LESSONS_WITH_A_TEST, files,
        "lesson_tests! in tests/lessons.rs must list every file in lessons/"
    );
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
    ("11", "--cap-drop ALL --security-opt no-new-privileges"),
    ("12", "--uidmap 0:300000:65536"),
    ("13", "-p 8088:80"),
    ("14", "--init"),
    // The check reads only these two fields of the learner's config.json.
    (
        "15",
        r#"{"hostname": "oci-lab", "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}]}}"#,
    ),
    ("16", "--without ipc"),
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
    // Lesson 14: without --init, the shell as PID 1 ignores stop's SIGTERM.
    std::fs::write(dir.path().join("14.txt"), "--hostname lab").expect("write answer");
    let (code, out) = check("14", dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("exited (137)"), "{out}");
    // Lesson 15: a config.json that keeps its network namespace.
    std::fs::write(
        dir.path().join("15.txt"),
        r#"{"hostname": "oci-lab", "linux": {"namespaces": [{"type": "network"}, {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}]}}"#,
    )
    .expect("write answer");
    let (code, out) = check("15", dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("still lists network"), "{out}");
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
        text.contains("── step 1/")
            && text.contains("$ stagebox run --trace-stages uts --hostname demo -- hostname"),
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

/// The chapters whose output shows the cgroup layout, made again on this host. The committed
/// ones were made in the pure v2 VM (most learners' layout): there they are compared, and
/// with INSTA_UPDATE=always (`.ci/layout-tests --update`) they are written. On a host of
/// another layout the test says it compares nothing, and the v2 VM of CI does the comparing.
/// The layout the committed book's layout chapters are made on: pure v2, what most learners
/// run.
const BOOK_LAYOUT: &str = "v2";

#[test]
fn layout_chapters_are_what_stagebox_book_writes_now() {
    if !root_or_skip("layout chapters up to date") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let update = std::env::var("INSTA_UPDATE").as_deref() == Ok("always");
    let mut compared = 0;
    for l in all_lessons()
        .iter()
        .filter(|l| l.depends_on_cgroup_layout())
    {
        let path = repo().join("book/src").join(format!("{}.md", l.name));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let env = step_env();
        let before = lessons::kept_containers(&env);
        let fresh = stagebox::learn::book::chapter(l, &env).expect("make the chapter");
        lessons::remove_new_containers(&env, &before);
        if update && host_layout() == BOOK_LAYOUT {
            std::fs::write(&path, &fresh).expect("write the chapter");
            eprintln!("wrote {} ({} layout)", path.display(), host_layout());
            continue;
        }
        let marker = format!(
            "{}{} -->",
            stagebox::learn::book::CHAPTER_LAYOUT,
            host_layout()
        );
        if !committed.contains(&marker) {
            eprintln!(
                "book/src/{}.md was made on another cgroup layout than this host's ({}): not compared here",
                l.name,
                host_layout()
            );
            continue;
        }
        assert_eq!(
            redact(&committed),
            redact(&fresh),
            "book/src/{}.md is stale on the {} layout: run `.ci/layout-tests --update --layouts {} lessons:layout_chapters`",
            l.name,
            host_layout(),
            host_layout()
        );
        compared += 1;
    }
    eprintln!(
        "{compared} layout chapter(s) compared on the {} layout",
        host_layout()
    );
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
        // A chapter made on another cgroup layout shows that layout's files: it is compared
        // where that layout is (CI runs this test in the v2 and v1 VMs too).
        let made_on = |t: &str| {
            t.lines()
                .find_map(|l| l.strip_prefix(stagebox::learn::book::CHAPTER_LAYOUT))
                .map(|r| r.trim_end_matches(" -->").to_string())
        };
        if let Some(layout) = made_on(old) {
            if layout != host_layout() {
                eprintln!(
                    "book/src/{} was made on a {layout} host and this one is {}: compared in the {layout} VM of .ci/layout-tests",
                    path.display(),
                    host_layout()
                );
                continue;
            }
        }
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
    mdbook_build(&mdbook, &book, out.path());
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
