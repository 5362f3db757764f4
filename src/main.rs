//! The command line. Parsing only: every action is a library call; every library error is one
//! sentence on stderr and exit status 125. The clap definition is in `stagebox::cli`.

use clap::Parser;
use stagebox::cli::{
    parse_source, Cli, Cmd, ContainerCmd, ImageCmd, NetworkCmd, PsArgs, VolumeCmd,
};
use stagebox::state::dir::default_state_dir;

fn json<T: serde::Serialize>(v: &T) -> stagebox::Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| stagebox::Error::usage(e.to_string()))
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
        ImageCmd::Import { file, reference } => println!(
            "{}",
            image::transfer::import(state, &file, &reference)?.config_digest
        ),
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
        ImageCmd::Commit {
            message,
            change,
            container,
            reference,
        } => {
            let opts = stagebox::build::commit::CommitOptions {
                message,
                changes: change,
            };
            println!(
                "{}",
                stagebox::build::commit::commit(state, &container, &reference, &opts)?
                    .config_digest
            );
        }
        ImageCmd::Build {
            file,
            tag,
            build_arg,
            no_cache,
            network,
            context,
        } => {
            let network = stagebox::runtime::config::NetworkRequest::parse(network.as_deref())?;
            if matches!(
                network,
                stagebox::runtime::config::NetworkRequest::Container(_)
            ) {
                return Err(stagebox::Error::usage(
                    "build --network takes bridge, host, none or a network's name; a RUN step cannot join a container",
                ));
            }
            if !context.is_dir() {
                return Err(stagebox::Error::usage(format!(
                    "the build context {} is not a directory; give the directory the Containerfile's COPY sources are in",
                    context.display()
                )));
            }
            let file = file.unwrap_or_else(|| {
                let c = context.join("Containerfile");
                if c.exists() {
                    c
                } else {
                    context.join("Dockerfile")
                }
            });
            if !file.is_file() {
                return Err(stagebox::Error::usage(format!(
                    "there is no {}; write a Containerfile there, or name one with -f",
                    file.display()
                )));
            }
            let opts = stagebox::build::BuildOptions {
                file,
                tag,
                context,
                build_args: build_arg,
                no_cache,
                network,
            };
            println!("{}", stagebox::build::build(state, &opts)?);
        }
    }
    Ok(0)
}

fn volume_cmd(state: &std::path::Path, cmd: VolumeCmd) -> stagebox::Result<i32> {
    use stagebox::state::volume;
    match cmd {
        VolumeCmd::Ls => {
            println!("{:<24}  {}", "VOLUME NAME", "MOUNTPOINT");
            for v in volume::list(state) {
                println!("{:<24}  {}", v.name, v.mountpoint.display());
            }
        }
        VolumeCmd::Create { name } => {
            println!("{}", volume::create(state, &name, false)?.name)
        }
        VolumeCmd::Inspect { name } => {
            let v = volume::inspect(state, &name)?;
            let mut val =
                serde_json::to_value(&v).map_err(|e| stagebox::Error::usage(e.to_string()))?;
            val["used_by"] = serde_json::json!(volume::users(state, &name));
            println!("{}", json(&val)?);
        }
        VolumeCmd::Rm { force, names } => {
            for n in names {
                volume::remove(state, &n, force)?;
                println!("{n}");
            }
        }
    }
    Ok(0)
}

fn network_cmd(state: &std::path::Path, cmd: NetworkCmd) -> stagebox::Result<i32> {
    use stagebox::network::{bridge, ipam};
    // Addresses whose holder was killed go back first (their flock went with it).
    let _ = ipam::prune(state);
    let _ = ipam::prune(&bridge::home(state, ipam::DEFAULT_NETWORK));
    let needs_root = || {
        if nix::unistd::geteuid().is_root() {
            Ok(())
        } else {
            Err(stagebox::Error::usage(
                "a network's bridge lives on the host, so making or removing one needs root; run it with sudo",
            ))
        }
    };
    match cmd {
        NetworkCmd::Ls => {
            println!(
                "{:<20}  {:<16}  {:<18}  GATEWAY",
                "NAME", "BRIDGE", "SUBNET"
            );
            for n in bridge::list(state) {
                println!(
                    "{:<20}  {:<16}  {:<18}  {}",
                    n.name,
                    n.bridge,
                    n.subnet.to_string(),
                    n.gateway
                );
            }
        }
        NetworkCmd::Create { subnet, name } => {
            needs_root()?;
            if name == ipam::DEFAULT_NETWORK {
                return Err(stagebox::Error::usage(
                    "\"bridge\" is the default network, made on first use; pick another name",
                ));
            }
            let net = ipam::create(state, &name, subnet.as_deref())?;
            match bridge::ensure(&net) {
                Ok(e) if e.unsupported.is_none() => {}
                r => {
                    let _ = ipam::remove(state, &name);
                    let _ = bridge::remove(&net);
                    return Err(match r {
                        Ok(e) => stagebox::Error::usage(e.unsupported.unwrap_or_default()),
                        Err(e) => e,
                    });
                }
            }
            println!("{}", net.name);
        }
        NetworkCmd::Inspect { name } => {
            let home = bridge::home(state, &name);
            println!("{}", json(&ipam::inspect_json(&home, &name)?)?);
        }
        NetworkCmd::Rm { names } => {
            needs_root()?;
            for name in names {
                if name == ipam::DEFAULT_NETWORK {
                    return Err(stagebox::Error::usage(
                        "\"bridge\" is the default network and cannot be removed, as Docker's bridge cannot",
                    ));
                }
                let net = ipam::remove(state, &name)?;
                bridge::remove(&net)?;
                println!("{name}");
            }
        }
    }
    Ok(0)
}

fn ps_cmd(state: &std::path::Path, a: PsArgs) -> stagebox::Result<i32> {
    let opts = stagebox::state::container::PsOptions {
        all: a.all,
        quiet: a.quiet,
        filters: a.filter,
        format: a.format,
        last: if a.latest { Some(1) } else { a.last },
    };
    print!("{}", stagebox::state::container::ps(state, &opts)?);
    Ok(0)
}

/// `rm A B C`: each one removed or reported (one line on stderr), on past a failure, as
/// Docker's. Exit status 1 when any failed, as Docker's: not 125, because the others were
/// removed (125 promises that nothing changed).
fn rm_cmd(state: &std::path::Path, containers: &[String], force: bool) -> i32 {
    let mut failed = false;
    for c in containers {
        if force {
            // A process frozen by the v1 freezer takes SIGKILL only once thawed.
            stagebox::runtime::ops::thaw_if_paused(state, c);
        }
        match stagebox::runtime::cleanup::remove(state, c, force) {
            Ok(id) => println!("{id}"),
            Err(e) => {
                eprintln!("stagebox: {e}");
                failed = true;
            }
        }
    }
    i32::from(failed)
}

fn container_cmd(state: &std::path::Path, cmd: ContainerCmd) -> stagebox::Result<i32> {
    match cmd {
        ContainerCmd::Prune { force: _ } => {
            let p = stagebox::runtime::cleanup::prune(state);
            println!("Deleted Containers:");
            for id in &p.ids {
                println!("{id}");
            }
            println!();
            println!(
                "Total reclaimed space: {}",
                stagebox::units::size_decimal(p.reclaimed)
            );
            for e in &p.errors {
                eprintln!("stagebox: {e}");
            }
            Ok(i32::from(!p.errors.is_empty()))
        }
    }
}

fn compare_format(as_json: bool, markdown: bool) -> stagebox::inspect::compare::Format {
    use stagebox::inspect::compare::Format;
    if as_json {
        Format::Json
    } else if markdown {
        Format::Markdown
    } else {
        Format::Table
    }
}

fn compare_cmd(opts: &stagebox::inspect::compare::CompareOpts) -> stagebox::Result<i32> {
    use stagebox::inspect::compare::{self, Format};
    {
        use std::io::IsTerminal;
        colored::control::set_override(
            std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal(),
        );
    }
    let m = compare::compare(opts)?;
    match opts.format {
        Format::Json => println!("{}", json(&m)?),
        Format::Markdown => print!("{}", compare::render_markdown(&m)),
        Format::Table => print!("{}", compare::render_table(&m, opts.evidence)),
    }
    Ok(0)
}

/// `stagebox pause` / `unpause`: what the freezer says on stderr, the name on stdout.
fn pause_cmd(
    state: &std::path::Path,
    containers: Vec<String>,
    frozen: bool,
) -> stagebox::Result<i32> {
    for c in containers {
        let what = stagebox::runtime::ops::pause(state, &c, frozen)?;
        eprintln!("stagebox: {what}");
        println!("{c}");
    }
    Ok(0)
}

/// The arguments after `run`, kept in the record for `start`.
fn run_args() -> Vec<String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().position(|a| a == "run") {
        Some(i) => args[i + 1..].to_vec(),
        None => Vec::new(),
    }
}

/// `run`, in the foreground or (-d) through a monitor that prints the id.
fn run_cmd(cfg: stagebox::runtime::config::RunConfig) -> stagebox::Result<i32> {
    stagebox::state::dir::secure(&cfg.state_dir, true)?;
    stagebox::trace::init(cfg.trace, cfg.trace_focus.clone());
    if cfg.lifecycle.detach {
        println!("{}", stagebox::runtime::monitor::detach(&cfg)?);
        return Ok(0);
    }
    stagebox::runtime::run(&cfg)
}

/// Docker's habit for commands on several containers: each one's name as given when it
/// worked, a sentence for each that did not, and a failure status if any did.
fn each(containers: &[String], f: impl Fn(&str) -> stagebox::Result<()>) -> stagebox::Result<i32> {
    let mut failed = None;
    for c in containers {
        match f(c) {
            Ok(()) => println!("{c}"),
            Err(e) => {
                eprintln!("stagebox: {e}");
                failed = Some(e.exit_code());
            }
        }
    }
    Ok(failed.unwrap_or(0))
}

/// `start [-a] [-i]`: each stopped container runs again from the `run` arguments its record
/// keeps, on its own record, directory and writable layer.
fn start_cmd(
    state: &std::path::Path,
    containers: &[String],
    attach: bool,
    interactive: bool,
) -> stagebox::Result<i32> {
    for key in containers {
        let c = stagebox::state::container::find(state, key)?;
        if c.is_running() {
            println!("{key}");
            continue;
        }
        if c.lifecycle.run_args.is_empty() {
            return Err(stagebox::Error::usage(format!(
                "container {} was made by an older stagebox that kept no run arguments; run a new one",
                c.name
            )));
        }
        let argv = ["stagebox", "run"]
            .into_iter()
            .map(String::from)
            .chain(c.lifecycle.run_args.iter().cloned());
        let Cmd::Run(args) = Cli::try_parse_from(argv)
            .map_err(|e| {
                stagebox::Error::usage(format!("the kept run arguments of {}: {e}", c.name))
            })?
            .cmd
        else {
            return Err(stagebox::Error::usage(
                "the kept run arguments are not a run",
            ));
        };
        let mut cfg = args.into_config(state.to_path_buf())?;
        cfg.lifecycle.run_args = c.lifecycle.run_args.clone();
        cfg.lifecycle.id = Some(c.id.clone());
        cfg.lifecycle.reuse = true;
        cfg.lifecycle.detach = !attach;
        cfg.lifecycle.interactive = cfg.lifecycle.interactive || interactive;
        if attach {
            return run_cmd(cfg);
        }
        stagebox::state::dir::secure(&cfg.state_dir, true)?;
        stagebox::trace::init(cfg.trace, cfg.trace_focus.clone());
        stagebox::runtime::monitor::detach(&cfg)?;
        println!("{key}");
    }
    Ok(0)
}

/// `stagebox exec`: the trace on stderr as `run`'s, then the command's exit status.
fn exec_cmd(state: &std::path::Path, args: stagebox::cli::ExecArgs) -> stagebox::Result<i32> {
    let mode: stagebox::trace::TraceMode = args.trace.parse()?;
    let mut command = args.command;
    if command.first().map(String::as_str) == Some("--") {
        command.remove(0);
    }
    let opts = stagebox::runtime::exec::ExecOptions {
        container: args.container,
        argv: command,
        env: args.env,
        workdir: args.workdir,
        user: args.user,
        interactive: args.interactive,
        tty: args.tty,
        detach: args.detach,
        tracing: mode != stagebox::trace::TraceMode::Off && !args.detach,
        ..Default::default()
    };
    stagebox::trace::init(mode, stagebox::trace::Focus::all());
    stagebox::runtime::exec::exec(state, &opts)
}

fn real_main(cli: Cli) -> stagebox::Result<i32> {
    let state = cli.state.unwrap_or_else(default_state_dir);
    // A relative state dir (`--state x`, STAGEBOX_STATE=x) means x under the current
    // directory, wherever the container process later looks at it from.
    let state = std::path::absolute(&state).unwrap_or(state);
    // Only root may enter the state directory (see stagebox::state::dir); an older one left
    // open is closed here. `stages`, `plan`, `doctor` never touch it, and `probe` runs inside
    // a container; `run` makes it after its flags are checked.
    if !matches!(
        cli.cmd,
        Cmd::Stages
            | Cmd::Plan { .. }
            | Cmd::Doctor { .. }
            | Cmd::Probe { .. }
            | Cmd::Run(_)
            | Cmd::Init { .. }
    ) {
        let create = matches!(
            cli.cmd,
            Cmd::Image(_)
                | Cmd::Volume { .. }
                | Cmd::Network { .. }
                | Cmd::Rootfs { .. }
                | Cmd::Compare { .. }
        );
        stagebox::state::dir::secure(&state, create)?;
    }
    match cli.cmd {
        Cmd::Run(args) => {
            let mut cfg = args.into_config(state)?;
            cfg.lifecycle.run_args = run_args();
            run_cmd(cfg)
        }
        Cmd::Logs {
            follow,
            tail,
            timestamps,
            since,
            container,
        } => {
            use stagebox::runtime::control;
            let opts = control::LogsOptions {
                follow,
                tail: control::parse_tail(&tail)?,
                timestamps,
                since: since
                    .map(|s| stagebox::state::logs::parse_since(&s, std::time::SystemTime::now()))
                    .transpose()?,
            };
            control::logs(&state, &container, &opts)?;
            Ok(0)
        }
        Cmd::Stop { time, containers } => each(&containers, |c| {
            stagebox::runtime::control::stop(&state, c, time)
        }),
        Cmd::Kill { signal, containers } => each(&containers, |c| {
            stagebox::runtime::control::kill(&state, c, &signal)
        }),
        Cmd::Wait { containers } => {
            for c in containers {
                println!("{}", stagebox::runtime::control::wait(&state, &c)?);
            }
            Ok(0)
        }
        Cmd::Start {
            attach,
            interactive,
            containers,
        } => start_cmd(&state, &containers, attach, interactive),
        Cmd::Restart { time, containers } => {
            for c in &containers {
                stagebox::runtime::control::stop(&state, c, time)?;
            }
            start_cmd(&state, &containers, false, false)
        }
        Cmd::Attach { container } => {
            stagebox::runtime::control::attach(&state, &container)?;
            Ok(0)
        }
        Cmd::Stages => {
            print!("{}", stagebox::cli::tables::stages_table());
            Ok(0)
        }
        Cmd::Ps(args) => ps_cmd(&state, args),
        Cmd::Rm { force, containers } => Ok(rm_cmd(&state, &containers, force)),
        Cmd::Rename {
            container,
            new_name,
        } => {
            stagebox::state::container::rename(&state, &container, &new_name)?;
            Ok(0)
        }
        Cmd::Container { cmd } => container_cmd(&state, cmd),
        Cmd::Diff { container } => {
            let c = stagebox::state::container::find(&state, &container)?;
            print!(
                "{}",
                stagebox::inspect::diff::render(&stagebox::inspect::diff::diff(
                    &c.upper(&state),
                    &c.lower
                ))
            );
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
        Cmd::Volume { cmd } => volume_cmd(&state, cmd),
        Cmd::Network { cmd } => network_cmd(&state, cmd),
        Cmd::Port { container } => {
            let c = stagebox::state::container::find(&state, &container)?;
            for p in &c.ports {
                println!("{p}");
            }
            Ok(0)
        }
        Cmd::Plan {
            toggles,
            security,
            json,
        } => {
            let (confine, _) = security.parse()?;
            let plan = toggles.plan_confined(false, confine)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&plan)
                        .map_err(|e| stagebox::Error::usage(e.to_string()))?
                );
            } else {
                print!("{}", stagebox::cli::tables::plan_table(&plan));
            }
            Ok(0)
        }
        Cmd::Rootfs { source, json } => {
            let r = stagebox::rootfs::default::ensure(&state, parse_source(&source)?)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r)
                        .map_err(|e| stagebox::Error::usage(e.to_string()))?
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
        Cmd::Probe {
            json,
            escape,
            marker,
            checks,
        } => stagebox::inspect::probe::run_full(
            json,
            escape.then_some(marker.as_deref()),
            checks.as_deref(),
        ),
        Cmd::Init { command } => stagebox::runtime::init::run(&command),
        Cmd::Compare {
            rootfs,
            stages,
            build_up,
            json: as_json,
            markdown,
            evidence,
        } => {
            let opts = stagebox::inspect::compare::CompareOpts {
                rootfs,
                run_args: Vec::new(),
                stages,
                build_up,
                format: compare_format(as_json, markdown),
                evidence,
                state: state.clone(),
            };
            compare_cmd(&opts)
        }
        Cmd::Doctor { json } => stagebox::inspect::doctor::run(json),
        Cmd::Image(cmd) => image_cmd(&state, cmd),
        Cmd::Lesson {
            number,
            list,
            no_pause,
            check,
            lessons,
        } => {
            let all = stagebox::learn::lessons::load(lessons.as_deref())?;
            if list {
                print!("{}", stagebox::learn::lessons::list_text(&all));
                return Ok(0);
            }
            let lesson = stagebox::learn::lessons::find(&all, number.as_deref().unwrap_or(""))?;
            let env = stagebox::learn::lessons::StepEnv::for_this_binary(&state)?;
            if check {
                stagebox::learn::lessons::check(lesson, &env)
            } else {
                stagebox::learn::lessons::run(lesson, &env, !no_pause)
            }
        }
        Cmd::Exec(args) => exec_cmd(&state, args),
        Cmd::Top { container } => {
            print!("{}", stagebox::runtime::ops::top(&state, &container)?);
            Ok(0)
        }
        Cmd::Stats {
            no_stream,
            containers,
        } => {
            stagebox::runtime::ops::stats(&state, &containers, !no_stream, &mut |t| {
                if !no_stream {
                    // Clear the screen and go home, as docker stats does.
                    print!("\x1b[2J\x1b[H");
                }
                print!("{t}");
                use std::io::Write;
                let _ = std::io::stdout().flush();
            })?;
            Ok(0)
        }
        Cmd::Pause { containers } => pause_cmd(&state, containers, true),
        Cmd::Unpause { containers } => pause_cmd(&state, containers, false),
        Cmd::Cp { src, dest } => {
            stagebox::runtime::copy::cp(&state, &src, &dest)?;
            Ok(0)
        }
        Cmd::Export { output, container } => {
            match output {
                Some(p) => {
                    let mut f = std::fs::File::create(&p).map_err(|e| {
                        stagebox::Error::usage(format!("cannot create {}: {e}", p.display()))
                    })?;
                    stagebox::runtime::copy::export(&state, &container, &mut f)?;
                }
                None => {
                    use std::io::IsTerminal;
                    if std::io::stdout().is_terminal() {
                        return Err(stagebox::Error::usage(
                            "export writes a tar; redirect stdout to a file or give -o FILE",
                        ));
                    }
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    stagebox::runtime::copy::export(&state, &container, &mut out)?;
                    use std::io::Write;
                    out.flush()
                        .map_err(|e| stagebox::Error::io("write the tar to stdout", e))?;
                }
            }
            Ok(0)
        }
        Cmd::Book { out, lessons } => {
            let all = stagebox::learn::lessons::load(lessons.as_deref())?;
            let env = stagebox::learn::lessons::StepEnv::for_this_binary(&state)?;
            let written = stagebox::learn::book::generate(&out, &all, &env)?;
            println!(
                "wrote {} chapters under {}; `mdbook build {}` renders them",
                written,
                out.join("src").display(),
                out.display()
            );
            Ok(0)
        }
    }
}

/// runc's command line: what engines call (`stagebox::cli::oci`).
fn oci_main(args: Vec<std::ffi::OsString>) -> ! {
    use stagebox::cli::oci::OciCli;
    let cli = match OciCli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let log = cli.log.as_ref().and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    let json = cli.log_format == "json";
    let result = oci_run(&cli, log.as_ref().and_then(|f| f.try_clone().ok()));
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = e.to_string();
            if let Some(mut f) = log {
                use std::io::Write as _;
                let time = stagebox::units::rfc3339(stagebox::units::now_secs());
                let line = if json {
                    serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
                } else {
                    format!("time={time:?} level=error msg={msg:?}")
                };
                let _ = writeln!(f, "{line}");
            }
            eprintln!("stagebox: {msg}");
            // runc's status for a failed command; a workload's own status passes through.
            std::process::exit(1);
        }
    }
}

fn oci_run(cli: &stagebox::cli::oci::OciCli, log: Option<std::fs::File>) -> stagebox::Result<i32> {
    use stagebox::cli::oci::OciCmd;
    use stagebox::oci::commands;
    if cli.systemd_cgroup {
        return Err(stagebox::Error::usage(
            "--systemd-cgroup is not supported: stagebox manages cgroups itself (cgroupfs); configure the engine with cgroup_manager = \"cgroupfs\"",
        ));
    }
    if !matches!(cli.log_format.as_str(), "text" | "json") {
        return Err(stagebox::Error::usage(format!(
            "unknown --log-format {:?}; use text or json",
            cli.log_format
        )));
    }
    let trace: stagebox::trace::TraceMode = match &cli.trace {
        Some(t) => t.parse()?,
        None => stagebox::trace::TraceMode::Off,
    };
    stagebox::trace::init_to(
        trace,
        stagebox::trace::Focus::all(),
        log.filter(|_| trace != stagebox::trace::TraceMode::Off),
    );
    let state = cli.root.clone().unwrap_or_else(default_state_dir);
    let state = std::path::absolute(&state).unwrap_or(state);
    let create = matches!(cli.cmd, OciCmd::Create(_) | OciCmd::Run { .. });
    if !matches!(cli.cmd, OciCmd::Features | OciCmd::Spec { .. }) {
        stagebox::state::dir::secure(&state, create)?;
    }
    let invocation =
        |a: &stagebox::cli::oci::CreateArgs, create: bool| stagebox::oci::map::Invocation {
            id: a.id.clone(),
            state_dir: state.clone(),
            create,
            pid_file: a.pid_file.clone(),
            console_socket: a.console_socket.clone(),
            no_pivot: a.no_pivot,
            preserve_fds: a.preserve_fds,
            trace,
        };
    match &cli.cmd {
        OciCmd::Create(a) => commands::create(&a.bundle, &invocation(a, true)),
        OciCmd::Run { args, detach, keep } => {
            let inv = invocation(args, *detach);
            if *detach {
                commands::create(&args.bundle, &inv)?;
                commands::start(&state, &args.id).map(|_| 0)
            } else {
                let _ = keep;
                commands::create(&args.bundle, &inv)
            }
        }
        OciCmd::Start { id } => commands::start(&state, id).map(|_| 0),
        OciCmd::State { id } => {
            println!("{}", commands::state(&state, id)?);
            Ok(0)
        }
        OciCmd::Kill { all, id, signal } => commands::kill(&state, id, signal, *all).map(|_| 0),
        OciCmd::Delete { force, id } => commands::delete(&state, id, *force).map(|_| 0),
        OciCmd::Exec(a) => commands::exec(
            &state,
            &commands::ExecRequest {
                id: a.id.clone(),
                process: a.process.clone(),
                detach: a.detach,
                pid_file: a.pid_file.clone(),
                console_socket: a.console_socket.clone(),
                tty: a.tty,
                cwd: a.cwd.clone(),
                env: a.env.clone(),
                user: a.user.clone(),
                command: a.command.clone(),
            },
        ),
        OciCmd::Ps { format, id, .. } => {
            println!("{}", commands::ps(&state, id, format)?);
            Ok(0)
        }
        OciCmd::Pause { id } => commands::pause(&state, id, true).map(|_| 0),
        OciCmd::Resume { id } => commands::pause(&state, id, false).map(|_| 0),
        OciCmd::Features => {
            println!("{}", commands::features());
            Ok(0)
        }
        OciCmd::Spec { bundle, rootless } => commands::spec(bundle, *rootless).map(|_| 0),
    }
}

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if stagebox::cli::oci::wants_oci(&args[1.min(args.len())..], &default_state_dir()) {
        oci_main(args);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
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
            // clap's "did you mean": `tip: a similar argument exists: '--hostname'`.
            let tip = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("tip: "))
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            eprintln!("stagebox: {first}{tip}; see `stagebox --help`");
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
