//! The default rootfs from busybox-static: one static binary and a symlink per applet.

use super::elf::{elf_kind, ElfKind};
use super::files::{copy_file, io_at, set_mode, skeleton};
use crate::error::{Error, Result};
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

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
