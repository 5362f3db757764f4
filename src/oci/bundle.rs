//! An OCI bundle: a directory with `config.json` (the runtime spec) and the root filesystem
//! it names. The config is read with oci-spec's runtime types; a mistake names the field
//! (its JSON path) and the line, in one sentence.

use crate::error::{Error, Result};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

/// The spec versions this runtime follows (runc 1.1 and 1.2 write 1.0.2 and 1.2.0).
const SUPPORTED_MAJOR: &str = "1.";

/// The bundle's config, parsed and checked, and its root filesystem's absolute path.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
}

/// Reads `BUNDLE/config.json`.
pub fn load(dir: &Path) -> Result<Bundle> {
    let dir = std::fs::canonicalize(dir).map_err(|e| {
        Error::usage(format!(
            "the bundle {} cannot be opened ({e}); give the directory that holds config.json with --bundle",
            dir.display()
        ))
    })?;
    let file = dir.join("config.json");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        Error::usage(format!(
            "{} cannot be read ({e}); a bundle is a directory with config.json (`stagebox spec` writes one) and a root filesystem",
            file.display()
        ))
    })?;
    let spec = parse(&text, &file)?;
    let version = spec.version();
    if !version.starts_with(SUPPORTED_MAJOR) {
        return Err(Error::usage(format!(
            "{}: ociVersion {version:?} is not supported; stagebox follows the runtime spec 1.x (write \"1.0.2\" or \"1.2.0\")",
            file.display()
        )));
    }
    let Some(root) = spec.root() else {
        return Err(Error::usage(format!(
            "{}: there is no root; add \"root\": {{\"path\": \"rootfs\"}} and put the root filesystem there",
            file.display()
        )));
    };
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    if !rootfs.is_dir() {
        return Err(Error::usage(format!(
            "{}: root.path {} is not a directory; unpack a root filesystem there (for example `stagebox rootfs export` or `podman export`)",
            file.display(),
            rootfs.display()
        )));
    }
    Ok(Bundle { dir, spec, rootfs })
}

/// Parses a config; a mistake says where: the line and column, and the field's JSON path.
pub fn parse(text: &str, file: &Path) -> Result<Spec> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, Spec>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = (inner.line(), inner.column());
        let what = inner.to_string();
        // serde_json appends " at line L column C" itself: say it once, in front.
        let what = what
            .rsplit_once(" at line ")
            .map(|(w, _)| w.to_string())
            .unwrap_or(what);
        if path == "." || path.is_empty() {
            Error::usage(format!(
                "{} line {line} column {column}: {what}",
                file.display()
            ))
        } else {
            Error::usage(format!(
                "{} line {line} column {column}: field {path}: {what}",
                file.display()
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistake_names_the_field_and_the_line() {
        let text =
            "{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": {\n    \"args\": \"sh\"\n  }\n}\n";
        let e = parse(text, Path::new("config.json"))
            .err()
            .map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(e.contains("line 4"), "{e}");
        assert!(e.contains("process.args"), "{e}");
    }
}
