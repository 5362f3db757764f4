//! The command line. Parsing only: every action is a library call; every library error is one
//! sentence on stderr and exit status 125.

use clap::{Args, Parser, Subcommand};
use stagebox::config::{default_state_dir, RunConfig};
use stagebox::plan::{Plan, RootSwitch, Toggles};
use stagebox::rootfs::default::Source;
use stagebox::trace::TraceMode;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "stagebox",
    version,
    about = "Build a Linux container one stage at a time, and watch what the kernel sees change",
    long_about = None
)]
struct Cli {
    /// State directory (default rootfs, later images and containers).
    #[arg(long, global = true, env = "STAGEBOX_STATE", value_name = "DIR")]
    state: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct StageToggles {
    /// Switch these stages off (comma-separated).
    #[arg(long, value_name = "STAGES", value_delimiter = ',')]
    without: Vec<String>,
    /// Run only these stages (comma-separated); the order is always the pipeline's.
    #[arg(long, value_name = "STAGES", value_delimiter = ',', num_args = 0..=1, default_missing_value = "")]
    only: Option<Vec<String>>,
    /// How the pivot stage switches the root: pivot (pivot_root) or chroot.
    #[arg(long, value_name = "MODE", default_value = "pivot")]
    root_switch: String,
}

impl StageToggles {
    fn plan(&self) -> stagebox::Result<Plan> {
        let rs: RootSwitch = self.root_switch.parse()?;
        Plan::resolve(
            &Toggles {
                only: self.only.clone(),
                without: self.without.clone(),
            },
            rs,
        )
    }
}

/// Resource limits, as `docker run` names them (the cgroup stage sets them).
#[derive(Args, Clone)]
struct LimitArgs {
    /// Memory limit, e.g. 64m (units b, k, m, g; at least 6m). The OOM killer acts above it.
    #[arg(short = 'm', long, value_name = "SIZE", allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory plus swap limit (needs --memory; -1: unlimited swap). Default: twice --memory.
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// How many CPUs' worth of time, e.g. 0.5 (a CFS quota per 100 ms period).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    cpus: Option<String>,
    /// Relative CPU weight, cgroup v1 style (2 to 262144; default 1024).
    #[arg(long, value_name = "SHARES", allow_hyphen_values = true)]
    cpu_shares: Option<String>,
    /// Relative CPU weight, cgroup v2 style (1 to 10000; default 100).
    #[arg(long, value_name = "WEIGHT", allow_hyphen_values = true)]
    cpu_weight: Option<String>,
    /// Most processes the container may have (-1: no limit). A fork bomb stops here.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pids_limit: Option<String>,
    /// CPUs the container may run on, e.g. 0-1,3.
    #[arg(long, value_name = "LIST", allow_hyphen_values = true)]
    cpuset_cpus: Option<String>,
}

impl LimitArgs {
    fn parse(self) -> stagebox::Result<stagebox::cgroup::Limits> {
        stagebox::cgroup::Limits::from_flags(&stagebox::cgroup::LimitFlags {
            memory: self.memory,
            memory_swap: self.memory_swap,
            cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            cpu_weight: self.cpu_weight,
            pids_limit: self.pids_limit,
            cpuset_cpus: self.cpuset_cpus,
        })
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a command in a container built from the stages.
    Run {
        #[command(flatten)]
        toggles: StageToggles,
        /// Root filesystem directory (default: the default rootfs, made on first use).
        #[arg(long, value_name = "DIR")]
        rootfs: Option<PathBuf>,
        /// What to make the default rootfs from: auto, busybox or host.
        #[arg(long, value_name = "SOURCE", default_value = "auto")]
        rootfs_source: String,
        /// The container's hostname (default: stagebox-<short id>).
        #[arg(long, value_name = "NAME")]
        hostname: Option<String>,
        /// Trace format on stderr: pretty, json or off.
        #[arg(long, env = "STAGEBOX_TRACE", default_value = "pretty", value_name = "FORMAT")]
        trace: String,
        /// Run `stagebox probe` inside (exec'd from stagebox's own file, nothing copied into the
        /// rootfs); arguments after -- go to the probe (for example: --probe -- --escape).
        #[arg(long)]
        probe: bool,
        /// Set an environment variable in the container (KEY=VALUE).
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Working directory inside the container.
        #[arg(short = 'w', long, value_name = "DIR")]
        workdir: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// The command and its arguments.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// List every stage: what it does, on or off by default, the lesson that teaches it.
    Stages,
    /// Show the resolved pipeline for these toggles, without running anything.
    Plan {
        #[command(flatten)]
        toggles: StageToggles,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Say where the default rootfs is and what it was made from (making it if needed).
    Rootfs {
        /// auto, busybox or host.
        #[arg(long, value_name = "SOURCE", default_value = "auto")]
        source: String,
        #[arg(long)]
        json: bool,
    },
    /// Report what this process sees: pid, hostname, namespaces, root, mounts, maps, network.
    Probe {
        #[arg(long)]
        json: bool,
        /// Also try the classic chroot escape (read-only) and say whether it reached the host.
        #[arg(long)]
        escape: bool,
        /// With --escape: a file on the host; seeing it after the climb proves the escape.
        #[arg(long, value_name = "PATH")]
        marker: Option<PathBuf>,
    },
    /// Check what this host supports, and what will not work here and why.
    Doctor {
        #[arg(long)]
        json: bool,
    },
}

fn parse_source(s: &str) -> stagebox::Result<Source> {
    match s {
        "auto" => Ok(Source::Auto),
        "busybox" => Ok(Source::Busybox),
        "host" => Ok(Source::Host),
        other => Err(stagebox::Error::usage(format!(
            "unknown rootfs source {other:?}; use auto, busybox or host"
        ))),
    }
}

fn real_main(cli: Cli) -> stagebox::Result<i32> {
    let state = cli.state.unwrap_or_else(default_state_dir);
    match cli.cmd {
        Cmd::Run {
            toggles,
            rootfs,
            rootfs_source,
            hostname,
            trace,
            probe,
            env,
            workdir,
            limits,
            command,
        } => {
            let trace: TraceMode = trace.parse()?;
            let limits = limits.parse()?;
            let plan = toggles.plan()?;
            let default_source = parse_source(&rootfs_source)?;
            let (probe, command) = if probe {
                (Some(command), Vec::new())
            } else {
                (None, command)
            };
            stagebox::trace::init(trace);
            let cfg = RunConfig {
                command,
                rootfs,
                default_source,
                hostname,
                plan,
                probe,
                state_dir: state,
                env,
                workdir,
                trace,
                limits,
            };
            stagebox::runtime::run(&cfg)
        }
        Cmd::Stages => {
            print!("{}", stagebox::report::stages_table());
            Ok(0)
        }
        Cmd::Plan { toggles, json } => {
            let plan = toggles.plan()?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&plan)
                        .map_err(|e| stagebox::Error::usage(e.to_string()))?
                );
            } else {
                print!("{}", stagebox::report::plan_table(&plan));
            }
            Ok(0)
        }
        Cmd::Rootfs { source, json } => {
            let r = stagebox::rootfs::default::ensure(&state, parse_source(&source)?)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r).map_err(|e| stagebox::Error::usage(e.to_string()))?
                );
            } else {
                println!("path:      {}", r.path.display());
                println!("made from: {}", r.made_from);
                if r.created_now {
                    println!("(created just now)");
                }
            }
            Ok(0)
        }
        Cmd::Probe { json, escape, marker } => {
            stagebox::probe::run_with(json, escape.then_some(marker.as_deref()))
        }
        Cmd::Doctor { json } => stagebox::doctor::run(json),
    }
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
                let _ = e.print();
                std::process::exit(0);
            }
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| l.starts_with("error:"))
                .unwrap_or("error: invalid arguments")
                .trim_start_matches("error: ")
                .to_string();
            eprintln!("stagebox: {first}; see `stagebox --help`");
            std::process::exit(125);
        }
    };
    match real_main(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("stagebox: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
