//! `stagebox run IMAGE [CMD...]`: what the container takes from the image, as Docker does.
//!
//! - argv = Entrypoint + Cmd. Arguments after the image replace Cmd; `--entrypoint X`
//!   replaces Entrypoint (and drops the image's Cmd); `--entrypoint ""` clears it.
//! - Env: the image's, under what `-e` sets. WorkingDir (made if missing), User.
//! - The overlay's lower dirs are the image's unpacked layers, topmost first.

use super::store::LayerDesc;
use crate::error::{Error, Result};
use oci_spec::image::ImageConfiguration;
use std::path::PathBuf;

/// An image built in memory (a build step's state), not (yet) in the store.
#[derive(Debug, Clone)]
pub struct Built {
    pub label: String,
    pub config: ImageConfiguration,
    pub layers: Vec<LayerDesc>,
}

#[derive(Debug, Clone)]
pub enum ImageSource {
    /// NAME[:TAG] or an image ID in the store.
    Ref(String),
    Built(Box<Built>),
}

/// The image part of `stagebox run`.
#[derive(Debug, Clone, Default)]
pub struct RunImage {
    pub source: Option<ImageSource>,
    /// `--entrypoint`: replaces the image's Entrypoint ("" clears it).
    pub entrypoint: Option<String>,
    /// `--user`: uid[:gid] or name[:group].
    pub user: Option<String>,
    /// Supplementary groups added to the user's own (an OCI config's
    /// `process.user.additionalGids`).
    pub groups: Vec<u32>,
}

/// An image resolved for one run.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// What the container record calls it (NAME:TAG).
    pub reference: String,
    /// The config digest, when the image is in the store.
    pub image_id: Option<String>,
    /// Unpacked layers, topmost first (overlay lowerdir order).
    pub lower: Vec<PathBuf>,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// The config's ExposedPorts (`80/tcp`), for `-P`.
    pub exposed: Vec<String>,
    /// The config's StopSignal (`stop` sends it first).
    pub stop_signal: Option<String>,
}

/// Entrypoint + Cmd, with the run's overrides applied.
pub fn argv(config: &ImageConfiguration, args: &[String], entrypoint: Option<&str>) -> Vec<String> {
    let c = config.config().clone().unwrap_or_default();
    let ep: Vec<String> = match entrypoint {
        Some("") => Vec::new(),
        Some(e) => vec![e.to_string()],
        None => c.entrypoint().clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !args.is_empty() {
        args.to_vec()
    } else if entrypoint.is_some() {
        Vec::new()
    } else {
        c.cmd().clone().unwrap_or_default()
    };
    ep.into_iter().chain(cmd).collect()
}

/// Resolves the image of a run (unpacking its layers on first use); None without an image.
pub fn resolve(
    state: &std::path::Path,
    img: &RunImage,
    args: &[String],
) -> Result<Option<Resolved>> {
    let Some(src) = &img.source else {
        return Ok(None);
    };
    let store = super::open_with_default(state)?;
    let (reference, image_id, config, layers) = match src {
        ImageSource::Ref(r) => {
            let i = store.find(r)?;
            let layers = i.layers()?;
            let name = i.reference.clone().unwrap_or_else(|| i.short_id());
            (name, Some(i.config_digest.clone()), i.config, layers)
        }
        ImageSource::Built(b) => (b.label.clone(), None, b.config.clone(), b.layers.clone()),
    };
    let mut lower = Vec::new();
    for l in layers.iter().rev() {
        lower.push(store.layer_dir(l)?);
    }
    if lower.is_empty() {
        lower.push(store.empty_layer_dir()?);
    }
    let argv = argv(&config, args, img.entrypoint.as_deref());
    if argv.is_empty() {
        return Err(Error::usage(format!(
            "image {reference} has no Entrypoint or Cmd; give the command after the image name"
        )));
    }
    let c = config.config().clone().unwrap_or_default();
    Ok(Some(Resolved {
        reference,
        image_id,
        lower,
        argv,
        env: c.env().clone().unwrap_or_default(),
        workdir: c.working_dir().clone().filter(|w| !w.is_empty()),
        user: img
            .user
            .clone()
            .or_else(|| c.user().clone())
            .filter(|u| !u.is_empty()),
        exposed: c.exposed_ports().clone().unwrap_or_default(),
        stop_signal: c.stop_signal().clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ep: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfiguration {
        let mut c = super::super::store::new_config();
        let mut x = c.config().clone().unwrap_or_default();
        x.set_entrypoint(ep.map(|v| v.iter().map(|s| s.to_string()).collect()));
        x.set_cmd(cmd.map(|v| v.iter().map(|s| s.to_string()).collect()));
        c.set_config(Some(x));
        c
    }

    #[test]
    fn entrypoint_and_cmd_as_docker_combines_them() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let c = cfg(Some(&["/bin/echo", "hi"]), Some(&["there"]));
        assert_eq!(argv(&c, &[], None), s(&["/bin/echo", "hi", "there"]));
        assert_eq!(argv(&c, &s(&["you"]), None), s(&["/bin/echo", "hi", "you"]));
        assert_eq!(argv(&c, &[], Some("/bin/ls")), s(&["/bin/ls"]));
        assert_eq!(
            argv(&c, &s(&["-l"]), Some("/bin/ls")),
            s(&["/bin/ls", "-l"])
        );
        assert_eq!(argv(&c, &s(&["id"]), Some("")), s(&["id"]));
        let c = cfg(None, Some(&["/bin/sh", "-c", "echo x"]));
        assert_eq!(argv(&c, &[], None), s(&["/bin/sh", "-c", "echo x"]));
    }
}
