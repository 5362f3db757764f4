//! `USER` / `--user`: `uid[:gid]` or `name[:group]`, names looked up in the image's own
//! /etc/passwd and /etc/group (never the host's), as Docker does.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Who the workload runs as.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (from /etc/group; empty when the user was given by number).
    pub groups: Vec<u32>,
    /// The home directory from /etc/passwd, if the user is there.
    pub home: Option<String>,
}

fn read_db(layers: &[PathBuf], file: &str) -> Vec<Vec<String>> {
    let Ok(p) = crate::rootfs::resolve_in_layers(layers, Path::new(file)) else {
        return Vec::new();
    };
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect()
}

/// Resolves a user spec against the root filesystem made of `layers` (topmost first).
pub fn resolve(layers: &[PathBuf], spec: &str) -> Result<Ids> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(Error::usage(format!(
            "user {spec:?} is empty; write uid[:gid] or name[:group]"
        )));
    }
    let passwd = read_db(layers, "/etc/passwd");
    let groups_db = read_db(layers, "/etc/group");
    let entry = passwd
        .iter()
        .find(|f| f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user));
    let uid = match user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => entry.and_then(|f| f[2].parse().ok()).ok_or_else(|| {
            Error::usage(format!(
                "user {user:?} is not in the image's /etc/passwd; use a number or add the user"
            ))
        })?,
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups_db
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    Error::usage(format!(
                        "group {g:?} is not in the image's /etc/group; use a number"
                    ))
                })?,
        },
        None => entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let name = entry.map(|f| f[0].clone());
    let groups = match (&name, group) {
        (Some(n), None) => groups_db
            .iter()
            .filter(|f| f[3].split(',').any(|m| m == n))
            .filter_map(|f| f[2].parse().ok())
            .collect(),
        _ => Vec::new(),
    };
    let home = entry
        .and_then(|f| f.get(5).cloned())
        .filter(|h| !h.is_empty());
    Ok(Ids {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nweb:x:1001:\nextra:x:2000:web\n",
        )
        .unwrap();
        let l = [d.path().to_path_buf()];
        let web = resolve(&l, "web").unwrap();
        assert_eq!(
            (web.uid, web.gid, web.groups.clone(), web.home.as_deref()),
            (1000, 1001, vec![2000], Some("/home/web"))
        );
        assert_eq!(resolve(&l, "1000:extra").unwrap().gid, 2000);
        assert_eq!(
            resolve(&l, "42:43").unwrap(),
            Ids {
                uid: 42,
                gid: 43,
                groups: vec![],
                home: None
            }
        );
        assert!(resolve(&l, "nobody-here").is_err());
    }
}
