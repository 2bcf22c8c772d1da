//! What `env push`, `env pull` (`ops::push`, `ops::pull`) and the team cache share: the
//! annotations, the client for a reference, and moving layers ([`transfer`]).
//!
//! A pushed image is an index for its one platform, pointing at a manifest whose config is the
//! image's own (the bytes its id covers) and whose layers are the canonical layer tars,
//! compressed. Each layer carries annotations naming its store key and kind, and the
//! manifest the image's envkit name and the time its files are clamped to, so a pull puts
//! every layer under the key a build would give it: the project then finds its image and
//! builds nothing. A pulled layer is unpacked into the store and must give its config's
//! diff_id again, or it is refused.

pub mod platform;
pub mod pushed;
mod team_cache;
pub mod transfer;

pub use team_cache::{
    CachePushed, TEAM_CACHE_INSECURE_VAR, TEAM_CACHE_VAR, TeamCache, fill_from_cache, push_to_cache,
};

use super::{Error, Result};
use crate::registry::{Access, Client, Reference, RegistryError};

/// Annotations envkit writes on what it pushes.
pub const IMAGE_NAME_ANNOTATION: &str = "dev.envkit.image.name";
pub const SOURCE_DATE_EPOCH_ANNOTATION: &str = "dev.envkit.source-date-epoch";
pub const LAYER_KEY_ANNOTATION: &str = "dev.envkit.layer.key";
pub const LAYER_KIND_ANNOTATION: &str = "dev.envkit.layer.kind";

pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Blobs sent or fetched at once.
const PARALLEL_TRANSFERS: usize = 4;

/// How to reach the registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Transport {
    /// Plain HTTP, for a registry on this machine's loopback only.
    pub insecure: bool,
}

pub(crate) fn registry_error(error: RegistryError) -> Error {
    let hint = error.hint();
    if error.is_user_error() {
        Error::user(error.to_string(), hint)
    } else {
        Error::Registry(error)
    }
}

pub(crate) fn parse_reference(text: &str) -> Result<Reference> {
    Reference::parse(text).map_err(|error| registry_error(error.into()))
}

pub(crate) fn client(
    reference: &Reference,
    access: Access,
    transport: Transport,
) -> Result<Client> {
    let credentials = crate::registry::auth::credentials_for(&reference.registry)
        .map_err(|error| registry_error(error.into()))?;
    Client::new(reference, access, transport.insecure, credentials).map_err(registry_error)
}

/// Runs `work` on each item, [`PARALLEL_TRANSFERS`] at a time; the results in the items'
/// order, or the first error (the other workers stop at their next item).
pub(crate) fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    work: &(dyn Fn(&T) -> Result<R> + Sync),
) -> Result<Vec<R>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_TRANSFERS.min(items.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else {
                        break;
                    };
                    match work(item) {
                        Ok(result) => {
                            if let Ok(mut results) = results.lock() {
                                results[index] = Some(result);
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
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .collect::<Option<Vec<R>>>()
        .ok_or_else(|| Error::io("a transfer was lost", std::io::Error::other("no result")))
}
