//! Commands of stages not built yet must say so, never pretend to work.

use crate::common::{envkit, run};

#[test]
fn later_stage_commands_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[&[&str]] = &[&["up"], &["down"], &["ps"], &["logs"]];
    for args in cases {
        let outcome = run(&mut envkit(dir.path(), args));
        assert_eq!(outcome.code, Some(2), "{args:?}: {}", outcome.transcript());
        let expected = format!("error: `env {}` is not available yet", args[0]);
        assert!(
            outcome.stderr.starts_with(&expected),
            "{args:?}: {}",
            outcome.stderr
        );
        assert!(outcome.stdout.is_empty());
    }
}

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
