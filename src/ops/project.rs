//! The project a command works on: its env file, found and loaded.

use std::path::{Path, PathBuf};

use super::{Error, Result};
use crate::spec::{Loaded, Spec, SpecDiagnostic};

/// A loaded env file (with its peers), completed with what the registry images it starts
/// from declare (ports, volumes) once they are pulled.
pub struct Project {
    pub loaded: Loaded,
}

impl Project {
    /// Finds and loads the env file: `file` when given, else `env.kdl` in the current folder
    /// or a parent.
    pub fn load(file: Option<&Path>) -> Result<Project> {
        let path = match file {
            Some(path) => path.to_path_buf(),
            None => crate::spec::discover(&current_dir()?)?,
        };
        let mut loaded = crate::spec::load(&path)?;
        if super::base_image::starts_from_an_image(&loaded.spec) {
            loaded.spec = super::base_image::with_image_declarations(&loaded.spec);
        }
        Ok(Project { loaded })
    }

    pub fn spec(&self) -> &Spec {
        &self.loaded.spec
    }

    /// What the env file says that is allowed but probably not meant.
    pub fn warnings(&self) -> &[SpecDiagnostic] {
        &self.loaded.warnings
    }

    /// The project's peers, kept in the runtime folder (read it after entering envkit's user
    /// namespace, whose invoker it depends on).
    pub fn peers(&self) -> crate::run::peers::ProjectPeers<'_> {
        crate::run::peers::ProjectPeers::new(self.spec(), crate::paths::runtime_dir())
    }

    /// The lock beside the env file.
    pub fn lock_path(&self) -> PathBuf {
        crate::solve::stage::lock_path(&self.spec().origin.file)
    }
}

pub fn current_dir() -> Result<PathBuf> {
    std::env::current_dir().map_err(|e| Error::io("cannot read the current folder", e))
}
