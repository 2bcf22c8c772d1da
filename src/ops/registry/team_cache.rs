//! The team cache: `cache "REPOSITORY"` in env.kdl, or `ENVKIT_TEAM_CACHE` (CI sets it; empty
//! turns the cache off). A build asks it for every layer the store lacks and pulls what it has
//! instead of building; `env build --push-cache` sends every layer of the image it has.
//!
//! Each layer is a one-layer image of its own, tagged `layer-<key>` in the repository, so any
//! registry holds it and a layer is found by the key a build would give it. The manifest names
//! the layer's key, kind, parent and `SOURCE_DATE_EPOCH`; a layer whose manifest names other
//! ones than the plan's is not used. A pulled layer must give its diff_id twice (see
//! `build::import`), or it is refused. The cache only ever saves work: a layer it lacks, or one
//! it cannot give, is built, with a warning saying why.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::transfer::{
    Fetched, Sent, Wanted, check_manifest_layers, fetch_layer, fetch_small_blob, send_config,
    send_layer, single_diff_id,
};
use super::{
    LAYER_KEY_ANNOTATION, LAYER_KIND_ANNOTATION, OCI_CONFIG, OCI_MANIFEST,
    SOURCE_DATE_EPOCH_ANNOTATION, in_parallel, registry_error,
};
use crate::build::download::human_bytes;
use crate::build::export::LayerCompression;
use crate::build::image::{Image, ImageLayer, LayerBlob, oci_config};
use crate::build::import::BlobCompression;
use crate::build::plan::{BuildPlan, PlannedLayer};
use crate::build::store::Store;
use crate::ops::{Error, Result, say};
use crate::registry::{Access, Client, Reference, RegistryError};
use crate::spec::Spec;

/// Names the cache for CI, over env.kdl's `cache`; empty turns the cache off.
pub const TEAM_CACHE_VAR: &str = "ENVKIT_TEAM_CACHE";
/// `1`: the cache `ENVKIT_TEAM_CACHE` names speaks plain HTTP (a loopback registry only).
pub const TEAM_CACHE_INSECURE_VAR: &str = "ENVKIT_TEAM_CACHE_INSECURE";

/// Annotation on a cached layer's manifest: the key of the layer below it.
const LAYER_PARENT_ANNOTATION: &str = "dev.envkit.layer.parent";

/// Where the team cache is, when there is one.
#[derive(Debug, Clone)]
pub struct TeamCache {
    repository: Reference,
    insecure: bool,
}

impl TeamCache {
    /// The cache `ENVKIT_TEAM_CACHE` names, else the spec's `cache`.
    pub fn configured(spec: &Spec) -> Result<Option<TeamCache>> {
        let (text, insecure) = match std::env::var(TEAM_CACHE_VAR) {
            Ok(text) if text.trim().is_empty() => return Ok(None),
            Ok(text) => {
                let insecure = std::env::var(TEAM_CACHE_INSECURE_VAR)
                    .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
                (text.trim().to_string(), insecure)
            }
            Err(_) => match &spec.cache {
                Some(cache) => (cache.repository.clone(), cache.insecure),
                None => return Ok(None),
            },
        };
        let repository = Reference::parse(&text).map_err(|error| {
            Error::user(
                format!("the team cache: {error}"),
                Some(format!(
                    "`cache` in env.kdl or {TEAM_CACHE_VAR} names a repository such as `ghcr.io/acme/envkit-cache`"
                )),
            )
        })?;
        if repository.tag.is_some() || repository.digest.is_some() {
            return Err(Error::user(
                format!("the team cache `{text}` names a tag or digest"),
                Some("name the repository alone: envkit tags each layer itself".into()),
            ));
        }
        Ok(Some(TeamCache {
            repository,
            insecure,
        }))
    }

    fn client(&self, access: Access) -> Result<Client> {
        let credentials = crate::registry::auth::credentials_for(&self.repository.registry)
            .map_err(|error| registry_error(error.into()))?;
        Client::new(&self.repository, access, self.insecure, credentials).map_err(registry_error)
    }
}

/// The tag a layer has in the cache.
fn layer_tag(key: &str) -> String {
    format!("layer-{key}")
}

/// Pulls every layer of `plan` the store lacks and the cache has; returns how many. Whatever
/// goes wrong is a warning: the layers not pulled are built.
pub fn fill_from_cache(
    cache: &TeamCache,
    plan: &BuildPlan,
    architecture: &str,
    clamp: u64,
    store: &Store,
) -> usize {
    let missing: Vec<&PlannedLayer> = plan.layers.iter().filter(|l| !l.cached).collect();
    if missing.is_empty() {
        return 0;
    }
    let client = match cache.client(Access::Pull) {
        Ok(client) => client,
        Err(error) => {
            warn_unusable(cache, &error);
            return 0;
        }
    };
    let pulled = AtomicUsize::new(0);
    let unreachable = AtomicUsize::new(0);
    let fetch = |planned: &&PlannedLayer| -> Result<()> {
        // Once the registry cannot be reached, the other layers do not try again.
        if unreachable.load(Ordering::Relaxed) > 0 {
            return Ok(());
        }
        let name = planned.kind.name();
        match cached_layer(&client, planned, architecture, clamp) {
            Ok(None) => {}
            Ok(Some(wanted)) => match fetch_layer(&client, store, &wanted, clamp) {
                Ok((_, Fetched::Downloaded)) => {
                    pulled.fetch_add(1, Ordering::Relaxed);
                    say(&format!(
                        "{name}: from the team cache ({})",
                        human_bytes(wanted.blob.size)
                    ));
                }
                Ok((_, Fetched::AlreadyInStore)) => {}
                Err(error) => say(&format!(
                    "warning: the team cache's {name} layer is not used: {error}; building it"
                )),
            },
            Err(CacheMiss::Unusable(error)) => say(&format!(
                "warning: the team cache's {name} layer is not used: {error}; building it"
            )),
            Err(CacheMiss::Unreachable(error)) => {
                if unreachable.fetch_add(1, Ordering::Relaxed) == 0 {
                    warn_unusable(cache, &error);
                }
            }
        }
        Ok(())
    };
    let _ = in_parallel(&missing, &fetch);
    pulled.load(Ordering::Relaxed)
}

fn warn_unusable(cache: &TeamCache, error: &Error) {
    let hint = error
        .hint()
        .map_or(String::new(), |hint| format!(" ({hint})"));
    say(&format!(
        "warning: the team cache {} cannot be used: {error}{hint}; building what the store lacks",
        cache.repository
    ));
}

/// Why a cached layer is not used.
enum CacheMiss {
    /// This layer's entry is wrong: the others may still be fine.
    Unusable(Box<Error>),
    /// The registry cannot be asked at all.
    Unreachable(Box<Error>),
}

/// What the cache holds for `planned`, checked against the plan: `None` when it has nothing.
fn cached_layer(
    client: &Client,
    planned: &PlannedLayer,
    architecture: &str,
    clamp: u64,
) -> std::result::Result<Option<Wanted>, CacheMiss> {
    let manifest = match client.manifest(&layer_tag(&planned.key)) {
        Ok(manifest) => manifest,
        Err(RegistryError::NotFound { .. }) => return Ok(None),
        Err(error @ (RegistryError::Network { .. } | RegistryError::Unauthorized { .. })) => {
            return Err(CacheMiss::Unreachable(Box::new(registry_error(error))));
        }
        Err(error) => return Err(CacheMiss::Unusable(Box::new(registry_error(error)))),
    };
    let unusable = |reason: String| CacheMiss::Unusable(Box::new(Error::user(reason, None)));
    let parsed = check_manifest_layers(&manifest.bytes)
        .map_err(|error| CacheMiss::Unusable(Box::new(error)))?;
    let annotation = |name: &str| parsed.annotations.get(name).map(String::as_str);
    let expected = [
        (LAYER_KEY_ANNOTATION, Some(planned.key.clone())),
        (LAYER_KIND_ANNOTATION, Some(planned.kind.name())),
        (LAYER_PARENT_ANNOTATION, planned.parent.clone()),
        (SOURCE_DATE_EPOCH_ANNOTATION, Some(clamp.to_string())),
    ];
    for (name, value) in expected {
        if annotation(name) != value.as_deref() {
            return Err(unusable(format!(
                "its manifest says {name} {:?}, the plan {:?}",
                annotation(name),
                value
            )));
        }
    }
    let [layer] = parsed.layers.as_slice() else {
        return Err(unusable(format!(
            "its manifest has {} layers, not one",
            parsed.layers.len()
        )));
    };
    let compression = BlobCompression::from_media_type(&layer.media_type).ok_or_else(|| {
        unusable(format!(
            "its layer is `{}`, not a layer tar",
            layer.media_type
        ))
    })?;
    let config = fetch_small_blob(client, &parsed.config.digest)
        .map_err(|error| CacheMiss::Unusable(Box::new(error)))?;
    let expected_config = oci_config(
        architecture,
        &[ImageLayer {
            name: planned.kind.name(),
            key: planned.key.clone(),
            diff_id: String::new(),
            size: 0,
        }],
    );
    let diff_id = single_diff_id(&config, &expected_config)
        .map_err(|reason| unusable(format!("its config {reason}")))?;
    Ok(Some(Wanted {
        name: planned.kind.name(),
        key: planned.key.clone(),
        kind: planned.kind.clone(),
        parent: planned.parent.clone(),
        diff_id,
        blob: LayerBlob {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size,
        },
        foreign: false,
        compression,
    }))
}

/// What `env build --push-cache` sent.
pub struct CachePushed {
    pub sent: usize,
    pub present: usize,
    pub bytes_sent: u64,
}

/// Sends every layer of `image` the cache lacks, each as its own tagged one-layer image.
pub fn push_to_cache(
    cache: &TeamCache,
    image: &Image,
    clamp: u64,
    store: &Store,
) -> Result<CachePushed> {
    let client = cache.client(Access::Push)?;
    let present = AtomicUsize::new(0);
    let bytes_sent = std::sync::Mutex::new(0u64);
    let send = |layer: &ImageLayer| -> Result<()> {
        let tag = layer_tag(&layer.key);
        match client.manifest(&tag) {
            Ok(_) => {
                present.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Err(RegistryError::NotFound { .. }) => {}
            Err(error) => return Err(registry_error(error)),
        }
        let (blob, sent) = send_layer(&client, store, layer, (clamp, LayerCompression::Gzip))?;
        if matches!(sent, Sent::Uploaded { .. })
            && let Ok(mut bytes) = bytes_sent.lock()
        {
            *bytes += blob.size;
        }
        let config = oci_config(&image.architecture, std::slice::from_ref(layer));
        let config_digest = send_config(&client, store, &config)?;
        let parent = store
            .existing_layer(&layer.key)
            .map_err(crate::build::image::BuildError::from)?
            .parent;
        let mut annotations = BTreeMap::from([
            (LAYER_KEY_ANNOTATION, layer.key.clone()),
            (LAYER_KIND_ANNOTATION, layer.name.clone()),
            (SOURCE_DATE_EPOCH_ANNOTATION, clamp.to_string()),
        ]);
        if let Some(parent) = parent {
            annotations.insert(LAYER_PARENT_ANNOTATION, parent);
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len() },
            "layers": [{ "mediaType": blob.media_type, "digest": blob.digest, "size": blob.size }],
            "annotations": annotations,
        });
        let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
        client
            .put_manifest(&tag, OCI_MANIFEST, &manifest)
            .map_err(registry_error)?;
        say(&format!(
            "{}: sent to the team cache ({})",
            layer.name,
            human_bytes(blob.size)
        ));
        Ok(())
    };
    in_parallel(&image.layers, &send)?;
    let present = present.load(Ordering::Relaxed);
    Ok(CachePushed {
        sent: image.layers.len() - present,
        present,
        bytes_sent: bytes_sent.into_inner().unwrap_or_default(),
    })
}
