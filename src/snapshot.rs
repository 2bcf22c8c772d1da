//! Where a locked `.deb` the mirror has dropped can still be found: an archive of the mirror's
//! past states with the layout of Debian's snapshot service,
//! `ROOT/archive/ARCHIVE/YYYYMMDDTHHMMSSZ/PATH`, where ARCHIVE is `debian` (or
//! `debian-security` for a `-security` suite) and the time picks the state of the archive at
//! or before it.
//!
//! envkit never names such a service itself: `snapshot "URL"` in env.kdl, else
//! `ENVKIT_SNAPSHOT`. The time comes from the lock: each suite's index is recorded with its
//! Release date, so the state the lock was made from is known to the second. Whatever comes
//! back is checked against the lock's SHA-256 like any download, so a wrong state costs a
//! request, never a wrong file.

use std::collections::BTreeMap;

use crate::civil_time::{civil, rfc2822_epoch};
use crate::solve::lockfile::{LockedIndex, LockedPackage};

/// The variable naming the snapshot archive when env.kdl does not.
pub const SNAPSHOT_VAR: &str = "ENVKIT_SNAPSHOT";

/// Hours after a Release's date worth asking for as well. A snapshot is taken some time
/// after the mirror publishes (every six hours on Debian's service), so a package new in that
/// index is only in states a little later than its date; a package superseded soon after
/// is only in states a little earlier. The index's own time comes first.
const LATER_BY_HOURS: [u64; 4] = [6, 12, 24, 48];

/// A snapshot archive and the times the lock's indexes were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotArchive {
    /// Without a trailing slash.
    root: String,
    /// Suite to the Unix time of its locked index.
    index_times: BTreeMap<String, u64>,
}

impl SnapshotArchive {
    /// The archive at `root`, for a lock made from `indexes`.
    pub fn new(root: &str, indexes: &[LockedIndex]) -> Self {
        SnapshotArchive {
            root: root.trim_end_matches('/').to_string(),
            index_times: indexes
                .iter()
                .filter_map(|index| Some((index.suite.clone(), rfc2822_epoch(&index.date)?)))
                .collect(),
        }
    }

    /// The archive named by `from_env_file`, else by [`SNAPSHOT_VAR`], if either is set.
    pub fn configured(from_env_file: Option<&str>) -> Option<String> {
        from_env_file.map(str::to_string).or_else(|| {
            std::env::var(SNAPSHOT_VAR)
                .ok()
                .map(|url| url.trim().to_string())
                .filter(|url| !url.is_empty())
        })
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    /// The URLs to try for `package`, most likely first; none when the lock records no
    /// index date for its suite (a lock written before envkit recorded them).
    pub fn urls(&self, package: &LockedPackage) -> Vec<String> {
        let Some(&time) = self.index_times.get(&package.suite) else {
            return Vec::new();
        };
        let archive = if package.suite.ends_with("-security") {
            "debian-security"
        } else {
            "debian"
        };
        std::iter::once(0)
            .chain(LATER_BY_HOURS)
            .map(|hours| {
                format!(
                    "{}/archive/{archive}/{}/{}",
                    self.root,
                    timestamp(time + hours * 3600),
                    package.path
                )
            })
            .collect()
    }
}

/// `20251101T000000Z`, as the snapshot service names its states.
pub fn timestamp(unix: u64) -> String {
    let (year, month, day, hour, minute, second) = civil(unix);
    format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solve::lockfile::Layer;

    fn package(suite: &str) -> LockedPackage {
        LockedPackage {
            name: "bash".into(),
            version: "5.2.15-2+b7".into(),
            architecture: "amd64".into(),
            suite: suite.into(),
            path: "pool/main/b/bash/bash_5.2.15-2+b7_amd64.deb".into(),
            size: 1,
            sha256: "00".into(),
            layer: Layer::Base,
            requested: false,
            essential: true,
            batch: 0,
            group: 0,
        }
    }

    fn index(suite: &str, date: &str) -> LockedIndex {
        LockedIndex {
            suite: suite.into(),
            date: date.into(),
            path: "main/binary-amd64/Packages.xz".into(),
            sha256: "00".into(),
        }
    }

    #[test]
    fn urls_follow_the_snapshot_layout_from_the_index_time_on() {
        let archive = SnapshotArchive::new(
            "https://snapshot.example/",
            &[
                index("bookworm", "Sat, 11 Jul 2026 10:16:37 UTC"),
                index("bookworm-security", "Sun, 12 Jul 2026 23:00:00 UTC"),
            ],
        );
        let urls = archive.urls(&package("bookworm"));
        assert_eq!(
            urls[0],
            "https://snapshot.example/archive/debian/20260711T101637Z/pool/main/b/bash/bash_5.2.15-2+b7_amd64.deb"
        );
        assert!(urls[1].contains("/20260711T161637Z/"), "{}", urls[1]);
        assert!(urls[4].contains("/20260713T101637Z/"), "{}", urls[4]);
        let security = archive.urls(&package("bookworm-security"));
        assert!(
            security[0].starts_with(
                "https://snapshot.example/archive/debian-security/20260712T230000Z/pool/"
            ),
            "{}",
            security[0]
        );
        assert_eq!(
            archive.urls(&package("bookworm-updates")),
            Vec::<String>::new()
        );
    }
}
