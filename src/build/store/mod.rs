//! The store: every name in it is spelled in this file only, and the rest of envkit asks
//! [`Store`] for a path (the download cache's names are `crate::cache`'s). The layout is a
//! contract with every existing store (hence the versioned folder names): changing a name here
//! orphans what is already there.
//!
//! ```text
//! <store>/layers-v1/<key>/tree/          the layer, unpacked, mounted read-only by sessions
//! <store>/layers-v1/<key>/layer.json     its diff_id, size, kind and parent
//! <store>/layers-v1/<key>/members.zst    each tar member's path and digest (`build::members`)
//! <store>/layers-v1/<key>/compressed.json the digests of its compressed blobs (`build::export`)
//! <store>/images-v1/<NAME>/<TAG>.json    an image record (`build::image`)
//! <store>/roots-v1/<key>.json            a known env.lock and its image (`build::roots`)
//! <store>/shortcuts-v1/<key>.json        a project's image, found again (`build::shortcut`)
//! <store>/pushed-v1/<NAME>/<TAG>.json    where `env push` last sent that image (`ops::registry`)
//! <store>/tmp/<key>.<pid>/               a layer being built (never under a real name)
//! <store>/tmp/<key>.gc-<pid>/            a layer `env gc` moved aside to delete
//! <store>/locks/<key>.lock               serialises builders of the same layer
//! <store>/logs/<key>.log                 the output of building that layer
//! <store>/gc.lock                        shared by builds and exports, exclusive for `env gc`
//! ```
//! Records (`*.json`) are written atomically by `fetch::write_atomically`, whose temporary
//! files start with a dot and so are never taken for records. How a layer gets under its real
//! name is [`LayerBuild`]'s job; removing trees with read-only folders is [`remove_tree`]'s.

mod layer_build;
mod remove;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::layer_kind::LayerKind;

pub use layer_build::LayerBuild;
pub use remove::{remove_path, remove_tree};

/// The layers' folder; `env verify`'s advice names it.
pub const LAYERS_DIR: &str = "layers-v1";
const IMAGES_DIR: &str = "images-v1";
const ROOTS_DIR: &str = "roots-v1";
const SHORTCUTS_DIR: &str = "shortcuts-v1";
const PUSHED_DIR: &str = "pushed-v1";
const TMP_DIR: &str = "tmp";
const LOCKS_DIR: &str = "locks";
const LOGS_DIR: &str = "logs";
const GC_LOCK: &str = "gc.lock";

const TREE: &str = "tree";
const LAYER_RECORD: &str = "layer.json";
const MEMBERS: &str = "members.zst";
const COMPRESSED_RECORD: &str = "compressed.json";

const RECORD_SUFFIX: &str = ".json";
const LOCK_SUFFIX: &str = ".lock";
const LOG_SUFFIX: &str = ".log";
/// Follows the key's dot in the name of a layer gc moved aside.
const GC_MARK: &str = "gc-";

/// What `layer.json` records about a finished layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub key: String,
    /// `sha256:<hex>` of the layer's canonical OCI tar.
    pub diff_id: String,
    /// Bytes of that tar.
    pub size: u64,
    /// The layer it was built as; its canonical tar depends on it (`TarOptions::for_layer`).
    pub kind: LayerKind,
    /// The parent layer's key, if any.
    pub parent: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the store at `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("layer record `{}` is damaged", path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the store has no layer `{key}`")]
    MissingLayer { key: String },
}

pub(in crate::build) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: &Path) -> Self {
        Store {
            root: root.to_path_buf(),
        }
    }

    /// The store of this user (`ENVKIT_STORE_DIR`, else `store` in the data directory).
    pub fn default_location() -> Self {
        Store::new(&crate::paths::store_dir())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where every finished layer is, one folder per key.
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join(LAYERS_DIR)
    }

    /// The folder of a finished layer: its tree, record and member list.
    pub fn layer_dir(&self, key: &str) -> PathBuf {
        self.layers_dir().join(key)
    }

    /// The unpacked tree of a finished layer.
    pub fn tree(&self, key: &str) -> PathBuf {
        self.layer_dir(key).join(TREE)
    }

    /// The member list of a finished layer (absent in layers built before lists existed).
    pub fn members_path(&self, key: &str) -> PathBuf {
        self.layer_dir(key).join(MEMBERS)
    }

    /// The digests a layer's blobs had when compressed (by compression), so an unchanged
    /// layer is found in a registry without compressing it again.
    pub fn compressed_record(&self, key: &str) -> PathBuf {
        self.layer_dir(key).join(COMPRESSED_RECORD)
    }

    /// The `layer.json` of a finished layer: without it, the folder is not a layer.
    pub fn layer_record_path(&self, key: &str) -> PathBuf {
        self.layer_dir(key).join(LAYER_RECORD)
    }

    /// The record of a finished layer, or `None` when the store does not have it.
    pub fn layer(&self, key: &str) -> Result<Option<LayerRecord>, StoreError> {
        read_record(&self.layer_record_path(key))
    }

    /// The record of a layer an image lists, which must be there.
    pub fn existing_layer(&self, key: &str) -> Result<LayerRecord, StoreError> {
        self.layer(key)?.ok_or_else(|| StoreError::MissingLayer {
            key: key.to_string(),
        })
    }

    /// Keys of every finished layer.
    pub fn layer_keys(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.layers_dir();
        match std::fs::read_dir(&dir) {
            Ok(entries) => Ok(entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(StoreError::Io { path: dir, source }),
        }
    }

    /// Where image records are, one folder per image name (before the colon).
    pub fn images_dir(&self) -> PathBuf {
        self.root.join(IMAGES_DIR)
    }

    /// The record of the image `repository:tag`.
    pub fn image_record(&self, repository: &str, tag: &str) -> PathBuf {
        self.images_dir()
            .join(repository)
            .join(format!("{tag}{RECORD_SUFFIX}"))
    }

    /// Where root records are kept.
    pub fn roots_dir(&self) -> PathBuf {
        self.root.join(ROOTS_DIR)
    }

    /// Where the image `repository:tag` was last pushed, for exports that name it.
    pub fn pushed_record(&self, repository: &str, tag: &str) -> PathBuf {
        self.root
            .join(PUSHED_DIR)
            .join(repository)
            .join(format!("{tag}{RECORD_SUFFIX}"))
    }

    /// The root record named by `key` (derived from the lock file's path).
    pub fn root_record(&self, key: &str) -> PathBuf {
        self.roots_dir().join(format!("{key}{RECORD_SUFFIX}"))
    }

    /// The shortcut named by `key` (derived from the env file's path).
    pub fn shortcut_record(&self, key: &str) -> PathBuf {
        self.root
            .join(SHORTCUTS_DIR)
            .join(format!("{key}{RECORD_SUFFIX}"))
    }

    /// Where build logs are.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join(LOGS_DIR)
    }

    /// Where the output of building `key` is written; kept after a failure so it can be read.
    pub fn log_path(&self, key: &str) -> PathBuf {
        let dir = self.logs_dir();
        let _ = std::fs::create_dir_all(&dir);
        dir.join(format!("{key}{LOG_SUFFIX}"))
    }

    /// The lock file of a layer's key, held while it is built (or checked, or deleted).
    pub fn key_lock_path(&self, key: &str) -> PathBuf {
        self.root
            .join(LOCKS_DIR)
            .join(format!("{key}{LOCK_SUFFIX}"))
    }

    /// The store-wide lock file that keeps `env gc` and builds apart.
    pub fn gc_lock_path(&self) -> PathBuf {
        self.root.join(GC_LOCK)
    }

    /// Where layers are built and deleted, out of the way of their real names.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP_DIR)
    }

    /// The temporary folder this process builds `key` in.
    fn build_temporary(&self, key: &str) -> PathBuf {
        self.tmp_dir().join(format!("{key}.{}", std::process::id()))
    }

    /// Where this process moves the layer `key` to delete it.
    pub fn gc_temporary(&self, key: &str) -> PathBuf {
        self.tmp_dir()
            .join(format!("{key}.{GC_MARK}{}", std::process::id()))
    }
}

/// The key an entry of [`Store::tmp_dir`] belongs to (whether built or deleted there).
pub fn temporary_key(name: &str) -> Option<&str> {
    name.split_once('.')
        .map(|(key, _)| key)
        .filter(|key| !key.is_empty())
}

/// The key whose log an entry of [`Store::logs_dir`] is.
pub fn log_key(name: &str) -> Option<&str> {
    name.strip_suffix(LOG_SUFFIX)
}

/// What a record file is named after (an image's tag, a root's key); `None` for anything else
/// in a records folder, the temporary files of atomic writes included.
pub fn record_stem(name: &str) -> Option<&str> {
    name.strip_suffix(RECORD_SUFFIX)
        .filter(|_| !name.starts_with('.'))
}

/// A JSON record of the store, or `None` when there is no such file.
pub fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Record {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Existing stores and caches are laid out this way; a change here must be deliberate.
    #[test]
    fn the_layout_is_the_one_existing_stores_have() {
        let store = Store::new(Path::new("/s"));
        let cases = [
            (store.tree("k"), "/s/layers-v1/k/tree"),
            (store.layer_record_path("k"), "/s/layers-v1/k/layer.json"),
            (store.members_path("k"), "/s/layers-v1/k/members.zst"),
            (
                store.image_record("app", "0123"),
                "/s/images-v1/app/0123.json",
            ),
            (store.root_record("ab"), "/s/roots-v1/ab.json"),
            (
                store.pushed_record("app", "0123"),
                "/s/pushed-v1/app/0123.json",
            ),
            (store.shortcut_record("cd"), "/s/shortcuts-v1/cd.json"),
            (store.key_lock_path("k"), "/s/locks/k.lock"),
            (store.logs_dir().join("k.log"), "/s/logs/k.log"),
            (store.gc_lock_path(), "/s/gc.lock"),
            (store.tmp_dir(), "/s/tmp"),
        ];
        for (path, expected) in cases {
            assert_eq!(path, Path::new(expected));
        }
        let pid = std::process::id();
        assert_eq!(
            store.gc_temporary("k"),
            PathBuf::from(format!("/s/tmp/k.gc-{pid}"))
        );
        assert_eq!(
            store.build_temporary("k"),
            PathBuf::from(format!("/s/tmp/k.{pid}"))
        );
    }

    #[test]
    fn names_in_the_store_read_back() {
        assert_eq!(temporary_key("k1.4242"), Some("k1"));
        assert_eq!(temporary_key("k1.gc-4242"), Some("k1"));
        assert_eq!(temporary_key(".hidden"), None);
        assert_eq!(temporary_key("nodot"), None);
        assert_eq!(log_key("k1.log"), Some("k1"));
        assert_eq!(log_key("k1.txt"), None);
        assert_eq!(record_stem("0123.json"), Some("0123"));
        assert_eq!(record_stem(".0123.json.partial-7"), None);
        assert_eq!(record_stem(".x.json"), None);
    }
}
