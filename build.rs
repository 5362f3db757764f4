//! Builds the lessons (lessons/NN-slug.md) and the stages' teaching text (the top `//!`
//! comment of each src/stages/NAME.rs) into the binary, so `stagebox lesson` and
//! `stagebox book` work from any directory, and inside any rootfs.

use std::fmt::Write as _;
use std::path::Path;

/// `NN-slug.md`: two digits, a dash, a slug.
fn is_lesson_file(name: &str) -> bool {
    let b = name.as_bytes();
    name.ends_with(".md")
        && b.len() > 6
        && b[0].is_ascii_digit()
        && b[1].is_ascii_digit()
        && b[2] == b'-'
}

fn sorted_entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn main() {
    let root = std::path::PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=lessons");
    println!("cargo:rerun-if-changed=src/stages");

    let mut code = String::from(
        "/// Lessons built in: (file stem, text).\npub static LESSONS: &[(&str, &str)] = &[\n",
    );
    for p in sorted_entries(&root.join("lessons")) {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if is_lesson_file(&name) {
            println!("cargo:rerun-if-changed={}", p.display());
            let _ = writeln!(
                code,
                "    ({:?}, include_str!({:?})),",
                name.trim_end_matches(".md"),
                p.display().to_string()
            );
        }
    }
    code.push_str("];\n\n/// Each stage file's top comment: (file stem, text without the `//! ` markers).\npub static STAGE_DOCS: &[(&str, &str)] = &[\n");
    for p in sorted_entries(&root.join("src/stages")) {
        let stem = p
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if p.extension().is_none_or(|e| e != "rs") || stem == "mod" {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let doc: Vec<&str> = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .map(|l| {
                l.trim_start_matches("//!")
                    .strip_prefix(' ')
                    .unwrap_or(l.trim_start_matches("//!"))
            })
            .collect();
        let _ = writeln!(code, "    ({:?}, {:?}),", stem, doc.join("\n"));
    }
    code.push_str("];\n");
    std::fs::write(out.join("embedded.rs"), code).expect("write embedded.rs");
}
