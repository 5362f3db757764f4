//! The book in a real browser: mdbook builds it into a temp dir, and headless Chromium opens
//! every chapter. Each chapter must load (the DOM has its h1), every picture must render,
//! not blank, at the size its SVG declares, and no relative link of the built HTML may point
//! at a missing file. A screenshot of the isolation chapter is kept as an artifact at
//! target/book-screenshot.png.
//!
//! Skips, saying why, without chromium or mdbook; STAGEBOX_REQUIRE_CHROMIUM=1 (as in CI)
//! turns that skip into a failure. Nothing goes to the network: every page is a file:// URL
//! and mdbook's pages load only files of the book.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // mdbook is installed with cargo, which a plain PATH may not include.
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|f| f.is_file())
}

/// Says why the test cannot run: a skip, or a failure where CI requires the browser.
fn skip(why: &str) {
    if std::env::var("STAGEBOX_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
        panic!("{why}, and STAGEBOX_REQUIRE_CHROMIUM=1 forbids skipping");
    }
    eprintln!("SKIP the book in a browser: {why}");
}

/// The chapters of SUMMARY.md: (title, the page's path relative to the book, .html).
fn chapters(book: &Path) -> Vec<(String, PathBuf)> {
    let summary = std::fs::read_to_string(book.join("src/SUMMARY.md")).expect("SUMMARY.md");
    summary
        .lines()
        .filter_map(|line| {
            let (title, rest) = line.split_once("](")?;
            let title = title.rsplit('[').next().unwrap_or(title).to_string();
            let md = rest.trim_end_matches(')');
            Some((title, PathBuf::from(md.replace(".md", ".html"))))
        })
        .collect()
}

/// `&amp;` and friends, as an attribute value or a text holds them.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The values of every `href="..."` and `src="..."` in `html`.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in [" href=\"", " src=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            if let Some(end) = rest.find('"') {
                out.push(unescape(&rest[..end]));
                rest = &rest[end..];
            }
        }
    }
    out
}

/// The file a relative link of a page in `dir` points at, or None for other links (other
/// schemes, anchors in the same page).
fn target(dir: &Path, link: &str) -> Option<PathBuf> {
    let link = link.split(['#', '?']).next().unwrap_or("");
    if link.is_empty() || link.contains(':') || link.starts_with("//") {
        return None;
    }
    Some(dir.join(link))
}

/// The width and height an SVG declares on its root.
fn svg_size(svg: &str) -> (u32, u32) {
    let start = svg.find("<svg").expect("an <svg> root");
    let root = &svg[start..start + svg[start..].find('>').expect("the root tag ends")];
    let attr = |name: &str| -> u32 {
        let key = format!(" {name}=\"");
        let i = root
            .find(&key)
            .unwrap_or_else(|| panic!("no {name} in {root}"))
            + key.len();
        root[i..]
            .split('"')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} of {root} is not a whole number"))
    };
    (attr("width"), attr("height"))
}

/// Written into a copy of each page: after load, one line per fact in <pre id=check>.
const PROBE: &str = r#"<script>
window.addEventListener('load', function () {
  var lines = [];
  var h1 = document.querySelector('main h1');
  lines.push('H1 ' + (h1 ? h1.textContent.trim() : ''));
  document.querySelectorAll('img').forEach(function (img) {
    var colours = 'unknown';
    try {
      var c = document.createElement('canvas');
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      var g = c.getContext('2d');
      g.drawImage(img, 0, 0);
      var d = g.getImageData(0, 0, c.width, c.height).data;
      var seen = {}, n = 0;
      for (var i = 0; i < d.length && n < 3; i += 4) {
        var k = d[i] + ',' + d[i + 1] + ',' + d[i + 2] + ',' + d[i + 3];
        if (!seen[k]) { seen[k] = 1; n++; }
      }
      colours = String(n);
    } catch (e) {
      colours = 'unknown';
    }
    lines.push(['IMG', img.complete, img.naturalWidth, img.naturalHeight, colours,
      img.getAttribute('src')].join(' '));
  });
  var pre = document.createElement('pre');
  pre.id = 'check';
  pre.textContent = lines.join('\n');
  document.body.appendChild(pre);
});
</script>
"#;

fn chromium_cmd(chromium: &Path, profile: &Path) -> Command {
    let mut c = Command::new(chromium);
    c.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-sync",
        "--hide-scrollbars",
        "--allow-file-access-from-files",
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stdin(std::process::Stdio::null());
    c
}

/// What the probe wrote into the page, from Chromium's --dump-dom.
fn check_lines(chromium: &Path, profile: &Path, page: &Path) -> Vec<String> {
    let out = chromium_cmd(chromium, profile)
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout);
    let Some(start) = dom.find("<pre id=\"check\">") else {
        panic!(
            "{}: the check did not run in Chromium (status {:?}):\n{}",
            page.display(),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let body = &dom[start + "<pre id=\"check\">".len()..];
    let body = &body[..body.find("</pre>").expect("the check's </pre>")];
    body.lines().map(unescape).collect()
}

/// True when a PNG file holds more than one colour, judged cheaply: a blank page's rows
/// filter down to a handful of byte values, a page with text to many.
fn png_is_not_blank(png: &[u8]) -> bool {
    use std::io::Read;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let mut idat = Vec::new();
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = &png[at + 4..at + 8];
        if kind == b"IDAT" {
            idat.extend_from_slice(&png[at + 8..at + 8 + len]);
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .expect("inflate the PNG");
    let mut seen = [false; 256];
    for b in &raw {
        seen[*b as usize] = true;
    }
    seen.iter().filter(|s| **s).count() > 32
}

#[test]
fn every_chapter_renders_in_chromium_with_its_pictures_and_links() {
    let Some(chromium) = on_path(&["chromium", "chromium-browser"]) else {
        skip("chromium is not on PATH (apt-get install chromium)");
        return;
    };
    let Some(mdbook) = on_path(&["mdbook"]) else {
        skip("mdbook is not on PATH (cargo install --locked mdbook --version 0.4.52)");
        return;
    };
    let book = repo().join("book");
    let tmp = tempfile::tempdir().expect("temp dir");
    let html = tmp.path().join("html");
    let profile = tmp.path().join("profile");
    common::mdbook_build(&mdbook, &book, &html);

    let chapters = chapters(&book);
    assert!(chapters.len() >= 10, "only {} chapters", chapters.len());
    let mut problems = Vec::new();
    let mut pictures = 0;
    for (title, rel) in &chapters {
        let page = html.join(rel);
        let dir = page.parent().expect("a page has a directory").to_path_buf();
        let text = std::fs::read_to_string(&page)
            .unwrap_or_else(|e| panic!("{} did not render: {e}", rel.display()));
        for link in links(&text) {
            if let Some(file) = target(&dir, &link) {
                if !file.exists() {
                    problems.push(format!("{}: broken link {link}", rel.display()));
                }
            }
        }
        // A copy of the page with the probe, next to it so that relative links still work.
        let name = page.file_name().expect("a page name").to_string_lossy();
        let copy = dir.join(format!(".check-{name}"));
        std::fs::write(
            &copy,
            text.replacen("</body>", &format!("{PROBE}</body>"), 1),
        )
        .expect("write the checked copy");
        let lines = check_lines(&chromium, &profile, &copy);
        let h1 = lines
            .first()
            .and_then(|l| l.strip_prefix("H1 "))
            .unwrap_or("");
        if h1 != title {
            problems.push(format!("{}: h1 is {h1:?}, not {title:?}", rel.display()));
        }
        for line in lines.iter().filter(|l| l.starts_with("IMG ")) {
            let f: Vec<&str> = line.splitn(6, ' ').collect();
            let [_, complete, w, h, colours, src] = f[..] else {
                problems.push(format!("{}: odd check line {line:?}", rel.display()));
                continue;
            };
            let Some(file) = target(&dir, src) else {
                continue; // not one of the book's own files
            };
            let Ok(svg) = std::fs::read_to_string(&file) else {
                problems.push(format!("{}: picture {src} is missing", rel.display()));
                continue;
            };
            if !src.ends_with(".svg") {
                continue;
            }
            pictures += 1;
            let want = svg_size(&svg);
            let got = (w.parse().unwrap_or(0), h.parse().unwrap_or(0));
            if complete != "true" || got != want {
                problems.push(format!(
                    "{}: {src} rendered at {got:?} (complete: {complete}), its SVG says {want:?}",
                    rel.display()
                ));
            }
            match colours {
                "1" => problems.push(format!("{}: {src} renders blank", rel.display())),
                "unknown" => eprintln!(
                    "{}: could not read {src}'s pixels back; its size was checked",
                    rel.display()
                ),
                _ => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        pictures >= 8,
        "only {pictures} pictures in the book: stagebox book draws them into book/src/images"
    );

    // The isolation chapter, as a person sees it, kept for whoever looks at CI's artifacts.
    let shot = repo().join("target/book-screenshot.png");
    std::fs::create_dir_all(shot.parent().expect("target/")).expect("create target/");
    let _ = std::fs::remove_file(&shot);
    let page = html.join("reference/isolation.html");
    let out = chromium_cmd(&chromium, &profile)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,2000")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {}: {e}\n{}",
            shot.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1280, 2000), "the screenshot's size");
    assert!(
        png.len() > 20_000 && png_is_not_blank(&png),
        "the screenshot at {} is blank ({} bytes)",
        shot.display(),
        png.len()
    );
}

#[test]
fn links_and_sizes_are_read_as_the_browser_would() {
    let l =
        links(r#"<a href="../x.html#top">x</a><img src="images/a.svg"><a href="https://e.org">"#);
    assert_eq!(l, vec!["../x.html#top", "https://e.org", "images/a.svg"]);
    let dir = Path::new("/b/reference");
    assert_eq!(target(dir, "../x.html#top"), Some(dir.join("../x.html")));
    assert_eq!(target(dir, "https://e.org"), None);
    assert_eq!(target(dir, "#top"), None);
    assert_eq!(
        svg_size("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"80\">"),
        (640, 80)
    );
}
