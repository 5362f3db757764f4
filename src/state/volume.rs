//! Volumes as Docker has them: `-v /host:/ctr[:ro]` (a bind mount of a host path),
//! `-v /ctr` (an anonymous volume) and `-v name:/ctr` (a named volume). Volumes live at
//! STATE/volumes/NAME/_data, as under /var/lib/docker/volumes, and outlive containers.
//! The mounts themselves are made by the volumes stage inside the container's mount
//! namespace, before the root switch, so the host never sees them.

use crate::error::{Error, Result};
use crate::state::container::VolumeMount;
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

/// A `-v` argument, parsed and checked, before anything is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSpec {
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    Named {
        name: String,
        target: String,
        read_only: bool,
    },
    Anonymous {
        target: String,
        read_only: bool,
    },
}

impl VolumeSpec {
    pub fn target(&self) -> &str {
        match self {
            VolumeSpec::Bind { target, .. }
            | VolumeSpec::Named { target, .. }
            | VolumeSpec::Anonymous { target, .. } => target,
        }
    }
}

fn valid_name(name: &str) -> bool {
    name.len() >= 2
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A container path, made canonical: absolute, no `.`/`..` left, never above `/`, not `/`.
pub fn clean_target(raw: &str, arg: &str) -> Result<String> {
    if !raw.starts_with('/') {
        return Err(Error::usage(format!(
            "-v {arg}: the container path {raw:?} must be absolute (start with /)"
        )));
    }
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(Error::usage(format!(
                        "-v {arg}: the container path {raw:?} climbs above the container's root with '..'"
                    )));
                }
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return Err(Error::usage(format!(
            "-v {arg}: a volume cannot be mounted over the container's root /"
        )));
    }
    Ok(format!("/{}", parts.join("/")))
}

fn parse_opts(opts: &str, arg: &str) -> Result<bool> {
    let mut ro = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" | "readonly" => ro = true,
            "rw" => ro = false,
            other => {
                return Err(Error::usage(format!(
                    "-v {arg}: unknown option {other:?}; the options are ro and rw"
                )))
            }
        }
    }
    Ok(ro)
}

/// Parses one `-v` argument. A bind's host path must exist; nothing is created here.
pub fn parse(arg: &str) -> Result<VolumeSpec> {
    let parts: Vec<&str> = arg.split(':').collect();
    let (source, target, ro) = match parts.as_slice() {
        [t] => (None, *t, false),
        [t, o] if t.starts_with('/') && (*o == "ro" || *o == "rw") => (None, *t, parse_opts(o, arg)?),
        [s, t] => (Some(*s), *t, false),
        [s, t, o] => (Some(*s), *t, parse_opts(o, arg)?),
        _ => {
            return Err(Error::usage(format!(
                "-v {arg}: too many ':'; write /host/path:/container/path[:ro], name:/container/path or /container/path"
            )))
        }
    };
    let target = clean_target(target, arg)?;
    match source {
        None => Ok(VolumeSpec::Anonymous { target, read_only: ro }),
        Some(s) if s.starts_with('/') => {
            let source = std::fs::canonicalize(s).map_err(|_| {
                Error::usage(format!("-v {arg}: the host path {s} does not exist; create it first"))
            })?;
            Ok(VolumeSpec::Bind { source, target, read_only: ro })
        }
        Some(s) if valid_name(s) => Ok(VolumeSpec::Named { name: s.to_string(), target, read_only: ro }),
        Some(s) => Err(Error::usage(format!(
            "-v {arg}: {s:?} is neither an absolute host path nor a volume name (letters, digits, '_', '.', '-'); relative host paths are not allowed"
        ))),
    }
}

/// A `--tmpfs /path[:opts]` or `--mount type=tmpfs,...`: a fresh tmpfs the volumes stage
/// mounts inside the container's mount namespace, before the root switch. Nothing on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsMount {
    /// The path inside the container.
    pub target: String,
    /// mount(2) data for tmpfs (`size=64m,mode=1777`); flags (`ro`, `noexec` ...) are in it
    /// too, and the stage splits them off.
    pub options: String,
}

/// Parses `--tmpfs /path[:opts]` (Docker's syntax: opts as mount(8) takes them).
pub fn parse_tmpfs(arg: &str) -> Result<TmpfsMount> {
    let (target, options) = arg.split_once(':').unwrap_or((arg, ""));
    if !target.starts_with('/') {
        return Err(Error::usage(format!(
            "--tmpfs {arg}: the path {target:?} must be absolute inside the container"
        )));
    }
    Ok(TmpfsMount {
        target: clean_target(target, arg)?,
        options: options.to_string(),
    })
}

/// What a `--mount` argument is: a volume spec as `-v` has them, or a tmpfs.
#[derive(Debug, Clone)]
pub enum MountArg {
    Volume(VolumeSpec),
    Tmpfs(TmpfsMount),
}

/// Parses Docker's `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly]` (also
/// `src`, `dst`/`destination`, `ro`, and `tmpfs-size`/`tmpfs-mode` for tmpfs).
pub fn parse_mount(arg: &str) -> Result<MountArg> {
    let (mut kind, mut source, mut target, mut ro) = ("volume", None, None, false);
    let mut tmpfs_opts = Vec::new();
    for kv in arg.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => kind = v,
            "source" | "src" => source = Some(v),
            "target" | "dst" | "destination" => target = Some(v),
            "readonly" | "ro" => ro = v.is_empty() || v == "true" || v == "1",
            "tmpfs-size" => tmpfs_opts.push(format!("size={v}")),
            "tmpfs-mode" => tmpfs_opts.push(format!("mode={v}")),
            _ => {
                return Err(Error::usage(format!(
                    "--mount {arg}: unknown key {k:?}; use type, source, target, readonly (and tmpfs-size, tmpfs-mode)"
                )))
            }
        }
    }
    let Some(target) = target else {
        return Err(Error::usage(format!(
            "--mount {arg}: no target; add target=/path/inside"
        )));
    };
    let opt = if ro { ":ro" } else { "" };
    match (kind, source) {
        ("bind", Some(s)) if s.starts_with('/') => {
            Ok(MountArg::Volume(parse(&format!("{s}:{target}{opt}"))?))
        }
        ("bind", _) => Err(Error::usage(format!(
            "--mount {arg}: a bind mount needs source=/absolute/host/path"
        ))),
        ("volume", Some(s)) if !s.is_empty() && !s.starts_with('/') => {
            Ok(MountArg::Volume(parse(&format!("{s}:{target}{opt}"))?))
        }
        ("volume", None) => Ok(MountArg::Volume(parse(&format!("{target}{opt}"))?)),
        ("volume", Some(_)) => Err(Error::usage(format!(
            "--mount {arg}: a volume's source is a volume name; for a host path use type=bind"
        ))),
        ("tmpfs", None) => {
            if ro {
                tmpfs_opts.insert(0, "ro".into());
            }
            Ok(MountArg::Tmpfs(TmpfsMount {
                target: clean_target(target, arg)?,
                options: tmpfs_opts.join(","),
            }))
        }
        ("tmpfs", Some(_)) => Err(Error::usage(format!(
            "--mount {arg}: a tmpfs has no source; drop source="
        ))),
        (other, _) => Err(Error::usage(format!(
            "--mount {arg}: unknown type {other:?}; use bind, volume or tmpfs"
        ))),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub mountpoint: PathBuf,
    pub created: u64,
    pub anonymous: bool,
}

pub fn volumes_dir(state: &Path) -> PathBuf {
    state.join("volumes")
}

/// Creates the volume if it does not exist yet; returns it.
pub fn create(state: &Path, name: &str, anonymous: bool) -> Result<Volume> {
    if !valid_name(name) {
        return Err(Error::usage(format!(
            "{name:?} is not a valid volume name; use letters, digits, '_', '.' and '-' (at least 2)"
        )));
    }
    let dir = volumes_dir(state).join(name);
    let meta = dir.join("meta.json");
    if let Ok(v) = inspect(state, name) {
        return Ok(v);
    }
    let data = dir.join("_data");
    super::dir::create_private(&volumes_dir(state))?;
    // Made here (not by a concurrent run of the same -v name): removed again if a later step
    // fails (a full disk), so no half-made volume is left that `volume ls` cannot show.
    let made_here = std::fs::create_dir(&dir).is_ok();
    let v = Volume {
        name: name.to_string(),
        mountpoint: data.clone(),
        created: crate::units::now_secs(),
        anonymous,
    };
    let r = std::fs::create_dir_all(&data)
        .map_err(|e| Error::io(format!("create {}", data.display()), e))
        .and_then(|()| super::atomic::write_json_atomic(&meta, &v));
    if let Err(e) = r {
        if made_here {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Err(e);
    }
    Ok(v)
}

pub fn inspect(state: &Path, name: &str) -> Result<Volume> {
    let meta = volumes_dir(state).join(name).join("meta.json");
    let text = std::fs::read(&meta).map_err(|_| {
        Error::usage(format!(
            "no volume named {name:?}; `stagebox volume ls` lists them"
        ))
    })?;
    serde_json::from_slice(&text).map_err(|e| Error::usage(format!("{}: {e}", meta.display())))
}

pub fn list(state: &Path) -> Vec<Volume> {
    let mut v: Vec<Volume> = std::fs::read_dir(volumes_dir(state))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| inspect(state, &e.file_name().to_string_lossy()).ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Kept containers that mount the volume.
pub fn users(state: &Path, name: &str) -> Vec<String> {
    crate::state::container::list(state)
        .into_iter()
        .filter(|c| c.volumes.iter().any(|m| m.name.as_deref() == Some(name)))
        .map(|c| c.name)
        .collect()
}

/// Removes a volume and its data. Refused while a kept container uses it, unless `force`.
pub fn remove(state: &Path, name: &str, force: bool) -> Result<()> {
    inspect(state, name)?;
    let used = users(state, name);
    if !used.is_empty() && !force {
        return Err(Error::usage(format!(
            "volume {name} is used by container(s) {}; remove them first, or use volume rm -f",
            used.join(", ")
        )));
    }
    let dir = volumes_dir(state).join(name);
    std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("remove {}", dir.display()), e))
}

/// Turns the parsed specs into mounts, creating named and anonymous volumes. Returns the
/// mounts and the names of the volumes created now (an error path removes them again).
pub fn materialize(
    state: &Path,
    specs: &[VolumeSpec],
    id: &str,
) -> Result<(Vec<VolumeMount>, Vec<String>)> {
    let mut created = Vec::new();
    match materialize_into(state, specs, id, &mut created) {
        Ok(mounts) => Ok((mounts, created)),
        Err(e) => {
            // Those made before the failing one go again: the caller never learns of them.
            for name in &created {
                let _ = std::fs::remove_dir_all(volumes_dir(state).join(name));
            }
            Err(e)
        }
    }
}

fn materialize_into(
    state: &Path,
    specs: &[VolumeSpec],
    id: &str,
    created: &mut Vec<String>,
) -> Result<Vec<VolumeMount>> {
    let mut mounts = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, s) in specs.iter().enumerate() {
        if !seen.insert(s.target().to_string()) {
            return Err(Error::usage(format!(
                "two volumes are mounted at {}; give each its own path",
                s.target()
            )));
        }
        let m = match s {
            VolumeSpec::Bind {
                source,
                target,
                read_only,
            } => VolumeMount {
                kind: "bind".into(),
                source: source.clone(),
                name: None,
                target: target.clone(),
                read_only: *read_only,
            },
            VolumeSpec::Named {
                name,
                target,
                read_only,
            } => {
                let existed = inspect(state, name).is_ok();
                let v = create(state, name, false)?;
                if !existed {
                    created.push(name.clone());
                }
                VolumeMount {
                    kind: "volume".into(),
                    source: v.mountpoint,
                    name: Some(name.clone()),
                    target: target.clone(),
                    read_only: *read_only,
                }
            }
            VolumeSpec::Anonymous { target, read_only } => {
                let name = format!("{id}-{i}");
                let v = create(state, &name, true)?;
                created.push(name.clone());
                VolumeMount {
                    kind: "anonymous".into(),
                    source: v.mountpoint,
                    name: Some(name),
                    target: target.clone(),
                    read_only: *read_only,
                }
            }
        };
        mounts.push(m);
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms() {
        let d = tempfile::tempdir().unwrap();
        let h = d.path().display().to_string();
        assert_eq!(
            parse(&format!("{h}:/data:ro")).unwrap(),
            VolumeSpec::Bind {
                source: d.path().canonicalize().unwrap(),
                target: "/data".into(),
                read_only: true
            }
        );
        assert_eq!(
            parse("cache:/var/cache").unwrap(),
            VolumeSpec::Named {
                name: "cache".into(),
                target: "/var/cache".into(),
                read_only: false
            }
        );
        assert_eq!(
            parse("/scratch").unwrap(),
            VolumeSpec::Anonymous {
                target: "/scratch".into(),
                read_only: false
            }
        );
        assert_eq!(
            parse("/scratch:ro").unwrap(),
            VolumeSpec::Anonymous {
                target: "/scratch".into(),
                read_only: true
            }
        );
        assert_eq!(parse("/a/./b/../c").unwrap().target(), "/a/c");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let msg = |s: &str| parse(s).unwrap_err().to_string();
        assert!(msg("/nonexistent-host-dir:/x").contains("does not exist"));
        assert!(msg("cache:relative").contains("must be absolute"));
        assert!(msg("cache:/../../etc").contains("climbs above"));
        assert!(msg("cache:/x:rx").contains("unknown option \"rx\""));
        assert!(msg("./here:/x").contains("relative host paths"));
        assert!(msg("cache:/").contains("over the container's root"));
        assert!(msg("a:b:c:d").contains("too many"));
    }

    #[test]
    fn volumes_are_created_listed_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let v = create(d.path(), "data", false).unwrap();
        assert!(v.mountpoint.ends_with("volumes/data/_data") && v.mountpoint.is_dir());
        assert_eq!(list(d.path()).len(), 1);
        remove(d.path(), "data", false).unwrap();
        assert!(list(d.path()).is_empty());
        assert!(remove(d.path(), "data", false).is_err());
    }
}
