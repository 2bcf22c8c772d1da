//! A suite's `Release` file (the text inside a verified `InRelease`): its date and the
//! checksums of its indexes.

use super::deb822;

/// One index file listed in `Release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// Path below `dists/SUITE/`, e.g. `main/binary-amd64/Packages.xz`.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// What envkit uses from a `Release` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub suite: Option<String>,
    pub codename: Option<String>,
    /// `Date:` as written (RFC 2822).
    pub date: String,
    /// `Valid-Until:` as written, when the archive sets one (security archives do): after it,
    /// the file is stale, and a mirror still serving it has stopped following the archive.
    pub valid_until: Option<String>,
    /// Whether the mirror serves indexes under `by-hash/SHA256/`, which cannot change under a
    /// reader between fetching `Release` and fetching the index.
    pub acquire_by_hash: bool,
    pub files: Vec<IndexFile>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    #[error("the Release file has no `{0}` field")]
    MissingField(&'static str),
}

impl Release {
    pub fn parse(text: &str) -> Result<Release, ReleaseError> {
        let stanza = deb822::stanzas(text).next().unwrap_or_default();
        let field = |name| stanza.get(name).map(|v| v.trim().to_string());
        let files = stanza
            .get("SHA256")
            .ok_or(ReleaseError::MissingField("SHA256"))?
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let (sha256, size, path) = (words.next()?, words.next()?, words.next()?);
                Some(IndexFile {
                    path: path.to_string(),
                    size: size.parse().ok()?,
                    sha256: sha256.to_string(),
                })
            })
            .collect();
        Ok(Release {
            suite: field("Suite"),
            codename: field("Codename"),
            date: field("Date").ok_or(ReleaseError::MissingField("Date"))?,
            valid_until: field("Valid-Until"),
            acquire_by_hash: field("Acquire-By-Hash").is_some_and(|v| v == "yes"),
            files,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &str = "Origin: Debian\nSuite: oldstable\nCodename: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\nAcquire-By-Hash: yes\nMD5Sum:\n f230 50060337 main/binary-amd64/Packages\nSHA256:\n 515e 50060337 main/binary-amd64/Packages\n 6777 12084798 main/binary-amd64/Packages.gz\n 9e0b  8790396 main/binary-amd64/Packages.xz\n";

    #[test]
    fn reads_date_and_checksums() {
        let release = Release::parse(RELEASE).unwrap();
        assert_eq!(release.codename.as_deref(), Some("bookworm"));
        assert_eq!(release.date, "Sat, 11 Jul 2026 10:16:37 UTC");
        assert!(release.acquire_by_hash);
        assert_eq!(release.files.len(), 3, "SHA256 entries only");
        assert_eq!(
            release.files[2],
            IndexFile {
                path: "main/binary-amd64/Packages.xz".into(),
                size: 8790396,
                sha256: "9e0b".into(),
            }
        );
    }

    #[test]
    fn missing_fields_are_errors() {
        assert_eq!(
            Release::parse("Date: x\n"),
            Err(ReleaseError::MissingField("SHA256"))
        );
        assert_eq!(
            Release::parse("SHA256:\n a 1 b\n"),
            Err(ReleaseError::MissingField("Date"))
        );
    }
}
