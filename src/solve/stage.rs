//! The stage's entry: a `Spec` and its `env.lock` -> an up-to-date `Lock`.

use std::path::{Path, PathBuf};

use super::locker::{self, Inputs, Update};
use super::lockfile::{Lock, LockFileError, Unsat};
use super::openpgp::{Keyring, OpenPgpError};
use super::repository::{Freshness, Repository, RepositoryError};
use super::resolve::ResolveError;
use crate::fetch::Fetcher;
use crate::mirror::{self, SourcesError};
use crate::spec::Spec;

/// The keyring Debian's archive is signed with, from the package debian-archive-keyring.
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error(transparent)]
    Sources(#[from] SourcesError),
    #[error("cannot load the keyring `{}`", path.display())]
    Keyring {
        path: PathBuf,
        #[source]
        source: OpenPgpError,
    },
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    #[error("cannot resolve the packages of `{file}`")]
    Resolve {
        /// The env file, as the user would type its path.
        file: String,
        #[source]
        source: ResolveError,
    },
    #[error("cannot read `{}`", path.display())]
    ReadLock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is damaged", path.display())]
    BadLock {
        path: PathBuf,
        #[source]
        source: LockFileError,
    },
    #[error("cannot write `{}`", path.display())]
    WriteLock {
        path: PathBuf,
        #[source]
        source: crate::fetch::FetchError,
    },
}

impl SolveError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            SolveError::Sources(error) => Some(error.hint()),
            SolveError::Keyring { .. } => Some("install the debian-archive-keyring package, or name a keyring with `mirror \"URL\" keyring=\"FILE\"`".into()),
            SolveError::BadLock { source, .. } => Some(source.hint().into()),
            SolveError::Repository(RepositoryError::Signature { .. }) => {
                Some("the mirror's index is not signed by a trusted key; check the mirror, or the `keyring=` of `mirror`".into())
            }
            SolveError::Repository(RepositoryError::Expired { .. }) => Some(
                "the mirror serves an index the archive has replaced since (it stopped syncing, or an attacker replays an old one); use another mirror with `mirror \"URL\"`, or check this machine's clock".into(),
            ),
            SolveError::Repository(RepositoryError::FromTheFuture { .. }) => Some(
                "this machine's clock is behind; set it right (an index from the future cannot be told from a forged one)".into(),
            ),
            _ => None,
        }
    }
}

/// Where the lock of an env file lives: beside it, `.lock` for `.kdl` (`env.kdl` -> `env.lock`).
pub fn lock_path(env_file: &Path) -> PathBuf {
    env_file.with_extension("lock")
}

/// A peer's lock: beside its own file, or for an inline peer `<file>.<peer>.lock` beside the
/// file holding it.
pub fn peer_lock_path(peer: &crate::spec::Peer) -> PathBuf {
    match &peer.file {
        Some(file) => lock_path(file),
        None => peer
            .spec
            .origin
            .file
            .with_extension(format!("{}.lock", peer.name)),
    }
}

/// Reads the lock beside the env file, if there is one.
pub fn read_lock(path: &Path) -> Result<Option<Lock>, SolveError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Lock::parse(&text)
            .map(Some)
            .map_err(|source| SolveError::BadLock {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SolveError::ReadLock {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// What the spec asks of the solver on this machine.
pub fn inputs(spec: &Spec) -> Inputs {
    Inputs {
        release: spec.base.release().unwrap_or_default().to_string(),
        architecture: crate::paths::debian_architecture().to_string(),
        packages: spec.packages.clone(),
        recommends: spec.recommends,
        installed: None,
    }
}

/// Whether `lock` still fits `spec`.
pub fn check(spec: &Spec, lock: &Lock) -> Result<(), Vec<Unsat>> {
    let inputs = inputs(spec);
    let image = match &spec.base {
        crate::spec::Base::Image { reference } => Some(reference.as_str()),
        crate::spec::Base::Debian { .. } => None,
    };
    lock.satisfies(
        image,
        &inputs.release,
        &inputs.architecture,
        &inputs.packages,
        inputs.recommends,
    )
}

/// Resolves the spec afresh (keeping `previous`'s pins where `update` allows).
pub fn solve(
    spec: &Spec,
    previous: Option<&Lock>,
    update: &Update,
    freshness: Freshness,
) -> Result<Lock, SolveError> {
    solve_inputs(spec, &inputs(spec), previous, update, freshness)
}

/// Resolves the spec's packages on an image that has `status` (its dpkg database) and is
/// of `release` (from its `/etc/os-release`).
pub fn solve_on_image(
    spec: &Spec,
    release: &str,
    status: String,
    previous: Option<&Lock>,
    update: &Update,
    freshness: Freshness,
) -> Result<Lock, SolveError> {
    let inputs = Inputs {
        release: release.to_string(),
        installed: Some(status),
        ..inputs(spec)
    };
    solve_inputs(spec, &inputs, previous, update, freshness)
}

fn solve_inputs(
    spec: &Spec,
    inputs: &Inputs,
    previous: Option<&Lock>,
    update: &Update,
    freshness: Freshness,
) -> Result<Lock, SolveError> {
    let mirrors = mirror::for_spec(spec)?;
    let keyring_path = spec
        .mirror
        .as_ref()
        .and_then(|m| m.keyring_path.clone())
        .unwrap_or_else(|| PathBuf::from(DEBIAN_KEYRING));
    let keyring = Keyring::load(&keyring_path).map_err(|source| SolveError::Keyring {
        path: keyring_path.clone(),
        source,
    })?;
    let cache_dir = crate::paths::cache_dir();
    let fetcher = Fetcher::new();
    let repository = Repository {
        mirrors: &mirrors,
        keyring: &keyring,
        cache_dir: &cache_dir,
        fetcher: &fetcher,
    };
    let mut release = repository.load(&inputs.release, &inputs.architecture, freshness)?;
    locker::lock(
        &mut release.index,
        release.indexes,
        inputs,
        previous,
        update,
    )
    .map_err(|source| SolveError::Resolve {
        file: crate::spec::display_name(&spec.origin.file),
        source,
    })
}

/// Writes the lock if its text changed; returns whether it did.
pub fn write_lock(path: &Path, lock: &Lock) -> Result<bool, SolveError> {
    let text = lock.render();
    if std::fs::read_to_string(path).is_ok_and(|existing| existing == text) {
        return Ok(false);
    }
    crate::fetch::write_bytes_atomically(path, text.as_bytes()).map_err(|source| {
        SolveError::WriteLock {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(true)
}
