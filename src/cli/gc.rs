//! `env gc`: delete the images, layers and downloads no known lock needs (see `build::gc`).

use clap::Parser;

use super::Failure;
use crate::build::gc::{GcError, Kind, collect};
use crate::build::image::BuildError;
use crate::build::store::Store;

#[derive(Debug, Parser)]
pub struct GcArgs {
    /// Print what would be deleted, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: &GcArgs) -> Result<(), Failure> {
    let store = Store::default_location();
    let report = collect(&store, &crate::paths::cache_dir(), args.dry_run, &|| {
        eprintln!("waiting for a running `env build` or `env export` to finish")
    })
    .map_err(|error| match error {
        GcError::Store(error) => Failure::Build(BuildError::Store(error)),
        GcError::Cache { path, source } => Failure::io(
            format!("cannot clean `{}` in the download cache", path.display()),
            source,
        ),
    })?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    for busy in &report.in_use {
        eprintln!("kept {busy}");
    }
    if args.dry_run {
        for removal in &report.removals {
            eprintln!(
                "would delete {}: {}",
                removal.what,
                crate::build::download::human_bytes(removal.bytes)
            );
        }
    } else {
        for removal in &report.removals {
            if matches!(removal.kind, Kind::Image | Kind::Layer) {
                eprintln!("deleted {}", removal.what);
            }
        }
    }
    match report.summary() {
        None => eprintln!("nothing to free"),
        Some(summary) if args.dry_run => eprintln!("would free {summary}"),
        Some(summary) => eprintln!("freed {summary}"),
    }
    Ok(())
}
