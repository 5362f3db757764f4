//! `stagebox doctor`: what this host can do. (Stub: being written.)
use crate::error::Result;

pub fn run(json: bool) -> Result<i32> {
    let _ = json;
    Ok(0)
}
