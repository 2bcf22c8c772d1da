//! Who is using what: the store-wide lock that keeps `env gc` and builds apart, and the
//! per-key and per-download locks gc tries without waiting, to leave alone what another
//! process holds.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::build::store::{Store, StoreError, io};

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
    let path = store.gc_lock_path();
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
pub(super) fn lock_exclusive(store: &Store, on_wait: &dyn Fn()) -> Result<File, StoreError> {
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

/// A per-key or per-file lock, taken without waiting.
pub(super) enum TryLock {
    /// Nobody holds it; held by us (when its file exists) until dropped.
    Free(#[allow(dead_code, reason = "held until dropped")] Option<File>),
    Held,
}

/// Takes the lock at `path` if nobody holds it; without `create`, a missing lock file is free.
pub(super) fn try_lock(path: &Path, create: bool) -> std::io::Result<TryLock> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::gc::collect;

    #[test]
    fn gc_waits_for_builds_and_builds_wait_for_gc() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("store"));
        let cache = dir.path().join("cache");
        let build = StoreUse::acquire(&store, &|| {}).unwrap();
        let waited = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let gc = scope.spawn(|| {
                collect(&store, &cache, false, &|| {
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
        let one = StoreUse::acquire(&store, &|| panic!("no gc runs")).unwrap();
        let two = StoreUse::acquire(&store, &|| panic!("no gc runs")).unwrap();
        drop((one, two));
        let gc = lock_exclusive(&store, &|| panic!("no build runs")).unwrap();
        let build_waited = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let build = scope.spawn(|| {
                StoreUse::acquire(&store, &|| {
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
}
