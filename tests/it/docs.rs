//! The book stays true: the command reference is generated from the CLI definition, and every
//! page the summary links to exists. `ENVKIT_UPDATE_DOCS=1 cargo test docs` rewrites the reference.

use clap::CommandFactory;
use envkit::cli::Cli;

use crate::common::repo_root;

fn command_reference() -> String {
    let mut out = String::from(
        "# Commands\n\n\
         <!-- Generated from the CLI definition by tests/it/docs.rs; do not edit by hand. -->\n\n\
         `env` with one of these subcommands is envkit; with anything else it runs the system \
         `env`. `-f FILE` works with every subcommand. Exit codes: 0 success, 1 an operation \
         failed, 2 invalid input; `env run` exits with the command's own status.\n",
    );
    let mut command = Cli::command();
    // Building propagates global options and full usage lines (`env init`) to subcommands.
    command.build();
    for sub in command
        .get_subcommands_mut()
        .filter(|sub| sub.get_name() != "help")
    {
        let name = sub.get_name().to_string();
        let help = sub.render_long_help().to_string();
        out.push_str(&format!(
            "\n## `env {name}`\n\n```text\n{}\n```\n",
            help.trim_end()
        ));
    }
    out
}

#[test]
fn command_reference_is_current() {
    let path = repo_root().join("book/src/reference/cli.md");
    let expected = command_reference();
    if std::env::var_os("ENVKIT_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "book/src/reference/cli.md is stale: run `ENVKIT_UPDATE_DOCS=1 cargo test docs`"
    );
}

#[test]
fn every_page_in_the_summary_exists() {
    let src = repo_root().join("book/src");
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).unwrap();
    let mut links = 0;
    for target in summary
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
    {
        assert!(
            src.join(target).is_file(),
            "SUMMARY.md links to missing {target}"
        );
        links += 1;
    }
    assert!(links >= 5);
}

#[test]
fn every_include_in_the_book_exists() {
    let src = repo_root().join("book/src");
    for entry in walk(&src) {
        if entry.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&entry).unwrap();
        for include in text
            .split("{{#include ")
            .skip(1)
            .filter_map(|rest| rest.split("}}").next())
        {
            let target = entry.parent().unwrap().join(include.trim());
            assert!(
                target.is_file(),
                "{} includes missing {}",
                entry.display(),
                include
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
