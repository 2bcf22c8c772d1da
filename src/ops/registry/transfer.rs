//! Moving layers between the store and a registry, for `env push`, `env pull` and the team
//! cache: a layer compressed and sent unless the registry has it, a blob downloaded (resumed
//! where an interrupted download stopped, checked against its digest) and unpacked into the
//! store under its key.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::registry_error;
use crate::build::export::{LayerCompression, compress_layer, known_blob, remember_blob};
use crate::build::image::{BuildError, ImageLayer, LayerBlob};
use crate::build::import::{BlobCompression, ImportError, LayerBlobFile, import_layer};
use crate::build::layer_kind::LayerKind;
use crate::build::store::{LayerRecord, Store};
use crate::ops::{Error, Result, say};
use crate::registry::{Client, RegistryError};

/// A downloaded blob lives in the download cache until it is unpacked; a partial one stays
/// there for the next pull to go on from.
pub(crate) fn blobs_dir() -> PathBuf {
    crate::cache::Cache::new(&crate::paths::cache_dir()).blobs_dir()
}

#[derive(Deserialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
pub(crate) struct Platform {
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest's bytes, parsed.
pub(crate) fn check_manifest_layers(bytes: &[u8]) -> Result<ImageManifest> {
    serde_json::from_slice(bytes)
        .map_err(|error| Error::user(format!("its manifest is damaged: {error}"), None))
}

/// The one diff_id of a one-layer config, which must otherwise be `expected` (envkit's config
/// for that layer, with an empty diff_id).
pub(crate) fn single_diff_id(
    config: &[u8],
    expected: &[u8],
) -> std::result::Result<String, String> {
    let mut config: serde_json::Value =
        serde_json::from_slice(config).map_err(|error| format!("is damaged: {error}"))?;
    let expected: serde_json::Value =
        serde_json::from_slice(expected).map_err(|error| format!("is damaged: {error}"))?;
    let diff_ids = config
        .pointer_mut("/rootfs/diff_ids")
        .ok_or("names no diff_ids")?;
    let diff_id = match diff_ids.as_array().map(Vec::as_slice) {
        Some([serde_json::Value::String(diff_id)]) => diff_id.clone(),
        _ => return Err("does not name one diff_id".into()),
    };
    *diff_ids = serde_json::json!([""]);
    if config != expected {
        return Err("is not the one envkit writes for this platform".into());
    }
    Ok(diff_id)
}

/// One layer to pull: what the manifest and config say of it.
pub(crate) struct Wanted {
    pub name: String,
    pub key: String,
    pub kind: LayerKind,
    pub parent: Option<String>,
    pub diff_id: String,
    pub blob: LayerBlob,
    pub compression: BlobCompression,
    /// Made by another tool than envkit (a base image's layer): only the stream is checked
    /// against the diff_id, since the tree gives envkit's own tar, not the maker's.
    pub foreign: bool,
}

/// Whether a layer had to be downloaded.
pub(crate) enum Fetched {
    AlreadyInStore,
    Downloaded,
}

/// Puts `layer` into the store unless it is there, and checks that the store's copy is the
/// one the image names.
pub(crate) fn fetch_layer(
    client: &Client,
    store: &Store,
    layer: &Wanted,
    clamp: u64,
) -> Result<(LayerRecord, Fetched)> {
    let fetched = match store.layer(&layer.key).map_err(BuildError::from)? {
        Some(_) => Fetched::AlreadyInStore,
        None => {
            let path = download(client, &layer.blob)?;
            let imported = import_layer(
                store,
                &LayerBlobFile {
                    name: &layer.name,
                    key: &layer.key,
                    kind: layer.kind.clone(),
                    parent: layer.parent.clone(),
                    diff_id: &layer.diff_id,
                    compression: layer.compression,
                    foreign: layer.foreign,
                    path: &path,
                },
                clamp,
            );
            let _ = std::fs::remove_file(&path);
            imported.map_err(import_error)?;
            if let Some(compression) = match layer.compression {
                BlobCompression::Gzip => Some(LayerCompression::Gzip),
                BlobCompression::Zstd => Some(LayerCompression::Zstd),
                BlobCompression::None => None,
            } {
                // A push of the same layer then asks for this blob without compressing.
                remember_blob(store, &layer.key, compression, &layer.blob);
            }
            Fetched::Downloaded
        }
    };
    let record = store.existing_layer(&layer.key).map_err(BuildError::from)?;
    if !layer.foreign && record.diff_id != layer.diff_id {
        return Err(Error::user(
            format!(
                "the store's {} layer (key {}) is {}, but the registry names {} for it",
                layer.name, layer.key, record.diff_id, layer.diff_id
            ),
            Some("`env verify` checks the store's copy".into()),
        ));
    }
    Ok((record, fetched))
}

pub(crate) fn import_error(error: ImportError) -> Error {
    Error::Build(BuildError::from(error))
}

/// Layer keys name folders of the store: nothing but lowercase hex.
pub(crate) fn is_store_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A config blob: small, read whole and checked against its digest.
pub(crate) fn fetch_small_blob(client: &Client, digest: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut hasher = Sha256::new();
    client
        .download_blob(digest, 0, &mut hasher, &mut bytes)
        .map_err(registry_error)?;
    check_digest(digest, hasher)?;
    Ok(bytes)
}

pub(crate) fn check_digest(digest: &str, hasher: Sha256) -> Result<()> {
    let actual = format!("sha256:{}", crate::fetch::hex(&hasher.finalize()));
    if actual == digest {
        Ok(())
    } else {
        Err(registry_error(RegistryError::DigestMismatch {
            what: format!("blob {digest}"),
            expected: digest.to_string(),
            actual,
        }))
    }
}

/// Attempts at one blob: a connection that breaks is resumed where it stopped.
const ATTEMPTS: usize = 3;

/// Downloads a layer blob into the blobs folder, going on from what an interrupted pull left
/// there; the whole blob must hash to its digest. Returns where it is.
pub(crate) fn download(client: &Client, blob: &LayerBlob) -> Result<PathBuf> {
    let hex = blob
        .digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            Error::user(
                format!("`{}` is not a sha256 digest envkit can check", blob.digest),
                None,
            )
        })?;
    let dir = blobs_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|source| Error::io(format!("cannot create `{}`", dir.display()), source))?;
    let partial = dir.join(format!("{hex}.partial"));
    let io_error = |source| Error::io(format!("cannot write `{}`", partial.display()), source);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&partial)
        .map_err(io_error)?;
    // Two pulls of one blob take turns; the second finds it whole.
    file.lock().map_err(io_error)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (held, mut hasher) = hash_file(&mut file).map_err(io_error)?;
        if held > blob.size {
            file.set_len(0).map_err(io_error)?;
            continue;
        }
        let result = if held == blob.size {
            Ok(held)
        } else {
            client.download_blob(&blob.digest, held, &mut hasher, &mut file)
        };
        match result {
            Ok(_) => {
                if let Err(error) = check_digest(&blob.digest, hasher) {
                    let _ = std::fs::remove_file(&partial);
                    return Err(error);
                }
                let whole = dir.join(hex);
                std::fs::rename(&partial, &whole).map_err(io_error)?;
                return Ok(whole);
            }
            Err(RegistryError::Read { .. } | RegistryError::Network { .. })
                if attempt < ATTEMPTS =>
            {
                say(&format!(
                    "{}: connection lost, resuming",
                    &blob.digest[..19.min(blob.digest.len())]
                ));
            }
            Err(error) => return Err(registry_error(error)),
        }
    }
}

/// How many bytes `file` holds, hashed; leaves it positioned at its end.
pub(crate) fn hash_file(file: &mut File) -> std::io::Result<(u64, Sha256)> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut held = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        held += read as u64;
    }
    Ok((held, hasher))
}

/// Whether a blob had to be sent.
pub(crate) enum Sent {
    AlreadyThere,
    /// Sent, going on from what the registry kept this many times after a dropped connection.
    Uploaded {
        resumed: u32,
    },
}

/// Sends `layer`'s blob, compressed so, unless the registry has it. The blob the layer gave
/// last time is asked for first, without compressing the layer again.
pub(crate) fn send_layer(
    client: &Client,
    store: &Store,
    layer: &ImageLayer,
    (clamp, compression): (u64, LayerCompression),
) -> Result<(LayerBlob, Sent)> {
    if let Some(known) = known_blob(store, &layer.key, compression)
        && client.has_blob(&known.digest).map_err(registry_error)?
    {
        return Ok((known, Sent::AlreadyThere));
    }
    let scratch = store.tmp_dir();
    std::fs::create_dir_all(&scratch)
        .map_err(|source| Error::io(format!("cannot create `{}`", scratch.display()), source))?;
    let (file, blob) = compress_layer(store, layer, (clamp, compression), &scratch)
        .map_err(crate::ops::export::export_error)?;
    if client.has_blob(&blob.digest).map_err(registry_error)? {
        return Ok((blob, Sent::AlreadyThere));
    }
    let resumed = client
        .upload_blob(&blob.digest, file.path(), blob.size)
        .map_err(registry_error)?;
    Ok((blob, Sent::Uploaded { resumed }))
}

/// Sends a config blob unless the registry has it; returns its descriptor's digest.
pub(crate) fn send_config(client: &Client, store: &Store, config: &[u8]) -> Result<String> {
    let digest = format!("sha256:{}", crate::fetch::sha256_hex(config));
    if client.has_blob(&digest).map_err(registry_error)? {
        return Ok(digest);
    }
    let scratch = store.tmp_dir();
    std::fs::create_dir_all(&scratch)
        .map_err(|source| Error::io(format!("cannot create `{}`", scratch.display()), source))?;
    let path = scratch.join(format!(
        ".envkit-push-config-{}-{}",
        std::process::id(),
        &digest[7..19]
    ));
    std::fs::write(&path, config)
        .map_err(|source| Error::io(format!("cannot write `{}`", path.display()), source))?;
    let sent = client.upload_blob(&digest, &path, config.len() as u64);
    let _ = std::fs::remove_file(&path);
    sent.map_err(registry_error)?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hex_keys_name_store_folders() {
        assert!(is_store_key("0123abcdef"));
        assert!(!is_store_key("../../etc"));
        assert!(!is_store_key(""));
        assert!(!is_store_key("k/1"));
    }

    #[test]
    fn a_file_is_hashed_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"abc").unwrap();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let (held, hasher) = hash_file(&mut file).unwrap();
        assert_eq!(held, 3);
        assert_eq!(
            crate::fetch::hex(&hasher.finalize()),
            crate::fetch::sha256_hex(b"abc")
        );
        assert_eq!(file.stream_position().unwrap(), 3);
    }
}
