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

/// Whether `ENVKIT_MUST_WORK=1` forbids skipping (CI sets it).
pub fn must_work() -> bool {
    std::env::var("ENVKIT_MUST_WORK").is_ok_and(|v| v == "1")
}

/// Whether a test that needs the host's Debian mirror can run: it can when the mirror answers;
/// otherwise the test is skipped with a printed reason, unless `ENVKIT_MUST_WORK=1`.
pub fn network_tier(what: &str) -> bool {
    let mirrors = envkit::mirror::host_mirrors(Path::new("/etc/apt"));
    let reachable = mirrors
        .as_ref()
        .ok()
        .and_then(|m| host_and_port(&m.archive))
        .is_some_and(|address| {
            use std::net::ToSocketAddrs;
            address
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(|a| {
                    std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5))
                        .is_ok()
                })
        });
    if reachable {
        return true;
    }
    let reason =
        format!("{what} needs the Debian mirror of the host's apt sources, which is not reachable");
    assert!(!must_work(), "ENVKIT_MUST_WORK=1 but {reason}");
    eprintln!("skipped: {reason}");
    false
}

fn host_and_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let default_port = if scheme == "https" { 443 } else { 80 };
    Some(if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    })
}

/// `env check -f FILE` succeeds without warnings.
pub fn assert_checks_cleanly(file: &Path) {
    let outcome = run(&mut envkit(
        &repo_root(),
        &["check", "-f", file.to_str().unwrap()],
    ));
    assert_eq!(
        outcome.code,
        Some(0),
        "{}: {}",
        file.display(),
        outcome.transcript()
    );
    assert!(
        !outcome.stderr.contains("warning"),
        "{}: {}",
        file.display(),
        outcome.stderr
    );
}
