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
use crate::snapshot::SnapshotArchive;
use crate::solve::lockfile::{Lock, LockedPackage};

use crate::cache::Cache;

/// Downloads at once: enough to hide a mirror's latency, few enough to be polite.
pub const PARALLEL_DOWNLOADS: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("the mirror no longer serves {}", gone_list(.packages))]
    Gone {
        packages: Vec<GonePackage>,
        /// The snapshot archive that was asked too, if one is configured.
        snapshot: Option<String>,
    },
    #[error("cannot download {package} {version}")]
    Fetch {
        package: String,
        version: String,
        #[source]
        source: FetchError,
    },
    #[error("cannot read the cached `{}`", path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A locked package neither the mirror nor the snapshot archive has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GonePackage {
    pub name: String,
    pub version: String,
    /// Where the mirror was asked.
    pub url: String,
}

fn gone_list(packages: &[GonePackage]) -> String {
    match packages {
        [one] => format!("{} {}: `{}` is missing", one.name, one.version, one.url),
        many => format!(
            "{} locked packages: {}",
            many.len(),
            many.iter()
                .map(|p| format!("{} {}", p.name, p.version))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl DownloadError {
    pub fn hint(&self) -> Option<String> {
        match self {
            DownloadError::Gone { snapshot, .. } => {
                let snapshot = match snapshot {
                    Some(root) => format!(
                        "the snapshot archive `{root}` does not have them either (asked at the lock's index dates)"
                    ),
                    None => format!(
                        "a snapshot archive of the mirror can serve them: `snapshot \"URL\"` in env.kdl or {} (the layout of Debian's snapshot service)",
                        crate::snapshot::SNAPSHOT_VAR
                    ),
                };
                Some(format!(
                    "the mirror dropped the locked versions; {snapshot}; a team cache (`cache` in env.kdl) holding the layers built from them skips the download; or `env lock --update` moves to versions the mirror has"
                ))
            }
            DownloadError::Fetch {
                source: FetchError::HashMismatch { .. },
                ..
            } => Some(
                "the file was deleted; the mirror may be serving a damaged or altered file".into(),
            ),
            DownloadError::Fetch { .. } | DownloadError::Cache { .. } => None,
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
    /// Of those downloaded, the ones only the snapshot archive still had.
    pub from_snapshot: usize,
    /// Cached files that no longer matched their SHA-256 (deleted and downloaded again).
    pub damaged: usize,
}

/// Where a verified `.deb` with this SHA-256 is kept.
pub fn deb_path(cache_dir: &Path, sha256: &str) -> PathBuf {
    Cache::new(cache_dir).deb(sha256)
}

/// The URL a locked package is fetched from, through the mirror serving its suite.
pub fn deb_url(mirrors: &Mirrors, package: &LockedPackage) -> String {
    format!("{}/{}", mirrors.url_for_suite(&package.suite), package.path)
}

/// Makes sure every package of `lock` is in the cache, verified.
pub fn download_all(
    lock: &Lock,
    mirrors: &Mirrors,
    cache_dir: &Path,
    fetcher: &Fetcher,
) -> Result<DownloadSummary, DownloadError> {
    let packages: Vec<&LockedPackage> = lock.packages.iter().collect();
    download(&packages, lock, mirrors, cache_dir, fetcher)
}

/// Makes sure each of `packages` (of `lock`) is in the cache, verified: a cached file is
/// checked again (a damaged one is downloaded anew), a missing one comes from the mirror,
/// else from the snapshot archive at the lock's index dates. Stops at the first failure to
/// fetch; packages gone from both are all named in one error at the end.
pub fn download(
    packages: &[&LockedPackage],
    lock: &Lock,
    mirrors: &Mirrors,
    cache_dir: &Path,
    fetcher: &Fetcher,
) -> Result<DownloadSummary, DownloadError> {
    let mut summary = DownloadSummary::default();
    let mut missing: VecDeque<&LockedPackage> = VecDeque::new();
    for &package in packages {
        let path = deb_path(cache_dir, &package.sha256);
        if !path.is_file() {
            missing.push_back(package);
        } else if cached_file_matches(&path, &package.sha256)? {
            summary.cached += 1;
        } else {
            eprintln!(
                "the cached {} {} was damaged (its SHA-256 changed); downloading it again",
                package.name, package.version
            );
            std::fs::remove_file(&path).map_err(|source| DownloadError::Cache {
                path: path.clone(),
                source,
            })?;
            summary.damaged += 1;
            missing.push_back(package);
        }
    }
    if missing.is_empty() {
        return Ok(summary);
    }
    let snapshot = mirrors
        .snapshot
        .as_deref()
        .map(|root| SnapshotArchive::new(root, &lock.indexes));
    let total: u64 = missing.iter().map(|p| p.size).sum();
    let progress = Progress::new(missing.len(), total);
    let queue = Mutex::new(missing);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<DownloadError>> = Mutex::new(None);
    let gone: Mutex<Vec<GonePackage>> = Mutex::new(Vec::new());
    let done = AtomicU64::new(0);
    let from_snapshot = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_DOWNLOADS {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                    let Some(package) = next else { break };
                    let fetched = download_one(package, mirrors, cache_dir, fetcher, &progress)
                        .and_then(|found| match (found, &snapshot) {
                            (Found::Yes, _) => Ok(Found::Yes),
                            (Found::Missing(url), Some(snapshot)) => {
                                from_the_snapshot(package, snapshot, cache_dir, fetcher, &progress)
                                    .map(|found| match found {
                                        Found::Yes => {
                                            from_snapshot.fetch_add(1, Ordering::Relaxed);
                                            Found::Yes
                                        }
                                        Found::Missing(_) => Found::Missing(url),
                                    })
                            }
                            (missing, None) => Ok(missing),
                        });
                    match fetched {
                        Ok(Found::Yes) => {
                            done.fetch_add(1, Ordering::Relaxed);
                            progress.finished(package);
                        }
                        Ok(Found::Missing(url)) => {
                            if let Ok(mut gone) = gone.lock() {
                                gone.push(GonePackage {
                                    name: package.name.clone(),
                                    version: package.version.clone(),
                                    url,
                                });
                            }
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
    let mut gone = gone.into_inner().unwrap_or_default();
    if !gone.is_empty() {
        gone.sort_by(|a, b| a.name.cmp(&b.name));
        return Err(DownloadError::Gone {
            packages: gone,
            snapshot: snapshot.map(|s| s.root().to_string()),
        });
    }
    summary.downloaded = done.into_inner() as usize;
    summary.from_snapshot = from_snapshot.into_inner() as usize;
    summary.bytes = total;
    Ok(summary)
}

/// Whether the file at `path` still has the SHA-256 its name promises.
fn cached_file_matches(path: &Path, sha256: &str) -> Result<bool, DownloadError> {
    crate::fetch::sha256_file(path)
        .map(|actual| actual == sha256)
        .map_err(|source| DownloadError::Cache {
            path: path.to_path_buf(),
            source,
        })
}

/// Whether a source had the file.
enum Found {
    Yes,
    /// Not there; the URL asked.
    Missing(String),
}

fn download_one(
    package: &LockedPackage,
    mirrors: &Mirrors,
    cache_dir: &Path,
    fetcher: &Fetcher,
    progress: &Progress,
) -> Result<Found, DownloadError> {
    fetch_from(
        &deb_url(mirrors, package),
        package,
        cache_dir,
        fetcher,
        progress,
    )
}

/// Asks the snapshot archive for `package` at each time it may have it, in turn.
fn from_the_snapshot(
    package: &LockedPackage,
    snapshot: &SnapshotArchive,
    cache_dir: &Path,
    fetcher: &Fetcher,
    progress: &Progress,
) -> Result<Found, DownloadError> {
    for url in snapshot.urls(package) {
        if let Found::Yes = fetch_from(&url, package, cache_dir, fetcher, progress)? {
            progress.note(&format!(
                "{} {} is gone from the mirror; fetched from the snapshot archive",
                package.name, package.version
            ));
            return Ok(Found::Yes);
        }
    }
    Ok(Found::Missing(snapshot.root().to_string()))
}

/// Fetches `package` from `url` into the cache, checked against its SHA-256.
fn fetch_from(
    url: &str,
    package: &LockedPackage,
    cache_dir: &Path,
    fetcher: &Fetcher,
    progress: &Progress,
) -> Result<Found, DownloadError> {
    let destination = deb_path(cache_dir, &package.sha256);
    let fetched = crate::fetch::with_retries(|| {
        fetcher.download_resumable(url, &package.sha256, &destination, &|bytes| {
            progress.advance(bytes)
        })
    });
    match fetched {
        Ok(_) => Ok(Found::Yes),
        Err(FetchError::Status {
            status: 404 | 410, ..
        }) => Ok(Found::Missing(url.to_string())),
        Err(FetchError::Read { ref source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(Found::Missing(url.to_string()))
        }
        Err(source) => Err(DownloadError::Fetch {
            package: package.name.clone(),
            version: package.version.clone(),
            source,
        }),
    }
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

    /// A line that stays, above the bar on a terminal.
    fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("  {line}"),
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

    #[test]
    fn every_package_gone_from_the_mirror_is_named_with_the_ways_out() {
        let dir = tempfile::tempdir().unwrap();
        let repository = FixtureRepository::new(&dir.path().join("mirror"));
        let packages: Vec<LockedPackage> = ["kept", "gone1", "gone2"]
            .iter()
            .map(|name| locked(&repository, name))
            .collect();
        for package in &packages[1..] {
            std::fs::remove_file(repository.root.join(&package.path)).unwrap();
        }
        let mirrors = Mirrors::single(&repository.url(), crate::mirror::MirrorOrigin::EnvFile);
        let cache = dir.path().join("cache");
        let error = download_all(
            &lock_of(packages.clone()),
            &mirrors,
            &cache,
            &Fetcher::new(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the mirror no longer serves 2 locked packages: gone1 1.0, gone2 1.0"
        );
        let hint = error.hint().unwrap();
        assert!(
            hint.contains("`snapshot \"URL\"` in env.kdl or ENVKIT_SNAPSHOT"),
            "{hint}"
        );
        assert!(
            hint.contains("`cache`") && hint.contains("env lock --update"),
            "{hint}"
        );
        // What the mirror still had is kept for the next try.
        assert!(deb_path(&cache, &packages[0].sha256).is_file());
    }

    #[test]
    fn a_package_gone_from_the_mirror_comes_from_the_snapshot_archive_at_the_index_date() {
        let dir = tempfile::tempdir().unwrap();
        let repository = FixtureRepository::new(&dir.path().join("mirror"));
        let package = locked(&repository, "old");
        let deb = std::fs::read(repository.root.join(&package.path)).unwrap();
        std::fs::remove_file(repository.root.join(&package.path)).unwrap();
        let mut lock = lock_of(vec![package.clone()]);
        lock.indexes = vec![crate::solve::lockfile::LockedIndex {
            suite: "bookworm".into(),
            date: "Sat, 01 Nov 2025 09:30:00 UTC".into(),
            path: "main/binary-amd64/Packages.gz".into(),
            sha256: "00".into(),
        }];
        // The archive's state six hours on is the first to hold it.
        let snapshot = dir.path().join("snapshot");
        let held = snapshot
            .join("archive/debian/20251101T153000Z")
            .join(&package.path);
        std::fs::create_dir_all(held.parent().unwrap()).unwrap();
        std::fs::write(&held, &deb).unwrap();
        let mut mirrors = Mirrors::single(&repository.url(), crate::mirror::MirrorOrigin::EnvFile);
        mirrors.snapshot = Some(format!("file://{}", snapshot.display()));
        let cache = dir.path().join("cache");
        let summary = download_all(&lock, &mirrors, &cache, &Fetcher::new()).unwrap();
        assert_eq!((summary.downloaded, summary.from_snapshot), (1, 1));
        assert_eq!(
            std::fs::read(deb_path(&cache, &package.sha256)).unwrap(),
            deb
        );

        // A snapshot serving other bytes is refused like a mirror doing so.
        std::fs::remove_file(deb_path(&cache, &package.sha256)).unwrap();
        std::fs::write(&held, b"altered").unwrap();
        let error = download_all(&lock, &mirrors, &cache, &Fetcher::new()).unwrap_err();
        assert!(
            error.to_string().starts_with("cannot download old 1.0"),
            "{error}"
        );

        std::fs::remove_file(&held).unwrap();
        let error = download_all(&lock, &mirrors, &cache, &Fetcher::new()).unwrap_err();
        assert!(
            error.hint().unwrap().contains("does not have them either"),
            "{error}"
        );
    }

    #[test]
    fn a_damaged_cached_file_is_downloaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let repository = FixtureRepository::new(&dir.path().join("mirror"));
        let lock = lock_of(vec![locked(&repository, "pkg")]);
        let mirrors = Mirrors::single(&repository.url(), crate::mirror::MirrorOrigin::EnvFile);
        let cache = dir.path().join("cache");
        download_all(&lock, &mirrors, &cache, &Fetcher::new()).unwrap();
        let cached = deb_path(&cache, &lock.packages[0].sha256);
        let mut bytes = std::fs::read(&cached).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&cached, &bytes).unwrap();
        let summary = download_all(&lock, &mirrors, &cache, &Fetcher::new()).unwrap();
        assert_eq!((summary.damaged, summary.downloaded), (1, 1));
        assert_eq!(
            crate::fetch::sha256_file(&cached).unwrap(),
            lock.packages[0].sha256
        );
    }
}
