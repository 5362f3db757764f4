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

pub mod busybox;
pub mod elf;
mod files;
pub mod host_tools;

pub use busybox::{build_busybox, parse_applet_list};
pub use elf::{elf_kind, is_static_binary, parse_elf_kind, ElfKind};
pub use host_tools::{build_host, mirror_host_path, parse_ldd, LddOutput, HOST_TOOLS};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Where the host's busybox is looked for.
pub const BUSYBOX: &str = "/bin/busybox";

/// The marker file at the top of every default rootfs; holds the source description.
pub const MARKER: &str = ".stagebox-rootfs";

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

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
