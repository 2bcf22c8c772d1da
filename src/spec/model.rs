//! The validated `Spec`: plain data handed from `src/spec` to every later stage.
//!
//! Everything here has already been checked; later stages never re-validate. Paths the user
//! wrote relative to the env file are kept as written (they feed the canonical hash, which must
//! not depend on where the project lives) and also resolved against the env file's folder.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Serialize, Serializer};

/// One environment, as `env.kdl` (or a peer's file, or an inline `peer` block) declares it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    /// `name`; when absent the CLI names the environment after the project folder.
    pub name: Option<String>,
    /// `base`: the Debian release the image starts from.
    pub base: Base,
    /// `mirror`: where packages come from, when not the host's apt sources.
    pub mirror: Option<Mirror>,
    /// `snapshot`: an archive of the mirror's past states (the layout of Debian's snapshot
    /// service), where a locked `.deb` the mirror dropped is fetched from. Not part of the
    /// hash: it changes where files come from, never what they are (the lock's SHA-256 says).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// `cache`: the team's layer cache. Not part of the hash: it changes where layers come
    /// from, never what they hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<TeamCache>,
    /// `packages`, in the order written (a fresh solve honours it, as apt's command line does),
    /// without repeats.
    pub packages: Vec<String>,
    /// `recommends`: install Recommends as well as Depends.
    pub recommends: bool,
    /// `setup` steps, in order: each becomes one cached layer.
    pub setup: Vec<SetupStep>,
    /// `workdir`: where sessions start.
    pub workdir: Option<String>,
    /// `mount` nodes: host folders bound into the session.
    pub mounts: Vec<Mount>,
    /// `volume` nodes: named folders that outlive sessions.
    pub volumes: Vec<Volume>,
    /// `vars`: variables set in every session.
    pub vars: BTreeMap<String, String>,
    /// `pass`: host variables let through into sessions, sorted.
    pub pass: Vec<String>,
    /// `peer` nodes, each a whole environment of its own.
    pub peers: Vec<Peer>,
    /// `service`: what this environment runs when it is somebody's peer.
    pub service: Option<String>,
    /// `port`: ports the service answers on, sorted.
    pub ports: Vec<u16>,
    /// `ready`: how to tell that the service is up.
    pub ready: Option<Ready>,
    /// `user`: who the session runs as.
    pub user: User,
    /// `network`: which network the session sees.
    pub network: Network,
    /// `shell`: the program `env shell` starts.
    pub shell: Option<String>,
    /// `command`: what an exported or pushed image runs by default (Docker's `CMD`), through
    /// `/bin/sh -c`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `copy` nodes, in order: project files baked into layers on top of the setup steps.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopyFiles>,
    /// Where this spec was read from. Not part of the hash.
    pub origin: Origin,
}

/// A registry repository holding layers built elsewhere (by CI, say), by their keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TeamCache {
    /// `[REGISTRY/]REPOSITORY`, without a tag: envkit tags each layer itself.
    pub repository: String,
    /// `insecure=#true`: plain HTTP, for a registry on this machine's loopback only.
    pub insecure: bool,
}

/// `copy "SRC" at="/app"`: project files baked into the image (Docker's `COPY`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyFiles {
    /// As written, relative to the env file's folder.
    pub source: String,
    /// Resolved against the env file's folder.
    #[serde(skip)]
    pub source_path: PathBuf,
    /// Absolute path inside the image.
    pub at: String,
}

/// The file a spec was read from and the folder its relative paths are resolved against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Origin {
    /// The env file; for an inline peer, the file holding the `peer` block.
    pub file: PathBuf,
    /// The folder relative paths start from.
    pub dir: PathBuf,
}

/// What an environment starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// A Debian release (`bookworm`, `trixie`, ...; numeric versions are mapped to their
    /// codename), built from the mirror's packages.
    Debian { release: String },
    /// An image from a registry, as written (`postgres:16`, `127.0.0.1:5000/app@sha256:...`);
    /// the lock pins it by digest.
    Image { reference: String },
}

impl Base {
    /// The Debian release the environment is built from, when it is built from one.
    pub fn release(&self) -> Option<&str> {
        match self {
            Base::Debian { release } => Some(release),
            Base::Image { .. } => None,
        }
    }
}

impl fmt::Display for Base {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base::Debian { release } => write!(f, "debian:{release}"),
            Base::Image { reference } => write!(f, "image {reference}"),
        }
    }
}

impl Serialize for Base {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A package repository chosen in the env file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mirror {
    /// `http://`, `https://` or `file://` URL, without a trailing slash.
    pub url: String,
    /// `keyring=` as written, relative to the env file.
    pub keyring: Option<String>,
    /// `keyring=` resolved against the env file's folder.
    pub keyring_path: Option<PathBuf>,
}

/// One `setup` step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetupStep {
    /// The shell command, run with `sh -c`.
    pub command: String,
    /// Files and globs, relative to the env file, whose contents key the step's layer; sorted.
    pub inputs: Vec<String>,
}

/// A host folder bound into the session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mount {
    /// The host path as written.
    pub source: String,
    /// The host path resolved against the env file's folder.
    pub host_path: PathBuf,
    /// Absolute, normalised path inside the environment.
    pub at: String,
    /// Bound read-only.
    pub readonly: bool,
}

/// A named data folder that survives sessions and rebuilds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Volume {
    /// The volume's name, unique within its environment.
    pub name: String,
    /// Absolute, normalised path inside the environment.
    pub at: String,
}

/// Another environment this one is linked to by name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Peer {
    /// The name it is reached by (a host name inside the project's environments).
    pub name: String,
    /// `file=` resolved, or `None` for an inline block.
    pub file: Option<PathBuf>,
    /// The peer's own environment.
    pub spec: Box<Spec>,
}

/// How readiness of a service is probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadyCheck {
    /// A TCP connection to this port succeeds.
    Tcp(u16),
    /// This command, run inside the peer, exits 0.
    Cmd(String),
}

/// `ready`: the probe and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ready {
    /// What to probe.
    pub check: ReadyCheck,
    /// Seconds to wait before giving up.
    pub timeout_secs: u32,
}

/// The default for `ready timeout=`: long enough for a database's first initialisation.
pub const DEFAULT_READY_TIMEOUT_SECS: u32 = 60;

/// Who the session runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum User {
    /// The invoking user: same uid, gid and name.
    #[default]
    Host,
    /// Root inside the environment.
    Root,
}

/// Which network a session sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The host's network, so localhost servers and downloads work.
    #[default]
    Host,
    /// A network of its own, with the project's peers.
    Private,
    /// Loopback only.
    None,
}

impl Spec {
    /// Every peer, depth first, each once per path through the peer graph.
    pub fn all_peers(&self) -> Vec<&Peer> {
        let mut out = Vec::new();
        for peer in &self.peers {
            out.push(peer);
            out.extend(peer.spec.all_peers());
        }
        out
    }
}
