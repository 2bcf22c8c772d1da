//! Installed as `env` first on PATH, envkit must behave exactly like coreutils `env` for every
//! command line that is not one of its subcommands.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Outcome, env_binary, run};

const SYSTEM_ENV: &str = "/usr/bin/env";

/// A folder holding envkit installed as `env`, to put first on PATH. A symlink, not a copy:
/// writing an executable while other test threads fork makes exec fail with ETXTBSY.
fn installed() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env");
    std::os::unix::fs::symlink(env_binary(), &path).unwrap();
    (dir, path)
}

/// Runs `program args...` with argv[0] `argv0` and a fixed environment.
fn invoke(program: &Path, argv0: &str, args: &[&str], path_var: &str) -> Outcome {
    let mut command = Command::new(program);
    command.arg0(argv0).args(args).env_clear();
    command
        .env("PATH", path_var)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("SOME_VAR", "x y");
    run(&mut command)
}

/// Runs the same command line through envkit and through coreutils and compares everything.
fn same_as_coreutils(args: &[&str]) {
    let (dir, ours) = installed();
    let path_var = format!("{}:/usr/bin:/bin", dir.path().display());
    let argv0 = ours.to_str().unwrap();
    let expected = invoke(Path::new(SYSTEM_ENV), argv0, args, &path_var);
    let actual = invoke(&ours, argv0, args, &path_var);
    assert_eq!(actual.code, expected.code, "exit code of env {args:?}");
    assert_eq!(actual.stdout, expected.stdout, "stdout of env {args:?}");
    assert_eq!(actual.stderr, expected.stderr, "stderr of env {args:?}");
}

#[test]
fn setting_a_variable_for_a_command() {
    same_as_coreutils(&["FOO=1", "sh", "-c", "echo $FOO"]);
}

#[test]
fn empty_environment() {
    same_as_coreutils(&["-i", "PATH=/bin", "sh", "-c", "env"]);
}

#[test]
fn unsetting_a_variable() {
    same_as_coreutils(&["-u", "HOME", "printenv"]);
}

#[test]
fn bare_env_prints_the_environment() {
    same_as_coreutils(&[]);
}

#[test]
fn errors_and_exit_codes_match() {
    same_as_coreutils(&["--no-such-option"]);
    same_as_coreutils(&["no-such-program-anywhere"]);
    same_as_coreutils(&["sh", "-c", "exit 7"]);
}

#[test]
fn a_program_named_like_nothing_envkit_knows_runs() {
    same_as_coreutils(&["printf", "%s\\n", "check"]);
}

#[test]
fn envkit_is_skipped_when_it_appears_twice_on_path() {
    let (first, ours) = installed();
    let (second, _) = installed();
    let path_var = format!(
        "{}:{}:/usr/bin:/bin",
        first.path().display(),
        second.path().display()
    );
    let outcome = invoke(&ours, "env", &["FOO=2", "sh", "-c", "echo $FOO"], &path_var);
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    assert_eq!(outcome.stdout, "2\n");
}

#[test]
fn subcommands_are_still_envkits() {
    let (dir, ours) = installed();
    let path_var = format!("{}:/usr/bin:/bin", dir.path().display());
    let outcome = invoke(
        &ours,
        "env",
        &["check", "-f", "/nonexistent/env.kdl"],
        &path_var,
    );
    assert!(
        outcome
            .stderr
            .contains("cannot read `/nonexistent/env.kdl`"),
        "{}",
        outcome.stderr
    );
}
