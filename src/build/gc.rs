//! `env gc`: delete what no live root reaches.
//!
//! **Kept:** the images that live roots name (see [`super::roots`]), the layers those images
//! list (and their parents), and the `.deb`s of the cache that a live lock names.
//!
//! **Deleted, in the store:** every other image record; every other layer; stale and damaged
//! root records; `tmp/` leftovers of builds that died; logs of layers the store no longer has;
//! temporary files of interrupted atomic writes in `images-v1/` and `roots-v1/`. **In the
//! cache:** every other `debs-v1/<sha256>.deb` and `.deb.partial`. Nothing else is touched: not
//! the cache's indexes, not volumes (they live in the data directory, outside the store), not
//! the per-key lock files (unlinking a lock file another process has opened would let two
//! builders of one key in at once).
//!
//! A layer is deleted by renaming it to `tmp/<key>.gc-<pid>` first and then removing that, so
//! an interrupted gc never leaves a half-deleted tree under its real name; the next builder of
//! the key (or the next gc) removes the leftover.
//!
//! # Running beside builds
//!
//! `env build` and `env export` hold a [`StoreUse`] (a shared lock on `<store>/gc.lock`) from
//! before they plan until they have recorded their root or written their archive: a running
//! build may rely on cached layers that no live root names yet (its lock was just rewritten),
//! and on `.deb`s of a lock no root knows. `env gc` takes that lock exclusively, waiting for
//! them to finish, and they wait for it. Inside, it also takes, without waiting, the per-key
//! lock of every layer, `tmp/` leftover and log it deletes, and the lock of every download it
//! deletes, and leaves alone whatever another process holds: a builder that does not take the
//! store lock, or one of another store sharing the download cache.

use std::collections::{BTreeSet, HashSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::image::{Image, image_path};
use super::roots::{self, LiveRoot, StaleRoot};
use super::store::{Store, StoreError, read_record, remove_tree};

/// The store-wide lock file: shared by builds and exports, exclusive for gc.
pub const GC_LOCK: &str = "gc.lock";

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot clean `{}` in the download cache", path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cache_io(path: &Path) -> impl FnOnce(std::io::Error) -> GcError + '_ {
    move |source| GcError::Cache {
        path: path.to_path_buf(),
        source,
    }
}

/// Holds `env gc` off the store while alive: take it before planning a build (or reading an
/// image to export) and keep it until the image's root is recorded (or the export written).
pub struct StoreUse {
    _lock: File,
}

impl StoreUse {
    /// Shares the store with other builds; while a gc runs, calls `on_wait` and waits for it.
    pub fn acquire(store: &Store, on_wait: &dyn Fn()) -> Result<StoreUse, StoreError> {
        let (file, path) = open_gc_lock(store)?;
        match file.try_lock_shared() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                on_wait();
                file.lock_shared().map_err(io(&path))?;
            }
            Err(TryLockError::Error(source)) => return Err(StoreError::Io { path, source }),
        }
        Ok(StoreUse { _lock: file })
    }
}

fn open_gc_lock(store: &Store) -> Result<(File, PathBuf), StoreError> {
    std::fs::create_dir_all(store.root()).map_err(io(store.root()))?;
    let path = store.root().join(GC_LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    Ok((file, path))
}

/// The exclusive lock of a gc; `on_wait` is called once when builds hold the store.
fn lock_exclusive(store: &Store, on_wait: &dyn Fn()) -> Result<File, StoreError> {
    let (file, path) = open_gc_lock(store)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            on_wait();
            file.lock().map_err(io(&path))?;
        }
        Err(TryLockError::Error(source)) => return Err(StoreError::Io { path, source }),
    }
    Ok(file)
}

/// What a deleted entry was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Image,
    Layer,
    Download,
    /// Stale roots, build leftovers, orphaned logs, partial downloads and records.
    Leftover,
}

/// One entry gc deleted (or would delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub kind: Kind,
    /// For people: `packages layer 0123456789ab`, `image app:0123456789ab`, ...
    pub what: String,
    pub path: PathBuf,
    /// Disk space it took (allocated blocks; hard links counted once).
    pub bytes: u64,
}

/// What a gc did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub removals: Vec<Removal>,
    /// Entries left alone because another process holds their lock.
    pub in_use: Vec<String>,
    /// Things the user should know (a live lock that cannot be read, ...).
    pub warnings: Vec<String>,
}

impl Report {
    pub fn count(&self, kind: Kind) -> usize {
        self.removals.iter().filter(|r| r.kind == kind).count()
    }

    pub fn bytes(&self) -> u64 {
        self.removals.iter().map(|r| r.bytes).sum()
    }

    /// `3 layers, 1 image, 12 downloads: 412.0 MB`, or `None` when nothing was deleted.
    pub fn summary(&self) -> Option<String> {
        if self.removals.is_empty() {
            return None;
        }
        let parts: Vec<String> = [
            (Kind::Layer, "layer", "layers"),
            (Kind::Image, "image", "images"),
            (Kind::Download, "download", "downloads"),
            (Kind::Leftover, "leftover", "leftovers"),
        ]
        .iter()
        .filter_map(|&(kind, one, many)| match self.count(kind) {
            0 => None,
            1 => Some(format!("1 {one}")),
            n => Some(format!("{n} {many}")),
        })
        .collect();
        Some(format!(
            "{}: {}",
            parts.join(", "),
            super::download::human_bytes(self.bytes())
        ))
    }
}

/// Deletes what no live root reaches (with `dry_run`, only reports it). Waits for running
/// builds first, calling `on_wait` if it has to.
pub fn collect(
    store: &Store,
    cache_dir: &Path,
    dry_run: bool,
    on_wait: &dyn Fn(),
) -> Result<Report, GcError> {
    let _exclusive = if dry_run {
        None
    } else {
        Some(lock_exclusive(store, on_wait)?)
    };
    sweep(store, cache_dir, dry_run)
}

/// [`collect`] without the store lock: what it does once no build runs.
pub fn sweep(store: &Store, cache_dir: &Path, dry_run: bool) -> Result<Report, GcError> {
    let mut sweeper = Sweeper {
        store,
        dry_run,
        report: Report::default(),
    };
    let roots = roots::scan(store)?;
    sweeper.stale_roots(&roots.stale)?;
    let live: BTreeSet<&str> = roots.live.iter().map(|l| l.root.image.as_str()).collect();
    let kept = sweeper.images(&live)?;
    let remaining = sweeper.layers(&kept)?;
    sweeper.temporaries()?;
    sweeper.logs(&remaining)?;
    sweeper.partial_records()?;
    sweeper.downloads(cache_dir, &roots.live)?;
    Ok(sweeper.report)
}

struct Sweeper<'a> {
    store: &'a Store,
    dry_run: bool,
    report: Report,
}

/// A per-key or per-file lock, taken without waiting.
enum TryLock {
    /// Nobody holds it; held by us (when its file exists) until dropped.
    Free(#[allow(dead_code, reason = "held until dropped")] Option<File>),
    Held,
}

fn try_lock(path: &Path, create: bool) -> std::io::Result<TryLock> {
    if create && let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = match OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => {
            return Ok(TryLock::Free(None));
        }
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => Ok(TryLock::Free(Some(file))),
        Err(TryLockError::WouldBlock) => Ok(TryLock::Held),
        Err(TryLockError::Error(e)) => Err(e),
    }
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

/// Removes a file or a tree (read-only folders included).
fn remove_path(path: &Path) -> Result<(), StoreError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => remove_tree(path),
        Ok(_) => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                path: path.to_path_buf(),
                source,
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
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

/// The writer's process id of a temporary file left by `fetch::write_atomically`
/// (`.<name>.partial-<pid>`).
fn partial_writer(name: &str) -> Option<i32> {
    if !name.starts_with('.') {
        return None;
    }
    let (_, pid) = name.rsplit_once(".partial-")?;
    pid.parse().ok().filter(|&pid| pid > 0)
}

fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

impl Sweeper<'_> {
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
        let path = self.store.root().join("locks").join(format!("{key}.lock"));
        try_lock(&path, !self.dry_run).map_err(io(&path))
    }

    fn stale_roots(&mut self, stale: &[StaleRoot]) -> Result<(), StoreError> {
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

    /// Deletes the records of images no live root names; returns the layers to keep.
    fn images(&mut self, live: &BTreeSet<&str>) -> Result<BTreeSet<String>, StoreError> {
        let live_paths: HashSet<PathBuf> = live
            .iter()
            .map(|name| image_path(self.store, name))
            .collect();
        let mut kept = BTreeSet::new();
        let root = self.store.root().join("images-v1");
        for (repository, dir) in entries(&root).map_err(io(&root))? {
            if !dir.is_dir() {
                continue;
            }
            for (file, path) in entries(&dir).map_err(io(&dir))? {
                let Some(tag) = file
                    .strip_suffix(".json")
                    .filter(|_| !file.starts_with('.'))
                else {
                    continue;
                };
                let name = format!("{repository}:{tag}");
                let record = match read_record::<Image>(&path) {
                    Ok(record) => record,
                    Err(StoreError::Record { .. }) => None,
                    Err(error) => return Err(error),
                };
                match record {
                    Some(image) if live_paths.contains(&path) => {
                        kept.extend(image.layers.into_iter().map(|l| l.key));
                    }
                    record => {
                        if record.is_none() && live_paths.contains(&path) {
                            self.report
                                .warnings
                                .push(format!("the record of image {name} is damaged"));
                        }
                        self.remove(Kind::Image, format!("image {name}"), &path)?;
                    }
                }
            }
            if !self.dry_run {
                // Only succeeds when no tag is left.
                let _ = std::fs::remove_dir(&dir);
            }
        }
        // A layer is usable only with its parents.
        let mut pending: Vec<String> = kept.iter().cloned().collect();
        while let Some(key) = pending.pop() {
            if let Ok(Some(record)) = self.store.layer(&key)
                && let Some(parent) = record.parent
                && kept.insert(parent.clone())
            {
                pending.push(parent);
            }
        }
        Ok(kept)
    }

    /// Deletes layers outside `kept`; returns the layers left in the store.
    fn layers(&mut self, kept: &BTreeSet<String>) -> Result<HashSet<String>, StoreError> {
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
            let dir = self.store.tree(&key);
            let dir = dir.parent().unwrap_or(&dir).to_path_buf();
            let (kind, what) = match self.store.layer(&key) {
                Ok(Some(record)) => (
                    Kind::Layer,
                    format!("{} layer {}", record.kind, short(&key)),
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

    /// Moves the layer out of `layers-v1` in one rename, then removes it.
    fn delete_layer(&self, key: &str, dir: &Path) -> Result<(), StoreError> {
        let tmp = self.store.root().join("tmp");
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let doomed = tmp.join(format!("{key}.gc-{}", std::process::id()));
        remove_path(&doomed)?;
        if std::fs::rename(dir, &doomed).is_ok() {
            return remove_tree(&doomed);
        }
        // Not on one file system: without its record the folder is no longer a layer.
        remove_path(&dir.join("layer.json"))?;
        remove_tree(dir)
    }

    /// `tmp/<key>.<suffix>` whose key nobody is building.
    fn temporaries(&mut self) -> Result<(), StoreError> {
        let tmp = self.store.root().join("tmp");
        for (name, path) in entries(&tmp).map_err(io(&tmp))? {
            let Some((key, _)) = name.split_once('.').filter(|(k, _)| !k.is_empty()) else {
                continue;
            };
            let lock = self.key_lock(key)?;
            if let TryLock::Held = lock {
                self.report
                    .in_use
                    .push(format!("tmp/{name}: a build of this layer is running"));
                continue;
            }
            self.remove(Kind::Leftover, format!("build leftover tmp/{name}"), &path)?;
        }
        Ok(())
    }

    /// `logs/<key>.log` of layers the store does not keep.
    fn logs(&mut self, remaining: &HashSet<String>) -> Result<(), StoreError> {
        let logs = self.store.root().join("logs");
        for (name, path) in entries(&logs).map_err(io(&logs))? {
            let Some(key) = name.strip_suffix(".log") else {
                continue;
            };
            if remaining.contains(key) {
                continue;
            }
            if let TryLock::Held = self.key_lock(key)? {
                continue;
            }
            self.remove(Kind::Leftover, format!("log logs/{name}"), &path)?;
        }
        Ok(())
    }

    /// Temporary files of atomic writes whose writer is gone.
    fn partial_records(&mut self) -> Result<(), StoreError> {
        let images = self.store.root().join("images-v1");
        let mut dirs = vec![roots::roots_dir(self.store)];
        for (_, dir) in entries(&images).map_err(io(&images))? {
            if dir.is_dir() {
                dirs.push(dir);
            }
        }
        for dir in dirs {
            for (name, path) in entries(&dir).map_err(io(&dir))? {
                if partial_writer(&name).is_some_and(|pid| !process_alive(pid)) {
                    let what = format!("unfinished write {}", self.relative(&path));
                    self.remove(Kind::Leftover, what, &path)?;
                }
            }
        }
        Ok(())
    }

    /// `.deb`s (and partial downloads) no live lock names.
    fn downloads(&mut self, cache_dir: &Path, live: &[LiveRoot]) -> Result<(), GcError> {
        let mut needed = HashSet::new();
        for root in live {
            let lock = std::str::from_utf8(&root.lock_bytes)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    crate::solve::lockfile::Lock::parse(text).map_err(|e| e.to_string())
                });
            match lock {
                Ok(lock) => needed.extend(
                    lock.packages
                        .into_iter()
                        .map(|p| p.sha256.to_ascii_lowercase()),
                ),
                Err(error) => {
                    self.report.warnings.push(format!(
                        "cannot read `{}` ({error}), so no download was deleted",
                        root.root.lock.display()
                    ));
                    return Ok(());
                }
            }
        }
        let dir = cache_dir.join("debs-v1");
        for (name, path) in entries(&dir).map_err(cache_io(&dir))? {
            let (sha256, kind) = if let Some(sha) = name.strip_suffix(".deb") {
                (sha, Kind::Download)
            } else if let Some(sha) = name.strip_suffix(".deb.partial") {
                (sha, Kind::Leftover)
            } else {
                continue;
            };
            if needed.contains(&sha256.to_ascii_lowercase()) {
                continue;
            }
            let lock_path = dir.join(format!("{sha256}.deb.lock"));
            let lock = try_lock(&lock_path, !self.dry_run).map_err(cache_io(&lock_path))?;
            if let TryLock::Held = lock {
                self.report.in_use.push(format!("{name}: being downloaded"));
                continue;
            }
            let what = match kind {
                Kind::Download => format!("download {}.deb", short(sha256)),
                _ => format!("partial download {}.deb", short(sha256)),
            };
            let bytes = disk_usage(&path);
            if !self.dry_run {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => return Err(GcError::Cache { path, source }),
                }
            }
            self.report.removals.push(Removal {
                kind,
                what,
                path,
                bytes,
            });
            drop(lock);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::image::ImageLayer;
    use crate::build::store::LayerRecord;

    /// A store, a cache and a project folder in one temporary folder.
    struct Fixture {
        dir: tempfile::TempDir,
        store: Store,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::new(&dir.path().join("store"));
            std::fs::create_dir_all(dir.path().join("cache/debs-v1")).unwrap();
            Fixture { dir, store }
        }

        fn cache(&self) -> PathBuf {
            self.dir.path().join("cache")
        }

        /// A finished layer with one file of `size` bytes.
        fn layer(&self, key: &str, parent: Option<&str>, size: usize) {
            let build = self.store.begin(key).unwrap().unwrap();
            std::fs::write(build.tree().join("file"), vec![b'x'; size]).unwrap();
            // Layers hold read-only folders; gc must cope.
            let ro = build.tree().join("ro");
            std::fs::create_dir(&ro).unwrap();
            std::fs::write(ro.join("f"), b"x").unwrap();
            build
                .publish(&LayerRecord {
                    key: key.into(),
                    diff_id: format!("sha256:{key}"),
                    size: size as u64,
                    kind: if parent.is_some() { "packages" } else { "base" }.into(),
                    parent: parent.map(str::to_string),
                })
                .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                self.store.tree(key).join("ro"),
                std::fs::Permissions::from_mode(0o555),
            )
            .unwrap();
            std::fs::write(self.store.log_path(key), b"log").unwrap();
        }

        /// An image record listing `layers`.
        fn image(&self, name: &str, layers: &[&str]) {
            let image = Image {
                name: name.into(),
                id: "sha256:00".into(),
                architecture: "amd64".into(),
                layers: layers
                    .iter()
                    .map(|k| ImageLayer {
                        name: "base".into(),
                        key: (*k).into(),
                        diff_id: format!("sha256:{k}"),
                        size: 1,
                    })
                    .collect(),
            };
            let path = image_path(&self.store, name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, serde_json::to_vec(&image).unwrap()).unwrap();
        }

        /// A project with an env.lock naming `debs`, recorded as the root of `image`.
        fn project(&self, name: &str, image: &str, debs: &[&str]) -> PathBuf {
            let project = self.dir.path().join(name);
            std::fs::create_dir_all(&project).unwrap();
            let lock = project.join("env.lock");
            std::fs::write(&lock, lock_text(debs)).unwrap();
            roots::record(&self.store, &lock, image).unwrap();
            lock
        }

        fn deb(&self, sha: &str) {
            std::fs::write(
                self.cache().join(format!("debs-v1/{sha}.deb")),
                vec![0u8; 5000],
            )
            .unwrap();
        }

        fn debs(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(self.cache().join("debs-v1"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect();
            names.sort();
            names
        }
    }

    fn sha(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn lock_text(debs: &[&str]) -> String {
        let packages = debs
            .iter()
            .enumerate()
            .map(|(i, sha)| crate::solve::lockfile::LockedPackage {
                name: format!("pkg{i}"),
                version: "1.0".into(),
                architecture: "amd64".into(),
                suite: "bookworm".into(),
                path: format!("pool/main/p/pkg{i}_1.0_amd64.deb"),
                size: 5000,
                sha256: (*sha).into(),
                layer: crate::solve::lockfile::Layer::Packages,
                requested: true,
                essential: false,
                batch: 0,
                group: 1,
            })
            .collect();
        crate::solve::lockfile::Lock {
            release: "bookworm".into(),
            architecture: "amd64".into(),
            recommends: false,
            requested: vec![],
            indexes: vec![],
            packages,
        }
        .render()
    }

    #[test]
    fn keeps_what_live_roots_reach_and_deletes_the_rest() {
        let f = Fixture::new();
        let (a, b, c) = (sha('a'), sha('b'), sha('c'));
        f.layer("base", None, 100);
        f.layer("pkgs1", Some("base"), 200_000);
        f.layer("pkgs2", Some("base"), 300);
        f.image("app:000000000001", &["base", "pkgs1"]);
        f.image("app:000000000002", &["base", "pkgs2"]);
        f.deb(&a);
        f.deb(&b);
        f.deb(&c);
        // The project was built twice: its root names the second image and needs a and b.
        f.project("p", "app:000000000002", &[&a, &b]);
        // Leftovers of a killed builder, a log without a layer, a dead writer's temporary.
        std::fs::create_dir_all(f.store.root().join("tmp/dead.4242/tree/usr")).unwrap();
        std::fs::write(f.store.log_path("dead"), b"failed").unwrap();
        std::fs::write(
            f.store
                .root()
                .join("images-v1/app/.000000000003.json.partial-999999999"),
            b"{",
        )
        .unwrap();

        let dry = sweep(&f.store, &f.cache(), true).unwrap();
        let report = sweep(&f.store, &f.cache(), false).unwrap();
        assert_eq!(dry.removals, report.removals, "the dry run tells the truth");
        assert_eq!(report.count(Kind::Image), 1);
        assert_eq!(report.count(Kind::Layer), 1);
        assert_eq!(report.count(Kind::Download), 1);
        assert_eq!(report.count(Kind::Leftover), 4, "{:#?}", report.removals);
        assert!(report.bytes() >= 200_000 + 5000, "{}", report.bytes());
        assert!(
            report
                .summary()
                .unwrap()
                .starts_with("1 layer, 1 image, 1 download, 4 leftovers: "),
            "{:?}",
            report.summary()
        );

        assert!(f.store.layer("base").unwrap().is_some());
        assert!(f.store.layer("pkgs2").unwrap().is_some());
        assert!(f.store.layer("pkgs1").unwrap().is_none());
        assert!(!f.store.root().join("layers-v1/pkgs1").exists());
        assert!(image_path(&f.store, "app:000000000002").exists());
        assert!(!image_path(&f.store, "app:000000000001").exists());
        assert_eq!(f.debs(), [format!("{a}.deb"), format!("{b}.deb")]);
        assert!(f.store.root().join("logs/base.log").exists());
        assert!(!f.store.root().join("logs/pkgs1.log").exists());
        assert!(!f.store.root().join("logs/dead.log").exists());
        assert_eq!(
            std::fs::read_dir(f.store.root().join("tmp"))
                .unwrap()
                .count(),
            0
        );

        let again = sweep(&f.store, &f.cache(), false).unwrap();
        assert!(again.removals.is_empty(), "{:#?}", again.removals);
        assert_eq!(again.summary(), None);
    }

    #[test]
    fn a_changed_lock_frees_its_image_and_a_deleted_one_too() {
        let f = Fixture::new();
        let (a, b) = (sha('a'), sha('b'));
        f.layer("base1", None, 10);
        f.layer("base2", None, 10);
        f.image("one:000000000001", &["base1"]);
        f.image("two:000000000001", &["base2"]);
        f.deb(&a);
        f.deb(&b);
        let one = f.project("one", "one:000000000001", &[&a]);
        let two = f.project("two", "two:000000000001", &[&b]);
        std::fs::write(&one, lock_text(&[&a, &b])).unwrap();
        std::fs::remove_file(&two).unwrap();
        let report = collect(&f.store, &f.cache(), false, &|| {}).unwrap();
        assert_eq!(report.count(Kind::Image), 2);
        assert_eq!(report.count(Kind::Layer), 2);
        assert_eq!(report.count(Kind::Download), 2);
        assert!(
            report
                .removals
                .iter()
                .any(|r| r.what.ends_with("(lock file changed)")),
            "{:#?}",
            report.removals
        );
        assert!(roots::scan(&f.store).unwrap().stale.is_empty());
        assert!(f.store.layer_keys().unwrap().is_empty());
        assert!(f.debs().is_empty());
    }

    #[test]
    fn a_layer_being_built_is_left_alone() {
        let f = Fixture::new();
        f.layer("old", None, 10);
        // A builder holds the key of a layer it is building, and the key of a finished layer
        // while it checks it.
        let building = f.store.begin("new").unwrap().unwrap();
        std::fs::write(building.tree().join("file"), b"x").unwrap();
        std::fs::write(f.store.log_path("new"), b"building").unwrap();
        let held = try_lock(&f.store.root().join("locks/old.lock"), false).unwrap();
        let TryLock::Free(Some(held)) = held else {
            panic!("the lock exists and is free");
        };
        let report = sweep(&f.store, &f.cache(), false).unwrap();
        assert!(report.removals.is_empty(), "{:#?}", report.removals);
        assert_eq!(report.in_use.len(), 2, "{:?}", report.in_use);
        assert!(building.tree().join("file").exists());
        assert!(f.store.log_path("new").exists());
        assert!(f.store.layer("old").unwrap().is_some());

        drop(held);
        building
            .publish(&LayerRecord {
                key: "new".into(),
                diff_id: "sha256:00".into(),
                size: 1,
                kind: "base".into(),
                parent: None,
            })
            .unwrap();
        let report = sweep(&f.store, &f.cache(), false).unwrap();
        assert_eq!(report.count(Kind::Layer), 2, "{:#?}", report.removals);
        assert!(f.store.layer_keys().unwrap().is_empty());
    }

    #[test]
    fn gc_waits_for_builds_and_builds_wait_for_gc() {
        let f = Fixture::new();
        let build = StoreUse::acquire(&f.store, &|| {}).unwrap();
        let waited = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let gc = scope.spawn(|| {
                collect(&f.store, &f.cache(), false, &|| {
                    waited.store(true, std::sync::atomic::Ordering::SeqCst)
                })
                .unwrap()
            });
            while !waited.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert!(!gc.is_finished());
            drop(build);
            gc.join().unwrap();
        });
        // Two builds share the store; a build waits for a gc.
        let one = StoreUse::acquire(&f.store, &|| panic!("no gc runs")).unwrap();
        let two = StoreUse::acquire(&f.store, &|| panic!("no gc runs")).unwrap();
        drop((one, two));
        let gc = lock_exclusive(&f.store, &|| panic!("no build runs")).unwrap();
        let build_waited = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let build = scope.spawn(|| {
                StoreUse::acquire(&f.store, &|| {
                    build_waited.store(true, std::sync::atomic::Ordering::SeqCst)
                })
                .unwrap()
            });
            while !build_waited.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            assert!(!build.is_finished());
            drop(gc);
            build.join().unwrap();
        });
    }

    #[test]
    fn a_download_under_way_is_left_alone_and_needed_partials_are_kept() {
        let f = Fixture::new();
        let (a, b, c) = (sha('a'), sha('b'), sha('c'));
        f.project("p", "app:000000000001", &[&a]);
        let debs = f.cache().join("debs-v1");
        std::fs::write(debs.join(format!("{a}.deb.partial")), b"half").unwrap();
        std::fs::write(debs.join(format!("{b}.deb.partial")), b"half").unwrap();
        std::fs::write(debs.join(format!("{c}.deb.partial")), b"half").unwrap();
        let downloading = try_lock(&debs.join(format!("{c}.deb.lock")), true).unwrap();
        assert!(matches!(downloading, TryLock::Free(Some(_))));
        let report = sweep(&f.store, &f.cache(), false).unwrap();
        assert_eq!(report.count(Kind::Leftover), 1, "{:#?}", report.removals);
        assert_eq!(
            f.debs(),
            [format!("{a}.deb.partial"), format!("{c}.deb.partial")]
        );
    }

    #[test]
    fn nothing_outside_the_store_and_the_debs_is_touched() {
        let f = Fixture::new();
        let volumes = f.dir.path().join("volumes/app/cache");
        std::fs::create_dir_all(&volumes).unwrap();
        std::fs::write(volumes.join("kept"), b"x").unwrap();
        std::fs::create_dir_all(f.cache().join("indexes")).unwrap();
        std::fs::write(f.cache().join("indexes/Packages"), b"x").unwrap();
        std::fs::create_dir_all(f.store.root()).unwrap();
        std::fs::write(f.store.root().join("unknown"), b"x").unwrap();
        let report = collect(&f.store, &f.cache(), false, &|| {}).unwrap();
        assert!(report.removals.is_empty(), "{:#?}", report.removals);
        assert!(volumes.join("kept").exists());
        assert!(f.cache().join("indexes/Packages").exists());
        assert!(f.store.root().join("unknown").exists());
    }
}
