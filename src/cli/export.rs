//! `env export`: the current project's image as an OCI archive.

use std::path::{Path, PathBuf};

use clap::Parser;

use super::{Failure, Locking, project};
use crate::build::download::human_bytes;
use crate::ops::{self, export::Destination};

#[derive(Debug, Parser)]
pub struct ExportArgs {
    /// Where to write the archive (`-` for stdout).
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    #[command(flatten)]
    locking: Locking,
}

pub fn run(args: &ExportArgs, file: Option<&Path>) -> Result<(), Failure> {
    let to = match args.output.as_deref() {
        Some(path) if path == Path::new("-") => Destination::Stdout,
        other => Destination::Path(other),
    };
    let exported = ops::export::export(&project(file)?, to, args.locking.mode())?;
    eprintln!(
        "exported {} to {} ({}, manifest {})",
        exported.image,
        exported.shown,
        human_bytes(exported.bytes),
        exported.manifest_digest
    );
    Ok(())
}
