//! The content-addressed layer store: one module owns its layout.
//!
//! ```text
//! <store>/layers-v1/<key>/tree/        the layer, unpacked, mounted read-only by sessions
//! <store>/layers-v1/<key>/layer.json   its diff_id, size and what it was built from
//! <store>/layers-v1/<key>/members.zst  each tar member's path and digest (`build::members`)
//! <store>/tmp/<key>.<pid>/             a layer being built (never under a real name)
//! <store>/locks/<key>.lock             serialises builders of the same layer
//! ```
//! A layer appears under `layers-v1/<key>` only by renaming a finished temporary directory
//! after its file system was synced, so
//! an interrupted build (Ctrl-C, kill -9, power loss) leaves nothing under a real name;
//! leftovers in `tmp/` are removed by the next builder of the same key (which holds its lock,
//! so the leftover cannot belong to a live builder) and by `env gc`.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const MEMBERS: &str = "members.zst";

/// What `layer.json` records about a finished layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub key: String,
    /// `sha256:<hex>` of the layer's canonical OCI tar.
    pub diff_id: String,
    /// Bytes of that tar.
    pub size: u64,
    /// `base`, `packages` or `setup`.
    pub kind: String,
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
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
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

/// The right to build one layer: held while its temporary tree is filled and published.
pub struct LayerBuild {
    key: String,
    temporary: PathBuf,
    store: Store,
    _lock: File,
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

    fn layer_dir(&self, key: &str) -> PathBuf {
        self.root.join("layers-v1").join(key)
    }

    /// The unpacked tree of a finished layer.
    pub fn tree(&self, key: &str) -> PathBuf {
        self.layer_dir(key).join("tree")
    }

    /// The member list of a finished layer (absent in layers built before lists existed).
    pub fn members_path(&self, key: &str) -> PathBuf {
        self.layer_dir(key).join(MEMBERS)
    }

    /// The record of a finished layer, or `None` when the store does not have it.
    pub fn layer(&self, key: &str) -> Result<Option<LayerRecord>, StoreError> {
        read_record(&self.layer_dir(key).join("layer.json"))
    }

    /// Starts building `key`: waits for any other builder of the same key, and returns `None`
    /// when that builder (or an earlier run) finished it meanwhile.
    pub fn begin(&self, key: &str) -> Result<Option<LayerBuild>, StoreError> {
        let locks = self.root.join("locks");
        std::fs::create_dir_all(&locks).map_err(io(&locks))?;
        let lock_path = locks.join(format!("{key}.lock"));
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        if self.layer(key)?.is_some() {
            return Ok(None);
        }
        let tmp = self.root.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        // Holding the key's lock, every leftover for this key is from a dead builder.
        for entry in std::fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{key}."))
            {
                remove_tree(&entry.path())?;
            }
        }
        let temporary = tmp.join(format!("{key}.{}", std::process::id()));
        let tree = temporary.join("tree");
        std::fs::create_dir_all(&tree).map_err(io(&tree))?;
        Ok(Some(LayerBuild {
            key: key.to_string(),
            temporary,
            store: self.clone(),
            _lock: lock,
        }))
    }

    /// Where the output of building `key` is written; kept after a failure so it can be read.
    pub fn log_path(&self, key: &str) -> PathBuf {
        let dir = self.root.join("logs");
        let _ = std::fs::create_dir_all(&dir);
        dir.join(format!("{key}.log"))
    }

    /// Keys of every finished layer.
    pub fn layer_keys(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root.join("layers-v1");
        match std::fs::read_dir(&dir) {
            Ok(entries) => Ok(entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(StoreError::Io { path: dir, source }),
        }
    }
}

impl LayerBuild {
    /// Where the layer's files go while it is built.
    pub fn tree(&self) -> PathBuf {
        self.temporary.join("tree")
    }

    /// Where the layer's member list goes before it is published.
    pub fn members_path(&self) -> PathBuf {
        self.temporary.join(MEMBERS)
    }

    /// A scratch path beside the tree (overlay mount points, logs), gone when the build ends.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.temporary.join(name);
        let _ = std::fs::create_dir_all(&path);
        path
    }

    /// Records the layer and moves it under its real name in one rename.
    pub fn publish(self, record: &LayerRecord) -> Result<(), StoreError> {
        // Only the tree, its member list and its record are kept.
        for entry in std::fs::read_dir(&self.temporary)
            .map_err(io(&self.temporary))?
            .flatten()
        {
            if entry.file_name() != "tree" && entry.file_name() != MEMBERS {
                remove_tree(&entry.path())?;
            }
        }
        // Layers are written without per-file fsync (dpkg runs with --force-unsafe-io); one
        // syncfs makes every file of the tree durable before the rename can publish it.
        let tree = self.tree();
        File::open(&tree)
            .and_then(|dir| nix::unistd::syncfs(&dir).map_err(std::io::Error::from))
            .map_err(io(&tree))?;
        let record_path = self.temporary.join("layer.json");
        let json = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Record {
            path: record_path.clone(),
            source,
        })?;
        std::fs::write(&record_path, json).map_err(io(&record_path))?;
        File::open(&record_path)
            .and_then(|f| f.sync_all())
            .map_err(io(&record_path))?;
        let destination = self.store.layer_dir(&self.key);
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::rename(&self.temporary, &destination).map_err(io(&destination))?;
        // The rename is durable only once the directory holding it is synced.
        if let Some(parent) = destination.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io(parent))?;
        }
        Ok(())
    }
}

impl Drop for LayerBuild {
    /// A build that was not published leaves no temporary tree behind.
    fn drop(&mut self) {
        if self.temporary.exists() {
            let _ = remove_tree(&self.temporary);
        }
    }
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

/// Removes a tree, first making read-only directories writable (layers hold some).
pub fn remove_tree(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return Ok(());
    }
    // Breadth first, opening each directory before listing it.
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            pending.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    std::fs::remove_dir_all(path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str) -> LayerRecord {
        LayerRecord {
            key: key.into(),
            diff_id: "sha256:00".into(),
            size: 1,
            kind: "base".into(),
            parent: None,
        }
    }

    #[test]
    fn a_layer_appears_only_when_published() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let build = store.begin("k1").unwrap().unwrap();
        std::fs::write(build.tree().join("file"), b"x").unwrap();
        assert!(store.layer("k1").unwrap().is_none());
        build.publish(&record("k1")).unwrap();
        assert_eq!(store.layer("k1").unwrap(), Some(record("k1")));
        assert_eq!(std::fs::read(store.tree("k1").join("file")).unwrap(), b"x");
        assert!(store.begin("k1").unwrap().is_none(), "already built");
        assert_eq!(store.layer_keys().unwrap(), ["k1"]);
    }

    #[test]
    fn an_abandoned_build_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        {
            let build = store.begin("k2").unwrap().unwrap();
            std::fs::create_dir(build.tree().join("sub")).unwrap();
        }
        assert!(store.layer("k2").unwrap().is_none());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn leftovers_of_a_killed_builder_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        // What kill -9 leaves: a temporary tree from another process, no record.
        std::fs::create_dir_all(dir.path().join("tmp/k3.99999/tree/usr")).unwrap();
        let build = store.begin("k3").unwrap().unwrap();
        assert!(!dir.path().join("tmp/k3.99999").exists());
        build.publish(&record("k3")).unwrap();
        assert!(store.layer("k3").unwrap().is_some());
    }

    #[test]
    fn read_only_directories_are_removed_too() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t/sub");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("f"), b"x").unwrap();
        std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o500)).unwrap();
        remove_tree(&dir.path().join("t")).unwrap();
        assert!(!dir.path().join("t").exists());
    }
}
