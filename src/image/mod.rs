//! Images, as Docker and the OCI image spec have them: a stack of read-only layers (tarballs,
//! each unpacked once and used as an overlay lower dir) plus a config (the command, its
//! environment, working directory and user) and a history, named NAME:TAG.
//!
//! - `store`: the OCI image layout under STATE/images, and the unpacked layers.
//! - `layer`: tarball <-> directory, whiteouts translated, unsafe entries refused.
//! - `run`: what `stagebox run IMAGE` takes from the config (Entrypoint, Cmd, Env, ...).
//! - `transfer`: import of a rootfs tarball, load and save of OCI layouts and docker-save tars.
//! - `user`: USER names resolved against the image's /etc/passwd and /etc/group.
//!
//! Storage only: building (`build/`) and committing a container sit above `runtime/` and use
//! this folder; nothing here runs a container.
//!
//! May import: `error`, `units`, `kernel`, `state`, `rootfs`.

pub mod layer;
pub mod reference;
pub mod run;
pub mod store;
pub mod transfer;
pub mod user;

use crate::error::{Error, Result};
pub use reference::Reference;
use std::path::Path;
pub use store::{Image, LayerDesc, Store};

fn ago(created: Option<&String>) -> String {
    let Some(t) = created.and_then(|c| crate::units::parse_rfc3339(c)) else {
        return "N/A".into();
    };
    crate::units::ago(crate::units::now_secs().saturating_sub(t))
}

pub const DEFAULT_IMAGE: &str = "default:latest";

/// The store, with `default:latest` in it: the default rootfs imported as a one-layer image
/// on first use, so that every image command works without a download.
pub fn open_with_default(state: &Path) -> Result<Store> {
    let store = Store::open(state)?;
    if store.find(DEFAULT_IMAGE).is_err() {
        let r = crate::rootfs::default::ensure(state, crate::rootfs::default::RootfsSource::Auto)?;
        let layer = store.pack_layer(&r.path, layer::PackMode::Plain)?;
        let mut cfg = store::new_config();
        let mut c = cfg.config().clone().unwrap_or_default();
        c.set_env(Some(vec![format!("PATH={}", crate::rootfs::DEFAULT_PATH)]));
        c.set_cmd(Some(vec!["/bin/sh".into()]));
        cfg.set_config(Some(c));
        add_layer_to_config(
            &mut cfg,
            &layer,
            &format!("stagebox: the default rootfs ({})", r.made_from),
            None,
        );
        let m = store.write_image(&cfg, &[layer])?;
        store.tag(&m, &Reference::parse(DEFAULT_IMAGE)?)?;
    }
    Ok(store)
}

/// Appends a layer's diff_id and a history entry for it.
pub fn add_layer_to_config(
    cfg: &mut oci_spec::image::ImageConfiguration,
    layer: &LayerDesc,
    created_by: &str,
    comment: Option<&str>,
) {
    cfg.rootfs_mut().diff_ids_mut().push(layer.diff_id.clone());
    push_history(cfg, created_by, comment, false);
}

pub fn push_history(
    cfg: &mut oci_spec::image::ImageConfiguration,
    created_by: &str,
    comment: Option<&str>,
    empty: bool,
) {
    let now = crate::units::rfc3339(crate::units::now_secs());
    let mut h = oci_spec::image::History::default();
    h.set_created(Some(now.clone()));
    h.set_created_by(Some(created_by.to_string()));
    h.set_comment(comment.map(str::to_string));
    h.set_empty_layer(empty.then_some(true));
    let mut hist = cfg.history().clone().unwrap_or_default();
    hist.push(h);
    cfg.set_history(Some(hist));
    cfg.set_created(Some(now));
}

/// `stagebox images`.
pub fn images_table(state: &Path) -> Result<String> {
    let store = open_with_default(state)?;
    let mut imgs = store.images()?;
    imgs.sort_by(|a, b| a.reference.cmp(&b.reference));
    let mut out = format!(
        "{:<28}  {:<12}  {:<12}  {:<16}  {}\n",
        "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"
    );
    for i in imgs {
        let r = i
            .reference
            .as_deref()
            .and_then(|r| Reference::parse(r).ok());
        let (name, tag) = r
            .map(|r| (r.name, r.tag))
            .unwrap_or(("<none>".into(), "<none>".into()));
        out.push_str(&format!(
            "{:<28}  {:<12}  {:<12}  {:<16}  {}\n",
            name,
            tag,
            i.short_id(),
            ago(i.config.created().as_ref()),
            crate::units::size_decimal(i.size())
        ));
    }
    Ok(out)
}

/// `stagebox rmi`: removes a name (or, given an ID, every name of that image), then the
/// blobs and layers nothing uses any more. Refused while a kept container uses the image,
/// unless `force` (its layers then stay until the container is removed).
pub fn remove(state: &Path, key: &str, force: bool) -> Result<Vec<String>> {
    let store = Store::open(state)?;
    let img = store.find(key)?;
    let users: Vec<String> = crate::state::container::list(state)
        .into_iter()
        .filter(|c| c.image_id.as_deref() == Some(img.config_digest.as_str()))
        .map(|c| c.name)
        .collect();
    if !users.is_empty() && !force {
        return Err(Error::usage(format!(
            "image {key} is used by container(s) {}; remove them first, or use rmi -f",
            users.join(", ")
        )));
    }
    let by_name = Reference::parse(key)
        .ok()
        .map(|r| r.to_string())
        .filter(|r| img.reference.as_ref() == Some(r));
    let names: Vec<String> = match by_name {
        Some(n) => vec![n],
        None => store
            .images()?
            .into_iter()
            .filter(|i| i.config_digest == img.config_digest)
            .filter_map(|i| i.reference)
            .collect(),
    };
    for n in &names {
        store.untag(&Reference::parse(n)?)?;
    }
    store.gc()?;
    Ok(names)
}

/// `stagebox inspect IMAGE`: the image as `docker image inspect` shows it, plus where its
/// layers are unpacked.
pub fn inspect_json(state: &Path, img: &Image) -> serde_json::Value {
    let layers = img.layers().unwrap_or_default();
    let dirs: Vec<String> = layers
        .iter()
        .filter_map(|l| {
            store::digest_hex(&l.diff_id)
                .ok()
                .map(|h| state.join("layers").join(h).display().to_string())
        })
        .collect();
    serde_json::json!({
        "Id": img.config_digest,
        "RepoTags": img.reference.iter().collect::<Vec<_>>(),
        "ManifestDigest": img.manifest_digest,
        "Created": img.config.created(),
        "Architecture": img.config.architecture().to_string(),
        "Os": img.config.os().to_string(),
        "Config": img.config.config(),
        "RootFS": {"Type": "layers", "Layers": img.config.rootfs().diff_ids()},
        "Size": img.size(),
        "History": img.config.history(),
        "LayerDirs": dirs,
    })
}

/// `stagebox inspect NAME`: a container by that name or id, else an image, as Docker does.
pub fn inspect_any(state: &Path, key: &str) -> Result<serde_json::Value> {
    if let Ok(c) = crate::state::container::find(state, key) {
        return Ok(crate::state::container::inspect_json(state, &c));
    }
    let store = open_with_default(state)?;
    match store.find(key) {
        Ok(img) => Ok(inspect_json(state, &img)),
        Err(_) => Err(Error::usage(format!(
            "no container or image named {key:?}; `stagebox ps -a` and `stagebox images` list them"
        ))),
    }
}

/// `stagebox history IMAGE`: newest first, as `docker history` prints it.
pub fn history_table(state: &Path, key: &str) -> Result<String> {
    let store = open_with_default(state)?;
    let img = store.find(key)?;
    let layers = img.layers()?;
    let hist = img.config.history().clone().unwrap_or_default();
    let mut rows = Vec::new();
    let mut li = 0;
    for h in &hist {
        let size = if h.empty_layer() == Some(true) {
            0
        } else {
            let s = layers.get(li).map(|l| l.size).unwrap_or(0);
            li += 1;
            s
        };
        rows.push((
            h.created().clone(),
            h.created_by().clone().unwrap_or_default(),
            size,
            h.comment().clone().unwrap_or_default(),
        ));
    }
    let mut out = format!(
        "{:<12}  {:<16}  {:<48}  {:<8}  {}\n",
        "IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"
    );
    for (i, (created, by, size, comment)) in rows.iter().rev().enumerate() {
        let id = if i == 0 {
            img.short_id()
        } else {
            "<missing>".into()
        };
        let mut by = by.replace('\n', " ");
        if by.chars().count() > 48 {
            by = format!("{}…", by.chars().take(47).collect::<String>());
        }
        out.push_str(&format!(
            "{:<12}  {:<16}  {:<48}  {:<8}  {}\n",
            id,
            ago(created.as_ref()),
            by,
            crate::units::size_decimal(*size),
            comment
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(Reference::parse("web").unwrap().to_string(), "web:latest");
        assert_eq!(
            Reference::parse("a/b:v1.2").unwrap().to_string(),
            "a/b:v1.2"
        );
        assert!(Reference::parse("Web").is_err());
        assert!(Reference::parse("web:").is_err());
        assert!(Reference::parse("../x").is_err());
    }

    #[test]
    fn times_round_trip() {
        assert_eq!(crate::units::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(crate::units::rfc3339(1714564800), "2024-05-01T12:00:00Z");
        assert_eq!(
            crate::units::parse_rfc3339("2024-05-01T12:00:00.123Z"),
            Some(1714564800)
        );
    }
}
