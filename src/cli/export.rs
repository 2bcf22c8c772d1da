//! `env export`: the current project's image as an OCI archive (see `build::export`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use super::{Failure, load_spec};
use crate::build::download::human_bytes;
use crate::build::export::{ExportError, archive_name, export_to_file, write_archive};
use crate::build::gc::StoreUse;
use crate::build::image::BuildError;
use crate::build::store::Store;

pub fn run(output: Option<&Path>, file: Option<&Path>) -> Result<(), Failure> {
    let loaded = load_spec(file)?;
    let spec = &loaded.spec;
    let lock = super::lock::current_lock(spec)?;
    let store = Store::default_location();
    // `env gc` waits until the image is read.
    let _in_use = StoreUse::acquire(&store, &|| eprintln!("waiting for `env gc` to finish"))
        .map_err(BuildError::from)?;
    let (name, image) =
        super::build::ImageContext::new(spec)?.existing_image(spec, &lock, &store)?;
    let Some(image) = image else {
        return Err(Failure::user(
            format!("`{name}` is not built"),
            Some("run `env build` first, then `env export`".into()),
        ));
    };
    let clamp = crate::build::base::source_date_epoch(&lock);
    let (shown, exported) = if output == Some(Path::new("-")) {
        let stdout = std::io::stdout();
        if stdout.is_terminal() {
            return Err(Failure::user(
                "refusing to write an image archive to a terminal",
                Some(
                    "redirect the output (`env export -o - > image.tar`), or name a file with `-o`"
                        .into(),
                ),
            ));
        }
        let exported = write_archive(
            &store,
            &image,
            clamp,
            &std::env::temp_dir(),
            stdout.lock(),
            Path::new("stdout"),
        )
        .map_err(failure)?;
        ("stdout".to_string(), exported)
    } else {
        let path: PathBuf = match output {
            Some(path) if path.is_dir() => path.join(archive_name(&image)),
            Some(path) => path.to_path_buf(),
            None => std::env::current_dir()
                .map_err(|e| Failure::io("cannot read the current folder", e))?
                .join(archive_name(&image)),
        };
        let exported = export_to_file(&store, &image, clamp, &path).map_err(failure)?;
        (crate::spec::display_name(&path), exported)
    };
    eprintln!(
        "exported {name} to {shown} ({}, manifest {})",
        human_bytes(exported.bytes),
        exported.manifest_digest
    );
    Ok(())
}

/// The CLI's form of an export failure.
fn failure(error: ExportError) -> Failure {
    let hint = error.hint();
    match error {
        ExportError::Store(error) => Failure::Build(BuildError::Store(error)),
        ExportError::Write { path, source } => Failure::io(
            format!("cannot write `{}`", crate::spec::display_name(&path)),
            source,
        ),
        ExportError::Layer { .. } => {
            let message = error.to_string();
            let ExportError::Layer { source, .. } = error else {
                return Failure::user(message, hint);
            };
            Failure::io(message, std::io::Error::other(source))
        }
        // The same words and hint as `env verify` for a changed layer.
        ExportError::Changed { .. } => Failure::Stale {
            message: error.to_string(),
            reasons: Vec::new(),
        },
        ExportError::Record { .. } => Failure::user(error.to_string(), hint),
    }
}
