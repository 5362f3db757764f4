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
    fn plan(&self, volumes_given: bool) -> stagebox::Result<Plan> {
        let rs: RootSwitch = self.root_switch.parse()?;
        Plan::resolve(
            &Toggles {
                only: self.only.clone(),
                without: self.without.clone(),
                volumes_given,
            },
            rs,
        )
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
        /// Name the container (default box-<short id>).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Remove the container and its anonymous volumes when it exits.
        #[arg(long)]
        rm: bool,
        /// Mount the container's root filesystem read-only (volumes stay writable).
        #[arg(long)]
        read_only: bool,
        /// A volume: /host/path:/container/path[:ro], name:/container/path[:ro], or /container/path.
        #[arg(short = 'v', long = "volume", value_name = "VOLUME")]
        volume: Vec<String>,
        #[command(flatten)]
        image: ImageRunArgs,
        /// The command and its arguments.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// List every stage: what it does, on or off by default, the lesson that teaches it.
    Stages,
    /// List containers (running ones; -a: all kept ones).
    Ps {
        #[arg(short, long)]
        all: bool,
    },
    /// Remove containers (-f: also running ones, killing them).
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "CONTAINER")]
        containers: Vec<String>,
    },
    /// What a container added (A), changed (C) and deleted (D), from its writable layer.
    Diff {
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Show a container's record (or else an image) as JSON: its command, status, layers and volumes.
    Inspect {
        /// Print only this field (for example upper_dir, state, exit_code).
        #[arg(short, long, value_name = "FIELD")]
        format: Option<String>,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    #[command(flatten)]
    Image(ImageCmd),
    /// Manage volumes.
    Volume {
        #[command(subcommand)]
        cmd: VolumeCmd,
    },
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

/// `stagebox run IMAGE [CMD...]`, `--image`, `--entrypoint`, `--user`.
#[derive(Args, Clone)]
struct ImageRunArgs {
    /// Run this image (NAME[:TAG] or ID); same as giving IMAGE before the command.
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// Replace the image's Entrypoint ("" clears it).
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,
    /// Run as this user: uid[:gid] or name[:group] (names from the image's /etc/passwd).
    #[arg(short = 'u', long, value_name = "USER")]
    user: Option<String>,
    /// IMAGE [CMD [ARG...]]: an image, then the command that replaces its Cmd.
    #[arg(value_name = "IMAGE [CMD]", allow_hyphen_values = true, num_args = 1..)]
    positional: Vec<String>,
}

impl ImageRunArgs {
    /// The image part of the run config, and the command (after the image, or after --).
    fn split(self, after_dashes: Vec<String>) -> (stagebox::image::run::RunImage, Vec<String>) {
        let mut pos = self.positional.into_iter();
        let image = self.image.or_else(|| pos.next());
        let mut command: Vec<String> = pos.collect();
        // `run IMAGE -- CMD`: clap hands the -- over as a value.
        if command.first().is_some_and(|a| a == "--") {
            command.remove(0);
        }
        command.extend(after_dashes);
        let run = stagebox::image::run::RunImage {
            source: image.map(stagebox::image::run::ImageSource::Ref),
            entrypoint: self.entrypoint,
            user: self.user,
        };
        (run, command)
    }
}

#[derive(Subcommand)]
enum ImageCmd {
    /// List images (default:latest, the default rootfs, is always there).
    Images,
    /// Remove images by NAME[:TAG] or ID (-f: even if a kept container uses one).
    Rmi {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// A root filesystem tarball (plain or gzip: docker export, a distribution's minimal rootfs) as a one-layer image.
    Import {
        #[arg(value_name = "ROOTFS.tar[.gz]")]
        file: PathBuf,
        #[arg(value_name = "NAME[:TAG]")]
        reference: String,
    },
    /// Load images from an OCI layout directory or a `docker save` tarball.
    Load {
        #[arg(value_name = "DIR|FILE.tar")]
        path: PathBuf,
        /// Name the loaded image NAME[:TAG].
        #[arg(short, long, value_name = "NAME[:TAG]")]
        tag: Option<String>,
    },
    /// Save an image into an OCI layout directory, named by its tag there (skopeo oci:DIR:TAG).
    Save {
        #[arg(value_name = "IMAGE")]
        image: String,
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// The history of an image: one line per step, newest first.
    History {
        #[arg(value_name = "IMAGE")]
        image: String,
    },
    /// Make a new image from a container's writable layer.
    Commit {
        /// A comment for the history entry.
        #[arg(short, long)]
        message: Option<String>,
        /// A Containerfile instruction applied to the config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE).
        #[arg(short, long = "change", value_name = "INSTRUCTION")]
        change: Vec<String>,
        #[arg(value_name = "CONTAINER")]
        container: String,
        #[arg(value_name = "NAME[:TAG]")]
        reference: String,
    },
    /// Build an image from a Containerfile, step by step.
    Build {
        /// The Containerfile (default CONTEXT/Containerfile, else CONTEXT/Dockerfile).
        #[arg(short, long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Name the image NAME[:TAG].
        #[arg(short, long, value_name = "NAME[:TAG]")]
        tag: String,
        /// Set an ARG (NAME=VALUE).
        #[arg(long = "build-arg", value_name = "NAME=VALUE")]
        build_arg: Vec<String>,
        /// Run every step, even those whose layer is cached.
        #[arg(long)]
        no_cache: bool,
        #[arg(value_name = "CONTEXT")]
        context: PathBuf,
    },
}

fn image_cmd(state: &std::path::Path, cmd: ImageCmd) -> stagebox::Result<i32> {
    use stagebox::image;
    match cmd {
        ImageCmd::Images => print!("{}", image::images_table(state)?),
        ImageCmd::Rmi { force, images } => {
            for i in images {
                for n in image::remove(state, &i, force)? {
                    println!("Untagged: {n}");
                }
            }
        }
        ImageCmd::Import { file, reference } => println!("{}", image::transfer::import(state, &file, &reference)?.config_digest),
        ImageCmd::Load { path, tag } => {
            for n in image::transfer::load(state, &path, tag.as_deref())? {
                println!("Loaded image: {n}");
            }
        }
        ImageCmd::Save { image, dir } => {
            let tag = image::transfer::save(state, &image, &dir)?;
            println!("{}:{tag}", dir.display());
        }
        ImageCmd::History { image } => print!("{}", image::history_table(state, &image)?),
        ImageCmd::Commit { message, change, container, reference } => {
            let opts = image::commit::CommitOptions { message, changes: change };
            println!("{}", image::commit::commit(state, &container, &reference, &opts)?.config_digest);
        }
        ImageCmd::Build { file, tag, build_arg, no_cache, context } => {
            let file = file.unwrap_or_else(|| {
                let c = context.join("Containerfile");
                if c.exists() { c } else { context.join("Dockerfile") }
            });
            let opts = image::build::BuildOptions { file, tag, context, build_args: build_arg, no_cache };
            println!("{}", image::build::build(state, &opts)?);
        }
    }
    Ok(0)
}

#[derive(Subcommand)]
enum VolumeCmd {
    /// List volumes.
    Ls,
    /// Create a named volume.
    Create { name: String },
    /// Show a volume as JSON, with the containers that use it.
    Inspect { name: String },
    /// Remove volumes (refused while a kept container uses one, unless -f).
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn json<T: serde::Serialize>(v: &T) -> stagebox::Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| stagebox::Error::usage(e.to_string()))
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
            name,
            rm,
            read_only,
            volume,
            image,
            command,
        } => {
            let (image, command) = image.split(command);
            let trace: TraceMode = trace.parse()?;
            let volumes = volume
                .iter()
                .map(|v| stagebox::volume::parse(v))
                .collect::<stagebox::Result<Vec<_>>>()?;
            let plan = toggles.plan(!volumes.is_empty())?;
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
                name,
                remove: rm,
                read_only,
                volumes,
                image,
            };
            stagebox::runtime::run(&cfg)
        }
        Cmd::Stages => {
            print!("{}", stagebox::report::stages_table());
            Ok(0)
        }
        Cmd::Ps { all } => {
            print!("{}", stagebox::container::ps_table(&state, all));
            Ok(0)
        }
        Cmd::Rm { force, containers } => {
            for c in containers {
                let removed = stagebox::container::remove(&state, &c, force)?;
                println!("{}", removed.id);
            }
            Ok(0)
        }
        Cmd::Diff { container } => {
            let c = stagebox::container::find(&state, &container)?;
            print!("{}", stagebox::diff::render(&stagebox::diff::diff(&c.upper(&state), &c.lower)));
            Ok(0)
        }
        Cmd::Inspect { format, container } => {
            let v = stagebox::image::inspect_any(&state, &container)?;
            match format {
                None => println!("{}", json(&v)?),
                Some(f) => match v.get(&f) {
                    Some(serde_json::Value::String(s)) => println!("{s}"),
                    Some(other) => println!("{other}"),
                    None => {
                        return Err(stagebox::Error::usage(format!(
                            "inspect has no field {f:?}; run it without --format to see them all"
                        )))
                    }
                },
            }
            Ok(0)
        }
        Cmd::Volume { cmd } => {
            use stagebox::volume;
            match cmd {
                VolumeCmd::Ls => {
                    println!("{:<24}  {}", "VOLUME NAME", "MOUNTPOINT");
                    for v in volume::list(&state) {
                        println!("{:<24}  {}", v.name, v.mountpoint.display());
                    }
                }
                VolumeCmd::Create { name } => println!("{}", volume::create(&state, &name, false)?.name),
                VolumeCmd::Inspect { name } => {
                    let v = volume::inspect(&state, &name)?;
                    let mut val = serde_json::to_value(&v).map_err(|e| stagebox::Error::usage(e.to_string()))?;
                    val["used_by"] = serde_json::json!(volume::users(&state, &name));
                    println!("{}", json(&val)?);
                }
                VolumeCmd::Rm { force, names } => {
                    for n in names {
                        volume::remove(&state, &n, force)?;
                        println!("{n}");
                    }
                }
            }
            Ok(0)
        }
        Cmd::Plan { toggles, json } => {
            let plan = toggles.plan(false)?;
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
        Cmd::Image(cmd) => image_cmd(&state, cmd),
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
