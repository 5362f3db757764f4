//! # caps: root in the container, with only a few of root's powers
//!
//! Since Linux 2.2 "root" is not one privilege but about forty capabilities: CAP_SYS_ADMIN
//! (mount, and much else), CAP_SYS_MODULE (load kernel code), CAP_DAC_READ_SEARCH (open any
//! file by its handle, which is how the "shocker" escape walks out of a bind mount),
//! CAP_SYS_TIME, CAP_SYS_BOOT, CAP_NET_ADMIN ... The kernel checks the one an operation
//! needs, not the uid. A process has five sets of them, shown in /proc/PID/status:
//!
//! - **bounding** (CapBnd): the most it can ever have again. Dropped with
//!   `prctl(PR_CAPBSET_DROP, cap)`, one capability at a time, never given back.
//! - **permitted** (CapPrm) and **effective** (CapEff): what it may use, and what it uses
//!   now. Set with capset(2).
//! - **inheritable** (CapInh) and **ambient** (CapAmb): what passes through execve to a
//!   program that is not root. Docker leaves both empty.
//!
//! At execve a root process gets, as its new permitted and effective sets, its bounding set
//! (the kernel treats every file as holding every capability for root). So the bounding set
//! is what decides what a container's root may do. This stage cuts it to Docker's default
//! 14 (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW
//! SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP, changed by `--cap-add` and `--cap-drop`), clears
//! the ambient and inheritable sets, cuts permitted and effective with capset, and reads all
//! five back.
//!
//! One exception, said in the trace: loading a seccomp filter needs CAP_SYS_ADMIN unless
//! no_new_privs is set, and Docker leaves no_new_privs off. runc therefore loads the filter
//! before it drops capabilities; stagebox keeps seccomp last (fewer syscalls run after it)
//! and instead keeps CAP_SYS_ADMIN in the effective set until execve. The bounding set no
//! longer holds it, so execve takes it away: the workload never has it.
//!
//! Why here in the order: after every mount (they need CAP_SYS_ADMIN), after nnp, and just
//! before seccomp, as runc's `finalizeNamespace` does it.

use super::{ChildCtx, Stage, StageError, StageId, StageInfo};
use crate::confine::caps;
use crate::kernel::status::{cap_last_cap, Privileges};

pub struct Caps;

static INFO: StageInfo = StageInfo {
    id: StageId::Caps,
    summary: "cut root's capabilities to Docker's default 14 (--cap-add, --cap-drop)",
    shows: "CapBnd and CapEff in /proc/PID/status, the names dropped",
    default_on: true,
    lesson: "11-root-but-powerless",
    requires: &[],
};

fn hex(v: u64) -> String {
    format!("{v:016x}")
}

impl Stage for Caps {
    fn info(&self) -> &'static StageInfo {
        &INFO
    }

    fn apply(&self, ctx: &mut ChildCtx<'_>) -> Result<(), StageError> {
        let last = cap_last_cap().min(caps::NAMES.len() as u32 - 1);
        let known = if last >= 63 {
            u64::MAX
        } else {
            (1u64 << (last + 1)) - 1
        };
        let oci = ctx.spec.confine.oci_sets;
        // An OCI config may name capabilities out of stagebox's own bounding set (a host that
        // lacks some): no process can get those back; left out, and said.
        let mut out_of_reach = 0u64;
        let keep = match oci {
            Some(s) => {
                let bnd = if ctx.verify {
                    Privileges::read(None)
                        .map_err(|e| {
                            StageError::msg(format!("cannot read /proc/self/status: {e}"))
                        })?
                        .cap_bnd
                } else {
                    known
                };
                out_of_reach = s.bounding & known & !bnd;
                s.bounding & known & bnd
            }
            None => ctx.spec.confine.caps & known,
        };
        let drop: Vec<u32> = (0..=last).filter(|c| keep & (1u64 << c) == 0).collect();
        let dropped = drop.iter().fold(0u64, |m, c| m | 1u64 << c);

        let call = format!(
            "prctl(PR_CAPBSET_DROP, cap) for each of {} capabilities",
            drop.len()
        );
        ctx.sys
            .raw(call, &mut || {
                for c in &drop {
                    // SAFETY: prctl(PR_CAPBSET_DROP) takes a capability number, no memory.
                    let r =
                        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, *c as libc::c_ulong, 0, 0, 0) };
                    nix::errno::Errno::result(r)?;
                }
                Ok(drop.len() as i64)
            })
            .map_err(|e| StageError::sys("prctl(PR_CAPBSET_DROP)", e))?;
        ctx.sys
            .raw(
                "prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)".into(),
                &mut || {
                    // SAFETY: plain integer arguments.
                    let r = unsafe {
                        libc::prctl(
                            libc::PR_CAP_AMBIENT,
                            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                            0,
                            0,
                            0,
                        )
                    };
                    nix::errno::Errno::result(r).map(i64::from)
                },
            )
            .map_err(|e| StageError::sys("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", e))?;

        // The seccomp stage, when it follows without no_new_privs, needs CAP_SYS_ADMIN to load
        // its filter; execve takes it away (it is out of the bounding set).
        let admin = 1u64 << caps::CAP_SYS_ADMIN;
        let hold_admin = ctx.spec.confine.seccomp.is_some()
            && !ctx.spec.confine.no_new_privs
            && keep & admin == 0;
        // The exec step's setgroups/setgid/setuid need CAP_SETGID and CAP_SETUID, even when
        // --cap-drop took them: runc keeps them through the user switch too. Switching to a
        // user other than root clears the permitted and effective sets anyway.
        let setids = (1u64 << caps::CAP_SETGID) | (1u64 << caps::CAP_SETUID);
        let hold_setids = ctx.spec.confine.user_switch && keep & setids != setids;
        let mut held = 0u64;
        if hold_admin {
            held |= admin;
        }
        if hold_setids {
            held |= setids;
        }
        // Docker-like: effective = permitted = the kept set. An OCI config gives each set.
        // A config may name capabilities stagebox itself does not hold (a host whose own
        // bounding set lacks some): capset would refuse them all (EPERM), so they are left
        // out, and said.
        let mut missing = 0u64;
        let (effective, permitted, inheritable) = match oci {
            Some(s) => {
                let (_, have, have_inh) =
                    crate::kernel::status::capget().map_err(|e| StageError::sys("capget()", e))?;
                let may_inherit = (have | have_inh) & keep;
                missing = (s.effective | s.permitted) & known & !have
                    | s.inheritable & known & !may_inherit;
                (
                    (s.effective & known & have) | held,
                    (s.permitted & known & have) | held,
                    s.inheritable & known & may_inherit,
                )
            }
            None => (keep | held, keep | held, 0),
        };
        let missing = missing | out_of_reach;
        if missing != 0 {
            ctx.note(format!(
                "not given, stagebox does not hold them itself (or, for inheritable, they are out of the bounding set): {}",
                caps::names(missing).join(" ")
            ));
        }
        let call = format!(
            "capset({{v3, 0}}, {{effective={}, permitted={}, inheritable={}}})",
            hex(effective),
            hex(permitted),
            if inheritable == 0 {
                "0".to_string()
            } else {
                hex(inheritable)
            }
        );
        ctx.sys
            .raw(call, &mut || {
                crate::kernel::status::capset(effective, permitted, inheritable)
            })
            .map_err(|e| StageError::sys("capset()", e))?;
        // The ambient set (an OCI config's): each one must be permitted and inheritable.
        let mut ambient = 0u64;
        if let Some(s) = oci {
            let (raised, skipped) = raise_ambient(ctx, s.ambient & known, permitted, inheritable)?;
            ambient = raised;
            if skipped != 0 {
                ctx.note(format!(
                    "ambient {} not raised: an ambient capability must be permitted and inheritable",
                    caps::names(skipped).join(" ")
                ));
            }
        }

        if ctx.verify {
            let p = Privileges::read(None)
                .map_err(|e| StageError::msg(format!("cannot read /proc/self/status: {e}")))?;
            let want = [
                ("CapBnd", p.cap_bnd & known, keep),
                ("CapEff", p.cap_eff, effective),
                ("CapPrm", p.cap_prm, permitted),
                ("CapInh", p.cap_inh, inheritable),
                ("CapAmb", p.cap_amb, ambient),
            ];
            for (name, got, want) in want {
                if got != want {
                    return Err(StageError::no_effect(format!(
                        "{name} is {} in /proc/self/status, expected {}",
                        hex(got),
                        hex(want)
                    )));
                }
            }
        }
        ctx.note(format!(
            "kept {}: {}",
            caps::names(keep).len(),
            caps::names(keep).join(" ")
        ));
        ctx.note(format!(
            "dropped {}: {}",
            caps::names(dropped).len(),
            caps::names(dropped).join(" ")
        ));
        if let Some(s) = oci {
            ctx.note(format!(
                "config.json sets: effective {}, permitted {}, inheritable {}, ambient {}",
                hex(s.effective),
                hex(s.permitted),
                hex(s.inheritable),
                hex(ambient)
            ));
        }
        if hold_setids {
            ctx.note("CAP_SETUID and CAP_SETGID stay effective for the switch to the workload's user, which then clears them");
        }
        if hold_admin {
            ctx.note("CAP_SYS_ADMIN stays effective until execve, for the seccomp stage to load its filter without no_new_privs; it is out of the bounding set, so execve takes it away");
        }
        Ok(())
    }
}

/// prctl(PR_CAP_AMBIENT_RAISE) for each capability of `want` that is in both `permitted` and
/// `inheritable` (the kernel refuses the others): (raised, skipped).
pub fn raise_ambient(
    ctx: &mut ChildCtx<'_>,
    want: u64,
    permitted: u64,
    inheritable: u64,
) -> Result<(u64, u64), StageError> {
    let raise = want & permitted & inheritable;
    if raise == 0 {
        return Ok((0, want));
    }
    let list: Vec<u32> = (0..64).filter(|c| raise & (1u64 << c) != 0).collect();
    let call = format!(
        "prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap) for each of {}",
        caps::names(raise).join(" ")
    );
    ctx.sys
        .raw(call, &mut || raise_each(&list).map(|()| list.len() as i64))
        .map_err(|e| StageError::sys("prctl(PR_CAP_AMBIENT_RAISE)", e))?;
    Ok((raise, want & !raise))
}

/// The raw raise, for the stage and for the exec step after a user switch.
pub fn raise_each(list: &[u32]) -> nix::Result<()> {
    for c in list {
        // SAFETY: prctl(PR_CAP_AMBIENT) takes integers only.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                *c as libc::c_ulong,
                0,
                0,
            )
        };
        nix::errno::Errno::result(r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::recorder::Recorder;
    use crate::stages::{ChildSpec, RootSwitch};

    #[test]
    fn drops_the_bounding_set_clears_ambient_then_capsets() {
        let spec = ChildSpec::for_test(RootSwitch::Pivot);
        let mut sys = Recorder::new();
        let mut ctx = ChildCtx::new(&mut sys, &spec);
        ctx.verify = false;
        Caps.apply(&mut ctx).unwrap();
        let notes = ctx.notes.clone();
        assert_eq!(sys.calls.len(), 3, "{:?}", sys.calls);
        assert!(sys.calls[0].starts_with("prctl(PR_CAPBSET_DROP"));
        assert!(sys.calls[1].contains("PR_CAP_AMBIENT_CLEAR_ALL"));
        assert_eq!(
            sys.calls[2],
            "capset({v3, 0}, {effective=00000000a80425fb, permitted=00000000a80425fb, inheritable=0})"
        );
        assert!(notes
            .iter()
            .any(|n| n.starts_with("dropped ") && n.contains("SYS_ADMIN")));
    }

    #[test]
    fn keeps_sys_admin_until_execve_only_for_a_seccomp_filter_without_nnp() {
        let mut spec = ChildSpec::for_test(RootSwitch::Pivot);
        spec.confine.seccomp = Some(Default::default());
        let mut sys = Recorder::new();
        let mut ctx = ChildCtx::new(&mut sys, &spec);
        ctx.verify = false;
        Caps.apply(&mut ctx).unwrap();
        assert!(
            sys.calls[2].contains("effective=00000000a82425fb"),
            "{:?}",
            sys.calls
        );
        spec.confine.no_new_privs = true;
        let mut sys = Recorder::new();
        let mut ctx = ChildCtx::new(&mut sys, &spec);
        ctx.verify = false;
        Caps.apply(&mut ctx).unwrap();
        assert!(
            sys.calls[2].contains("effective=00000000a80425fb"),
            "{:?}",
            sys.calls
        );
    }
}
