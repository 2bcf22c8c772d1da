//! The commands on what envkit keeps rather than on one environment: `env images`, `env gc`,
//! `env volume ls|rm`.

use super::{Error, Project, Result, say};
use crate::build::gc::{GcError, Report, collect};
use crate::build::image::{BuildError, Image, list_images};
use crate::build::store::Store;
use crate::run::volumes::{self, VolumeError, VolumeInfo};

/// `env images`.
pub fn images() -> Result<Vec<Image>> {
    Ok(list_images(&Store::default_location()).map_err(BuildError::from)?)
}

/// `env gc [--dry-run]`.
pub fn gc(dry_run: bool) -> Result<Report> {
    crate::kernel::userns::enter()?;
    let store = Store::default_location();
    collect(&store, &crate::paths::cache_dir(), dry_run, &|| {
        say("waiting for a running `env build` or `env export` to finish")
    })
    .map_err(|error| match error {
        GcError::Store(error) => Error::Build(BuildError::Store(error)),
        GcError::Cache { path, source } => Error::io(
            format!("cannot clean `{}` in the download cache", path.display()),
            source,
        ),
    })
}

/// `env volume ls`: every volume of every project.
pub fn volumes() -> Result<Vec<VolumeInfo>> {
    crate::kernel::userns::enter()?;
    volumes::list(&crate::paths::volumes_dir()).map_err(volume_error)
}

/// `env volume rm NAME`: one of the project's volumes.
pub fn remove_volume(project: &Project, name: &str) -> Result<()> {
    crate::kernel::userns::enter()?;
    volumes::remove(
        &crate::paths::volumes_dir(),
        &project.spec().origin.dir,
        name,
    )
    .map_err(volume_error)
}

fn volume_error(error: VolumeError) -> Error {
    match error {
        VolumeError::Unknown { name, known } => {
            let hint = if known.is_empty() {
                "this project has no volumes yet".to_string()
            } else {
                format!("its volumes: {}", known.join(", "))
            };
            Error::user(format!("this project has no volume `{name}`"), Some(hint))
        }
        other => Error::Run(crate::run::RunError::Volume(other)),
    }
}
