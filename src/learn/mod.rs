//! Learning material made from real runs: the lessons (`lessons/NN-*.md`, executable
//! Markdown: parsed, run step by step, checked, and linted against this program), the
//! mdBook that `stagebox book` writes from them, and the book's pictures (SVG drawn from the
//! data of real runs).
//!
//! May import: everything below it (it renders the CLI reference and the compare matrix).
//! Nothing imports it but `main.rs`.

pub mod book;
pub mod lessons;
pub mod pictures;
