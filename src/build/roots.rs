//! GC roots: the lock files the store knows, and the image each was last built into.
//!
//! One record per lock file in the store ([`Store::root_record`]), named by blake3 of the
//! lock's absolute path:
//! ```text
//! {"lock": "/home/me/app/env.lock", "lock_blake3": "<hex>", "image": "app:0123456789ab"}
//! ```
//! `env build` records the env.lock it built from, a blake3 digest of the lock's bytes and the
//! image name; one record per lock path, replaced by the next build. `env gc` keeps what the
//! live roots reach. A root is live while its lock file exists and still has the recorded
//! digest: an edited lock means the image recorded for it is stale (the next build of that
//! project records the new one), and a deleted lock (or project) frees its image.
//!
//! Records are written atomically (temporary file, then rename) and only when they change, so
//! recording the image of an unchanged project costs one read of the lock and of the record.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::store::{Store, StoreError, read_record, record_stem};

/// One known lock file and the image built from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// Absolute path of the env.lock.
    pub lock: PathBuf,
    /// blake3 (hex) of the lock file's bytes when the image was recorded.
    pub lock_blake3: String,
    /// `NAME:TAG` of the image built from that lock.
    pub image: String,
}

/// A root whose lock still has the recorded digest.
#[derive(Debug, Clone)]
pub struct LiveRoot {
    pub root: Root,
    /// The lock's bytes, as read when its digest was checked.
    pub lock_bytes: Vec<u8>,
}

/// Why a root no longer keeps its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// The lock file (or its folder) is gone.
    LockMissing,
    /// The lock file changed since the image was recorded.
    LockChanged,
    /// The record cannot be read as a root.
    Damaged,
}

impl StaleReason {
    pub fn describe(self) -> &'static str {
        match self {
            StaleReason::LockMissing => "lock file gone",
            StaleReason::LockChanged => "lock file changed",
            StaleReason::Damaged => "damaged record",
        }
    }
}

/// A root record that keeps nothing.
#[derive(Debug, Clone)]
pub struct StaleRoot {
    /// The record file.
    pub record: PathBuf,
    /// The lock it names, when the record could be read.
    pub lock: Option<PathBuf>,
    pub reason: StaleReason,
}

/// Every root record of a store, sorted into live and stale.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    pub live: Vec<LiveRoot>,
    pub stale: Vec<StaleRoot>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The record file of the lock at this absolute path.
fn record_path(store: &Store, lock: &Path) -> PathBuf {
    let key = blake3::hash(lock.as_os_str().as_bytes()).to_hex();
    store.root_record(&key)
}

fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Records that the image `image_name` was built (or found) for the lock at `lock_path`.
///
/// Cheap when nothing changed: it reads the lock and the existing record, and writes only when
/// the digest or the image differs.
pub fn record(store: &Store, lock_path: &Path, image_name: &str) -> Result<(), StoreError> {
    let lock = lock_path
        .canonicalize()
        .or_else(|_| std::path::absolute(lock_path))
        .map_err(io(lock_path))?;
    let bytes = std::fs::read(&lock).map_err(io(&lock))?;
    let root = Root {
        lock_blake3: digest(&bytes),
        lock,
        image: image_name.to_string(),
    };
    let path = record_path(store, &root.lock);
    if let Ok(Some(existing)) = read_record::<Root>(&path)
        && existing == root
    {
        return Ok(());
    }
    let json = serde_json::to_vec_pretty(&root).map_err(|source| StoreError::Record {
        path: path.clone(),
        source,
    })?;
    crate::fetch::write_bytes_atomically(&path, &json).map_err(|e| StoreError::Io {
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// What is wrong with the root record of the lock at `lock_path`, which should keep the image
/// `image_name` (what [`record`] writes after a build); `None` when it says just that.
pub fn record_problem(store: &Store, lock_path: &Path, image_name: &str) -> Option<String> {
    let lock = lock_path
        .canonicalize()
        .or_else(|_| std::path::absolute(lock_path))
        .ok()?;
    let bytes = std::fs::read(&lock).ok()?;
    let path = record_path(store, &lock);
    match read_record::<Root>(&path) {
        Err(error) => Some(format!("{error}, so `env gc` would not keep the image")),
        Ok(None) => Some("it is missing, so `env gc` would not keep the image".into()),
        Ok(Some(root)) if root.lock != lock || root.lock_blake3 != digest(&bytes) => {
            Some("it does not match the lock file, so `env gc` would not keep the image".into())
        }
        Ok(Some(root)) if root.image != image_name => Some(format!(
            "it keeps `{}` instead, so `env gc` would delete this image",
            root.image
        )),
        Ok(Some(_)) => None,
    }
}

/// What a root is now: live (with its lock's bytes) or why not.
fn check(root: &Root) -> Result<Result<Vec<u8>, StaleReason>, StoreError> {
    match std::fs::read(&root.lock) {
        Ok(bytes) if digest(&bytes) == root.lock_blake3 => Ok(Ok(bytes)),
        Ok(_) => Ok(Err(StaleReason::LockChanged)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(Err(StaleReason::LockMissing))
        }
        Err(source) => Err(StoreError::Io {
            path: root.lock.clone(),
            source,
        }),
    }
}

/// Reads every root record and checks each lock.
pub fn scan(store: &Store) -> Result<Roots, StoreError> {
    let dir = store.roots_dir();
    let mut roots = Roots::default();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(roots),
        Err(source) => return Err(StoreError::Io { path: dir, source }),
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_record_name(p))
        .collect();
    paths.sort();
    for path in paths {
        let root = match read_record::<Root>(&path) {
            Ok(Some(root)) => root,
            // Deleted meanwhile (another gc).
            Ok(None) => continue,
            Err(StoreError::Record { .. }) => {
                roots.stale.push(StaleRoot {
                    record: path,
                    lock: None,
                    reason: StaleReason::Damaged,
                });
                continue;
            }
            Err(error) => return Err(error),
        };
        match check(&root)? {
            Ok(lock_bytes) => roots.live.push(LiveRoot { root, lock_bytes }),
            Err(reason) => roots.stale.push(StaleRoot {
                record: path,
                lock: Some(root.lock),
                reason,
            }),
        }
    }
    Ok(roots)
}

/// A root record rather than another file (the temporary file of an atomic write).
fn is_record_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| record_stem(n).is_some())
}

/// The images live roots keep.
pub fn live_images(store: &Store) -> Result<BTreeSet<String>, StoreError> {
    Ok(scan(store)?
        .live
        .into_iter()
        .map(|live| live.root.image)
        .collect())
}

/// Whether the record at `path` is (still) stale: read again right before it is deleted, so a
/// build that recorded the same lock meanwhile keeps its root.
pub fn still_stale(path: &Path) -> bool {
    match read_record::<Root>(path) {
        Ok(Some(root)) => check(&root).is_ok_and(|state| state.is_err()),
        Ok(None) => false,
        Err(StoreError::Record { .. }) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Store, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("store"));
        let project = dir.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        let lock = project.join("env.lock");
        std::fs::write(&lock, "version 1\n").unwrap();
        (dir, store, lock)
    }

    #[test]
    fn a_recorded_lock_keeps_its_image_until_it_changes() {
        let (_dir, store, lock) = setup();
        record(&store, &lock, "app:000000000001").unwrap();
        assert_eq!(
            live_images(&store).unwrap().into_iter().collect::<Vec<_>>(),
            ["app:000000000001"]
        );
        let roots = scan(&store).unwrap();
        assert_eq!(roots.live[0].lock_bytes, b"version 1\n");
        assert_eq!(roots.live[0].root.lock, lock.canonicalize().unwrap());

        std::fs::write(&lock, "version 1\nchanged\n").unwrap();
        let roots = scan(&store).unwrap();
        assert!(roots.live.is_empty());
        assert_eq!(roots.stale[0].reason, StaleReason::LockChanged);
        assert!(still_stale(&roots.stale[0].record));

        // The next build records the new lock under the same record.
        record(&store, &lock, "app:000000000002").unwrap();
        assert!(!still_stale(&roots.stale[0].record));
        let roots = scan(&store).unwrap();
        assert_eq!(roots.live.len(), 1);
        assert!(roots.stale.is_empty());
        assert_eq!(roots.live[0].root.image, "app:000000000002");
    }

    #[test]
    fn a_deleted_lock_frees_its_image() {
        let (_dir, store, lock) = setup();
        record(&store, &lock, "app:000000000001").unwrap();
        std::fs::remove_file(&lock).unwrap();
        let roots = scan(&store).unwrap();
        assert!(roots.live.is_empty());
        assert_eq!(roots.stale[0].reason, StaleReason::LockMissing);
        assert!(live_images(&store).unwrap().is_empty());
    }

    #[test]
    fn recording_the_same_root_again_writes_nothing() {
        let (_dir, store, lock) = setup();
        record(&store, &lock, "app:000000000001").unwrap();
        let file = std::fs::read_dir(store.roots_dir())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let before = std::fs::metadata(&file).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        // Another spelling of the same lock is the same root.
        let project = lock.parent().unwrap();
        let via_dotdot = project
            .join("..")
            .join(project.file_name().unwrap())
            .join("env.lock");
        record(&store, &via_dotdot, "app:000000000001").unwrap();
        let after = std::fs::metadata(&file).unwrap();
        assert_eq!(before.modified().unwrap(), after.modified().unwrap());
        assert_eq!(std::fs::read_dir(store.roots_dir()).unwrap().count(), 1);
    }

    #[test]
    fn damaged_records_are_stale_and_temporary_files_are_not_records() {
        let (_dir, store, _lock) = setup();
        std::fs::create_dir_all(store.roots_dir()).unwrap();
        std::fs::write(store.roots_dir().join("bad.json"), "{").unwrap();
        std::fs::write(store.roots_dir().join(".x.json.partial-1"), "{").unwrap();
        let roots = scan(&store).unwrap();
        assert_eq!(roots.stale.len(), 1);
        assert_eq!(roots.stale[0].reason, StaleReason::Damaged);
    }
}
