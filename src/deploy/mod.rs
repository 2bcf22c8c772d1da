//! A project as other engines run it: Kubernetes manifests and a Compose file, from one plain
//! description of its environments ([`App`]). Built from serde types ([`kubernetes`],
//! [`compose`]) and written as YAML ([`yaml`]); this module knows nothing else of envkit, `ops`
//! describes the project to it.

pub mod compose;
pub mod kubernetes;
pub mod yaml;

use std::collections::BTreeMap;

/// The project: its main environment and its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// The project's name: labels every object, and names the main environment's workload.
    pub project: String,
    /// The main environment first, then the peers in start order.
    pub workloads: Vec<Workload>,
}

/// One environment as a running workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// A DNS label: the project's name for the main environment, the peer's name for a peer
    /// (which the other workloads reach it by).
    pub name: String,
    /// Where an engine pulls the image from.
    pub image: String,
    /// Whether the others reach it by name (a peer): a Service, or a Compose service others
    /// depend on.
    pub reachable: bool,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    pub ports: Vec<u16>,
    pub volumes: Vec<Volume>,
    pub ready: Option<Ready>,
    /// Whether it runs as root (`user "root"`); otherwise as the image says, which for an
    /// envkit image is root too, as there is no invoking user to be.
    pub root: bool,
}

/// A named volume of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Unique in the project: `<workload>-<volume>`.
    pub claim: String,
    pub at: String,
}

/// How to tell that a workload is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    Tcp { port: u16, timeout_secs: u64 },
    Command { command: String, timeout_secs: u64 },
}

impl App {
    /// The peers: the workloads others reach by name.
    pub fn peers(&self) -> impl Iterator<Item = &Workload> {
        self.workloads.iter().filter(|w| w.reachable)
    }
}
