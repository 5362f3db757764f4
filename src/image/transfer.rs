//! Getting images in and out without a registry:
//!
//! - `import ROOTFS.tar[.gz] NAME[:TAG]`: a whole root filesystem (a `docker export`, a
//!   distribution's minimal rootfs tarball) becomes a one-layer image.
//! - `load DIR|FILE.tar`: an OCI image layout directory (what skopeo, umoci and `save` write),
//!   or a `docker save` tarball (either its legacy manifest.json or its OCI layout).
//! - `save NAME[:TAG] DIR`: the image into an OCI layout directory, named TAG there, so that
//!   `skopeo inspect oci:DIR:TAG` and `umoci unpack --image DIR:TAG` read it.
//!
//! Every blob is checked against its digest on the way in, and every layer is unpacked (and
//! so checked for unsafe entries) before the image gets its name.

use super::layer::{self, PackMode};
use super::store::{self, digest_hex, ref_name, LayerDesc, Store, REF_NAME};
use super::{Image, Reference};
use crate::error::{Error, Result};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest, MediaType};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const TAR_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn base_config(created_by: &str, layer: &LayerDesc) -> ImageConfiguration {
    let mut cfg = store::new_config();
    let mut c = cfg.config().clone().unwrap_or_default();
    c.set_env(Some(vec![format!("PATH={}", crate::rootfs::DEFAULT_PATH)]));
    cfg.set_config(Some(c));
    super::add_layer_to_config(&mut cfg, layer, created_by, None);
    cfg
}

/// `stagebox import`: a rootfs tarball (plain or gzip) as a one-layer image.
pub fn import(state: &Path, file: &Path, reference: &str) -> Result<Image> {
    let r = Reference::parse(reference)?;
    let store = super::open_with_default(state)?;
    let f = std::fs::File::open(file).map_err(|e| {
        Error::usage(format!(
            "cannot open {}: {e}; give a rootfs tarball (docker export, a distribution's rootfs .tar or .tar.gz)",
            file.display()
        ))
    })?;
    let what = file.display().to_string();
    let mut rd = layer::decompressed(f, &what)?;
    let (digest, size) = store.put_blob(&mut rd)?;
    let l = LayerDesc {
        diff_id: digest.clone(),
        digest,
        size,
        media_type: TAR.into(),
    };
    if let Err(e) = store.layer_dir(&l) {
        if let Ok(p) = store.blob_path(&l.digest) {
            let _ = std::fs::remove_file(p);
        }
        return Err(match e {
            Error::Io { source, .. } => {
                // tar's message can quote the file's bytes; keep its first words only.
                let why = source.to_string();
                let why = why
                    .split(" when ")
                    .next()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("");
                Error::usage(format!(
                    "{} is not a usable tar archive ({why}); give a rootfs tarball (.tar or .tar.gz)",
                    file.display()
                ))
            }
            other => other,
        });
    }
    let cfg = base_config(&format!("stagebox import {}", file.display()), &l);
    let m = store.write_image(&cfg, &[l])?;
    store.tag(&m, &r)?;
    store.find(&r.to_string())
}

/// Copies a blob from an OCI layout (or any file) into the store, checking its digest.
fn copy_blob(store: &Store, src: &Path, want: &str) -> Result<()> {
    if store.blob_path(want)?.is_file() {
        return Ok(());
    }
    let mut f =
        std::fs::File::open(src).map_err(|e| Error::io(format!("open {}", src.display()), e))?;
    let (got, _) = store.put_blob(&mut f)?;
    if got != want {
        let _ = std::fs::remove_file(store.blob_path(&got)?);
        return Err(Error::usage(format!(
            "{} does not match its digest {want}; the image is corrupt",
            src.display()
        )));
    }
    Ok(())
}

fn media_of(mt: &str) -> Result<&'static str> {
    if mt.contains("zstd") {
        return Err(Error::usage(format!(
            "layer type {mt} (zstd) is not supported; recompress the image with gzip"
        )));
    }
    Ok(if mt.ends_with("gzip") { TAR_GZ } else { TAR })
}

/// A name for an image from a layout's ref.name annotation: a full NAME:TAG, or just a TAG
/// (as skopeo and umoci write it), then named after the layout directory.
fn name_for(refname: Option<&str>, dir_name: &str) -> Result<Reference> {
    match refname {
        Some(r) if r.contains(':') || r.contains('/') => {
            Reference::parse(r.rsplit_once('/').map(|(_, n)| n).unwrap_or(r))
        }
        Some(tag) => Reference::parse(&format!("{dir_name}:{tag}")),
        None => Reference::parse(dir_name),
    }
}

fn sanitized(name: &str) -> String {
    let s: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if s.is_empty() {
        "loaded".into()
    } else {
        s
    }
}

/// Follows an index to the manifest for this machine (linux, its architecture), or the first.
fn pick_manifest(dir: &Path, d: &Descriptor) -> Result<Descriptor> {
    if *d.media_type() != MediaType::ImageIndex
        && !d.media_type().to_string().contains("manifest.list")
    {
        return Ok(d.clone());
    }
    let idx: oci_spec::image::ImageIndex = store::read_layout_json(dir, d.digest().as_ref())?;
    let arch = store::new_config().architecture().to_string();
    let m = idx
        .manifests()
        .iter()
        .find(|m| {
            m.platform().as_ref().is_some_and(|p| {
                p.architecture().to_string() == arch && p.os().to_string() == "linux"
            })
        })
        .or_else(|| idx.manifests().first())
        .ok_or_else(|| {
            Error::usage(format!(
                "index {} in {} lists no manifests",
                d.digest(),
                dir.display()
            ))
        })?;
    pick_manifest(dir, m)
}

/// Loads every image of an OCI layout directory; returns their names.
fn load_layout(
    store: &Store,
    dir: &Path,
    dir_name: &str,
    rename: Option<&Reference>,
) -> Result<Vec<String>> {
    let idx = store::read_index(dir)?;
    if idx.manifests().is_empty() {
        return Err(Error::usage(format!(
            "{} holds no image (its index.json is empty)",
            dir.display()
        )));
    }
    if rename.is_some() && idx.manifests().len() > 1 {
        return Err(Error::usage(format!(
            "{} holds {} images; -t names one, so load without -t",
            dir.display(),
            idx.manifests().len()
        )));
    }
    let mut names = Vec::new();
    for top in idx.manifests() {
        let d = pick_manifest(dir, top)?;
        let blob = |digest: &str| -> Result<PathBuf> {
            Ok(dir.join("blobs/sha256").join(digest_hex(digest)?))
        };
        let manifest: ImageManifest = store::read_layout_json(dir, d.digest().as_ref())?;
        let cdigest = manifest.config().digest().to_string();
        copy_blob(store, &blob(&cdigest)?, &cdigest)?;
        let config: ImageConfiguration = store.read_json(&cdigest)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::usage(format!(
                "image {} has {} layers but {} diff_ids",
                d.digest(),
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (l, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let digest = l.digest().to_string();
            copy_blob(store, &blob(&digest)?, &digest)?;
            let ld = LayerDesc {
                digest,
                diff_id: diff_id.clone(),
                size: l.size(),
                media_type: media_of(&l.media_type().to_string())?.into(),
            };
            store.layer_dir(&ld)?;
            layers.push(ld);
        }
        let m = store.write_manifest(&cdigest, manifest.config().size(), &layers)?;
        let name = match rename {
            Some(r) => r.clone(),
            None => name_for(ref_name(top), dir_name)?,
        };
        store.tag(&m, &name)?;
        names.push(name.to_string());
    }
    Ok(names)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Loads a legacy `docker save` directory (manifest.json, <id>.json, <id>/layer.tar).
fn load_docker(store: &Store, dir: &Path, rename: Option<&Reference>) -> Result<Vec<String>> {
    let p = dir.join("manifest.json");
    let text = std::fs::read(&p).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
    let entries: Vec<DockerManifest> = serde_json::from_slice(&text)
        .map_err(|e| Error::usage(format!("manifest.json of the docker save archive: {e}")))?;
    let inside = |rel: &str| crate::rootfs::resolve_in_root(dir, Path::new(rel));
    let mut names = Vec::new();
    for e in entries {
        let mut cf = std::fs::File::open(inside(&e.config)?)
            .map_err(|x| Error::io(format!("open {}", e.config), x))?;
        let (cdigest, csize) = store.put_blob(&mut cf)?;
        let config: ImageConfiguration = store.read_json(&cdigest)?;
        let diff_ids = config.rootfs().diff_ids().clone();
        if diff_ids.len() != e.layers.len() {
            return Err(Error::usage(
                "the docker save archive's manifest and config disagree on the layers",
            ));
        }
        let mut layers = Vec::new();
        for (rel, diff_id) in e.layers.iter().zip(diff_ids) {
            let path = inside(rel)?;
            let mut f =
                std::fs::File::open(&path).map_err(|x| Error::io(format!("open {rel}"), x))?;
            let (digest, size) = store.put_blob(&mut f)?;
            let mut head = [0u8; 2];
            let gz = std::io::Read::read_exact(
                &mut std::fs::File::open(&path).map_err(|x| Error::io(format!("open {rel}"), x))?,
                &mut head,
            )
            .is_ok()
                && head == [0x1f, 0x8b];
            let ld = LayerDesc {
                digest,
                diff_id,
                size,
                media_type: if gz { TAR_GZ } else { TAR }.into(),
            };
            store.layer_dir(&ld)?;
            layers.push(ld);
        }
        let m = store.write_manifest(&cdigest, csize, &layers)?;
        let tag = e.repo_tags.as_ref().and_then(|t| t.first()).cloned();
        let name = match (rename, tag) {
            (Some(r), _) => r.clone(),
            (None, Some(t)) => name_for(Some(&t), "loaded")?,
            (None, None) => Reference::parse(&format!("loaded:{}", &cdigest[7..19]))?,
        };
        store.tag(&m, &name)?;
        names.push(name.to_string());
    }
    Ok(names)
}

/// `stagebox load`: an OCI layout directory or a `docker save` tarball.
pub fn load(state: &Path, path: &Path, rename: Option<&str>) -> Result<Vec<String>> {
    let rename = rename.map(Reference::parse).transpose()?;
    let store = super::open_with_default(state)?;
    let md = std::fs::metadata(path).map_err(|e| {
        Error::usage(format!(
            "cannot read {}: {e}; give an OCI layout directory or a `docker save` tarball",
            path.display()
        ))
    })?;
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir_name = sanitized(stem.trim_end_matches(".gz").trim_end_matches(".tar"));
    if md.is_dir() {
        if path.join("index.json").is_file() {
            return load_layout(&store, path, &dir_name, rename.as_ref());
        }
        if path.join("manifest.json").is_file() {
            return load_docker(&store, path, rename.as_ref());
        }
        return Err(Error::usage(format!(
            "{} is neither an OCI layout (index.json) nor a docker save directory (manifest.json)",
            path.display()
        )));
    }
    // A tarball: unpacked (with the layer checks) into a scratch dir in the state dir.
    let tmp = state.join(format!("tmp-load-{}", crate::state::ids::new_id()));
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    let result = (|| {
        let f = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        layer::unpack(f, &tmp, &path.display().to_string())?;
        if tmp.join("index.json").is_file() && tmp.join("blobs").is_dir() {
            load_layout(&store, &tmp, &dir_name, rename.as_ref())
        } else if tmp.join("manifest.json").is_file() {
            load_docker(&store, &tmp, rename.as_ref())
        } else {
            Err(Error::usage(format!(
                "{} is not a docker save archive (no manifest.json or index.json); for a root filesystem tarball use `stagebox import`",
                path.display()
            )))
        }
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// `stagebox save`: the image into an OCI layout directory (made if missing, added to if it
/// is a layout already), named by its tag there.
pub fn save(state: &Path, key: &str, dir: &Path) -> Result<String> {
    let store = super::open_with_default(state)?;
    let img = store.find(key)?;
    if dir.exists()
        && !dir.join("oci-layout").exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        return Err(Error::usage(format!(
            "{} exists and is not an OCI layout; give a new or empty directory",
            dir.display()
        )));
    }
    store::init_layout(dir)?;
    let mut digests = vec![img.manifest_digest.clone(), img.config_digest.clone()];
    digests.extend(img.layers()?.into_iter().map(|l| l.digest));
    for d in &digests {
        let dst = dir.join("blobs/sha256").join(digest_hex(d)?);
        if !dst.exists() {
            std::fs::copy(store.blob_path(d)?, &dst)
                .map_err(|e| Error::io(format!("copy blob to {}", dst.display()), e))?;
        }
    }
    let tag = img
        .reference
        .as_deref()
        .and_then(|r| Reference::parse(r).ok())
        .map(|r| r.tag)
        .unwrap_or_else(|| "latest".into());
    let mut desc = store::descriptor(
        MediaType::ImageManifest,
        &img.manifest_digest,
        img.manifest_size,
    )?;
    desc.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), tag.clone())])));
    let mut idx = store::read_index(dir)?;
    let mut ms = idx.manifests().clone();
    ms.retain(|m| ref_name(m) != Some(tag.as_str()));
    ms.push(desc);
    idx.set_manifests(ms);
    let text = serde_json::to_vec_pretty(&idx)
        .map_err(|e| Error::usage(format!("encode index.json: {e}")))?;
    crate::state::atomic::write_atomic(&dir.join("index.json"), &text)?;
    Ok(tag)
}

/// Packs a directory tree into a layer tar file (used by tests and `import` of directories).
pub fn pack_dir_to_file(dir: &Path, out: &Path) -> Result<()> {
    let f = std::fs::File::create(out)
        .map_err(|e| Error::io(format!("create {}", out.display()), e))?;
    layer::pack(dir, PackMode::Plain, f).map(|_| ())
}
