//! `env export --format docker`: an image as `docker save` writes it, for `docker load` and
//! `podman load` (the tests load it into podman and run it).
//!
//! ```text
//! <diff_id hex>/layer.tar   each layer's canonical tar, uncompressed, so its name is its diff_id
//! <config hex>.json         the config; its digest is the image ID docker shows
//! manifest.json             [{"Config", "RepoTags": ["NAME:TAG"], "Layers"}]
//! ```
//! Each layer's tar is written again from its tree straight into the archive (its size is
//! known from the record) and must give its recorded diff_id; a changed tree stops the export.
//! Members are ustar, owner 0:0, at the lock's SOURCE_DATE_EPOCH, in the order above, so the
//! same image gives the same bytes.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::archive::{
    Archive, ExportError, Exported, append_dir, append_file, header, write_error,
};
use super::layer_tar::{TarOptions, write_layer_tar};
use super::store::Store;

/// Writes `archive` (its format is Docker's) to `out`.
pub fn write(
    store: &Store,
    archive: &Archive<'_>,
    out: impl Write,
    shown: &Path,
) -> Result<Exported, ExportError> {
    let image = archive.image;
    let mtime = archive.clamp_mtime;
    let config_hex = crate::fetch::sha256_hex(archive.config);
    let mut layer_names = Vec::new();
    let mut tar = tar::Builder::new(Counting {
        inner: out,
        size: 0,
    });
    let mut written = std::collections::BTreeSet::new();
    for layer in &image.layers {
        let hex = layer.diff_id.trim_start_matches("sha256:").to_string();
        let name = format!("{hex}/layer.tar");
        layer_names.push(name.clone());
        // Two empty setup layers have one tar; `docker load` wants each file once.
        if !written.insert(hex.clone()) {
            continue;
        }
        append_dir(&mut tar, &format!("{hex}/"), mtime).map_err(write_error(shown))?;
        let kind = store.existing_layer(&layer.key)?.kind;
        let options = TarOptions::for_layer(&kind, mtime);
        let entry = header(&name, tar::EntryType::Regular, 0o644, layer.size, mtime)
            .map_err(write_error(shown))?;
        let out = tar.get_mut();
        out.write_all(entry.as_bytes())
            .map_err(write_error(shown))?;
        let mut bounded = Bounded {
            inner: &mut *out,
            left: layer.size,
        };
        let digest =
            write_layer_tar(&store.tree(&layer.key), &options, &mut bounded).map_err(|source| {
                ExportError::Layer {
                    layer: layer.name.clone(),
                    source,
                }
            })?;
        if digest.diff_id != layer.diff_id || digest.size != layer.size {
            return Err(ExportError::Changed {
                layer: layer.name.clone(),
                recorded: layer.diff_id.clone(),
                actual: digest.diff_id,
            });
        }
        let padding = (512 - layer.size % 512) % 512;
        out.write_all(&vec![0u8; padding as usize])
            .map_err(write_error(shown))?;
    }
    append_file(
        &mut tar,
        &format!("{config_hex}.json"),
        archive.config.len() as u64,
        archive.config,
        mtime,
    )
    .map_err(write_error(shown))?;
    let manifest = json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [image.name],
        "Layers": layer_names,
    }]);
    let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
    append_file(
        &mut tar,
        "manifest.json",
        manifest.len() as u64,
        &manifest[..],
        mtime,
    )
    .map_err(write_error(shown))?;
    let mut counted = tar.into_inner().map_err(write_error(shown))?;
    counted.flush().map_err(write_error(shown))?;
    Ok(Exported {
        digest: format!("sha256:{config_hex}"),
        bytes: counted.size,
    })
}

/// Counts what is written.
struct Counting<W> {
    inner: W,
    size: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Refuses to write past the size an archive member's header announced: a tree that grew
/// since its layer was recorded must not spill into the next member.
struct Bounded<W> {
    inner: W,
    left: u64,
}

impl<W: Write> Write for Bounded<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::other(
                "the layer's tar is larger than recorded",
            ));
        }
        let written = self.inner.write(buf)?;
        self.left -= written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
