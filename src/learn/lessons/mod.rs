//! Lessons: `lessons/NN-slug.md`, executable Markdown (the format is in lessons/README.md).
//!
//! The loader splits a lesson into parts (prose, steps, checks, shown-only code), the runner
//! runs its steps one by one with the trace (`stagebox lesson N`), the checker runs its
//! exercise checks (`--check`), and [`lint::validate`] checks that every stage, flag and trace fact
//! a lesson names exists in this program. The book ([`crate::learn::book`]) reuses the parts and
//! [`StepEnv::capture`] to insert the real output of every step.
//!
//! Lessons are built into the binary (see build.rs); `--lessons DIR` reads a directory instead.

//!
//! - `model`: the parsed lesson, and the texts built into the binary.
//! - `parse`: Markdown to parts; loading, finding, listing.
//! - `run`: running steps, capturing output, checking exercises.
//! - `lint`: checking names against this program.

pub mod lint;
pub mod model;
pub mod parse;
pub mod run;

pub use lint::*;
pub use model::*;
pub use parse::*;
pub use run::*;

#[cfg(test)]
mod tests {
    use super::*;
    #[allow(unused_imports)]
    use super::{lint::*, parse::*, run::*};

    const SAMPLE: &str = "# 09 · Sample\n\n## Try it\n\nSee the name.\n\n```stagebox keep=stdout exit=3\nstagebox run -- sh -c 'exit 3'\n```\n\n```sh\nnot run\n```\n\n```stagebox-check\ntest -s \"$ANSWER\"\n```\n";

    #[test]
    fn parses_steps_options_checks_and_code() {
        let l = parse("09-sample", SAMPLE).expect("parses");
        assert_eq!(l.number, 9);
        assert_eq!(l.title, "09 · Sample");
        assert_eq!(l.sections, vec!["Try it"]);
        assert_eq!(l.steps.len(), 1);
        let s = &l.steps[0];
        assert_eq!(
            (s.keep, s.exit, s.trace.as_str()),
            (Keep::Stdout, 3, "pretty")
        );
        assert_eq!(s.lead, "See the name.");
        assert_eq!(s.section, "Try it");
        assert_eq!(l.checks.len(), 1);
        assert!(matches!(&l.parts[3], Part::Code { info, .. } if info == "sh"));
    }

    #[test]
    fn bad_options_and_unclosed_blocks_are_errors_with_the_line() {
        let e = parse("01-x", "# 01 · X\n```stagebox keep=all\ntrue\n```\n").unwrap_err();
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("keep=all"),
            "{e}"
        );
        let e = parse("01-x", "# 01 · X\n```stagebox\ntrue\n").unwrap_err();
        assert!(e.to_string().contains("never closed"), "{e}");
        let e = parse("01-x", "# 01 · X\n```stagebox\ntrue\nfalse\n```\n").unwrap_err();
        assert!(e.to_string().contains("one command line"), "{e}");
        assert!(parse("x-y", "# t").is_err());
    }

    #[test]
    fn finds_by_number_or_name() {
        let l = vec![parse("09-sample", SAMPLE).expect("parses")];
        assert_eq!(find(&l, "9").map(|l| l.number).ok(), Some(9));
        assert_eq!(find(&l, "09-sample").map(|l| l.number).ok(), Some(9));
        assert!(find(&l, "10").is_err());
    }

    #[test]
    fn merge_puts_stdout_before_the_exit_line() {
        let m = merge_output("▶ uts\n■ exited 0\n", "hello\n");
        assert_eq!(m, "▶ uts\nhello\n■ exited 0\n");
        assert_eq!(strip_ansi("\u{1b}[1;32mok\u{1b}[0m"), "ok");
    }

    #[test]
    fn simple_commands_split_outside_quotes() {
        let c = simple_commands("m=$(mktemp) && stagebox run --only uts -- sh -c 'a; b' | grep x");
        assert_eq!(c[1], vec!["mktemp"]);
        assert_eq!(
            c[2],
            vec!["stagebox", "run", "--only", "uts", "--", "sh", "-c", "a; b"]
        );
        assert_eq!(c[3], vec!["grep", "x"]);
    }

    #[test]
    fn validate_names_unknown_flags_stages_and_facts() {
        let text = "# 09 · Bad\n\n## What to look for in the trace\n\n- `ns/bogus`: no\n- `hostname`: yes\n\nThe `warp` stage.\n\n```stagebox\nstagebox run --frobnicate --without pdi -- true\n```\n";
        let l = parse("09-bad", text).expect("parses");
        let p = validate(&l, &Known::from_program()).join("\n");
        for needle in [
            "--frobnicate",
            "\"pdi\"",
            "`ns/bogus`",
            "`warp`",
            "sections must be",
        ] {
            assert!(p.contains(needle), "{needle} not in:\n{p}");
        }
        assert!(!p.contains("`hostname`"), "{p}");
    }

    #[test]
    fn validate_knows_runcs_command_line_too() {
        let step = |line: &str| {
            let text = format!("# 09 · Oci\n\n```stagebox\n{line}\n```\n");
            let l = parse("09-oci", &text).expect("parses");
            validate(&l, &Known::from_program())
                .into_iter()
                .filter(|p| !p.contains("sections must be"))
                .collect::<Vec<_>>()
        };
        for good in [
            "stagebox spec",
            "stagebox --trace pretty create --bundle . lab",
            "stagebox --root /tmp/r state lab",
            "stagebox --debug delete --force lab",
            "stagebox kill lab KILL",
        ] {
            assert_eq!(step(good), Vec::<String>::new(), "{good}");
        }
        for (bad, needle) in [
            (
                "stagebox --trace pretty create --frobnicate lab",
                "--frobnicate",
            ),
            ("stagebox delete --forse lab", "--forse"),
            ("stagebox checkpoint lab", "no such subcommand"),
        ] {
            let p = step(bad).join("\n");
            assert!(p.contains(needle), "{bad}: {p}");
        }
    }
}
