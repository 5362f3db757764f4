//! Looking at containers and at the host: what a process inside can see (`probe`), the
//! isolation checks it runs (`checks`, `escape`), the confinement checks (`powers`: what its
//! root may do), the matrix of those checks with stages on
//! and off (`compare`), whether this host can run stagebox (`doctor`), and what a container
//! changed in its writable layer (`diff`).
//!
//! `probe` runs *inside* a container (the runtime fexecve's this binary), so it reads only
//! /proc and makes no change beyond the marker files it was given (a write puts back the
//! bytes it read).
//!
//! May import: everything below it (`runtime` and down). Nothing below imports it.

pub mod checks;
pub mod compare;
pub mod diff;
pub mod doctor;
pub mod escape;
pub mod powers;
pub mod probe;
pub mod verdict;
