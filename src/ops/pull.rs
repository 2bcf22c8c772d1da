//! `env pull REF`: an image `env push` sent, from a registry into the store, so `env run`
//! finds it built.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;

use super::registry::transfer::{Fetched, Wanted, fetch_layer, fetch_small_blob, is_store_key};
use super::registry::{
    IMAGE_NAME_ANNOTATION, LAYER_KEY_ANNOTATION, LAYER_KIND_ANNOTATION,
    SOURCE_DATE_EPOCH_ANNOTATION, Transport, client, in_parallel, parse_reference,
};
use super::{Error, Result, say};
use crate::build::download::human_bytes;
use crate::build::gc::StoreUse;
use crate::build::image::{
    BuildError, Image, ImageLayer, LayerBlob, image_id, oci_architecture, record_image,
};
use crate::build::import::BlobCompression;
use crate::build::layer_kind::LayerKind;
use crate::build::store::Store;
use crate::registry::{Access, Reference};

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

#[derive(Deserialize)]
struct Config {
    architecture: String,
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// `env pull REF`: the image for this machine's platform, into the store.
pub fn pull(reference: &str, transport: Transport) -> Result<Pulled> {
    let reference = parse_reference(reference)?;
    crate::kernel::userns::enter()?;
    let client = client(&reference, Access::Pull, transport)?;
    let architecture = crate::paths::debian_architecture();
    let (manifest_digest, manifest) =
        super::registry::platform::platform_manifest(&client, &reference, architecture)?;
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
            foreign: false,
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
        base_config: None,
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
