//! Which mirror to use, and which suites of a release to read from it.
//!
//! envkit never names a mirror itself. In order: `mirror "URL"` in env.kdl, `ENVKIT_MIRROR`,
//! then the Debian mirror in the host's apt sources (read by [`crate::debian::sources`]). The
//! host's sources also give the security mirror, which Debian serves from a different path.

use std::path::{Path, PathBuf};

use crate::debian::sources;

/// Where the indexes of one release come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuitePlan {
    /// `bookworm`, `bookworm-updates`, `bookworm-security`.
    pub suite: String,
    /// Mirror root URL, without a trailing slash.
    pub url: String,
    /// The main suite must exist; updates and security are read when the mirror has them.
    pub required: bool,
}

/// Where the mirror setting came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorOrigin {
    EnvFile,
    Environment,
    HostSources(PathBuf),
}

impl std::fmt::Display for MirrorOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MirrorOrigin::EnvFile => write!(f, "`mirror` in the env file"),
            MirrorOrigin::Environment => write!(f, "ENVKIT_MIRROR"),
            MirrorOrigin::HostSources(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The mirrors to read a release from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    /// The archive: `dists/R`, `dists/R-updates` and the pool.
    pub archive: String,
    /// The security archive, when it is elsewhere.
    pub security: Option<String>,
    pub origin: MirrorOrigin,
    /// The snapshot archive (see [`crate::snapshot`]) for `.deb`s the mirror dropped.
    pub snapshot: Option<String>,
}

impl Mirrors {
    /// A single mirror that serves every suite (a user's mirror, a `file://` repository).
    pub fn single(url: &str, origin: MirrorOrigin) -> Self {
        Mirrors {
            archive: url.trim_end_matches('/').to_string(),
            security: None,
            origin,
            snapshot: None,
        }
    }

    /// The suites of `release`, each with the mirror that serves it.
    pub fn plan(&self, release: &str) -> Vec<SuitePlan> {
        let security = self.security.as_deref().unwrap_or(&self.archive);
        vec![
            SuitePlan {
                suite: release.to_string(),
                url: self.archive.clone(),
                required: true,
            },
            SuitePlan {
                suite: format!("{release}-updates"),
                url: self.archive.clone(),
                required: false,
            },
            SuitePlan {
                suite: format!("{release}-security"),
                url: security.to_string(),
                required: false,
            },
        ]
    }

    /// The mirror serving `suite`.
    pub fn url_for_suite(&self, suite: &str) -> &str {
        match &self.security {
            Some(security) if suite.ends_with("-security") => security,
            _ => &self.archive,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error("no Debian mirror configured: the host's apt sources name none")]
    NoMirror { looked_at: Vec<PathBuf> },
}

impl SourcesError {
    pub fn hint(&self) -> String {
        match self {
            SourcesError::NoMirror { looked_at } => format!(
                "looked in {}; set one with `mirror \"URL\"` in env.kdl or the ENVKIT_MIRROR variable",
                looked_at
                    .iter()
                    .map(|p| format!("`{}`", p.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The mirrors to use: `env_file_mirror`, else `ENVKIT_MIRROR`, else the host's apt sources
/// under `apt_dir` (normally `/etc/apt`).
pub fn choose_mirrors(
    env_file_mirror: Option<&str>,
    environment: Option<&str>,
    apt_dir: &Path,
) -> Result<Mirrors, SourcesError> {
    if let Some(url) = env_file_mirror {
        return Ok(Mirrors::single(url, MirrorOrigin::EnvFile));
    }
    if let Some(url) = environment.filter(|u| !u.trim().is_empty()) {
        return Ok(Mirrors::single(url.trim(), MirrorOrigin::Environment));
    }
    host_mirrors(apt_dir)
}

/// The mirrors for an environment: its `mirror`, else `ENVKIT_MIRROR`, else `/etc/apt`; and
/// its `snapshot`, else `ENVKIT_SNAPSHOT`.
pub fn for_spec(spec: &crate::spec::Spec) -> Result<Mirrors, SourcesError> {
    let environment = std::env::var("ENVKIT_MIRROR").ok();
    let mut mirrors = choose_mirrors(
        spec.mirror.as_ref().map(|m| m.url.as_str()),
        environment.as_deref(),
        Path::new("/etc/apt"),
    )?;
    mirrors.snapshot = crate::snapshot::SnapshotArchive::configured(spec.snapshot.as_deref());
    Ok(mirrors)
}

/// The Debian archive and security mirrors named by the apt sources under `apt_dir`.
pub fn host_mirrors(apt_dir: &Path) -> Result<Mirrors, SourcesError> {
    let files = sources::files(apt_dir);
    let mut archive: Option<(String, PathBuf)> = None;
    let mut security: Option<String> = None;
    for file in &files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let Some(entries) = sources::entries(name, &text) else {
            continue;
        };
        for entry in entries
            .into_iter()
            .filter(|e| is_usable_uri(&e.uri) && e.components.iter().any(|c| c == "main"))
        {
            if entry
                .suites
                .iter()
                .any(|s| s.ends_with("-security") || s.ends_with("/updates"))
            {
                security.get_or_insert(entry.uri);
            } else if archive.is_none() {
                archive = Some((entry.uri, file.clone()));
            }
        }
    }
    match archive {
        Some((url, file)) => Ok(Mirrors {
            archive: url.trim_end_matches('/').to_string(),
            security: security.map(|s| s.trim_end_matches('/').to_string()),
            origin: MirrorOrigin::HostSources(file),
            snapshot: None,
        }),
        None => Err(SourcesError::NoMirror { looked_at: files }),
    }
}

/// Whether envkit can fetch from `uri`: apt's other methods (`cdrom:`, `tor+http:`, ...) are
/// passed over for the next entry.
fn is_usable_uri(uri: &str) -> bool {
    ["http://", "https://", "file:/"]
        .iter()
        .any(|scheme| uri.starts_with(scheme))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apt_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sources.list.d")).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const DEB822: &str = "Types: deb\n# a comment\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://mirror.invalid/debian-security/\nSuites: bookworm-security\nComponents: main\n";

    #[test]
    fn deb822_sources_give_archive_and_security() {
        let dir = apt_dir(&[
            ("sources.list.d/debian.sources", DEB822),
            (
                "sources.list.d/other.list.disabled",
                "deb http://x.invalid/ y main\n",
            ),
        ]);
        let mirrors = host_mirrors(dir.path()).unwrap();
        assert_eq!(mirrors.archive, "http://mirror.invalid/debian");
        assert_eq!(
            mirrors.security.as_deref(),
            Some("http://mirror.invalid/debian-security")
        );
        let plan = mirrors.plan("trixie");
        assert_eq!(
            plan[0],
            SuitePlan {
                suite: "trixie".into(),
                url: "http://mirror.invalid/debian".into(),
                required: true
            }
        );
        assert_eq!(plan[2].url, "http://mirror.invalid/debian-security");
        assert_eq!(
            mirrors.url_for_suite("trixie-security"),
            "http://mirror.invalid/debian-security"
        );
    }

    #[test]
    fn one_line_sources_with_options() {
        let list = "# comment\ndeb-src http://src.invalid/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://m.invalid/debian bookworm main contrib\ndeb http://m.invalid/debian-security bookworm-security main\n";
        let dir = apt_dir(&[("sources.list", list)]);
        let mirrors = host_mirrors(dir.path()).unwrap();
        assert_eq!(mirrors.archive, "http://m.invalid/debian");
        assert_eq!(
            mirrors.security.as_deref(),
            Some("http://m.invalid/debian-security")
        );
    }

    #[test]
    fn disabled_entries_and_other_components_are_ignored() {
        let text = "Types: deb\nURIs: http://a.invalid/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\nTypes: deb\nURIs: http://b.invalid/extra\nSuites: stable\nComponents: contrib\n";
        let dir = apt_dir(&[("sources.list.d/x.sources", text)]);
        let error = host_mirrors(dir.path()).unwrap_err();
        assert!(error.hint().contains("ENVKIT_MIRROR"), "{}", error.hint());
    }

    #[test]
    fn the_env_file_wins_then_the_environment() {
        let dir = apt_dir(&[("sources.list.d/debian.sources", DEB822)]);
        let chosen = choose_mirrors(
            Some("file:///srv/repo"),
            Some("http://env.invalid"),
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            (chosen.archive.as_str(), chosen.origin),
            ("file:///srv/repo", MirrorOrigin::EnvFile)
        );
        let chosen = choose_mirrors(None, Some("http://env.invalid/"), dir.path()).unwrap();
        assert_eq!(chosen.archive, "http://env.invalid");
        assert_eq!(
            chosen.url_for_suite("bookworm-security"),
            "http://env.invalid"
        );
        let chosen = choose_mirrors(None, None, dir.path()).unwrap();
        assert_eq!(chosen.archive, "http://mirror.invalid/debian");
    }
}
