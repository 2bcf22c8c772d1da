//! What every image archive shares: what goes in ([`Archive`]), what came out
//! ([`Exported`]), what can go wrong ([`ExportError`]) and the tar members written alike in
//! every format (owner 0:0, modes 0755 and 0644, the lock's SOURCE_DATE_EPOCH as time).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::image::Image;
use super::layer_tar::LayerTarError;
use super::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the record of `{image}` does not match its layers")]
    Record { image: String },
    #[error("cannot export the {layer} layer")]
    Layer {
        layer: String,
        #[source]
        source: LayerTarError,
    },
    #[error(
        "the {layer} layer changed since it was built: recorded {recorded}, its tree gives {actual}"
    )]
    Changed {
        layer: String,
        recorded: String,
        actual: String,
    },
    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ExportError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ExportError::Record { .. } => {
                Some("run `env build` to record the image again, then export it".into())
            }
            ExportError::Changed { .. } => Some(
                "the store was modified outside envkit; `env verify` lists the changed layers"
                    .into(),
            ),
            _ => None,
        }
    }
}

pub fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// `sha256:<hex>` of an OCI archive's manifest, or of a Docker archive's config (the image
    /// ID `docker images` shows).
    pub digest: String,
    /// Bytes of the archive.
    pub bytes: u64,
}

/// Which kind of archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// An OCI image layout (`podman load`, `skopeo copy oci-archive:`).
    #[default]
    Oci,
    /// What `docker save` writes and `docker load` reads.
    Docker,
}

/// What goes into an archive.
#[derive(Debug, Clone, Copy)]
pub struct Archive<'a> {
    pub image: &'a Image,
    /// The config the archive carries: [`super::image::oci_config_with`] of the image's
    /// layers and what its env file says it runs.
    pub config: &'a [u8],
    pub format: ArchiveFormat,
    /// The lock's SOURCE_DATE_EPOCH: every layer's tar depends on it, and the archive's members
    /// carry it as their time.
    pub clamp_mtime: u64,
}

pub fn header(
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    size: u64,
    mtime: u64,
) -> std::io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_cksum();
    Ok(header)
}

pub fn append_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    mtime: u64,
) -> std::io::Result<()> {
    let header = header(path, tar::EntryType::Directory, 0o755, 0, mtime)?;
    tar.append(&header, std::io::empty())
}

pub fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl std::io::Read,
    mtime: u64,
) -> std::io::Result<()> {
    let header = header(path, tar::EntryType::Regular, 0o644, size, mtime)?;
    tar.append(&header, data)
}
