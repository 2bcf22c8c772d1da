//! `env export`: the current project's image as an OCI archive.

use std::path::{Path, PathBuf};

use clap::Parser;

use super::{Failure, Locking, project};
use crate::build::archive::ArchiveFormat;
use crate::build::download::human_bytes;
use crate::ops::{self, export::Destination};

#[derive(Debug, Parser)]
pub struct ExportArgs {
    /// Where to write the archive (`-` for stdout).
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// `oci`: an OCI image layout (podman load, skopeo); `docker`: what `docker save` writes
    /// (docker load, podman load).
    #[arg(long, value_enum, default_value = "oci")]
    format: Format,
    #[command(flatten)]
    locking: Locking,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Oci,
    Docker,
}

pub fn run(args: &ExportArgs, file: Option<&Path>) -> Result<(), Failure> {
    let to = match args.output.as_deref() {
        Some(path) if path == Path::new("-") => Destination::Stdout,
        other => Destination::Path(other),
    };
    let (format, digest_is) = match args.format {
        Format::Oci => (ArchiveFormat::Oci, "manifest"),
        Format::Docker => (ArchiveFormat::Docker, "image id"),
    };
    let exported = ops::export::export(&project(file)?, to, format, args.locking.mode())?;
    eprintln!(
        "exported {} to {} ({}, {digest_is} {})",
        exported.image,
        exported.shown,
        human_bytes(exported.bytes),
        exported.digest
    );
    Ok(())
}
