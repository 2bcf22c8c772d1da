//! `env push REF` and `env pull REF`: the project's image to and from an OCI registry.
//!
//! A pushed image is an index for its one platform, pointing at a manifest whose config is the
//! image's own (the bytes its id covers) and whose layers are the canonical layer tars,
//! compressed. Each layer carries annotations naming its store key and kind, and the
//! manifest the image's envkit name, so a pull puts every layer under the key a build would
//! give it: the project then finds its image and builds nothing. A pulled layer is unpacked
//! into the store and must give its config's diff_id again, or it is refused.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::{Error, LockMode, Project, Result, say};
use crate::build::download::human_bytes;
use crate::build::export::{LayerCompression, compress_layer, known_blob};
use crate::build::gc::StoreUse;
use crate::build::image::{BuildError, Image, ImageLayer, LayerBlob, oci_config};
use crate::build::store::Store;
use crate::registry::{Access, Client, Reference, RegistryError};

/// Annotations envkit writes on what it pushes.
pub const IMAGE_NAME_ANNOTATION: &str = "dev.envkit.image.name";
pub const LAYER_KEY_ANNOTATION: &str = "dev.envkit.layer.key";
pub const LAYER_KIND_ANNOTATION: &str = "dev.envkit.layer.kind";

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Blobs sent or fetched at once.
const PARALLEL_TRANSFERS: usize = 4;

/// How to reach the registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Transport {
    /// Plain HTTP, for a registry on this machine's loopback only.
    pub insecure: bool,
}

/// What `env push` did.
pub struct Pushed {
    pub image: String,
    /// The reference pushed to, with its tag.
    pub reference: String,
    /// `sha256:` of the index the tag names.
    pub digest: String,
    pub layers_sent: usize,
    pub layers_present: usize,
    pub bytes_sent: u64,
}

fn registry_error(error: RegistryError) -> Error {
    let hint = error.hint();
    if error.is_user_error() {
        Error::user(error.to_string(), hint)
    } else {
        Error::Registry(error)
    }
}

/// The reference as the user wrote it, parsed; a reference without a tag or digest gets the
/// image's own tag.
fn parse_reference(text: &str) -> Result<Reference> {
    Reference::parse(text).map_err(|error| registry_error(error.into()))
}

fn client(reference: &Reference, access: Access, transport: Transport) -> Result<Client> {
    let credentials = crate::registry::auth::credentials_for(&reference.registry)
        .map_err(|error| registry_error(error.into()))?;
    Client::new(reference, access, transport.insecure, credentials).map_err(registry_error)
}

/// `env push REF`: the project's built image to the registry.
pub fn push(
    project: &Project,
    reference: &str,
    compression: LayerCompression,
    transport: Transport,
    mode: LockMode,
) -> Result<Pushed> {
    let mut reference = parse_reference(reference)?;
    if reference.digest.is_some() {
        return Err(Error::user(
            format!("cannot push to `{reference}`: a digest names what is there already"),
            Some("push to a tag (`REPOSITORY:TAG`), or to the repository alone".into()),
        ));
    }
    crate::kernel::userns::enter()?;
    let spec = project.spec();
    let lock = super::lock::current_lock(spec, mode)?;
    let store = Store::default_location();
    let _in_use = StoreUse::acquire(&store, &|| say("waiting for `env gc` to finish"))
        .map_err(BuildError::from)?;
    let (name, image) =
        super::image::ImageContext::new(spec)?.existing_image(spec, &lock, &store)?;
    let Some(image) = image else {
        return Err(Error::user(
            format!("`{name}` is not built"),
            Some("run `env build` first, then `env push`".into()),
        ));
    };
    if reference.tag.is_none() {
        reference.tag = Some(image_tag(&image).to_string());
    }
    let client = client(&reference, Access::Push, transport)?;
    say(&format!("pushing {} to {reference}", image.name));
    let clamp = crate::build::base::source_date_epoch(&lock);
    let scratch = store.tmp_dir();
    std::fs::create_dir_all(&scratch)
        .map_err(|source| Error::io(format!("cannot create `{}`", scratch.display()), source))?;
    // Each layer the registry lacks is compressed and sent, a few at a time; a layer pushed
    // before is asked for by the digest it had then, without compressing it again.
    let present = AtomicUsize::new(0);
    let sent_bytes = Mutex::new(0u64);
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let blobs: Mutex<Vec<Option<LayerBlob>>> = Mutex::new(vec![None; image.layers.len()]);
    let send = |layer: &ImageLayer| -> Result<LayerBlob> {
        if let Some(known) = known_blob(&store, &layer.key, compression)
            && client.has_blob(&known.digest).map_err(registry_error)?
        {
            present.fetch_add(1, Ordering::Relaxed);
            say(&format!("{}: already in the registry", layer.name));
            return Ok(known);
        }
        let (file, blob) = compress_layer(&store, layer, (clamp, compression), &scratch)
            .map_err(super::export::export_error)?;
        if client.has_blob(&blob.digest).map_err(registry_error)? {
            present.fetch_add(1, Ordering::Relaxed);
            say(&format!("{}: already in the registry", layer.name));
            return Ok(blob);
        }
        client
            .upload_blob(&blob.digest, file.path(), blob.size)
            .map_err(registry_error)?;
        if let Ok(mut sent) = sent_bytes.lock() {
            *sent += blob.size;
        }
        say(&format!("{}: sent {}", layer.name, human_bytes(blob.size)));
        Ok(blob)
    };
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_TRANSFERS.min(image.layers.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(layer) = image.layers.get(index) else {
                        break;
                    };
                    match send(layer) {
                        Ok(blob) => {
                            if let Ok(mut blobs) = blobs.lock() {
                                blobs[index] = Some(blob);
                            }
                        }
                        Err(error) => {
                            if let Ok(mut slot) = failure.lock() {
                                slot.get_or_insert(error);
                            }
                            next.store(usize::MAX / 2, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    if let Some(error) = failure.into_inner().ok().flatten() {
        return Err(error);
    }
    let blobs: Vec<LayerBlob> = blobs
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| Error::io("a layer was not sent", std::io::Error::other("lost")))?;
    let config = oci_config(&image.architecture, &image.layers);
    let config_digest = format!("sha256:{}", crate::fetch::sha256_hex(&config));
    if !client.has_blob(&config_digest).map_err(registry_error)? {
        let path = scratch.join(format!(".envkit-push-config-{}", std::process::id()));
        std::fs::write(&path, &config)
            .map_err(|source| Error::io(format!("cannot write `{}`", path.display()), source))?;
        let sent = client.upload_blob(&config_digest, &path, config.len() as u64);
        let _ = std::fs::remove_file(&path);
        sent.map_err(registry_error)?;
    }
    let manifest = push_manifest(&image, &config, &blobs);
    let manifest_digest = client
        .put_manifest(
            &format!("sha256:{}", crate::fetch::sha256_hex(&manifest)),
            OCI_MANIFEST,
            &manifest,
        )
        .map_err(registry_error)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": image.architecture, "os": "linux" },
        }],
        "annotations": { IMAGE_NAME_ANNOTATION: image.name },
    });
    let index = serde_json::to_vec(&index).unwrap_or_default();
    let tag = reference.tag.clone().unwrap_or_default();
    let digest = client
        .put_manifest(&tag, OCI_INDEX, &index)
        .map_err(registry_error)?;
    let layers_present = present.load(Ordering::Relaxed);
    Ok(Pushed {
        image: image.name.clone(),
        reference: reference.to_string(),
        digest,
        layers_sent: image.layers.len() - layers_present,
        layers_present,
        bytes_sent: sent_bytes.into_inner().unwrap_or_default(),
    })
}

/// The tag in an image's name (`NAME:TAG`).
fn image_tag(image: &Image) -> &str {
    image.name.split_once(':').map_or("latest", |(_, tag)| tag)
}

/// The manifest of a pushed image: the image's config, the compressed layers, and what a pull
/// needs to file each layer under its key.
fn push_manifest(image: &Image, config: &[u8], blobs: &[LayerBlob]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = image
        .layers
        .iter()
        .zip(blobs)
        .map(|(layer, blob)| {
            json!({
                "mediaType": blob.media_type,
                "digest": blob.digest,
                "size": blob.size,
                "annotations": {
                    LAYER_KEY_ANNOTATION: layer.key,
                    LAYER_KIND_ANNOTATION: layer.name,
                },
            })
        })
        .collect();
    let annotations: BTreeMap<&str, &str> = [(IMAGE_NAME_ANNOTATION, image.name.as_str())].into();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": format!("sha256:{}", crate::fetch::sha256_hex(config)),
            "size": config.len(),
        },
        "layers": layers,
        "annotations": annotations,
    });
    serde_json::to_vec(&manifest).unwrap_or_default()
}
