//! The file operations both builders share: the skeleton of a root filesystem (/proc, /sys,
//! /dev, /tmp, /etc files), copying a file with its mode, and errors that name the path.

use crate::error::{Error, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub(super) fn io_at(what: &str, p: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let ctx = format!("{what} {}", p.display());
    move |e| Error::io(ctx, e)
}

pub(super) fn set_mode(p: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io_at("chmod", p))
}

/// The directories and /etc files every default rootfs has. Directories that already exist
/// (or are symlinks to directories, as `bin -> usr/bin`) are left as they are.
pub(super) fn skeleton(root: &Path, description: &str) -> Result<()> {
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
pub(super) fn copy_file(from: &Path, to: &Path) -> Result<()> {
    let md = std::fs::metadata(from).map_err(io_at("stat", from))?;
    std::fs::copy(from, to)
        .map_err(|e| Error::io(format!("copy {} to {}", from.display(), to.display()), e))?;
    set_mode(to, md.permissions().mode() & 0o777)
}
