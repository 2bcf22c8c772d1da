//! `env check` on good and bad files; each bad file's report is a snapshot.

use crate::common::{assert_checks_cleanly, envkit, run};

/// Every folder under `tests/fixtures/spec/invalid/` holds one mistake; the report must name
/// the file, line and column, show the line with a marker, and exit 2.
#[test]
fn every_mistake_gets_a_precise_diagnostic() {
    insta::glob!("../fixtures/spec/invalid", "*/env.kdl", |path| {
        let dir = path.parent().expect("case folder");
        let outcome = run(&mut envkit(dir, &["check"]));
        assert_eq!(outcome.code, Some(2), "{}", outcome.transcript());
        assert!(outcome.stdout.is_empty(), "diagnostics go to stderr");
        assert!(
            outcome.stderr.contains(".kdl:"),
            "names the file: {}",
            outcome.stderr
        );
        insta::assert_snapshot!(outcome.transcript());
    });
}

#[test]
fn valid_files_pass_with_a_one_line_summary() {
    insta::glob!("../fixtures/spec/valid", "*/env.kdl", |path| {
        let dir = path.parent().expect("case folder");
        let outcome = run(&mut envkit(dir, &["check"]));
        assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
        assert_eq!(outcome.stderr.lines().count(), 1, "{}", outcome.stderr);
        assert!(
            outcome.stderr.starts_with("ok: env.kdl: "),
            "{}",
            outcome.stderr
        );
    });
}

#[test]
fn the_env_file_is_found_in_a_parent_folder() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("env.kdl"),
        "name \"proj\"\nbase \"debian:bookworm\"\n",
    )
    .unwrap();
    let nested = project.path().join("src/module");
    std::fs::create_dir_all(&nested).unwrap();
    let outcome = run(&mut envkit(&nested, &["check"]));
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("proj on debian:bookworm"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn dash_f_overrides_discovery() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("env.kdl"), "base \"ubuntu:jammy\"\n").unwrap();
    std::fs::write(
        project.path().join("other.kdl"),
        "name \"other\"\nbase \"debian:trixie\"\n",
    )
    .unwrap();
    let outcome = run(&mut envkit(project.path(), &["check", "-f", "other.kdl"]));
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    assert!(
        outcome
            .stderr
            .contains("ok: other.kdl: other on debian:trixie"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn no_env_file_is_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let outcome = run(&mut envkit(empty.path(), &["check"]));
    assert_eq!(outcome.code, Some(2), "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("error: no `env.kdl` in"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("hint: run `env init`"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn a_missing_dash_f_file_names_it() {
    let empty = tempfile::tempdir().unwrap();
    let outcome = run(&mut envkit(empty.path(), &["check", "-f", "nope.kdl"]));
    assert_eq!(outcome.code, Some(1), "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("error: cannot read `nope.kdl`"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome
            .stderr
            .contains("caused by: No such file or directory"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn warnings_are_shown_but_do_not_fail() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("env.kdl"),
        "base \"debian:bookworm\"\npackages \"git\" \"git\"\n",
    )
    .unwrap();
    let outcome = run(&mut envkit(project.path(), &["check"]));
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    assert!(
        outcome
            .stderr
            .contains("warning: package `git` is listed twice"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("env.kdl:2:16"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn the_book_examples_are_valid() {
    insta::glob!("../../book/src/examples", "*.kdl", |path| {
        assert_checks_cleanly(path)
    });
}
