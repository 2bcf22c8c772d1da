//! `env export`: the current project's image as an OCI or Docker archive, or the project as
//! Kubernetes manifests or a Compose file.

use std::path::{Path, PathBuf};

use clap::Parser;

use super::{Failure, Locking, project};
use crate::build::archive::ArchiveFormat;
use crate::build::download::human_bytes;
use crate::ops::{self, export::Destination};

#[derive(Debug, Parser)]
pub struct ExportArgs {
    /// Where to write the archive or the description (`-` for stdout).
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// `oci`: an OCI image layout (podman load, skopeo); `docker`: what `docker save` writes
    /// (docker load, podman load).
    #[arg(long, value_enum, default_value = "oci")]
    format: Format,
    /// Instead of an archive: Kubernetes manifests of the project and its peers (a Deployment
    /// each, a Service per peer, a PersistentVolumeClaim per volume), naming the images
    /// `env push` sent, or a registry image env.kdl adds nothing to as published (default
    /// file: NAME.k8s.yaml).
    #[arg(long, conflicts_with_all = ["format", "compose"])]
    kubernetes: bool,
    /// Instead of an archive: a Compose file of the project and its peers, naming the images
    /// `env push` sent, or a registry image env.kdl adds nothing to as published (default
    /// file: compose.yaml).
    #[arg(long, conflicts_with = "format")]
    compose: bool,
    #[command(flatten)]
    locking: Locking,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Oci,
    Docker,
}

pub fn run(args: &ExportArgs, file: Option<&Path>) -> Result<(), Failure> {
    let target = match (args.kubernetes, args.compose) {
        (true, _) => Some(ops::deploy::Target::Kubernetes),
        (_, true) => Some(ops::deploy::Target::Compose),
        _ => None,
    };
    if let Some(target) = target {
        let described = ops::deploy::describe(
            &project(file)?,
            target,
            args.output.as_deref(),
            args.locking.mode(),
        )?;
        eprintln!(
            "described {} for {} in {}",
            described.workloads.join(", "),
            match target {
                ops::deploy::Target::Kubernetes => "Kubernetes",
                ops::deploy::Target::Compose => "Compose",
            },
            described.shown
        );
        return Ok(());
    }
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
