//! What the live roots reach, which gc keeps: the images they name, those images' layers with
//! every parent, and the `.deb`s and base image records their locks name.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use crate::build::image::{Image, image_path};
use crate::build::roots::LiveRoot;
use crate::build::store::{Store, StoreError, read_record};

#[derive(Debug, Default)]
pub(super) struct Reach {
    /// The records of the images live roots name, where they can be read.
    pub images: HashSet<PathBuf>,
    /// Those images' layers, and every layer's parents.
    pub layers: BTreeSet<String>,
    /// What of the download cache the live locks need; `None` when a live lock cannot be
    /// read, since it may need any of it.
    pub downloads: Option<Needed>,
    /// Things the user should know (a damaged record, a lock that cannot be read).
    pub warnings: Vec<String>,
}

/// What `live` reaches in `store`.
pub(super) fn reach(store: &Store, live: &[LiveRoot]) -> Result<Reach, StoreError> {
    let mut reach = Reach::default();
    let names: BTreeSet<&str> = live.iter().map(|l| l.root.image.as_str()).collect();
    for name in names {
        let path = image_path(store, name);
        match read_record::<Image>(&path) {
            Ok(Some(image)) => {
                reach.layers.extend(image.layers.into_iter().map(|l| l.key));
                reach.images.insert(path);
            }
            // Deleted by hand; nothing to keep.
            Ok(None) => {}
            Err(StoreError::Record { .. }) => reach
                .warnings
                .push(format!("the record of image {name} is damaged")),
            Err(error) => return Err(error),
        }
    }
    // A layer is usable only with its parents.
    let mut pending: Vec<String> = reach.layers.iter().cloned().collect();
    while let Some(key) = pending.pop() {
        if let Ok(Some(record)) = store.layer(&key)
            && let Some(parent) = record.parent
            && reach.layers.insert(parent.clone())
        {
            pending.push(parent);
        }
    }
    reach.downloads = needed_downloads(live, &mut reach.warnings);
    Ok(reach)
}

/// What the live locks name in the download cache.
#[derive(Debug, Default)]
pub(super) struct Needed {
    /// SHA-256s (lowercase) of `.deb`s.
    pub debs: HashSet<String>,
    /// Manifest digests of registry images pinned as bases, whose records are kept.
    pub base_images: HashSet<String>,
}

/// The `.deb`s and base images the live locks name, or `None` (and a warning) when one
/// cannot be read.
fn needed_downloads(live: &[LiveRoot], warnings: &mut Vec<String>) -> Option<Needed> {
    let mut needed = Needed::default();
    for root in live {
        let lock = std::str::from_utf8(&root.lock_bytes)
            .map_err(|e| e.to_string())
            .and_then(|text| crate::solve::lockfile::Lock::parse(text).map_err(|e| e.to_string()));
        match lock {
            Ok(lock) => {
                needed.debs.extend(
                    lock.packages
                        .into_iter()
                        .map(|p| p.sha256.to_ascii_lowercase()),
                );
                needed
                    .base_images
                    .extend(lock.image.map(|image| image.digest));
            }
            Err(error) => {
                warnings.push(format!(
                    "cannot read `{}` ({error}), so no download was deleted",
                    root.root.lock.display()
                ));
                return None;
            }
        }
    }
    Some(needed)
}
