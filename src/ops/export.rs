//! `env export`: the project's image, already built, as an OCI archive (see `build::export`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use super::{Error, LockMode, Project, Result, say};
use crate::build::archive::{Archive, ArchiveFormat, ExportError};
use crate::build::export::{archive_name, export_to_file, write_archive};
use crate::build::gc::StoreUse;
use crate::build::image::BuildError;
use crate::build::image::oci_config_with;
use crate::build::store::Store;

/// Where the archive goes.
pub enum Destination<'a> {
    /// `-o -`.
    Stdout,
    /// A file, or a folder to put it in under its own name; `None` is the current folder.
    Path(Option<&'a Path>),
}

/// What was written.
pub struct Exported {
    pub image: String,
    /// The file's name as the user would write it, or `stdout`.
    pub shown: String,
    pub bytes: u64,
    /// The OCI manifest's digest, or the Docker image ID.
    pub digest: String,
}

pub fn export(
    project: &Project,
    to: Destination<'_>,
    format: ArchiveFormat,
    mode: LockMode,
) -> Result<Exported> {
    crate::kernel::userns::enter()?;
    let spec = project.spec();
    let lock = super::lock::current_lock(spec, mode)?;
    let store = Store::default_location();
    // `env gc` waits until the image is read.
    let _in_use = StoreUse::acquire(&store, &|| say("waiting for `env gc` to finish"))
        .map_err(BuildError::from)?;
    let (name, image) =
        super::image::ImageContext::new(spec, &lock)?.existing_image(spec, &lock, &store)?;
    let Some(image) = image else {
        return Err(super::image::not_built(
            &name,
            "run `env build` first, then `env export`",
        ));
    };
    let clamp = crate::build::base::source_date_epoch(&lock);
    let config = oci_config_with(
        &image.architecture,
        &image.layers,
        &super::image::image_config(spec, &lock, image.base_config.as_ref()),
    );
    let archive = Archive {
        image: &image,
        config: &config,
        format,
        clamp_mtime: clamp,
    };
    let (shown, exported) = match to {
        Destination::Stdout => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                return Err(Error::user(
                    "refusing to write an image archive to a terminal",
                    Some(
                        "redirect the output (`env export -o - > image.tar`), or name a file with `-o`"
                            .into(),
                    ),
                ));
            }
            let exported = write_archive(
                &store,
                &archive,
                &std::env::temp_dir(),
                stdout.lock(),
                Path::new("stdout"),
            )
            .map_err(export_error)?;
            ("stdout".to_string(), exported)
        }
        Destination::Path(output) => {
            let path: PathBuf = match output {
                Some(path) if path.is_dir() => path.join(archive_name(&image, format)),
                Some(path) => path.to_path_buf(),
                None => super::project::current_dir()?.join(archive_name(&image, format)),
            };
            let exported = export_to_file(&store, &archive, &path).map_err(export_error)?;
            (crate::spec::display_name(&path), exported)
        }
    };
    Ok(Exported {
        image: name,
        shown,
        bytes: exported.bytes,
        digest: exported.digest,
    })
}

pub(super) fn export_error(error: ExportError) -> Error {
    let hint = error.hint();
    match error {
        ExportError::Store(error) => Error::Build(BuildError::Store(error)),
        ExportError::Write { path, source } => Error::io(
            format!("cannot write `{}`", crate::spec::display_name(&path)),
            source,
        ),
        ExportError::Layer { .. } => {
            let message = error.to_string();
            let ExportError::Layer { source, .. } = error else {
                return Error::user(message, hint);
            };
            Error::io(message, std::io::Error::other(source))
        }
        // The same words and hint as `env verify` for a changed layer.
        ExportError::Changed { .. } => Error::Stale {
            message: error.to_string(),
            reasons: Vec::new(),
            hint: Some(super::verify::changed_layers_hint()),
        },
        ExportError::Record { .. } => Error::user(error.to_string(), hint),
    }
}
