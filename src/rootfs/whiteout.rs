//! How overlayfs marks what an upper layer removed or replaced (see the kernel's
//! Documentation/filesystems/overlayfs.rst). A deleted file is a *whiteout*: a character
//! device with device number 0/0 in the upper layer. A directory that replaces a lower one
//! whole is *opaque*: the upper directory has the xattr `trusted.overlay.opaque=y`, and
//! nothing of the lower directory shows through. An overlay mounted inside a user namespace
//! (with the `userxattr` option) writes and reads `user.overlay.opaque=y` instead, because
//! only the host's root may write `trusted.*` xattrs; stagebox reads both and writes both. OCI image layers write the same facts as
//! `.wh.NAME` and `.wh..wh..opq` files; `image/layer.rs` converts between the two.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Is this upper-layer entry a whiteout (a 0/0 character device)?
pub fn is_whiteout(md: &std::fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

/// Is this directory opaque (it hides everything the lower layers have under it)?
pub fn is_opaque(dir: &Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|x| xattr_get(dir, x).as_deref() == Some(b"y".as_slice()))
}

/// The xattrs that make a directory opaque: the host's overlay reads the first, an overlay
/// in a user namespace (`userxattr`) the second.
pub const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: p and n are NUL-terminated; buf is writable for its length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    Some(buf[..r as usize].to_vec())
}
/// True when directory `rel` of the upper layer `upper` holds nothing but init-file mount
/// points: copied up only to hold them, it is nothing the container did.
pub fn only_init_placeholders(upper: &std::path::Path, rel: &std::path::Path) -> bool {
    let Ok(rd) = std::fs::read_dir(upper.join(rel)) else {
        return false;
    };
    let mut any = false;
    for e in rd.flatten() {
        any = true;
        let ok = e
            .metadata()
            .is_ok_and(|md| is_init_placeholder(&rel.join(e.file_name()), &md));
        if !ok {
            return false;
        }
    }
    any
}

/// The files the runtime bind-mounts over every container's /etc (Docker's init layer),
/// relative to the root.
pub const INIT_FILES: [&str; 3] = ["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// True for an entry of an upper layer that is only the mount point the runtime made for one
/// of [`INIT_FILES`] (an empty file, where the image had none): `diff` and `commit` leave
/// it out, as Docker never commits its init layer.
pub fn is_init_placeholder(rel: &std::path::Path, md: &std::fs::Metadata) -> bool {
    md.is_file() && md.len() == 0 && INIT_FILES.iter().any(|f| rel == std::path::Path::new(f))
}
