//! The OCI distribution API, as much of it as pushing and pulling images takes: blobs asked
//! for, checked, uploaded and downloaded; manifests put and got. Authentication follows the
//! registry's answer: a 401 names Basic (credentials sent as they are) or a token realm
//! (credentials traded for a token scoped to the repository), then the request is sent again.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::RegistryError;
use super::auth::{Challenge, Credentials};
use super::reference::Reference;

type Response = ureq::http::Response<ureq::Body>;

/// What a client may do in its repository: the scope its tokens ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

/// The media types a manifest may come in, best first, as `Accept` lists them.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Times an upload goes on after its connection dropped before it gives up.
const UPLOAD_RESUMES: u32 = 5;

/// Manifests are small; more than this is not one.
const MANIFEST_LIMIT: u64 = 4 << 20;

/// A manifest as the registry gave it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// `sha256:` of the bytes.
    pub digest: String,
}

/// One repository of one registry.
pub struct Client {
    agent: ureq::Agent,
    /// `https://host` (or `http://host` for an insecure loopback registry).
    base: String,
    registry: String,
    repository: String,
    access: Access,
    credentials: Option<Credentials>,
    /// The `Authorization` value that worked last, sent with every request after.
    authorization: Mutex<Option<String>>,
}

impl Client {
    pub fn new(
        reference: &Reference,
        access: Access,
        insecure: bool,
        credentials: Option<Credentials>,
    ) -> Result<Client, RegistryError> {
        if insecure && !reference.is_loopback() {
            return Err(RegistryError::InsecureRemote {
                registry: reference.registry.clone(),
            });
        }
        let scheme = if insecure { "http" } else { "https" };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .user_agent(concat!("envkit/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client {
            agent: config.into(),
            base: format!("{scheme}://{}", reference.api_host()),
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            access,
            credentials,
            authorization: Mutex::new(None),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// Sends a request made by `make` (given the current `Authorization`, if any); on a 401,
    /// authenticates as the challenge asks and sends it once more.
    fn send(
        &self,
        url: &str,
        make: &dyn Fn(Option<&str>) -> Result<Response, ureq::Error>,
    ) -> Result<Response, RegistryError> {
        let current = self.authorization.lock().ok().and_then(|a| a.clone());
        let response = make(current.as_deref()).map_err(|e| network(url, &e))?;
        if response.status().as_u16() != 401 {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse);
        let authorization = match challenge {
            Some(Challenge::Basic) => match &self.credentials {
                Some(credentials) => credentials.basic(),
                None => return Err(self.unauthorized(false)),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => self.token(&realm, service.as_deref(), scope.as_deref())?,
            None => return Err(self.unauthorized(self.credentials.is_some())),
        };
        if current.as_deref() == Some(authorization.as_str()) {
            return Err(self.unauthorized(self.credentials.is_some()));
        }
        if let Ok(mut slot) = self.authorization.lock() {
            *slot = Some(authorization.clone());
        }
        let response = make(Some(&authorization)).map_err(|e| network(url, &e))?;
        if response.status().as_u16() == 401 {
            return Err(self.unauthorized(self.credentials.is_some()));
        }
        Ok(response)
    }

    /// A bearer token from the registry's token realm, for this repository.
    fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, RegistryError> {
        let actions = match self.access {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        };
        let wanted = format!("repository:{}:{actions}", self.repository);
        // The challenge's scope, when it covers what this client does: a push's first
        // request (is the blob there?) is challenged for `pull` alone, and a token for that
        // would be traded again at the upload.
        let covers = |scope: &&str| {
            scope.contains(&self.repository)
                && (self.access == Access::Pull || scope.contains("push"))
        };
        let mut request = self
            .agent
            .get(realm)
            .query("scope", scope.filter(covers).unwrap_or(&wanted));
        if let Some(service) = service {
            request = request.query("service", service);
        }
        if let Some(credentials) = &self.credentials {
            request = request.header("Authorization", credentials.basic());
        }
        let mut response = request.call().map_err(|e| network(realm, &e))?;
        match response.status().as_u16() {
            200 => {}
            401 | 403 => return Err(self.unauthorized(self.credentials.is_some())),
            status => return Err(status_error(realm, status, &mut response)),
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MANIFEST_LIMIT)
            .read_to_vec()
            .map_err(|e| network(realm, &e))?;
        let token: Token =
            serde_json::from_slice(&body).map_err(|error| RegistryError::Protocol {
                url: realm.to_string(),
                reason: format!("the token answer is not JSON: {error}"),
            })?;
        token
            .token
            .or(token.access_token)
            .map(|token| format!("Bearer {token}"))
            .ok_or_else(|| RegistryError::Protocol {
                url: realm.to_string(),
                reason: "the token answer holds no token".into(),
            })
    }

    fn unauthorized(&self, had_credentials: bool) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.registry.clone(),
            had_credentials,
        }
    }

    /// Whether the repository has the blob `digest`.
    pub fn has_blob(&self, digest: &str) -> Result<bool, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        let mut response = self.send(&url, &|auth| {
            let mut request = self.agent.head(&url);
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            request.call()
        })?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(status_error(&url, status, &mut response)),
        }
    }

    /// Uploads the file at `path` as the blob `digest`, as Docker's client does: the upload's
    /// start, the content streamed in one request, then the digest that closes it. When the
    /// connection drops while streaming, the registry is asked how much it kept and the rest is
    /// sent from there (a few times at most); returns how many times that happened.
    pub fn upload_blob(&self, digest: &str, path: &Path, size: u64) -> Result<u32, RegistryError> {
        let mut location = self.start_upload()?;
        let mut offset = 0u64;
        let mut resumed = 0u32;
        while offset < size {
            match self.stream_upload(&location, path, offset, size) {
                Ok(next) => {
                    location = next;
                    offset = size;
                }
                Err(error @ RegistryError::Network { .. }) => {
                    if resumed >= UPLOAD_RESUMES {
                        return Err(error);
                    }
                    resumed += 1;
                    match self.upload_status(&location) {
                        Ok((next, kept)) if kept <= size => {
                            location = next;
                            offset = kept;
                        }
                        // The registry forgot the upload (or never had it): start again.
                        _ => {
                            location = self.start_upload()?;
                            offset = 0;
                        }
                    }
                }
                Err(error) => return Err(error),
            }
        }
        let mut url = location;
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let mut response = self.send(&url, &|auth| {
            let mut request = self
                .agent
                .put(&url)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", "0");
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            request.send_empty()
        })?;
        match response.status().as_u16() {
            201 | 204 => Ok(resumed),
            status => Err(status_error(&url, status, &mut response)),
        }
    }

    /// Opens an upload; returns where its content goes.
    fn start_upload(&self) -> Result<String, RegistryError> {
        let start = self.url("blobs/uploads/");
        let mut response = self.send(&start, &|auth| {
            let mut request = self.agent.post(&start);
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            request.send_empty()
        })?;
        if response.status().as_u16() != 202 {
            let status = response.status().as_u16();
            return Err(status_error(&start, status, &mut response));
        }
        self.location(&start, &response)
    }

    /// Streams bytes `offset..size` of the file into the upload at `location`; returns where
    /// the upload goes on.
    fn stream_upload(
        &self,
        location: &str,
        path: &Path,
        offset: u64,
        size: u64,
    ) -> Result<String, RegistryError> {
        let url = self.absolute(location);
        let mut response = self.send(&url, &|auth| {
            let mut file = std::fs::File::open(path).map_err(ureq::Error::Io)?;
            file.seek(SeekFrom::Start(offset))
                .map_err(ureq::Error::Io)?;
            let mut request = self
                .agent
                .patch(&url)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", (size - offset).to_string());
            if offset > 0 {
                request = request.header("Content-Range", format!("{offset}-{}", size - 1));
            }
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            request.send(ureq::SendBody::from_owned_reader(file.take(size - offset)))
        })?;
        match response.status().as_u16() {
            202 | 204 => self.location(&url, &response),
            status => Err(status_error(&url, status, &mut response)),
        }
    }

    /// How much of the upload at `location` the registry holds, and where it goes on.
    fn upload_status(&self, location: &str) -> Result<(String, u64), RegistryError> {
        let url = self.absolute(location);
        let mut response = self.send(&url, &|auth| {
            let mut request = self.agent.get(&url);
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            request.call()
        })?;
        match response.status().as_u16() {
            204 => {
                // `Range: 0-N` names the last byte held; none held is `0-0` or no header,
                // which a registry cannot tell from one byte, so a single byte is sent again.
                let kept = response
                    .headers()
                    .get("range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|range| range.split_once('-'))
                    .and_then(|(_, last)| last.trim().parse::<u64>().ok())
                    .map_or(0, |last| if last == 0 { 0 } else { last + 1 });
                Ok((self.location(&url, &response)?, kept))
            }
            status => Err(status_error(&url, status, &mut response)),
        }
    }

    /// The `Location` an upload's answer names, as a full URL.
    fn location(&self, url: &str, response: &Response) -> Result<String, RegistryError> {
        response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(|location| self.absolute(location))
            .ok_or_else(|| RegistryError::Protocol {
                url: url.to_string(),
                reason: "the upload's answer names no location".into(),
            })
    }

    /// A `Location` header's target as a full URL.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }

    /// Puts a manifest (or an index) under `reference` (a tag or its digest); returns the
    /// digest.
    pub fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let mut response = self.send(&url, &|auth| {
            let mut request = self.agent.put(&url).header("Content-Type", media_type);
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            request.send(bytes)
        })?;
        match response.status().as_u16() {
            200 | 201 | 204 => Ok(format!("sha256:{}", crate::fetch::sha256_hex(bytes))),
            status => Err(status_error(&url, status, &mut response)),
        }
    }

    /// The manifest (or index) under `reference`, checked against its digest when asked for
    /// by one.
    pub fn manifest(&self, reference: &str) -> Result<Manifest, RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let accept = MANIFEST_TYPES.join(", ");
        let mut response = self.send(&url, &|auth| {
            let mut request = self.agent.get(&url).header("Accept", &accept);
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            request.call()
        })?;
        match response.status().as_u16() {
            200 => {}
            404 => {
                return Err(RegistryError::NotFound {
                    what: format!("{}/{}:{reference}", self.registry, self.repository),
                });
            }
            status => return Err(status_error(&url, status, &mut response)),
        }
        let media_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MANIFEST_LIMIT)
            .read_to_vec()
            .map_err(|e| network(&url, &e))?;
        let digest = format!("sha256:{}", crate::fetch::sha256_hex(&bytes));
        if super::reference::is_digest(reference) && reference != digest {
            return Err(RegistryError::DigestMismatch {
                what: url,
                expected: reference.to_string(),
                actual: digest,
            });
        }
        Ok(Manifest {
            media_type,
            bytes,
            digest,
        })
    }

    /// Downloads the blob `digest` into `out`, from byte `from` on (what an interrupted
    /// download already holds; `hasher` has seen those bytes). The whole blob must hash to
    /// `digest`.
    pub fn download_blob(
        &self,
        digest: &str,
        from: u64,
        hasher: &mut Sha256,
        out: &mut impl Write,
    ) -> Result<u64, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        let mut response = self.send(&url, &|auth| {
            let mut request = self.agent.get(&url);
            if from > 0 {
                request = request.header("Range", format!("bytes={from}-"));
            }
            if let Some(auth) = auth {
                request = request.header("Authorization", auth);
            }
            request.call()
        })?;
        let status = response.status().as_u16();
        let mut written = match status {
            206 => from,
            200 if from == 0 => 0,
            200 => {
                return Err(RegistryError::Protocol {
                    url,
                    reason: "the registry cannot resume a download".into(),
                });
            }
            404 => {
                return Err(RegistryError::NotFound {
                    what: format!("blob {digest} of {}/{}", self.registry, self.repository),
                });
            }
            _ => return Err(status_error(&url, status, &mut response)),
        };
        let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let read = reader
                .read(&mut buffer)
                .map_err(|source| RegistryError::Read {
                    url: url.clone(),
                    source,
                })?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            out.write_all(&buffer[..read])
                .map_err(|source| RegistryError::Read {
                    url: url.clone(),
                    source,
                })?;
            written += read as u64;
        }
        Ok(written)
    }
}

fn network(url: &str, error: &ureq::Error) -> RegistryError {
    RegistryError::Network {
        url: url.to_string(),
        reason: error.to_string(),
    }
}

/// An unexpected status, with the registry's own words when it gave any (the distribution
/// API's `{"errors": [{"code", "message"}]}`).
fn status_error(url: &str, status: u16, response: &mut Response) -> RegistryError {
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_vec()
        .unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    let message = serde_json::from_slice::<Errors>(&body)
        .ok()
        .map(|errors| {
            errors
                .errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.code.as_deref().unwrap_or("ERROR"),
                        e.message.as_deref().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    RegistryError::Status {
        url: url.to_string(),
        status,
        message,
    }
}
