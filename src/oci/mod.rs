//! stagebox as an OCI runtime: the commands engines call with runc's command line (podman's
//! conmon, containerd's shim, and through them Kubernetes), on an OCI bundle.
//!
//! - `bundle`: a bundle's `config.json`, read with oci-spec's runtime types (a mistake names
//!   the field and the line) and its root filesystem.
//! - `map`: `config.json` onto the stages (the table in its top comment): the same run a
//!   learner's `stagebox run` makes, with `runtime::oci` for what only OCI has (the wait for
//!   `start`, the pid file, the console socket).
//! - `commands`: `create`, `start`, `state`, `kill`, `delete`, `run`, `ps`, `pause`,
//!   `resume`, `exec`, `features`, `spec` on the containers of one `--root` (a stagebox state
//!   directory: its records are ordinary container records with an `oci` part).
//!
//! May import: everything from `runtime` down. Nothing below imports it; `cli` and `main.rs`
//! call it.

pub mod bundle;
pub mod commands;
pub mod map;
