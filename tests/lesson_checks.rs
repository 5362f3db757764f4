//! Lessons that cannot harm the host, and that leave nothing behind.
//!
//! - Every exercise check is fed hostile answers: every stage off, the root switch off, an
//!   empty `--only`, a command smuggled in after `--`, a host directory bound over /etc, a
//!   Containerfile that deletes /etc. Afterwards /etc hashes the same, a marker directory is
//!   untouched, and no container is left.
//! - Every lesson runs from the command line (`stagebox lesson N --no-pause`): its steps end
//!   as the text says (exit status, expected output, no usage message), and `stagebox ps -a`
//!   is empty afterwards.

mod common;
use common::*;
use sha2::Digest;
use std::path::Path;
use std::sync::Mutex;

static SERIAL: Mutex<()> = Mutex::new(());

fn lessons() -> Vec<stagebox::learn::lessons::Lesson> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("lessons");
    stagebox::learn::lessons::load(Some(&dir)).expect("the lessons parse")
}

/// A hash of every path, kind, mode and file content under `dir` (symlinks by their target).
fn tree_hash(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut h = sha2::Sha256::new();
    let mut paths = tree(dir);
    paths.sort();
    for rel in paths {
        let p = dir.join(&rel);
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        h.update(rel.to_string_lossy().as_bytes());
        h.update(md.mode().to_le_bytes());
        if md.file_type().is_symlink() {
            h.update(
                std::fs::read_link(&p)
                    .unwrap_or_default()
                    .to_string_lossy()
                    .as_bytes(),
            );
        } else if md.is_file() {
            h.update(std::fs::read(&p).unwrap_or_default());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `stagebox ps -a`: the id and name of every container kept.
fn ps_all() -> Vec<String> {
    let out = stagebox(&["ps", "-a"]);
    assert!(out.status.success(), "ps -a failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn hostile_answers_change_nothing_on_the_host() {
    if !root_or_skip("hostile lesson answers") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let marker = tempfile::Builder::new()
        .prefix("stagebox-hostile.")
        .tempdir()
        .expect("marker dir");
    let m = marker.path().display().to_string();
    std::fs::write(marker.path().join("hosts"), "127.0.0.1 marker\n").unwrap();
    std::fs::write(marker.path().join("log"), "kept\n").unwrap();
    let every_stage_off = "--without cgroup,uts,ipc,pid,net,cgroupns,mount,rootfs,proc,pivot";
    let flags = [
        every_stage_off.to_string(),
        "--without rootfs,pivot".to_string(),
        "--only ''".to_string(),
        format!("--name exercise-08 -- rm -rf {m}"),
        format!("--name exercise-08 -v {m}:/etc"),
        format!("-v {m}:/v"),
        format!("--without rootfs,pivot -v {m}:/v"),
        format!("--rootfs {m}"),
    ];
    let files = [
        "FROM default\nRUN rm -rf /etc /v\nCMD [\"echo\", \"hello from 10\"]\n".to_string(),
        format!("FROM default\nCOPY {m} /x\nCMD [\"echo\", \"x\"]\n"),
    ];
    let etc = tree_hash(Path::new("/etc"));
    let marked = tree_hash(marker.path());
    let containers = ps_all();
    let answers = tempfile::tempdir().expect("answers dir");
    let mut ran = 0;
    for lesson in lessons() {
        let Some(check) = lesson.checks.first() else {
            continue;
        };
        let hostile: Vec<String> = match check.answer {
            stagebox::learn::lessons::AnswerKind::Flags => flags.to_vec(),
            stagebox::learn::lessons::AnswerKind::File => files.to_vec(),
        };
        for answer in hostile {
            let file = answers.path().join(format!("{:02}.txt", lesson.number));
            std::fs::write(&file, &answer).unwrap();
            let out = cmd(&["lesson", &lesson.number.to_string(), "--check"])
                .env("STAGEBOX_ANSWERS", answers.path())
                .output()
                .expect("run the check");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let what = format!("lesson {} with {answer:?}:\n{text}", lesson.name);
            assert!(
                !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
                "{what}"
            );
            assert_eq!(tree_hash(Path::new("/etc")), etc, "/etc changed: {what}");
            assert_eq!(
                tree_hash(marker.path()),
                marked,
                "the marker directory changed: {what}"
            );
            assert_eq!(ps_all(), containers, "a container was left: {what}");
            ran += 1;
        }
        // The destructive checks refuse what would reach the host, in one sentence.
        if check.writes && check.answer == stagebox::learn::lessons::AnswerKind::Flags {
            for answer in [
                "--without rootfs,pivot",
                &format!("-v {m}:/etc"),
                "--privileged",
                "--without devices,caps",
                "--cap-add SYS_ADMIN",
                "--device /dev/null",
                "--security-opt seccomp=unconfined",
            ] {
                std::fs::write(
                    answers.path().join(format!("{:02}.txt", lesson.number)),
                    answer,
                )
                .unwrap();
                let out = cmd(&["lesson", &lesson.number.to_string(), "--check"])
                    .env("STAGEBOX_ANSWERS", answers.path())
                    .output()
                    .expect("run the check");
                let text = String::from_utf8_lossy(&out.stdout);
                assert_eq!(out.status.code(), Some(1), "{text}");
                assert!(
                    text.contains("is not run:"),
                    "{} {answer}: {text}",
                    lesson.name
                );
            }
        }
    }
    assert!(ran >= 20, "only {ran} hostile answers were tried");
}

#[test]
fn a_smuggled_command_is_refused_before_anything_runs() {
    let lesson = lessons()
        .into_iter()
        .find(|l| l.name.ends_with("uts-hostname"))
        .expect("the uts lesson");
    let check = &lesson.checks[0];
    use stagebox::learn::lessons::refuse_answer;
    for bad in [
        "-- touch /tmp/x",
        "--hostname lab busybox",
        "--hostname lab; touch /tmp/x",
        "--probe",
        "-v /*:/x",
        "--frobnicate",
    ] {
        let why = refuse_answer(check, bad);
        assert!(why.is_some(), "{bad:?} was accepted");
    }
    assert_eq!(refuse_answer(check, "--hostname lab"), None);
}

#[test]
fn every_lesson_runs_as_written_and_leaves_no_container() {
    if !root_or_skip("lessons from the command line") {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A state dir of its own, so that `ps -a` must be empty, not merely unchanged.
    let state = tempfile::Builder::new()
        .prefix("lesson-state.")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("state dir");
    let run = |args: &[&str]| {
        cmd(args)
            .env("STAGEBOX_STATE", state.path())
            .output()
            .expect("run stagebox")
    };
    for lesson in lessons() {
        let out = run(&["lesson", &lesson.number.to_string(), "--no-pause"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "lesson {}:\n{text}\n{}",
            lesson.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("steps ended as expected"), "{text}");
        let ps = run(&["ps", "-a"]);
        let listed: Vec<String> = String::from_utf8_lossy(&ps.stdout)
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect();
        assert!(
            ps.status.success() && listed.is_empty(),
            "lesson {} left containers: {listed:?}",
            lesson.name
        );
        let vols = run(&["volume", "ls"]);
        let listed = String::from_utf8_lossy(&vols.stdout).lines().count();
        assert_eq!(listed, 1, "lesson {} left volumes", lesson.name);
    }
}

#[test]
fn lessons_are_numbered_without_gaps_and_the_comparison_comes_last() {
    let all = lessons();
    for (i, l) in all.iter().enumerate() {
        assert_eq!(l.number as usize, i, "lesson {} is out of sequence", l.name);
    }
    let last = all.last().expect("lessons");
    assert!(
        last.name.ends_with("comparing-isolation"),
        "the capstone (comparing isolation) must stay last, not {}",
        last.name
    );
}
