//! `stagebox diff`: what a container added (A), changed (C) and deleted (D), read from its
//! overlay upper layer, as `docker diff` prints it.
//!
//! The upper layer holds exactly what the container wrote: new files (A, when no lower layer
//! has the path), copied-up files (C), whiteouts (character devices 0/0: D) and opaque
//! directories (xattr trusted.overlay.opaque=y: a lower directory replaced, C). Directories
//! that only contain changes are listed as C, as Docker does. Volumes are bind mounts on top
//! of the overlay, so only their mount points can appear here, never their contents.

use crate::rootfs::whiteout::{is_opaque, is_whiteout};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Entry {
    pub path: String,
    /// 'A', 'C' or 'D'.
    pub kind: char,
}

fn in_lower(lower: &[PathBuf], rel: &Path) -> bool {
    lower
        .iter()
        .any(|l| std::fs::symlink_metadata(l.join(rel)).is_ok())
}

fn walk(upper: &Path, rel: &Path, lower: &[PathBuf], out: &mut Vec<Entry>) {
    let Ok(rd) = std::fs::read_dir(upper.join(rel)) else {
        return;
    };
    for e in rd.flatten() {
        let rel_child = rel.join(e.file_name());
        let Ok(md) = e.metadata() else { continue };
        if crate::rootfs::whiteout::is_init_placeholder(&rel_child, &md) {
            continue;
        }
        let path = format!("/{}", rel_child.display());
        if is_whiteout(&md) {
            out.push(Entry { path, kind: 'D' });
            continue;
        }
        let existed = in_lower(lower, &rel_child);
        if md.is_dir()
            && existed
            && crate::rootfs::whiteout::only_init_placeholders(upper, &rel_child)
        {
            // Copied up only to hold the init files' mount points: nothing the container did.
            continue;
        }
        out.push(Entry {
            path,
            kind: if existed { 'C' } else { 'A' },
        });
        if md.is_dir() {
            let below: Vec<PathBuf> = if is_opaque(&e.path()) {
                Vec::new()
            } else {
                lower.to_vec()
            };
            walk(upper, &rel_child, &below, out);
        }
    }
}

/// The changes in `upper` relative to the `lower` layers, sorted by path.
pub fn diff(upper: &Path, lower: &[PathBuf]) -> Vec<Entry> {
    let mut out = Vec::new();
    walk(upper, Path::new(""), lower, &mut out);
    out.sort();
    out
}

pub fn render(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| format!("{} {}\n", e.kind, e.path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_changed_and_deleted() {
        let d = tempfile::tempdir().unwrap();
        let lower = d.path().join("lower");
        let upper = d.path().join("upper");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::write(lower.join("etc/hosts"), "x").unwrap();
        std::fs::write(lower.join("gone"), "x").unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/hosts"), "y").unwrap();
        std::fs::write(upper.join("new"), "y").unwrap();
        // A whiteout needs CAP_MKNOD; skip that part when not root.
        let whiteout = nix::sys::stat::mknod(
            &upper.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .is_ok();
        let text = render(&diff(&upper, &[lower]));
        let mut want = "C /etc\nC /etc/hosts\n".to_string();
        if whiteout {
            want.push_str("D /gone\n");
        }
        want.push_str("A /new\n");
        assert_eq!(text, want);
    }
}
