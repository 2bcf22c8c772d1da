//! What every end-to-end test needs: the binary, a scratch folder, and captured output.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `env` binary built for this test run.
pub fn env_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_env"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `env ARGS...` in `dir`, with a plain environment so output is the same on every machine.
pub fn envkit(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env_binary());
    command.args(args).current_dir(dir).env_clear();
    command.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command.env("NO_COLOR", "1");
    command.env("HOME", dir);
    command
}

/// What a finished command did.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Exit code, stdout and stderr in one text, for snapshots.
    pub fn transcript(&self) -> String {
        format!(
            "exit code: {}\n----- stdout -----\n{}----- stderr -----\n{}",
            self.code
                .map_or_else(|| "signal".to_string(), |c| c.to_string()),
            self.stdout,
            self.stderr
        )
    }
}

pub fn run(command: &mut Command) -> Outcome {
    let output = command.output().expect("the command starts");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Copies a fixture folder (recursively) into a fresh temporary folder.
pub fn copy_fixture(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_tree(from, dir.path());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("fixture folder") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
