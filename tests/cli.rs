//! Bad input: one sentence naming the problem and the fix, exit 125, nothing changed.

mod common;
use common::*;

/// The tests compare the host before and after a command: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn fails(args: &[&str], needle: &str) {
    let mounts = host_mounts_but_compare_leaks();
    let out = stagebox(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err:?}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "more than one line: {err}");
    assert!(out.stdout.is_empty());
    assert_eq!(
        lasting_differences(&mounts, host_mounts_but_compare_leaks),
        (vec![], vec![])
    );
}

#[test]
fn unknown_stage() {
    let _g = serial();
    fails(
        &["run", "--without", "pdi", "--", "true"],
        "unknown stage \"pdi\"",
    );
    fails(&["plan", "--only", "uts,bogus"], "unknown stage \"bogus\"");
}

#[test]
fn refused_combinations_say_why() {
    let _g = serial();
    fails(
        &["run", "--without", "mount", "--", "true"],
        "needs the mount stage",
    );
    fails(
        &["plan", "--without", "rootfs"],
        "the pivot stage needs the rootfs stage",
    );
    fails(
        &["plan", "--only", "uts", "--root-switch", "chroot"],
        "mode of the pivot stage",
    );
}

#[test]
fn unknown_flag_and_bad_values() {
    let _g = serial();
    fails(&["run", "--frobnicate", "--", "true"], "--frobnicate");
    fails(
        &["run", "--trace", "loud", "--", "true"],
        "unknown trace format",
    );
    fails(
        &["run", "--root-switch", "jump", "--", "true"],
        "unknown --root-switch",
    );
}

#[test]
fn missing_rootfs_and_missing_command() {
    let _g = serial();
    if !root_or_skip("missing rootfs") {
        return;
    }
    fails(
        &["run", "--rootfs", "/nonexistent/rootfs", "--", "true"],
        "--rootfs /nonexistent/rootfs does not exist",
    );
    // A missing command is found missing inside the container, once the volumes are
    // mounted: 127, as Docker exits (tests/cli_habits.rs).
    fails(&["run"], "no command given");
    fails(
        &["run", "--hostname", "a/b", "--", "true"],
        "not a valid hostname",
    );
}

#[test]
fn rootless_with_a_state_dir_it_cannot_make_is_one_sentence() {
    let _g = serial();
    if !root_or_skip("rootless_with_a_state_dir_it_cannot_make_is_one_sentence") {
        return;
    }
    // As root: drop to nobody for this one command.
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            bin(),
            "run",
            "--state",
            "/nonexistent-state",
            "--",
            "true",
        ])
        .output();
    let Ok(out) = out else {
        eprintln!("SKIP not_root: setpriv is not installed");
        return;
    };
    // Rootless runs work now (the user stage); a state directory the user cannot make is
    // still one sentence and 125, with nothing made.
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("/nonexistent-state") && err.contains("Permission denied"),
        "{err}"
    );
    assert!(!std::path::Path::new("/nonexistent-state").exists());
}

/// The entries directly in a directory, sorted (none when it cannot be read).
fn top_level(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// What `stages` and `plan` could change: the state dir (the tests' own, and root's default
/// one), /tmp, the host's mounts, and a home of their own (where a user's default state dir
/// would be made).
#[derive(Debug, PartialEq)]
struct Host {
    state: Vec<std::path::PathBuf>,
    root_default_state: Option<Vec<std::path::PathBuf>>,
    tmp: Vec<std::path::PathBuf>,
    mounts: Vec<String>,
    home: Vec<std::path::PathBuf>,
}

fn host(home: &std::path::Path) -> Host {
    Host {
        state: tree(state_dir()),
        root_default_state: {
            let d = std::path::Path::new(stagebox::state::dir::ROOT_DEFAULT);
            d.exists().then(|| tree(d))
        },
        tmp: top_level(std::path::Path::new("/tmp")),
        mounts: host_mounts_but_compare_leaks(),
        home: tree(home),
    }
}

/// Runs `stages` and `plan --without pid`, each as the user `as_user` gives (root when
/// None), with STAGEBOX_STATE set and without, and checks their output and that nothing
/// changed.
fn stages_and_plan(as_user: Option<&[&str]>, home: &std::path::Path) {
    let who = if as_user.is_some() { "nobody" } else { "root" };
    let commands = [&["stages"][..], &["plan", "--without", "uts"][..]];
    for (args, exported) in commands.iter().flat_map(|a| [(*a, true), (*a, false)]) {
        let before = host(home);
        let mut c = match as_user {
            Some(setpriv) => {
                let mut c = std::process::Command::new(setpriv[0]);
                c.args(&setpriv[1..]).arg(bin()).args(args);
                c
            }
            None => cmd(args),
        };
        // Without STAGEBOX_STATE, a user's default state dir is under HOME (root's is
        // /var/lib/stagebox): it would appear there if stagebox made one.
        if exported {
            c.env("STAGEBOX_STATE", state_dir());
        } else {
            c.env_remove("STAGEBOX_STATE");
        }
        let out = c
            .env_remove("XDG_DATA_HOME")
            .env("HOME", home)
            .env("TMPDIR", home.join("tmp"))
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run stagebox");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let who = format!("{who}, STAGEBOX_STATE exported: {exported}");
        assert_eq!(out.status.code(), Some(0), "{who}: {args:?}: {stderr}");
        assert!(stderr.is_empty(), "{who}: {args:?}: {stderr}");
        if args[0] == "plan" {
            assert!(stdout.contains("uts      off  (--without)"), "{stdout}");
        } else {
            assert!(
                stdout.contains("cgroup") && stdout.contains("pivot"),
                "{stdout}"
            );
        }
        // /tmp and the mount table are shared with every program on the host: only a
        // difference that lasts counts there.
        let after = host(home);
        // (In /tmp only what appears: other programs remove their own files.)
        let (new_in_tmp, _) = lasting_differences(&before.tmp, || host(home).tmp);
        assert_eq!(
            new_in_tmp,
            Vec::<std::path::PathBuf>::new(),
            "{who}: {args:?}"
        );
        let mounts = lasting_differences(&before.mounts, || host(home).mounts);
        assert_eq!(
            mounts,
            (vec![], vec![]),
            "{who}: {args:?} changed the mounts"
        );
        let quiet = |h: Host| Host {
            tmp: Vec::new(),
            mounts: Vec::new(),
            ..h
        };
        assert_eq!(
            quiet(after),
            quiet(before),
            "{who}: {args:?} changed the host"
        );
    }
}

#[test]
fn stages_and_plan_need_no_root_and_change_nothing() {
    let _g = serial();
    let _ = state_dir();
    // A home nobody may write to, with an empty TMPDIR in it: both must stay empty.
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::create_dir(home.path().join("tmp")).unwrap();
    stages_and_plan(None, home.path());
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    // And as nobody, which needs no root at all.
    let nobody = nix::unistd::Uid::from_raw(65534);
    let group = nix::unistd::Gid::from_raw(65534);
    for p in [home.path().to_path_buf(), home.path().join("tmp")] {
        nix::unistd::chown(&p, Some(nobody), Some(group)).unwrap();
    }
    let setpriv = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    if std::process::Command::new(setpriv[0])
        .args(&setpriv[1..])
        .arg("true")
        .status()
        .map_or(true, |s| !s.success())
    {
        if std::env::var("STAGEBOX_REQUIRE_ROOT").as_deref() == Ok("1") {
            panic!(
                "setpriv cannot drop to nobody here, and STAGEBOX_REQUIRE_ROOT=1 forbids skipping"
            );
        }
        eprintln!("SKIP stages and plan as nobody: setpriv cannot drop to nobody here");
        return;
    }
    stages_and_plan(Some(&setpriv), home.path());
}

#[test]
fn image_commands_name_what_is_wrong() {
    let _g = serial();
    fails(
        &["build", "-t", "x", "/nonexistent-context"],
        "the build context /nonexistent-context is not a directory",
    );
    let empty = tempfile::tempdir().unwrap();
    fails(
        &["build", "-t", "x", &empty.path().display().to_string()],
        "write a Containerfile there, or name one with -f",
    );
    fails(
        &["load", "/nonexistent-layout"],
        "give an OCI layout directory or a `docker save` tarball",
    );
    let not_tar = empty.path().join("notes.txt");
    std::fs::write(&not_tar, "line one\nline two\n").unwrap();
    fails(
        &["import", &not_tar.display().to_string(), "x"],
        "is not a usable tar archive",
    );
    fails(
        &["run", "no-such-image-anywhere"],
        "no image \"no-such-image-anywhere\"",
    );
}

/// `STAGEBOX_STATE=relative/dir` is taken from the current directory, as `--state` is.
#[test]
fn a_relative_state_dir_works() {
    if !root_or_skip("relative state dir") {
        return;
    }
    let cwd = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let out = std::process::Command::new(bin())
        .args(["run", "--rm", "--trace", "off", "--", "/bin/true"])
        .current_dir(cwd.path())
        .env("STAGEBOX_STATE", "state")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run stagebox");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cwd.path().join("state/containers").is_dir());
}
