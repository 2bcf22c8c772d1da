//! Image references as Docker and podman write them: `[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`.
//!
//! The first part of the name is a registry when it looks like a host (it has a `.` or a `:`,
//! or is `localhost`); otherwise the registry is Docker Hub, and a name of one part is in its
//! `library/` (so `postgres:16` is `docker.io/library/postgres:16`). A reference without tag
//! or digest means `:latest`.

use std::fmt;

/// Docker Hub as references name it, and the host its API answers on.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`, as written (`docker.io` for Docker Hub).
    pub registry: String,
    /// `team/app`, `library/postgres`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{reference}` is not an image reference: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: &'static str,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        let fail = |reason| ReferenceError {
            reference: text.to_string(),
            reason,
        };
        if text.is_empty() || text.len() > 4096 {
            return Err(fail("it is empty or too long"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                if !is_digest(digest) {
                    return Err(fail("a digest is `sha256:` and 64 lowercase hex digits"));
                }
                (rest, Some(digest.to_string()))
            }
            None => (text, None),
        };
        // A tag follows the last `:` after the last `/` (a `:` before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |at| at + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(at) => {
                let at = last_slash + at;
                (&rest[..at], Some(rest[at + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(tag) = &tag
            && !is_tag(tag)
        {
            return Err(fail(
                "a tag is 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`",
            ));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ if name.contains('/') => (DOCKER_HUB.to_string(), name.to_string()),
            _ => (DOCKER_HUB.to_string(), format!("library/{name}")),
        };
        if !is_registry_host(&registry) {
            return Err(fail(
                "a registry is a host name or address, with an optional numeric port",
            ));
        }
        if !is_repository(&repository) {
            return Err(fail(
                "a repository name is lowercase letters, digits and `._-` in parts separated by `/`",
            ));
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// What the manifest is asked for by: the digest if there is one, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The host the registry's API answers on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Whether the registry is on this machine's loopback, the one place `--insecure` (plain
    /// HTTP) is allowed.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => &self.registry,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `host`, `host:port`, `[v6]:port`: letters, digits, `.` and `-`, and a port of digits.
fn is_registry_host(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, port)) => (v6, port.strip_prefix(':').unwrap_or(port)),
            None => return false,
        }
    } else {
        registry.split_once(':').unwrap_or((registry, ""))
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    let port_ok = port.is_empty() && !registry.ends_with(':') || port.parse::<u16>().is_ok();
    host_ok && port_ok
}

pub fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn is_tag(tag: &str) -> bool {
    (1..=128).contains(&tag.len())
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|part| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(text).unwrap();
        (r.registry, r.repository, r.tag, r.digest)
    }

    #[test]
    fn short_names_are_docker_hubs() {
        assert_eq!(
            parsed("postgres:16"),
            (
                "docker.io".into(),
                "library/postgres".into(),
                Some("16".into()),
                None
            )
        );
        assert_eq!(parsed("team/app").1, "team/app");
        assert_eq!(
            Reference::parse("postgres").unwrap().manifest_reference(),
            "latest"
        );
        assert_eq!(
            Reference::parse("postgres").unwrap().api_host(),
            "registry-1.docker.io"
        );
    }

    #[test]
    fn a_host_with_a_port_is_a_registry_not_a_tag() {
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            parsed(&format!("127.0.0.1:5000/team/app:v1@{digest}")),
            (
                "127.0.0.1:5000".into(),
                "team/app".into(),
                Some("v1".into()),
                Some(digest.clone())
            )
        );
        assert_eq!(parsed("localhost/app").0, "localhost");
        assert_eq!(parsed("localhost:5000/app").2, None);
        let reference = Reference::parse(&format!("ghcr.io/o/app@{digest}")).unwrap();
        assert_eq!(reference.manifest_reference(), digest);
        assert_eq!(reference.to_string(), format!("ghcr.io/o/app@{digest}"));
    }

    #[test]
    fn only_loopback_registries_count_as_local() {
        for local in ["127.0.0.1:5000/a", "localhost:5000/a", "[::1]:5000/a"] {
            assert!(Reference::parse(local).unwrap().is_loopback(), "{local}");
        }
        for remote in ["ghcr.io/a", "10.0.0.1:5000/a", "postgres"] {
            assert!(!Reference::parse(remote).unwrap().is_loopback(), "{remote}");
        }
    }

    #[test]
    fn malformed_references_say_why() {
        for bad in [
            "",
            "Upper/app",
            "app:",
            "app:-x",
            "app@sha256:short",
            "a//b",
            "app:v1:v2/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
