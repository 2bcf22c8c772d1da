//! Getting files from a mirror (`http(s)://` or `file://`) into the cache, never half-written.
//!
//! Every download goes to a temporary file beside its destination and is renamed into place
//! only once complete (and, for content-addressed files, verified), so an interrupted or
//! failed fetch leaves the cache as it was.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach `{url}`: {reason}")]
    Network { url: String, reason: String },
    #[error("`{url}` answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("`{url}` does not match its signed checksum: expected sha256 {expected}, got {actual}")]
    HashMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("cannot read `{url}`")]
    Read {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{}` in the cache", path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The answer to a conditional request.
#[derive(Debug)]
pub enum Conditional {
    /// New content (with validators for the next request).
    Changed {
        body: Vec<u8>,
        validators: Validators,
    },
    /// What the cache holds is current.
    NotModified,
    /// The mirror does not have this file.
    Missing,
}

/// HTTP validators remembered with a cached file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    /// Two lines, `etag` then `last-modified`, empty when unknown.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n",
            self.etag.as_deref().unwrap_or(""),
            self.last_modified.as_deref().unwrap_or("")
        )
    }

    pub fn from_text(text: &str) -> Self {
        let mut lines = text
            .lines()
            .map(|l| Some(l.to_string()).filter(|l| !l.is_empty()));
        Validators {
            etag: lines.next().flatten(),
            last_modified: lines.next().flatten(),
        }
    }
}

/// Attempts for a request that failed at the network level (name resolution, connection):
/// such failures are often momentary under many parallel requests.
const NETWORK_ATTEMPTS: u32 = 4;

/// Runs `request` again after a network failure, waiting 0.5 s, 1 s, 2 s; other failures
/// (an HTTP status, a checksum) are final at once.
pub fn with_retries<T>(request: impl Fn() -> Result<T, FetchError>) -> Result<T, FetchError> {
    let mut attempt = 1;
    loop {
        match request() {
            Err(FetchError::Network { .. }) if attempt < NETWORK_ATTEMPTS => {
                std::thread::sleep(Duration::from_millis(500 << (attempt - 1)));
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Downloads with one shared HTTP agent.
pub struct Fetcher {
    agent: ureq::Agent,
}

impl Default for Fetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Fetcher {
    pub fn new() -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_body(Some(Duration::from_secs(300)))
            .user_agent(concat!("envkit/", env!("CARGO_PKG_VERSION")))
            .build();
        Fetcher {
            agent: config.into(),
        }
    }

    /// GETs a small file (an `InRelease`), conditionally on `known` validators.
    pub fn get_conditional(
        &self,
        url: &str,
        known: &Validators,
    ) -> Result<Conditional, FetchError> {
        if let Some(path) = file_path(url) {
            return match std::fs::read(&path) {
                Ok(body) => Ok(Conditional::Changed {
                    body,
                    validators: Validators::default(),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Conditional::Missing),
                Err(source) => Err(FetchError::Read {
                    url: url.to_string(),
                    source,
                }),
            };
        }
        let mut request = self.agent.get(url);
        if let Some(etag) = &known.etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(modified) = &known.last_modified {
            request = request.header("If-Modified-Since", modified);
        }
        let response = request.call().map_err(|e| network(url, &e))?;
        match response.status().as_u16() {
            304 => Ok(Conditional::NotModified),
            404 | 410 => Ok(Conditional::Missing),
            200 => {
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let validators = Validators {
                    etag: header("etag"),
                    last_modified: header("last-modified"),
                };
                let mut body = Vec::new();
                response
                    .into_body()
                    .into_reader()
                    .read_to_end(&mut body)
                    .map_err(|source| FetchError::Read {
                        url: url.to_string(),
                        source,
                    })?;
                Ok(Conditional::Changed { body, validators })
            }
            status => Err(FetchError::Status {
                url: url.to_string(),
                status,
            }),
        }
    }
}

impl Fetcher {
    /// Downloads `url` to `destination`, checking its SHA-256 on the way; the file appears
    /// under its name only when complete and correct. What arrived is kept in
    /// `destination.partial` when interrupted, and the next call continues from there
    /// (HTTP range requests; a server that ignores the range restarts the file). `progress` is
    /// called with the number of new bytes as they arrive. The checksum covers the whole file,
    /// resumed part included; on a mismatch the partial file is deleted.
    pub fn download_resumable(
        &self,
        url: &str,
        sha256: &str,
        destination: &Path,
        progress: &dyn Fn(u64),
    ) -> Result<(), FetchError> {
        let cache_error = cache_error(destination);
        if let Some(dir) = destination.parent() {
            std::fs::create_dir_all(dir).map_err(cache_error)?;
        }
        // Several envkit processes may share one cache: one downloads, the others wait for
        // it and then find the file complete.
        let lock = std::fs::File::create(lock_path(destination)).map_err(cache_error)?;
        lock.lock().map_err(cache_error)?;
        if destination.is_file() {
            return Ok(());
        }
        match self.download_locked(url, sha256, destination, progress) {
            // The partial file is already whole (or longer than the file): start over once.
            Err(FetchError::Status { status: 416, .. }) => {
                let _ = std::fs::remove_file(partial_path(destination));
                self.download_locked(url, sha256, destination, progress)
            }
            result => result,
        }
    }

    /// [`Fetcher::download_resumable`] once its lock is held.
    fn download_locked(
        &self,
        url: &str,
        sha256: &str,
        destination: &Path,
        progress: &dyn Fn(u64),
    ) -> Result<(), FetchError> {
        let cache_error = cache_error(destination);
        let partial = partial_path(destination);
        let mut hasher = Sha256::new();
        let mut have = 0u64;
        if let Ok(mut existing) = std::fs::File::open(&partial) {
            let mut buffer = vec![0u8; 1 << 16];
            loop {
                let read = existing.read(&mut buffer).map_err(cache_error)?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
                have += read as u64;
            }
        }
        let (mut reader, resumed): (Box<dyn Read>, bool) = match file_path(url) {
            Some(path) => {
                let mut file = std::fs::File::open(&path).map_err(|source| FetchError::Read {
                    url: url.to_string(),
                    source,
                })?;
                use std::io::Seek;
                file.seek(std::io::SeekFrom::Start(have))
                    .map_err(|source| FetchError::Read {
                        url: url.to_string(),
                        source,
                    })?;
                (Box::new(file), true)
            }
            None => {
                let mut request = self.agent.get(url);
                if have > 0 {
                    request = request.header("Range", &format!("bytes={have}-"));
                }
                let response = request.call().map_err(|e| network(url, &e))?;
                match response.status().as_u16() {
                    206 if have > 0 => (Box::new(response.into_body().into_reader()), true),
                    200 => (Box::new(response.into_body().into_reader()), false),
                    status => {
                        return Err(FetchError::Status {
                            url: url.to_string(),
                            status,
                        });
                    }
                }
            }
        };
        if !resumed {
            hasher = Sha256::new();
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(&partial)
            .map_err(cache_error)?;
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let read = reader
                .read(&mut buffer)
                .map_err(|source| FetchError::Read {
                    url: url.to_string(),
                    source,
                })?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            file.write_all(&buffer[..read]).map_err(cache_error)?;
            progress(read as u64);
        }
        file.sync_all().map_err(cache_error)?;
        let actual = hex(&hasher.finalize());
        if !actual.eq_ignore_ascii_case(sha256) {
            let _ = std::fs::remove_file(&partial);
            return Err(FetchError::HashMismatch {
                url: url.to_string(),
                expected: sha256.to_string(),
                actual,
            });
        }
        std::fs::rename(&partial, destination).map_err(cache_error)
    }
}

/// Maps an I/O error on a cache file to a `FetchError` naming it.
fn cache_error(path: &Path) -> impl Fn(std::io::Error) -> FetchError + Copy + '_ {
    move |source| FetchError::Cache {
        path: path.to_path_buf(),
        source,
    }
}

const PARTIAL: &str = ".partial";
const ATOMIC_PARTIAL: &str = ".partial-";

/// Where an interrupted download of `destination` waits to be continued.
pub fn partial_path(destination: &Path) -> PathBuf {
    beside(destination, PARTIAL)
}

/// The file a process holds while it downloads `destination`.
pub fn lock_path(destination: &Path) -> PathBuf {
    beside(destination, ".lock")
}

fn beside(destination: &Path, suffix: &str) -> PathBuf {
    let mut name = destination
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    destination.with_file_name(name)
}

/// The name of the file an interrupted download named `name` continues, if it is one.
pub fn partial_target(name: &str) -> Option<&str> {
    name.strip_suffix(PARTIAL)
}

/// The writer's process id of a temporary file left by [`write_atomically`]
/// (`.<name>.partial-<pid>`).
pub fn atomic_writer(name: &str) -> Option<i32> {
    if !name.starts_with('.') {
        return None;
    }
    let (_, pid) = name.rsplit_once(ATOMIC_PARTIAL)?;
    pid.parse().ok().filter(|&pid| pid > 0)
}

/// Writes `destination` through `fill` into a temporary file, then renames it into place;
/// on any error the temporary file is removed and `destination` is untouched.
pub fn write_atomically(
    destination: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> Result<(), FetchError>,
) -> Result<(), FetchError> {
    let cache_error = |source| FetchError::Cache {
        path: destination.to_path_buf(),
        source,
    };
    let dir = destination.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(cache_error)?;
    let temporary = dir.join(format!(
        ".{}{ATOMIC_PARTIAL}{}",
        destination
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("download"),
        std::process::id()
    ));
    let result = std::fs::File::create(&temporary)
        .map_err(cache_error)
        .and_then(|mut file| {
            fill(&mut file)?;
            file.sync_all().map_err(cache_error)
        });
    match result {
        Ok(()) => std::fs::rename(&temporary, destination).map_err(cache_error),
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            Err(error)
        }
    }
}

/// Writes bytes atomically (see [`write_atomically`]).
pub fn write_bytes_atomically(destination: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    write_atomically(destination, |file| {
        file.write_all(bytes).map_err(|source| FetchError::Cache {
            path: destination.to_path_buf(),
            source,
        })
    })
}

/// The local path of a `file://` URL.
fn file_path(url: &str) -> Option<PathBuf> {
    url.strip_prefix("file://").map(PathBuf::from)
}

fn network(url: &str, error: &ureq::Error) -> FetchError {
    FetchError::Network {
        url: url.to_string(),
        reason: error.to_string(),
    }
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// SHA-256 of bytes, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The SHA-256 of the file at `path`, in hex, read in pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(hex(&hasher.finalize())),
            read => hasher.update(&buffer[..read]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_downloads_from_file_urls() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("Packages.gz");
        std::fs::write(&source, b"content").unwrap();
        let url = format!("file://{}", source.display());
        let fetcher = Fetcher::new();
        let good = dir.path().join("cache/good");
        fetcher
            .download_resumable(&url, &sha256_hex(b"content"), &good, &|_| {})
            .unwrap();
        assert_eq!(std::fs::read(&good).unwrap(), b"content");

        let bad = dir.path().join("cache/bad");
        let error = fetcher
            .download_resumable(&url, &sha256_hex(b"other"), &bad, &|_| {})
            .unwrap_err();
        assert!(matches!(error, FetchError::HashMismatch { .. }), "{error}");
        assert!(!bad.exists(), "nothing under the real name");
        let partials: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("partial"))
            .collect();
        assert!(partials.is_empty(), "no partial files left: {partials:?}");
    }

    #[test]
    fn processes_sharing_a_cache_download_a_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let content = vec![7u8; 3_000_000];
        let source = dir.path().join("Packages.xz");
        std::fs::write(&source, &content).unwrap();
        let url = format!("file://{}", source.display());
        let destination = dir.path().join("cache/by-hash");
        let received = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let count = |n| {
                        received.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    };
                    Fetcher::new()
                        .download_resumable(&url, &sha256_hex(&content), &destination, &count)
                        .unwrap();
                });
            }
        });
        assert_eq!(std::fs::read(&destination).unwrap(), content);
        assert_eq!(
            received.into_inner(),
            3_000_000,
            "downloaded once, the others waited"
        );
    }

    #[test]
    fn resumable_downloads_continue_and_verify_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let source = dir.path().join("pkg.deb");
        std::fs::write(&source, &content).unwrap();
        let url = format!("file://{}", source.display());
        let destination = dir.path().join("cache/abc.deb");
        std::fs::create_dir_all(destination.parent().unwrap()).unwrap();
        // An earlier run stopped after 40,000 bytes.
        let received = resume(&url, &content, &destination, 40_000);
        assert_eq!(received, 60_000, "only the rest was read");
        assert!(!partial_path(&destination).exists());

        // A corrupt partial file makes the whole file fail its checksum and is thrown away.
        let again = dir.path().join("cache/def.deb");
        std::fs::write(partial_path(&again), b"garbage").unwrap();
        let error = Fetcher::new()
            .download_resumable(&url, &sha256_hex(&content), &again, &|_| {})
            .unwrap_err();
        assert!(matches!(error, FetchError::HashMismatch { .. }), "{error}");
        assert!(!partial_path(&again).exists() && !again.exists());
    }

    /// Downloads `url` to `destination` after an earlier try that stopped after `had` bytes;
    /// checks the result and returns how many bytes this try received.
    fn resume(url: &str, content: &[u8], destination: &Path, had: usize) -> u64 {
        std::fs::write(partial_path(destination), &content[..had]).unwrap();
        let received = std::cell::Cell::new(0u64);
        Fetcher::new()
            .download_resumable(url, &sha256_hex(content), destination, &|n| {
                received.set(received.get() + n)
            })
            .unwrap();
        assert_eq!(std::fs::read(destination).unwrap(), content);
        received.get()
    }

    /// A one-file HTTP server on loopback that answers `Range: bytes=N-` with 206 (or
    /// ignores it, like some mirrors); returns its URL and the Range headers it was sent.
    fn http_server(
        content: Vec<u8>,
        honour_ranges: bool,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/pool/pkg.deb", listener.local_addr().unwrap());
        let ranges = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&ranges);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut from = 0usize;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(range) = line
                        .strip_prefix("range: bytes=")
                        .or(line.strip_prefix("Range: bytes="))
                    {
                        seen.lock().unwrap().push(range.trim().to_string());
                        from = range.trim().trim_end_matches('-').parse().unwrap();
                    }
                }
                let head = if honour_ranges && from > 0 {
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                        content.len() - from,
                        content.len() - 1,
                        content.len()
                    )
                } else {
                    from = 0;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        content.len()
                    )
                };
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(&content[from..]).unwrap();
            }
        });
        (url, ranges)
    }

    #[test]
    fn interrupted_http_downloads_continue_with_a_range_request() {
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
        for honour_ranges in [true, false] {
            let (url, ranges) = http_server(content.clone(), honour_ranges);
            let dir = tempfile::tempdir().unwrap();
            let destination = dir.path().join("abc.deb");
            let received = resume(&url, &content, &destination, 30_000);
            assert_eq!(*ranges.lock().unwrap(), ["30000-"], "asked for the rest");
            let expected = if honour_ranges { 70_000 } else { 100_000 };
            assert_eq!(
                received, expected,
                "a server that ignores the range sends it all, and the file starts over"
            );
            assert!(!partial_path(&destination).exists());
        }
    }

    #[test]
    fn conditional_get_of_file_urls() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("InRelease"), b"x").unwrap();
        let fetcher = Fetcher::new();
        let url = format!("file://{}/InRelease", dir.path().display());
        assert!(matches!(
            fetcher
                .get_conditional(&url, &Validators::default())
                .unwrap(),
            Conditional::Changed { .. }
        ));
        let missing = format!("file://{}/nope", dir.path().display());
        assert!(matches!(
            fetcher
                .get_conditional(&missing, &Validators::default())
                .unwrap(),
            Conditional::Missing
        ));
    }

    #[test]
    fn validators_round_trip() {
        let v = Validators {
            etag: Some("\"abc\"".into()),
            last_modified: None,
        };
        assert_eq!(Validators::from_text(&v.to_text()), v);
    }

    #[test]
    fn unreachable_hosts_name_the_url() {
        let error = Fetcher::new()
            .get_conditional(
                "http://127.0.0.1:9/dists/x/InRelease",
                &Validators::default(),
            )
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot reach `http://127.0.0.1:9/dists/x/InRelease`"),
            "{error}"
        );
    }

    /// gc finds what downloads and atomic writes left behind by these names.
    #[test]
    fn temporary_names_read_back() {
        let deb = Path::new("/cache/debs/ab.deb");
        let partial = partial_path(deb);
        let partial_name = partial.file_name().unwrap().to_string_lossy();
        assert_eq!(partial_target(&partial_name), Some("ab.deb"));
        assert_eq!(partial_target("ab.deb"), None);
        assert_eq!(lock_path(deb), Path::new("/cache/debs/ab.deb.lock"));

        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("record.json");
        write_atomically(&destination, |_| {
            let writers: Vec<i32> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| atomic_writer(&e.unwrap().file_name().to_string_lossy()))
                .collect();
            assert_eq!(writers, [std::process::id() as i32]);
            Ok(())
        })
        .unwrap();
        assert_eq!(atomic_writer("record.json"), None);
        assert_eq!(atomic_writer("record.json.partial-42"), None, "not hidden");
        assert_eq!(atomic_writer(".record.json.partial-0"), None);
    }
}
