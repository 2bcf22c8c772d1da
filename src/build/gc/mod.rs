//! `env gc`: delete what no live root reaches.
//!
//! **Kept:** the images that live roots name (see [`super::roots`]), the layers those images
//! list (and their parents), and the `.deb`s of the cache that a live lock names (`reach`).
//!
//! **Deleted, in the store:** every other image record; every other layer; stale and damaged
//! root records; leftovers of builds that died; logs of layers the store no longer has;
//! temporary files of interrupted atomic writes among the image and root records. **In the
//! cache:** every other downloaded `.deb`, partial downloads, and registry blobs a pull left
//! (interrupted, or never unpacked). Nothing else is touched: not
//! the cache's indexes, not volumes (they live in the data directory, outside the store), not
//! the per-key lock files (unlinking a lock file another process has opened would let two
//! builders of one key in at once). `sweep` does the deleting.
//!
//! A layer is deleted by renaming it into the store's temporary folder first
//! ([`Store::gc_temporary`]) and then removing that, so an interrupted gc never leaves a
//! half-deleted tree under its real name; the next builder of the key (or the next gc) removes
//! the leftover.
//!
//! # Running beside builds
//!
//! `env build` and `env export` hold a [`StoreUse`] (a shared lock on the store's gc lock) from
//! before they plan until they have recorded their root or written their archive: a running
//! build may rely on cached layers that no live root names yet (its lock was just rewritten),
//! and on `.deb`s of a lock no root knows. `env gc` takes that lock exclusively, waiting for
//! them to finish, and they wait for it. Inside, it also takes, without waiting, the per-key
//! lock of every layer, build leftover and log it deletes, and the lock of every download it
//! deletes, and leaves alone whatever another process holds: a builder that does not take the
//! store lock, or one of another store sharing the download cache (`in_use`).

mod in_use;
mod reach;
mod report;
mod sweep;

use std::path::{Path, PathBuf};

use super::roots;
use super::store::{Store, StoreError};
use crate::cache::Cache;

pub use in_use::StoreUse;
pub use report::{Kind, Removal, Report};

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
        Some(in_use::lock_exclusive(store, on_wait)?)
    };
    sweep(store, cache_dir, dry_run)
}

/// Deletes the layers `keys` (damaged ones `env verify --repair` builds again), once no build
/// or session uses the store. An image that lists one is built again by the next build.
pub fn discard_layers(
    store: &Store,
    keys: &[String],
    on_wait: &dyn Fn(),
) -> Result<(), StoreError> {
    let _exclusive = in_use::lock_exclusive(store, on_wait)?;
    for key in keys {
        let dir = store.layer_dir(key);
        if dir.exists() {
            sweep::delete_layer(store, key, &dir)?;
        }
    }
    Ok(())
}

/// [`collect`] without the store lock: what it does once no build runs.
pub fn sweep(store: &Store, cache_dir: &Path, dry_run: bool) -> Result<Report, GcError> {
    let roots = roots::scan(store)?;
    let reach = reach::reach(store, &roots.live)?;
    let mut sweeper = sweep::Sweeper::new(store, dry_run);
    sweeper.stale_roots(&roots.stale)?;
    sweeper.images(&reach.images)?;
    let remaining = sweeper.layers(&reach.layers)?;
    sweeper.temporaries()?;
    sweeper.logs(&remaining)?;
    sweeper.partial_records()?;
    if let Some(needed) = &reach.downloads {
        sweeper.downloads(&Cache::new(cache_dir), &needed.debs)?;
        sweeper.base_images(&Cache::new(cache_dir), &needed.base_images)?;
    }
    sweeper.blobs(&Cache::new(cache_dir))?;
    let mut report = sweeper.report();
    report.warnings = reach.warnings;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::in_use::{TryLock, try_lock};
    use super::*;
    use crate::build::image::{Image, ImageLayer, image_path};
    use crate::build::layer_kind::LayerKind;
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
            std::fs::create_dir_all(Cache::new(&dir.path().join("cache")).debs_dir()).unwrap();
            Fixture { dir, store }
        }

        fn cache(&self) -> PathBuf {
            self.dir.path().join("cache")
        }

        fn debs_dir(&self) -> PathBuf {
            Cache::new(&self.cache()).debs_dir()
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
                    kind: if parent.is_some() {
                        LayerKind::Packages(1)
                    } else {
                        LayerKind::Base
                    },
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
                base_config: None,
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
            std::fs::write(Cache::new(&self.cache()).deb(sha), vec![0u8; 5000]).unwrap();
        }

        fn debs(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(self.debs_dir())
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
        crate::solve::fixture::bookworm_lock(packages).render()
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
        std::fs::create_dir_all(f.store.tmp_dir().join("dead.999999999/tree/usr")).unwrap();
        std::fs::write(f.store.log_path("dead"), b"failed").unwrap();
        std::fs::write(
            f.store
                .images_dir()
                .join("app/.000000000003.json.partial-999999999"),
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
        assert!(!f.store.layer_dir("pkgs1").exists());
        assert!(image_path(&f.store, "app:000000000002").exists());
        assert!(!image_path(&f.store, "app:000000000001").exists());
        assert_eq!(f.debs(), [format!("{a}.deb"), format!("{b}.deb")]);
        assert!(f.store.log_path("base").exists());
        assert!(!f.store.log_path("pkgs1").exists());
        assert!(!f.store.log_path("dead").exists());
        assert_eq!(std::fs::read_dir(f.store.tmp_dir()).unwrap().count(), 0);

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
    fn only_the_base_images_live_locks_pin_keep_their_records() {
        let f = Fixture::new();
        f.layer("image1", None, 10);
        f.image("one:000000000001", &["image1"]);
        let cache = Cache::new(&f.cache());
        let (pinned, forgotten) = (
            format!("sha256:{}", sha('c')),
            format!("sha256:{}", sha('d')),
        );
        std::fs::create_dir_all(cache.base_images_dir()).unwrap();
        for digest in [&pinned, &forgotten] {
            std::fs::write(cache.base_image(digest), b"{}").unwrap();
        }
        let lock = f.project("one", "one:000000000001", &[]);
        let mut on_image = crate::solve::lockfile::Lock::parse(&lock_text(&[])).unwrap();
        on_image.image = Some(crate::solve::lockfile::LockedImage {
            reference: "127.0.0.1:5000/app:1".into(),
            digest: pinned.clone(),
        });
        std::fs::write(&lock, on_image.render()).unwrap();
        roots::record(&f.store, &lock, "one:000000000001").unwrap();
        let report = collect(&f.store, &f.cache(), false, &|| {}).unwrap();
        assert_eq!(report.count(Kind::Download), 1, "{:#?}", report.removals);
        assert!(cache.base_image(&pinned).exists());
        assert!(!cache.base_image(&forgotten).exists());
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
        let held = try_lock(&f.store.key_lock_path("old"), false).unwrap();
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
                kind: LayerKind::Base,
                parent: None,
            })
            .unwrap();
        let report = sweep(&f.store, &f.cache(), false).unwrap();
        assert_eq!(report.count(Kind::Layer), 2, "{:#?}", report.removals);
        assert!(f.store.layer_keys().unwrap().is_empty());
    }

    #[test]
    fn a_download_under_way_is_left_alone_and_needed_partials_are_kept() {
        let f = Fixture::new();
        let (a, b, c) = (sha('a'), sha('b'), sha('c'));
        f.project("p", "app:000000000001", &[&a]);
        let debs = f.debs_dir();
        std::fs::write(debs.join(format!("{a}.deb.partial")), b"half").unwrap();
        std::fs::write(debs.join(format!("{b}.deb.partial")), b"half").unwrap();
        std::fs::write(debs.join(format!("{c}.deb.partial")), b"half").unwrap();
        let downloading = try_lock(&Cache::new(&f.cache()).deb_lock(&c), true).unwrap();
        assert!(matches!(downloading, TryLock::Free(Some(_))));
        let report = sweep(&f.store, &f.cache(), false).unwrap();
        assert_eq!(report.count(Kind::Leftover), 1, "{:#?}", report.removals);
        assert_eq!(
            f.debs(),
            [format!("{a}.deb.partial"), format!("{c}.deb.partial")]
        );
    }

    #[test]
    fn blobs_a_pull_left_go_unless_a_pull_is_writing_one() {
        let f = Fixture::new();
        let blobs = Cache::new(&f.cache()).blobs_dir();
        std::fs::create_dir_all(&blobs).unwrap();
        let (a, b, c) = (sha('a'), sha('b'), sha('c'));
        std::fs::write(blobs.join(format!("{a}.partial")), b"half").unwrap();
        std::fs::write(blobs.join(&b), b"whole").unwrap();
        std::fs::write(blobs.join(format!("{c}.partial")), b"half").unwrap();
        let downloading = try_lock(&blobs.join(format!("{c}.partial")), false).unwrap();
        assert!(matches!(downloading, TryLock::Free(Some(_))));
        let report = sweep(&f.store, &f.cache(), false).unwrap();
        assert_eq!(report.count(Kind::Leftover), 2, "{:#?}", report.removals);
        let left: Vec<String> = std::fs::read_dir(&blobs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, [format!("{c}.partial")]);
        assert!(
            report
                .in_use
                .iter()
                .any(|line| line.contains("being downloaded"))
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
