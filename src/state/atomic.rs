//! The one atomic file write: write a temp file beside the target, then rename(2) it over
//! the target. rename within one directory is atomic, so a reader (or a run that was
//! SIGKILLed halfway) sees the old file or the new one, never half of either.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// A temp name beside `path` that no other writer picks (`NAME.tmp-<random id>`).
fn temp_beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", super::ids::new_id()));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically; on failure the temp file is removed and `path` is
/// as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_beside(path);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(format!("write {}", tmp.display()), e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(format!("rename {} to {}", tmp.display(), path.display()), e)
    })
}

/// Pretty JSON with a final newline, written atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::usage(format!("encoding {}: {e}", path.display())))?;
    text.push(b'\n');
    write_atomic(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        write_atomic(&p, b"old").unwrap();
        write_json_atomic(&p, &serde_json::json!({"a": 1})).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\n  \"a\": 1\n}\n");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temp file was left behind");
        assert!(write_atomic(&d.path().join("no/such/dir/f"), b"x").is_err());
    }
}
