//! Every relative link in the repository's Markdown files leads somewhere: the file exists and,
//! when the link names a `#fragment` of a Markdown file, that file has a heading with that
//! anchor (GitHub's rule: lowercase, punctuation dropped, spaces to hyphens, `-1`, `-2`, … for
//! repeats). Links with a scheme (`https:`, `mailto:`) are not followed.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

#[test]
fn every_relative_link_in_the_markdown_files_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    markdown_files(root, root, &mut files);
    assert!(
        files.iter().any(|file| file.ends_with("README.md")),
        "the walk found no README.md under {}",
        root.display()
    );
    let broken: Vec<String> = files
        .iter()
        .flat_map(|file| broken_links(root, file))
        .collect();
    assert!(
        broken.is_empty(),
        "{} broken relative link(s):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn the_checker_sees_a_missing_file_and_a_missing_anchor() {
    let text = "# Title\n\n[ok](#title) [gone](#nowhere) [file](no-such-file.md)\n\
                ```sh\n[not a link](in-a-code-block.md)\n```\n`[nor](in-code.md)`\n";
    let targets: Vec<String> = links(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(targets, ["#title", "#nowhere", "no-such-file.md"]);
    assert!(anchors(text).contains("title"));
    assert!(!anchors(text).contains("nowhere"));
}

#[test]
fn anchors_follow_github_rules() {
    let text = "## 3.1 Poll\n## Replacing a member's data\n## `--peers` and **TLS**\n\
                ## Time\n## Time\n## [Linked](x.md) heading\n";
    let found = anchors(text);
    for anchor in [
        "31-poll",
        "replacing-a-members-data",
        "--peers-and-tls",
        "time",
        "time-1",
        "linked-heading",
    ] {
        assert!(found.contains(anchor), "{anchor} not in {found:?}");
    }
}

/// Every `*.md` file under `dir`, skipping build output, VCS data and the fuzzer's corpora.
fn markdown_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            let relative = path.strip_prefix(root).expect("under the root");
            let skipped = name.starts_with('.')
                || name == "target"
                || relative.starts_with("fuzz/corpus")
                || relative.starts_with("fuzz/artifacts");
            if !skipped {
                markdown_files(root, &path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The broken links of one file, as `file:line: target (why)`.
fn broken_links(root: &Path, file: &Path) -> Vec<String> {
    let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let shown = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    let mut broken = Vec::new();
    for (line, target) in links(&text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, fragment) = match target.split_once('#') {
            Some((path, fragment)) => (path, Some(fragment)),
            None => (target.as_str(), None),
        };
        let resolved = if path.is_empty() {
            file.to_path_buf()
        } else {
            normalize(&file.parent().expect("a file has a directory").join(path))
        };
        if !resolved.exists() {
            broken.push(format!("{shown}:{line}: {target} (no such file)"));
            continue;
        }
        if let Some(fragment) = fragment {
            if resolved.extension().is_some_and(|e| e == "md") {
                let target_text = fs::read_to_string(&resolved).expect("an existing file reads");
                if !anchors(&target_text).contains(fragment) {
                    broken.push(format!("{shown}:{line}: {target} (no such heading)"));
                }
            }
        }
    }
    broken
}

/// `a/b/../c` → `a/c`, without touching the file system (the target may not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The targets of inline links and images (`[text](target)`) and of reference definitions
/// (`[label]: target`), with their line numbers, outside fenced code blocks and code spans.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut fenced = false;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let line = without_code_spans(line);
        if let Some(rest) = line.trim_start().strip_prefix('[') {
            if let Some((_, target)) = rest.split_once("]: ") {
                found.push((
                    index + 1,
                    target.split_whitespace().next().unwrap_or("").to_owned(),
                ));
                continue;
            }
        }
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            let target = target.trim_start_matches('<').trim_end_matches('>');
            if !target.is_empty() {
                found.push((index + 1, target.to_owned()));
            }
            rest = &after[end..];
        }
    }
    found
}

/// The line with every `code span` blanked out.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(' ');
        } else if in_code {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// The anchors GitHub gives a Markdown file's headings.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut fenced = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let base = slug(&link_texts(heading.trim()));
        let mut anchor = base.clone();
        let mut repeat = 0;
        while !seen.insert(anchor.clone()) {
            repeat += 1;
            anchor = format!("{base}-{repeat}");
        }
    }
    seen
}

/// `[text](target)` → `text`.
fn link_texts(heading: &str) -> String {
    let mut out = String::new();
    let mut rest = heading;
    while let Some(start) = rest.find('[') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after
            .find("](")
            .and_then(|mid| Some((mid, after[mid..].find(')')? + mid)))
        {
            Some((mid, end)) => {
                out.push_str(&after[..mid]);
                rest = &after[end + 1..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}
