//! The download cache (`paths::cache_dir`): everything in it can be fetched again. Every name
//! in it is spelled in this file only; solve keeps its indexes here, build its `.deb`s. The
//! layout is a contract with every existing cache, hence the versioned folder names.
//!
//! ```text
//! <cache>/debs-v1/<sha256>.deb           a downloaded `.deb`, complete and verified
//! <cache>/debs-v1/<sha256>.deb.partial   its download, under way or interrupted
//! <cache>/debs-v1/<sha256>.deb.lock      held by the process downloading it
//! <cache>/blobs-v1/<hex>.partial        a registry blob's download (`env pull`), under way or
//!                                       interrupted; renamed to `<hex>` once whole and checked,
//!                                       and deleted once its layer is in the store
//! <cache>/base-images-v1/<hex>.json   a registry image pinned as a base (by its manifest's
//!                                       digest): its layers and config, read from the registry
//! <cache>/build-stubs-v1/                programs first on dpkg's PATH in builds (`build::base`)
//! <cache>/indexes-v1/suites/<key>/       a suite's verified InRelease, Release and validators
//! <cache>/indexes-v1/packages/<sha256>   compressed Packages files, by the hash Release gives
//! <cache>/indexes-v1/parsed/<key>        the parsed `Index` of a set of Packages files
//! ```

use std::path::{Path, PathBuf};

const DEBS_DIR: &str = "debs-v1";
const DEB_SUFFIX: &str = ".deb";
const STUBS_DIR: &str = "build-stubs-v1";
const BLOBS_DIR: &str = "blobs-v1";
const BASE_IMAGES_DIR: &str = "base-images-v1";
const INDEXES_DIR: &str = "indexes-v1";
const SUITES_DIR: &str = "suites";
const PACKAGES_DIR: &str = "packages";
const PARSED_DIR: &str = "parsed";

/// The download cache of one user.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// What an entry of [`Cache::debs_dir`] is, besides download locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebFile {
    Complete,
    /// A download under way or interrupted.
    Partial,
}

impl Cache {
    pub fn new(root: &Path) -> Self {
        Cache {
            root: root.to_path_buf(),
        }
    }

    /// Where downloaded `.deb`s are, by SHA-256.
    pub fn debs_dir(&self) -> PathBuf {
        self.root.join(DEBS_DIR)
    }

    /// Where a verified `.deb` with this SHA-256 is kept.
    pub fn deb(&self, sha256: &str) -> PathBuf {
        self.debs_dir().join(format!("{sha256}{DEB_SUFFIX}"))
    }

    /// The lock a process holds while it downloads that `.deb`.
    pub fn deb_lock(&self, sha256: &str) -> PathBuf {
        crate::fetch::lock_path(&self.deb(sha256))
    }

    /// Where registry blobs are downloaded to, by the hex of their SHA-256.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join(BLOBS_DIR)
    }

    /// What envkit read of the base image whose manifest has this digest (`sha256:<hex>`).
    pub fn base_image(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.base_images_dir().join(format!("{hex}.json"))
    }

    /// The folder of those records.
    pub fn base_images_dir(&self) -> PathBuf {
        self.root.join(BASE_IMAGES_DIR)
    }

    /// The folder of programs that come first on dpkg's PATH while layers are built.
    pub fn stubs_dir(&self) -> PathBuf {
        self.root.join(STUBS_DIR)
    }

    /// The verified release files of the suite named by `key`.
    pub fn suite_indexes(&self, key: &str) -> PathBuf {
        self.root.join(INDEXES_DIR).join(SUITES_DIR).join(key)
    }

    /// A compressed Packages file with this SHA-256.
    pub fn packages_index(&self, sha256: &str) -> PathBuf {
        self.root.join(INDEXES_DIR).join(PACKAGES_DIR).join(sha256)
    }

    /// The parsed index named by `key`.
    pub fn parsed_index(&self, key: &str) -> PathBuf {
        self.root.join(INDEXES_DIR).join(PARSED_DIR).join(key)
    }
}

/// The SHA-256 an entry of [`Cache::debs_dir`] is named after, and what it is; `None` for
/// locks and anything else.
pub fn deb_file(name: &str) -> Option<(&str, DebFile)> {
    if let Some(sha256) = name.strip_suffix(DEB_SUFFIX) {
        return Some((sha256, DebFile::Complete));
    }
    let sha256 = crate::fetch::partial_target(name)?.strip_suffix(DEB_SUFFIX)?;
    Some((sha256, DebFile::Partial))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Existing caches are laid out this way; a change here must be deliberate.
    #[test]
    fn the_layout_is_the_one_existing_caches_have() {
        let cache = Cache::new(Path::new("/c"));
        let cases = [
            (cache.deb("ab"), "/c/debs-v1/ab.deb"),
            (cache.deb_lock("ab"), "/c/debs-v1/ab.deb.lock"),
            (
                crate::fetch::partial_path(&cache.deb("ab")),
                "/c/debs-v1/ab.deb.partial",
            ),
            (cache.stubs_dir(), "/c/build-stubs-v1"),
            (cache.suite_indexes("k"), "/c/indexes-v1/suites/k"),
            (cache.packages_index("ab"), "/c/indexes-v1/packages/ab"),
            (cache.parsed_index("k"), "/c/indexes-v1/parsed/k"),
        ];
        for (path, expected) in cases {
            assert_eq!(path, Path::new(expected));
        }
    }

    #[test]
    fn names_in_the_cache_read_back() {
        assert_eq!(deb_file("ab.deb"), Some(("ab", DebFile::Complete)));
        assert_eq!(deb_file("ab.deb.partial"), Some(("ab", DebFile::Partial)));
        assert_eq!(deb_file("ab.deb.lock"), None);
    }
}
