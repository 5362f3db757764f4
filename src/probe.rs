//! `stagebox probe`: what a process sees. (Stub: being written.)
use crate::error::Result;

/// Prints the report to stdout; returns the exit code.
pub fn run(json: bool) -> Result<i32> {
    let _ = json;
    Ok(0)
}
