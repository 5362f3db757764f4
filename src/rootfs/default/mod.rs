//! The default rootfs, made on first use in the state dir without any network.
//!
//! Two sources, each in its own directory so both can exist side by side:
//!
//! - `STATE/rootfs/busybox`: a static /bin/busybox and a symlink for each of its applets.
//! - `STATE/rootfs/host`: the host's own /bin/sh and a few tools, with every shared library
//!   `ldd` says they need and the ELF interpreter, each at the same path as on the host
//!   (host symlinks such as /lib -> usr/lib are recreated, so the loader finds them).
//!
//! A rootfs is built in `STATE/rootfs/.tmp-<id>` and renamed into place in one step
//! (renameat2 with RENAME_NOREPLACE), so a half-built tree is never seen under the final
//! name; if another run won the race, its tree is used and ours is removed. The metadata
//! file `STATE/rootfs/<name>.json` is written last: directory + json = finished.

use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// Where the host's busybox is looked for.
pub const BUSYBOX: &str = "/bin/busybox";

/// The marker file at the top of every default rootfs; holds the source description.
pub const MARKER: &str = ".stagebox-rootfs";

/// The tools the host source copies when the host has them (`sh` is required).
pub const HOST_TOOLS: &[&str] = &[
    "sh", "ls", "cat", "echo", "ps", "hostname", "mount", "umount", "sleep", "id", "readlink",
    "mkdir", "rm", "touch", "grep", "wc", "head", "tail", "env", "true", "false", "uname", "kill",
    "stat", "ip", "chroot", "cp", "mv", "ln", "sed", "printf", "test",
];

const TOOL_DIRS: &[&str] = &["/bin", "/usr/bin", "/sbin", "/usr/sbin"];

/// Where the default rootfs comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsSource {
    /// busybox-static when /bin/busybox is a static binary, else the host's tools.
    Auto,
    /// A static busybox and its applet links.
    Busybox,
    /// The host's /bin/sh and a few tools, with the shared libraries they need.
    Host,
}

impl RootfsSource {
    /// The directory name under STATE/rootfs/ (Auto has none: resolve it with [`choose`]).
    pub fn dir_name(self) -> &'static str {
        match self {
            RootfsSource::Auto => "auto",
            RootfsSource::Busybox => "busybox",
            RootfsSource::Host => "host",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DefaultRootfs {
    pub path: PathBuf,
    /// In words: "busybox-static (/bin/busybox, 1.36.1)" or "host tools: sh ls ... + 12 libraries".
    pub made_from: String,
    /// True when this call created it.
    pub created_now: bool,
}

/// The metadata file STATE/rootfs/<name>.json.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    pub source: String,
    pub made_from: String,
    /// Unix time, seconds.
    pub created: u64,
}

/// What an ELF file says about how it is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfKind {
    /// Not an ELF file (a script, say).
    NotElf,
    /// No PT_INTERP program header: the kernel runs it with no loader and no libraries.
    Static,
    /// Needs this ELF interpreter (the dynamic loader) and whatever libraries it loads.
    Dynamic(String),
}

/// Reads the ELF header and program headers of `path` (following symlinks) and reports
/// whether it has a PT_INTERP, and which.
pub fn elf_kind(path: &Path) -> Result<ElfKind> {
    let mut f =
        std::fs::File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
    let mut data = Vec::new();
    // Program headers sit near the start; 64 KiB is plenty for the header, the table and the
    // interpreter's name in every real binary. What is missing is reported as not ELF.
    f.by_ref()
        .take(64 * 1024)
        .read_to_end(&mut data)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    Ok(parse_elf_kind(&data))
}

/// [`elf_kind`] on bytes already read (the start of the file).
pub fn parse_elf_kind(data: &[u8]) -> ElfKind {
    const PT_INTERP: u32 = 3;
    if data.len() < 0x34 || &data[..4] != b"\x7fELF" {
        return ElfKind::NotElf;
    }
    let is64 = match data[4] {
        1 => false,
        2 => true,
        _ => return ElfKind::NotElf,
    };
    let le = match data[5] {
        1 => true,
        2 => false,
        _ => return ElfKind::NotElf,
    };
    let rd = |off: usize, n: usize| -> Option<u64> {
        let b = data.get(off..off + n)?;
        let mut v: u64 = 0;
        for i in 0..n {
            let byte = if le { b[n - 1 - i] } else { b[i] };
            v = (v << 8) | byte as u64;
        }
        Some(v)
    };
    let (phoff, phentsize, phnum) = if is64 {
        (rd(0x20, 8), rd(0x36, 2), rd(0x38, 2))
    } else {
        (rd(0x1c, 4), rd(0x2a, 2), rd(0x2c, 2))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        return ElfKind::NotElf;
    };
    for i in 0..phnum {
        let Some(base) = (phoff + i * phentsize).try_into().ok() else {
            return ElfKind::NotElf;
        };
        let base: usize = base;
        let Some(p_type) = rd(base, 4) else {
            return ElfKind::NotElf;
        };
        if p_type as u32 != PT_INTERP {
            continue;
        }
        let (off, size) = if is64 {
            (rd(base + 8, 8), rd(base + 32, 8))
        } else {
            (rd(base + 4, 4), rd(base + 16, 4))
        };
        let name = match (off, size) {
            (Some(o), Some(s)) => data
                .get(o as usize..(o as usize).saturating_add(s as usize))
                .map(|b| {
                    let b = b.split(|c| *c == 0).next().unwrap_or(b);
                    String::from_utf8_lossy(b).into_owned()
                })
                .unwrap_or_default(),
            _ => String::new(),
        };
        return ElfKind::Dynamic(name);
    }
    ElfKind::Static
}

/// True when `path` is an ELF binary with no ELF interpreter (runs with no libraries).
pub fn is_static_binary(path: &Path) -> bool {
    matches!(elf_kind(path), Ok(ElfKind::Static))
}

/// What `Auto` means on this host: Busybox when /bin/busybox is static, else Host.
pub fn choose(source: RootfsSource) -> RootfsSource {
    match source {
        RootfsSource::Auto if is_static_binary(Path::new(BUSYBOX)) => RootfsSource::Busybox,
        RootfsSource::Auto => RootfsSource::Host,
        s => s,
    }
}

/// Returns the default rootfs for `source`, creating it under STATE/rootfs/ if needed.
pub fn ensure(state_dir: &Path, source: RootfsSource) -> Result<DefaultRootfs> {
    let source = choose(source);
    let base = state_dir.join("rootfs");
    let name = source.dir_name();
    let dir = base.join(name);
    let meta_path = base.join(format!("{name}.json"));
    if dir.is_dir() {
        if let Some(meta) = read_metadata(&meta_path) {
            return Ok(DefaultRootfs {
                path: dir,
                made_from: meta.made_from,
                created_now: false,
            });
        }
    }
    std::fs::create_dir_all(&base)
        .map_err(|e| Error::io(format!("create {}", base.display()), e))?;
    remove_stale_temps(&base);
    let tmp = TempTree::new(base.join(format!(".tmp-{}", crate::state::ids::new_id())))?;
    let made_from = match source {
        RootfsSource::Busybox => build_busybox(tmp.path(), Path::new(BUSYBOX))?,
        _ => build_host(tmp.path())?,
    };
    std::fs::write(tmp.path().join(MARKER), format!("{made_from}\n"))
        .map_err(|e| Error::io(format!("write {}", tmp.path().join(MARKER).display()), e))?;
    let created_now = match rename_noreplace(tmp.path(), &dir) {
        Ok(()) => {
            tmp.keep();
            true
        }
        // Another run finished first (or a tree is already there without its json): use it.
        Err(e) if e == nix::errno::Errno::EEXIST || e == nix::errno::Errno::ENOTEMPTY => {
            drop(tmp);
            if let Some(meta) = read_metadata(&meta_path) {
                return Ok(DefaultRootfs {
                    path: dir,
                    made_from: meta.made_from,
                    created_now: false,
                });
            }
            false
        }
        Err(e) => {
            return Err(Error::sys(
                format!("rename {} to {}", tmp.path().display(), dir.display()),
                e,
            ))
        }
    };
    write_metadata(&meta_path, source, &made_from)?;
    Ok(DefaultRootfs {
        path: dir,
        made_from,
        created_now,
    })
}

fn read_metadata(path: &Path) -> Option<Metadata> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_metadata(path: &Path, source: RootfsSource, made_from: &str) -> Result<()> {
    let created = crate::units::now_secs();
    let meta = Metadata {
        source: source.dir_name().to_string(),
        made_from: made_from.to_string(),
        created,
    };
    crate::state::atomic::write_json_atomic(path, &meta)
}

/// rename(2) that fails with EEXIST instead of replacing an existing (empty) directory.
fn rename_noreplace(from: &Path, to: &Path) -> std::result::Result<(), nix::errno::Errno> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| nix::errno::Errno::EINVAL)
    };
    let (a, b) = (c(from)?, c(to)?);
    // SAFETY: renameat2 with two NUL-terminated paths that live across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    match nix::errno::Errno::last() {
        // The filesystem or kernel has no RENAME_NOREPLACE: check, then plain rename (a
        // non-empty target still fails with ENOTEMPTY).
        nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(nix::errno::Errno::EEXIST);
            }
            std::fs::rename(from, to)
                .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        }
        e => Err(e),
    }
}

/// Removes `.tmp-*` trees that a killed run left behind more than an hour ago.
fn remove_stale_temps(base: &Path) {
    let Ok(rd) = std::fs::read_dir(base) else {
        return;
    };
    for entry in rd.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(".tmp-") {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 3600);
        if old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A directory removed on drop unless kept.
struct TempTree {
    path: PathBuf,
    keep: bool,
}

impl TempTree {
    fn new(path: PathBuf) -> Result<Self> {
        std::fs::create_dir(&path)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        Ok(TempTree { path, keep: false })
    }
    fn path(&self) -> &Path {
        &self.path
    }
    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn io_at(what: &str, p: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let ctx = format!("{what} {}", p.display());
    move |e| Error::io(ctx, e)
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io_at("chmod", p))
}

/// The directories and /etc files every default rootfs has. Directories that already exist
/// (or are symlinks to directories, as `bin -> usr/bin`) are left as they are.
fn skeleton(root: &Path, description: &str) -> Result<()> {
    for d in [
        "usr", "usr/bin", "usr/sbin", "bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root",
        "mnt", "var", "home", "run",
    ] {
        let p = root.join(d);
        std::fs::create_dir_all(&p).map_err(io_at("create", &p))?;
    }
    set_mode(&root.join("tmp"), 0o1777)?;
    set_mode(&root.join("root"), 0o700)?;
    let files: [(&str, String); 4] = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n".into(),
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n".into()),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".into()),
        (
            "etc/os-release",
            format!("NAME=\"stagebox default rootfs\"\nID=stagebox\nPRETTY_NAME=\"stagebox default rootfs: {description}\"\n"),
        ),
    ];
    for (name, text) in files {
        let p = root.join(name);
        std::fs::write(&p, text).map_err(io_at("write", &p))?;
    }
    Ok(())
}

/// Copies a regular file's bytes, keeping its permission bits but never set-id bits.
fn copy_file(from: &Path, to: &Path) -> Result<()> {
    let md = std::fs::metadata(from).map_err(io_at("stat", from))?;
    std::fs::copy(from, to)
        .map_err(|e| Error::io(format!("copy {} to {}", from.display(), to.display()), e))?;
    set_mode(to, md.permissions().mode() & 0o777)
}

/// `BusyBox v1.35.0` from the first line of `busybox --help`.
fn busybox_version(busybox: &Path) -> Option<String> {
    let out = Command::new(busybox).arg("--help").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.starts_with("BusyBox"))?;
    Some(
        line.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The applets of `busybox --list-full` as relative paths (`usr/bin/env`), each checked to
/// stay inside the rootfs.
pub fn parse_applet_list(text: &str) -> Vec<PathBuf> {
    text.lines()
        .map(|l| l.trim().trim_start_matches('/'))
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.components().all(|c| matches!(c, Component::Normal(_))))
        .collect()
}

/// Builds the busybox tree in `root` from `busybox` (which must be static); returns the
/// description.
pub fn build_busybox(root: &Path, busybox: &Path) -> Result<String> {
    match elf_kind(busybox) {
        Ok(ElfKind::Static) => {}
        Ok(ElfKind::Dynamic(interp)) => {
            return Err(Error::usage(format!(
                "{} is not a static binary (it needs the loader {interp} and shared libraries), so it would not run in an empty rootfs; install busybox-static, or use --rootfs-source host",
                busybox.display()
            )))
        }
        Ok(ElfKind::NotElf) => {
            return Err(Error::usage(format!(
                "{} is not an ELF binary; install busybox-static, or use --rootfs-source host",
                busybox.display()
            )))
        }
        Err(e) => {
            return Err(Error::usage(format!(
                "no usable busybox ({e}); install busybox-static, or use --rootfs-source host"
            )))
        }
    }
    let version = busybox_version(busybox).unwrap_or_else(|| "version unknown".into());
    let full = Command::new(busybox).arg("--list-full").output();
    let applets = match full {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => {
            parse_applet_list(&String::from_utf8_lossy(&o.stdout))
        }
        _ => {
            // An old busybox without --list-full: every applet in bin/.
            let o = Command::new(busybox)
                .arg("--list")
                .output()
                .map_err(|e| Error::io(format!("run {} --list", busybox.display()), e))?;
            parse_applet_list(&String::from_utf8_lossy(&o.stdout))
                .into_iter()
                .filter(|p| p.components().count() == 1)
                .map(|p| Path::new("bin").join(p))
                .collect()
        }
    };
    if applets.is_empty() {
        return Err(Error::usage(format!(
            "{} lists no applets (--list-full and --list are empty); install busybox-static, or use --rootfs-source host",
            busybox.display()
        )));
    }
    // Applets are not known until the list is read; the description goes in the skeleton
    // afterwards, so count first.
    let mut links = 0usize;
    skeleton(root, "busybox-static")?;
    let dest = root.join("bin/busybox");
    copy_file(busybox, &dest)?;
    set_mode(&dest, 0o755)?;
    for rel in &applets {
        if rel == Path::new("bin/busybox") {
            continue;
        }
        let link = root.join(rel);
        if std::fs::symlink_metadata(&link).is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(io_at("create", parent))?;
        }
        symlink("/bin/busybox", &link).map_err(io_at("symlink", &link))?;
        links += 1;
    }
    let desc = format!(
        "busybox-static ({}, {version}, {links} applet links)",
        busybox.display()
    );
    let p = root.join("etc/os-release");
    std::fs::write(
        &p,
        format!("NAME=\"stagebox default rootfs\"\nID=stagebox\nPRETTY_NAME=\"stagebox default rootfs: {desc}\"\n"),
    )
    .map_err(io_at("write", &p))?;
    Ok(desc)
}

/// What one `ldd` output says: the files to copy, and the libraries it could not find.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LddOutput {
    pub paths: Vec<PathBuf>,
    pub missing: Vec<String>,
}

/// Parses `ldd` output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` gives the
/// path, `/lib64/ld-linux-x86-64.so.2 (0x...)` the interpreter, `linux-vdso.so.1 (0x...)`
/// (no file) nothing, and `libfoo.so => not found` a missing library.
pub fn parse_ldd(text: &str) -> LddOutput {
    let mut out = LddOutput::default();
    for line in text.lines() {
        let line = line.trim();
        let target = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    out.missing.push(name.trim().to_string());
                    continue;
                }
                rest
            }
            None => line,
        };
        let path = target.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') {
            out.paths.push(PathBuf::from(path));
        }
    }
    out
}

/// Files `bin` needs loaded: the ELF interpreter and its shared libraries, from `ldd`
/// (or, without ldd, from the loader's own `--list`, which is what ldd runs).
fn needed_files(bin: &Path, interp: &str) -> Result<Vec<PathBuf>> {
    let run = |cmd: &mut Command| -> Option<String> {
        let o = cmd.output().ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let text = run(Command::new("ldd").arg(bin))
        .or_else(|| run(Command::new(interp).arg("--list").arg(bin)))
        .ok_or_else(|| {
            Error::usage(format!(
                "cannot list the shared libraries of {} (ldd failed and {interp} --list failed)",
                bin.display()
            ))
        })?;
    let parsed = parse_ldd(&text);
    if !parsed.missing.is_empty() {
        return Err(Error::usage(format!(
            "{} needs libraries the host lacks: {}",
            bin.display(),
            parsed.missing.join(", ")
        )));
    }
    let mut paths = parsed.paths;
    if !interp.is_empty() && !paths.iter().any(|p| p == Path::new(interp)) {
        paths.push(PathBuf::from(interp));
    }
    Ok(paths)
}

/// Copies host file `path` to the same path under `root`, recreating every symlink met on
/// the way (`/lib -> usr/lib`, `libc.so.6 -> libc-2.31.so`, `/bin/sh -> dash`) and creating
/// real directories as directories. Returns the real host file it copied. Whatever already
/// exists under `root` is kept.
pub fn mirror_host_path(root: &Path, path: &Path) -> Result<PathBuf> {
    let mut todo: Vec<std::ffi::OsString> = Vec::new();
    push_components(&mut todo, path);
    let mut cur = PathBuf::from("/");
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            cur.pop();
            continue;
        }
        let host = cur.join(&part);
        let rel = host.strip_prefix("/").unwrap_or(&host);
        let inside = root.join(rel);
        let md = std::fs::symlink_metadata(&host).map_err(io_at("stat", &host))?;
        let exists_inside = std::fs::symlink_metadata(&inside).is_ok();
        if md.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return Err(Error::Path {
                    path: path.to_path_buf(),
                    message: "too many levels of symbolic links".into(),
                });
            }
            let target = std::fs::read_link(&host).map_err(io_at("readlink", &host))?;
            if !exists_inside {
                symlink(&target, &inside).map_err(io_at("symlink", &inside))?;
            }
            if target.is_absolute() {
                cur = PathBuf::from("/");
            }
            push_components(&mut todo, &target);
        } else if md.is_dir() {
            if !exists_inside {
                std::fs::create_dir(&inside).map_err(io_at("create", &inside))?;
            }
            cur = host;
        } else if md.is_file() {
            if !todo.is_empty() {
                return Err(Error::Path {
                    path: path.to_path_buf(),
                    message: format!("{} is not a directory", host.display()),
                });
            }
            if !exists_inside {
                copy_file(&host, &inside)?;
            }
            cur = host;
        } else {
            return Err(Error::Path {
                path: host,
                message: "not a regular file, directory or symlink".into(),
            });
        }
    }
    Ok(cur)
}

fn push_components(todo: &mut Vec<std::ffi::OsString>, p: &Path) {
    for c in p.components().rev() {
        match c {
            Component::Normal(s) => todo.push(s.to_os_string()),
            Component::ParentDir => todo.push("..".into()),
            _ => {}
        }
    }
}

fn find_tool(name: &str) -> Option<PathBuf> {
    if name == "sh" {
        return std::fs::metadata("/bin/sh")
            .ok()
            .filter(|m| m.is_file())
            .map(|_| PathBuf::from("/bin/sh"));
    }
    TOOL_DIRS.iter().map(|d| Path::new(d).join(name)).find(|p| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Builds the host-tools tree in `root`; returns the description.
pub fn build_host(root: &Path) -> Result<String> {
    // Keep the host's merged-/usr layout: where /bin, /lib, /lib64 ... are symlinks on the
    // host, they are the same symlinks here (made before the skeleton fills in directories).
    for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = Path::new("/").join(top);
        if let Ok(target) = std::fs::read_link(&host) {
            let link = root.join(top);
            symlink(&target, &link).map_err(io_at("symlink", &link))?;
        }
    }
    // Targets such as usr/lib must exist for the links to be usable as directories.
    skeleton(root, "host tools")?;
    let mut copied: Vec<String> = Vec::new();
    let mut absent: Vec<String> = Vec::new();
    let mut unusable: Vec<String> = Vec::new();
    let mut libs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut interps: BTreeSet<String> = BTreeSet::new();
    for &tool in HOST_TOOLS {
        let Some(host_path) = find_tool(tool) else {
            if tool == "sh" {
                return Err(Error::usage(
                    "the host has no /bin/sh to build a rootfs from; install busybox-static, or give --rootfs DIR",
                ));
            }
            absent.push(tool.to_string());
            continue;
        };
        let real = std::fs::canonicalize(&host_path).map_err(io_at("resolve", &host_path))?;
        let needed = match elf_kind(&real)? {
            ElfKind::Dynamic(interp) => match needed_files(&real, &interp) {
                Ok(n) => {
                    interps.insert(interp);
                    n
                }
                Err(e) if tool != "sh" => {
                    unusable.push(format!("{tool} ({e})"));
                    continue;
                }
                Err(e) => return Err(e),
            },
            _ => Vec::new(),
        };
        for lib in &needed {
            mirror_host_path(root, lib)?;
            libs.insert(lib.clone());
        }
        mirror_host_path(root, &host_path)?;
        if tool == "sh" {
            let real_name = real
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            copied.push(if real_name == "sh" {
                "sh".into()
            } else {
                format!("sh ({real_name})")
            });
        } else {
            copied.push(tool.to_string());
        }
    }
    for i in &interps {
        libs.remove(Path::new(i));
    }
    let mut desc = format!(
        "host tools: {}, with {} shared libraries via ldd",
        copied.join(" "),
        libs.len()
    );
    if !interps.is_empty() {
        desc.push_str(&format!(
            " and the loader {}",
            interps.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if !absent.is_empty() {
        desc.push_str(&format!("; not on this host: {}", absent.join(" ")));
    }
    if !unusable.is_empty() {
        desc.push_str(&format!("; skipped: {}", unusable.join("; ")));
    }
    Ok(desc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busybox_here() -> bool {
        is_static_binary(Path::new(BUSYBOX))
    }

    #[test]
    fn elf_headers_are_read() {
        assert_eq!(parse_elf_kind(b"#!/bin/sh\necho hi\n"), ElfKind::NotElf);
        match elf_kind(Path::new("/bin/sh")).unwrap() {
            ElfKind::Dynamic(i) => assert!(i.starts_with('/'), "{i}"),
            ElfKind::Static => {}
            ElfKind::NotElf => panic!("/bin/sh is not ELF"),
        }
        // The test binary itself is linked statically (crt-static), with no PT_INTERP.
        let me = std::env::current_exe().unwrap();
        assert_eq!(elf_kind(&me).unwrap(), ElfKind::Static, "{}", me.display());
    }

    #[test]
    fn ldd_lines_are_parsed() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\tlibgone.so.1 => not found\n";
        let p = parse_ldd(text);
        assert_eq!(
            p.paths,
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert_eq!(p.missing, vec!["libgone.so.1".to_string()]);
    }

    #[test]
    fn applet_list_never_leaves_the_root() {
        let l = parse_applet_list("usr/bin/env\n/bin/sh\n../etc/x\nsbin/../../y\n\n");
        assert_eq!(
            l,
            vec![PathBuf::from("usr/bin/env"), PathBuf::from("bin/sh")]
        );
    }

    #[test]
    fn auto_picks_busybox_only_when_static() {
        let want = if busybox_here() {
            RootfsSource::Busybox
        } else {
            RootfsSource::Host
        };
        assert_eq!(choose(RootfsSource::Auto), want);
        assert_eq!(choose(RootfsSource::Host), RootfsSource::Host);
        assert_eq!(choose(RootfsSource::Busybox), RootfsSource::Busybox);
    }

    #[test]
    fn busybox_rootfs_has_sh_linked_to_busybox_and_the_marker() {
        if !busybox_here() {
            eprintln!("skipped: {BUSYBOX} is not a static binary here");
            return;
        }
        let state = tempfile::tempdir().unwrap();
        let r = ensure(state.path(), RootfsSource::Busybox).unwrap();
        assert!(r.created_now);
        assert_eq!(r.path, state.path().join("rootfs/busybox"));
        assert_eq!(
            std::fs::read_link(r.path.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        assert!(std::fs::symlink_metadata(r.path.join("bin/busybox"))
            .unwrap()
            .is_file());
        assert!(is_static_binary(&r.path.join("bin/busybox")));
        let marker = std::fs::read_to_string(r.path.join(MARKER)).unwrap();
        assert!(marker.starts_with("busybox-static"), "{marker}");
        assert!(r.made_from.contains("applet links"), "{}", r.made_from);
        let tmp = std::fs::metadata(r.path.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(tmp, 0o1777);
        let rootdir = std::fs::metadata(r.path.join("root"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(rootdir, 0o700);
        assert!(std::fs::read_to_string(r.path.join("etc/passwd"))
            .unwrap()
            .starts_with("root:x:0:0:"));
        let meta: Metadata = serde_json::from_str(
            &std::fs::read_to_string(state.path().join("rootfs/busybox.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(meta.made_from, r.made_from);
        assert!(meta.created > 0);
        // No temp trees left behind.
        let left: Vec<_> = std::fs::read_dir(state.path().join("rootfs"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(left.is_empty());
    }

    #[test]
    fn host_rootfs_has_an_executable_sh_and_its_libc() {
        let state = tempfile::tempdir().unwrap();
        let r = ensure(state.path(), RootfsSource::Host).unwrap();
        assert!(r.created_now);
        assert_eq!(r.path, state.path().join("rootfs/host"));
        let sh = crate::rootfs::resolve_in_root(&r.path, Path::new("/bin/sh")).unwrap();
        let md = std::fs::metadata(&sh).unwrap();
        assert!(
            md.is_file() && md.permissions().mode() & 0o111 != 0,
            "{}",
            sh.display()
        );
        assert!(r.made_from.starts_with("host tools: sh"), "{}", r.made_from);
        if let ElfKind::Dynamic(interp) = elf_kind(Path::new("/bin/sh")).unwrap() {
            let inside = crate::rootfs::resolve_in_root(&r.path, Path::new(&interp)).unwrap();
            assert!(inside.is_file(), "loader {interp} missing");
            let ldd = Command::new("ldd").arg("/bin/sh").output().unwrap();
            let libs = parse_ldd(&String::from_utf8_lossy(&ldd.stdout));
            let libc = libs
                .paths
                .iter()
                .find(|p| p.to_string_lossy().contains("libc."))
                .expect("sh links libc");
            assert!(crate::rootfs::resolve_in_root(&r.path, libc)
                .unwrap()
                .is_file());
        }
        // The host's /lib symlink is recreated as a symlink.
        if let Ok(t) = std::fs::read_link("/lib") {
            assert_eq!(std::fs::read_link(r.path.join("lib")).unwrap(), t);
        }
        assert!(state.path().join("rootfs/host.json").is_file());
    }

    #[test]
    fn building_twice_reuses_the_first() {
        let state = tempfile::tempdir().unwrap();
        let a = ensure(state.path(), RootfsSource::Host).unwrap();
        std::fs::write(a.path.join("tmp/mine"), b"x").unwrap();
        let b = ensure(state.path(), RootfsSource::Host).unwrap();
        assert!(a.created_now && !b.created_now);
        assert_eq!(a.path, b.path);
        assert_eq!(a.made_from, b.made_from);
        assert!(b.path.join("tmp/mine").exists());
    }

    #[test]
    fn a_tree_without_its_json_is_kept_and_described() {
        let state = tempfile::tempdir().unwrap();
        let a = ensure(state.path(), RootfsSource::Host).unwrap();
        std::fs::write(a.path.join("tmp/mine"), b"x").unwrap();
        std::fs::remove_file(state.path().join("rootfs/host.json")).unwrap();
        let b = ensure(state.path(), RootfsSource::Host).unwrap();
        assert!(!b.created_now);
        assert!(b.path.join("tmp/mine").exists());
        assert!(state.path().join("rootfs/host.json").is_file());
        let left = std::fs::read_dir(state.path().join("rootfs"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .count();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_missing_busybox_is_an_error_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let e = build_busybox(d.path(), Path::new("/nonexistent/busybox")).unwrap_err();
        assert!(e.to_string().contains("busybox-static"), "{e}");
        let e = build_busybox(d.path(), Path::new("/bin/sh"));
        if let ElfKind::Dynamic(_) = elf_kind(Path::new("/bin/sh")).unwrap() {
            assert!(e.unwrap_err().to_string().contains("not a static binary"));
        }
    }

    #[test]
    fn chroot_into_each_runs_a_shell() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: chroot(2) needs root");
            return;
        }
        let Some(chroot) = ["/usr/sbin/chroot", "/sbin/chroot", "/usr/bin/chroot"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        else {
            eprintln!("skipped: no chroot command on this host");
            return;
        };
        let state = tempfile::tempdir().unwrap();
        let mut sources = vec![RootfsSource::Host];
        if busybox_here() {
            sources.push(RootfsSource::Busybox);
        }
        for s in sources {
            let r = ensure(state.path(), s).unwrap();
            let out = Command::new(chroot)
                .arg(&r.path)
                .args(["/bin/sh", "-c", "echo hi; ls / >/dev/null && id -u"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{s:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n0\n", "{s:?}");
        }
    }
}
