//! Who envkit is to a registry: credentials from Docker's config file, and the challenge a
//! registry answers 401 with.
//!
//! The config file is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, as Docker,
//! podman and skopeo read it: `auths.<registry>.auth` (base64 of `user:password`), a
//! `credHelpers.<registry>` or a `credsStore` naming a `docker-credential-<name>` program
//! asked with the registry on its stdin (the helper protocol: its answer is
//! `{"Username": ..., "Secret": ...}`). Docker Hub's entry may be under
//! `https://index.docker.io/v1/`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use serde::Deserialize;

use super::reference::DOCKER_HUB;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the Docker config file `{}`", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not a Docker config file: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("the credential helper `docker-credential-{helper}` failed for `{registry}`: {reason}")]
    Helper {
        helper: String,
        registry: String,
        reason: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Where Docker's config file is.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    directories::BaseDirs::new().map(|dirs| dirs.home_dir().join(".docker/config.json"))
}

/// The credentials the Docker config file holds for `registry`, if any.
pub fn credentials_for(registry: &str) -> Result<Option<Credentials>, AuthError> {
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AuthError::Config { path, source }),
    };
    let config: DockerConfig =
        serde_json::from_str(&text).map_err(|error| AuthError::Malformed {
            path: path.clone(),
            reason: error.to_string(),
        })?;
    let keys = config_keys(registry);
    if let Some(helper) = keys
        .iter()
        .find_map(|key| config.cred_helpers.get(key))
        .or(config.creds_store.as_ref())
    {
        return ask_helper(helper, registry);
    }
    for key in &keys {
        if let Some(entry) = config.auths.get(key) {
            return entry_credentials(entry).map_err(|reason| AuthError::Malformed {
                path: path.clone(),
                reason: format!("the entry for `{key}`: {reason}"),
            });
        }
    }
    Ok(None)
}

/// The keys a registry's entry may have in the config file.
fn config_keys(registry: &str) -> Vec<String> {
    let mut keys = vec![registry.to_string(), format!("https://{registry}")];
    if registry == DOCKER_HUB {
        keys.push("https://index.docker.io/v1/".into());
        keys.push("index.docker.io".into());
    }
    keys
}

fn entry_credentials(entry: &AuthEntry) -> Result<Option<Credentials>, String> {
    if let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| "`auth` is not base64".to_string())?;
        let text = String::from_utf8(decoded).map_err(|_| "`auth` is not text".to_string())?;
        let (username, password) = text
            .split_once(':')
            .ok_or("`auth` is not `user:password`")?;
        return Ok(Some(Credentials {
            username: username.into(),
            password: password.into(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(username), Some(password)) => Ok(Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        })),
        _ => Ok(None),
    }
}

/// Asks `docker-credential-HELPER get` for `registry`'s credentials.
fn ask_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, AuthError> {
    let fail = |reason: String| AuthError::Helper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        reason,
    };
    let mut child = std::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| fail(error.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .map_err(|error| fail(error.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| fail(error.to_string()))?;
    let answer = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // The protocol's way of saying "none stored".
        if answer.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let answer: Answer =
        serde_json::from_str(&answer).map_err(|error| fail(format!("its answer: {error}")))?;
    Ok(Some(Credentials {
        username: answer.username,
        password: answer.secret,
    }))
}

/// What a registry's `WWW-Authenticate` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    /// A token from `realm`, for `service` and `scope` when given.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, parameters) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let parameters = auth_parameters(parameters);
        Some(Challenge::Bearer {
            realm: parameters.get("realm")?.clone(),
            service: parameters.get("service").cloned(),
            scope: parameters.get("scope").cloned(),
        })
    }
}

/// `key="value", key=value` pairs; a quoted value may hold commas.
fn auth_parameters(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_string());
        rest = next.trim_start().trim_start_matches(',');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read_as_registries_send_them() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="basic-realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None, "no realm");
    }

    #[test]
    fn config_entries_give_user_and_password() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("me:s3cr:et");
        let entry = AuthEntry {
            auth: Some(encoded),
            ..AuthEntry::default()
        };
        assert_eq!(
            entry_credentials(&entry).unwrap(),
            Some(Credentials {
                username: "me".into(),
                password: "s3cr:et".into()
            })
        );
        let bad = AuthEntry {
            auth: Some("!!".into()),
            ..AuthEntry::default()
        };
        assert!(entry_credentials(&bad).is_err());
        assert_eq!(entry_credentials(&AuthEntry::default()).unwrap(), None);
        assert!(config_keys("docker.io").contains(&"https://index.docker.io/v1/".to_string()));
    }
}
