//! Building a layer into the store without ever showing a half-built one.
//!
//! A builder takes the key's lock, fills a temporary folder, and publishes it under the
//! layer's real name with one rename after its file system was synced, so an interrupted build
//! (Ctrl-C, kill -9, power loss) leaves nothing under a real name. Leftovers are removed by
//! the next builder of the same key (which holds its lock, so the leftover cannot belong to a
//! live builder) and by `env gc`.

use std::fs::File;
use std::path::PathBuf;

use super::{
    LAYER_RECORD, LayerRecord, MEMBERS, Store, StoreError, TREE, io, remove_tree, temporary_key,
};

/// The right to build one layer: held while its temporary tree is filled and published.
pub struct LayerBuild {
    key: String,
    temporary: PathBuf,
    store: Store,
    _lock: File,
}

impl Store {
    /// Starts building `key`: waits for any other builder of the same key, and returns `None`
    /// when that builder (or an earlier run) finished it meanwhile.
    pub fn begin(&self, key: &str) -> Result<Option<LayerBuild>, StoreError> {
        let lock_path = self.key_lock_path(key);
        if let Some(locks) = lock_path.parent() {
            std::fs::create_dir_all(locks).map_err(io(locks))?;
        }
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        if self.layer(key)?.is_some() {
            return Ok(None);
        }
        let tmp = self.tmp_dir();
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        // Holding the key's lock, every leftover for this key is from a dead builder.
        for entry in std::fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
            if temporary_key(&entry.file_name().to_string_lossy()) == Some(key) {
                remove_tree(&entry.path())?;
            }
        }
        let temporary = self.build_temporary(key);
        let tree = temporary.join(TREE);
        std::fs::create_dir_all(&tree).map_err(io(&tree))?;
        Ok(Some(LayerBuild {
            key: key.to_string(),
            temporary,
            store: self.clone(),
            _lock: lock,
        }))
    }
}

impl LayerBuild {
    /// Where the layer's files go while it is built.
    pub fn tree(&self) -> PathBuf {
        self.temporary.join(TREE)
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
            if entry.file_name() != TREE && entry.file_name() != MEMBERS {
                remove_tree(&entry.path())?;
            }
        }
        // Layers are written without per-file fsync (dpkg runs with --force-unsafe-io); one
        // syncfs makes every file of the tree durable before the rename can publish it.
        let tree = self.tree();
        File::open(&tree)
            .and_then(|dir| nix::unistd::syncfs(&dir).map_err(std::io::Error::from))
            .map_err(io(&tree))?;
        let record_path = self.temporary.join(LAYER_RECORD);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::layer_kind::LayerKind;

    fn record(key: &str) -> LayerRecord {
        LayerRecord {
            key: key.into(),
            diff_id: "sha256:00".into(),
            size: 1,
            kind: LayerKind::Base,
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
        assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn leftovers_of_a_killed_builder_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        // What kill -9 leaves: a temporary tree from another process, no record.
        let leftover = store.tmp_dir().join("k3.99999");
        std::fs::create_dir_all(leftover.join("tree/usr")).unwrap();
        let build = store.begin("k3").unwrap().unwrap();
        assert!(!leftover.exists());
        build.publish(&record("k3")).unwrap();
        assert!(store.layer("k3").unwrap().is_some());
    }
}
