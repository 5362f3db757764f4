//! Layers as tarballs: unpacking one into a directory that overlayfs can use as a lower
//! layer, and packing a directory (a container's upper layer, or a whole rootfs) into one.
//!
//! Whiteouts are spelled differently on each side:
//!
//! | meaning                     | in a layer tarball (OCI)  | in an overlay layer directory            |
//! |-----------------------------|---------------------------|------------------------------------------|
//! | NAME was deleted            | empty file `.wh.NAME`     | character device 0/0 named NAME          |
//! | DIR replaces the one below  | empty file `DIR/.wh..wh..opq` | xattr `trusted.overlay.opaque=y` on DIR |
//!
//! Unpacking is where an image can attack the host, so every entry is checked before anything
//! is written: no absolute paths, no `..`, never writing through a symlink (every parent
//! directory must be a real directory made by this unpack), hard links only to files already
//! in this layer, device nodes only under `dev/`. Anything else is refused with the entry's
//! name, and the caller removes the half-made directory: nothing lands outside it.

use crate::error::{Error, Result};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// A reader that hashes (sha256) and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    pub bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
    /// "sha256:<hex>" of everything read so far.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex(&self.hasher.clone().finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A writer that hashes (sha256) and counts what passes through it.
pub struct HashingWriter<W> {
    pub inner: W,
    hasher: Sha256,
    pub bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex(&self.hasher.clone().finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// "sha256:<hex>" of some bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Undoes gzip when the stream starts with gzip's magic; refuses zstd (not supported here).
pub fn decompressed<'a, R: Read + 'a>(r: R, what: &str) -> Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(1 << 16, r);
    let head = br
        .fill_buf()
        .map_err(|e| Error::io(format!("read {what}"), e))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(flate2::read::MultiGzDecoder::new(br)));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(Error::usage(format!(
            "{what} is zstd-compressed, which stagebox cannot read; recompress it with gzip or leave it uncompressed"
        )));
    }
    Ok(Box::new(br))
}

fn bad(entry: &str, why: impl std::fmt::Display) -> Error {
    Error::usage(format!("refusing layer entry {entry:?}: {why}"))
}

/// A tar entry's path as a relative path inside the layer, or None for the layer's root
/// itself (`./`). Absolute paths and `..` are refused.
pub fn clean_entry_path(raw: &Path) -> Result<Option<PathBuf>> {
    let shown = raw.display().to_string();
    // The layer's root itself ("/", "./"): umoci writes it as "/".
    if raw
        .as_os_str()
        .as_bytes()
        .iter()
        .all(|b| *b == b'/' || *b == b'.')
        && !shown.contains("..")
    {
        return Ok(None);
    }
    if raw.as_os_str().as_bytes().first() == Some(&b'/') {
        return Err(bad(
            &shown,
            "an absolute path would be written outside the layer",
        ));
    }
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => return Err(bad(&shown, "'..' would climb out of the layer")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(bad(
                    &shown,
                    "an absolute path would be written outside the layer",
                ))
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Makes sure every parent directory of `rel` inside `dest` is a real directory (creating the
/// missing ones); a symlink among them is refused: writing through it could land anywhere.
fn safe_parent(dest: &Path, rel: &Path, entry: &str) -> Result<PathBuf> {
    let mut cur = dest.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(md) if md.file_type().is_symlink() => {
                    return Err(bad(
                        entry,
                        format!(
                            "its parent {} is a symlink; writing through it could land outside the layer",
                            cur.strip_prefix(dest).unwrap_or(&cur).display()
                        ),
                    ))
                }
                Ok(md) if md.is_dir() => {}
                Ok(_) => {
                    return Err(bad(
                        entry,
                        format!("its parent {} is not a directory", cur.strip_prefix(dest).unwrap_or(&cur).display()),
                    ))
                }
                Err(_) => std::fs::create_dir(&cur).map_err(|e| Error::io(format!("create {}", cur.display()), e))?,
            }
        }
    }
    Ok(dest.join(rel))
}

/// Removes whatever is at `path` (never following a symlink) so an entry can take its place.
fn clear(path: &Path, keep_dir: bool) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() && keep_dir => Ok(()),
        Ok(md) if md.is_dir() => std::fs::remove_dir_all(path)
            .map_err(|e| Error::io(format!("remove {}", path.display()), e)),
        Ok(_) => std::fs::remove_file(path)
            .map_err(|e| Error::io(format!("remove {}", path.display()), e)),
        Err(_) => Ok(()),
    }
}

fn mknod(path: &Path, kind: nix::sys::stat::SFlag, mode: u32, dev: u64) -> Result<()> {
    nix::sys::stat::mknod(
        path,
        kind,
        nix::sys::stat::Mode::from_bits_truncate(mode),
        dev,
    )
    .map_err(|e| Error::sys(format!("mknod {}", path.display()), e))
}

/// Marks a directory opaque for both kinds of overlay mount: `trusted.overlay.opaque` for the
/// host's (only root may write it), `user.overlay.opaque` for one made inside a user
/// namespace (`userxattr`), so the same layer works with and without the user stage.
pub fn set_opaque(dir: &Path) -> Result<()> {
    let [trusted, user] = crate::rootfs::whiteout::OPAQUE_XATTRS;
    if nix::unistd::geteuid().is_root() {
        xattr_set(dir, trusted, b"y")?;
    }
    xattr_set(dir, user, b"y")
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    use std::ffi::CString;
    let p = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::usage("path contains a NUL byte"))?;
    let n = CString::new(name).map_err(|_| Error::usage("xattr name contains a NUL byte"))?;
    // SAFETY: p and n are NUL-terminated; value is readable for its length.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        return Err(Error::sys(
            format!("setxattr {name} on {}", path.display()),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// What an unpack found, for the trace.
#[derive(Debug, Default, Clone)]
pub struct Unpacked {
    pub entries: u64,
    pub whiteouts: u64,
    pub opaque: u64,
    /// "sha256:..." of the uncompressed tar stream (the layer's diff_id).
    pub diff_id: String,
    pub bytes: u64,
}

/// Unpacks a layer tarball (gzip or plain) into `dest`, an empty directory, turning OCI
/// whiteouts into overlay ones. On error, `dest` may hold part of the layer (the caller
/// removes it); nothing is ever written outside it.
pub fn unpack(reader: impl Read, dest: &Path, what: &str) -> Result<Unpacked> {
    let mut hashing = HashingReader::new(decompressed(reader, what)?);
    let mut stats = unpack_tar(&mut hashing, dest, what)?;
    // Read to the end: tar stops at its two zero blocks, the digest covers the whole stream.
    std::io::copy(&mut hashing, &mut std::io::sink())
        .map_err(|e| Error::io(format!("read {what}"), e))?;
    stats.diff_id = hashing.digest();
    stats.bytes = hashing.bytes;
    Ok(stats)
}

fn unpack_tar(r: &mut dyn Read, dest: &Path, what: &str) -> Result<Unpacked> {
    let root = nix::unistd::geteuid().is_root();
    let mut archive = tar::Archive::new(r);
    let mut stats = Unpacked::default();
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| Error::io(format!("read {what}"), e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io(format!("read {what}"), e))?;
        let raw = entry
            .path()
            .map_err(|e| Error::io(format!("read {what}"), e))?
            .into_owned();
        let shown = raw.display().to_string();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let Some(rel) = clean_entry_path(&raw)? else {
            continue;
        };
        stats.entries += 1;
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == OPAQUE_MARKER {
            let dir = safe_parent(dest, &rel, &shown)?;
            let dir = dir.parent().unwrap_or(dest);
            set_opaque(dir)?;
            stats.opaque += 1;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                continue; // aufs bookkeeping (.wh..wh.plnk and friends): not content
            }
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
                return Err(bad(&shown, "a whiteout must name a file in its directory"));
            }
            let target = safe_parent(dest, &rel.with_file_name(hidden), &shown)?;
            clear(&target, false)?;
            mknod(&target, nix::sys::stat::SFlag::S_IFCHR, 0o000, 0)?;
            stats.whiteouts += 1;
            continue;
        }
        let h = entry.header();
        let mode = h
            .mode()
            .map_err(|e| Error::io(format!("{what}: mode of {shown}"), e))?
            & 0o7777;
        let uid = h.uid().unwrap_or(0) as u32;
        let gid = h.gid().unwrap_or(0) as u32;
        let mtime = h.mtime().unwrap_or(0) as i64;
        let target = safe_parent(dest, &rel, &shown)?;
        match kind {
            tar::EntryType::Directory => {
                clear(&target, true)?;
                if !target.is_dir() {
                    std::fs::create_dir(&target)
                        .map_err(|e| Error::io(format!("create {}", target.display()), e))?;
                }
                dir_times.push((target.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                clear(&target, false)?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&target)
                    .map_err(|e| Error::io(format!("create {}", target.display()), e))?;
                std::io::copy(&mut entry, &mut f)
                    .map_err(|e| Error::io(format!("write {}", target.display()), e))?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| Error::io(format!("read {what}"), e))?
                    .ok_or_else(|| bad(&shown, "a symlink without a target"))?;
                clear(&target, false)?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|e| Error::io(format!("symlink {}", target.display()), e))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| Error::io(format!("read {what}"), e))?
                    .ok_or_else(|| bad(&shown, "a hard link without a target"))?;
                let Some(lrel) = clean_entry_path(&link).map_err(|_| {
                    bad(
                        &shown,
                        format!(
                            "its hard link target {} is outside the layer",
                            link.display()
                        ),
                    )
                })?
                else {
                    return Err(bad(&shown, "a hard link to the layer's root directory"));
                };
                let src = existing_in_layer(dest, &lrel).ok_or_else(|| {
                    bad(
                        &shown,
                        format!(
                            "its hard link target {} is not a file earlier in this layer",
                            link.display()
                        ),
                    )
                })?;
                clear(&target, false)?;
                std::fs::hard_link(&src, &target)
                    .map_err(|e| Error::io(format!("link {}", target.display()), e))?;
                continue; // a hard link shares the target's owner, mode and times
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                if !rel.starts_with("dev") {
                    return Err(bad(&shown, "device nodes are only allowed under /dev"));
                }
                let major = h.device_major().ok().flatten().unwrap_or(0) as u64;
                let minor = h.device_minor().ok().flatten().unwrap_or(0) as u64;
                if kind == tar::EntryType::Char && major == 0 && minor == 0 {
                    return Err(bad(&shown, "a character device 0/0 is overlayfs's whiteout; layers spell deletes as .wh. files"));
                }
                let sflag = if kind == tar::EntryType::Char {
                    nix::sys::stat::SFlag::S_IFCHR
                } else {
                    nix::sys::stat::SFlag::S_IFBLK
                };
                clear(&target, false)?;
                mknod(&target, sflag, mode, nix::sys::stat::makedev(major, minor))?;
            }
            tar::EntryType::Fifo => {
                clear(&target, false)?;
                nix::unistd::mkfifo(&target, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .map_err(|e| Error::sys(format!("mkfifo {}", target.display()), e))?;
            }
            other => return Err(bad(&shown, format!("unsupported tar entry type {other:?}"))),
        }
        // Owner first: chown clears the setuid/setgid bits that chmod then puts back.
        match nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &target,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(()) => {}
            Err(nix::errno::Errno::EPERM) if !root => {}
            Err(e) => return Err(Error::sys(format!("chown {}", target.display()), e)),
        }
        if kind != tar::EntryType::Symlink {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io(format!("chmod {}", target.display()), e))?;
        }
        if kind != tar::EntryType::Directory {
            set_mtime(&target, mtime);
        }
    }
    // Directory times last: creating their entries changed them.
    for (d, t) in dir_times.iter().rev() {
        set_mtime(d, *t);
    }
    Ok(stats)
}

fn set_mtime(path: &Path, secs: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    let _ = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
}

/// A non-directory already in the layer at `rel`, reached through real directories only.
fn existing_in_layer(dest: &Path, rel: &Path) -> Option<PathBuf> {
    let mut cur = dest.to_path_buf();
    let n = rel.components().count();
    for (i, c) in rel.components().enumerate() {
        cur.push(c);
        let md = std::fs::symlink_metadata(&cur).ok()?;
        if i + 1 < n && !md.is_dir() {
            return None;
        }
        if i + 1 == n && md.is_dir() {
            return None;
        }
    }
    Some(cur)
}

/// How `pack` treats overlay's own markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackMode {
    /// A container's upper layer: whiteouts become `.wh.NAME`, opaque dirs `.wh..wh..opq`.
    Upper,
    /// A plain root filesystem directory (import of the default rootfs).
    Plain,
}

fn header_for(md: &std::fs::Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(md.uid() as u64);
    h.set_gid(md.gid() as u64);
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_size(0);
    h
}

/// Packs the tree under `dir` into an uncompressed tar written to `out`, entries sorted by
/// name (so the same tree gives the same bytes, apart from times).
pub fn pack<W: Write>(dir: &Path, mode: PackMode, out: W) -> Result<W> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    pack_dir(&mut b, dir, Path::new(""), mode, &mut links)?;
    b.into_inner().map_err(|e| Error::io("finish layer tar", e))
}

fn tar_err(e: std::io::Error) -> Error {
    Error::io("write layer tar", e)
}

fn pack_dir<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    mode: PackMode,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(format!("read {}", dir.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let relp = rel.join(&name);
        let md = std::fs::symlink_metadata(&path)
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        let ft = md.file_type();
        if mode == PackMode::Upper
            && (crate::rootfs::whiteout::is_init_placeholder(&relp, &md)
                || (md.is_dir() && crate::rootfs::whiteout::only_init_placeholders(root, &relp)))
        {
            continue;
        }
        if mode == PackMode::Upper && crate::rootfs::whiteout::is_whiteout(&md) {
            let wh = rel.join(format!("{WHITEOUT_PREFIX}{}", name.to_string_lossy()));
            let mut h = header_for(&md, tar::EntryType::Regular);
            h.set_mode(0o644);
            b.append_data(&mut h, &wh, std::io::empty())
                .map_err(tar_err)?;
        } else if ft.is_dir() {
            let mut h = header_for(&md, tar::EntryType::Directory);
            b.append_data(&mut h, &relp, std::io::empty())
                .map_err(tar_err)?;
            if mode == PackMode::Upper && crate::rootfs::whiteout::is_opaque(&path) {
                let mut h = header_for(&md, tar::EntryType::Regular);
                h.set_mode(0o644);
                b.append_data(&mut h, relp.join(OPAQUE_MARKER), std::io::empty())
                    .map_err(tar_err)?;
            }
            pack_dir(b, root, &relp, mode, links)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path)
                .map_err(|e| Error::io(format!("readlink {}", path.display()), e))?;
            let mut h = header_for(&md, tar::EntryType::Symlink);
            b.append_link(&mut h, &relp, &target).map_err(tar_err)?;
        } else if ft.is_file() {
            if md.nlink() > 1 {
                if let Some(first) = links.get(&(md.dev(), md.ino())) {
                    let mut h = header_for(&md, tar::EntryType::Link);
                    b.append_link(&mut h, &relp, first).map_err(tar_err)?;
                    continue;
                }
                links.insert((md.dev(), md.ino()), relp.clone());
            }
            let mut h = header_for(&md, tar::EntryType::Regular);
            h.set_size(md.len());
            let f = std::fs::File::open(&path)
                .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
            b.append_data(&mut h, &relp, f.take(md.len()))
                .map_err(tar_err)?;
        } else if ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            };
            let mut h = header_for(&md, kind);
            let _ = h.set_device_major(nix::sys::stat::major(md.rdev()) as u32);
            let _ = h.set_device_minor(nix::sys::stat::minor(md.rdev()) as u32);
            b.append_data(&mut h, &relp, std::io::empty())
                .map_err(tar_err)?;
        } else if ft.is_fifo() {
            let mut h = header_for(&md, tar::EntryType::Fifo);
            b.append_data(&mut h, &relp, std::io::empty())
                .map_err(tar_err)?;
        }
        // Sockets are not files one can ship; Docker skips them too.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small layer tarball: (name, contents), names ending in '/' are directories.
    fn layer_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(if name.ends_with('/') {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn entry_paths_are_checked() {
        assert_eq!(
            clean_entry_path(Path::new("./etc/passwd")).unwrap(),
            Some(PathBuf::from("etc/passwd"))
        );
        assert_eq!(clean_entry_path(Path::new("./")).unwrap(), None);
        assert_eq!(clean_entry_path(Path::new("/")).unwrap(), None);
        assert!(clean_entry_path(Path::new("/etc/passwd")).is_err());
        assert!(clean_entry_path(Path::new("a/../../x")).is_err());
    }

    #[test]
    fn whiteouts_round_trip() {
        if !nix::unistd::geteuid().is_root() {
            return; // mknod of a whiteout and trusted.* xattrs need root
        }
        let d = tempfile::tempdir().unwrap();
        let tar = layer_tar(&[
            ("etc/", b""),
            ("etc/.wh.passwd", b""),
            ("home/.wh..wh..opq", b""),
            ("home/new", b"hi"),
        ]);
        let dest = d.path().join("l");
        std::fs::create_dir(&dest).unwrap();
        let st = unpack(&tar[..], &dest, "test").unwrap();
        assert_eq!((st.whiteouts, st.opaque), (1, 1));
        assert!(crate::rootfs::whiteout::is_whiteout(
            &std::fs::symlink_metadata(dest.join("etc/passwd")).unwrap()
        ));
        assert!(crate::rootfs::whiteout::is_opaque(&dest.join("home")));
        assert_eq!(st.diff_id, sha256(&tar));
        // And back: the packed upper spells them the OCI way again.
        let packed = pack(&dest, PackMode::Upper, Vec::new()).unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(&packed[..]).entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        assert_eq!(
            names,
            [
                "etc",
                "etc/.wh.passwd",
                "home",
                "home/.wh..wh..opq",
                "home/new"
            ]
        );
    }
}
