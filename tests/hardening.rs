//! Host-side hardening (issue #12): what a container could reach on the host through what
//! the runtime hands it or leaves open. Descriptors the caller had open, the state directory's
//! mode, and the volume mount point race (CVE-2021-30465). Needs root (skips loudly without).

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `stagebox ARGS` started by a host shell that holds `dir` open as descriptor 9 (without
/// close-on-exec, as `exec 9<DIR` does), the way a caller's open descriptor reaches stagebox.
fn with_fd9(dir: &Path, args: &[&str]) -> Output {
    Command::new("/bin/sh")
        .args(["-c", "exec 9<\"$1\"; shift; exec \"$@\"", "sh"])
        .arg(dir)
        .arg(bin())
        .args(args)
        .env("STAGEBOX_STATE", state_dir())
        .env("TMPDIR", private_tmp())
        .env("NO_COLOR", "1")
        .env_remove("STAGEBOX_TRACE")
        .stdin(Stdio::null())
        .output()
        .expect("run stagebox under sh")
}

/// The state-mode test opens the tests' state directory to 0755 for a moment, and any
/// stagebox command closes it again: the tests of this file take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What `ls /proc/self/fd/9/` shows, then the descriptors the workload holds, listed by
/// `ls` exec'd in its place (its own directory descriptor, the lowest free one, is 3).
const FDS: &str = "ls /proc/self/fd/9/ 2>&1 || echo NO-FD-9; echo FDS; exec ls /proc/self/fd";

/// The descriptor list after the FDS line, on one line.
fn fd_list(stdout: &str) -> String {
    let rest: Vec<&str> = stdout.lines().skip_while(|l| *l != "FDS").skip(1).collect();
    rest.join(" ")
}

#[test]
fn a_descriptor_the_caller_had_open_does_not_reach_the_workload() {
    let _g = serial();
    if !root_or_skip("fds") {
        return;
    }
    let host = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(host.path().join("host-secret"), "x").unwrap();
    let m = marker();
    let out = with_fd9(
        host.path(),
        &["run", "--rm", "--trace", "off", "--", "sh", "-c", FDS, &m],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    // Only stdio (and ls's own 3): neither the caller's 9 nor any of the runtime's own
    // (channel, pipes, cgroup files, the exe fd).
    assert_eq!(fd_list(&stdout), "0 1 2 3", "{stdout}");
    assert!(stdout.contains("NO-FD-9"), "{stdout}");
    assert!(!stdout.contains("host-secret"), "{stdout}");
    assert_none_left(&m, "fds");

    // --preserve-fds 7 passes 3..9: the caller's 9 is there (and nothing else: the runtime
    // opens its own close-on-exec, also where they land in 3..9).
    let out = with_fd9(
        host.path(),
        &[
            "run",
            "--rm",
            "--trace",
            "off",
            "--preserve-fds",
            "7",
            "--",
            "sh",
            "-c",
            FDS,
            &m,
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(fd_list(&stdout), "0 1 2 3 9", "{stdout}");
    assert!(stdout.contains("host-secret"), "{stdout}");
    // --preserve-fds 6 passes 3..8: 9 is closed again.
    let out = with_fd9(
        host.path(),
        &[
            "run",
            "--rm",
            "--trace",
            "off",
            "--preserve-fds",
            "6",
            "--",
            "sh",
            "-c",
            FDS,
            &m,
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(fd_list(&stdout), "0 1 2 3", "{stdout}");
    assert!(stdout.contains("NO-FD-9"), "{stdout}");
    assert_none_left(&m, "fds");
}

#[test]
fn the_probe_still_runs_from_a_close_on_exec_descriptor() {
    let _g = serial();
    if !root_or_skip("probe fd") {
        return;
    }
    // fexecve of stagebox's own file: that descriptor is close-on-exec now, which is fine for
    // an ELF file.
    let host = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = with_fd9(host.path(), &["run", "--rm", "--trace", "off", "--probe"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("pid:"), "{stdout}");
}

#[test]
fn preserve_fds_that_is_no_number_is_one_sentence_and_125() {
    let _g = serial();
    for bad in ["abc", "-1", ""] {
        let out = stagebox(&["run", "--preserve-fds", bad, "--", "true"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{bad:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        assert!(err.contains("--preserve-fds"), "{bad:?}: {err}");
    }
}

/// A container with a setuid-root copy of busybox in its writable layer: an unprivileged host
/// user must not be able to run it, as the state directory is 0700. The state directory (and
/// `containers/`, and the container's own) are opened to 0755 first, as an older stagebox left
/// them, to show that the file can be run then, and that the next command closes them.
#[test]
fn the_state_dir_keeps_other_host_users_away_from_setuid_files_in_layers() {
    let _g = serial();
    if !root_or_skip("state mode") {
        return;
    }
    let name = format!("harden-suid-{}", std::process::id());
    let out = stagebox(&[
        "run",
        "--trace",
        "off",
        "--name",
        &name,
        "--",
        "sh",
        "-c",
        "cp /bin/true /true && chmod 4755 /true",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = stagebox(&["rm", "--force", &self.0]);
        }
    }
    let _rm = Rm(name.clone());
    let upper = text(&stagebox(&["inspect", "--format", "upper_dir", &name]).stdout);
    let upper = Path::new(upper.trim());
    let file = upper.join("true");
    let md = std::fs::metadata(&file).expect("the setuid file in the upper dir");
    assert_eq!(md.mode() & 0o7777, 0o4755, "{}", file.display());
    assert_eq!(md.uid(), 0);
    let state = state_dir();
    let container = upper.parent().unwrap();
    let dirs = [
        state.to_path_buf(),
        state.join("containers"),
        container.to_path_buf(),
    ];
    for d in &dirs {
        assert!(d.starts_with(state), "{}", d.display());
        let mode = std::fs::metadata(d).unwrap().mode() & 0o777;
        assert!(
            mode == 0o700 || mode == 0o710,
            "{} is {mode:o}",
            d.display()
        );
    }
    // As nobody, with no capabilities left (std's uid() drops them before the exec, unlike
    // setpriv, which keeps them until the exec).
    let as_nobody = || {
        Command::new(&file)
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .output()
    };
    match as_nobody() {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}"),
        Ok(o) => panic!("nobody ran a setuid-root file in a container's layer: {o:?}"),
    }
    // Opened as an older stagebox left them: now nobody can run it (the test can fail) ...
    for d in &dirs {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let ran = as_nobody();
    // ... and any command closes them again.
    let ps = stagebox(&["ps", "-a"]);
    assert_eq!(ps.status.code(), Some(0), "{}", text(&ps.stderr));
    let o = ran.expect("with 0755 directories nobody reaches the file");
    assert!(o.status.success(), "{o:?}");
    for d in &dirs {
        let mode = std::fs::metadata(d).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} after `stagebox ps`", d.display());
    }
    match as_nobody() {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}"),
        Ok(o) => panic!("nobody ran a setuid-root file in a container's layer: {o:?}"),
    }
    // The container's own / keeps its mode: a --user workload can still use it.
    assert_eq!(std::fs::metadata(upper).unwrap().mode() & 0o777, 0o755);
    let out = sh_ok(&["--user", "65534"], "id -u; ls / >/dev/null && echo ok");
    assert_eq!(out, "65534\nok\n");
}

#[test]
fn a_shared_state_dir_is_refused() {
    let _g = serial();
    let shared = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let out = Command::new(bin())
        .args(["ps"])
        .env("STAGEBOX_STATE", shared.path())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("shared with other users"), "{err}");
    let mode = std::fs::metadata(shared.path()).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o1777);
}

/// The directories a volume race test uses: the shared volume, the second volume's source,
/// and the host directory the symlink names; all under target/tmp, removed on drop.
struct RaceDirs {
    _base: tempfile::TempDir,
    shared: std::path::PathBuf,
    inner: std::path::PathBuf,
    host: std::path::PathBuf,
}

fn race_dirs() -> RaceDirs {
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (shared, inner, host) = (
        base.path().join("shared"),
        base.path().join("inner"),
        base.path().join("host"),
    );
    for d in [&shared, &inner, &host] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(inner.join("inner-file"), "x").unwrap();
    RaceDirs {
        _base: base,
        shared,
        inner,
        host,
    }
}

fn volume_args(d: &RaceDirs) -> (String, String) {
    (
        format!("{}:/shared", d.shared.display()),
        format!("{}:/shared/d/x", d.inner.display()),
    )
}

/// The deterministic half: the volume's target goes through a symlink (in another volume) to
/// an absolute host path. Inside the rootfs it means ROOTFS/<that path>: the mount lands there,
/// and the host directory stays empty.
#[test]
fn a_volume_target_through_a_symlink_to_a_host_dir_stays_in_the_container() {
    let _g = serial();
    if !root_or_skip("volume symlink") {
        return;
    }
    let d = race_dirs();
    std::os::unix::fs::symlink(&d.host, d.shared.join("d")).unwrap();
    let (a, b) = volume_args(&d);
    let script = format!(
        "cat /shared/d/x/inner-file && test -f {}/x/inner-file && echo inside",
        d.host.display()
    );
    let out = sh_ok(&["-v", &a, "-v", &b], &script);
    assert_eq!(out, "xinside\n");
    assert_eq!(tree(&d.host), Vec::<std::path::PathBuf>::new());
}

/// The race (CVE-2021-30465): while containers start with a volume whose target goes through
/// `/shared/d`, something that can write the shared volume (here a thread of this test,
/// which is what a container sharing the volume can do too) swaps the directory `d` and a
/// symlink to a host directory with renameat2(RENAME_EXCHANGE), as fast as it can. Each run
/// either mounts inside the container or refuses; the host directory gets nothing.
#[test]
fn the_volume_mount_point_race_never_reaches_the_host() {
    let _g = serial();
    if !root_or_skip("volume race") {
        return;
    }
    let d = race_dirs();
    std::fs::create_dir(d.shared.join("d")).unwrap();
    std::os::unix::fs::symlink(&d.host, d.shared.join("l")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swaps = {
        let stop = stop.clone();
        let (a, b) = (
            std::ffi::CString::new(d.shared.join("d").as_os_str().as_encoded_bytes()).unwrap(),
            std::ffi::CString::new(d.shared.join("l").as_os_str().as_encoded_bytes()).unwrap(),
        );
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: two valid C strings; renameat2 changes only names in our temp dir.
                let r = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(r, 0, "renameat2: {}", std::io::Error::last_os_error());
                n += 1;
            }
            n
        })
    };
    let (a, b) = volume_args(&d);
    let started = std::time::Instant::now();
    let (mut runs, mut mounted, mut refused) = (0, 0, 0);
    let mut other = Vec::new();
    while runs < 100 && started.elapsed() < std::time::Duration::from_secs(60) {
        let (code, out, err) = sh(&["-v", &a, "-v", &b], "true");
        runs += 1;
        match code {
            0 => mounted += 1,
            125 => refused += 1,
            _ => other.push(format!("{code}: {out}{err}")),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swaps.join().expect("the swapping thread");
    eprintln!(
        "volume race: {runs} runs in {:.1} s ({mounted} mounted, {refused} refused), {swaps} swaps",
        started.elapsed().as_secs_f64()
    );
    assert!(other.is_empty(), "{other:?}");
    assert!(swaps > 1000, "the race did not run: {swaps} swaps");
    assert_eq!(
        tree(&d.host),
        Vec::<std::path::PathBuf>::new(),
        "stagebox made files in the host directory the symlink names"
    );
    // Nothing but the two names (and what was made inside the shared directory) is there.
    let top: Vec<_> = std::fs::read_dir(&d.shared)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top.len(), 2, "{top:?}");
}
