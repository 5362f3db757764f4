//! The image store: an OCI image layout under STATE/images, as the OCI image spec defines it,
//! so that skopeo, umoci and podman read it as they read any other layout:
//!
//! ```text
//! STATE/images/oci-layout                 {"imageLayoutVersion": "1.0.0"}
//! STATE/images/index.json                 one manifest descriptor per NAME:TAG, named by the
//!                                         annotation org.opencontainers.image.ref.name
//! STATE/images/blobs/sha256/<hex>         manifests, configs and layer tarballs, by digest
//! STATE/layers/<diff_id hex>/             each layer unpacked once: an overlay lower dir
//! ```
//!
//! A blob's name is the sha256 of its bytes, so a blob is written once and never changes; two
//! images that share a layer share its blob and its unpacked directory.

use super::layer::{self, HashingWriter};
use super::reference::Reference;
use crate::error::{Error, Result};
use crate::units::rfc3339;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One layer of an image: its blob (maybe compressed) and what it unpacks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerDesc {
    /// "sha256:..." of the blob as stored.
    pub digest: String,
    /// "sha256:..." of the uncompressed tar (the config's rootfs.diff_ids entry).
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
}

/// An image found in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// NAME:TAG, when the index names it.
    pub reference: Option<String>,
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    /// The config's digest: the image ID, as Docker shows it.
    pub config_digest: String,
}

impl Image {
    /// The short image ID (12 hex digits of the config digest), as `docker images` shows it.
    pub fn short_id(&self) -> String {
        self.config_digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect()
    }

    /// The layers, bottom first, each with its diff_id.
    pub fn layers(&self) -> Result<Vec<LayerDesc>> {
        let diff_ids = self.config.rootfs().diff_ids();
        let layers = self.manifest.layers();
        if diff_ids.len() != layers.len() {
            return Err(Error::usage(format!(
                "image {} is inconsistent: its manifest has {} layers, its config {} diff_ids",
                self.short_id(),
                layers.len(),
                diff_ids.len()
            )));
        }
        Ok(layers
            .iter()
            .zip(diff_ids)
            .map(|(l, d)| LayerDesc {
                digest: l.digest().to_string(),
                diff_id: d.clone(),
                size: l.size(),
                media_type: l.media_type().to_string(),
            })
            .collect())
    }

    /// Sum of the layer blobs' sizes.
    pub fn size(&self) -> u64 {
        self.manifest.layers().iter().map(|l| l.size()).sum()
    }
}

pub struct Store {
    pub state: PathBuf,
    root: PathBuf,
}

/// The hex part of a "sha256:<64 hex>" digest; anything else is refused (it becomes a path).
pub fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
        .ok_or_else(|| {
            Error::usage(format!(
                "{digest:?} is not a sha256 digest; stagebox only handles sha256:<64 hex digits>"
            ))
        })?;
    Ok(hex)
}

fn json_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::usage(format!("{what}: {e}"))
}

/// An exclusive lock on a file, released when dropped.
struct Lock(std::fs::File);

impl Lock {
    fn take(path: &Path) -> Result<Lock> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::sys(
                format!("flock {}", path.display()),
                nix::errno::Errno::last(),
            ));
        }
        Ok(Lock(f))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking an fd we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

use crate::state::atomic::write_atomic;

pub fn new_index(manifests: Vec<Descriptor>) -> ImageIndex {
    let mut idx: ImageIndex =
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": []}))
            .unwrap_or_else(|_| unreachable!("a literal index always parses"));
    idx.set_media_type(Some(MediaType::ImageIndex));
    idx.set_manifests(manifests);
    idx
}

/// Makes `dir` an (empty, if new) OCI image layout.
pub fn init_layout(dir: &Path) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)
        .map_err(|e| Error::io(format!("create {}", blobs.display()), e))?;
    let layout = dir.join("oci-layout");
    if !layout.exists() {
        write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    let index = dir.join("index.json");
    if !index.exists() {
        let text = serde_json::to_vec(&new_index(Vec::new()))
            .map_err(|e| json_err("encode index.json", e))?;
        write_atomic(&index, &text)?;
    }
    Ok(())
}

/// Reads and checks a JSON blob of an OCI layout at `dir`.
pub fn read_layout_json<T: serde::de::DeserializeOwned>(dir: &Path, digest: &str) -> Result<T> {
    let p = dir.join("blobs/sha256").join(digest_hex(digest)?);
    let bytes =
        std::fs::read(&p).map_err(|e| Error::io(format!("read blob {}", p.display()), e))?;
    if layer::sha256(&bytes) != digest {
        return Err(Error::usage(format!(
            "blob {digest} in {} does not match its digest; the layout is corrupt",
            dir.display()
        )));
    }
    serde_json::from_slice(&bytes).map_err(|e| json_err(&format!("blob {digest}"), e))
}

pub fn read_index(dir: &Path) -> Result<ImageIndex> {
    let p = dir.join("index.json");
    let bytes = std::fs::read(&p).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| json_err(&format!("{} is not an OCI index", p.display()), e))
}

/// The descriptor of a blob we wrote.
pub fn descriptor(media: MediaType, digest: &str, size: u64) -> Result<Descriptor> {
    let d: oci_spec::image::Digest = digest
        .parse()
        .map_err(|e| json_err(&format!("digest {digest}"), e))?;
    Ok(Descriptor::new(media, size, d))
}

pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

impl Store {
    pub fn open(state: &Path) -> Result<Store> {
        let root = state.join("images");
        init_layout(&root)?;
        for d in [state.join("layers"), root.join("build-cache")] {
            std::fs::create_dir_all(&d)
                .map_err(|e| Error::io(format!("create {}", d.display()), e))?;
        }
        Ok(Store {
            state: state.to_path_buf(),
            root,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    /// Streams `r` into a blob; returns its digest and size.
    pub fn put_blob(&self, r: &mut dyn Read) -> Result<(String, u64)> {
        self.put_blob_with(|w| {
            std::io::copy(r, w)
                .map(|_| ())
                .map_err(|e| Error::io("write blob", e))
        })
    }

    /// Lets `f` write a blob (a temp file renamed to its digest once complete).
    pub fn put_blob_with(
        &self,
        f: impl FnOnce(&mut dyn std::io::Write) -> Result<()>,
    ) -> Result<(String, u64)> {
        let dir = self.root.join("blobs/sha256");
        let tmp = dir.join(format!(".tmp-{}", crate::state::ids::new_id()));
        let file = std::fs::File::create(&tmp)
            .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        let mut w = HashingWriter::new(std::io::BufWriter::new(file));
        let r = f(&mut w)
            .and_then(|_| std::io::Write::flush(&mut w).map_err(|e| Error::io("write blob", e)));
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let (digest, size) = (w.digest(), w.bytes);
        std::fs::rename(&tmp, self.blob_path(&digest)?)
            .map_err(|e| Error::io(format!("rename {}", tmp.display()), e))?;
        Ok((digest, size))
    }

    /// Packs a directory into an uncompressed layer blob.
    pub fn pack_layer(&self, dir: &Path, mode: layer::PackMode) -> Result<LayerDesc> {
        let (digest, size) = self.put_blob_with(|w| layer::pack(dir, mode, w).map(|_| ()))?;
        Ok(LayerDesc {
            diff_id: digest.clone(),
            digest,
            size,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        })
    }

    pub fn put_json<T: Serialize>(&self, v: &T) -> Result<(String, u64)> {
        let bytes = serde_json::to_vec(v).map_err(|e| json_err("encode JSON blob", e))?;
        self.put_blob(&mut &bytes[..])
    }

    pub fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &str) -> Result<T> {
        read_layout_json(&self.root, digest)
    }

    pub fn index(&self) -> Result<ImageIndex> {
        read_index(&self.root)
    }

    /// Changes index.json under a lock, so that concurrent stagebox runs never lose a name.
    fn edit_index<T>(&self, f: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>) -> Result<T> {
        let _lock = Lock::take(&self.root.join("index.lock"))?;
        let mut idx = self.index()?;
        let mut m = idx.manifests().clone();
        let out = f(&mut m)?;
        idx.set_manifests(m);
        let text = serde_json::to_vec_pretty(&idx).map_err(|e| json_err("encode index.json", e))?;
        write_atomic(&self.root.join("index.json"), &text)?;
        Ok(out)
    }

    /// Writes the config and manifest of an image made of `layers` (bottom first); returns
    /// the manifest's descriptor (not yet named: see `tag`).
    pub fn write_image(
        &self,
        config: &ImageConfiguration,
        layers: &[LayerDesc],
    ) -> Result<Descriptor> {
        let (cdigest, csize) = self.put_json(config)?;
        self.write_manifest(&cdigest, csize, layers)
    }

    /// Writes a manifest for a config blob already in the store.
    pub fn write_manifest(
        &self,
        cdigest: &str,
        csize: u64,
        layers: &[LayerDesc],
    ) -> Result<Descriptor> {
        let mut ldescs = Vec::new();
        for l in layers {
            let media = match l.media_type.as_str() {
                "application/vnd.oci.image.layer.v1.tar" => MediaType::ImageLayer,
                "application/vnd.oci.image.layer.v1.tar+gzip" => MediaType::ImageLayerGzip,
                other => MediaType::Other(other.to_string()),
            };
            ldescs.push(descriptor(media, &l.digest, l.size)?);
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(MediaType::ImageConfig, cdigest, csize)?,
            "layers": ldescs,
        });
        let (mdigest, msize) = self.put_json(&manifest)?;
        descriptor(MediaType::ImageManifest, &mdigest, msize)
    }

    /// Names a manifest NAME:TAG in index.json (taking the name from any image that had it).
    pub fn tag(&self, manifest: &Descriptor, reference: &Reference) -> Result<()> {
        let name = reference.to_string();
        let mut d = manifest.clone();
        let mut ann = HashMap::new();
        ann.insert(REF_NAME.to_string(), name.clone());
        d.set_annotations(Some(ann));
        self.edit_index(|m| {
            m.retain(|x| ref_name(x) != Some(name.as_str()));
            m.push(d);
            Ok(())
        })
    }

    /// Removes a name from index.json; true if it was there.
    pub fn untag(&self, reference: &Reference) -> Result<bool> {
        let name = reference.to_string();
        self.edit_index(|m| {
            let before = m.len();
            m.retain(|x| ref_name(x) != Some(name.as_str()));
            Ok(m.len() != before)
        })
    }

    pub fn load_image(&self, d: &Descriptor) -> Result<Image> {
        let mdigest = d.digest().to_string();
        let manifest: ImageManifest = self.read_json(&mdigest)?;
        let config_digest = manifest.config().digest().to_string();
        let config: ImageConfiguration = self.read_json(&config_digest)?;
        Ok(Image {
            reference: ref_name(d).map(str::to_string),
            manifest_digest: mdigest,
            manifest_size: d.size(),
            manifest,
            config,
            config_digest,
        })
    }

    /// Every named image in the index (unreadable entries are skipped).
    pub fn images(&self) -> Result<Vec<Image>> {
        Ok(self
            .index()?
            .manifests()
            .iter()
            .filter_map(|d| self.load_image(d).ok())
            .collect())
    }

    /// An image by NAME[:TAG], or by a unique prefix of its ID (config digest) or manifest
    /// digest.
    pub fn find(&self, key: &str) -> Result<Image> {
        let idx = self.index()?;
        if let Ok(r) = Reference::parse(key) {
            let name = r.to_string();
            if let Some(d) = idx
                .manifests()
                .iter()
                .find(|d| ref_name(d) == Some(name.as_str()))
            {
                return self.load_image(d);
            }
        }
        let hex = key.strip_prefix("sha256:").unwrap_or(key);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut hits: Vec<Image> = self
                .images()?
                .into_iter()
                .filter(|i| {
                    i.config_digest
                        .trim_start_matches("sha256:")
                        .starts_with(hex)
                        || i.manifest_digest
                            .trim_start_matches("sha256:")
                            .starts_with(hex)
                })
                .collect();
            hits.dedup_by(|a, b| a.config_digest == b.config_digest);
            match hits.len() {
                1 => return Ok(hits.remove(0)),
                0 => {}
                _ => {
                    return Err(Error::usage(format!(
                        "{key:?} matches several images; give more of the ID"
                    )))
                }
            }
        }
        Err(Error::usage(format!(
            "no image {key:?}; `stagebox images` lists them (import one with `stagebox import` or `stagebox load`)"
        )))
    }

    pub fn layers_dir(&self) -> PathBuf {
        self.state.join("layers")
    }

    /// An empty directory: the lower layer of an image with no layers at all.
    pub fn empty_layer_dir(&self) -> Result<PathBuf> {
        let d = self.layers_dir().join("empty");
        std::fs::create_dir_all(&d).map_err(|e| Error::io(format!("create {}", d.display()), e))?;
        Ok(d)
    }

    /// The layer unpacked (once) under STATE/layers/<diff_id hex>; unpacked now if needed.
    /// The unpack goes to a temp dir renamed into place, so a half-made layer is never used.
    pub fn layer_dir(&self, l: &LayerDesc) -> Result<PathBuf> {
        let dir = self.layers_dir().join(digest_hex(&l.diff_id)?);
        if dir.is_dir() {
            return Ok(dir);
        }
        let blob = self.blob_path(&l.digest)?;
        let f = std::fs::File::open(&blob)
            .map_err(|e| Error::io(format!("open layer blob {}", blob.display()), e))?;
        let tmp = self
            .layers_dir()
            .join(format!(".tmp-{}", crate::state::ids::new_id()));
        std::fs::create_dir(&tmp).map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        let what = format!("layer {}", l.digest);
        let result = layer::unpack(f, &tmp, &what).and_then(|st| {
            if st.diff_id != l.diff_id {
                return Err(Error::usage(format!(
                    "{what} unpacks to {} but the image config says {}; the image is corrupt",
                    st.diff_id, l.diff_id
                )));
            }
            Ok(())
        });
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another stagebox unpacked it at the same time: use theirs.
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.is_dir() {
                return Err(Error::usage(format!(
                    "could not move the unpacked {what} into {}",
                    dir.display()
                )));
            }
        }
        Ok(dir)
    }

    /// The build cache: a step's key -> the layer it made.
    pub fn cache_get(&self, key: &str) -> Option<LayerDesc> {
        let p = self.root.join("build-cache").join(key);
        let l: LayerDesc = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
        self.blob_path(&l.digest).ok()?.is_file().then_some(l)
    }

    pub fn cache_put(&self, key: &str, l: &LayerDesc) -> Result<()> {
        let text = serde_json::to_vec(l).map_err(|e| json_err("encode cache entry", e))?;
        write_atomic(&self.root.join("build-cache").join(key), &text)
    }

    /// Removes blobs and unpacked layers that no named image, build-cache entry or kept
    /// container uses. Anything younger than a few minutes is spared: another stagebox may be
    /// writing an image right now.
    pub fn gc(&self) -> Result<usize> {
        let mut blobs: HashSet<String> = HashSet::new();
        let mut dirs: HashSet<PathBuf> = HashSet::new();
        for d in self.index()?.manifests() {
            let Ok(img) = self.load_image(d) else {
                continue;
            };
            blobs.insert(img.manifest_digest.clone());
            blobs.insert(img.config_digest.clone());
            for l in img.layers().unwrap_or_default() {
                blobs.insert(l.digest.clone());
                dirs.insert(
                    self.layers_dir()
                        .join(digest_hex(&l.diff_id).unwrap_or_default()),
                );
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.root.join("build-cache")) {
            for e in rd.flatten() {
                if let Some(l) = std::fs::read(e.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<LayerDesc>(&b).ok())
                {
                    blobs.insert(l.digest.clone());
                    dirs.insert(
                        self.layers_dir()
                            .join(digest_hex(&l.diff_id).unwrap_or_default()),
                    );
                }
            }
        }
        for c in crate::state::container::list(&self.state) {
            dirs.extend(c.lower.iter().cloned());
        }
        let young = |p: &Path| {
            std::fs::symlink_metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age.as_secs() < 300)
        };
        let mut removed = 0;
        if let Ok(rd) = std::fs::read_dir(self.root.join("blobs/sha256")) {
            for e in rd.flatten() {
                let digest = format!("sha256:{}", e.file_name().to_string_lossy());
                if !blobs.contains(&digest)
                    && !young(&e.path())
                    && std::fs::remove_file(e.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(self.layers_dir()) {
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if name == "empty" || dirs.contains(&p) || young(&p) {
                    continue;
                }
                if std::fs::remove_dir_all(&p).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// A config for a new image: linux, this machine's architecture, created now.
pub fn new_config() -> ImageConfiguration {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    serde_json::from_value(serde_json::json!({
        "created": rfc3339(crate::units::now_secs()),
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }))
    .unwrap_or_else(|_| unreachable!("a literal config always parses"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_tagged_found_and_untagged() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let cfg = new_config();
        let m = s.write_image(&cfg, &[]).unwrap();
        let r = Reference::parse("demo").unwrap();
        s.tag(&m, &r).unwrap();
        s.tag(&m, &r).unwrap();
        assert_eq!(s.index().unwrap().manifests().len(), 1);
        let img = s.find("demo:latest").unwrap();
        assert_eq!(img.reference.as_deref(), Some("demo:latest"));
        assert_eq!(
            s.find(&img.short_id()).unwrap().config_digest,
            img.config_digest
        );
        assert!(s.find("nope").is_err());
        assert!(s.untag(&r).unwrap());
        assert!(s.find("demo").is_err());
        assert!(digest_hex("sha256:../../etc").is_err());
    }
}
