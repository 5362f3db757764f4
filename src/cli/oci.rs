//! runc's command line, which engines call a runtime with (`oci`'s commands).
//!
//! **The dispatch.** One binary answers both command lines. `stagebox ARGS` takes the OCI
//! path when
//! - a runc global flag comes before the command (`--root`, `--log`, `--log-format`,
//!   `--systemd-cgroup`, `--debug`, `--rootless`, `--criu`): containerd's shim always passes
//!   `--root`, podman's conmon `--log`; or
//! - the command exists only there: `create`, `state`, `delete`, `resume`, `features`,
//!   `spec`; or
//! - a shared command (`run`, `start`, `kill`, `exec`, `ps`, `pause`) has a flag only runc's
//!   has (`--bundle`/`-b`, `--pid-file`, `--console-socket`, `--no-pivot`, `--process`),
//!   `ps` names a container, or `run` is given one word while `./config.json` exists (runc's
//!   `run ID` in a bundle); or
//! - `start`/`kill`/`pause` names a container that was made by `create`.
//!
//! Everything else is the Docker-like command line (`stagebox::cli::Cli`).

use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

const GLOBAL_FLAGS: [&str; 7] = [
    "--root",
    "--log",
    "--log-format",
    "--systemd-cgroup",
    "--debug",
    "--rootless",
    "--criu",
];
const OCI_ONLY: [&str; 6] = ["create", "state", "delete", "resume", "features", "spec"];
const OCI_FLAGS: [&str; 7] = [
    "--bundle",
    "-b",
    "--pid-file",
    "--console-socket",
    "--no-pivot",
    "--process",
    "--no-new-keyring",
];

fn flag_name(a: &str) -> &str {
    a.split_once('=').map(|(k, _)| k).unwrap_or(a)
}

/// Whether `args` (argv without the program name) is runc's command line; `state` is the
/// default state directory, where a container made by `create` is recognised.
pub fn wants_oci(args: &[OsString], state: &std::path::Path) -> bool {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') {
        if GLOBAL_FLAGS.contains(&flag_name(&args[i])) {
            return true;
        }
        // `--trace pretty` (OCI) and `--state DIR` (Docker-like): the value is not the command.
        i += if matches!(args[i].as_str(), "--trace" | "--state") {
            2
        } else {
            1
        };
    }
    let Some(cmd) = args.get(i) else {
        return false;
    };
    if OCI_ONLY.contains(&cmd.as_str()) {
        return true;
    }
    if !matches!(
        cmd.as_str(),
        "run" | "start" | "kill" | "exec" | "ps" | "pause"
    ) {
        return false;
    }
    let rest = &args[i + 1..];
    if rest.iter().any(|a| OCI_FLAGS.contains(&flag_name(a))) {
        return true;
    }
    // The words that are not flags, nor the values of the Docker-like flags that take one
    // (`ps --format '{{.Names}}'`, `kill -s TERM web`).
    const VALUED: [&str; 12] = [
        "--format",
        "-f",
        "--filter",
        "-n",
        "--last",
        "-s",
        "--signal",
        "-e",
        "--env",
        "-w",
        "--workdir",
        "-u",
    ];
    let mut words: Vec<&String> = Vec::new();
    let mut skip = false;
    for a in rest {
        if skip {
            skip = false;
        } else if VALUED.contains(&a.as_str()) {
            skip = true;
        } else if !a.starts_with('-') {
            words.push(a);
        }
    }
    match cmd.as_str() {
        "ps" => !words.is_empty(),
        "run" => {
            words.len() == 1 && rest.len() == 1 && std::path::Path::new("config.json").is_file()
        }
        "start" | "kill" | "pause" => words.first().is_some_and(|id| {
            let dir = crate::state::container::containers_dir(state).join(id.as_str());
            crate::state::container::Container::load(&dir).is_ok_and(|c| c.oci.is_some())
        }),
        _ => false,
    }
}

/// stagebox as an OCI runtime, with runc's command line (what podman, containerd and CRI-O
/// call). Each container is built by the same stages as `stagebox run`.
#[derive(Parser, Debug)]
#[command(name = "stagebox", version, about, long_about = None)]
pub struct OciCli {
    /// Where container state is kept (a stagebox state directory; default: stagebox's).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Where errors (and, with --trace, the stage trace) are written instead of stderr.
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// text or json (runc's JSON lines: level, msg, time).
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    pub log_format: String,
    /// Use systemd to manage cgroups (not supported: refused with a sentence).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// More output in the log.
    #[arg(long, global = true)]
    pub debug: bool,
    /// runc's rootless mode switch (true, false or auto); stagebox decides by its own uid.
    #[arg(long, value_name = "MODE")]
    pub rootless: Option<String>,
    /// runc's CRIU path (checkpointing is not supported).
    #[arg(long, global = true, value_name = "PATH", hide = true)]
    pub criu: Option<String>,
    /// The stage trace: off, pretty or json (also STAGEBOX_TRACE), written to --log or stderr.
    #[arg(long, global = true, env = "STAGEBOX_TRACE", value_name = "MODE")]
    pub trace: Option<String>,
    #[command(subcommand)]
    pub cmd: OciCmd,
}

/// How `create` and `run` are given the bundle.
#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    /// The bundle directory (config.json and the root filesystem).
    #[arg(short = 'b', long, value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
    /// Where the container process's pid is written.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// A unix socket that receives the terminal's master (process.terminal).
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// chroot instead of pivot_root (stagebox's chroot root switch).
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc's callers: stagebox never makes a session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Descriptors 3 .. 3+N-1 stay open for the workload.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// The container's id.
    pub id: String,
}

#[derive(Subcommand, Debug)]
pub enum OciCmd {
    /// Create a container from a bundle; its process waits before the exec until `start`.
    Create(CreateArgs),
    /// Create and start a container; wait for it unless --detach.
    Run {
        #[command(flatten)]
        args: CreateArgs,
        /// Return once it runs (the caller reaps it).
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep the container after it exits (runc deletes it).
        #[arg(long)]
        keep: bool,
    },
    /// Start a created container: its process execs the workload.
    Start { id: String },
    /// Print the container's OCI state as JSON.
    State { id: String },
    /// Send a signal to the container process (default SIGTERM).
    Kill {
        /// Every process in the container.
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and everything it left on the host.
    Delete {
        /// Kill it first if it still runs.
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// Run a new process in the container (setns into its namespaces).
    Exec(OciExecArgs),
    /// The container's processes.
    Ps {
        /// table or json.
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        id: String,
        /// ps options (ignored: stagebox prints its own columns).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of the container (the cgroup freezer).
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// What this runtime supports, as the OCI features JSON.
    Features,
    /// Write a starting config.json into the bundle directory.
    Spec {
        #[arg(short = 'b', long, value_name = "DIR", default_value = ".")]
        bundle: PathBuf,
        /// A config for a user without root (a user namespace mapping that user).
        #[arg(long)]
        rootless: bool,
    },
}

/// runc's `exec`: the process from --process FILE (a process.json) or the arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct OciExecArgs {
    /// A JSON file with the process (the `process` object of a config.json).
    #[arg(short = 'p', long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Return at once; the caller reaps the process.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Where the new process's pid is written.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// A unix socket that receives the terminal's master (with -t or process.terminal).
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// A terminal for the process.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The working directory.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// KEY=VALUE.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// UID[:GID].
    #[arg(short = 'u', long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Descriptors 3 .. 3+N-1 stay open.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for runc's callers (ignored: stagebox has no AppArmor or SELinux support).
    #[arg(long, hide = true)]
    pub process_label: Option<String>,
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Add a capability (ignored: the container's bounding set applies).
    #[arg(short = 'c', long = "cap", hide = true)]
    pub cap: Vec<String>,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci(args: &[&str]) -> bool {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        wants_oci(&args, std::path::Path::new("/nonexistent"))
    }

    #[test]
    fn a_global_flags_value_is_not_taken_for_the_command() {
        assert!(oci(&["--trace", "pretty", "create", "lab"]));
        assert!(oci(&["--trace=pretty", "create", "lab"]));
        assert!(oci(&["--trace", "pretty", "state", "lab"]));
        assert!(!oci(&["--state", "/tmp/s", "run", "--rm", "--", "true"]));
        assert!(oci(&["--state", "/tmp/s", "delete", "lab"]));
    }

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    /// A state directory holding one OCI container (`oci1`, as `create` records it) and one
    /// Docker-like container (`web`).
    fn state_with_records() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (id, oci) in [("oci1", true), ("web", false)] {
            let mut rec = serde_json::json!({
                "id": id, "name": id, "image": "busybox", "command": ["sh"],
                "created": 0, "status": "running", "exit_code": null,
                "runtime_pid": null, "pid": null
            });
            if oci {
                rec["oci"] = serde_json::json!({"bundle": "/b"});
            }
            let c: crate::state::container::Container =
                serde_json::from_value(rec).expect("a record");
            c.save(dir.path()).expect("save the record");
        }
        dir
    }

    #[test]
    fn engines_argv_forms_take_the_oci_path() {
        let state = state_with_records();
        let s = state.path();
        for a in [
            // containerd's shim.
            "--root /run/containerd/runc/k8s.io --log /x/log.json --log-format json create --bundle /b --pid-file /b/init.pid c1",
            "--root /r start c1",
            "--root /r delete c1",
            // podman's conmon and podman itself.
            "create --bundle /b --pid-file /p --console-socket /s c1",
            "--log /x/log create -b /b c1",
            "start oci1",
            "kill oci1 15",
            "kill oci1",
            "pause oci1",
            "delete --force c1",
            "state c1",
            "exec --pid-file /f --process /p.json --detach c1",
            "exec --process=/p.json c1",
            "features",
            "spec",
            "resume oci1",
            "ps c1",
            "run --bundle /b c1",
        ] {
            assert!(wants_oci(&argv(a), s), "{a:?} should be runc's command line");
        }
    }

    #[test]
    fn docker_like_argv_stays_docker_like() {
        let state = state_with_records();
        let s = state.path();
        for a in [
            "run -d alpine",
            "run --rm -it busybox sh",
            "ps",
            "ps -a",
            "start web",
            "kill web",
            "kill web 15",
            "pause web",
            "exec web ls",
            "exec -it web sh",
            "start nothing-of-that-name",
            "images",
            "",
            "--help",
        ] {
            assert!(!wants_oci(&argv(a), s), "{a:?} should stay Docker-like");
        }
    }
}
