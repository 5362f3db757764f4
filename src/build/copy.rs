//! COPY and ADD: files from the build context (never from outside it: symlinks are resolved
//! and checked) packed into a new layer tarball, owned as `--chown` says, with ADD's local
//! archives unpacked.

use super::containerfile::{normalize, perr};
use crate::error::{Error, Result};
use crate::image::layer::{self, clean_entry_path, sha256};
use crate::image::store::{LayerDesc, Store};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// A file (or directory, or archive for ADD) from the context, checked to be inside it.
#[derive(Debug, Clone)]
pub struct CopySource {
    /// The path in the context as written.
    pub given: String,
    /// The host path (symlinks resolved, inside the context).
    pub path: PathBuf,
    /// ADD of a local tar archive: unpack it at the destination.
    pub archive: bool,
}

impl CopySource {
    /// What the cache key sees of it: names, modes, owners, contents (not times).
    pub(super) fn fingerprint(&self) -> Result<String> {
        let mut out = format!("{}|{}|", self.given, self.archive);
        let mut stack = vec![self.path.clone()];
        while let Some(p) = stack.pop() {
            let md = std::fs::symlink_metadata(&p)
                .map_err(|e| Error::io(format!("stat {}", p.display()), e))?;
            let rel = p
                .strip_prefix(&self.path)
                .unwrap_or(&p)
                .display()
                .to_string();
            out.push_str(&format!("{rel}:{:o}:", md.mode()));
            if md.is_dir() {
                let mut names: Vec<PathBuf> = std::fs::read_dir(&p)
                    .map_err(|e| Error::io(format!("read {}", p.display()), e))?
                    .flatten()
                    .map(|e| e.path())
                    .collect();
                names.sort();
                names.reverse();
                stack.extend(names);
            } else if md.file_type().is_symlink() {
                out.push_str(
                    &std::fs::read_link(&p)
                        .map(|t| t.display().to_string())
                        .unwrap_or_default(),
                );
            } else if md.is_file() {
                let bytes =
                    std::fs::read(&p).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
                out.push_str(&sha256(&bytes));
            }
            out.push('\n');
        }
        Ok(out)
    }
}

fn is_archive(p: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    head[..n].starts_with(&[0x1f, 0x8b]) || (n >= 262 && &head[257..262] == b"ustar")
}

/// Checks the sources of a COPY/ADD: inside the context, symlinks included.
pub fn collect_sources(
    context: &Path,
    srcs: &[String],
    add: bool,
    line: usize,
) -> Result<Vec<CopySource>> {
    let mut out = Vec::new();
    for s in srcs {
        if add && (s.contains("://") || s.starts_with("git@")) {
            return Err(perr(
                line,
                format!("ADD {s}: URLs are not supported (stagebox builds without network)"),
            ));
        }
        let mut rel = PathBuf::new();
        for c in Path::new(s).components() {
            match c {
                Component::Normal(x) => rel.push(x),
                Component::ParentDir => {
                    if !rel.pop() {
                        return Err(perr(
                            line,
                            format!("COPY {s}: the source is outside the build context"),
                        ));
                    }
                }
                _ => {}
            }
        }
        let joined = context.join(&rel);
        let path = std::fs::canonicalize(&joined).map_err(|_| {
            perr(
                line,
                format!(
                    "COPY {s}: no such file in the build context {}",
                    context.display()
                ),
            )
        })?;
        if !path.starts_with(context) {
            return Err(perr(
                line,
                format!(
                    "COPY {s}: it is a symlink to {}, outside the build context",
                    path.display()
                ),
            ));
        }
        let archive = add && path.is_file() && is_archive(&path);
        out.push(CopySource {
            given: s.clone(),
            path,
            archive,
        });
    }
    Ok(out)
}

/// The metadata a COPY writes for a directory on the way to its destination: the image's own
/// when it has the directory (so /tmp keeps its sticky bit), else root's 0755.
fn parent_header(layers: &[PathBuf], inside: &Path) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    match crate::rootfs::resolve_in_layers(layers, inside)
        .ok()
        .and_then(|p| std::fs::symlink_metadata(p).ok())
        .filter(|m| m.is_dir())
    {
        Some(md) => {
            h.set_mode(md.mode() & 0o7777);
            h.set_uid(md.uid() as u64);
            h.set_gid(md.gid() as u64);
            h.set_mtime(md.mtime().max(0) as u64);
        }
        None => {
            h.set_mode(0o755);
            h.set_mtime(crate::units::now_secs());
        }
    }
    h
}

/// COPY/ADD: one layer holding the destination's directories and the copied files.
pub(super) fn copy_step(
    store: &Store,
    layers: &[LayerDesc],
    workdir: &str,
    files: &[CopySource],
    dest: &str,
    chown: Option<&str>,
    line: usize,
) -> Result<LayerDesc> {
    let mut lower = Vec::new();
    for l in layers.iter().rev() {
        lower.push(store.layer_dir(l)?);
    }
    let ids = match chown {
        Some(u) => Some(crate::image::user::resolve(&lower, u)?),
        None => None,
    };
    let as_dir = dest.ends_with('/')
        || files.len() > 1
        || files.iter().any(|f| f.path.is_dir() || f.archive);
    let dest_abs = if dest.starts_with('/') {
        PathBuf::from(dest)
    } else {
        Path::new(workdir).join(dest)
    };
    // Resolve symlinks of the image on the way (a COPY to /bin/ lands in /usr/bin when /bin
    // is a link), then write the result as plain directories.
    let target_dir_inside = if as_dir {
        dest_abs.clone()
    } else {
        dest_abs
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| "/".into())
    };
    let resolved: PathBuf = if lower.is_empty() {
        PathBuf::from(normalize(&target_dir_inside))
    } else {
        let comps =
            crate::rootfs::resolve_inside(&lower, &target_dir_inside).map_err(|e| perr(line, e))?;
        let mut p = PathBuf::from("/");
        p.extend(comps);
        p
    };
    let rel_dir =
        clean_entry_path(resolved.strip_prefix("/").unwrap_or(&resolved))?.unwrap_or_default();
    let (digest, size) = store.put_blob_with(|w| {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        let mut so_far = PathBuf::new();
        for c in rel_dir.components() {
            so_far.push(c);
            let mut h = parent_header(&lower, &Path::new("/").join(&so_far));
            b.append_data(&mut h, &so_far, std::io::empty())
                .map_err(tar_err)?;
        }
        for f in files {
            if f.archive {
                add_archive(&mut b, &f.path, &rel_dir)?;
            } else if f.path.is_dir() {
                append_tree(&mut b, &f.path, &rel_dir, ids.as_ref())?;
            } else {
                let name = if as_dir {
                    rel_dir.join(f.path.file_name().unwrap_or_default())
                } else {
                    rel_dir.join(dest_abs.file_name().unwrap_or_default())
                };
                append_one(&mut b, &f.path, &name, ids.as_ref())?;
            }
        }
        b.finish().map_err(tar_err)
    })?;
    Ok(LayerDesc {
        diff_id: digest.clone(),
        digest,
        size,
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
    })
}

fn tar_err(e: std::io::Error) -> Error {
    Error::io("write layer tar", e)
}

fn append_one<W: Write>(
    b: &mut tar::Builder<W>,
    src: &Path,
    name: &Path,
    ids: Option<&crate::image::user::Ids>,
) -> Result<()> {
    let md = std::fs::symlink_metadata(src)
        .map_err(|e| Error::io(format!("stat {}", src.display()), e))?;
    let mut h = tar::Header::new_gnu();
    h.set_mode(md.mode() & 0o7777);
    // COPY makes files owned by root unless --chown says otherwise, as Docker does.
    h.set_uid(ids.map(|i| i.uid).unwrap_or(0) as u64);
    h.set_gid(ids.map(|i| i.gid).unwrap_or(0) as u64);
    h.set_mtime(md.mtime().max(0) as u64);
    if md.file_type().is_symlink() {
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        let t = std::fs::read_link(src)
            .map_err(|e| Error::io(format!("readlink {}", src.display()), e))?;
        b.append_link(&mut h, name, t).map_err(tar_err)
    } else if md.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, name, std::io::empty())
            .map_err(tar_err)
    } else if md.is_file() {
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(md.len());
        let f = std::fs::File::open(src)
            .map_err(|e| Error::io(format!("open {}", src.display()), e))?;
        b.append_data(&mut h, name, f.take(md.len()))
            .map_err(tar_err)
    } else {
        Err(Error::usage(format!(
            "COPY {}: only files, directories and symlinks can be copied",
            src.display()
        )))
    }
}

/// A directory's contents (not the directory itself, as Docker copies them) under `dest`.
fn append_tree<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Path,
    dest: &Path,
    ids: Option<&crate::image::user::Ids>,
) -> Result<()> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("read {}", dir.display()), e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for p in names {
        let name = dest.join(p.file_name().unwrap_or_default());
        append_one(b, &p, &name, ids)?;
        if std::fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            append_tree(b, &p, &name, ids)?;
        }
    }
    Ok(())
}

/// ADD of a local archive: its entries, checked, under `dest`.
fn add_archive<W: Write>(b: &mut tar::Builder<W>, archive: &Path, dest: &Path) -> Result<()> {
    let f = std::fs::File::open(archive)
        .map_err(|e| Error::io(format!("open {}", archive.display()), e))?;
    let what = archive.display().to_string();
    let mut a = tar::Archive::new(layer::decompressed(f, &what)?);
    for e in a
        .entries()
        .map_err(|e| Error::io(format!("read {what}"), e))?
    {
        let mut e = e.map_err(|e| Error::io(format!("read {what}"), e))?;
        let raw = e
            .path()
            .map_err(|e| Error::io(format!("read {what}"), e))?
            .into_owned();
        let Some(rel) = clean_entry_path(&raw)? else {
            continue;
        };
        let mut h = e.header().clone();
        let name = dest.join(rel);
        match h.entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let t = e
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let t = if h.entry_type() == tar::EntryType::Link {
                    dest.join(clean_entry_path(&t)?.unwrap_or_default())
                } else {
                    t
                };
                b.append_link(&mut h, &name, t).map_err(tar_err)?;
            }
            _ => b.append_data(&mut h, &name, &mut e).map_err(tar_err)?,
        }
    }
    Ok(())
}
