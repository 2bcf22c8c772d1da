//! `env pull REF`: an image `env push` sent, from a registry into the store, so `env run`
//! finds it built.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    DOCKER_LIST, IMAGE_NAME_ANNOTATION, LAYER_KEY_ANNOTATION, LAYER_KIND_ANNOTATION, OCI_INDEX,
    SOURCE_DATE_EPOCH_ANNOTATION, Transport, client, in_parallel, parse_reference, registry_error,
};
use crate::build::download::human_bytes;
use crate::build::export::{LayerCompression, remember_blob};
use crate::build::gc::StoreUse;
use crate::build::image::{
    BuildError, Image, ImageLayer, LayerBlob, image_id, oci_architecture, record_image,
};
use crate::build::import::{BlobCompression, ImportError, LayerBlobFile, import_layer};
use crate::build::layer_kind::LayerKind;
use crate::build::store::{LayerRecord, Store};
use crate::ops::{Error, Result, say};
use crate::registry::{Access, Client, Reference, RegistryError};

/// What `env pull` did.
pub struct Pulled {
    /// The image's envkit name (`NAME:TAG`), which the project it was built from finds.
    pub image: String,
    pub reference: String,
    /// `sha256:` of the manifest pulled (for the platform).
    pub digest: String,
    pub layers_fetched: usize,
    pub layers_present: usize,
    pub bytes_fetched: u64,
}

/// A downloaded blob lives in the download cache until it is unpacked; a partial one stays
/// there for the next pull to go on from.
fn blobs_dir() -> PathBuf {
    crate::cache::Cache::new(&crate::paths::cache_dir()).blobs_dir()
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
pub(super) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    platform: Option<Platform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
    variant: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest's bytes, parsed.
pub(super) fn check_manifest_layers(bytes: &[u8]) -> Result<ImageManifest> {
    serde_json::from_slice(bytes)
        .map_err(|error| Error::user(format!("its manifest is damaged: {error}"), None))
}

/// The one diff_id of a one-layer config, which must otherwise be `expected` (envkit's config
/// for that layer, with an empty diff_id).
pub(super) fn single_diff_id(
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

#[derive(Deserialize)]
struct Config {
    architecture: String,
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// One layer to pull: what the manifest and config say of it.
pub(super) struct Wanted {
    pub name: String,
    pub key: String,
    pub kind: LayerKind,
    pub parent: Option<String>,
    pub diff_id: String,
    pub blob: LayerBlob,
    pub compression: BlobCompression,
}

/// Whether a layer had to be downloaded.
pub(super) enum Fetched {
    AlreadyInStore,
    Downloaded,
}

/// Puts `layer` into the store unless it is there, and checks that the store's copy is the
/// one the image names.
pub(super) fn fetch_layer(
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
    if record.diff_id != layer.diff_id {
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

/// `env pull REF`: the image for this machine's platform, into the store.
pub fn pull(reference: &str, transport: Transport) -> Result<Pulled> {
    let reference = parse_reference(reference)?;
    crate::kernel::userns::enter()?;
    let client = client(&reference, Access::Pull, transport)?;
    let architecture = crate::paths::debian_architecture();
    let (manifest_digest, manifest) = platform_manifest(&client, &reference, architecture)?;
    let not_envkit = |what: &str| {
        Error::user(
            format!("`{reference}` is not an image `env push` sent: its manifest has no {what}"),
            Some("`env pull` fetches images pushed by `env push`".into()),
        )
    };
    let image_name = manifest
        .annotations
        .get(IMAGE_NAME_ANNOTATION)
        .cloned()
        .ok_or_else(|| not_envkit(IMAGE_NAME_ANNOTATION))?;
    let clamp: u64 = manifest
        .annotations
        .get(SOURCE_DATE_EPOCH_ANNOTATION)
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| not_envkit(SOURCE_DATE_EPOCH_ANNOTATION))?;
    let config = fetch_small_blob(&client, &manifest.config.digest)?;
    let config: Config = serde_json::from_slice(&config).map_err(|error| {
        protocol(
            &reference,
            format!("its config is not an image config: {error}"),
        )
    })?;
    if config.architecture != oci_architecture(architecture).0 {
        return Err(protocol(
            &reference,
            format!(
                "its manifest for {} holds an image for {}",
                oci_architecture(architecture).0,
                config.architecture
            ),
        ));
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(protocol(
            &reference,
            format!(
                "its config names {} layers and its manifest {}",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        ));
    }
    let mut wanted = Vec::with_capacity(manifest.layers.len());
    let mut parent = None;
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let annotation = |name: &str| {
            layer
                .annotations
                .get(name)
                .cloned()
                .ok_or_else(|| not_envkit(&format!("{name} on layer {}", layer.digest)))
        };
        let key = annotation(LAYER_KEY_ANNOTATION)?;
        let name = annotation(LAYER_KIND_ANNOTATION)?;
        let kind = LayerKind::from_name(&name)
            .ok_or_else(|| protocol(&reference, format!("`{name}` is not a kind of layer")))?;
        if !is_store_key(&key) {
            return Err(protocol(
                &reference,
                format!("`{key}` is not a layer key envkit writes"),
            ));
        }
        let compression = BlobCompression::from_media_type(&layer.media_type).ok_or_else(|| {
            protocol(
                &reference,
                format!(
                    "layer {} is `{}`, which is not a layer envkit reads",
                    layer.digest, layer.media_type
                ),
            )
        })?;
        wanted.push(Wanted {
            name,
            key: key.clone(),
            kind,
            parent: parent.replace(key),
            diff_id: diff_id.clone(),
            blob: LayerBlob {
                media_type: layer.media_type.clone(),
                digest: layer.digest.clone(),
                size: layer.size,
            },
            compression,
        });
    }

    let store = Store::default_location();
    let _in_use = StoreUse::acquire(&store, &|| say("waiting for `env gc` to finish"))
        .map_err(BuildError::from)?;
    say(&format!("pulling {image_name} from {reference}"));
    let present = AtomicUsize::new(0);
    let fetched_bytes = Mutex::new(0u64);
    let fetch = |layer: &Wanted| -> Result<ImageLayer> {
        let (record, fetched) = fetch_layer(&client, &store, layer, clamp)?;
        match fetched {
            Fetched::AlreadyInStore => {
                present.fetch_add(1, Ordering::Relaxed);
                say(&format!("{}: already in the store", layer.name));
            }
            Fetched::Downloaded => {
                if let Ok(mut fetched) = fetched_bytes.lock() {
                    *fetched += layer.blob.size;
                }
                say(&format!(
                    "{}: fetched {}",
                    layer.name,
                    human_bytes(layer.blob.size)
                ));
            }
        }
        Ok(ImageLayer {
            name: layer.name.clone(),
            key: layer.key.clone(),
            diff_id: record.diff_id,
            size: record.size,
        })
    };
    let layers = in_parallel(&wanted, &fetch)?;
    let image = Image {
        name: image_name,
        id: image_id(architecture, &layers),
        architecture: architecture.to_string(),
        layers,
    };
    record_image(&store, &image).map_err(BuildError::from)?;
    let layers_present = present.load(Ordering::Relaxed);
    Ok(Pulled {
        image: image.name,
        reference: reference.to_string(),
        digest: manifest_digest,
        layers_fetched: wanted.len() - layers_present,
        layers_present,
        bytes_fetched: fetched_bytes.into_inner().unwrap_or_default(),
    })
}

fn protocol(reference: &Reference, reason: String) -> Error {
    Error::user(format!("cannot pull `{reference}`: {reason}"), None)
}

fn import_error(error: ImportError) -> Error {
    Error::Build(BuildError::from(error))
}

/// Layer keys name folders of the store: nothing but lowercase hex.
fn is_store_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The manifest for `architecture` (Debian's name) under the reference, through an image
/// index when the reference names one; and its digest.
fn platform_manifest(
    client: &Client,
    reference: &Reference,
    architecture: &str,
) -> Result<(String, ImageManifest)> {
    let top = client
        .manifest(reference.manifest_reference())
        .map_err(registry_error)?;
    let manifest = if top.media_type == OCI_INDEX || top.media_type == DOCKER_LIST {
        let index: Index = serde_json::from_slice(&top.bytes)
            .map_err(|error| protocol(reference, format!("its index is damaged: {error}")))?;
        let (oci_arch, variant) = oci_architecture(architecture);
        let fits = |platform: &Platform| {
            platform.os == "linux"
                && platform.architecture == oci_arch
                && (platform.variant.is_none() || platform.variant.as_deref() == variant)
        };
        let Some(chosen) = index
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(fits))
        else {
            let offered: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref())
                .map(|p| match &p.variant {
                    Some(variant) => format!("{}/{}/{variant}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect();
            return Err(Error::user(
                format!("`{reference}` has no image for linux/{oci_arch}"),
                Some(format!("it has images for {}", offered.join(", "))),
            ));
        };
        client.manifest(&chosen.digest).map_err(registry_error)?
    } else {
        top
    };
    let parsed: ImageManifest = serde_json::from_slice(&manifest.bytes)
        .map_err(|error| protocol(reference, format!("its manifest is damaged: {error}")))?;
    Ok((manifest.digest, parsed))
}

/// A config blob: small, read whole and checked against its digest.
pub(super) fn fetch_small_blob(client: &Client, digest: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut hasher = Sha256::new();
    client
        .download_blob(digest, 0, &mut hasher, &mut bytes)
        .map_err(registry_error)?;
    check_digest(digest, hasher)?;
    Ok(bytes)
}

pub(super) fn check_digest(digest: &str, hasher: Sha256) -> Result<()> {
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
fn download(client: &Client, blob: &LayerBlob) -> Result<PathBuf> {
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
fn hash_file(file: &mut File) -> std::io::Result<(u64, Sha256)> {
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
