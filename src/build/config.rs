//! The instructions that only change the image config (WORKDIR, ENV, ARG, USER, LABEL,
//! EXPOSE, CMD, ENTRYPOINT), and `commit --change`, which takes the same instructions.

use super::containerfile::{normalize, parse_line, substitute, Step};
use crate::error::{Error, Result};
use oci_spec::image::ImageConfiguration;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Changes the config for one config-only instruction; false if it is not one.
pub(super) fn apply_config(
    cfg: &mut ImageConfiguration,
    step: &Step,
    vars: &BTreeMap<String, String>,
    cmd_set: &mut bool,
) -> bool {
    let mut c = cfg.config().clone().unwrap_or_default();
    match step {
        Step::Workdir(w) => {
            let w = substitute(w, vars);
            let base = c.working_dir().clone().unwrap_or_else(|| "/".into());
            let joined = if w.starts_with('/') {
                PathBuf::from(&w)
            } else {
                Path::new(&base).join(&w)
            };
            c.set_working_dir(Some(normalize(&joined)));
        }
        Step::Env(kvs) => {
            let mut env = c.env().clone().unwrap_or_default();
            for (k, v) in kvs {
                let v = substitute(v, &env_vars(&env, vars));
                env.retain(|e| e.split('=').next() != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            c.set_env(Some(env));
        }
        Step::User(u) => {
            c.set_user(Some(substitute(u, vars)));
        }
        Step::Label(kvs) => {
            let mut labels = c.labels().clone().unwrap_or_default();
            for (k, v) in kvs {
                labels.insert(substitute(k, vars), substitute(v, vars));
            }
            c.set_labels(Some(labels));
        }
        Step::Expose(ports) => {
            let mut e = c.exposed_ports().clone().unwrap_or_default();
            for p in ports {
                let p = substitute(p, vars);
                let p = if p.contains('/') {
                    p
                } else {
                    format!("{p}/tcp")
                };
                if !e.contains(&p) {
                    e.push(p);
                }
            }
            c.set_exposed_ports(Some(e));
        }
        Step::Cmd(v) => {
            c.set_cmd(Some(v.clone()));
            *cmd_set = true;
        }
        Step::Entrypoint(v) => {
            c.set_entrypoint(Some(v.clone()));
            // As Docker: a new ENTRYPOINT drops the CMD inherited from the base image.
            if !*cmd_set {
                c.set_cmd(None);
            }
        }
        _ => return false,
    }
    cfg.set_config(Some(c));
    true
}

/// `commit -c INSTRUCTION`: one config-only instruction applied to a config.
pub fn apply_change(cfg: &mut ImageConfiguration, change: &str) -> Result<()> {
    let line = parse_line(1, change.trim())
        .map_err(|e| Error::usage(format!("--change {change:?}: {e}")))?;
    let env = cfg
        .config()
        .as_ref()
        .and_then(|c| c.env().clone())
        .unwrap_or_default();
    if !apply_config(
        cfg,
        &line.step,
        &env_vars(&env, &BTreeMap::new()),
        &mut true,
    ) {
        return Err(Error::usage(format!(
            "--change {change:?}: only CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL and EXPOSE can change a commit's config"
        )));
    }
    Ok(())
}

pub(super) fn env_vars(
    env: &[String],
    args: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut m = args.clone();
    for e in env {
        if let Some((k, v)) = e.split_once('=') {
            m.insert(k.to_string(), v.to_string());
        }
    }
    m
}
