//! The subordinate ids `--userns=auto` hands out: one `stagebox` entry in /etc/subuid and
//! /etc/subgid (made on first use, as Docker's `userns-remap` makes `dockremap`), cut into
//! slices of 65536 ids, one slice per running container.
//!
//! A slice is taken by holding an exclusive flock(2) on its lease file,
//! `/run/stagebox/userns/<first host id>`, for as long as the container lives. The kernel
//! drops the lock when the holder dies, however it dies (SIGKILL included), so a slice is
//! never lost and never handed out twice: the next allocation finds the stale file, locks it
//! and reuses or removes it. The leases live in /run, not in the state directory, because the
//! ids belong to the host: two state directories share the one `stagebox` range.
//!
//! Allocation and release run under one more lock, `/run/stagebox/userns/.lock`, so that a
//! lease file is never removed while another run is opening it.

use crate::error::{Error, Result};
use crate::kernel::idmap::{self, IdMap, SubIdRange};
use nix::fcntl::Flock;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The name of the entry in /etc/subuid and /etc/subgid.
pub const ENTRY: &str = "stagebox";
/// Ids per container: 0..65535 inside, as Docker and podman map them.
pub const SLICE: u32 = 65536;
/// Slices in the entry stagebox makes: 32 containers with ranges of their own at once.
pub const SLICES: u32 = 32;
/// The lowest first id stagebox picks for its entry (below it live the host's own users).
pub const LOWEST: u32 = 100_000;
/// Where the leases live.
pub const LEASE_DIR: &str = "/run/stagebox/userns";

/// The files the entry lives in; tests point them elsewhere.
#[derive(Debug, Clone)]
pub struct SubidFiles {
    pub subuid: PathBuf,
    pub subgid: PathBuf,
    pub leases: PathBuf,
}

impl Default for SubidFiles {
    fn default() -> Self {
        SubidFiles {
            subuid: "/etc/subuid".into(),
            subgid: "/etc/subgid".into(),
            leases: LEASE_DIR.into(),
        }
    }
}

/// A slice held by this process: the uid and gid maps it gives, and the lock that holds it.
#[derive(Debug)]
pub struct Lease {
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    /// Whether this allocation added the `stagebox` entry to /etc/subuid and /etc/subgid.
    pub made_entry: bool,
    path: PathBuf,
    lock: Option<Flock<File>>,
    dir: PathBuf,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

fn read_or_empty(p: &Path) -> Result<String> {
    match std::fs::read_to_string(p) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::io(format!("read {}", p.display()), e)),
    }
}

/// The `stagebox` entry of one file's text, if it has one.
fn entry_in(text: &str) -> Option<SubIdRange> {
    idmap::parse_subid(text)
        .into_iter()
        .find(|r| r.owner == ENTRY)
}

/// The first id for a new entry: above every range either file holds, and above [`LOWEST`],
/// rounded up to a whole slice.
fn free_start(uids: &str, gids: &str) -> Result<u32> {
    let top = idmap::parse_subid(uids)
        .into_iter()
        .chain(idmap::parse_subid(gids))
        .map(|r| r.start as u64 + r.count as u64)
        .max()
        .unwrap_or(0)
        .max(LOWEST as u64);
    let start = top.div_ceil(SLICE as u64) * SLICE as u64;
    if start + (SLICE as u64) * (SLICES as u64) > u32::MAX as u64 {
        return Err(Error::usage(
            "/etc/subuid and /etc/subgid leave no room for stagebox's range of ids; add a line `stagebox:START:2097152` to both by hand",
        ));
    }
    Ok(start as u32)
}

/// The `stagebox` ranges (uid, gid), making the entries when they are missing. Returns
/// whether they were made.
fn ensure_entry(files: &SubidFiles) -> Result<(SubIdRange, SubIdRange, bool)> {
    let uids = read_or_empty(&files.subuid)?;
    let gids = read_or_empty(&files.subgid)?;
    if let (Some(u), Some(g)) = (entry_in(&uids), entry_in(&gids)) {
        return Ok((u, g, false));
    }
    let start = free_start(&uids, &gids)?;
    let made = SubIdRange {
        owner: ENTRY.into(),
        start,
        count: SLICE * SLICES,
    };
    let mut out = Vec::new();
    for (path, text) in [(&files.subuid, &uids), (&files.subgid, &gids)] {
        let range = match entry_in(text) {
            Some(r) => r,
            None => {
                let mut t = text.clone();
                if !t.is_empty() && !t.ends_with('\n') {
                    t.push('\n');
                }
                t.push_str(&format!("{ENTRY}:{}:{}\n", made.start, made.count));
                super::atomic::write_atomic(path, t.as_bytes())?;
                // /etc/subuid is read by everyone (newuidmap checks it as the user).
                let _ = std::fs::set_permissions(
                    path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o644),
                );
                made.clone()
            }
        };
        out.push(range);
    }
    Ok((out[0].clone(), out[1].clone(), true))
}

/// Takes the lowest free slice of the `stagebox` range.
pub fn allocate(files: &SubidFiles, holder: &str) -> Result<Lease> {
    std::fs::create_dir_all(&files.leases)
        .map_err(io(format!("create {}", files.leases.display())))?;
    let _global = super::lease::lock_exclusive(&files.leases.join(".lock"))?;
    let (uids, gids, made_entry) = ensure_entry(files)?;
    let slices = (uids.count / SLICE).min(gids.count / SLICE);
    if slices == 0 {
        return Err(Error::usage(format!(
            "the stagebox entry in {} has fewer than {SLICE} ids; give it at least {SLICE} (Docker's and podman's size)",
            files.subuid.display()
        )));
    }
    for i in 0..slices {
        let path = files.leases.join((uids.start + i * SLICE).to_string());
        if let Some(lock) = super::lease::try_take(&path, holder)? {
            let map = |start: u32| {
                vec![IdMap {
                    inside: 0,
                    outside: start + i * SLICE,
                    count: SLICE,
                }]
            };
            return Ok(Lease {
                uid_map: map(uids.start),
                gid_map: map(gids.start),
                made_entry,
                path,
                lock: Some(lock),
                dir: files.leases.clone(),
            });
        }
    }
    Err(Error::usage(format!(
        "all {slices} ranges of ids of the stagebox entry are in use by running containers; stop one, or make the entry in /etc/subuid and /etc/subgid larger"
    )))
}

impl Lease {
    /// Gives the slice back: removes the lease file (under the global lock) and unlocks.
    pub fn release(mut self) -> Result<()> {
        let _global = super::lease::lock_exclusive(&self.dir.join(".lock"))?;
        match self.lock.take() {
            Some(lock) => super::lease::give_back(lock, &self.path),
            None => Ok(()),
        }
    }
}

/// The leases in use now: first host ids of slices whose file is locked by a live process.
pub fn in_use(files: &SubidFiles) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(&files.leases) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = rd
        .flatten()
        .filter_map(|e| {
            let start: u32 = e.file_name().to_str()?.parse().ok()?;
            super::lease::is_held(&e.path()).then_some(start)
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> SubidFiles {
        SubidFiles {
            subuid: dir.join("subuid"),
            subgid: dir.join("subgid"),
            leases: dir.join("leases"),
        }
    }

    #[test]
    fn the_entry_is_made_above_every_range_and_slices_do_not_overlap() {
        let d = tempfile::tempdir().unwrap();
        let f = files(d.path());
        std::fs::write(&f.subuid, "alice:100000:65536\n").unwrap();
        std::fs::write(&f.subgid, "alice:100000:65536").unwrap();
        let a = allocate(&f, "a").unwrap();
        assert!(a.made_entry);
        assert_eq!(
            a.uid_map[0].outside, 196608,
            "above alice's range, slice-aligned"
        );
        let b = allocate(&f, "b").unwrap();
        assert!(!b.made_entry);
        assert_eq!(b.uid_map[0].outside, 196608 + SLICE);
        assert_eq!(in_use(&f), vec![196608, 196608 + SLICE]);
        let text = std::fs::read_to_string(&f.subgid).unwrap();
        assert_eq!(text, "alice:100000:65536\nstagebox:196608:2097152\n");
        a.release().unwrap();
        assert_eq!(in_use(&f), vec![196608 + SLICE]);
        let c = allocate(&f, "c").unwrap();
        assert_eq!(c.uid_map[0].outside, 196608, "the released slice is reused");
        drop(c); // a holder that dies without releasing: the lock goes with it
        let e = allocate(&f, "e").unwrap();
        assert_eq!(e.uid_map[0].outside, 196608);
        e.release().unwrap();
        b.release().unwrap();
        assert!(in_use(&f).is_empty());
    }

    #[test]
    fn an_existing_entry_is_used_as_it_is() {
        let d = tempfile::tempdir().unwrap();
        let f = files(d.path());
        std::fs::write(&f.subuid, "stagebox:300000:65536\n").unwrap();
        std::fs::write(&f.subgid, "stagebox:400000:65536\n").unwrap();
        let a = allocate(&f, "a").unwrap();
        assert_eq!(
            (a.uid_map[0].outside, a.gid_map[0].outside),
            (300000, 400000)
        );
        let e = allocate(&f, "b").unwrap_err().to_string();
        assert!(e.contains("in use"), "{e}");
        a.release().unwrap();
    }
}
