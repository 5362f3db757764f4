//! What a lesson is, once parsed: its parts, steps, exercise checks and the sections every
//! lesson has; and the texts compiled into the binary (the lessons and each stage's top
//! comment, see build.rs).

pub(super) mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The teaching text of a stage: the top comment of src/stages/NAME.rs.
pub fn stage_doc(name: &str) -> Option<&'static str> {
    embedded::STAGE_DOCS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
}

/// The `##` sections every lesson has, in this order.
pub const SECTIONS: [&str; 7] = [
    "What you will learn",
    "The idea",
    "Try it",
    "What to look for in the trace",
    "With the stage off",
    "Exercise",
    "What real runtimes do",
];

/// Which output of a step the book shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Stdout,
    Stderr,
    Both,
}

/// A `stagebox` block: one command line the runner runs and the book captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The `##` section it is in.
    pub section: String,
    /// The paragraph just before it (what the step is for).
    pub lead: String,
    pub command: String,
    pub keep: Keep,
    /// The exit status it must end with.
    pub exit: i32,
    /// STAGEBOX_TRACE for the step: pretty, json or off.
    pub trace: String,
    /// Text the step's output must hold (`# expect stdout: ...` lines in the block).
    pub expect: Vec<Expectation>,
    /// Line of the opening fence, for messages.
    pub line: usize,
}

/// Which output an expectation looks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    Either,
}

/// `# expect stdout: TEXT` in a step: the step passes only when TEXT is in that output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub stream: Stream,
    pub text: String,
}

impl Step {
    /// What is wrong with how the step ended, in one sentence; None when it ended as the
    /// lesson says: the exit status, every expected text, and no usage message (a program
    /// that printed how to call it did not do what the lesson shows, whatever its status).
    pub fn judge(&self, status: i32, stdout: &str, stderr: &str) -> Option<String> {
        if status != self.exit {
            return Some(format!(
                "the step ended with exit status {status}, and the lesson expects {}",
                self.exit
            ));
        }
        let usage = |t: &str| {
            t.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with("Usage:") || l.starts_with("usage:")
            })
        };
        if usage(stdout) || usage(stderr) {
            return Some(
                "the step printed a usage message: a command in it was called wrongly".into(),
            );
        }
        for e in &self.expect {
            let found = match e.stream {
                Stream::Stdout => stdout.contains(&e.text),
                Stream::Stderr => stderr.contains(&e.text),
                Stream::Either => stdout.contains(&e.text) || stderr.contains(&e.text),
            };
            if !found {
                let where_ = match e.stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                    Stream::Either => "the output",
                };
                return Some(format!(
                    "{where_} does not hold {:?}, which the lesson expects",
                    e.text
                ));
            }
        }
        None
    }
}

/// A `stagebox-check` block: exits 0 when the learner's answer is right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExerciseCheck {
    pub command: String,
    /// What the learner writes: flags for `stagebox run` (checked before the check runs) or
    /// a file (a Containerfile).
    pub answer: AnswerKind,
    /// The check's workload deletes or writes files (`workload=writes`): it then runs only
    /// on a disposable copy of the rootfs with the root switch on.
    pub writes: bool,
    pub line: usize,
}

/// What goes in a lesson's answer file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// Flags to put after `stagebox run`, and nothing else (`answer=flags`, the default).
    Flags,
    /// A file the check reads as it is (`answer=file`).
    File,
}

/// A lesson in document order: prose, steps, checks and shown-only code blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Markdown outside fenced blocks, kept as written (lines joined with '\n').
    Text(String),
    /// Index into [`Lesson::steps`].
    Step(usize),
    /// Index into [`Lesson::checks`].
    Check(usize),
    /// A fenced block that is only shown.
    Code { info: String, body: String },
}

#[derive(Debug, Clone)]
pub struct Lesson {
    /// The NN of the file name.
    pub number: u32,
    /// The file name without .md: `01-uts-hostname`.
    pub name: String,
    /// The `#` heading.
    pub title: String,
    /// The `##` headings, in order.
    pub sections: Vec<String>,
    pub parts: Vec<Part>,
    pub steps: Vec<Step>,
    pub checks: Vec<ExerciseCheck>,
}

/// The line a lesson holds when what its steps print depends on how the host mounts cgroups
/// (v1, v2 or hybrid): its transcript is then kept per layout, and its book chapter says
/// which layout made it.
pub const LAYOUT_MARK: &str = "<!-- output depends on the cgroup layout -->";

impl Lesson {
    /// Does its output depend on the host's cgroup layout ([`LAYOUT_MARK`])?
    pub fn depends_on_cgroup_layout(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Text(t) if t.contains(LAYOUT_MARK)))
    }
}
