//! apt's sources: one-line `deb` entries (`sources.list`, `*.list`) and deb822 stanzas
//! (`*.sources`), and where apt keeps them.

use std::path::{Path, PathBuf};

use super::deb822;

/// One `deb` line or deb822 stanza, as far as it names one URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
}

/// The files apt reads its sources from under `apt_dir` (normally `/etc/apt`), in the order
/// it reads them: `sources.list`, then `sources.list.d/` by name. Files need not exist.
pub fn files(apt_dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![apt_dir.join("sources.list")];
    let mut listed: Vec<PathBuf> = std::fs::read_dir(apt_dir.join("sources.list.d"))
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    listed.sort();
    files.extend(listed);
    files
}

/// The binary-package entries of a file named `file_name` holding `text`, read in the format
/// its name says; `None` for a name apt ignores (such as `x.list.disabled`).
pub fn entries(file_name: &str, text: &str) -> Option<Vec<Entry>> {
    if file_name.ends_with(".sources") {
        Some(deb822_entries(text))
    } else if file_name.ends_with(".list") {
        Some(one_line_entries(text))
    } else {
        None
    }
}

/// The entries of a deb822 `.sources` file: stanzas of type `deb` not marked `Enabled: no`,
/// one entry per URI.
pub fn deb822_entries(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for stanza in deb822::stanzas(text) {
        let words = |field: &str| -> Vec<String> {
            stanza
                .get(field)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        if !words("Types").iter().any(|t| t == "deb")
            || stanza.get("Enabled").is_some_and(|e| e.trim() == "no")
        {
            continue;
        }
        let (suites, components) = (words("Suites"), words("Components"));
        for uri in words("URIs") {
            out.push(Entry {
                uri,
                suites: suites.clone(),
                components: components.clone(),
            });
        }
    }
    out
}

/// The entries of a one-line `.list` file: its `deb` lines (not `deb-src`), comments cut.
pub fn one_line_entries(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let rest = rest.trim_start();
        // `[signed-by=... arch=...]` options come before the URI.
        let rest = match rest.strip_prefix('[') {
            Some(options) => options.split_once(']').map_or("", |(_, after)| after),
            None => rest,
        };
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(Entry {
            uri: uri.to_string(),
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uri: &str, suites: &[&str], components: &[&str]) -> Entry {
        Entry {
            uri: uri.into(),
            suites: suites.iter().map(|s| s.to_string()).collect(),
            components: components.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn deb822_stanzas_give_one_entry_per_uri() {
        let text = "Types: deb deb-src\n# a comment\nURIs: http://a.invalid/debian http://b.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main contrib\n\nTypes: deb-src\nURIs: http://src.invalid/debian\nSuites: bookworm\nComponents: main\n\nTypes: deb\nURIs: http://off.invalid/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n";
        let suites = ["bookworm", "bookworm-updates"];
        assert_eq!(
            deb822_entries(text),
            [
                entry("http://a.invalid/debian", &suites, &["main", "contrib"]),
                entry("http://b.invalid/debian", &suites, &["main", "contrib"]),
            ]
        );
    }

    #[test]
    fn one_line_entries_skip_options_comments_and_source_lines() {
        let text = "# comment\ndeb-src http://src.invalid/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://m.invalid/debian bookworm main contrib # trailing\ndeb\thttp://t.invalid/debian bookworm-updates main\ndeb http://short.invalid/debian\n";
        assert_eq!(
            one_line_entries(text),
            [
                entry(
                    "http://m.invalid/debian",
                    &["bookworm"],
                    &["main", "contrib"]
                ),
                entry("http://t.invalid/debian", &["bookworm-updates"], &["main"]),
            ]
        );
    }

    #[test]
    fn the_file_name_picks_the_format() {
        let line = "deb http://m.invalid/debian bookworm main\n";
        assert_eq!(entries("debian.list", line).map(|e| e.len()), Some(1));
        assert_eq!(entries("debian.sources", line), Some(Vec::new()));
        assert_eq!(entries("debian.list.disabled", line), None);
    }

    #[test]
    fn files_are_read_in_apt_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sources.list.d")).unwrap();
        for name in ["b.sources", "a.list"] {
            std::fs::write(dir.path().join("sources.list.d").join(name), "").unwrap();
        }
        assert_eq!(
            files(dir.path()),
            [
                dir.path().join("sources.list"),
                dir.path().join("sources.list.d/a.list"),
                dir.path().join("sources.list.d/b.sources"),
            ]
        );
    }
}
