//! `env push REF`: the project's built image to a registry, sending only what it lacks.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::registry::pushed::{PushedRecord, remember as remember_push};
use super::registry::transfer::{Sent, send_config, send_layer};
use super::registry::{
    IMAGE_NAME_ANNOTATION, LAYER_KEY_ANNOTATION, LAYER_KIND_ANNOTATION, OCI_CONFIG, OCI_INDEX,
    OCI_MANIFEST, SOURCE_DATE_EPOCH_ANNOTATION, Transport, client, in_parallel, parse_reference,
    registry_error,
};
use super::{Error, LockMode, Project, Result, say};
use crate::build::download::human_bytes;
use crate::build::export::LayerCompression;
use crate::build::gc::StoreUse;
use crate::build::image::{
    BuildError, Image, ImageLayer, LayerBlob, oci_config_with, oci_platform,
};
use crate::build::store::Store;
use crate::registry::Access;

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

/// What to push: the project's image, or one of its peers'.
#[derive(Debug, Clone, Copy)]
pub enum Pushing<'a> {
    Project,
    Peer(&'a str),
}

/// `env push REF` (`env push --peer NAME REF`): the built image to the registry.
pub fn push(
    project: &Project,
    what: Pushing<'_>,
    reference: &str,
    (compression, transport): (LayerCompression, Transport),
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
    let (spec, lock_file) = match what {
        Pushing::Project => {
            let spec = project.spec();
            (spec, crate::solve::stage::lock_path(&spec.origin.file))
        }
        Pushing::Peer(name) => {
            let peer = super::peers::named(project, name)?;
            (&*peer.spec, crate::solve::stage::peer_lock_path(peer))
        }
    };
    let lock = crate::ops::lock::current_lock_at(spec, &lock_file, mode)?;
    let store = Store::default_location();
    let _in_use = StoreUse::acquire(&store, &|| say("waiting for `env gc` to finish"))
        .map_err(BuildError::from)?;
    let (name, image) =
        crate::ops::image::ImageContext::new(spec, &lock)?.existing_image(spec, &lock, &store)?;
    let Some(image) = image else {
        return Err(crate::ops::image::not_built(
            &name,
            match what {
                Pushing::Project => "run `env build` first, then `env push`",
                Pushing::Peer(_) => "run `env up` (which builds the peers) first",
            },
        ));
    };
    if reference.tag.is_none() {
        reference.tag = Some(crate::build::image::split_name(&image.name).1.to_string());
    }
    let client = client(&reference, Access::Push, transport)?;
    say(&format!("pushing {} to {reference}", image.name));
    let clamp = crate::build::base::source_date_epoch(&lock);
    // Each layer the registry lacks is compressed and sent, a few at a time.
    let present = AtomicUsize::new(0);
    let sent_bytes = Mutex::new(0u64);
    let send = |layer: &ImageLayer| -> Result<LayerBlob> {
        let (blob, sent) = send_layer(&client, &store, layer, (clamp, compression))?;
        match sent {
            Sent::AlreadyThere => {
                present.fetch_add(1, Ordering::Relaxed);
                say(&format!("{}: already in the registry", layer.name));
            }
            Sent::Uploaded { resumed } => {
                if let Ok(mut sent) = sent_bytes.lock() {
                    *sent += blob.size;
                }
                let resumed = match resumed {
                    0 => String::new(),
                    1 => " (the connection dropped once; sent on from what the registry kept)"
                        .to_string(),
                    n => format!(
                        " (the connection dropped {n} times; sent on from what the registry kept)"
                    ),
                };
                say(&format!(
                    "{}: sent {}{resumed}",
                    layer.name,
                    human_bytes(blob.size)
                ));
            }
        }
        Ok(blob)
    };
    let blobs = in_parallel(&image.layers, &send)?;
    let config = oci_config_with(
        &image.architecture,
        &image.layers,
        &crate::ops::image::image_config(spec, &lock, image.base_config.as_ref()),
    );
    send_config(&client, &store, &config)?;
    let manifest = push_manifest(&image, clamp, &config, &blobs);
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
            "platform": oci_platform(&image.architecture),
        }],
        "annotations": { IMAGE_NAME_ANNOTATION: image.name },
    });
    let index = serde_json::to_vec(&index).unwrap_or_default();
    let tag = reference.tag.clone().unwrap_or_default();
    let digest = client
        .put_manifest(&tag, OCI_INDEX, &index)
        .map_err(registry_error)?;
    let layers_present = present.load(Ordering::Relaxed);
    remember_push(
        &store,
        &image.name,
        &PushedRecord {
            reference: reference.to_string(),
            digest: digest.clone(),
        },
    );
    Ok(Pushed {
        image: image.name.clone(),
        reference: reference.to_string(),
        digest,
        layers_sent: image.layers.len() - layers_present,
        layers_present,
        bytes_sent: sent_bytes.into_inner().unwrap_or_default(),
    })
}

/// The manifest of a pushed image: the image's config, the compressed layers, and what a pull
/// needs to file each layer under its key.
fn push_manifest(image: &Image, clamp: u64, config: &[u8], blobs: &[LayerBlob]) -> Vec<u8> {
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
    let clamp = clamp.to_string();
    let annotations: BTreeMap<&str, &str> = [
        (IMAGE_NAME_ANNOTATION, image.name.as_str()),
        (SOURCE_DATE_EPOCH_ANNOTATION, clamp.as_str()),
    ]
    .into();
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
