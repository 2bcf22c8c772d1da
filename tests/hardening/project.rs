//! A project of the hardening tests: its folder with an env.kdl, and envkit's store, data and
//! runtime folders of its own (or shared with other projects), with a download cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Outcome, envkit, run};

pub struct Project {
    pub dir: tempfile::TempDir,
    /// Kept for the project's life: the state folder when it is its own.
    _state: tempfile::TempDir,
    /// Where the store, data and runtime folders are (the state folder, or one shared).
    state_dir: PathBuf,
    cache: PathBuf,
}

impl Project {
    /// Every folder its own and empty, the download cache included (for tests of downloads).
    pub fn alone(env: &str) -> Project {
        let state = tempfile::tempdir().unwrap();
        let cache = state.path().join("cache");
        Project::with(env, state, None, cache)
    }

    /// Its own empty store, with the download cache other tests share (nothing of such a test
    /// is about downloads).
    pub fn sharing_downloads(env: &str) -> Project {
        Project::sharing_state(env, None)
    }

    /// With `state`, the store, data and runtime folders of several projects at once; the
    /// download cache is the shared one.
    pub fn sharing_state(env: &str, state: Option<&Path>) -> Project {
        // On a fresh machine this suite runs first, before anything filled the shared cache.
        std::fs::create_dir_all(crate::shared_cache()).unwrap();
        Project::with(
            env,
            tempfile::tempdir().unwrap(),
            state,
            crate::shared_cache(),
        )
    }

    fn with(env: &str, state: tempfile::TempDir, shared: Option<&Path>, cache: PathBuf) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("env.kdl"), env).unwrap();
        let state_dir = shared.map_or_else(|| state.path().to_path_buf(), Path::to_path_buf);
        Project {
            dir,
            _state: state,
            state_dir,
            cache,
        }
    }

    /// The download cache it uses.
    pub fn cache(&self) -> &Path {
        &self.cache
    }

    /// The folder holding `store/`, `data/` and `run/`.
    pub fn state(&self) -> &Path {
        &self.state_dir
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = envkit(self.dir.path(), args);
        command
            .env("ENVKIT_CACHE_DIR", &self.cache)
            .env("ENVKIT_STORE_DIR", self.state_dir.join("store"))
            .env("ENVKIT_DATA_DIR", self.state_dir.join("data"))
            .env("ENVKIT_RUNTIME_DIR", self.state_dir.join("run"));
        command
    }

    pub fn env(&self, args: &[&str]) -> Outcome {
        run(&mut self.command(args))
    }
}

/// Nothing half-made under a real name: every layer folder of `store` is a finished layer.
pub fn assert_only_finished_layers(store: &Path, after: &str) {
    for entry in std::fs::read_dir(store.join("layers-v1"))
        .into_iter()
        .flatten()
        .flatten()
    {
        assert!(
            entry.path().join("layer.json").is_file(),
            "after {after}: {} is not a finished layer",
            entry.path().display()
        );
    }
}

/// What `env gc --dry-run` would delete.
pub fn stray(project: &Project) -> Vec<String> {
    let gc = project.env(&["gc", "--dry-run"]);
    assert_eq!(gc.code, Some(0), "{}", gc.transcript());
    gc.stderr
        .lines()
        .filter(|line| line.starts_with("would delete"))
        .map(str::to_string)
        .collect()
}
