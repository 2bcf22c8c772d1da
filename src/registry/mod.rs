//! Talking to OCI registries (Docker Hub, GHCR, a registry in the company, `docker-registry`
//! on loopback): image references ([`reference`]), who envkit is to them ([`auth`]), and the
//! distribution API's requests ([`client`]). It knows nothing of envkit's store or images:
//! `ops` decides what to send and where what comes back goes.

pub mod auth;
pub mod client;
pub mod reference;

pub use client::{Access, Client, Manifest};
pub use reference::{Reference, ReferenceError};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(
        "`--insecure` (plain HTTP) is only for a registry on this machine's loopback, not `{registry}`"
    )]
    InsecureRemote { registry: String },
    #[error("cannot reach `{url}`: {reason}")]
    Network { url: String, reason: String },
    #[error("cannot read from `{url}`")]
    Read {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{url}` answered HTTP {status}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{}", if *had_credentials { format!("`{registry}` refused the credentials from the Docker config file") } else { format!("`{registry}` wants credentials, and the Docker config file has none for it") })]
    Unauthorized {
        registry: String,
        had_credentials: bool,
    },
    #[error("`{what}` is not in the registry")]
    NotFound { what: String },
    #[error("`{what}` does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("`{url}` does not speak the registry protocol: {reason}")]
    Protocol { url: String, reason: String },
}

impl RegistryError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Unauthorized { registry, .. } => Some(format!(
                "log in with `docker login {registry}` or `podman login --authfile ~/.docker/config.json {registry}`, or set DOCKER_CONFIG to the folder of a config.json that has its credentials"
            )),
            RegistryError::Network { url, .. } if url.starts_with("https://") => Some(
                "for a registry on this machine's loopback that speaks plain HTTP, add `--insecure`"
                    .into(),
            ),
            _ => None,
        }
    }

    /// Whether the user's input (a reference, credentials, a flag) is at fault.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            RegistryError::Reference(_)
                | RegistryError::InsecureRemote { .. }
                | RegistryError::Unauthorized { .. }
                | RegistryError::NotFound { .. }
        )
    }
}
