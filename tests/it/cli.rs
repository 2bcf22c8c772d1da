//! The command line itself: help, version and shell completions.

use crate::common::{envkit, run};

#[test]
fn completions_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run(&mut envkit(dir.path(), &["completions", "bash"]));
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    assert!(outcome.stdout.contains("inspect"), "mentions subcommands");
}

#[test]
fn help_and_version_are_envkits() {
    let dir = tempfile::tempdir().unwrap();
    let help = run(&mut envkit(dir.path(), &["--help"]));
    assert_eq!(help.code, Some(0));
    assert!(
        help.stdout
            .contains("declarative, reproducible development environments"),
        "{}",
        help.stdout
    );
    let version = run(&mut envkit(dir.path(), &["--version"]));
    assert!(version.stdout.starts_with("env "), "{}", version.stdout);
}
