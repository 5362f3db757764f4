//! The command line. Parsing only: every action is a library call; every library error is one
//! sentence on stderr and exit status 125.

use clap::Parser;
use stagebox::cli::{parse_source, Cli, Cmd};
use stagebox::config::{default_state_dir, RunConfig};
use stagebox::trace::TraceMode;

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
            command,
        } => {
            let trace: TraceMode = trace.parse()?;
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
        Cmd::Lesson {
            number,
            list,
            no_pause,
            check,
            lessons,
        } => {
            let all = stagebox::lessons::load(lessons.as_deref())?;
            if list {
                print!("{}", stagebox::lessons::list_text(&all));
                return Ok(0);
            }
            let lesson = stagebox::lessons::find(&all, number.as_deref().unwrap_or(""))?;
            let env = stagebox::lessons::StepEnv::for_this_binary(&state)?;
            if check {
                stagebox::lessons::check(lesson, &env)
            } else {
                stagebox::lessons::run(lesson, &env, !no_pause)
            }
        }
        Cmd::Book { out, lessons } => {
            let all = stagebox::lessons::load(lessons.as_deref())?;
            let env = stagebox::lessons::StepEnv::for_this_binary(&state)?;
            let written = stagebox::book::generate(&out, &all, &env)?;
            println!("wrote {} chapters under {}; `mdbook build {}` renders them", written, out.join("src").display(), out.display());
            Ok(0)
        }
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
