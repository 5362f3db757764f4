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
    /// The start time (/proc/PID/stat field 22) of `runtime_pid`: with it a reused pid is
    /// never taken for the runtime. Set with [`Container::set_runtime`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_start: Option<u64>,
    /// The start time of `pid` (the workload), checked before it is ever signalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// Detached runs, `start`, `stop` and restarts (`state::lifecycle`).
    #[serde(default)]
    pub lifecycle: crate::state::lifecycle::LifecycleRecord,
    /// A container made from an OCI bundle (`stagebox create`): no runtime stays with it;
    /// the engine that called `create` is its process's parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciRecord>,
}

/// What an OCI container keeps beyond its process: for `state`, `delete` and the hooks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OciRecord {
    pub bundle: PathBuf,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// `linux.cgroupsPath` as `PARENT/LEAF`, when the config gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<(String, String)>,
    /// The config's hooks that run after `create`: poststart (by `start`), poststop (by
    /// `delete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// RFC 3339, as `state` prints it.
    #[serde(default)]
    pub created: String,
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

    /// Writes config.json atomically (temp file + rename). Only for a record no other process
    /// can know yet; a kept record changes through [`update`], and is made by [`create`].
    pub fn save(&self, state: &Path) -> Result<()> {
        let dir = self.dir(state);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        self.write_record(state)
    }

    /// config.json written atomically into the existing directory (never makes it again).
    fn write_record(&self, state: &Path) -> Result<()> {
        super::atomic::write_json_atomic(&self.dir(state).join(RECORD), self)
    }

    pub fn load(dir: &Path) -> Result<Container> {
        let p = dir.join(RECORD);
        let text = std::fs::read(&p).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::usage(format!("{} is not a container record: {e}", p.display())))
    }

    /// Records `pid` as the process that owns this container now (the runtime, or a monitor),
    /// with its start time.
    pub fn set_runtime(&mut self, pid: i32) {
        self.runtime_pid = Some(pid);
        self.runtime_start = crate::kernel::proc::start_time(pid);
    }

    /// Records the workload's host pid with its start time.
    pub fn set_workload(&mut self, pid: Option<i32>) {
        self.pid = pid;
        self.pid_start = pid.and_then(crate::kernel::proc::start_time);
    }

    /// Is the process recorded as this container's runtime still that process? Its pid must
    /// be alive with the start time recorded with it (a reused pid has another); a record
    /// from before start times were kept falls back to kill(pid, 0).
    pub fn runtime_alive(&self) -> bool {
        match (self.runtime_pid, self.runtime_start) {
            (Some(p), Some(start)) => crate::kernel::proc::is_same_process(p, start),
            (Some(p), None) => nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok(),
            (None, _) => false,
        }
    }

    /// The workload's pid, only while it is still the process that was recorded.
    pub fn live_workload(&self) -> Option<i32> {
        match (self.pid, self.pid_start) {
            (Some(p), Some(start)) if crate::kernel::proc::is_same_process(p, start) => Some(p),
            _ => None,
        }
    }

    /// Is the run that owns this record still alive? A record left "running" by a runtime
    /// that was SIGKILLed, or whose pid now belongs to another process, is not.
    pub fn is_running(&self) -> bool {
        match &self.oci {
            // Its process is all there is: running while that process lives.
            Some(_) => self.status == "running" && self.live_workload().is_some(),
            None => self.status == "running" && self.runtime_alive(),
        }
    }

    /// The OCI state word: creating, created, running, paused or stopped.
    pub fn oci_status(&self) -> &'static str {
        let alive = self.live_workload().is_some();
        match self.status.as_str() {
            "creating" => "creating",
            "created" if alive => "created",
            "running" if alive && self.paused => "paused",
            "running" if alive => "running",
            _ => "stopped",
        }
    }

    /// Killed before it could say how it ended: its record says created or running, it had a
    /// runtime, and that runtime is gone.
    pub fn is_dead(&self) -> bool {
        self.exit_code.is_none()
            && (self.status == "running" || self.status == "created")
            && self.runtime_pid.is_some()
            && !self.runtime_alive()
    }

    /// One word for `ps -f status=`: running, paused, created, exited or dead.
    pub fn state_word(&self) -> &'static str {
        if self.is_running() && self.paused {
            "paused"
        } else if self.is_running() {
            "running"
        } else if self.is_dead() {
            "dead"
        } else if self.exit_code.is_some() || self.status == "exited" {
            "exited"
        } else {
            "created"
        }
    }

    pub fn status_text(&self) -> String {
        if self.is_running() && self.paused {
            "paused".into()
        } else if self.is_running() {
            "running".into()
        } else if self.is_dead() {
            "dead (its runtime was killed)".into()
        } else {
            match self.exit_code {
                Some(c) => format!("exited ({c})"),
                None => self.status.clone(),
            }
        }
    }
}

/// The record's file name in a container's directory.
pub const RECORD: &str = "config.json";

/// flock(2) on a directory itself: no lock file is left behind, and a lock taken on a
/// directory that is then removed stays on the removed one (its holder sees the record gone).
fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let f =
        std::fs::File::open(dir).map_err(|e| Error::io(format!("open {}", dir.display()), e))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io(format!("flock {}", dir.display()), e.into()))
}

/// The lock every new name and every rename takes: a flock on STATE/containers itself.
fn names_lock(state: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let dir = containers_dir(state);
    super::dir::create_private(&dir)?;
    lock_dir(&dir)
}

/// The lock of one container's record: a flock on STATE/containers/ID itself. Err when the
/// directory is gone (the container was removed).
fn record_lock(state: &Path, id: &str) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let dir = containers_dir(state).join(id);
    if !dir.is_dir() {
        return Err(no_such(id));
    }
    lock_dir(&dir).map_err(|_| no_such(id))
}

fn no_such(key: &str) -> Error {
    Error::usage(format!(
        "no container named or with id {key:?}; `stagebox ps -a` lists them"
    ))
}

fn conflict(name: &str, id: &str) -> Error {
    Error::usage(format!(
        "Conflict: the container name {name:?} is already in use by container {id:?}; remove that container or choose another name"
    ))
}

/// "Conflict" when a kept container has the name `name` (no lock: a quick look before a run
/// makes anything; [`create`] decides under the names lock).
pub fn check_name_free(state: &Path, name: &str) -> Result<()> {
    match list(state).into_iter().find(|o| o.name == name) {
        Some(other) => Err(conflict(name, &other.id)),
        None => Ok(()),
    }
}

/// Makes a new container's directory and first record, the name reserved atomically: under
/// the names lock no other record may have the name. A directory made here without its record
/// (the disk is full) is removed again. Returns a "Conflict" sentence when the name is taken.
pub fn create(state: &Path, c: &Container) -> Result<()> {
    let _names = names_lock(state)?;
    if let Some(other) = list(state)
        .into_iter()
        .find(|o| o.name == c.name || o.id == c.id)
    {
        return Err(conflict(&c.name, &other.id));
    }
    let dir = c.dir(state);
    super::dir::create_private(&dir)?;
    if let Err(e) = c.write_record(state) {
        let _ = super::dir::remove_tree(&dir);
        return Err(e);
    }
    Ok(())
}

/// Changes a kept record: takes its lock, reads it again, lets `f` change it, and writes it
/// atomically. Err when the record is gone (removed meanwhile) or cannot be written (the
/// file on disk is then as it was).
pub fn update(state: &Path, id: &str, f: impl FnOnce(&mut Container)) -> Result<Container> {
    let _lock = record_lock(state, id)?;
    let dir = containers_dir(state).join(id);
    if !dir.join(RECORD).exists() {
        return Err(no_such(id));
    }
    let mut c = Container::load(&dir)?;
    f(&mut c);
    c.write_record(state)?;
    Ok(c)
}

/// `stagebox rename OLD NEW`, under the names lock: Conflict when NEW is taken.
pub fn rename(state: &Path, key: &str, new: &str) -> Result<Container> {
    check_name(new)?;
    let _names = names_lock(state)?;
    let c = find(state, key)?;
    if let Some(other) = list(state)
        .into_iter()
        .find(|o| o.name == new && o.id != c.id)
    {
        return Err(conflict(new, &other.id));
    }
    let new = new.to_string();
    update(state, &c.id, |r| r.name = new)
}

/// The ids of directories under STATE/containers without a record: left by a run killed
/// between its mkdir and its first save (or by a removal killed halfway). Read under the names
/// lock, which every creation holds from its mkdir to its save, so none of them is being made.
pub fn orphans(state: &Path) -> Result<Vec<String>> {
    if !containers_dir(state).is_dir() {
        return Ok(Vec::new());
    }
    let _names = names_lock(state)?;
    Ok(orphans_unlocked(state, std::time::Duration::ZERO))
}

/// Directories without a record, at least `older_than` old (for `ps`, which takes no lock).
pub fn orphans_unlocked(state: &Path, older_than: std::time::Duration) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(containers_dir(state))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| !e.path().join(RECORD).exists())
                .filter(|e| {
                    e.metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age >= older_than)
                })
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Removes the directory of a record-less container `id` (an orphan), under the names lock.
pub fn remove_orphan(state: &Path, id: &str) -> Result<bool> {
    let _names = names_lock(state)?;
    if id.is_empty() || id.starts_with('.') || id.contains('/') {
        return Ok(false);
    }
    let dir = containers_dir(state).join(id);
    if !dir.is_dir() || dir.join(RECORD).exists() {
        return Ok(false);
    }
    super::dir::remove_tree(&dir).map_err(|e| Error::io(format!("remove {}", dir.display()), e))?;
    Ok(true)
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

/// Before a removal: a running container is refused unless `force`, which SIGKILLs its
/// workload (only if the recorded pid is still that process) and waits up to 5 s for its
/// runtime to record the exit.
pub fn stop_for_removal(state: &Path, c: &Container, force: bool) -> Result<()> {
    if !c.is_running() {
        return Ok(());
    }
    if !force {
        return Err(Error::usage(format!(
            "container {} is running; stop it first or use rm -f",
            c.name
        )));
    }
    // Its monitor must not restart it (`--restart`).
    let _ = super::lifecycle::mark_stopping(&c.dir(state));
    if let Some(pid) = c.live_workload() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for _ in 0..200 {
        match Container::load(&c.dir(state)) {
            Ok(now) if now.is_running() => std::thread::sleep(std::time::Duration::from_millis(25)),
            _ => break,
        }
    }
    Ok(())
}

/// Removes a container's directory, under its record lock (so no update writes it again).
pub fn remove_dir(state: &Path, id: &str) -> Result<()> {
    let dir = containers_dir(state).join(id);
    let _lock = record_lock(state, id);
    if dir.exists() {
        super::dir::remove_tree(&dir)
            .map_err(|e| Error::io(format!("remove {}", dir.display()), e))?;
    }
    Ok(())
}

/// Removes a container's record and directory (not what it left in the kernel: see
/// `runtime::cleanup`). A running one is refused unless `force` ([`stop_for_removal`]).
pub fn remove(state: &Path, key: &str, force: bool) -> Result<Container> {
    let c = find(state, key)?;
    stop_for_removal(state, &c, force)?;
    remove_dir(state, &c.id)?;
    Ok(c)
}

/// What `stagebox ps` shows: `-a`, `-q`, `-f KEY=VALUE` (status, name, id), `-n N`, and
/// `--format` with Go template fields.
#[derive(Debug, Clone, Default)]
pub struct PsOptions {
    pub all: bool,
    pub quiet: bool,
    pub filters: Vec<String>,
    pub format: Option<String>,
    pub last: Option<usize>,
}

/// The fields `ps --format` knows, as Docker names them.
pub const PS_FIELDS: &[&str] = &[
    "ID",
    "Names",
    "Image",
    "Command",
    "Status",
    "State",
    "Ports",
    "CreatedAt",
];

/// The statuses `ps -f status=` takes.
pub const PS_STATUSES: &[&str] = &["running", "paused", "created", "exited", "dead"];

/// One row of `ps`: a record, or a directory left without one.
struct Row {
    id: String,
    name: String,
    image: String,
    command: String,
    status: String,
    state: String,
    ports: String,
    created: u64,
}

fn row(c: &Container) -> Row {
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
    Row {
        id: c.id.clone(),
        name: c.name.clone(),
        image: c.image.clone(),
        command: c.command.join(" "),
        status: c.status_text(),
        state: c.state_word().into(),
        ports,
        created: c.created,
    }
}

fn orphan_row(state: &Path, id: &str) -> Row {
    let created = std::fs::metadata(containers_dir(state).join(id))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Row {
        id: id.into(),
        name: String::new(),
        image: String::new(),
        command: String::new(),
        status: "dead (no record: its run was killed while making it)".into(),
        state: "dead".into(),
        ports: String::new(),
        created,
    }
}

fn check_filters(filters: &[String]) -> Result<Vec<(String, String)>> {
    filters
        .iter()
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap_or((f, ""));
            match k {
                "status" if PS_STATUSES.contains(&v) => Ok((k.into(), v.into())),
                "status" => Err(Error::usage(format!(
                    "ps -f status={v}: the status is one of {}",
                    PS_STATUSES.join(", ")
                ))),
                "name" | "id" if !v.is_empty() => Ok((k.into(), v.into())),
                _ => Err(Error::usage(format!(
                    "ps -f {f:?}: the filters are status=running|paused|created|exited|dead, name=NAME and id=ID"
                ))),
            }
        })
        .collect()
}

/// `{{.Field}}` replaced by the row's fields; anything else between braces is refused.
fn render_template(template: &str, r: &Row, now: u64) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            return Err(Error::usage(format!(
                "ps --format {template:?}: a '{{{{' has no '}}}}'"
            )));
        };
        let field = after[..j].trim();
        let value = match field {
            ".ID" => r.id.clone(),
            ".Names" => r.name.clone(),
            ".Image" => r.image.clone(),
            ".Command" => format!("\"{}\"", r.command),
            ".Status" => r.status.clone(),
            ".State" => r.state.clone(),
            ".Ports" => r.ports.clone(),
            ".CreatedAt" => crate::units::ago(now.saturating_sub(r.created)),
            _ => {
                return Err(Error::usage(format!(
                    "ps --format: {{{{{field}}}}} is not a field; use {}",
                    PS_FIELDS
                        .iter()
                        .map(|f| format!("{{{{.{f}}}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        };
        out.push_str(&value);
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out.replace("\\t", "\t").replace("\\n", "\n"))
}

/// `stagebox ps [-a] [-q] [-f ...] [--format ...] [-n N]`.
pub fn ps(state: &Path, opts: &PsOptions) -> Result<String> {
    let filters = check_filters(&opts.filters)?;
    let now = crate::units::now_secs();
    // A status filter looks at stopped containers too, as Docker's does.
    let all = opts.all || opts.last.is_some() || filters.iter().any(|(k, _)| k == "status");
    let mut rows: Vec<Row> = list(state).iter().map(row).collect();
    if all {
        // Older than a second: a directory younger than that may be a creation under way.
        for id in orphans_unlocked(state, std::time::Duration::from_secs(1)) {
            rows.push(orphan_row(state, &id));
        }
    }
    rows.retain(|r| {
        (all || r.state == "running" || r.state == "paused")
            && filters.iter().all(|(k, v)| match k.as_str() {
                "status" => r.state == *v,
                "name" => r.name.contains(v.as_str()),
                _ => r.id.starts_with(v.as_str()),
            })
    });
    rows.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    if let Some(n) = opts.last {
        // The n made last.
        rows.drain(..rows.len().saturating_sub(n));
    }
    let mut out = String::new();
    if opts.quiet {
        for r in &rows {
            out.push_str(&r.id);
            out.push('\n');
        }
        return Ok(out);
    }
    if let Some(t) = &opts.format {
        // Checked once even when no container matches.
        render_template(t, &orphan_row(state, ""), now)?;
        for r in &rows {
            out.push_str(&render_template(t, r, now)?);
            out.push('\n');
        }
        return Ok(out);
    }
    out.push_str(&format!(
        "{:<12}  {:<16}  {:<24}  {:<24}  {:<18}  {:<16}  PORTS\n",
        "CONTAINER ID", "NAME", "IMAGE", "COMMAND", "STATUS", "CREATED"
    ));
    for r in rows {
        let mut cmd = r.command.clone();
        if cmd.chars().count() > 22 {
            cmd = format!("{}…", cmd.chars().take(21).collect::<String>());
        }
        let mut image = r.image.clone();
        if image.chars().count() > 24 {
            let tail: Vec<char> = image.chars().rev().take(23).collect();
            image = format!("…{}", tail.into_iter().rev().collect::<String>());
        }
        let line = format!(
            "{:<12}  {:<16}  {:<24}  {:<24}  {:<18}  {:<16}  {}",
            r.id,
            r.name,
            image,
            if r.state == "dead" && r.name.is_empty() {
                String::new()
            } else {
                format!("\"{cmd}\"")
            },
            r.status,
            crate::units::ago(now.saturating_sub(r.created)),
            r.ports
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// `stagebox ps [-a]` as a table (what `ps` without filters prints).
pub fn ps_table(state: &Path, all: bool) -> String {
    ps(
        state,
        &PsOptions {
            all,
            ..Default::default()
        },
    )
    .unwrap_or_default()
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
            runtime_start: None,
            pid_start: None,
            lifecycle: Default::default(),
            oci: None,
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
    fn a_name_has_one_owner_and_updates_keep_other_fields() {
        let d = tempfile::tempdir().unwrap();
        create(d.path(), &sample("abc123000000", "web")).unwrap();
        let e = create(d.path(), &sample("def456000000", "web")).unwrap_err();
        assert_eq!(e.exit_code(), 125);
        assert_eq!(
            e.to_string(),
            "Conflict: the container name \"web\" is already in use by container \"abc123000000\"; remove that container or choose another name"
        );
        assert!(!d.path().join("containers/def456000000").exists());
        create(d.path(), &sample("def456000000", "db")).unwrap();
        assert!(rename(d.path(), "db", "web").is_err());
        rename(d.path(), "db", "cache").unwrap();
        let c = update(d.path(), "def456000000", |c| c.exit_code = Some(3)).unwrap();
        assert_eq!((c.name.as_str(), c.exit_code), ("cache", Some(3)));
        assert_eq!(find(d.path(), "cache").unwrap().exit_code, Some(3));
        remove(d.path(), "cache", false).unwrap();
        assert!(
            update(d.path(), "def456000000", |_| {}).is_err(),
            "a removed record stays removed"
        );
        assert!(!d.path().join("containers/def456000000").exists());
    }

    #[test]
    fn concurrent_creations_of_one_name_have_one_winner() {
        let d = tempfile::tempdir().unwrap();
        for round in 0..40 {
            let name = format!("dup{round}");
            let barrier = std::sync::Barrier::new(6);
            let wins = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|s| {
                for t in 0..6 {
                    let (name, barrier, wins, state) = (&name, &barrier, &wins, d.path());
                    s.spawn(move || {
                        let c = sample(&format!("{round:06}{t:06}"), name);
                        barrier.wait();
                        match create(state, &c) {
                            Ok(()) => {
                                wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            Err(e) => assert!(e.to_string().starts_with("Conflict: "), "{e}"),
                        }
                    });
                }
            });
            assert_eq!(wins.into_inner(), 1, "round {round}");
        }
        assert_eq!(list(d.path()).len(), 40);
        assert!(
            orphans(d.path()).unwrap().is_empty(),
            "a loser left its directory"
        );
    }

    #[test]
    fn liveness_needs_the_recorded_start_time() {
        let me = std::process::id() as i32;
        let mut c = sample("abc123000000", "web");
        c.status = "running".into();
        c.exit_code = None;
        c.set_runtime(me);
        assert!(c.is_running());
        assert_eq!(c.state_word(), "running");
        c.runtime_start = c.runtime_start.map(|s| s + 1);
        assert!(
            !c.is_running(),
            "the same pid with another start time is another process"
        );
        assert_eq!(c.status_text(), "dead (its runtime was killed)");
        c.set_workload(Some(me));
        assert_eq!(c.live_workload(), Some(me));
        c.pid_start = c.pid_start.map(|s| s + 1);
        assert_eq!(c.live_workload(), None);
    }

    #[test]
    fn ps_filters_and_formats() {
        let d = tempfile::tempdir().unwrap();
        sample("abc123000000", "web").save(d.path()).unwrap();
        let mut db = sample("def456000000", "db");
        db.status = "created".into();
        db.exit_code = None;
        db.save(d.path()).unwrap();
        std::fs::create_dir_all(d.path().join("containers/0000aaaa0000")).unwrap();
        let ps = |o: PsOptions| ps(d.path(), &o);
        let q = |f: &[&str]| PsOptions {
            quiet: true,
            filters: f.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(ps(q(&["status=exited"])).unwrap(), "abc123000000\n");
        assert_eq!(ps(q(&["status=created"])).unwrap(), "def456000000\n");
        assert_eq!(
            ps(q(&["name=we"])).unwrap(),
            "",
            "without -a only running ones"
        );
        let all = PsOptions {
            all: true,
            format: Some("{{.ID}}\\t{{.Names}} {{ .State }}".into()),
            ..Default::default()
        };
        assert_eq!(
            ps(all).unwrap(),
            "abc123000000\tweb exited\ndef456000000\tdb created\n"
        );
        let bad = PsOptions {
            format: Some("{{.Size}}".into()),
            ..Default::default()
        };
        assert_eq!(ps(bad).unwrap_err().exit_code(), 125);
        assert!(ps(q(&["colour=red"])).is_err());
        assert_eq!(orphans(d.path()).unwrap(), ["0000aaaa0000"]);
        assert!(remove_orphan(d.path(), "0000aaaa0000").unwrap());
        assert!(
            !remove_orphan(d.path(), "abc123000000").unwrap(),
            "a dir with a record is no orphan"
        );
    }

    #[test]
    fn names_follow_dockers_rule() {
        assert!(check_name("web-1.a_b").is_ok());
        assert!(check_name("-x").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("").is_err());
    }
}
