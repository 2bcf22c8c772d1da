//! Handing command lines that are not envkit's to the system `env`.
//!
//! The binary is installed as `env`, often first on PATH, so `env FOO=1 cmd`, `env -i ...` and
//! shebangs such as `#!/usr/bin/env python3` must keep working exactly as with coreutils. Any
//! first argument that is not one of envkit's subcommands (or `--help`/`--version`) means the
//! whole command line belongs to the system `env`: we exec it, keeping argv[0] so its messages
//! read the same.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the system `env` lives when PATH has no other.
const FALLBACK_ENV: &str = "/usr/bin/env";

/// Whether a command line whose first argument is `first` is for envkit.
pub fn is_envkit_invocation(first: Option<&OsStr>, subcommands: &[String]) -> bool {
    let Some(first) = first.and_then(OsStr::to_str) else {
        return false;
    };
    matches!(first, "--help" | "-h" | "--version" | "-V") || subcommands.iter().any(|s| s == first)
}

/// Replaces this process with the system `env`, passing `argv` (including argv[0]) unchanged.
/// Returns only when the exec failed.
pub fn exec_system_env(argv: Vec<OsString>) -> std::io::Error {
    let mut argv = argv.into_iter();
    let argv0 = argv.next().unwrap_or_else(|| OsString::from("env"));
    let program = find_system_env(std::env::var_os("PATH").as_deref());
    Command::new(&program).arg0(argv0).args(argv).exec()
}

/// The first `env` on PATH after this binary's own entry that is not this binary.
fn find_system_env(path: Option<&OsStr>) -> PathBuf {
    let me = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.canonicalize().ok());
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    let is_me = |candidate: &Path| {
        me.as_deref()
            .is_some_and(|me| candidate.canonicalize().is_ok_and(|c| c == me))
    };
    // Start after our own PATH entry, so a wrapper placed before us is never called back.
    let start = dirs
        .iter()
        .position(|dir| is_me(&dir.join("env")))
        .map_or(0, |i| i + 1);
    dirs[start..]
        .iter()
        .map(|dir| dir.join("env"))
        .find(|candidate| !is_me(candidate) && is_executable(candidate))
        .unwrap_or_else(|| PathBuf::from(FALLBACK_ENV))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_envkit_words_are_envkit_invocations() {
        let subcommands = vec!["check".to_string(), "run".to_string()];
        let yes = |s: &str| is_envkit_invocation(Some(OsStr::new(s)), &subcommands);
        assert!(yes("check"));
        assert!(yes("--help"));
        assert!(yes("--version"));
        assert!(!yes("-i"));
        assert!(!yes("FOO=1"));
        assert!(!yes("python3"));
        assert!(!yes("-u"));
        assert!(!is_envkit_invocation(None, &subcommands));
    }

    #[test]
    fn finds_a_real_env_when_path_is_empty() {
        assert_eq!(find_system_env(None), PathBuf::from(FALLBACK_ENV));
    }
}
