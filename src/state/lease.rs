//! A lease is a file locked with flock(2) for as long as its holder lives. The kernel drops
//! the lock when the holder dies, however it dies (SIGKILL included), so a lease is never
//! lost and never handed out twice: whoever finds the file unlocked may take it. The one
//! helper for the idea: `subids` holds slices of subordinate ids with it, and
//! `network::ipam` holds addresses. Callers serialize allocation and release with a
//! directory-wide [`lock_exclusive`] on a `.lock` file, so a lease file is never removed
//! while another process is opening it.

use crate::error::{Error, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

fn open_rw(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))
}

/// Opens (making it if missing) and locks `path` exclusively, waiting for the lock.
pub fn lock_exclusive(path: &Path) -> Result<Flock<File>> {
    Flock::lock(open_rw(path)?, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io(format!("flock {}", path.display()), e.into()))
}

/// Takes the lease at `path` if nobody holds it: the lock, with `holder` and this process's
/// pid written into the file (for `ps` and inspect). None when a live process holds it.
pub fn try_take(path: &Path, holder: &str) -> Result<Option<Flock<File>>> {
    match Flock::lock(open_rw(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(mut l) => {
            use std::io::Write as _;
            let _ = l.set_len(0);
            writeln!(l, "{holder} {}", std::process::id())
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
            Ok(Some(l))
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::io(format!("flock {}", path.display()), e.into())),
    }
}

/// Whether a live process holds the lease at `path` (tested with a shared lock for an
/// instant; a missing file is not held).
pub fn is_held(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    Flock::lock(f, FlockArg::LockSharedNonblock).is_err()
}

/// The holder name and pid written in a lease file.
pub fn holder_of(path: &Path) -> (String, Option<u32>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut w = text.split_whitespace();
    (
        w.next().unwrap_or("").to_string(),
        w.next().and_then(|p| p.parse().ok()),
    )
}

/// Gives a lease back: removes its file if it is still the one this lock is on, then unlocks.
/// The caller holds the directory's lock.
pub fn give_back(lock: Flock<File>, path: &Path) -> Result<()> {
    let ours = lock.metadata().ok().map(|m| m.ino());
    let on_disk = std::fs::metadata(path).ok().map(|m| m.ino());
    if ours.is_some() && ours == on_disk {
        std::fs::remove_file(path)
            .map_err(|e| Error::io(format!("remove {}", path.display()), e))?;
    }
    drop(lock);
    Ok(())
}

/// Removes the lease file at `path` when nobody holds it (its holder died); true if removed.
/// The caller holds the directory's lock.
pub fn remove_if_free(path: &Path) -> Result<bool> {
    let Ok(f) = File::open(path) else {
        return Ok(false);
    };
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(_held) => {
            std::fs::remove_file(path)
                .map_err(|e| Error::io(format!("remove {}", path.display()), e))?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_held_until_given_back_or_its_lock_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        let l = try_take(&p, "a").unwrap().expect("free");
        assert!(is_held(&p));
        assert!(try_take(&p, "b").unwrap().is_none());
        assert_eq!(holder_of(&p).0, "a");
        assert!(!remove_if_free(&p).unwrap());
        give_back(l, &p).unwrap();
        assert!(!p.exists() && !is_held(&p));
        let l = try_take(&p, "c").unwrap().expect("free again");
        drop(l); // a holder that dies: the file stays, unlocked
        assert!(p.exists() && !is_held(&p));
        assert!(remove_if_free(&p).unwrap());
    }
}
