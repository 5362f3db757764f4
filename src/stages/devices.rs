//! # devices: only the default device nodes may be opened
//!
//! A device node is a name for a (type, major, minor) number, and anyone allowed to call
//! mknod(2) can make one anywhere: `mknod /tmp/d b 254 0; mount /tmp/d /mnt` reaches the
//! host's disk from inside a container, whatever its namespaces say. What stops it is the
//! device check the kernel makes on every open(2) and mknod(2) of a node, against the
//! opener's cgroup. This stage gives the container's cgroup Docker's allow list
//! ([`crate::confine::devices`]): mknod of anything, but read and write only of null, zero,
//! full, random, urandom, tty, console, ptmx, the pseudo terminals, tun, and the nodes
//! `--device` adds. Any other open fails with EPERM, for root too.
//!
//! - **cgroup v1** (and hybrid hosts, which mount the v1 devices controller): the container's
//!   cgroup in the devices hierarchy gets `devices.deny` = `a` (nothing at all), then one
//!   write to `devices.allow` per rule. `devices.list` must then read back the list, not
//!   `a *:* rwm`.
//! - **cgroup v2** has no devices controller: the rules become a small eBPF program of type
//!   `BPF_PROG_TYPE_CGROUP_DEVICE` (assembled instruction by instruction; the trace prints
//!   it), loaded with bpf(BPF_PROG_LOAD) and attached with bpf(BPF_PROG_ATTACH,
//!   BPF_CGROUP_DEVICE) to the container's cgroup directory. `BPF_F_ALLOW_MULTI` keeps a
//!   program already attached above (systemd's) working too: every one must say yes.
//!   bpf(BPF_PROG_QUERY) on the cgroup must then list the program's id.
//!
//! The rules are written on the host, in `prepare`, after the cgroup stage made the cgroup
//! and before the container process exists, so that it is never in its cgroup without them.
//! Nothing needs undoing: removing the cgroup (the cgroup stage's undo) drops its v1 rules,
//! and the kernel detaches and frees a BPF program with the cgroup it is attached to.
//! In the container process, `apply` reads the rules back from its own cgroup, found
//! through /proc/self/cgroup: devices.list (v1), or BPF_PROG_QUERY (v2).
//!
//! Why here in the order: right after the cgroup stage moved the process in, and before
//! cgroupns and mount, while the host's /sys/fs/cgroup and the full cgroup paths in
//! /proc/self/cgroup are still what the process sees. `--privileged` switches it off, as
//! Docker does.

use super::{ChildCtx, HostCtx, Stage, StageError, StageId, StageInfo};
use crate::cgroup::{self, DeviceCgroup, Layout};
use crate::confine::devices::{self as dev, DeviceConfig, Rule};
use crate::error::{Error, Result};
use crate::kernel::bpf;
use std::path::{Path, PathBuf};

pub struct Devices;

static INFO: StageInfo = StageInfo {
    id: StageId::Devices,
    summary: "only the default device nodes may be opened (cgroup v1 devices, v2 BPF program)",
    shows: "devices.list (v1) or the BPF program attached (v2)",
    default_on: true,
    lesson: "11-root-but-powerless",
    requires: &[(
        StageId::Cgroup,
        "the device rules live in the container's cgroup",
    )],
};

fn err(message: impl Into<String>) -> Error {
    Error::Stage {
        stage: "devices".into(),
        message: message.into(),
    }
}

/// The list devices.list should show for these rules: the kernel merges rules for the same
/// type and numbers into one line (their access letters joined).
fn expected_list(rules: &[Rule]) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    for r in rules.iter().filter(|r| r.allow) {
        match out
            .iter_mut()
            .find(|o| o.kind == r.kind && o.major == r.major && o.minor == r.minor)
        {
            Some(o) => o.access = dev::Access(o.access.0 | r.access.0),
            None => out.push(*r),
        }
    }
    out
}

/// Compares a devices.list text with the rules; the difference in words when they differ.
fn list_matches(text: &str, rules: &[Rule]) -> std::result::Result<(), String> {
    let shown: Vec<Rule> = text.lines().filter_map(dev::parse_list_line).collect();
    let want = expected_list(rules);
    let missing: Vec<String> = want
        .iter()
        .filter(|r| !shown.contains(r))
        .map(|r| r.to_string())
        .collect();
    let extra: Vec<String> = shown
        .iter()
        .filter(|r| !want.contains(r))
        .map(|r| r.to_string())
        .collect();
    if missing.is_empty() && extra.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "devices.list lacks [{}] and has [{}] besides",
            missing.join(", "),
            extra.join(", ")
        ))
    }
}

fn rule_list(rules: &[Rule]) -> String {
    rules
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// v1: `a` into devices.deny, each rule into devices.allow, then devices.list read back.
fn write_v1(ctx: &mut HostCtx<'_>, dir: &Path, rules: &[Rule]) -> Result<()> {
    let root = cgroup::CgroupRoot::host();
    let mut log = cgroup::Log::default();
    let r = log
        .write(&root, &dir.join("devices.deny"), "a")
        .and_then(|_| {
            for rule in rules {
                let file = if rule.allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                log.write(&root, &dir.join(file), &rule.to_string())?;
            }
            Ok(())
        });
    for e in log.events {
        if let cgroup::Event::Call { call, result } = e {
            ctx.record(call, result);
        }
    }
    r?;
    let list = dir.join("devices.list");
    let text = std::fs::read_to_string(&list)
        .map_err(|e| Error::io(format!("read {}", list.display()), e))?;
    list_matches(&text, rules).map_err(|d| {
        err(format!(
            "the kernel does not show the expected effect: {}: {d}",
            list.display()
        ))
    })?;
    ctx.note(format!(
        "{} reads back {} rules: {}",
        list.display(),
        text.lines().count(),
        rule_list(&expected_list(rules))
    ));
    Ok(())
}

/// Loads the program for `rules` and attaches it to the cgroup2 directory `dir`; returns the
/// program's id, after BPF_PROG_QUERY on the cgroup listed it. Public for the tests, which
/// attach it to a cgroup of their own.
pub fn attach_program(dir: &Path, rules: &[Rule]) -> std::result::Result<u32, String> {
    let prog = dev::program(rules);
    let fd = bpf::prog_load(
        bpf::PROG_TYPE_CGROUP_DEVICE,
        bpf::CGROUP_DEVICE,
        &dev::bytes(&prog),
        "stagebox_dev",
    )
    .map_err(|e| format!("bpf(BPF_PROG_LOAD) of the device program failed: {e}"))?;
    let cg = std::fs::File::open(dir).map_err(|e| format!("open {}: {e}", dir.display()))?;
    bpf::prog_attach(&cg, &fd, bpf::CGROUP_DEVICE, bpf::F_ALLOW_MULTI).map_err(|e| {
        format!(
            "bpf(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE) to {} failed: {e}",
            dir.display()
        )
    })?;
    let id = bpf::prog_id(&fd).map_err(|e| format!("bpf(BPF_OBJ_GET_INFO_BY_FD) failed: {e}"))?;
    let ids = bpf::prog_query(&cg, bpf::CGROUP_DEVICE)
        .map_err(|e| format!("bpf(BPF_PROG_QUERY) on {} failed: {e}", dir.display()))?;
    if !ids.contains(&id) {
        return Err(format!(
            "the kernel does not show the expected effect: BPF_PROG_QUERY on {} lists {ids:?}, not the program {id}",
            dir.display()
        ));
    }
    // The fd closes here; the attachment keeps the program alive until the cgroup goes.
    Ok(id)
}

fn attach_v2(ctx: &mut HostCtx<'_>, dir: &Path, rules: &[Rule]) -> Result<()> {
    let prog = dev::program(rules);
    let r = attach_program(dir, rules);
    let result = match &r {
        Ok(id) => format!("program id {id}"),
        Err(e) => format!("-1 ({e})"),
    };
    ctx.record(
        format!(
            "bpf(BPF_PROG_LOAD, BPF_PROG_TYPE_CGROUP_DEVICE, {} insns) + bpf(BPF_PROG_ATTACH, {dir:?}, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)",
            prog.len()
        ),
        result,
    );
    let id = r.map_err(err)?;
    ctx.note(format!(
        "BPF_PROG_QUERY on {} lists program {id}; it allows {}; anything else is denied",
        dir.display(),
        rule_list(rules)
    ));
    ctx.note("the program, one instruction a line, the last rule checked first (it wins):");
    for line in dev::listing(rules) {
        ctx.note(line);
    }
    Ok(())
}

/// The calling process's cgroup directory in a hierarchy, from /proc/self/cgroup: the line
/// whose controllers contain `ctl` ("" for the cgroup2 line), under that hierarchy's mount.
fn own_cgroup(mount: &Path, ctl: &str) -> std::result::Result<PathBuf, StageError> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| StageError::msg(format!("cannot read /proc/self/cgroup: {e}")))?;
    let lines = cgroup::proc_cgroup_lines(&text);
    let path = lines
        .iter()
        .find(|(c, _)| {
            if ctl.is_empty() {
                c.is_empty()
            } else {
                c.split(',').any(|x| x == ctl)
            }
        })
        .map(|(_, p)| p.clone())
        .ok_or_else(|| {
            StageError::no_effect(format!(
                "/proc/self/cgroup has no {} line",
                if ctl.is_empty() { "cgroup2" } else { ctl }
            ))
        })?;
    let mut rel = path.as_str();
    while let Some(rest) = rel.strip_prefix("/..") {
        rel = rest;
    }
    Ok(mount.join(rel.trim_start_matches('/')))
}

impl Stage for Devices {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn prepare(&self, ctx: &mut HostCtx<'_>) -> Result<()> {
        let rules = DeviceConfig {
            extra: ctx.devices.to_vec(),
        }
        .rules();
        match super::cgroup::device_cgroup(ctx) {
            None => Err(err(
                "the container has no cgroup of its own (the cgroup stage says why), and the device rules live in one; make cgroups writable for stagebox, or run with --without devices",
            )),
            // Docker refuses the same way ("Devices cgroup isn't mounted").
            Some(None) => Err(err(
                "this host mounts neither the cgroup v1 devices controller nor a cgroup2 tree, so nothing can hold the device rules; mount one (see `stagebox doctor`), or run with --without devices",
            )),
            Some(Some(DeviceCgroup::V1(dir))) => write_v1(ctx, &dir, &rules),
            Some(Some(DeviceCgroup::V2(dir))) => attach_v2(ctx, &dir, &rules),
        }
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let rules = ctx.spec.confine.devices.rules();
        if !ctx.verify {
            return Ok(());
        }
        let layout = Layout::detect().map_err(|e| StageError::msg(e.to_string()))?;
        if let Some(mount) = layout.v1.get("devices") {
            let dir = own_cgroup(mount, "devices")?;
            let list = dir.join("devices.list");
            let text = std::fs::read_to_string(&list)
                .map_err(|e| StageError::msg(format!("cannot read {}: {e}", list.display())))?;
            list_matches(&text, &rules)
                .map_err(|d| StageError::no_effect(format!("{}: {d}", list.display())))?;
            ctx.note(format!(
                "its own {} shows the {} rules; any other device gives EPERM",
                list.display(),
                text.lines().count()
            ));
            return Ok(());
        }
        let Some(mount) = layout.v2.clone() else {
            return Err(StageError::no_effect(
                "no devices hierarchy and no cgroup2 mount: nothing can hold the device rules",
            ));
        };
        let dir = own_cgroup(&mount, "")?;
        let cg = std::fs::File::open(&dir)
            .map_err(|e| StageError::msg(format!("cannot open {}: {e}", dir.display())))?;
        let mut ids = Vec::new();
        ctx.sys
            .raw(
                format!("bpf(BPF_PROG_QUERY, {dir:?}, BPF_CGROUP_DEVICE)"),
                &mut || {
                    ids = bpf::prog_query(&cg, bpf::CGROUP_DEVICE)?;
                    Ok(ids.len() as i64)
                },
            )
            .map_err(|e| StageError::sys("bpf(BPF_PROG_QUERY)", e))?;
        if ids.is_empty() {
            return Err(StageError::no_effect(format!(
                "BPF_PROG_QUERY lists no device program on {}",
                dir.display()
            )));
        }
        ctx.note(format!(
            "device program {ids:?} attached to its own cgroup {}",
            dir.display()
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_list_is_compared_as_the_kernel_merges_it() {
        let rules = DeviceConfig::default().rules();
        let text: String = rules.iter().map(|r| format!("{r}\n")).collect();
        assert!(list_matches(&text, &rules).is_ok());
        let e = list_matches("a *:* rwm\n", &rules).unwrap_err();
        assert!(
            e.contains("lacks [c *:* m") && e.contains("has [a *:* rwm]"),
            "{e}"
        );
        // A --device for /dev/null read-only merges into the default c 1:3 rwm line.
        let mut more = rules.clone();
        more.push(dev::parse_list_line("c 1:3 r").unwrap());
        assert!(list_matches(&text, &more).is_ok());
    }
}
