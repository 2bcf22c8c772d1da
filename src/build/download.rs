//! Every `.deb` of a lock into the cache: several at a time, each checked against the lock's
//! SHA-256 before it can be used, resumable, with a progress bar on a terminal and plain log
//! lines otherwise.
//!
//! Each `.deb` is kept where [`Cache::deb`] says, complete and verified; beside it, a partial
//! file while a download is under way or was interrupted (continued next time, never used as
//! a whole file).

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::fetch::{FetchError, Fetcher};
use crate::mirror::Mirrors;
use crate::solve::lockfile::{Lock, LockedPackage};

use crate::cache::Cache;

/// Downloads at once: enough to hide a mirror's latency, few enough to be polite.
pub const PARALLEL_DOWNLOADS: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("the mirror no longer serves {package} {version}: `{url}` is missing")]
    Missing {
        package: String,
        version: String,
        url: String,
    },
    #[error("cannot download {package} {version}")]
    Fetch {
        package: String,
        version: String,
        #[source]
        source: FetchError,
    },
}

impl DownloadError {
    pub fn hint(&self) -> Option<String> {
        match self {
            DownloadError::Missing { .. } => Some(
                "the locked version is gone from the mirror; `env lock --update` moves to versions it still has".into(),
            ),
            DownloadError::Fetch { source: FetchError::HashMismatch { .. }, .. } => {
                Some("the file was deleted; the mirror may be serving a damaged or altered file".into())
            }
            DownloadError::Fetch { .. } => None,
        }
    }
}

/// What a run of [`download_all`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DownloadSummary {
    /// Packages already in the cache.
    pub cached: usize,
    /// Packages downloaded now.
    pub downloaded: usize,
    /// Bytes downloaded now.
    pub bytes: u64,
}

/// Where a verified `.deb` with this SHA-256 is kept.
pub fn deb_path(cache_dir: &Path, sha256: &str) -> PathBuf {
    Cache::new(cache_dir).deb(sha256)
}

/// The URL a locked package is fetched from, through the mirror serving its suite.
pub fn deb_url(mirrors: &Mirrors, package: &LockedPackage) -> String {
    format!("{}/{}", mirrors.url_for_suite(&package.suite), package.path)
}

/// Makes sure every package of `lock` is in the cache, verified; stops at the first failure.
pub fn download_all(
    lock: &Lock,
    mirrors: &Mirrors,
    cache_dir: &Path,
    fetcher: &Fetcher,
) -> Result<DownloadSummary, DownloadError> {
    let packages: Vec<&LockedPackage> = lock.packages.iter().collect();
    download(&packages, mirrors, cache_dir, fetcher)
}

/// Makes sure each of `packages` is in the cache, verified; stops at the first failure.
pub fn download(
    packages: &[&LockedPackage],
    mirrors: &Mirrors,
    cache_dir: &Path,
    fetcher: &Fetcher,
) -> Result<DownloadSummary, DownloadError> {
    let mut summary = DownloadSummary::default();
    let mut missing: VecDeque<&LockedPackage> = VecDeque::new();
    for &package in packages {
        if deb_path(cache_dir, &package.sha256).is_file() {
            summary.cached += 1;
        } else {
            missing.push_back(package);
        }
    }
    if missing.is_empty() {
        return Ok(summary);
    }
    let total: u64 = missing.iter().map(|p| p.size).sum();
    let progress = Progress::new(missing.len(), total);
    let queue = Mutex::new(missing);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<DownloadError>> = Mutex::new(None);
    let done = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_DOWNLOADS {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                    let Some(package) = next else { break };
                    match download_one(package, mirrors, cache_dir, fetcher, &progress) {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            progress.finished(package);
                        }
                        Err(error) => {
                            failed.store(true, Ordering::Relaxed);
                            if let Ok(mut slot) = first_error.lock() {
                                slot.get_or_insert(error);
                            }
                        }
                    }
                }
            });
        }
    });
    progress.close();
    if let Some(error) = first_error.into_inner().ok().flatten() {
        return Err(error);
    }
    summary.downloaded = done.into_inner() as usize;
    summary.bytes = total;
    Ok(summary)
}

fn download_one(
    package: &LockedPackage,
    mirrors: &Mirrors,
    cache_dir: &Path,
    fetcher: &Fetcher,
    progress: &Progress,
) -> Result<(), DownloadError> {
    let url = deb_url(mirrors, package);
    let destination = deb_path(cache_dir, &package.sha256);
    crate::fetch::with_retries(|| {
        fetcher.download_resumable(&url, &package.sha256, &destination, &|bytes| {
            progress.advance(bytes)
        })
    })
    .map_err(|source| match source {
        FetchError::Status {
            status: 404 | 410,
            url,
        } => DownloadError::Missing {
            package: package.name.clone(),
            version: package.version.clone(),
            url,
        },
        FetchError::Read { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            DownloadError::Missing {
                package: package.name.clone(),
                version: package.version.clone(),
                url: url.clone(),
            }
        }
        source => DownloadError::Fetch {
            package: package.name.clone(),
            version: package.version.clone(),
            source,
        },
    })
}

/// A byte-counting bar on a terminal; one line per finished package otherwise (CI logs).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(count: usize, bytes: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            eprintln!("downloading {count} packages ({})", human_bytes(bytes));
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::new(bytes);
        let style = indicatif::ProgressStyle::with_template(
            "downloading {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Progress { bar: Some(bar) }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn finished(&self, package: &LockedPackage) {
        match &self.bar {
            Some(bar) => bar.set_message(package.name.clone()),
            None => eprintln!(
                "  {} {} ({})",
                package.name,
                package.version,
                human_bytes(package.size)
            ),
        }
    }

    fn close(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `1.4 MB`, `820 kB`.
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.0} kB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solve::fixture::FixtureRepository;
    use crate::solve::lockfile::Layer;

    fn locked(repository: &FixtureRepository, name: &str) -> LockedPackage {
        let stanza = repository.package(name, "1.0", "");
        let field = |key: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap()
                .trim()
                .to_string()
        };
        LockedPackage {
            name: name.into(),
            version: "1.0".into(),
            architecture: "amd64".into(),
            suite: "bookworm".into(),
            path: field("Filename:"),
            size: field("Size:").parse().unwrap(),
            sha256: field("SHA256:"),
            layer: Layer::Packages,
            requested: false,
            essential: false,
            batch: 0,
            group: 1,
        }
    }

    fn lock_of(packages: Vec<LockedPackage>) -> Lock {
        crate::solve::fixture::bookworm_lock(packages)
    }

    #[test]
    fn downloads_verify_and_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let repository = FixtureRepository::new(&dir.path().join("mirror"));
        let packages: Vec<LockedPackage> = (0..10)
            .map(|i| locked(&repository, &format!("pkg{i}")))
            .collect();
        let lock = lock_of(packages);
        let mirrors = Mirrors::single(&repository.url(), crate::mirror::MirrorOrigin::EnvFile);
        let cache = dir.path().join("cache");
        let first = download_all(&lock, &mirrors, &cache, &Fetcher::new()).unwrap();
        assert_eq!((first.cached, first.downloaded), (0, 10));
        for package in &lock.packages {
            let bytes = std::fs::read(deb_path(&cache, &package.sha256)).unwrap();
            assert_eq!(crate::fetch::sha256_hex(&bytes), package.sha256);
        }
        let second = download_all(&lock, &mirrors, &cache, &Fetcher::new()).unwrap();
        assert_eq!((second.cached, second.downloaded), (10, 0));
    }

    #[test]
    fn a_changed_file_is_refused_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let repository = FixtureRepository::new(&dir.path().join("mirror"));
        let package = locked(&repository, "victim");
        std::fs::write(repository.root.join(&package.path), b"tampered").unwrap();
        let mirrors = Mirrors::single(&repository.url(), crate::mirror::MirrorOrigin::EnvFile);
        let cache = dir.path().join("cache");
        let error = download_all(
            &lock_of(vec![package.clone()]),
            &mirrors,
            &cache,
            &Fetcher::new(),
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with("cannot download victim 1.0"),
            "{error}"
        );
        assert!(error.hint().unwrap().contains("damaged or altered"));
        assert!(!deb_path(&cache, &package.sha256).exists());
        assert!(!crate::fetch::partial_path(&deb_path(&cache, &package.sha256)).exists());
    }

    #[test]
    fn a_file_gone_from_the_mirror_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let repository = FixtureRepository::new(&dir.path().join("mirror"));
        let package = locked(&repository, "gone");
        std::fs::remove_file(repository.root.join(&package.path)).unwrap();
        let mirrors = Mirrors::single(&repository.url(), crate::mirror::MirrorOrigin::EnvFile);
        let error = download_all(
            &lock_of(vec![package]),
            &mirrors,
            &dir.path().join("cache"),
            &Fetcher::new(),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("the mirror no longer serves gone 1.0: `file://"),
            "{error}"
        );
        assert!(
            error.to_string().contains("pool/gone_1.0_amd64.deb"),
            "{error}"
        );
    }
}
