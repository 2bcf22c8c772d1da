//! Deleting what the live roots do not reach, entry by entry, each only while nobody else
//! holds it; in a dry run, only listing it.

use std::collections::{BTreeSet, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::GcError;
use super::in_use::{TryLock, try_lock};
use super::report::{Kind, Removal, Report};
use crate::build::roots::{self, StaleRoot};
use crate::build::store::{
    Store, StoreError, io, log_key, record_stem, remove_path, remove_tree, temporary_key,
};
use crate::cache::{Cache, DebFile, deb_file};

fn cache_io(path: &Path) -> impl FnOnce(std::io::Error) -> GcError + '_ {
    move |source| GcError::Cache {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) struct Sweeper<'a> {
    store: &'a Store,
    dry_run: bool,
    report: Report,
}

/// Entries of a folder (none when it does not exist), sorted by name.
fn entries(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry?;
        out.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    out.sort();
    Ok(out)
}

/// Allocated bytes of a file or tree, each inode once.
fn disk_usage(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() && meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.blocks() * 512;
        if meta.is_dir()
            && let Ok(children) = std::fs::read_dir(&path)
        {
            pending.extend(children.flatten().map(|e| e.path()));
        }
    }
    total
}

/// Whether a process with this id exists.
fn process_alive(pid: i32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(_) => true,
    }
}

fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

impl<'a> Sweeper<'a> {
    pub fn new(store: &'a Store, dry_run: bool) -> Self {
        Sweeper {
            store,
            dry_run,
            report: Report::default(),
        }
    }

    /// What was deleted.
    pub fn report(self) -> Report {
        self.report
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(self.store.root())
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn remove(&mut self, kind: Kind, what: String, path: &Path) -> Result<(), StoreError> {
        let bytes = disk_usage(path);
        if !self.dry_run {
            remove_path(path)?;
        }
        self.report.removals.push(Removal {
            kind,
            what,
            path: path.to_path_buf(),
            bytes,
        });
        Ok(())
    }

    fn key_lock(&self, key: &str) -> Result<TryLock, StoreError> {
        let path = self.store.key_lock_path(key);
        try_lock(&path, !self.dry_run).map_err(io(&path))
    }

    pub fn stale_roots(&mut self, stale: &[StaleRoot]) -> Result<(), StoreError> {
        for root in stale {
            let what = match &root.lock {
                Some(lock) => format!("root of {} ({})", lock.display(), root.reason.describe()),
                None => format!(
                    "root {} ({})",
                    self.relative(&root.record),
                    root.reason.describe()
                ),
            };
            // A build may have recorded this lock again since the scan.
            if self.dry_run || roots::still_stale(&root.record) {
                self.remove(Kind::Leftover, what, &root.record)?;
            }
        }
        Ok(())
    }

    /// Deletes the records of images other than `kept`.
    pub fn images(&mut self, kept: &HashSet<PathBuf>) -> Result<(), StoreError> {
        let root = self.store.images_dir();
        for (repository, dir) in entries(&root).map_err(io(&root))? {
            if !dir.is_dir() {
                continue;
            }
            for (file, path) in entries(&dir).map_err(io(&dir))? {
                let Some(tag) = record_stem(&file) else {
                    continue;
                };
                if !kept.contains(&path) {
                    let what = format!("image {repository}:{tag}");
                    self.remove(Kind::Image, what, &path)?;
                }
            }
            if !self.dry_run {
                // Only succeeds when no tag is left.
                let _ = std::fs::remove_dir(&dir);
            }
        }
        Ok(())
    }

    /// Deletes layers outside `kept`; returns the layers left in the store.
    pub fn layers(&mut self, kept: &BTreeSet<String>) -> Result<HashSet<String>, StoreError> {
        let mut remaining = HashSet::new();
        let mut keys = self.store.layer_keys()?;
        keys.sort();
        for key in keys {
            if kept.contains(&key) {
                remaining.insert(key);
                continue;
            }
            let lock = self.key_lock(&key)?;
            if let TryLock::Held = lock {
                self.report
                    .in_use
                    .push(format!("layer {}: another process holds it", short(&key)));
                remaining.insert(key);
                continue;
            }
            let dir = self.store.layer_dir(&key);
            let (kind, what) = match self.store.layer(&key) {
                Ok(Some(record)) => (
                    Kind::Layer,
                    format!("{} layer {}", record.kind.name(), short(&key)),
                ),
                _ => (
                    Kind::Leftover,
                    format!("incomplete layer {}", self.relative(&dir)),
                ),
            };
            let bytes = disk_usage(&dir);
            if !self.dry_run {
                self.delete_layer(&key, &dir)?;
            }
            self.report.removals.push(Removal {
                kind,
                what,
                path: dir,
                bytes,
            });
            drop(lock);
        }
        Ok(remaining)
    }

    fn delete_layer(&self, key: &str, dir: &Path) -> Result<(), StoreError> {
        delete_layer(self.store, key, dir)
    }

    /// Leftovers in the store's temporary folder whose key nobody is building.
    pub fn temporaries(&mut self) -> Result<(), StoreError> {
        let tmp = self.store.tmp_dir();
        for (name, path) in entries(&tmp).map_err(io(&tmp))? {
            let Some(key) = temporary_key(&name) else {
                continue;
            };
            let lock = self.key_lock(key)?;
            if let TryLock::Held = lock {
                self.report.in_use.push(format!(
                    "{}: a build of this layer is running",
                    self.relative(&path)
                ));
                continue;
            }
            let what = format!("build leftover {}", self.relative(&path));
            self.remove(Kind::Leftover, what, &path)?;
        }
        Ok(())
    }

    /// Build logs of layers the store does not keep.
    pub fn logs(&mut self, remaining: &HashSet<String>) -> Result<(), StoreError> {
        let logs = self.store.logs_dir();
        for (name, path) in entries(&logs).map_err(io(&logs))? {
            let Some(key) = log_key(&name) else {
                continue;
            };
            if remaining.contains(key) {
                continue;
            }
            if let TryLock::Held = self.key_lock(key)? {
                continue;
            }
            let what = format!("log {}", self.relative(&path));
            self.remove(Kind::Leftover, what, &path)?;
        }
        Ok(())
    }

    /// Temporary files of atomic writes whose writer is gone.
    pub fn partial_records(&mut self) -> Result<(), StoreError> {
        let images = self.store.images_dir();
        let mut dirs = vec![self.store.roots_dir()];
        for (_, dir) in entries(&images).map_err(io(&images))? {
            if dir.is_dir() {
                dirs.push(dir);
            }
        }
        for dir in dirs {
            for (name, path) in entries(&dir).map_err(io(&dir))? {
                if crate::fetch::atomic_writer(&name).is_some_and(|pid| !process_alive(pid)) {
                    let what = format!("unfinished write {}", self.relative(&path));
                    self.remove(Kind::Leftover, what, &path)?;
                }
            }
        }
        Ok(())
    }

    /// `.deb`s (and partial downloads) outside `needed`.
    pub fn downloads(&mut self, cache: &Cache, needed: &HashSet<String>) -> Result<(), GcError> {
        let dir = cache.debs_dir();
        for (name, path) in entries(&dir).map_err(cache_io(&dir))? {
            let Some((sha256, file)) = deb_file(&name) else {
                continue;
            };
            if needed.contains(&sha256.to_ascii_lowercase()) {
                continue;
            }
            let lock_path = cache.deb_lock(sha256);
            let lock = try_lock(&lock_path, !self.dry_run).map_err(cache_io(&lock_path))?;
            if let TryLock::Held = lock {
                self.report.in_use.push(format!("{name}: being downloaded"));
                continue;
            }
            let (kind, what) = match file {
                DebFile::Complete => (Kind::Download, format!("download {}.deb", short(sha256))),
                DebFile::Partial => (
                    Kind::Leftover,
                    format!("partial download {}.deb", short(sha256)),
                ),
            };
            self.remove_cached_file(kind, what, path)?;
            drop(lock);
        }
        Ok(())
    }

    /// Deletes a file of the download cache (unless a dry run) and reports it; one already
    /// gone is not reported.
    fn remove_cached_file(
        &mut self,
        kind: Kind,
        what: String,
        path: PathBuf,
    ) -> Result<(), GcError> {
        let bytes = disk_usage(&path);
        if !self.dry_run {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(source) => return Err(GcError::Cache { path, source }),
            }
        }
        self.report.removals.push(Removal {
            kind,
            what,
            path,
            bytes,
        });
        Ok(())
    }

    /// Registry blobs a pull left behind: an interrupted download (`.partial`) or a whole blob
    /// that was never unpacked. A pull still writing one holds its lock and keeps it.
    /// Deletes the records of base images no live lock pins (read again from the registry
    /// when a lock pins them once more).
    pub fn base_images(&mut self, cache: &Cache, needed: &HashSet<String>) -> Result<(), GcError> {
        let dir = cache.base_images_dir();
        for (name, path) in entries(&dir).map_err(cache_io(&dir))? {
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            if needed.contains(&format!("sha256:{hex}")) {
                continue;
            }
            let what = format!("record of base image sha256:{}", short(hex));
            self.remove_cached_file(Kind::Download, what, path)?;
        }
        Ok(())
    }

    pub fn blobs(&mut self, cache: &Cache) -> Result<(), GcError> {
        let dir = cache.blobs_dir();
        for (name, path) in entries(&dir).map_err(cache_io(&dir))? {
            let hex = name.strip_suffix(".partial").unwrap_or(&name);
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let lock = try_lock(&path, false).map_err(cache_io(&path))?;
            if let TryLock::Held = lock {
                self.report
                    .in_use
                    .push(format!("blob {}: being downloaded", short(hex)));
                continue;
            }
            let what = if name.ends_with(".partial") {
                format!("partial download of blob {}", short(hex))
            } else {
                format!("pulled blob {}, never unpacked", short(hex))
            };
            self.remove_cached_file(Kind::Leftover, what, path)?;
            drop(lock);
        }
        Ok(())
    }
}

/// Moves the layer out from under its real name in one rename, then removes it.
pub(super) fn delete_layer(store: &Store, key: &str, dir: &Path) -> Result<(), StoreError> {
    let tmp = store.tmp_dir();
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let doomed = store.gc_temporary(key);
    remove_path(&doomed)?;
    if std::fs::rename(dir, &doomed).is_ok() {
        return remove_tree(&doomed);
    }
    // Not on one file system: without its record the folder is no longer a layer.
    remove_path(&store.layer_record_path(key))?;
    remove_tree(dir)
}
