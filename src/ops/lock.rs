//! `env lock`, and the lock every later command starts from: brought up to date from cached
//! indexes when the env file changed, or refused as stale with `--locked`.

use std::path::Path;

use super::{Error, Project, Result, say};
use crate::solve::locker::{Update, changes};
use crate::solve::lockfile::Lock;
use crate::solve::repository::Freshness;
use crate::solve::stage::{check, read_lock, solve, write_lock};
use crate::spec::{Base, Spec, display_name};

/// Resolves `spec` afresh: a Debian release through the solver, an image through its
/// registry (keeping `previous`'s pin unless `update` moves it, as packages keep theirs).
fn resolve(
    spec: &Spec,
    previous: Option<&Lock>,
    update: &Update,
    freshness: Freshness,
) -> Result<Lock> {
    match &spec.base {
        Base::Debian { .. } => Ok(solve(spec, previous, update, freshness)?),
        Base::Image { reference } => {
            super::base_image::lock(spec, reference, previous, update, freshness)
        }
    }
}

/// What a command may do with a lock that is missing or no longer matches its env file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockMode {
    /// Resolve again (from cached indexes) and write it: a developer's `env run`.
    #[default]
    Update,
    /// Refuse, saying why: CI, where the committed lock is what must be built.
    Locked,
}

/// What `env lock` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct LockRequest {
    /// Only say whether the lock matches (`--check`).
    pub check: bool,
    /// `--update`: `None` moves nothing, an empty list everything, else these packages.
    pub update: Option<Vec<String>>,
    /// Resolve again from fresh indexes even when the lock matches.
    pub refresh: bool,
}

/// What `env lock` did.
pub enum LockOutcome {
    /// `--check`: the lock matches.
    Matches { lock_file: String },
    /// The lock matched and nothing was asked to move.
    UpToDate { lock_file: String, lock: Lock },
    /// Resolved (and written unless the same bytes were there).
    Locked {
        lock_file: String,
        lock: Lock,
        written: bool,
        /// What changed against the previous lock, one line each (none for a first lock).
        changes: Vec<String>,
    },
}

fn stale(message: String, reasons: Vec<String>) -> Error {
    Error::Stale {
        message,
        reasons,
        hint: Some("run `env lock` to update it, and commit the result".into()),
    }
}

/// `env lock [--check] [--update [PKG...]] [--refresh]`.
pub fn lock(project: &Project, request: &LockRequest) -> Result<LockOutcome> {
    // Locking needs no subordinate ids; it joins the namespace only where building can, so
    // the cache is written by the same ids either way.
    crate::kernel::userns::enter_if_possible();
    let spec = project.spec();
    let path = project.lock_path();
    let shown = display_name(&path);
    let previous = read_lock(&path)?;
    if request.check {
        return match &previous {
            None => Err(stale(format!("there is no `{shown}`"), Vec::new())),
            Some(lock) => {
                match check(spec, lock) {
                    Ok(()) => match &lock.image {
                        // The tag may have moved since: only the registry can say.
                        Some(image) => {
                            let now = super::base_image::current_digest(&image.reference)?;
                            if now == image.digest {
                                Ok(LockOutcome::Matches { lock_file: shown })
                            } else {
                                Err(stale(
                                format!(
                                    "`{shown}` pins {} at {}, and the registry now gives {now}",
                                    image.reference, image.digest
                                ),
                                vec!["the tag was moved; `env lock --update` moves the lock to it".into()],
                            ))
                            }
                        }
                        None => Ok(LockOutcome::Matches { lock_file: shown }),
                    },
                    Err(reasons) => Err(stale(
                        format!(
                            "`{shown}` does not match {}",
                            display_name(&spec.origin.file)
                        ),
                        reasons.iter().map(ToString::to_string).collect(),
                    )),
                }
            }
        };
    }
    let update = match &request.update {
        None => Update::Nothing,
        Some(names) if names.is_empty() => Update::Everything,
        Some(names) => {
            let locked: Vec<&str> = previous
                .as_ref()
                .map(|l| l.packages.iter().map(|p| p.name.as_str()).collect())
                .unwrap_or_default();
            if let Some(unknown) = names.iter().find(|n| !locked.contains(&n.as_str())) {
                return Err(Error::user(
                    format!("`{unknown}` is not in `{shown}`"),
                    Some(
                        "`--update` moves packages already locked; add new ones to `packages` in env.kdl"
                            .into(),
                    ),
                ));
            }
            Update::Only(names.clone())
        }
    };
    if let (Update::Nothing, false, Some(lock)) = (&update, request.refresh, &previous)
        && check(spec, lock).is_ok()
    {
        return Ok(LockOutcome::UpToDate {
            lock_file: shown,
            lock: lock.clone(),
        });
    }
    let lock = resolve(spec, previous.as_ref(), &update, Freshness::Refresh)?;
    let written = write_lock(&path, &lock)?;
    let changes = match &previous {
        Some(_) => changes(previous.as_ref(), &lock),
        None => Vec::new(),
    };
    Ok(LockOutcome::Locked {
        lock_file: shown,
        lock,
        written,
        changes,
    })
}

/// The env file's lock as a build needs it: read, or (when missing or no longer matching)
/// resolved again from cached indexes and written, unless `mode` forbids it.
pub fn current_lock(spec: &Spec, mode: LockMode) -> Result<Lock> {
    current_lock_at(
        spec,
        &crate::solve::stage::lock_path(&spec.origin.file),
        mode,
    )
}

/// [`current_lock`] for a lock kept elsewhere (an inline peer's, beside its env file).
pub fn current_lock_at(spec: &Spec, path: &Path, mode: LockMode) -> Result<Lock> {
    let shown = display_name(path);
    let previous = read_lock(path)?;
    let reasons = match &previous {
        Some(lock) => match check(spec, lock) {
            Ok(()) => return Ok(lock.clone()),
            Err(reasons) => reasons.iter().map(ToString::to_string).collect(),
        },
        None => Vec::new(),
    };
    if mode == LockMode::Locked {
        let message = match previous {
            None => format!("there is no `{shown}`, and `--locked` forbids making one"),
            Some(_) => format!(
                "`{shown}` does not match {}, and `--locked` forbids updating it",
                display_name(&spec.origin.file)
            ),
        };
        return Err(stale(message, reasons));
    }
    let lock = resolve(spec, previous.as_ref(), &Update::Nothing, Freshness::Cached)?;
    write_lock(path, &lock)?;
    match &lock.image {
        Some(image) => say(&format!(
            "locked {shown}: image {} at {}",
            image.reference, image.digest
        )),
        None => say(&format!(
            "locked {shown}: {} packages from {}",
            lock.packages.len(),
            lock.release
        )),
    }
    Ok(lock)
}
