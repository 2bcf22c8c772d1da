//! The source tree keeps the shape the architecture chapter draws: no two modules import each
//! other (at the top and one level down), the leaves (`spec`, `kernel`, `debian`) import
//! nothing else of the crate, the CLI makes no kernel call, and the store's and the cache's
//! folder names are spelled in their owners only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::repo_root;

/// Each source file of the library: its module path (`run::peers::up`) and its code, without
/// comments and without its unit tests.
fn sources() -> Vec<(Vec<String>, String)> {
    let src = repo_root().join("src");
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(&src).unwrap().with_extension("");
        let mut module: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect();
        if module.last().is_some_and(|last| last == "mod") {
            module.pop();
        }
        if module == ["lib"] || module == ["main"] {
            continue;
        }
        files.push((module, code_of(path)));
    }
    files
}

fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") { "" } else { line }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules, `depth` names deep, that `code` (of `module`) names through `crate::` or
/// `super::`.
fn imports(module: &[String], code: &str, depth: usize) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut add = |path: Vec<String>| {
        if path.len() >= depth.min(path.len()) {
            found.insert(path[..depth.min(path.len())].join("::"));
        }
    };
    for (index, _) in code.match_indices("crate::") {
        let path = path_after(&code[index + "crate::".len()..]);
        add(path);
    }
    // `super::x` from a file is a sibling of that file's module.
    let parent = if module.len() > 1 {
        &module[..module.len() - 1]
    } else {
        &[][..]
    };
    for (index, _) in code.match_indices("super::") {
        if index > 0 && code[..index].ends_with("::") {
            continue;
        }
        let mut path: Vec<String> = parent.to_vec();
        path.extend(path_after(&code[index + "super::".len()..]));
        add(path);
    }
    found
}

/// The lowercase path segments at the start of `text` (`run::peers::up::...`).
fn path_after(text: &str) -> Vec<String> {
    let mut path = Vec::new();
    let mut rest = text;
    loop {
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        path.push(rest[..end].to_string());
        match rest[end..].strip_prefix("::") {
            Some(next) => rest = next,
            None => break,
        }
    }
    path
}

fn graph(depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in sources() {
        let from = module[..depth.min(module.len())].join("::");
        for to in imports(&module, &code, depth) {
            let nested = |a: &str, b: &str| a.starts_with(&format!("{b}::"));
            if to != from && !nested(&from, &to) && !nested(&to, &from) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

#[test]
fn no_two_modules_import_each_other() {
    for depth in [1, 2] {
        let edges = graph(depth);
        let mut both_ways = Vec::new();
        for (from, targets) in &edges {
            for to in targets {
                if from < to && edges.get(to).is_some_and(|back| back.contains(from)) {
                    both_ways.push(format!("{from} <-> {to}"));
                }
            }
        }
        assert!(both_ways.is_empty(), "depth {depth}: {both_ways:?}");
    }
}

#[test]
fn the_leaves_import_nothing_else_of_the_crate() {
    let edges = graph(1);
    for leaf in ["spec", "kernel", "debian", "deploy"] {
        assert_eq!(
            edges.get(leaf),
            None,
            "{leaf} imports {:?}",
            edges.get(leaf)
        );
    }
    // The stages never reach forward, and nothing below the commands knows them.
    for (module, never) in [
        ("solve", &["build", "run", "ops", "cli"][..]),
        ("build", &["run", "ops", "cli"]),
        ("run", &["build", "solve", "ops", "cli"]),
        ("ops", &["cli"]),
        ("registry", &["spec", "solve", "build", "run", "ops", "cli"]),
    ] {
        let imported = edges.get(module).cloned().unwrap_or_default();
        for forbidden in never {
            assert!(
                !imported.contains(*forbidden),
                "{module} imports {forbidden}"
            );
        }
    }
}

#[test]
fn the_cli_makes_no_kernel_call_and_no_lock_or_build_decision() {
    for (module, code) in sources() {
        if module[0] != "cli" {
            continue;
        }
        for word in [
            "setns",
            "pre_exec",
            "ioctl",
            "unsafe",
            "crate::kernel",
            "current_lock",
            "solve::stage",
            "build::image::build",
        ] {
            assert!(
                !code.contains(word),
                "cli::{} uses `{word}`",
                module[1..].join("::")
            );
        }
    }
}

#[test]
fn folder_names_of_the_store_and_the_cache_are_spelled_by_their_owners() {
    const NAMES: &[&str] = &[
        "layers-v1",
        "images-v1",
        "roots-v1",
        "shortcuts-v1",
        "debs-v1",
        "indexes-v1",
        "build-stubs-v1",
        "blobs-v1",
        "pushed-v1",
    ];
    // The owners, by module: `build/store/mod.rs` and `cache.rs`.
    let owners = ["build::store", "cache"];
    for (module, code) in sources() {
        let module = module.join("::");
        for name in NAMES {
            if code.contains(&format!("\"{name}\"")) {
                assert!(
                    owners.contains(&module.as_str()),
                    "`{name}` is spelled in {module}"
                );
            }
        }
    }
}
