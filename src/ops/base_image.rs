//! An image from a registry as an environment's base (`base image="REF"`): pinned by digest
//! in the lock, its layers pulled into the store, its config handed to sessions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::registry::platform::platform_manifest;
use super::registry::transfer::{ImageManifest, Wanted, fetch_layer, fetch_small_blob};
use super::registry::{Transport, client, in_parallel, parse_reference, registry_error};
use super::{Error, Result, say};
use crate::build::download::human_bytes;
use crate::build::gc::StoreUse;
use crate::build::image::{BaseImage, BuildError, ImageConfig, LayerBlob};
use crate::build::import::BlobCompression;
use crate::build::plan::PlannedLayer;
use crate::build::store::Store;
use crate::cache::Cache;
use crate::registry::{Access, Reference};
use crate::solve::locker::Update;
use crate::solve::lockfile::{Lock, LockedImage};
use crate::solve::repository::Freshness;
use crate::spec::Spec;

/// How a base image's registry is reached: plain HTTP only on this machine's loopback, as
/// Docker treats a local registry.
fn transport(reference: &Reference) -> Transport {
    Transport {
        insecure: reference.is_loopback(),
    }
}

/// The digest `reference` names now for this machine's platform.
pub fn current_digest(reference: &str) -> Result<String> {
    let parsed = parse_reference(reference)?;
    let client = client(&parsed, Access::Pull, transport(&parsed))?;
    let (digest, _) = platform_manifest(&client, &parsed, crate::paths::debian_architecture())?;
    Ok(digest)
}

/// The lock of an environment whose base is the image `reference`: the previous pin when it
/// is for the same reference and `update` does not move everything, else the digest the
/// registry gives now; `packages` solved against what the image has installed.
pub fn lock(
    spec: &Spec,
    reference: &str,
    previous: Option<&Lock>,
    update: &Update,
    freshness: Freshness,
) -> Result<Lock> {
    let kept = previous
        .and_then(|lock| lock.image.as_ref())
        .filter(|image| !matches!(update, Update::Everything) && image.reference == reference)
        .map(|image| image.digest.clone());
    let image = LockedImage {
        reference: reference.to_string(),
        digest: match kept {
            Some(digest) => digest,
            None => current_digest(reference)?,
        },
    };
    if spec.packages.is_empty() {
        return Ok(image_only(image, spec.recommends));
    }
    let store = Store::default_location();
    let system = installed_system(&image, &store)?;
    // Pins of the previous lock hold only while it is on the same image.
    let previous = previous.filter(|lock| lock.image.as_ref() == Some(&image));
    let mut lock = crate::solve::stage::solve_on_image(
        spec,
        &system.release,
        system.status,
        previous,
        update,
        freshness,
    )?;
    lock.image = Some(image);
    Ok(lock)
}

/// The lock of the image alone, nothing added.
fn image_only(image: LockedImage, recommends: bool) -> Lock {
    Lock {
        release: String::new(),
        architecture: crate::paths::debian_architecture().to_string(),
        recommends,
        requested: Vec::new(),
        indexes: Vec::new(),
        image: Some(image),
        packages: Vec::new(),
    }
}

/// What packages are solved against on an image: its Debian release and its dpkg database.
struct InstalledSystem {
    release: String,
    status: String,
}

/// Pulls `image` and reads its `/etc/os-release` and `/var/lib/dpkg/status`.
fn installed_system(image: &LockedImage, store: &Store) -> Result<InstalledSystem> {
    let layers = ensure(&image_only(image.clone(), false), store)?;
    let reference = &image.reference;
    let refused = |why: String| {
        Error::user(
            format!("`packages` cannot be installed on `{reference}`: {why}"),
            Some(
                "packages come from Debian's archive and are installed by the image's dpkg: start from a Debian-based image, or install them in a `setup` step"
                    .into(),
            ),
        )
    };
    let os_release = read_in_image(&layers, "etc/os-release")
        .or_else(|| read_in_image(&layers, "usr/lib/os-release"))
        .ok_or_else(|| refused("it has no /etc/os-release to tell its release".into()))?;
    let release = debian_release(&String::from_utf8_lossy(&os_release)).map_err(refused)?;
    let status = read_in_image(&layers, "var/lib/dpkg/status")
        .ok_or_else(|| refused("it has no dpkg database (/var/lib/dpkg/status)".into()))?;
    Ok(InstalledSystem {
        release,
        status: String::from_utf8_lossy(&status).into_owned(),
    })
}

/// The Debian release an os-release file names, or why it names none.
fn debian_release(os_release: &str) -> std::result::Result<String, String> {
    let field = |name: &str| {
        os_release.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix('=')?;
            Some(value.trim().trim_matches(['"', '\'']).to_string())
        })
    };
    let id = field("ID").unwrap_or_default();
    if id != "debian" {
        let name = field("PRETTY_NAME").unwrap_or_else(|| id.clone());
        return Err(format!("it is {name}, not Debian"));
    }
    field("VERSION_CODENAME")
        .filter(|codename| !codename.is_empty())
        .ok_or_else(|| "its os-release names no VERSION_CODENAME".to_string())
}

/// The content of the file at `relative` in the image made of `layers` (bottom first),
/// following symbolic links inside the image (`/etc/os-release` is one).
fn read_in_image(layers: &[PathBuf], relative: &str) -> Option<Vec<u8>> {
    let mut inside = PathBuf::from("/").join(relative);
    // More links than this in a row is a loop.
    for _ in 0..16 {
        let found = crate::run::layers::find(layers, &inside.to_string_lossy())?;
        let metadata = found.symlink_metadata().ok()?;
        if !metadata.file_type().is_symlink() {
            return std::fs::read(found).ok();
        }
        let target = std::fs::read_link(&found).ok()?;
        let base = inside
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        inside = normalize(&base.join(target));
    }
    None
}

/// `/etc/../usr/lib/os-release` as `/usr/lib/os-release`, never above `/`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            std::path::Component::Normal(part) => out.push(part),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// What envkit keeps of a base image (in the download cache, by manifest digest): enough to
/// plan and pull it again without asking the registry for more than blobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Recorded {
    reference: String,
    digest: String,
    diff_ids: Vec<String>,
    layers: Vec<RecordedLayer>,
    config: ImageConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RecordedLayer {
    media_type: String,
    digest: String,
    size: u64,
}

/// The base image with manifest `digest`, if envkit read it from its registry before.
pub fn recorded(cache_dir: &Path, digest: &str) -> Option<BaseImage> {
    let recorded = read_record(cache_dir, digest)?;
    Some(BaseImage {
        diff_ids: recorded.diff_ids,
        config: recorded.config,
    })
}

fn read_record(cache_dir: &Path, digest: &str) -> Option<Recorded> {
    let bytes = std::fs::read(Cache::new(cache_dir).base_image(digest)).ok()?;
    serde_json::from_slice::<Recorded>(&bytes)
        .ok()
        .filter(|recorded| recorded.digest == digest)
}

/// Makes sure the store holds every layer of the image `lock` pins (when it pins one):
/// its manifest and config read from the registry by digest once, each missing layer
/// downloaded, checked against its digest and diff_id, and unpacked with its whiteouts.
/// Returns the image's layer trees, bottom first.
pub fn ensure(lock: &Lock, store: &Store) -> Result<Vec<PathBuf>> {
    let Some(image) = &lock.image else {
        return Ok(Vec::new());
    };
    let cache_dir = crate::paths::cache_dir();
    let recorded_now = read_record(&cache_dir, &image.digest);
    let trees = |layers: &[PlannedLayer]| layers.iter().map(|l| store.tree(&l.key)).collect();
    let planned_now = match &recorded_now {
        Some(recorded) => Some(image_layers(image, &recorded.diff_ids, store)?),
        None => None,
    };
    if let Some(layers) = &planned_now
        && layers.iter().all(|layer| layer.cached)
    {
        return Ok(trees(layers));
    }
    let reference = parse_reference(&image.reference)?;
    let client = client(&reference, Access::Pull, transport(&reference))?;
    let (recorded, layers) = match (recorded_now, planned_now) {
        (Some(recorded), Some(layers)) => (recorded, layers),
        _ => {
            let recorded = read_from_registry(&client, &reference, image)?;
            let path = Cache::new(&cache_dir).base_image(&image.digest);
            let bytes = serde_json::to_vec_pretty(&recorded).unwrap_or_default();
            crate::fetch::write_bytes_atomically(&path, &bytes).map_err(|error| {
                Error::io(
                    format!("cannot write `{}`", path.display()),
                    std::io::Error::other(error.to_string()),
                )
            })?;
            let layers = image_layers(image, &recorded.diff_ids, store)?;
            (recorded, layers)
        }
    };
    let wanted: Vec<Wanted> = layers
        .iter()
        .enumerate()
        .filter(|(_, layer)| !layer.cached)
        .map(|(index, layer)| -> Result<Wanted> {
            let blob = &recorded.layers[index];
            Ok(Wanted {
                name: layer.kind.name(),
                key: layer.key.clone(),
                kind: layer.kind.clone(),
                parent: layer.parent.clone(),
                diff_id: recorded.diff_ids[index].clone(),
                blob: LayerBlob {
                    media_type: blob.media_type.clone(),
                    digest: blob.digest.clone(),
                    size: blob.size,
                },
                compression: compression(&reference, blob)?,
                foreign: true,
            })
        })
        .collect::<Result<_>>()?;
    let _in_use = StoreUse::acquire(store, &|| say("waiting for `env gc` to finish"))
        .map_err(BuildError::from)?;
    say(&format!(
        "pulling {} layer(s) of {}",
        wanted.len(),
        image.reference
    ));
    in_parallel(&wanted, &|layer: &Wanted| {
        fetch_layer(&client, store, layer, 0)?;
        say(&format!(
            "{}: fetched {}",
            layer.name,
            human_bytes(layer.blob.size)
        ));
        Ok(())
    })?;
    Ok(trees(&layers))
}

/// The store layers of `image` (its diff_ids, bottom first), as the plan keys them.
fn image_layers(
    image: &LockedImage,
    diff_ids: &[String],
    store: &Store,
) -> Result<Vec<PlannedLayer>> {
    let plan = crate::build::plan::plan(
        &image_only(image.clone(), false),
        Some(diff_ids),
        &[],
        &[],
        Path::new("/"),
        "/",
        store,
    )
    .map_err(BuildError::from)?;
    Ok(plan.layers)
}

/// How a layer is compressed; a layer envkit cannot read (a foreign or non-distributable
/// one, whose bytes live elsewhere) is refused by name.
fn compression(reference: &Reference, layer: &RecordedLayer) -> Result<BlobCompression> {
    BlobCompression::from_media_type(&layer.media_type).ok_or_else(|| {
        Error::user(
            format!(
                "`{reference}` has a layer envkit does not pull: {} is `{}`",
                layer.digest, layer.media_type
            ),
            Some(
                "foreign and non-distributable layers (Windows images, mostly) are not served by the registry; choose a Linux image"
                    .into(),
            ),
        )
    })
}

/// The manifest `image.digest` and its config, from the registry, checked.
fn read_from_registry(
    client: &crate::registry::Client,
    reference: &Reference,
    image: &crate::solve::lockfile::LockedImage,
) -> Result<Recorded> {
    let manifest = client.manifest(&image.digest).map_err(registry_error)?;
    if manifest.digest != image.digest {
        return Err(Error::user(
            format!(
                "`{reference}`: the registry sent a manifest whose digest is {}, not the locked {}",
                manifest.digest, image.digest
            ),
            None,
        ));
    }
    let parsed: ImageManifest = serde_json::from_slice(&manifest.bytes).map_err(|error| {
        Error::user(
            format!("`{reference}`: its manifest is damaged: {error}"),
            None,
        )
    })?;
    let config = fetch_small_blob(client, &parsed.config.digest)?;
    let config: OciConfig = serde_json::from_slice(&config).map_err(|error| {
        Error::user(
            format!("`{reference}`: its config is not an image config: {error}"),
            None,
        )
    })?;
    let architecture = crate::paths::debian_architecture();
    let wanted = crate::build::image::oci_architecture(architecture).0;
    if config.architecture != wanted || config.os != "linux" {
        return Err(Error::user(
            format!(
                "`{reference}` is an image for {}/{}, not linux/{wanted}",
                config.os, config.architecture
            ),
            None,
        ));
    }
    if config.rootfs.diff_ids.len() != parsed.layers.len() {
        return Err(Error::user(
            format!(
                "`{reference}`: its config names {} layers and its manifest {}",
                config.rootfs.diff_ids.len(),
                parsed.layers.len()
            ),
            None,
        ));
    }
    let layers: Vec<RecordedLayer> = parsed
        .layers
        .iter()
        .map(|layer| RecordedLayer {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size,
        })
        .collect();
    for layer in &layers {
        compression(reference, layer)?;
    }
    Ok(Recorded {
        reference: image.reference.clone(),
        digest: image.digest.clone(),
        diff_ids: config.rootfs.diff_ids,
        layers,
        config: config.config.unwrap_or_default().into_image_config(),
    })
}

/// An image config as registries serve it (the parts envkit reads).
#[derive(Deserialize)]
struct OciConfig {
    architecture: String,
    os: String,
    rootfs: RootFs,
    config: Option<RunConfig>,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// What the image runs with, in the config's own spelling.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
}

impl RunConfig {
    fn into_image_config(self) -> ImageConfig {
        ImageConfig {
            env: self.env.unwrap_or_default(),
            working_dir: self.working_dir.filter(|dir| !dir.is_empty()),
            user: self.user.filter(|user| !user.is_empty()),
            entrypoint: self.entrypoint,
            cmd: self.cmd,
            // `5432/tcp`; UDP ports are left out (peers link TCP).
            exposed_ports: self
                .exposed_ports
                .unwrap_or_default()
                .keys()
                .filter_map(|port| port.strip_suffix("/tcp").unwrap_or(port).parse().ok())
                .collect(),
            volumes: self.volumes.unwrap_or_default().into_keys().collect(),
            labels: BTreeMap::new(),
            created: None,
        }
    }
}

/// `spec` with what the registry images it and its peers start from declare, where env.kdl is
/// silent: a peer's ports from ExposedPorts, and a named volume (named after its path) for
/// each VOLUME no `volume` or `mount` already covers. Read offline, from the locks and the
/// records of images pulled before; an image not pulled yet declares nothing until it is.
pub fn with_image_declarations(spec: &Spec) -> Spec {
    let mut completed = spec.clone();
    let lock = crate::solve::stage::lock_path(&spec.origin.file);
    declare(&mut completed, &lock, &crate::paths::cache_dir());
    completed
}

/// Whether `spec` or any of its peers starts from a registry image.
pub fn starts_from_an_image(spec: &Spec) -> bool {
    matches!(spec.base, crate::spec::Base::Image { .. })
        || spec
            .peers
            .iter()
            .any(|peer| starts_from_an_image(&peer.spec))
}

/// Whether the lock at `lock` pins a registry image envkit has read the config of.
pub fn is_recorded(spec: &Spec, lock: &Path) -> bool {
    locked_digest(spec, lock)
        .is_some_and(|digest| read_record(&crate::paths::cache_dir(), &digest).is_some())
}

/// The digest the lock at `lock` pins for the image `spec` starts from (none for a lock
/// of another reference: env.kdl changed since).
fn locked_digest(spec: &Spec, lock: &Path) -> Option<String> {
    let crate::spec::Base::Image { reference } = &spec.base else {
        return None;
    };
    crate::solve::stage::read_lock(lock)
        .ok()
        .flatten()
        .and_then(|lock| lock.image)
        .filter(|image| image.reference == *reference)
        .map(|image| image.digest)
}

fn declare(spec: &mut Spec, lock: &Path, cache_dir: &Path) {
    for peer in &mut spec.peers {
        let peer_lock = crate::solve::stage::peer_lock_path(peer);
        declare(&mut peer.spec, &peer_lock, cache_dir);
    }
    let Some(digest) = locked_digest(spec, lock) else {
        return;
    };
    if let Some(image) = recorded(cache_dir, &digest) {
        apply_declarations(spec, &image.config);
    }
}

fn apply_declarations(spec: &mut Spec, config: &ImageConfig) {
    if spec.ports.is_empty() {
        spec.ports = config.exposed_ports.clone();
    }
    for path in &config.volumes {
        // A VOLUME envkit could not mount there (`/`, `/proc`, a relative path) is left
        // to the image's own content, as an anonymous volume would start.
        let Ok(at) = crate::spec::rules::mount_target(path) else {
            continue;
        };
        let covered = spec.volumes.iter().any(|volume| volume.at == at)
            || spec.mounts.iter().any(|mount| mount.at == at);
        let stem = crate::spec::rules::sanitize_host_name(&at);
        if covered || stem.is_empty() {
            continue;
        }
        // A `volume` of env.kdl may already have the name: the image's takes the next free.
        let taken = |name: &str| spec.volumes.iter().any(|v| v.name == name);
        let name = std::iter::once(stem.clone())
            .chain((2..).map(|n| format!("{stem}-{n}")))
            .find(|name| !taken(name))
            .unwrap_or(stem);
        spec.volumes.push(crate::spec::Volume { name, at });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_comes_from_a_debian_os_release_only() {
        let bookworm = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        assert_eq!(debian_release(bookworm).unwrap(), "bookworm");
        let ubuntu =
            "PRETTY_NAME=\"Ubuntu 24.04 LTS\"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n";
        assert_eq!(
            debian_release(ubuntu).unwrap_err(),
            "it is Ubuntu 24.04 LTS, not Debian"
        );
        assert_eq!(
            debian_release("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux\"\n").unwrap_err(),
            "its os-release names no VERSION_CODENAME"
        );
    }

    #[test]
    fn an_image_declares_ports_and_volumes_where_env_kdl_is_silent() {
        let mut spec = crate::spec::load_text(
            Path::new("/project/env.kdl"),
            "base image=\"postgres:16\"\nvolume \"var-lib-postgresql-data\" at=\"/srv\"\nvolume \"logs\" at=\"/var/log\"\n",
        )
        .unwrap()
        .spec;
        let config = ImageConfig {
            exposed_ports: vec![5432],
            volumes: vec![
                "/var/lib/postgresql/data".into(),
                "/var/log/".into(),
                "relative".into(),
                "/proc".into(),
            ],
            ..ImageConfig::default()
        };
        apply_declarations(&mut spec, &config);
        apply_declarations(&mut spec, &config);
        assert_eq!(spec.ports, [5432]);
        let volumes: Vec<(&str, &str)> = spec
            .volumes
            .iter()
            .map(|v| (v.name.as_str(), v.at.as_str()))
            .collect();
        assert_eq!(
            volumes,
            [
                ("var-lib-postgresql-data", "/srv"),
                ("logs", "/var/log"),
                ("var-lib-postgresql-data-2", "/var/lib/postgresql/data"),
            ],
            "covered, unmountable and repeated paths add nothing"
        );
    }

    #[test]
    fn files_are_read_through_the_images_own_links_and_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("lower");
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(lower.join("usr/lib")).unwrap();
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(lower.join("usr/lib/os-release"), "ID=debian\n").unwrap();
        // The link is in the upper layer, its target in the lower: resolved in the image,
        // not on the host or in one layer.
        std::os::unix::fs::symlink("../usr/lib/os-release", upper.join("etc/os-release")).unwrap();
        std::fs::write(lower.join("etc/hostname"), "gone\n").unwrap();
        nix::sys::stat::mknod(
            &upper.join("etc/hostname"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .ok();
        let layers = [lower, upper.clone()];
        assert_eq!(
            read_in_image(&layers, "etc/os-release").unwrap(),
            b"ID=debian\n"
        );
        if upper.join("etc/hostname").exists() {
            assert_eq!(read_in_image(&layers, "etc/hostname"), None, "whited out");
        }
        std::os::unix::fs::symlink("/../../../../etc/loop", upper.join("etc/loop")).unwrap();
        assert_eq!(read_in_image(&layers, "etc/loop"), None, "a loop ends");
    }
}
