//! Unix socket paths of any length.
//!
//! A `sockaddr_un` holds at most 108 bytes of path (`sun_path`), so `bind(2)` and
//! `connect(2)` refuse a longer one, however legal the path is to every other call. A
//! state directory deep in a checkout easily makes `…/containers/ID/attach.sock` longer.
//! runc and containerd meet the same limit; the way round it is to open the socket's
//! directory and name the socket through the descriptor: `/proc/self/fd/N/NAME` is short,
//! and the kernel resolves it to the very same directory entry.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The most bytes of path a `sockaddr_un` holds, its terminating NUL included.
pub const SUN_PATH_MAX: usize = 108;

/// `path` as `bind`/`connect` can take it: the path itself when it fits, otherwise
/// `/proc/self/fd/N/NAME` through an open descriptor of its directory (returned too, as it
/// must stay open until the call is made).
fn reachable(path: &Path) -> std::io::Result<(Option<File>, PathBuf)> {
    if path.as_os_str().len() < SUN_PATH_MAX {
        return Ok((None, path.to_path_buf()));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok((None, path.to_path_buf()));
    };
    let dir = File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    Ok((Some(dir), short))
}

/// `bind(2)` a listening socket at `path`, however long.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    let (_dir, short) = reachable(path)?;
    UnixListener::bind(short)
}

/// `connect(2)` to the socket at `path`, however long.
pub fn connect(path: &Path) -> std::io::Result<UnixStream> {
    let (_dir, short) = reachable(path)?;
    UnixStream::connect(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_longer_than_sun_path_binds_and_connects() {
        let base = std::env::temp_dir().join(format!("sb-unixsock-{}", std::process::id()));
        let deep = base.join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("attach.sock");
        assert!(path.as_os_str().len() > SUN_PATH_MAX);
        // The plain call refuses it: the reason this module exists.
        assert!(UnixListener::bind(&path).is_err());
        let listener = bind(&path).unwrap();
        assert!(path.exists(), "the socket is at the long path itself");
        let _client = connect(&path).unwrap();
        let (_conn, _) = listener.accept().unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
