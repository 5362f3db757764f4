//! `stagebox commit CONTAINER NAME[:TAG]`: the container's writable layer (overlay's upper
//! dir) becomes a new read-only layer on top of the image it ran on, as `docker commit` does.
//! Whiteouts become `.wh.NAME` files and opaque directories `.wh..wh..opq` in the tarball.
//! Volumes are bind mounts over the overlay: their mount points may be in the layer, never
//! their contents.

use crate::error::{Error, Result};
use crate::image::store::{LayerDesc, Store};
use crate::image::{layer::PackMode, Reference};
use oci_spec::image::ImageConfiguration;
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `-m`: the history entry's comment.
    pub message: Option<String>,
    /// `-c`: Containerfile instructions applied to the config (CMD, ENTRYPOINT, ENV, ...).
    pub changes: Vec<String>,
}

/// The image a container ran on: its config and layers. A container on the default rootfs
/// ran on `default:latest`; one on a `--rootfs DIR` gets that directory packed as its base.
fn base_of(
    store: &Store,
    state: &Path,
    c: &crate::state::container::Container,
) -> Result<(ImageConfiguration, Vec<LayerDesc>)> {
    if let Some(id) = &c.image_id {
        let img = store.find(id).map_err(|_| {
            Error::usage(format!(
                "the image container {} ran on ({}) was removed; its layer cannot be committed on top of it",
                c.name, c.image
            ))
        })?;
        let layers = img.layers()?;
        return Ok((img.config, layers));
    }
    if c.lower.is_empty() {
        return Err(Error::usage(format!(
            "container {} ran without the rootfs stage: it has no writable layer to commit",
            c.name
        )));
    }
    let default =
        crate::rootfs::default::ensure(state, crate::rootfs::default::RootfsSource::Auto)?.path;
    if c.lower == [default] {
        let img = crate::image::open_with_default(state)?.find(crate::image::DEFAULT_IMAGE)?;
        let layers = img.layers()?;
        return Ok((img.config, layers));
    }
    let mut cfg = crate::image::store::new_config();
    let mut layers = Vec::new();
    for dir in c.lower.iter().rev() {
        let l = store.pack_layer(dir, PackMode::Plain)?;
        crate::image::add_layer_to_config(
            &mut cfg,
            &l,
            &format!("stagebox: rootfs {}", dir.display()),
            None,
        );
        layers.push(l);
    }
    Ok((cfg, layers))
}

pub fn commit(
    state: &Path,
    key: &str,
    reference: &str,
    opts: &CommitOptions,
) -> Result<crate::image::Image> {
    let reference = Reference::parse(reference)?;
    let c = crate::state::container::find(state, key)?;
    let upper = c.upper(state);
    if !upper.is_dir() {
        return Err(Error::usage(format!(
            "container {} has no writable layer to commit",
            c.name
        )));
    }
    let store = crate::image::open_with_default(state)?;
    let (mut cfg, mut layers) = base_of(&store, state, &c)?;
    let layer = store.pack_layer(&upper, PackMode::Upper)?;
    // The container's command becomes Cmd (without the image's Entrypoint in front of it).
    let mut conf = cfg.config().clone().unwrap_or_default();
    let ep = conf.entrypoint().clone().unwrap_or_default();
    let cmd = match c.command.strip_prefix(ep.as_slice()) {
        Some(rest) if !ep.is_empty() => rest.to_vec(),
        _ => c.command.clone(),
    };
    if !cmd.is_empty()
        && !c
            .command
            .first()
            .is_some_and(|a| a.starts_with("stagebox probe"))
    {
        conf.set_cmd(Some(cmd));
    }
    cfg.set_config(Some(conf));
    crate::image::add_layer_to_config(
        &mut cfg,
        &layer,
        &c.command.join(" "),
        opts.message.as_deref(),
    );
    layers.push(layer);
    for change in &opts.changes {
        crate::build::config::apply_change(&mut cfg, change)?;
    }
    let m = store.write_image(&cfg, &layers)?;
    store.tag(&m, &reference)?;
    store.find(&reference.to_string())
}
