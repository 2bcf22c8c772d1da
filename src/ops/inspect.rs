//! `env inspect`: what envkit knows about a project: its spec, its lock, and its image when the
//! store has it.

use super::{Project, Result};
use crate::build::image::{BuildError, Image};
use crate::build::store::Store;
use crate::solve::lockfile::Lock;
use crate::solve::stage::read_lock;

pub struct Inspection {
    /// The spec's canonical hash.
    pub hash: String,
    pub lock: Option<Lock>,
    /// The image of the spec and its lock, when built.
    pub image: Option<Image>,
}

pub fn inspect(project: &Project, with_image: bool) -> Result<Inspection> {
    let spec = project.spec();
    let lock = read_lock(&project.lock_path())?;
    let image = match &lock {
        Some(lock) if with_image => built_image(project, lock)?,
        _ => None,
    };
    Ok(Inspection {
        hash: crate::spec::spec_hash(spec),
        lock,
        image,
    })
}

/// The image `env build` made from this spec and lock, if the store has it.
fn built_image(project: &Project, lock: &Lock) -> Result<Option<Image>> {
    let spec = project.spec();
    // Without a mirror or with a setup input that no longer matches, no image of these
    // inputs can exist: that is "not built", not an error of `inspect`.
    let Ok(context) = super::image::ImageContext::new(spec, lock) else {
        return Ok(None);
    };
    match context.existing_image(spec, lock, &Store::default_location()) {
        Ok((_, image)) => Ok(image),
        Err(BuildError::Plan(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}
