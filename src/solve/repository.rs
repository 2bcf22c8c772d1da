//! A release's package index, from the mirror or the cache: `InRelease` verified against the
//! keyring, `Packages` checked against the signed `Release`, parsed into an [`Index`].
//!
//! In the cache (safe to delete; its layout is `build::store`'s): per suite, `InRelease` as
//! served (kept only once verified), its verified `Release` text and `validators` (ETag and
//! Last-Modified for conditional requests), under a key derived from the suite's URL; the
//! compressed Packages files by the hash Release gives; and the parsed `Index` of a set of
//! Packages files. Nothing is written before it is verified, so a bad signature or checksum
//! leaves the cache as it was.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::index::Index;
use super::lockfile::LockedIndex;
use super::openpgp::{Keyring, OpenPgpError, verify_cleartext};
use crate::debian::release::{IndexFile, Release, ReleaseError};
use crate::fetch::{Conditional, FetchError, Fetcher, Validators, write_bytes_atomically};
use crate::mirror::{Mirrors, SuitePlan};

/// The component envkit reads.
pub const COMPONENT: &str = "main";

/// Whether to ask the mirror for newer indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Conditional requests for every suite (`env lock`, `--refresh`).
    Refresh,
    /// Use cached indexes; go to the mirror only for what the cache lacks.
    Cached,
}

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the mirror does not serve `{release}`: `{url}` is missing")]
    ReleaseNotServed { release: String, url: String },
    #[error("`{url}` failed verification")]
    Signature {
        url: String,
        #[source]
        source: OpenPgpError,
    },
    #[error("`{url}` is not a valid Release file")]
    BadRelease {
        url: String,
        #[source]
        source: ReleaseError,
    },
    #[error("`{url}` expired at {valid_until} (its Valid-Until)")]
    Expired { url: String, valid_until: String },
    #[error("`{url}` is dated {date}, later than this machine's clock")]
    FromTheFuture { url: String, date: String },
    #[error("`{url}` lists no {COMPONENT}/binary-{architecture} package index")]
    NoPackagesIndex { url: String, architecture: String },
    #[error("cannot decompress `{url}`")]
    Decompress {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

/// A release's index and the signed facts it came from.
#[derive(Debug, Clone)]
pub struct ReleaseIndex {
    pub index: Index,
    pub indexes: Vec<LockedIndex>,
}

/// Reads indexes of one release.
pub struct Repository<'a> {
    pub mirrors: &'a Mirrors,
    pub keyring: &'a Keyring,
    pub cache_dir: &'a Path,
    pub fetcher: &'a Fetcher,
}

impl Repository<'_> {
    /// The index of `release` for `architecture`: the highest version of each package across
    /// the release's suites.
    pub fn load(
        &self,
        release: &str,
        architecture: &str,
        freshness: Freshness,
    ) -> Result<ReleaseIndex, RepositoryError> {
        // One round trip for all suites instead of one per suite.
        let plans = self.mirrors.plan(release);
        let answers: Vec<Result<Option<Release>, RepositoryError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = plans
                .iter()
                .map(|plan| scope.spawn(move || self.release_file(plan, freshness)))
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let mut suites = Vec::new();
        for (plan, answer) in plans.into_iter().zip(answers) {
            let Some(signed) = answer? else {
                if plan.required {
                    return Err(RepositoryError::ReleaseNotServed {
                        release: release.to_string(),
                        url: in_release_url(&plan),
                    });
                }
                continue;
            };
            let file = packages_index(&signed, COMPONENT, architecture)
                .cloned()
                .ok_or_else(|| RepositoryError::NoPackagesIndex {
                    url: in_release_url(&plan),
                    architecture: architecture.to_string(),
                })?;
            suites.push((plan, signed, file));
        }
        let indexes: Vec<LockedIndex> = suites
            .iter()
            .map(|(plan, signed, file)| LockedIndex {
                suite: plan.suite.clone(),
                date: signed.date.clone(),
                path: file.path.clone(),
                sha256: file.sha256.clone(),
            })
            .collect();
        let parsed = self.parsed_path(architecture, &indexes);
        if let Some(index) = std::fs::read(&parsed)
            .ok()
            .and_then(|bytes| Index::from_bytes(&bytes))
        {
            return Ok(ReleaseIndex { index, indexes });
        }
        let mut index = Index::new(architecture);
        for (plan, signed, file) in &suites {
            let text = self.packages_text(plan, signed, file)?;
            index.add_packages(&plan.suite, &text);
        }
        write_bytes_atomically(&parsed, &index.to_bytes())?;
        Ok(ReleaseIndex { index, indexes })
    }

    /// Where the parsed index of exactly these signed `Packages` files is kept. The key covers
    /// the architecture and each suite's name and checksum, so a new index from any suite
    /// gives a new entry; the version tag changes whenever `Index`'s layout does.
    fn parsed_path(&self, architecture: &str, indexes: &[LockedIndex]) -> PathBuf {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"envkit-parsed-index-v1\0");
        hasher.update(architecture.as_bytes());
        for index in indexes {
            hasher.update(b"\0");
            hasher.update(index.suite.as_bytes());
            hasher.update(b"\0");
            hasher.update(index.sha256.as_bytes());
        }
        crate::cache::Cache::new(self.cache_dir).parsed_index(&hasher.finalize().to_hex()[..32])
    }

    fn suite_dir(&self, plan: &SuitePlan) -> PathBuf {
        let key = blake3::hash(in_release_url(plan).as_bytes()).to_hex();
        crate::cache::Cache::new(self.cache_dir).suite_indexes(&key[..32])
    }

    /// The suite's verified Release, or `None` when the mirror does not have the suite. What is
    /// resolved against (a refresh) must be current: not past its `Valid-Until`, not dated
    /// ahead of the clock. Cached indexes read to build a locked image need not be: the lock's
    /// checksums decide there.
    fn release_file(
        &self,
        plan: &SuitePlan,
        freshness: Freshness,
    ) -> Result<Option<Release>, RepositoryError> {
        let release = self.release_file_as_served(plan, freshness)?;
        if let (Freshness::Refresh, Some(release)) = (freshness, &release) {
            check_current(&in_release_url(plan), release, unix_now())?;
        }
        Ok(release)
    }

    fn release_file_as_served(
        &self,
        plan: &SuitePlan,
        freshness: Freshness,
    ) -> Result<Option<Release>, RepositoryError> {
        let dir = self.suite_dir(plan);
        let url = in_release_url(plan);
        let cached = std::fs::read_to_string(dir.join("Release")).ok();
        if let (Freshness::Cached, Some(text)) = (freshness, &cached) {
            return parse_release(&url, text).map(Some);
        }
        let validators = match &cached {
            Some(_) => std::fs::read_to_string(dir.join("validators"))
                .map(|t| Validators::from_text(&t))
                .unwrap_or_default(),
            None => Validators::default(),
        };
        match crate::fetch::with_retries(|| self.fetcher.get_conditional(&url, &validators))? {
            Conditional::Missing => Ok(None),
            Conditional::NotModified => match &cached {
                Some(text) => parse_release(&url, text).map(Some),
                // A 304 without a cached copy cannot happen unless the cache was damaged
                // between reads: ask again without validators.
                None => self.release_file_unconditional(plan),
            },
            // Mirrors without validators answer 200 every time; the same bytes as the copy
            // verified before need no second verification.
            Conditional::Changed { body, .. }
                if cached.is_some()
                    && std::fs::read(dir.join("InRelease")).is_ok_and(|known| known == body) =>
            {
                parse_release(&url, cached.as_deref().unwrap_or_default()).map(Some)
            }
            Conditional::Changed { body, validators } => {
                self.accept_release(plan, &body, &validators).map(Some)
            }
        }
    }

    fn release_file_unconditional(
        &self,
        plan: &SuitePlan,
    ) -> Result<Option<Release>, RepositoryError> {
        match self
            .fetcher
            .get_conditional(&in_release_url(plan), &Validators::default())?
        {
            Conditional::Changed { body, validators } => {
                self.accept_release(plan, &body, &validators).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Verifies a downloaded InRelease and only then stores it.
    fn accept_release(
        &self,
        plan: &SuitePlan,
        body: &[u8],
        validators: &Validators,
    ) -> Result<Release, RepositoryError> {
        let url = in_release_url(plan);
        let text =
            verify_cleartext(body, self.keyring).map_err(|source| RepositoryError::Signature {
                url: url.clone(),
                source,
            })?;
        let release = parse_release(&url, &text)?;
        let dir = self.suite_dir(plan);
        write_bytes_atomically(&dir.join("InRelease"), body)?;
        write_bytes_atomically(&dir.join("Release"), text.as_bytes())?;
        write_bytes_atomically(&dir.join("validators"), validators.to_text().as_bytes())?;
        Ok(release)
    }

    /// The decompressed text of a Packages index, downloaded into the cache by hash if needed.
    fn packages_text(
        &self,
        plan: &SuitePlan,
        release: &Release,
        file: &IndexFile,
    ) -> Result<String, RepositoryError> {
        let cached = crate::cache::Cache::new(self.cache_dir).packages_index(&file.sha256);
        let dists = format!("{}/dists/{}", plan.url, plan.suite);
        let url = if release.acquire_by_hash {
            let dir = file.path.rsplit_once('/').map_or("", |(dir, _)| dir);
            format!("{dists}/{dir}/by-hash/SHA256/{}", file.sha256)
        } else {
            format!("{dists}/{}", file.path)
        };
        if !cached.is_file() {
            crate::fetch::with_retries(|| {
                self.fetcher
                    .download_resumable(&url, &file.sha256, &cached, &|_| {})
            })?;
        }
        let compressed = std::fs::File::open(&cached).map_err(|source| FetchError::Read {
            url: url.clone(),
            source,
        })?;
        let mut reader: Box<dyn Read> = if file.path.ends_with(".xz") {
            Box::new(liblzma::read::XzDecoder::new(std::io::BufReader::new(
                compressed,
            )))
        } else if file.path.ends_with(".gz") {
            Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(
                compressed,
            )))
        } else {
            Box::new(compressed)
        };
        let mut text = String::new();
        reader
            .read_to_string(&mut text)
            .map_err(|source| RepositoryError::Decompress { url, source })?;
        Ok(text)
    }
}

/// The `Packages` index of `component` for `architecture` that `Release` lists, preferring the
/// smallest download that `packages_text` can decompress.
fn packages_index<'a>(
    release: &'a Release,
    component: &str,
    architecture: &str,
) -> Option<&'a IndexFile> {
    let stem = format!("{component}/binary-{architecture}/Packages");
    ["xz", "gz"]
        .iter()
        .find_map(|extension| {
            release
                .files
                .iter()
                .find(|f| f.path == format!("{stem}.{extension}"))
        })
        .or_else(|| release.files.iter().find(|f| f.path == stem))
}

fn in_release_url(plan: &SuitePlan) -> String {
    format!("{}/dists/{}/InRelease", plan.url, plan.suite)
}

/// How far ahead of this machine's clock a Release may be dated (clocks drift; apt allows
/// seconds, which a VM resumed from sleep can exceed).
const MAX_FUTURE_SECS: u64 = 600;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Refuses a Release past its `Valid-Until`, or dated later than `now` (beyond clock drift).
fn check_current(url: &str, release: &Release, now: u64) -> Result<(), RepositoryError> {
    if let Some(valid_until) = &release.valid_until
        && crate::civil_time::rfc2822_epoch(valid_until).is_none_or(|until| now > until)
    {
        return Err(RepositoryError::Expired {
            url: url.to_string(),
            valid_until: valid_until.clone(),
        });
    }
    if crate::civil_time::rfc2822_epoch(&release.date)
        .is_some_and(|date| date > now + MAX_FUTURE_SECS)
    {
        return Err(RepositoryError::FromTheFuture {
            url: url.to_string(),
            date: release.date.clone(),
        });
    }
    Ok(())
}

fn parse_release(url: &str, text: &str) -> Result<Release, RepositoryError> {
    Release::parse(text).map_err(|source| RepositoryError::BadRelease {
        url: url.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_the_smallest_packages_index_it_can_decompress() {
        let release = Release::parse("Date: Sat, 11 Jul 2026 10:16:37 UTC\nSHA256:\n 515e 50060337 main/binary-amd64/Packages\n 6777 12084798 main/binary-amd64/Packages.gz\n 9e0b  8790396 main/binary-amd64/Packages.xz\n").unwrap();
        let index = packages_index(&release, "main", "amd64").unwrap();
        assert_eq!(
            (index.path.as_str(), index.size, index.sha256.as_str()),
            ("main/binary-amd64/Packages.xz", 8790396, "9e0b")
        );
        assert!(packages_index(&release, "main", "arm64").is_none());
    }

    #[test]
    fn a_release_past_its_valid_until_or_from_the_future_is_refused() {
        let release = |extra: &str| {
            Release::parse(&format!(
                "Date: Sat, 11 Jul 2026 10:16:37 UTC\n{extra}SHA256:\n 9e0b 1 main/binary-amd64/Packages.xz\n"
            ))
            .unwrap()
        };
        let date = crate::civil_time::rfc2822_epoch("Sat, 11 Jul 2026 10:16:37 UTC").unwrap();
        let url = "file:///m/dists/s/InRelease";
        assert!(check_current(url, &release(""), date + 86_400 * 365).is_ok());
        let week = release("Valid-Until: Sat, 18 Jul 2026 10:16:37 UTC\n");
        assert!(check_current(url, &week, date + 86_400).is_ok());
        let expired = check_current(url, &week, date + 86_400 * 8).unwrap_err();
        assert_eq!(
            expired.to_string(),
            "`file:///m/dists/s/InRelease` expired at Sat, 18 Jul 2026 10:16:37 UTC (its Valid-Until)"
        );
        let garbled = release("Valid-Until: soon\n");
        assert!(matches!(
            check_current(url, &garbled, date),
            Err(RepositoryError::Expired { .. })
        ));
        // A clock a few minutes behind is drift; a day behind is not.
        assert!(check_current(url, &release(""), date - 300).is_ok());
        let ahead = check_current(url, &release(""), date - 86_400).unwrap_err();
        assert!(
            matches!(ahead, RepositoryError::FromTheFuture { .. }),
            "{ahead}"
        );
    }
}
