//! `Lock` + the spec's setup steps -> an `Image` in the store: plan, download what is
//! missing, build the layers the store lacks, then record the image.
//!
//! An image is named `NAME:LOCKHASH12` (the env's name, and the first 12 hex digits of blake3
//! of the lock text plus the setup steps' layer keys); its id is the SHA-256 of its OCI
//! manifest, whose layers are the uncompressed canonical layer tars (so each layer's digest is
//! its diff_id). Image records live in the store, by name and tag ([`Store::image_record`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::fetch::Fetcher;
use crate::mirror::Mirrors;
use crate::solve::lockfile::{Layer, Lock, LockedPackage};
use crate::spec::SetupStep;

use super::base::{BaseError, build_base, source_date_epoch};
use super::download::{DownloadError, download};
use super::layer_kind::LayerKind;
use super::layer_tar::{LayerTarError, TarOptions, layer_digest};
use super::layers::{OverlayScratch, build_packages, build_setup};
use super::members::{self, MembersError};
use super::plan::{BuildPlan, PlanError, plan};
use super::store::{LayerRecord, Store, StoreError, record_stem};

/// One layer of a built image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLayer {
    /// `base`, `packages-1`, ..., `setup-1`, ...
    pub name: String,
    pub key: String,
    pub diff_id: String,
    pub size: u64,
}

/// A built image: what `env images` and `env inspect` report, and what run mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `NAME:LOCKHASH12`.
    pub name: String,
    /// `sha256:<hex>` of the OCI manifest.
    pub id: String,
    pub architecture: String,
    /// Bottom first.
    pub layers: Vec<ImageLayer>,
    /// What the registry image the environment starts from runs with (its Env, WorkingDir,
    /// User, Entrypoint, Cmd, ExposedPorts and Volumes), which sessions honour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_config: Option<ImageConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error("cannot build the {layer} layer")]
    Layer {
        layer: String,
        #[source]
        source: BaseError,
    },
    #[error("cannot compute the {layer} layer's digest")]
    Digest {
        layer: String,
        #[source]
        source: LayerTarError,
    },
    #[error("cannot build the {layer} layer")]
    Copy {
        layer: String,
        #[source]
        source: super::copy::CopyError,
    },
    /// Image layers are pulled, never built: one missing here was not pulled first.
    #[error("the {layer} layer (key {key}) of the base image is not in the store")]
    ImageLayerMissing { layer: String, key: String },
    #[error(transparent)]
    Import(#[from] super::import::ImportError),
    #[error(transparent)]
    Members(#[from] MembersError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BuildError {
    /// The record found damaged, when that is what stopped the build.
    pub fn damaged_record(&self) -> Option<&std::path::Path> {
        match self {
            BuildError::Store(StoreError::Record { path, .. })
            | BuildError::Plan(super::plan::PlanError::Store(StoreError::Record {
                path, ..
            })) => Some(path),
            _ => None,
        }
    }
}

/// A registry image an environment starts from, as a build needs it: its layers' diff_ids,
/// bottom first, as its config lists them (the layers themselves are put into the store
/// before the build, by whoever pulls them), and what it runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    pub diff_ids: Vec<String>,
    pub config: ImageConfig,
}

/// What the image is built from.
pub struct BuildInputs<'a> {
    /// The environment's name (image name before the colon).
    pub name: &'a str,
    pub lock: &'a Lock,
    /// The image the lock pins, when it pins one.
    pub base_image: Option<&'a BaseImage>,
    pub setup: &'a [SetupStep],
    pub copies: &'a [crate::spec::CopyFiles],
    /// The env file's folder: setup inputs are relative to it, setup steps see it.
    pub project_dir: &'a Path,
    /// Where setup steps see the project (the env's mount of `.`, or `/work`).
    pub project_at: &'a str,
    pub mirrors: &'a Mirrors,
    pub cache_dir: &'a Path,
}

/// Progress worth telling the user, as it happens.
pub enum Event<'a> {
    Building { layer: &'a str },
    Built { layer: &'a str, seconds: f64 },
}

/// The plan for these inputs (for `--dry-run`, and the first step of [`build`]).
pub fn build_plan(inputs: &BuildInputs<'_>, store: &Store) -> Result<BuildPlan, BuildError> {
    Ok(plan(
        inputs.lock,
        inputs.base_image.map(|image| image.diff_ids.as_slice()),
        inputs.setup,
        inputs.copies,
        inputs.project_dir,
        inputs.project_at,
        store,
    )?)
}

/// Builds what the store lacks and records the image.
pub fn build(
    inputs: &BuildInputs<'_>,
    store: &Store,
    on_event: &dyn Fn(Event<'_>),
) -> Result<Image, BuildError> {
    let plan = build_plan(inputs, store)?;
    let epoch = source_date_epoch(inputs.lock);
    // Only the `.deb`s of the package layers to build: a changed setup step needs none.
    let groups = inputs.lock.groups();
    let needed: Vec<&LockedPackage> = plan
        .layers
        .iter()
        .filter(|layer| !layer.cached)
        .flat_map(|layer| -> Vec<&LockedPackage> {
            match layer.kind {
                LayerKind::Base => inputs.lock.layer(Layer::Base).collect(),
                LayerKind::Packages(group) => groups.get(&group).cloned().unwrap_or_default(),
                LayerKind::Setup(_) | LayerKind::Copy(_) | LayerKind::Image(_) => Vec::new(),
            }
        })
        .collect();
    if !needed.is_empty() {
        download(
            &needed,
            inputs.lock,
            inputs.mirrors,
            inputs.cache_dir,
            &Fetcher::new(),
        )?;
    }
    let mut lowers: Vec<PathBuf> = Vec::new();
    let mut layers = Vec::new();
    for planned in &plan.layers {
        let name = planned.kind.name();
        if let Some(build) = store.begin(&planned.key)? {
            on_event(Event::Building { layer: &name });
            let started = Instant::now();
            let tree = build.tree();
            let log = store.log_path(&planned.key);
            let _ = std::fs::remove_file(&log);
            let layer_error = |source| BuildError::Layer {
                layer: name.clone(),
                source,
            };
            match &planned.kind {
                LayerKind::Image(_) => {
                    return Err(BuildError::ImageLayerMissing {
                        layer: name.clone(),
                        key: planned.key.clone(),
                    });
                }
                LayerKind::Base => build_base(&tree, inputs.lock, inputs.cache_dir, epoch, &log)
                    .map_err(layer_error)?,
                LayerKind::Packages(group) => {
                    let scratch = OverlayScratch {
                        merged: build.scratch("merged"),
                        work: build.scratch("work"),
                    };
                    build_packages(
                        &tree,
                        &scratch,
                        &top_first(&lowers),
                        groups.get(group).map_or(&[], Vec::as_slice),
                        inputs.cache_dir,
                        epoch,
                        &log,
                    )
                    .map_err(layer_error)?;
                }
                LayerKind::Copy(_) => {
                    let entries = planned.copy.as_deref().unwrap_or_default();
                    super::copy::write(&tree, entries, epoch).map_err(|source| {
                        BuildError::Copy {
                            layer: name.clone(),
                            source,
                        }
                    })?;
                }
                LayerKind::Setup(index) => {
                    let scratch = OverlayScratch {
                        merged: build.scratch("merged"),
                        work: build.scratch("work"),
                    };
                    let command = &inputs.setup[*index].command;
                    build_setup(
                        &tree,
                        &scratch,
                        &top_first(&lowers),
                        command,
                        inputs.project_dir,
                        inputs.project_at,
                        epoch,
                        &log,
                    )
                    .map_err(layer_error)?;
                }
            }
            let digest = layer_digest(&tree, &TarOptions::for_layer(&planned.kind, epoch))
                .map_err(|source| BuildError::Digest {
                    layer: name.clone(),
                    source,
                })?;
            members::write(&build.members_path(), &digest.members)?;
            let record = LayerRecord {
                key: planned.key.clone(),
                diff_id: digest.diff_id,
                size: digest.size,
                kind: planned.kind.clone(),
                parent: planned.parent.clone(),
            };
            build.publish(&record)?;
            on_event(Event::Built {
                layer: &name,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        let record = store.layer(&planned.key)?.ok_or_else(|| StoreError::Io {
            path: store.tree(&planned.key),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "layer missing right after it was built",
            ),
        })?;
        lowers.push(store.tree(&planned.key));
        layers.push(ImageLayer {
            name,
            key: planned.key.clone(),
            diff_id: record.diff_id,
            size: record.size,
        });
    }
    let image = describe(inputs, &plan, layers);
    record_image(store, &image)?;
    Ok(image)
}

/// Overlay wants the topmost lower layer first.
fn top_first(lowers: &[PathBuf]) -> Vec<PathBuf> {
    lowers.iter().rev().cloned().collect()
}

/// `NAME:TAG`: the tag is blake3 of the lock text and the layer keys, 12 hex digits.
pub fn image_name(inputs: &BuildInputs<'_>, plan: &BuildPlan) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(inputs.lock.render().as_bytes());
    for layer in &plan.layers {
        hasher.update(layer.key.as_bytes());
    }
    format!("{}:{}", inputs.name, &hasher.finalize().to_hex()[..12])
}

/// The image's name, and its id from the OCI config and manifest.
fn describe(inputs: &BuildInputs<'_>, plan: &BuildPlan, layers: Vec<ImageLayer>) -> Image {
    Image {
        name: image_name(inputs, plan),
        id: image_id(&inputs.lock.architecture, &layers),
        architecture: inputs.lock.architecture.clone(),
        layers,
        base_config: inputs.base_image.map(|image| image.config.clone()),
    }
}

/// Media type of an uncompressed layer tar, as the image's own manifest lists its layers.
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// A layer blob as a manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    pub media_type: String,
    /// `sha256:<hex>` of the blob.
    pub digest: String,
    pub size: u64,
}

/// What an image runs with when an engine starts it: the OCI config's `config` object. The
/// store's own images carry [`ImageConfig::minimal`] (their ids cover it); an exported or
/// pushed image carries what its env file says.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// `NAME=value`, in order.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub exposed_ports: Vec<u16>,
    /// Paths inside the image.
    pub volumes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339; left out when `None`, so the bytes do not depend on the clock.
    pub created: Option<String>,
}

/// The `PATH` Debian's images and Docker's set.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ImageConfig {
    /// What the store's images say: the default PATH and bash.
    pub fn minimal() -> ImageConfig {
        ImageConfig {
            env: vec![DEFAULT_PATH.to_string()],
            cmd: Some(vec!["/bin/bash".to_string()]),
            ..ImageConfig::default()
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut config = serde_json::Map::new();
        let mut put = |key: &str, value: serde_json::Value| {
            config.insert(key.to_string(), value);
        };
        if !self.env.is_empty() {
            put("Env", json!(self.env));
        }
        if let Some(dir) = &self.working_dir {
            put("WorkingDir", json!(dir));
        }
        if let Some(user) = &self.user {
            put("User", json!(user));
        }
        if let Some(entrypoint) = &self.entrypoint {
            put("Entrypoint", json!(entrypoint));
        }
        if let Some(cmd) = &self.cmd {
            put("Cmd", json!(cmd));
        }
        if !self.exposed_ports.is_empty() {
            let ports: serde_json::Map<String, serde_json::Value> = self
                .exposed_ports
                .iter()
                .map(|port| (format!("{port}/tcp"), json!({})))
                .collect();
            put("ExposedPorts", serde_json::Value::Object(ports));
        }
        if !self.volumes.is_empty() {
            let volumes: serde_json::Map<String, serde_json::Value> = self
                .volumes
                .iter()
                .map(|path| (path.clone(), json!({})))
                .collect();
            put("Volumes", serde_json::Value::Object(volumes));
        }
        if !self.labels.is_empty() {
            put("Labels", json!(self.labels));
        }
        serde_json::Value::Object(config)
    }
}

/// The image's OCI config as the store's image id covers it: architecture, diff_ids (bottom
/// first) and [`ImageConfig::minimal`]. The bytes are part of every id, so any change to them
/// changes every id.
pub fn oci_config(architecture: &str, layers: &[ImageLayer]) -> Vec<u8> {
    oci_config_with(architecture, layers, &ImageConfig::minimal())
}

/// The OCI config of an image with these layers that runs as `runtime` says.
pub fn oci_config_with(
    architecture: &str,
    layers: &[ImageLayer],
    runtime: &ImageConfig,
) -> Vec<u8> {
    let mut config = json!({
        "architecture": oci_architecture(architecture).0,
        "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>() },
        "config": runtime.to_json(),
    });
    if let Some(created) = &runtime.created {
        config["created"] = json!(created);
    }
    serde_json::to_vec(&config).unwrap_or_default()
}

/// OCI's name for a Debian architecture, and its variant where OCI names one (Go's names:
/// `386` for `i386`, `arm` v7 for `armhf`, `ppc64le` for `ppc64el`).
pub fn oci_architecture(debian: &str) -> (&str, Option<&'static str>) {
    match debian {
        "i386" => ("386", None),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v5")),
        "arm64" => ("arm64", Some("v8")),
        "ppc64el" => ("ppc64le", None),
        "mips64el" => ("mips64le", None),
        other => (other, None),
    }
}

/// The platform an image index names for an image of this Debian architecture.
pub fn oci_platform(debian: &str) -> serde_json::Value {
    let (architecture, variant) = oci_architecture(debian);
    match variant {
        Some(variant) => json!({ "architecture": architecture, "os": "linux", "variant": variant }),
        None => json!({ "architecture": architecture, "os": "linux" }),
    }
}

/// An OCI manifest for a config (its bytes) and layer blobs (bottom first).
pub fn oci_manifest(config: &[u8], layers: &[LayerBlob]) -> Vec<u8> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", crate::fetch::sha256_hex(config)), "size": config.len() },
        "layers": layers.iter().map(|l| json!({ "mediaType": l.media_type, "digest": l.digest, "size": l.size })).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&manifest).unwrap_or_default()
}

/// The image id: SHA-256 of the manifest listing the uncompressed layer tars (so each layer's
/// digest is its diff_id).
pub fn image_id(architecture: &str, layers: &[ImageLayer]) -> String {
    let blobs: Vec<LayerBlob> = layers
        .iter()
        .map(|l| LayerBlob {
            media_type: LAYER_TAR.into(),
            digest: l.diff_id.clone(),
            size: l.size,
        })
        .collect();
    let manifest = oci_manifest(&oci_config(architecture, layers), &blobs);
    format!("sha256:{}", crate::fetch::sha256_hex(&manifest))
}

/// Where the record of the image `NAME:TAG` is kept.
pub fn image_path(store: &Store, name: &str) -> PathBuf {
    let (repository, tag) = split_name(name);
    store.image_record(repository, tag)
}

/// An image's name (`NAME:TAG`) as its repository and tag (`latest` when it has none).
pub fn split_name(name: &str) -> (&str, &str) {
    name.split_once(':').unwrap_or((name, "latest"))
}

/// Records `image` under its name, so the project finds it built.
pub fn record_image(store: &Store, image: &Image) -> Result<(), StoreError> {
    let path = image_path(store, &image.name);
    let bytes = serde_json::to_vec_pretty(image).map_err(|source| StoreError::Record {
        path: path.clone(),
        source,
    })?;
    crate::fetch::write_bytes_atomically(&path, &bytes).map_err(|e| StoreError::Io {
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// The image of this name, if the store has it.
pub fn find_image(store: &Store, name: &str) -> Result<Option<Image>, StoreError> {
    super::store::read_record(&image_path(store, name))
}

/// Every image in the store, sorted by name.
pub fn list_images(store: &Store) -> Result<Vec<Image>, StoreError> {
    let mut images = Vec::new();
    let root = store.images_dir();
    let Ok(repositories) = std::fs::read_dir(&root) else {
        return Ok(images);
    };
    for repository in repositories.flatten() {
        for tag in std::fs::read_dir(repository.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = tag.path();
            if record_stem(&tag.file_name().to_string_lossy()).is_some() {
                let bytes = std::fs::read(&path).map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?;
                images.push(serde_json::from_slice(&bytes).map_err(|source| {
                    StoreError::Record {
                        path: path.clone(),
                        source,
                    }
                })?);
            }
        }
    }
    images.sort_by(|a: &Image, b: &Image| a.name.cmp(&b.name));
    Ok(images)
}

/// Images made by hand for the tests of what reads them (verify, export).
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    use super::{Image, ImageLayer, image_id};
    use crate::build::layer_kind::LayerKind;
    use crate::build::layer_tar::{TarOptions, layer_digest};
    use crate::build::store::{LayerRecord, Store};

    /// Builds and publishes the layer `key` whose tree `fill` makes, with its member list when
    /// `with_members`; returns it as an image names it.
    pub fn publish_layer(
        store: &Store,
        kind: LayerKind,
        name: &str,
        key: &str,
        clamp: u64,
        with_members: bool,
        fill: impl FnOnce(&Path),
    ) -> ImageLayer {
        let build = store.begin(key).unwrap().unwrap();
        fill(&build.tree());
        let digest = layer_digest(&build.tree(), &TarOptions::for_layer(&kind, clamp)).unwrap();
        if with_members {
            crate::build::members::write(&build.members_path(), &digest.members).unwrap();
        }
        build
            .publish(&LayerRecord {
                key: key.into(),
                diff_id: digest.diff_id.clone(),
                size: digest.size,
                kind,
                parent: None,
            })
            .unwrap();
        ImageLayer {
            name: name.into(),
            key: key.into(),
            diff_id: digest.diff_id,
            size: digest.size,
        }
    }

    /// The image `app:0123456789ab` of these layers.
    pub fn image_of(layers: Vec<ImageLayer>) -> Image {
        Image {
            name: "app:0123456789ab".into(),
            id: image_id("amd64", &layers),
            architecture: "amd64".into(),
            layers,
            base_config: None,
        }
    }
}
