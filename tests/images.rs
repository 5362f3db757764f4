//! Images, measured from outside: what `run IMAGE` takes from the config, what `commit`
//! writes into a layer tarball, a Containerfile built step by step (with its cache), the
//! classic "COPY a server, EXPOSE 80, CMD" example listening inside, skopeo and umoci reading
//! what stagebox writes and the other way round, and crafted layer tarballs refused without
//! a byte written outside the layer.

mod common;
use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let o = stagebox(args);
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "stagebox {args:?} failed ({:?})\nstdout: {out}\nstderr: {err}",
        o.status.code()
    );
    out
}

/// Runs stagebox and expects exit 125, its last line on stderr one sentence containing
/// `needle` (build traces its steps before it).
fn refused(args: &[&str], needle: &str) -> String {
    let o = stagebox(args);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(125), "stagebox {args:?}: {err}");
    let last = err.trim().lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("stagebox: ") && last.contains(needle),
        "stagebox {args:?}: expected {needle:?} in {err}"
    );
    if args[0] != "build" {
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    last
}

fn build(ctx: &Path, containerfile: &str, tag: &str) -> (String, String) {
    std::fs::write(ctx.join("Containerfile"), containerfile).unwrap();
    let o = stagebox(&["build", "-t", tag, &ctx.display().to_string()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "build {tag} failed\n{err}");
    (out, err)
}

fn run_img(args: &[&str]) -> String {
    let mut all = vec!["run", "--rm", "--trace", "off"];
    all.extend_from_slice(args);
    ok(&all)
}

/// The names in a layer tarball (a blob of the store).
fn tar_names(blob: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(std::fs::File::open(blob).unwrap());
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

fn inspect(key: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["inspect", key])).unwrap()
}

#[test]
fn run_applies_entrypoint_cmd_env_workdir_and_user_as_docker_does() {
    if !root_or_skip("run image config") {
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    build(
        ctx.path(),
        "FROM default\nENV GREETING=hello WHO=world\nWORKDIR /srv/app\nENTRYPOINT [\"/bin/echo\", \"ep\"]\nCMD [\"default-cmd\"]\n",
        "cfg-test:1",
    );
    assert_eq!(run_img(&["cfg-test:1"]).trim(), "ep default-cmd");
    assert_eq!(run_img(&["cfg-test:1", "replaced"]).trim(), "ep replaced");
    // --entrypoint replaces it (and drops the image's Cmd); the env and workdir come along.
    let out = run_img(&[
        "--entrypoint",
        "/bin/sh",
        "cfg-test:1",
        "-c",
        "echo $GREETING $WHO; pwd; id -u",
    ]);
    assert_eq!(out, "hello world\n/srv/app\n0\n");
    assert_eq!(
        run_img(&[
            "-e",
            "WHO=you",
            "--entrypoint",
            "",
            "cfg-test:1",
            "sh",
            "-c",
            "echo $WHO"
        ])
        .trim(),
        "you"
    );
    // USER by name from the image's /etc/passwd, and numeric uid:gid.
    build(
        ctx.path(),
        "FROM default\nRUN echo 'app:x:1234:2345::/home/app:/bin/sh' >> /etc/passwd\nUSER app\n",
        "user-test:1",
    );
    assert_eq!(
        run_img(&["user-test:1", "sh", "-c", "id -u; id -g; echo $HOME"]),
        "1234\n2345\n/home/app\n"
    );
    assert_eq!(
        run_img(&["--user", "7:8", "user-test:1", "sh", "-c", "id -u; id -g"]),
        "7\n8\n"
    );
    // The container record names the image.
    ok(&[
        "run",
        "--trace",
        "off",
        "--name",
        "img-record",
        "cfg-test:1",
    ]);
    assert_eq!(
        ok(&["inspect", "-f", "image", "img-record"]).trim(),
        "cfg-test:1"
    );
    ok(&["rm", "img-record"]);
    // A missing image: one sentence, 125.
    refused(&["run", "no-such-image:1"], "no image \"no-such-image:1\"");
    ok(&["rmi", "cfg-test:1", "user-test:1"]);
}

#[test]
fn commit_turns_the_upper_layer_into_an_image_with_oci_whiteouts() {
    if !root_or_skip("commit") {
        return;
    }
    let name = "commit-src";
    let _ = stagebox(&["rm", "-f", name]);
    let o = stagebox(&[
        "run", "--trace", "off", "--name", name, "-v", "/scratch", "--", "sh", "-c",
        "echo new > /new; rm /etc/passwd; rm -rf /home; mkdir /home; touch /home/fresh; echo secret > /scratch/in-volume",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let id = ok(&[
        "commit",
        "-m",
        "my change",
        "-c",
        "CMD [\"cat\", \"/new\"]",
        name,
        "committed:v1",
    ]);
    assert!(id.trim().starts_with("sha256:"));
    let img = inspect("committed:v1");
    let layers = img["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        2,
        "the default rootfs plus the committed layer"
    );
    let top = layers[1].as_str().unwrap().trim_start_matches("sha256:");
    let names = tar_names(&state_dir().join("images/blobs/sha256").join(top));
    for want in [
        "new",
        "etc/.wh.passwd",
        "home",
        "home/.wh..wh..opq",
        "home/fresh",
        "scratch",
    ] {
        assert!(
            names.iter().any(|n| n.trim_end_matches('/') == want),
            "{want} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.contains("in-volume")),
        "a volume's content leaked into the layer: {names:?}"
    );
    // The new image runs its new Cmd, on top of the old layer with the deletes applied.
    assert_eq!(run_img(&["committed:v1"]).trim(), "new");
    assert_eq!(
        run_img(&[
            "committed:v1",
            "sh",
            "-c",
            "test -e /etc/passwd || echo gone; ls /home"
        ]),
        "gone\nfresh\n"
    );
    let hist = ok(&["history", "committed:v1"]);
    assert!(hist.lines().nth(1).unwrap().contains("my change"), "{hist}");
    ok(&["rm", "-f", name]);
    ok(&["rmi", "committed:v1"]);
    refused(&["inspect", "committed:v1"], "no container or image");
}

fn static_server(dir: &Path) -> Option<PathBuf> {
    let src = dir.join("server.c");
    std::fs::write(
        &src,
        r#"#include <sys/socket.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(80);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 8)) return 1;
    for (;;) {
        int c = accept(s, 0, 0);
        if (c < 0) continue;
        const char *m = "HTTP/1.0 200 OK\r\n\r\nhello from the image\n";
        write(c, m, strlen(m));
        close(c);
    }
}
"#,
    )
    .unwrap();
    let out = dir.join("server");
    let st = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .ok()?;
    std::fs::remove_file(&src).unwrap();
    st.success().then_some(out)
}

/// The Go server of examples/hello-server, built static with the host's `go` (CI installs
/// Debian's golang-go), or None where there is no Go.
fn go_server(dir: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-server/main.go");
    let out = dir.join("server");
    let gocache = dir.join(".gocache");
    let st = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(&src)
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", &gocache)
        .env("HOME", dir)
        .status()
        .ok()?;
    let _ = std::fs::remove_dir_all(&gocache);
    st.success().then_some(out)
}

/// One HTTP GET to 127.0.0.1:port (the only address a test sends to), with a timeout.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    (!body.is_empty()).then_some(body)
}

#[test]
fn the_classic_example_builds_caches_and_answers_on_a_published_port() {
    if !root_or_skip("classic build") {
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    // The Go server of the README where Go is installed; else the same idea in C; else
    // busybox's httpd serving a file.
    let (containerfile, path, want) = if go_server(ctx.path()).is_some() {
        (
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello-server/Dockerfile"),
            )
            .unwrap(),
            "/hello",
            "{\"message\":\"hello\",\"status\":\"ok\"}\n",
        )
    } else if static_server(ctx.path()).is_some() {
        (
            "FROM default\nWORKDIR /app\nCOPY server /app/\nEXPOSE 80\nCMD [\"/app/server\"]\n"
                .to_string(),
            "/",
            "hello from the image\n",
        )
    } else {
        let bb = stagebox::rootfs::default::ensure(
            state_dir(),
            stagebox::rootfs::default::RootfsSource::Auto,
        )
        .unwrap()
        .path;
        std::fs::copy(bb.join("bin/busybox"), ctx.path().join("httpd")).unwrap();
        std::fs::write(ctx.path().join("index.html"), "hello from the image\n").unwrap();
        (
            "FROM default\nWORKDIR /app\nCOPY httpd index.html /app/\nEXPOSE 80\nCMD [\"/app/httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/app\"]\n".to_string(),
            "/",
            "hello from the image\n",
        )
    };
    let containerfile = containerfile.as_str();
    let (id, err) = build(ctx.path(), containerfile, "classic:1");
    assert!(id.trim().starts_with("sha256:"));
    for want in [
        "STEP 1/5: FROM default",
        "STEP 3/5: COPY",
        "--> layer sha256:",
        "STEP 5/5: CMD",
    ] {
        assert!(
            err.contains(want),
            "{want:?} not in the build trace:\n{err}"
        );
    }
    let img = inspect("classic:1");
    assert_eq!(
        img["Config"]["ExposedPorts"],
        serde_json::json!({"80/tcp": {}})
    );
    assert_eq!(img["Config"]["WorkingDir"], "/app");
    // Same instruction, same parent, same files: the cached layer.
    let (_, again) = build(ctx.path(), containerfile, "classic:1");
    assert!(again.contains("using cache"), "{again}");
    assert_eq!(inspect("classic:1")["RootFS"], img["RootFS"]);
    // Run it with -P (EXPOSE 80 on a free port of the host) and ask it over 127.0.0.1, as
    // `curl http://127.0.0.1:8080/hello` does with -p 8080:80.
    let name = "classic-server";
    let _ = stagebox(&["rm", "-f", name]);
    let mut child = cmd(&["run", "--trace", "off", "--name", name, "-P", "classic:1"])
        .spawn()
        .unwrap();
    let mut answer = None;
    let mut port = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if port.is_none() {
            port = stagebox::state::container::find(state_dir(), name)
                .ok()
                .filter(|c| c.is_running())
                .and_then(|c| c.ports.first().map(|p| (p.container_port, p.host_port)));
        }
        if let Some((80, host)) = port {
            answer = http_get(host, path);
            if answer.is_some() {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let listed = stagebox(&["port", name]);
    ok(&["rm", "-f", name]);
    let _ = child.wait();
    let (cport, host) = port.expect("-P published no port");
    assert_eq!(cport, 80);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        format!("80/tcp -> 0.0.0.0:{host}")
    );
    assert_eq!(
        answer.as_deref(),
        Some(want),
        "GET {path} on 127.0.0.1:{host}"
    );
    ok(&["rmi", "classic:1"]);
}

#[test]
fn build_refuses_bad_containerfiles_and_sources_outside_the_context() {
    let d = tempfile::tempdir().unwrap();
    let ctx = d.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(d.path().join("secret"), "s").unwrap();
    std::os::unix::fs::symlink("../secret", ctx.join("leak")).unwrap();
    let c = ctx.display().to_string();
    for (file, needle) in [
        (
            "FROM default\nRUN true\nFROBNICATE x\n",
            "Containerfile line 3: unknown instruction FROBNICATE",
        ),
        (
            "RUN true\n",
            "Containerfile line 1: the first instruction must be FROM",
        ),
        (
            "FROM default\nCOPY ../secret /x\n",
            "Containerfile line 2: COPY ../secret: the source is outside the build context",
        ),
        (
            "FROM default\n\nCOPY leak /x\n",
            "Containerfile line 3: COPY leak: it is a symlink to",
        ),
    ] {
        std::fs::write(ctx.join("Containerfile"), file).unwrap();
        refused(&["build", "-t", "bad:1", &c], needle);
    }
    if root_or_skip("failing RUN") {
        std::fs::write(ctx.join("Containerfile"), "FROM default\nRUN exit 3\n").unwrap();
        refused(
            &["build", "-t", "bad:1", &c],
            "Containerfile line 2: RUN /bin/sh -c exit 3 exited with status 3",
        );
    }
}

#[test]
fn import_of_a_rootfs_tarball_and_a_docker_save_archive() {
    if !root_or_skip("import/load") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let rootfs = stagebox::rootfs::default::ensure(
        state_dir(),
        stagebox::rootfs::default::RootfsSource::Auto,
    )
    .unwrap()
    .path;
    // A gzip'd rootfs tarball, as a distribution ships one.
    let tgz = d.path().join("rootfs.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&tgz).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        b.follow_symlinks(false);
        b.append_dir_all(".", &rootfs).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    ok(&["import", &tgz.display().to_string(), "imported:1"]);
    assert_eq!(
        run_img(&["imported:1", "sh", "-c", "echo imported"]).trim(),
        "imported"
    );
    // A docker save archive (legacy layout: manifest.json, config, <id>/layer.tar).
    let ds = d.path().join("ds");
    std::fs::create_dir_all(ds.join("l1")).unwrap();
    let layer = ds.join("l1/layer.tar");
    stagebox::image::transfer::pack_dir_to_file(&rootfs, &layer).unwrap();
    let diff_id = stagebox::image::layer::sha256(&std::fs::read(&layer).unwrap());
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/echo", "from docker save"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    std::fs::write(ds.join("cfg.json"), config.to_string()).unwrap();
    std::fs::write(
        ds.join("manifest.json"),
        serde_json::json!([{"Config": "cfg.json", "RepoTags": ["dsaved:v2"], "Layers": ["l1/layer.tar"]}]).to_string(),
    )
    .unwrap();
    let archive = d.path().join("saved.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&archive).unwrap());
        b.append_dir_all(".", &ds).unwrap();
        b.finish().unwrap();
    }
    assert_eq!(
        ok(&["load", &archive.display().to_string()]).trim(),
        "Loaded image: dsaved:v2"
    );
    assert_eq!(run_img(&["dsaved:v2"]).trim(), "from docker save");
    let images = ok(&["images"]);
    for want in ["default ", "imported ", "dsaved "] {
        assert!(
            images.lines().any(|l| l.starts_with(want)),
            "{want} not in\n{images}"
        );
    }
    ok(&["rmi", "imported:1", "dsaved:v2"]);
}

fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn skopeo_and_umoci_read_what_stagebox_writes_and_the_other_way_round() {
    if !root_or_skip("interop") {
        return;
    }
    if !have("skopeo") || !have("umoci") {
        eprintln!("SKIP interop: skopeo or umoci is not installed");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let ctx = d.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    build(
        &ctx,
        "FROM default\nRUN echo interop > /marker && rm /etc/group\nCMD [\"cat\", \"/marker\"]\n",
        "interop:t1",
    );
    let layout = d.path().join("layout");
    let l = layout.display().to_string();
    ok(&["save", "interop:t1", &l]);
    let o = std::process::Command::new("skopeo")
        .args(["inspect", &format!("oci:{l}:t1")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    let bundle = d.path().join("bundle");
    let o = std::process::Command::new("umoci")
        .args(["unpack", "--image", &format!("{l}:t1")])
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/marker")).unwrap(),
        "interop\n"
    );
    assert!(
        !bundle.join("rootfs/etc/group").exists(),
        "umoci did not apply the .wh. whiteout"
    );
    assert!(bundle.join("rootfs/etc/hosts").exists());
    // skopeo copies it (recompressing the layers with gzip) and stagebox loads and runs that.
    let copy = d.path().join("copy");
    let o = std::process::Command::new("skopeo")
        .args([
            "copy",
            "-q",
            &format!("oci:{l}:t1"),
            &format!("oci:{}:copied", copy.display()),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    ok(&["load", "-t", "from-skopeo:1", &copy.display().to_string()]);
    assert_eq!(run_img(&["from-skopeo:1"]).trim(), "interop");
    // An image umoci made from scratch: a busybox layer and a Cmd.
    let u = d.path().join("umo");
    let us = u.display().to_string();
    let umoci = |args: &[&str]| {
        let o = std::process::Command::new("umoci")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "umoci {args:?}: {}", text(&o).1);
    };
    umoci(&["init", "--layout", &us]);
    umoci(&["new", "--image", &format!("{us}:v1")]);
    let ub = d.path().join("ubundle");
    umoci(&[
        "unpack",
        "--image",
        &format!("{us}:v1"),
        &ub.display().to_string(),
    ]);
    let rootfs = stagebox::rootfs::default::ensure(
        state_dir(),
        stagebox::rootfs::default::RootfsSource::Auto,
    )
    .unwrap()
    .path;
    std::fs::create_dir_all(ub.join("rootfs/bin")).unwrap();
    std::fs::copy(rootfs.join("bin/busybox"), ub.join("rootfs/bin/busybox")).unwrap();
    umoci(&[
        "repack",
        "--image",
        &format!("{us}:v1"),
        &ub.display().to_string(),
    ]);
    umoci(&[
        "config",
        "--image",
        &format!("{us}:v1"),
        "--config.cmd",
        "/bin/busybox",
        "--config.cmd",
        "echo",
        "--config.cmd",
        "made by umoci",
    ]);
    assert_eq!(ok(&["load", &us]).trim(), "Loaded image: umo:v1");
    assert_eq!(run_img(&["umo:v1"]).trim(), "made by umoci");
    ok(&["rmi", "interop:t1", "from-skopeo:1", "umo:v1"]);
}

/// A tarball written header by header, so that it can hold what the tar crate would refuse
/// to write: absolute names, `..`, links anywhere.
fn evil_tar(path: &Path, entries: &[(&str, tar::EntryType, Option<&str>, &[u8])]) {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn crafted_layer_tarballs_are_refused_and_write_nothing_outside() {
    if !root_or_skip("evil tarballs") {
        return;
    }
    use tar::EntryType::*;
    let d = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let o = outside.path().display().to_string();
    let abs = format!("{o}/abs-written");
    let up = format!("../../../../../../../../..{o}/dotdot-written");
    let cases: Vec<(&str, Vec<(&str, tar::EntryType, Option<&str>, &[u8])>, &str)> = vec![
        (
            "absolute",
            vec![(&abs, Regular, None, b"x")],
            "an absolute path",
        ),
        (
            "dotdot",
            vec![(&up, Regular, None, b"x")],
            "'..' would climb out",
        ),
        (
            "symlink-then-write",
            vec![
                ("link", Symlink, Some(&o), b""),
                ("link/through-symlink", Regular, None, b"x"),
            ],
            "is a symlink",
        ),
        (
            "hardlink-abs",
            vec![("hl", Link, Some("/etc/passwd"), b"")],
            "outside the layer",
        ),
        (
            "hardlink-dotdot",
            vec![("hl", Link, Some("../../../../etc/passwd"), b"")],
            "outside the layer",
        ),
        (
            "hardlink-via-symlink",
            vec![
                ("s", Symlink, Some("/etc"), b""),
                ("hl", Link, Some("s/passwd"), b""),
            ],
            "not a file earlier in this layer",
        ),
        (
            "device",
            vec![("evil-null", Char, None, b"")],
            "device nodes are only allowed under /dev",
        ),
    ];
    for (name, entries, needle) in cases {
        let t = d.path().join(format!("{name}.tar"));
        evil_tar(&t, &entries);
        refused(
            &[
                "import",
                &t.display().to_string(),
                &format!("evil-{name}:1"),
            ],
            needle,
        );
        assert!(
            std::fs::read_dir(outside.path()).unwrap().next().is_none(),
            "{name}: something was written outside"
        );
    }
    assert!(!Path::new("/etc/through-symlink").exists());
    // Device nodes under dev/ are fine.
    let t = d.path().join("dev.tar");
    evil_tar(
        &t,
        &[
            ("dev/", Directory, None, b""),
            ("dev/null", Char, None, b""),
        ],
    );
    ok(&["import", &t.display().to_string(), "devnodes:1"]);
    ok(&["rmi", "devnodes:1"]);
    let mut s = String::new();
    std::fs::File::open("/etc/passwd")
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert!(s.contains("root"));
}

#[test]
fn an_image_with_many_layers_still_mounts() {
    if !root_or_skip("many layers") {
        return;
    }
    // 45 layers of absolute paths are longer than the page of mount data the kernel takes;
    // the rootfs stage then names them relative to STATE/layers.
    let ctx = tempfile::tempdir().unwrap();
    let mut file = String::from("FROM default\n");
    for i in 0..45 {
        std::fs::write(ctx.path().join(format!("f{i}")), format!("{i}\n")).unwrap();
        file.push_str(&format!("COPY f{i} /layers/f{i}\n"));
    }
    build(ctx.path(), &file, "many-layers:1");
    assert_eq!(
        inspect("many-layers:1")["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .len(),
        46
    );
    assert_eq!(
        run_img(&[
            "many-layers:1",
            "sh",
            "-c",
            "cat /layers/f0 /layers/f44; ls /layers | wc -l"
        ]),
        "0\n44\n45\n"
    );
    ok(&["rmi", "many-layers:1"]);
}

/// `build --network`: a RUN step gets the default bridge (an `eth0` and a default route, as
/// in Docker), `--network none` only `lo`, `--network host` the host's own namespace; a
/// container's namespace is refused in one sentence.
#[test]
fn build_network_decides_what_a_run_step_can_reach() {
    if !root_or_skip("build --network") {
        return;
    }
    let ctx = tempfile::tempdir().unwrap();
    let host_ns = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    std::fs::write(
        ctx.path().join("Containerfile"),
        "FROM default\nRUN echo $(ls /sys/class/net) > /nets; readlink /proc/self/ns/net > /ns; cat /proc/net/route | wc -l > /routes\nCMD [\"cat\", \"/nets\", \"/ns\", \"/routes\"]\n",
    )
    .unwrap();
    let dir = ctx.path().display().to_string();
    for (network, tag) in [
        (None, "buildnet:bridge"),
        (Some("none"), "buildnet:none"),
        (Some("host"), "buildnet:host"),
    ] {
        let mut args = vec!["build", "--no-cache", "-t", tag];
        if let Some(n) = network {
            args.extend(["--network", n]);
        }
        args.push(&dir);
        let o = stagebox(&args);
        assert!(o.status.success(), "build {network:?}: {}", text(&o).1);
        let out = run_img(&["--network", "none", tag]);
        let mut lines = out.lines();
        let nets: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        let ns = lines.next().unwrap_or("");
        let routes: usize = lines.next().unwrap_or("0").trim().parse().unwrap_or(0);
        match network {
            None => {
                assert_eq!(nets, ["eth0", "lo"], "{out}");
                assert_ne!(ns, host_ns);
                assert!(routes >= 3, "no default route in the RUN step: {out}");
            }
            Some("none") => {
                assert_eq!(nets, ["lo"], "{out}");
                assert_ne!(ns, host_ns);
                assert_eq!(routes, 1, "routes without a network: {out}");
            }
            _ => assert_eq!(ns, host_ns, "--network host is the host's namespace: {out}"),
        }
        ok(&["rmi", tag]);
    }
    let o = stagebox(&[
        "build",
        "--network",
        "container:x",
        "-t",
        "buildnet:c",
        &dir,
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o).1.contains("cannot join a container"),
        "{}",
        text(&o).1
    );
}
