//! The rules single values must follow, each returning a message and a hint when broken.

use super::model::Base;

/// A broken rule: what is wrong, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub message: String,
    pub help: String,
}

fn broken(message: impl Into<String>, help: impl Into<String>) -> Broken {
    Broken {
        message: message.into(),
        help: help.into(),
    }
}

/// Distributions envkit can build from, for the error about any other.
pub const SUPPORTED_BASES: &str =
    "`debian:bookworm`, `debian:trixie` or any other Debian release the mirror serves";

/// Debian version numbers users may write instead of codenames.
const DEBIAN_NUMBERS: &[(&str, &str)] = &[
    ("10", "buster"),
    ("11", "bullseye"),
    ("12", "bookworm"),
    ("13", "trixie"),
    ("14", "forky"),
    ("15", "duke"),
];

/// Parses `debian:bookworm` (or `debian:12`) into a [`Base`].
pub fn base(text: &str) -> Result<Base, Broken> {
    let Some((distro, release)) = text.split_once(':') else {
        return Err(broken(
            format!("`{text}` is not a base image"),
            format!(
                "write it as DISTRIBUTION:RELEASE, e.g. \"debian:bookworm\"; supported: {SUPPORTED_BASES}"
            ),
        ));
    };
    if distro != "debian" {
        return Err(broken(
            format!("unsupported base `{text}`: envkit builds Debian environments only"),
            format!("supported bases: {SUPPORTED_BASES}"),
        ));
    }
    let release = DEBIAN_NUMBERS
        .iter()
        .find(|(number, _)| *number == release)
        .map_or(release, |(_, codename)| codename);
    let well_formed = release.starts_with(|c: char| c.is_ascii_lowercase())
        && release
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !well_formed {
        return Err(broken(
            format!("`{release}` is not a Debian release name"),
            "use a codename such as \"debian:bookworm\" or \"debian:trixie\", or a version number such as \"debian:12\"",
        ));
    }
    Ok(Base::Debian {
        release: release.to_string(),
    })
}

/// Debian policy §5.6.1: lowercase letters, digits, `+`, `-`, `.`; two or more characters,
/// starting with a letter or digit.
pub fn package_name(name: &str) -> Result<(), Broken> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if first_ok && rest_ok && name.len() >= 2 {
        return Ok(());
    }
    let help = if name.contains('=') {
        "the version is chosen by `env lock` and pinned in env.lock; write the name alone"
            .to_string()
    } else if name.contains(' ') {
        "give each package as its own string: packages \"git\" \"curl\"".to_string()
    } else if name.chars().any(|c| c.is_ascii_uppercase()) {
        format!(
            "Debian package names are lowercase: \"{}\"",
            name.to_ascii_lowercase()
        )
    } else {
        "Debian package names use lowercase letters, digits, `+`, `-` and `.`, at least two characters, starting with a letter or digit".to_string()
    };
    Err(broken(
        format!("`{name}` is not a valid Debian package name"),
        help,
    ))
}

/// Environment and peer names become host names, so they follow RFC 1123 labels.
pub fn host_name(kind: &str, name: &str) -> Result<(), Broken> {
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let ends_ok = !name.starts_with('-') && !name.ends_with('-');
    if !name.is_empty() && name.len() <= 63 && chars_ok && ends_ok {
        return Ok(());
    }
    let suggestion = sanitize_host_name(name);
    let help = if suggestion.is_empty() {
        "use lowercase letters, digits and `-`, at most 63 characters".to_string()
    } else {
        format!(
            "use lowercase letters, digits and `-`, at most 63 characters, e.g. \"{suggestion}\""
        )
    };
    Err(broken(format!("`{name}` is not a valid {kind} name"), help))
}

/// The closest valid host name to `name` (used for names derived from folder names too).
pub fn sanitize_host_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    out.truncate(63);
    out.trim_end_matches('-').to_string()
}

/// Volume names become folder names in the data directory.
pub fn volume_name(name: &str) -> Result<(), Broken> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok && name.len() <= 128 {
        return Ok(());
    }
    Err(broken(
        format!("`{name}` is not a valid volume name"),
        "use letters, digits, `_`, `.` and `-`, starting with a letter or digit",
    ))
}

/// A POSIX environment variable name.
pub fn variable_name(name: &str) -> Result<(), Broken> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if first_ok && rest_ok {
        return Ok(());
    }
    Err(broken(
        format!("`{name}` is not a valid variable name"),
        "use letters, digits and `_`, not starting with a digit",
    ))
}

/// Paths a mount or volume may not cover, because the session provides them itself.
const RESERVED_PATHS: &[&str] = &["/", "/proc", "/sys", "/dev", "/dev/pts"];

/// Normalises an absolute path inside the environment (`/work//src/` -> `/work/src`).
pub fn container_path(path: &str) -> Result<String, Broken> {
    if !path.starts_with('/') {
        return Err(broken(
            format!("`{path}` is not an absolute path"),
            format!(
                "paths inside the environment start with `/`, e.g. \"/{}\"",
                path.trim_start_matches("./")
            ),
        ));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(broken(
                    format!("`{path}` contains `..`"),
                    "write the path without `..` components",
                ));
            }
            other => parts.push(other),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// A normalised path a mount or volume may be placed at.
pub fn mount_target(path: &str) -> Result<String, Broken> {
    let normalized = container_path(path)?;
    let reserved = RESERVED_PATHS.contains(&normalized.as_str())
        || normalized.starts_with("/proc/")
        || normalized.starts_with("/sys/");
    if reserved {
        return Err(broken(
            format!("cannot mount over `{normalized}`"),
            "the session provides `/`, `/proc`, `/sys` and `/dev` itself; choose another path",
        ));
    }
    Ok(normalized)
}

/// An image reference as Docker reads one: `[HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST]`
/// (`postgres:16`, `ghcr.io/acme/app@sha256:...`).
pub fn image_reference(text: &str) -> Result<(), Broken> {
    let example = "write one such as \"postgres:16\", \"ghcr.io/acme/app:1.2\" or \"127.0.0.1:5000/app@sha256:...\"";
    let (rest, digest) = text
        .split_once('@')
        .map_or((text, None), |(rest, digest)| (rest, Some(digest)));
    if let Some(digest) = digest {
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        let hex_ok = hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        if !hex_ok {
            return Err(broken(
                format!("`{digest}` is not an image digest"),
                "a digest is `sha256:` and 64 lowercase hex digits",
            ));
        }
    }
    let path = without_host(rest, example)?;
    let (path, tag) = match path.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => (path, Some(tag)),
        _ => (path, None),
    };
    if let Some(tag) = tag {
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !tag_ok {
            return Err(broken(
                format!("`{tag}` is not an image tag"),
                format!("a tag is letters, digits, `_`, `.` and `-`; {example}"),
            ));
        }
    }
    path_components(text, path, example)
}

/// A team cache: a registry repository (`[HOST[:PORT]/]PATH`, Docker's grammar for names),
/// with no tag or digest, since envkit tags each layer itself.
pub fn cache_repository(text: &str) -> Result<(), Broken> {
    let example =
        "write a repository such as \"ghcr.io/acme/envkit-cache\" or \"127.0.0.1:5000/cache\"";
    if text.contains('@') {
        return Err(broken(
            format!("`{text}` names a digest, and a cache is a repository"),
            example,
        ));
    }
    let path = without_host(text, example)?;
    if path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
    {
        return Err(broken(
            format!("`{text}` has a tag, and a cache is a repository"),
            format!("leave the tag out: envkit tags each layer itself; {example}"),
        ));
    }
    path_components(text, path, example)
}

/// `text` without its registry host, when it names one: as Docker reads it, a first part
/// with a dot or a colon, or `localhost`, is a host.
fn without_host<'t>(text: &'t str, example: &str) -> Result<&'t str, Broken> {
    let Some((first, path)) = text.split_once('/') else {
        return Ok(text);
    };
    if !(first.contains(['.', ':']) || first == "localhost") {
        return Ok(text);
    }
    let (host, port) = first.split_once(':').unwrap_or((first, ""));
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let port_ok = port.is_empty() && !first.ends_with(':') || port.parse::<u16>().is_ok();
    if !host_ok || !port_ok {
        return Err(broken(format!("`{first}` is not a registry host"), example));
    }
    Ok(path)
}

/// The path of a repository name: components of lowercase letters, digits, `.`, `_` and `-`.
fn path_components(text: &str, path: &str, example: &str) -> Result<(), Broken> {
    let component_ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    if path.is_empty() || !path.split('/').all(component_ok) {
        return Err(broken(
            format!("`{text}` is not a registry repository"),
            format!("use lowercase letters, digits, `.`, `_` and `-` between slashes; {example}"),
        ));
    }
    Ok(())
}

/// A mirror URL: `http://`, `https://` or `file://`, kept without a trailing slash.
pub fn mirror_url(url: &str) -> Result<String, Broken> {
    let scheme_ok = ["http://", "https://", "file:///"]
        .iter()
        .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len());
    if !scheme_ok {
        let help = if url.starts_with("file://") {
            "a file URL names an absolute path: \"file:///srv/mirror/debian\""
        } else {
            "write a URL starting with http://, https:// or file:///"
        };
        return Err(broken(
            format!("`{url}` is not a mirror URL envkit can use"),
            help,
        ));
    }
    if url.chars().any(char::is_whitespace) {
        return Err(broken(
            format!("`{url}` contains white space"),
            "remove the spaces from the URL",
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// A TCP port, 1-65535.
pub fn port(value: i128) -> Result<u16, Broken> {
    match u16::try_from(value) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(broken(
            format!("port {value} is out of range"),
            "ports are 1 to 65535",
        )),
    }
}

/// What `copy` takes from the project: a file or folder relative to the env file's folder,
/// never above it, so the image does not depend on where the project lives.
pub fn copy_source(path: &str) -> Result<(), Broken> {
    if path.is_empty() {
        return Err(broken(
            "an empty `copy` source copies nothing",
            "name a file or folder of the project, such as \".\" or \"src\"",
        ));
    }
    if path.starts_with('/') {
        return Err(broken(
            format!("`{path}` is an absolute path"),
            "`copy` takes files of the project, relative to the env file's folder",
        ));
    }
    if std::path::Path::new(path)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(broken(
            format!("`{path}` leaves the project folder"),
            "`copy` takes files of the project; move what it needs into it",
        ));
    }
    Ok(())
}

/// A relative file or glob inside the project, as `setup inputs=` takes.
pub fn input_pattern(pattern: &str) -> Result<(), Broken> {
    if pattern.is_empty() {
        return Err(broken(
            "an empty input pattern matches nothing",
            "name a file or a glob such as \"src/**/*.py\"",
        ));
    }
    if pattern.starts_with('/') {
        return Err(broken(
            format!("`{pattern}` is an absolute path"),
            "inputs are relative to the env file's folder, so the project builds the same anywhere",
        ));
    }
    glob::Pattern::new(pattern).map(|_| ()).map_err(|err| {
        broken(
            format!("`{pattern}` is not a valid glob: {}", err.msg),
            "see the `setup` section of the env.kdl reference for glob syntax",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases() {
        assert_eq!(base("debian:bookworm").unwrap().release(), Some("bookworm"));
        assert_eq!(base("debian:12").unwrap().release(), Some("bookworm"));
        assert_eq!(base("debian:trixie").unwrap().to_string(), "debian:trixie");
        let err = base("ubuntu:jammy").unwrap_err();
        assert!(
            err.message.contains("unsupported base `ubuntu:jammy`"),
            "{err:?}"
        );
        assert!(err.help.contains("debian:bookworm"));
        assert!(base("bookworm").is_err());
        assert!(base("debian:Bookworm").is_err());
    }

    #[test]
    fn package_names_follow_debian_policy() {
        for good in ["python3", "g++", "libc6", "python3.11", "0ad", "xz-utils"] {
            assert_eq!(package_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a",
            "Python3",
            "-x",
            "python3=3.11",
            "git curl",
            "pkg_name",
            ".x",
        ] {
            assert!(package_name(bad).is_err(), "{bad}");
        }
        assert!(
            package_name("Python3")
                .unwrap_err()
                .help
                .contains("\"python3\"")
        );
    }

    #[test]
    fn host_names() {
        assert!(host_name("peer", "db").is_ok());
        assert!(host_name("peer", "db-1").is_ok());
        assert!(host_name("peer", "DB").unwrap_err().help.contains("\"db\""));
        assert!(host_name("peer", "-db").is_err());
        assert!(host_name("peer", "").is_err());
        assert_eq!(sanitize_host_name("My Project_2"), "my-project-2");
    }

    #[test]
    fn container_paths_are_normalised() {
        assert_eq!(container_path("/work//src/./").unwrap(), "/work/src");
        assert!(
            container_path("work")
                .unwrap_err()
                .help
                .contains("\"/work\"")
        );
        assert!(container_path("/a/../b").is_err());
        assert!(mount_target("/").is_err());
        assert!(mount_target("/proc/sys").is_err());
        assert_eq!(mount_target("/dev/shm/x").unwrap(), "/dev/shm/x");
    }

    #[test]
    fn ports_and_urls() {
        assert_eq!(port(5432), Ok(5432));
        assert!(port(0).is_err());
        assert!(port(65536).is_err());
        assert!(port(-1).is_err());
        assert_eq!(
            mirror_url("https://example.invalid/debian/").unwrap(),
            "https://example.invalid/debian"
        );
        assert!(mirror_url("ftp://x").is_err());
        assert!(mirror_url("file://relative").is_err());
        assert!(mirror_url("file:///srv/mirror").is_ok());
    }

    #[test]
    fn inputs() {
        assert!(input_pattern("requirements.txt").is_ok());
        assert!(input_pattern("src/**/*.py").is_ok());
        assert!(input_pattern("/etc/passwd").is_err());
        assert!(input_pattern("src/[").is_err());
    }

    #[test]
    fn image_references() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        for good in [
            "postgres:16".to_string(),
            "postgres".to_string(),
            "ghcr.io/acme/app:1.2".to_string(),
            "127.0.0.1:5000/team/app:v1_2-3".to_string(),
            format!("127.0.0.1:5000/app@{digest}"),
            format!("library/debian:bookworm-slim@{digest}"),
        ] {
            assert_eq!(image_reference(&good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("Postgres:16", "is not a registry repository"),
            ("postgres:", "is not an image tag"),
            ("postgres@sha256:00", "is not an image digest"),
            ("host:port/app", "is not a registry host"),
            ("", "is not a registry repository"),
        ] {
            let error = image_reference(bad).expect_err(bad);
            assert!(error.message.contains(says), "{bad}: {}", error.message);
        }
    }

    #[test]
    fn cache_repositories() {
        for good in [
            "ghcr.io/acme/envkit-cache",
            "127.0.0.1:5000/team/cache",
            "localhost/cache",
            "acme/cache",
            "cache",
        ] {
            assert!(cache_repository(good).is_ok(), "{good}");
        }
        for (bad, says) in [
            ("ghcr.io/acme/cache:v1", "has a tag"),
            ("acme/cache@sha256:00", "names a digest"),
            ("Acme/Cache", "is not a registry repository"),
            ("host:port/x", "is not a registry host"),
            ("acme//cache", "is not a registry repository"),
            ("", "is not a registry repository"),
        ] {
            let error = cache_repository(bad).unwrap_err();
            assert!(error.message.contains(says), "{bad}: {}", error.message);
        }
    }
}
