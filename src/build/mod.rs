//! `stagebox build -f Containerfile -t NAME[:TAG] CONTEXT`: an image, step by step.
//!
//! - FROM starts from an image (or `scratch`: nothing).
//! - RUN runs its command in a container on the layers so far, through the normal runtime;
//!   the container's writable layer becomes the next layer (a commit).
//! - COPY and ADD make a layer from files of the context directory, never from outside it.
//! - WORKDIR, ENV, ARG, USER, LABEL, EXPOSE, CMD and ENTRYPOINT only change the config.
//!
//! A step that makes a layer is cached under a key of its parent (the layers and the config
//! so far), the instruction and, for COPY/ADD, a hash of the copied files: the same step on
//! the same parent reuses its layer ("using cache").
//!
//! - `containerfile`: the parser; `config`: instructions that change only the config;
//!   `copy`: COPY/ADD layers from the context; `commit`: a container's writable layer
//!   becomes a layer of a new image. This file drives a build.
//!
//! May import: everything from `runtime` down (a RUN step is a real `stagebox run`).

pub mod commit;
pub mod config;
pub mod containerfile;
pub mod copy;

use crate::error::{Error, Result};
use crate::image::layer::{self, sha256};
use crate::image::run::{Built, ImageSource, RunImage};
use crate::image::store::{LayerDesc, Store};
use crate::image::Reference;
use config::{apply_config, env_vars};
use containerfile::{parse, perr, substitute, Step};
use copy::{collect_sources, copy_step};
use oci_spec::image::ImageConfiguration;
use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub file: PathBuf,
    pub tag: String,
    pub context: PathBuf,
    pub build_args: Vec<String>,
    pub no_cache: bool,
    /// `--network` for the RUN steps (Docker's default: the default bridge).
    pub network: crate::runtime::config::NetworkRequest,
}

/// The in-progress image.
struct State {
    config: ImageConfiguration,
    layers: Vec<LayerDesc>,
    label: String,
}

fn cache_key(st: &State, what: &str, args: &BTreeMap<String, String>) -> String {
    let c = st.config.config().clone().unwrap_or_default();
    let text = serde_json::json!({
        "parent": st.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
        "env": c.env(),
        "workdir": c.working_dir(),
        "user": c.user(),
        "args": args,
        "step": what,
    })
    .to_string();
    sha256(text.as_bytes())
        .trim_start_matches("sha256:")
        .to_string()
}

fn say(s: impl std::fmt::Display) {
    eprintln!("{s}");
}

/// Builds and names the image; returns its ID.
pub fn build(state: &Path, opts: &BuildOptions) -> Result<String> {
    let reference = Reference::parse(&opts.tag)?;
    let text = std::fs::read_to_string(&opts.file)
        .map_err(|e| Error::io(format!("read {}", opts.file.display()), e))?;
    let lines = parse(&text)?;
    let context = std::fs::canonicalize(&opts.context).map_err(|_| {
        Error::usage(format!(
            "the build context {} does not exist; give a directory",
            opts.context.display()
        ))
    })?;
    if !context.is_dir() {
        return Err(Error::usage(format!(
            "the build context {} is not a directory",
            opts.context.display()
        )));
    }
    let mut given: BTreeMap<String, String> = BTreeMap::new();
    for a in &opts.build_args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| Error::usage(format!("--build-arg {a:?} is not NAME=VALUE")))?;
        given.insert(k.to_string(), v.to_string());
    }
    let store = crate::image::open_with_default(state)?;
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut st: Option<State> = None;
    let mut cmd_set = false;
    let total = lines.len();
    for (i, l) in lines.iter().enumerate() {
        say(format_args!("STEP {}/{total}: {}", i + 1, l.text));
        if let Step::Arg(k, default) = &l.step {
            let v = given
                .get(k)
                .cloned()
                .or_else(|| default.clone())
                .unwrap_or_default();
            args.insert(k.clone(), v);
            if let Some(s) = st.as_mut() {
                crate::image::push_history(&mut s.config, &l.text, None, true);
            }
            continue;
        }
        if let Step::From(img) = &l.step {
            let name = substitute(img, &args);
            st = Some(if name == "scratch" {
                State {
                    config: crate::image::store::new_config(),
                    layers: Vec::new(),
                    label: "scratch".into(),
                }
            } else {
                let base = store
                    .find(&name)
                    .map_err(|e| Error::usage(format!("Containerfile line {}: {e}", l.line)))?;
                let layers = base.layers()?;
                say(format_args!(
                    "--> {} ({})",
                    base.reference.as_deref().unwrap_or(&name),
                    base.short_id()
                ));
                State {
                    config: base.config,
                    layers,
                    label: name,
                }
            });
            cmd_set = false;
            continue;
        }
        let Some(s) = st.as_mut() else {
            return Err(perr(l.line, "an instruction before FROM"));
        };
        let env = s
            .config
            .config()
            .as_ref()
            .and_then(|c| c.env().clone())
            .unwrap_or_default();
        let vars = env_vars(&env, &args);
        if apply_config(&mut s.config, &l.step, &vars, &mut cmd_set) {
            crate::image::push_history(&mut s.config, &l.text, None, true);
            say("--> config only, no layer");
            continue;
        }
        let (key, made): (String, Box<dyn FnOnce(&Store, &State) -> Result<LayerDesc>>) = match &l
            .step
        {
            Step::Run(argv) => {
                let key = cache_key(s, &format!("RUN {}", serde_json::json!(argv)), &args);
                let (argv, args2, line) = (argv.clone(), args.clone(), l.line);
                let st2 = state.to_path_buf();
                let network = opts.network.clone();
                (
                    key,
                    Box::new(move |store: &Store, s: &State| {
                        run_step(&st2, store, s, &argv, &args2, line, network)
                    }),
                )
            }
            Step::Copy {
                add,
                chown,
                srcs,
                dest,
            } => {
                let srcs: Vec<String> = srcs.iter().map(|x| substitute(x, &vars)).collect();
                let dest = substitute(dest, &vars);
                let files = collect_sources(&context, &srcs, *add, l.line)?;
                let mut h = <sha2::Sha256 as sha2::Digest>::new();
                for f in &files {
                    sha2::Digest::update(&mut h, f.fingerprint()?.as_bytes());
                }
                let content = layer::hex(&sha2::Digest::finalize(h));
                let key = cache_key(s, &format!("{} {chown:?} {dest} {content}", l.text), &args);
                let (chown, line) = (chown.clone(), l.line);
                (
                    key,
                    Box::new(move |store: &Store, s: &State| {
                        let workdir = s
                            .config
                            .config()
                            .as_ref()
                            .and_then(|c| c.working_dir().clone())
                            .unwrap_or_else(|| "/".into());
                        copy_step(
                            store,
                            &s.layers,
                            &workdir,
                            &files,
                            &dest,
                            chown.as_deref(),
                            line,
                        )
                    }),
                )
            }
            _ => return Err(perr(l.line, "this instruction is not supported here")),
        };
        let cached = if opts.no_cache {
            None
        } else {
            store.cache_get(&key)
        };
        let layer = match cached {
            Some(layer) => {
                say(format_args!("--> using cache {}", layer.digest));
                layer
            }
            None => {
                let layer = made(&store, s)?;
                store.cache_put(&key, &layer)?;
                layer
            }
        };
        say(format_args!(
            "--> layer {} ({})",
            layer.digest,
            crate::units::size_decimal(layer.size)
        ));
        crate::image::add_layer_to_config(&mut s.config, &layer, &l.text, None);
        s.layers.push(layer);
    }
    let s = st.ok_or_else(|| perr(1, "no FROM"))?;
    let m = store.write_image(&s.config, &s.layers)?;
    store.tag(&m, &reference)?;
    let img = store.find(&reference.to_string())?;
    say(format_args!("--> {} tagged {}", img.short_id(), reference));
    Ok(img.config_digest)
}

/// RUN: a container on the layers so far, through the normal runtime (trace off); its
/// writable layer becomes the step's layer, then the container is removed.
fn run_step(
    state: &Path,
    store: &Store,
    s: &State,
    argv: &[String],
    args: &BTreeMap<String, String>,
    line: usize,
    network: crate::runtime::config::NetworkRequest,
) -> Result<LayerDesc> {
    let name = format!("build-{}", crate::state::ids::new_id());
    let host_net = network == crate::runtime::config::NetworkRequest::Host;
    let plan = crate::stages::plan::Plan::resolve(
        &crate::stages::plan::Toggles {
            only: None,
            without: if host_net {
                vec!["net".into()]
            } else {
                Vec::new()
            },
            volumes_given: false,
            confine: Default::default(),
        },
        crate::stages::RootSwitch::Pivot,
    )?;
    let env: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let cfg = crate::runtime::config::RunConfig {
        command: argv.to_vec(),
        rootfs: None,
        default_source: crate::rootfs::default::RootfsSource::Auto,
        hostname: None,
        plan,
        probe: None,
        state_dir: state.to_path_buf(),
        env,
        workdir: None,
        trace: crate::trace::TraceMode::Off,
        trace_focus: crate::trace::Focus::all(),
        name: Some(name.clone()),
        remove: false,
        read_only: false,
        volumes: Vec::new(),
        limits: Default::default(),
        security: Default::default(),
        extras: Default::default(),
        image: RunImage {
            source: Some(ImageSource::Built(Box::new(Built {
                label: format!("(build of {})", s.label),
                config: s.config.clone(),
                layers: s.layers.clone(),
            }))),
            entrypoint: Some(String::new()),
            user: None,
            groups: Vec::new(),
        },
        network,
        publish: Vec::new(),
        publish_all: false,
        lifecycle: Default::default(),
        oci: None,
    };
    // The runtime blocks the signals it forwards and leaves them blocked: put the mask back
    // so the next step's workload starts with the mask we had.
    let mut mask = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        None,
        Some(&mut mask),
    );
    let result = crate::runtime::run(&cfg);
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&mask), None);
    let layer = match result {
        Ok(0) => crate::state::container::find(state, &name)
            .and_then(|c| store.pack_layer(&c.upper(state), layer::PackMode::Upper)),
        Ok(code) => Err(Error::usage(format!(
            "Containerfile line {line}: RUN {} exited with status {code}",
            argv.join(" ")
        ))),
        Err(e) => Err(Error::usage(format!("Containerfile line {line}: {e}"))),
    };
    let _ = crate::state::container::remove(state, &name, true);
    layer
}

#[cfg(test)]
mod tests {

    use super::containerfile::*;
    use super::copy::*;
    use super::*;

    #[test]
    fn parses_the_classic_containerfile() {
        let text = "# the classic\nFROM default\nWORKDIR /app\nCOPY server /app/\nEXPOSE 80\nRUN echo a \\\n  && echo b\nCMD [\"/app/server\"]\nENTRYPOINT echo hi\n";
        let l = parse(text).unwrap();
        assert_eq!(l.len(), 7);
        assert_eq!(l[0].step, Step::From("default".into()));
        assert_eq!(l[4].line, 6);
        assert_eq!(
            l[4].step,
            Step::Run(vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo a  && echo b".into()
            ])
        );
        assert_eq!(l[5].step, Step::Cmd(vec!["/app/server".into()]));
        assert_eq!(
            l[6].step,
            Step::Entrypoint(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
    }

    #[test]
    fn parse_errors_name_the_line() {
        let e = parse("FROM x\n\nFROBNICATE y\n").unwrap_err().to_string();
        assert!(
            e.starts_with("Containerfile line 3: unknown instruction FROBNICATE"),
            "{e}"
        );
        let e = parse("RUN true\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("FROM"), "{e}");
        assert!(parse("FROM x\nCOPY onlyone\n")
            .unwrap_err()
            .to_string()
            .contains("line 2"));
        assert!(parse("FROM x\nENV A=\"open\n")
            .unwrap_err()
            .to_string()
            .contains("line 2"));
        assert!(parse("FROM x\nEXPOSE http\n")
            .unwrap_err()
            .to_string()
            .contains("line 2"));
    }

    #[test]
    fn env_forms_and_substitution() {
        assert_eq!(
            key_values("A=1 B=\"two words\"", 1, "ENV").unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), "two words".into())]
        );
        assert_eq!(
            key_values("A one two", 1, "ENV").unwrap(),
            vec![("A".into(), "one two".into())]
        );
        let vars = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(
            substitute("$A/${A}/${B:-d}/${A:+y}/\\$A", &vars),
            "x/x/d/y/$A"
        );
    }

    #[test]
    fn sources_outside_the_context_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let ctx = d.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        std::fs::write(d.path().join("secret"), "s").unwrap();
        std::fs::write(ctx.join("ok"), "o").unwrap();
        std::os::unix::fs::symlink("../secret", ctx.join("link")).unwrap();
        let ctx = ctx.canonicalize().unwrap();
        assert!(collect_sources(&ctx, &["ok".into()], false, 1).is_ok());
        let e = collect_sources(&ctx, &["../secret".into()], false, 4)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 4") && e.contains("outside the build context"),
            "{e}"
        );
        let e = collect_sources(&ctx, &["link".into()], false, 5)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("symlink") && e.contains("outside the build context"),
            "{e}"
        );
    }
}
