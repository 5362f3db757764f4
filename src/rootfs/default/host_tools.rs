//! The default rootfs from the host's own tools: each tool with the loader and libraries
//! `ldd` names, copied to the same paths (symlinks kept), when no busybox-static is there.

use super::elf::{elf_kind, ElfKind};
use super::files::{copy_file, io_at, skeleton};
use crate::error::{Error, Result};
use std::collections::BTreeSet;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The tools the host source copies when the host has them (`sh` is required).
pub const HOST_TOOLS: &[&str] = &[
    "sh", "ls", "cat", "echo", "ps", "hostname", "mount", "umount", "sleep", "id", "readlink",
    "mkdir", "rm", "touch", "grep", "wc", "head", "tail", "env", "true", "false", "uname", "kill",
    "stat", "ip", "chroot", "cp", "mv", "ln", "sed", "printf", "test",
];
const TOOL_DIRS: &[&str] = &["/bin", "/usr/bin", "/sbin", "/usr/sbin"];

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
