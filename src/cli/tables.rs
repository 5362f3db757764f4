//! Tables for people: the stage list and a resolved plan. Used by the CLI and the book.

use crate::stages::plan::Plan;
use crate::stages::RootSwitch;
use crate::stages::{self, StageId};

/// `stagebox stages`: every stage, what it does, on or off by default, its lesson.
pub fn stages_table() -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<3} {:<8} {:<8} {:<22} {}\n",
        "#", "STAGE", "DEFAULT", "LESSON", "WHAT IT DOES"
    ));
    for (i, s) in stages::registry::all().iter().enumerate() {
        let info = s.info();
        out.push_str(&format!(
            "{:<3} {:<8} {:<8} {:<22} {}\n",
            i + 1,
            info.id.name(),
            if info.id == StageId::Volumes {
                "with -v"
            } else if info.default_on {
                "on"
            } else {
                "off"
            },
            info.lesson,
            info.summary
        ));
    }
    let coming: Vec<&str> = StageId::ORDER
        .iter()
        .filter(|id| stages::registry::get(**id).is_none())
        .map(|id| id.name())
        .collect();
    if !coming.is_empty() {
        out.push_str(&format!(
            "\nplanned, not yet in this version: {}\n",
            coming.join(", ")
        ));
    }
    out
}

/// `stagebox plan`: the resolved pipeline, nothing run.
pub fn plan_table(plan: &Plan) -> String {
    let mut out = String::new();
    let mut n = 0;
    for s in &plan.stages {
        let Some(stage) = stages::registry::get(s.id) else {
            continue;
        };
        let info = stage.info();
        if s.enabled {
            n += 1;
            let extra = if s.id == StageId::Pivot && plan.root_switch == RootSwitch::Chroot {
                "\n               mode: chroot(2) only; the old root stays mounted and a root process can climb out"
            } else {
                ""
            };
            out.push_str(&format!(
                "{:>2}. {:<8} on   {}{}\n",
                n,
                info.id.name(),
                info.summary,
                extra
            ));
        } else {
            out.push_str(&format!("    {:<8} off  ({})\n", info.id.name(), s.why));
        }
    }
    if n == 0 {
        out.push_str("\nno stage is on: the command runs as a plain host process\n");
    } else if !plan.switches_root() {
        out.push_str("\nthe root is not switched: the command runs on the host's filesystem\n");
    }
    out
}
