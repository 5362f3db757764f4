//! Kept containers, as Docker keeps them: STATE/containers/<id>/ holds `config.json` (what
//! ran, its status and exit code) and, with the overlay rootfs, the container's writable
//! layer (`upper/`), overlayfs's scratch dir (`work/`) and the mount point (`merged/`, mounted
//! only inside the container's own mount namespace). `stagebox rm` or `--rm` removes it.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeMount {
    /// "bind", "volume" (named) or "anonymous".
    pub kind: String,
    /// The host directory (for volumes: STATE/volumes/NAME/_data).
    pub source: PathBuf,
    /// Volume name, for named and anonymous volumes.
    pub name: Option<String>,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The image reference or the rootfs directory it ran on.
    pub image: String,
    pub command: Vec<String>,
    /// Unix time, seconds.
    pub created: u64,
    /// "created", "running", "exited".
    pub status: String,
    pub exit_code: Option<i32>,
    /// The runtime's own pid while running (to tell a stale record from a live one).
    pub runtime_pid: Option<i32>,
    /// Host pid of the workload while running.
    pub pid: Option<i32>,
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// The read-only layers under the writable one, lowest last (overlay lowerdir order).
    #[serde(default)]
    pub lower: Vec<PathBuf>,
    #[serde(default)]
    pub remove_on_exit: bool,
    /// The image's ID (config digest) when the container runs an image.
    #[serde(default)]
    pub image_id: Option<String>,
    /// The network its veth is on (`--network`), and its address there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// Published ports (`-p`, `-P`), as bound on the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::state::container::PublishedPort>,
    /// What `stagebox exec` needs to start a process as the workload was started.
    #[serde(default)]
    pub exec: ExecRecord,
    /// Frozen by `stagebox pause` (the cgroup freezer); `ps` says "paused" while it runs.
    #[serde(default)]
    pub paused: bool,
}

/// How the workload was started, for `stagebox exec` (the rest, namespaces, cgroups and
/// capabilities, is read from the running workload itself).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecRecord {
    /// The workload's environment, `K=V`.
    pub env: Vec<String>,
    /// Its working directory inside the container (None: `/`).
    pub workdir: Option<String>,
    /// The user it runs as inside (None: root, 0:0).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub groups: Vec<u32>,
    /// The seccomp profile: "default" (Docker's), an absolute path, or None when the seccomp
    /// stage was off.
    pub seccomp: Option<String>,
}

/// A published port as the container record keeps it: `80/tcp -> 0.0.0.0:8080`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub container_port: u16,
    pub proto: String,
    pub host_ip: std::net::Ipv4Addr,
    pub host_port: u16,
}

impl std::fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} -> {}:{}",
            self.container_port, self.proto, self.host_ip, self.host_port
        )
    }
}

pub fn containers_dir(state: &Path) -> PathBuf {
    state.join("containers")
}

impl Container {
    pub fn dir(&self, state: &Path) -> PathBuf {
        containers_dir(state).join(&self.id)
    }
    pub fn upper(&self, state: &Path) -> PathBuf {
        self.dir(state).join("upper")
    }
    pub fn work(&self, state: &Path) -> PathBuf {
        self.dir(state).join("work")
    }
    pub fn merged(&self, state: &Path) -> PathBuf {
        self.dir(state).join("merged")
    }

    /// Writes config.json atomically (temp file + rename).
    pub fn save(&self, state: &Path) -> Result<()> {
        let dir = self.dir(state);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        super::atomic::write_json_atomic(&dir.join("config.json"), self)
    }

    pub fn load(dir: &Path) -> Result<Container> {
        let p = dir.join("config.json");
        let text = std::fs::read(&p).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::usage(format!("{} is not a container record: {e}", p.display())))
    }

    /// Is the run that owns this record still alive? A record left "running" by a runtime
    /// that was SIGKILLed is reported as exited.
    pub fn is_running(&self) -> bool {
        self.status == "running"
            && self.runtime_pid.is_some_and(|p| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok()
            })
    }

    pub fn status_text(&self) -> String {
        if self.is_running() && self.paused {
            "paused".into()
        } else if self.is_running() {
            "running".into()
        } else {
            match self.exit_code {
                Some(c) => format!("exited ({c})"),
                None if self.status == "running" => "dead (its runtime was killed)".into(),
                None => self.status.clone(),
            }
        }
    }
}

/// `stagebox inspect`: the record plus where its layers are, as JSON.
pub fn inspect_json(state: &Path, c: &Container) -> serde_json::Value {
    let mut v = serde_json::to_value(c).unwrap_or(serde_json::Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("state".into(), serde_json::json!(c.status_text()));
        obj.insert("upper_dir".into(), serde_json::json!(c.upper(state)));
        obj.insert("work_dir".into(), serde_json::json!(c.work(state)));
        obj.insert("merged_dir".into(), serde_json::json!(c.merged(state)));
    }
    v
}

/// Every kept container, oldest first.
pub fn list(state: &Path) -> Vec<Container> {
    let mut v: Vec<Container> = std::fs::read_dir(containers_dir(state))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| Container::load(&e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    v
}

/// A container by name, full id, or unique id prefix.
pub fn find(state: &Path, key: &str) -> Result<Container> {
    let all = list(state);
    if let Some(c) = all.iter().find(|c| c.name == key || c.id == key) {
        return Ok(c.clone());
    }
    let matches: Vec<&Container> = all
        .iter()
        .filter(|c| !key.is_empty() && c.id.starts_with(key))
        .collect();
    match matches.len() {
        1 => Ok(matches[0].clone()),
        0 => Err(Error::usage(format!(
            "no container named or with id {key:?}; `stagebox ps -a` lists them"
        ))),
        n => Err(Error::usage(format!(
            "{n} containers have ids starting with {key:?}; give more of the id"
        ))),
    }
}

/// Docker's rule for names: [a-zA-Z0-9][a-zA-Z0-9_.-]*
pub fn check_name(name: &str) -> Result<()> {
    check_object_name(name, "--name", "container name", usize::MAX)
}

/// Docker's rule for the names of containers, networks and volumes: letters, digits, '_',
/// '.' and '-', starting with a letter or digit, at most `max` bytes. `what` names the flag
/// or argument in the sentence, `noun` the kind of name.
pub fn check_object_name(name: &str, what: &str, noun: &str, max: usize) -> Result<()> {
    let ok = name.len() <= max
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        let limit = if max == usize::MAX {
            String::new()
        } else {
            format!("at most {max} ")
        };
        return Err(Error::usage(format!(
            "{what} {name:?} is not a valid {noun}; use {limit}letters, digits, '_', '.' and '-', starting with a letter or digit"
        )));
    }
    Ok(())
}

/// Removes a container's directory. A running one is refused unless `force`, which kills
/// its workload first and waits for its runtime to finish.
pub fn remove(state: &Path, key: &str, force: bool) -> Result<Container> {
    let c = find(state, key)?;
    if c.is_running() {
        if !force {
            return Err(Error::usage(format!(
                "container {} is running; stop it first or use rm -f",
                c.name
            )));
        }
        if let Some(pid) = c.pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for _ in 0..200 {
            match Container::load(&c.dir(state)) {
                Ok(now) if now.is_running() => {
                    std::thread::sleep(std::time::Duration::from_millis(25))
                }
                _ => break,
            }
        }
    }
    let dir = c.dir(state);
    if dir.exists() {
        super::dir::remove_tree(&dir)
            .map_err(|e| Error::io(format!("remove {}", dir.display()), e))?;
    }
    Ok(c)
}

/// `stagebox ps [-a]`.
pub fn ps_table(state: &Path, all: bool) -> String {
    let mut out = format!(
        "{:<12}  {:<16}  {:<24}  {:<24}  {:<18}  {:<16}  PORTS\n",
        "CONTAINER ID", "NAME", "IMAGE", "COMMAND", "STATUS", "CREATED"
    );
    let now = crate::units::now_secs();
    for c in list(state) {
        if !all && !c.is_running() {
            continue;
        }
        let mut cmd = c.command.join(" ");
        if cmd.chars().count() > 22 {
            cmd = format!("{}…", cmd.chars().take(21).collect::<String>());
        }
        let mut image = c.image.clone();
        if image.chars().count() > 24 {
            image = format!(
                "…{}",
                image
                    .chars()
                    .rev()
                    .take(23)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<String>()
            );
        }
        // Docker's form: 0.0.0.0:8080->80/tcp, shown while the container runs.
        let ports = if c.is_running() {
            c.ports
                .iter()
                .map(|p| {
                    format!(
                        "{}:{}->{}/{}",
                        p.host_ip, p.host_port, p.container_port, p.proto
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            String::new()
        };
        let line = format!(
            "{:<12}  {:<16}  {:<24}  {:<24}  {:<18}  {:<16}  {ports}",
            c.id,
            c.name,
            image,
            format!("\"{cmd}\""),
            c.status_text(),
            crate::units::ago(now.saturating_sub(c.created))
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, name: &str) -> Container {
        Container {
            id: id.into(),
            name: name.into(),
            image: "busybox".into(),
            command: vec!["sh".into()],
            created: 1,
            status: "exited".into(),
            exit_code: Some(0),
            runtime_pid: None,
            pid: None,
            volumes: vec![],
            lower: vec![],
            remove_on_exit: false,
            image_id: None,
            network: None,
            ip: None,
            ports: vec![],
            exec: Default::default(),
            paused: false,
        }
    }

    #[test]
    fn find_by_name_id_and_prefix() {
        let d = tempfile::tempdir().unwrap();
        sample("abc123000000", "web").save(d.path()).unwrap();
        sample("abd456000000", "db").save(d.path()).unwrap();
        assert_eq!(find(d.path(), "web").unwrap().id, "abc123000000");
        assert_eq!(find(d.path(), "abd").unwrap().name, "db");
        assert!(find(d.path(), "ab")
            .unwrap_err()
            .to_string()
            .contains("2 containers"));
        assert!(find(d.path(), "zz").is_err());
        let c = remove(d.path(), "web", false).unwrap();
        assert_eq!(c.name, "web");
        assert_eq!(list(d.path()).len(), 1);
        assert!(ps_table(d.path(), true).contains("exited (0)"));
        assert!(!ps_table(d.path(), false).contains("db"));
    }

    #[test]
    fn names_follow_dockers_rule() {
        assert!(check_name("web-1.a_b").is_ok());
        assert!(check_name("-x").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
    }
}
