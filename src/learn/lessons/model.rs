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
    /// Line of the opening fence, for messages.
    pub line: usize,
}

/// A `stagebox-check` block: exits 0 when the learner's answer is right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExerciseCheck {
    pub command: String,
    pub line: usize,
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
