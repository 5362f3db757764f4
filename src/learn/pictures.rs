//! Pictures for the book: SVG text written by hand, one function per picture, each taking
//! plain data (the book gathers it from real runs) and returning a whole SVG document.
//!
//! The output is small and deterministic: the same input gives byte-identical text. Sizes are
//! fixed, coordinates are integers, and the fonts are the system's (a font-family list). No
//! coordinate depends on a value that changes from run to run (an inode, a pid, a container
//! id): those are only ever text, so the stale-book test can redact the numbers and still
//! compare two runs. Every picture has a white background, so it stays readable in the
//! book's dark themes.

use std::fmt::Write as _;

const SANS: &str = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif";
const MONO: &str = "ui-monospace, SFMono-Regular, Menlo, Consolas, DejaVu Sans Mono, monospace";

const INK: &str = "#1f2328";
const MUTED: &str = "#656d76";
const GREEN: (&str, &str) = ("#dafbe1", "#1a7f37");
const RED: (&str, &str) = ("#ffebe9", "#cf222e");
const YELLOW: (&str, &str) = ("#fff8c5", "#9a6700");
const GREY: (&str, &str) = ("#f6f8fa", "#8c959f");
const BLUE: (&str, &str) = ("#ddf4ff", "#0969da");
const PURPLE: (&str, &str) = ("#fbefff", "#8250df");

/// Text made safe for SVG (XML) content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, the cut marked with an ellipsis (SVG text does not wrap).
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `s` in lines of at most `max` characters, broken at spaces; at most `lines` of them, the
/// last one clipped.
fn wrap(s: &str, max: usize, lines: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in s.split(' ') {
        let fits = line.chars().count() + 1 + word.chars().count() <= max;
        if !line.is_empty() && !fits && out.len() + 1 < lines {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push(clip(&line, max));
    out
}

/// One SVG document being written, one element a line.
struct Svg {
    body: String,
}

#[derive(Clone, Copy)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// How a piece of text looks.
#[derive(Clone, Copy)]
struct Font {
    size: u32,
    bold: bool,
    mono: bool,
    color: &'static str,
}

const TITLE: Font = Font {
    size: 15,
    bold: true,
    mono: false,
    color: INK,
};
const LABEL: Font = Font {
    size: 12,
    bold: false,
    mono: false,
    color: INK,
};
const NOTE: Font = Font {
    size: 11,
    bold: false,
    mono: false,
    color: MUTED,
};
const CODE: Font = Font {
    size: 11,
    bold: false,
    mono: true,
    color: INK,
};

impl Font {
    fn bold(self) -> Font {
        Font { bold: true, ..self }
    }
    fn color(self, color: &'static str) -> Font {
        Font { color, ..self }
    }
    fn size(self, size: u32) -> Font {
        Font { size, ..self }
    }
}

impl Svg {
    fn new(width: u32, height: u32, title: &str) -> Svg {
        let mut body = String::new();
        let _ = writeln!(
            body,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{}\">",
            escape(title)
        );
        let _ = writeln!(body, "  <title>{}</title>", escape(title));
        let _ = writeln!(
            body,
            "  <style>text {{ font-family: {SANS}; }} .mono {{ font-family: {MONO}; }}</style>"
        );
        let _ = writeln!(
            body,
            "  <rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" rx=\"8\" fill=\"#ffffff\" stroke=\"#d0d7de\"/>"
        );
        Svg { body }
    }

    /// A box; `dash` draws its outline dashed.
    #[allow(clippy::too_many_arguments)]
    fn rect(&mut self, x: u32, y: u32, w: u32, h: u32, fill: &str, stroke: &str, dash: bool) {
        let dash = if dash {
            " stroke-dasharray=\"5 3\""
        } else {
            ""
        };
        let _ = writeln!(
            self.body,
            "  <rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"5\" fill=\"{fill}\" stroke=\"{stroke}\"{dash}/>"
        );
    }

    fn line(&mut self, x1: u32, y1: u32, x2: u32, y2: u32, stroke: &str) {
        let _ = writeln!(
            self.body,
            "  <line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"{stroke}\" stroke-width=\"2\"/>"
        );
    }

    fn circle(&mut self, cx: u32, cy: u32, r: u32, fill: &str, stroke: &str) {
        let _ = writeln!(
            self.body,
            "  <circle cx=\"{cx}\" cy=\"{cy}\" r=\"{r}\" fill=\"{fill}\" stroke=\"{stroke}\"/>"
        );
    }

    /// Text at (x, y), the baseline; `extra` holds more attributes (a transform).
    fn text_with(&mut self, x: u32, y: u32, font: Font, anchor: Anchor, extra: &str, s: &str) {
        let class = if font.mono { " class=\"mono\"" } else { "" };
        let weight = if font.bold {
            " font-weight=\"bold\""
        } else {
            ""
        };
        let anchor = match anchor {
            Anchor::Start => "",
            Anchor::Middle => " text-anchor=\"middle\"",
            Anchor::End => " text-anchor=\"end\"",
        };
        let _ = writeln!(
            self.body,
            "  <text x=\"{x}\" y=\"{y}\"{class} font-size=\"{}\" fill=\"{}\"{weight}{anchor}{extra}>{}</text>",
            font.size,
            font.color,
            escape(s)
        );
    }

    fn text(&mut self, x: u32, y: u32, font: Font, s: &str) {
        self.text_with(x, y, font, Anchor::Start, "", s);
    }

    fn finish(mut self) -> String {
        self.body.push_str("</svg>\n");
        self.body
    }
}

// ---------------------------------------------------------------------------------------
// The pipeline

/// Where a stage stands in one plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    On,
    Off,
    /// Planned, not in this version of stagebox yet.
    Coming,
}

/// One stage of the pipeline picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStage {
    pub name: String,
    pub state: StageState,
    /// Why it is on or off ("default", "--without", "not in --only").
    pub why: String,
    /// What it does, in one line.
    pub summary: String,
}

/// Every stage in pipeline order, top to bottom: on ones filled, off ones greyed with the
/// reason, coming ones dashed. `command` is what a learner types for this plan.
pub fn pipeline(command: &str, stages: &[PipelineStage]) -> String {
    const W: u32 = 760;
    const TOP: u32 = 66;
    const ROW: u32 = 48;
    let n = stages.len() as u32;
    let height = TOP + n * ROW + 12;
    let title = format!("The pipeline of {command}");
    let mut svg = Svg::new(W, height, &title);
    svg.text(20, 28, TITLE, "The pipeline, in order");
    svg.text(20, 48, CODE.color(MUTED), command);
    if n > 1 {
        let first = TOP + 20;
        let last = TOP + (n - 1) * ROW + 20;
        svg.line(32, first, 32, last, "#d0d7de");
    }
    for (i, s) in stages.iter().enumerate() {
        let y = TOP + i as u32 * ROW;
        let ((fill, stroke), ink, status) = match s.state {
            StageState::On => (GREEN, INK, format!("on · {}", s.why)),
            StageState::Off => (GREY, MUTED, format!("off · {}", s.why)),
            StageState::Coming => (
                ("#ffffff", "#afb8c1"),
                MUTED,
                "coming · not in this version yet".to_string(),
            ),
        };
        svg.circle(32, y + 20, 11, fill, stroke);
        svg.text_with(
            32,
            y + 24,
            NOTE.size(10).color(ink),
            Anchor::Middle,
            "",
            &(i + 1).to_string(),
        );
        svg.rect(56, y, 684, 40, fill, stroke, s.state == StageState::Coming);
        svg.text(68, y + 17, LABEL.size(13).bold().color(ink), &s.name);
        let status_font = if s.state == StageState::On {
            LABEL.color(GREEN.1).bold()
        } else {
            LABEL.color(MUTED)
        };
        svg.text_with(728, y + 17, status_font, Anchor::End, "", &status);
        svg.text(68, y + 33, NOTE, &clip(&s.summary, 110));
    }
    svg.finish()
}

// ---------------------------------------------------------------------------------------
// Namespace inodes

/// One namespace as the host and the container see it: the `/proc/PID/ns/NAME` link text,
/// `uts:[4026531838]`, or empty when the kernel has no such link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRow {
    pub name: String,
    pub host: String,
    pub container: String,
}

/// The host's and the container's namespace links side by side, one row per namespace; the
/// ones that differ (the container got a namespace of its own) are highlighted.
pub fn namespaces(command: &str, rows: &[NamespaceRow]) -> String {
    const W: u32 = 660;
    const TOP: u32 = 92;
    const ROW: u32 = 30;
    let n = rows.len() as u32;
    let height = TOP + n * ROW + 40;
    let title = format!("Namespaces of the host and of the container: {command}");
    let mut svg = Svg::new(W, height, &title);
    svg.text(20, 28, TITLE, "Namespaces: host and container");
    svg.text(20, 48, CODE.color(MUTED), command);
    let head = NOTE.bold();
    svg.text(20, TOP - 12, head, "namespace");
    svg.text(170, TOP - 12, head, "host");
    svg.text(350, TOP - 12, head, "container");
    svg.text(530, TOP - 12, head, "verdict");
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + i as u32 * ROW;
        let own = r.host != r.container;
        if own {
            svg.rect(12, y, W - 24, ROW - 4, GREEN.0, GREEN.0, false);
        }
        svg.text(20, y + 18, LABEL.bold(), &r.name);
        let none = |s: &str| {
            if s.is_empty() {
                "(none)".to_string()
            } else {
                s.to_string()
            }
        };
        svg.rect(164, y + 3, 172, ROW - 10, "#ffffff", "#d0d7de", false);
        svg.text(172, y + 18, CODE, &none(&r.host));
        let (fill, stroke) = if own {
            ("#ffffff", GREEN.1)
        } else {
            ("#ffffff", "#d0d7de")
        };
        svg.rect(344, y + 3, 172, ROW - 10, fill, stroke, false);
        let font = if own {
            CODE.bold().color(GREEN.1)
        } else {
            CODE.color(MUTED)
        };
        svg.text(352, y + 18, font, &none(&r.container));
        if own {
            svg.text(530, y + 18, LABEL.bold().color(GREEN.1), "its own");
        } else {
            svg.text(530, y + 18, LABEL.color(MUTED), "the host's");
        }
    }
    svg.text(
        20,
        TOP + n * ROW + 18,
        NOTE,
        "Two processes share a namespace exactly when the inode numbers in [ ] match.",
    );
    svg.finish()
}

// ---------------------------------------------------------------------------------------
// The overlay stack

/// What one line of `stagebox diff` means in the upper layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// `A`: only in the upper layer.
    Added,
    /// `C`, a file: copied up from a lower layer, then changed.
    Changed,
    /// `C`, a directory: copied up to hold a changed entry; it still merges with the lower one.
    Directory,
    /// `C`, an opaque directory: it hides the lower one's entries.
    Opaque,
    /// `D`: a whiteout hides the lower file.
    Deleted,
}

/// One line of `stagebox diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: String,
}

/// A container's overlay: its directories and the changes in its writable layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayStack {
    /// How to name the container in the title (`container 5383c2a22d96`).
    pub container: String,
    /// What ran in it.
    pub command: String,
    /// The lower directories, top first.
    pub lower: Vec<String>,
    pub upper: String,
    pub work: String,
    pub merged: String,
    pub changes: Vec<Change>,
}

/// The overlay from the top: merged (what the container sees), upper (its writable layer,
/// with the files it changed: deletions are whiteouts), the read-only lower layers, work.
pub fn overlay(o: &OverlayStack) -> String {
    const W: u32 = 760;
    const BOX: u32 = 50;
    const GAP: u32 = 12;
    const CHANGE: u32 = 24;
    const X: u32 = 130;
    const BW: u32 = W - X - 20;
    let command = wrap(&o.command, 100, 2);
    let top = 50 + command.len() as u32 * 16;
    let upper_h = BOX + 6 + o.changes.len() as u32 * CHANGE;
    let height = top + (BOX + GAP) * (2 + o.lower.len() as u32) + upper_h + GAP + 8;
    let title = format!("The overlay of {}", o.container);
    let mut svg = Svg::new(W, height, &title);
    svg.text(20, 28, TITLE, &title);
    for (i, line) in command.iter().enumerate() {
        svg.text(20, 48 + i as u32 * 16, CODE.color(MUTED), line);
    }
    let mut y = top;
    /// One layer: its role on the left, a box with what it is and its directory.
    #[allow(clippy::too_many_arguments)]
    fn layer(
        svg: &mut Svg,
        y: u32,
        h: u32,
        role: &str,
        colors: (&'static str, &'static str),
        what: &str,
        path: &str,
    ) {
        svg.text(20, y + 20, LABEL.bold().color(colors.1), role);
        svg.rect(X, y, BW, h, colors.0, colors.1, false);
        svg.text(X + 12, y + 19, LABEL, what);
        svg.text(X + 12, y + 37, CODE.color(MUTED), &clip(path, 88));
    }
    layer(
        &mut svg,
        y,
        BOX,
        "merged",
        BLUE,
        "what the container sees as /: upper over lower, one directory tree",
        &o.merged,
    );
    y += BOX + GAP;
    layer(
        &mut svg,
        y,
        upper_h,
        "upper",
        YELLOW,
        "read-write: the container's own layer; every change lands here",
        &o.upper,
    );
    for (i, c) in o.changes.iter().enumerate() {
        let cy = y + BOX + i as u32 * CHANGE;
        let (colors, letter, note) = match c.kind {
            ChangeKind::Added => (GREEN, "A", "added: only in the upper layer"),
            ChangeKind::Changed => (BLUE, "C", "changed: copied up from lower, then written"),
            ChangeKind::Directory => (BLUE, "C", "directory: copied up to hold a change"),
            ChangeKind::Opaque => (BLUE, "C", "opaque directory: hides the lower one's entries"),
            ChangeKind::Deleted => (RED, "D", "deleted: a whiteout (char device 0:0)"),
        };
        svg.rect(X + 12, cy, 20, 18, colors.0, colors.1, false);
        svg.text_with(
            X + 22,
            cy + 13,
            CODE.bold().color(colors.1),
            Anchor::Middle,
            "",
            letter,
        );
        let decoration = if c.kind == ChangeKind::Deleted {
            " text-decoration=\"line-through\""
        } else {
            ""
        };
        svg.text_with(
            X + 42,
            cy + 13,
            CODE.color(colors.1),
            Anchor::Start,
            decoration,
            &clip(&c.path, 38),
        );
        svg.text(X + 312, cy + 13, NOTE, note);
    }
    y += upper_h + GAP;
    let count = o.lower.len();
    for (i, l) in o.lower.iter().enumerate() {
        let role = if count == 1 {
            "lower".to_string()
        } else {
            format!("lower {}", i + 1)
        };
        layer(
            &mut svg,
            y,
            BOX,
            &role,
            GREY,
            "read-only: the image, shared by every container made from it",
            l,
        );
        y += BOX + GAP;
    }
    layer(
        &mut svg,
        y,
        BOX,
        "work",
        PURPLE,
        "overlayfs's scratch directory, on the same filesystem as upper",
        &o.work,
    );
    svg.finish()
}

// ---------------------------------------------------------------------------------------
// The compare matrix

/// One cell of the compare matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Isolated,
    Leaks,
    /// The stage that would isolate it is not in this version yet.
    NotYet,
    /// The plan refused this configuration.
    Refused,
    /// Only root may run it here (the book is made as root, so it shows no such cell).
    NeedsRoot,
    /// The probe could not run.
    Error,
}

impl Cell {
    fn look(self) -> ((&'static str, &'static str), &'static str) {
        match self {
            Cell::Isolated => (GREEN, "isolated"),
            Cell::Leaks => (RED, "LEAKS"),
            Cell::NotYet => (GREY, "not yet"),
            Cell::Refused => (YELLOW, "refused"),
            Cell::NeedsRoot => (GREY, "needs root"),
            Cell::Error => (PURPLE, "error"),
        }
    }
}

/// One check of the matrix: its question, the stage meant to isolate it, a cell a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridRow {
    pub question: String,
    pub stage: String,
    pub cells: Vec<Cell>,
}

/// The compare matrix as a coloured grid: checks as rows, configurations as columns.
pub fn compare_grid(title: &str, columns: &[String], rows: &[GridRow]) -> String {
    const LW: u32 = 330;
    const CW: u32 = 50;
    const CH: u32 = 26;
    const TOP: u32 = 120;
    let width = 20 + LW + columns.len() as u32 * CW + 40;
    let height = TOP + rows.len() as u32 * CH + 56;
    let mut svg = Svg::new(width, height, title);
    svg.text(20, 28, TITLE, title);
    for (i, c) in columns.iter().enumerate() {
        let x = 20 + LW + i as u32 * CW + CW / 2;
        let y = TOP - 8;
        svg.text_with(
            x,
            y,
            CODE.bold(),
            Anchor::Start,
            &format!(" transform=\"rotate(-45 {x} {y})\""),
            &clip(c, 12),
        );
    }
    for (r, row) in rows.iter().enumerate() {
        let y = TOP + r as u32 * CH;
        svg.text(20, y + 17, LABEL, &clip(&row.question, 46));
        svg.text_with(
            20 + LW - 8,
            y + 17,
            NOTE,
            Anchor::End,
            "",
            &format!("({})", row.stage),
        );
        for (i, cell) in row.cells.iter().enumerate() {
            let x = 20 + LW + i as u32 * CW;
            let ((fill, ink), word) = cell.look();
            svg.rect(x + 1, y + 1, CW - 2, CH - 2, fill, ink, false);
            let font = NOTE.size(9).color(ink);
            let font = if *cell == Cell::Leaks {
                font.bold()
            } else {
                font
            };
            svg.text_with(x + CW / 2, y + 16, font, Anchor::Middle, "", word);
        }
    }
    let y = TOP + rows.len() as u32 * CH + 22;
    let mut x = 20;
    for (cell, meaning) in [
        (Cell::Isolated, "isolated"),
        (Cell::Leaks, "LEAKS to or from the host"),
        (Cell::NotYet, "not yet: its stage is not in this version"),
        (Cell::Refused, "refused by the plan"),
    ] {
        let ((fill, ink), _) = cell.look();
        svg.rect(x, y, 14, 14, fill, ink, false);
        svg.text(x + 20, y + 11, NOTE, meaning);
        x += 34 + 6 * meaning.len() as u32;
    }
    svg.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `svg` is well formed enough for a browser: every tag closed in order,
    /// the root has width, height and viewBox. Returns the root's (width, height).
    fn well_formed(svg: &str) -> (u32, u32) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        let mut root = None;
        while let Some(i) = rest.find('<') {
            let after = &rest[i + 1..];
            let end = after.find('>').expect("a tag is closed with >");
            let tag = &after[..end];
            assert!(!tag.contains('<'), "< inside a tag: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().expect("a closing tag has an opening one");
                assert_eq!(open, name.trim(), "tags close in order");
            } else if !tag.ends_with('/') {
                let name = tag
                    .split_whitespace()
                    .next()
                    .expect("a tag name")
                    .to_string();
                if root.is_none() {
                    root = Some(tag.to_string());
                }
                stack.push(name);
            }
            rest = &after[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        assert!(!rest.contains('>'), "stray > after the last tag");
        let root = root.expect("a root element");
        assert!(root.starts_with("svg "), "{root}");
        let attr = |name: &str| -> String {
            let key = format!(" {name}=\"");
            let start = root.find(&key).unwrap_or_else(|| panic!("no {name}")) + key.len();
            root[start..].split('"').next().unwrap().to_string()
        };
        let (w, h): (u32, u32) = (
            attr("width").parse().unwrap(),
            attr("height").parse().unwrap(),
        );
        assert_eq!(attr("viewBox"), format!("0 0 {w} {h}"));
        (w, h)
    }

    fn stage(name: &str, state: StageState, why: &str) -> PipelineStage {
        PipelineStage {
            name: name.into(),
            state,
            why: why.into(),
            summary: format!("what {name} does & more"),
        }
    }

    #[test]
    fn pipeline_has_every_stage_and_why() {
        let stages = vec![
            stage("user", StageState::Coming, ""),
            stage("uts", StageState::On, "--only"),
            stage("ipc", StageState::Off, "not in --only"),
        ];
        let s = pipeline("stagebox run --only uts", &stages);
        well_formed(&s);
        for l in [
            "user",
            "uts",
            "ipc",
            "on · --only",
            "off · not in --only",
            "coming",
        ] {
            assert!(s.contains(l), "{l}");
        }
        assert!(s.contains(&escape("what uts does & more")));
        assert_eq!(
            s,
            pipeline("stagebox run --only uts", &stages),
            "deterministic"
        );
    }

    #[test]
    fn namespaces_mark_the_ones_that_differ_and_keep_their_size() {
        let rows = |inode: &str| {
            vec![
                NamespaceRow {
                    name: "uts".into(),
                    host: "uts:[4026531838]".into(),
                    container: format!("uts:[{inode}]"),
                },
                NamespaceRow {
                    name: "ipc".into(),
                    host: "ipc:[4026531839]".into(),
                    container: "ipc:[4026531839]".into(),
                },
            ]
        };
        let s = namespaces("stagebox run --only uts", &rows("4026532177"));
        let size = well_formed(&s);
        for l in [
            "uts:[4026531838]",
            "uts:[4026532177]",
            "ipc:[4026531839]",
            "its own",
            "the host&apos;s",
        ] {
            assert!(s.contains(l), "{l}");
        }
        assert_eq!(s.matches("its own").count(), 1);
        // Another inode with more digits: the same picture but for that text.
        let t = namespaces("stagebox run --only uts", &rows("12"));
        assert_eq!(well_formed(&t), size);
        assert_eq!(s.replace("4026532177", "12"), t);
    }

    #[test]
    fn overlay_shows_every_layer_and_change() {
        let o = OverlayStack {
            container: "container 0123456789ab".into(),
            command: "sh -c 'rm /etc/passwd'".into(),
            lower: vec!["$STAGEBOX_STATE/rootfs/busybox".into()],
            upper: "$STAGEBOX_STATE/containers/0123456789ab/upper".into(),
            work: "$STAGEBOX_STATE/containers/0123456789ab/work".into(),
            merged: "$STAGEBOX_STATE/containers/0123456789ab/merged".into(),
            changes: vec![
                Change {
                    kind: ChangeKind::Added,
                    path: "/hello.txt".into(),
                },
                Change {
                    kind: ChangeKind::Deleted,
                    path: "/etc/passwd".into(),
                },
                Change {
                    kind: ChangeKind::Opaque,
                    path: "/home".into(),
                },
            ],
        };
        let s = overlay(&o);
        well_formed(&s);
        for l in [
            "merged",
            "upper",
            "lower",
            "work",
            "/hello.txt",
            "/etc/passwd",
            "/home",
            "opaque",
            "whiteout",
            "line-through",
            "$STAGEBOX_STATE/rootfs/busybox",
            "container 0123456789ab",
        ] {
            assert!(s.contains(l), "{l}");
        }
        assert_eq!(s, overlay(&o));
    }

    #[test]
    fn compare_grid_colours_each_verdict() {
        let cols: Vec<String> = ["all", "-pid", "-mount"].map(String::from).to_vec();
        let rows = vec![GridRow {
            question: "sees the host's processes".into(),
            stage: "pid".into(),
            cells: vec![Cell::Isolated, Cell::Leaks, Cell::Refused],
        }];
        let s = compare_grid("Each stage off", &cols, &rows);
        well_formed(&s);
        for l in [
            "all", "-pid", "-mount", "isolated", "LEAKS", "refused", "(pid)",
        ] {
            assert!(s.contains(l), "{l}");
        }
        assert!(s.contains(&escape("sees the host's processes")));
        assert!(s.contains(RED.1) && s.contains(GREEN.1) && s.contains(YELLOW.1));
    }

    #[test]
    fn the_checker_catches_bad_svg() {
        assert!(std::panic::catch_unwind(|| well_formed(
            "<svg width=\"1\" height=\"1\" viewBox=\"0 0 1 1\"><g></svg>"
        ))
        .is_err());
        assert!(std::panic::catch_unwind(|| well_formed("<svg><text>x</text></svg>")).is_err());
        assert_eq!(
            well_formed("<svg width=\"3\" height=\"2\" viewBox=\"0 0 3 2\"><g/></svg>"),
            (3, 2)
        );
    }

    #[test]
    fn escapes_and_clips() {
        assert_eq!(escape("a<b & 'c'"), "a&lt;b &amp; &apos;c&apos;");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        assert_eq!(wrap("aa bb cc", 5, 2), vec!["aa bb", "cc"]);
        assert_eq!(wrap("aa bb cc ddd", 5, 2), vec!["aa bb", "cc d…"]);
        assert_eq!(wrap("aa", 5, 2), vec!["aa"]);
    }
}
