//! One project's peers as the lifecycle sees them: in start order, each with its folder and its
//! address.

use std::path::{Path, PathBuf};

use super::PeerError;
use crate::spec::{Peer, Spec};

/// An `/etc/hosts` line: (address, name).
pub type Host = (String, String);

/// Every peer of `spec` in start order (a peer's own peers before it), each name once.
pub fn peers_in_order(spec: &Spec) -> Vec<&Peer> {
    fn visit<'a>(spec: &'a Spec, out: &mut Vec<&'a Peer>) {
        for peer in &spec.peers {
            visit(&peer.spec, out);
            if !out.iter().any(|p| p.name == peer.name) {
                out.push(peer);
            }
        }
    }
    let mut out = Vec::new();
    visit(spec, &mut out);
    out
}

/// The peers of one env file, where their files are kept.
pub struct ProjectPeers<'a> {
    pub spec: &'a Spec,
    /// The runtime folder (`crate::paths::runtime_dir`).
    pub runtime: PathBuf,
    /// The project's folder, canonical: what tells two projects apart.
    pub project: PathBuf,
}

impl<'a> ProjectPeers<'a> {
    pub fn new(spec: &'a Spec, runtime: PathBuf) -> Self {
        let project = spec
            .origin
            .dir
            .canonicalize()
            .unwrap_or_else(|_| spec.origin.dir.clone());
        ProjectPeers {
            spec,
            runtime,
            project,
        }
    }

    /// The peers in start order.
    pub fn in_order(&self) -> Vec<&'a Peer> {
        peers_in_order(self.spec)
    }

    /// The peer called `name`, if the env file has one.
    pub fn find(&self, name: &str) -> Option<&'a Peer> {
        self.in_order().into_iter().find(|p| p.name == name)
    }

    /// The folder of the project's peers.
    pub fn project_dir(&self) -> PathBuf {
        super::files::project_dir(&self.runtime, &self.project)
    }

    /// The folder of one peer.
    pub fn dir(&self, name: &str) -> PathBuf {
        super::files::peer_dir(&self.runtime, &self.project, name)
    }

    /// One peer's log.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir(name).join("log")
    }

    /// A peer's loopback address (chosen on first use, then kept).
    pub fn address(&self, peer: &Peer) -> Result<String, PeerError> {
        super::address::address(&self.runtime, &self.project, &peer.name, &peer.spec.ports)
    }

    /// The `/etc/hosts` lines naming every peer of the project.
    pub fn hosts(&self) -> Result<Vec<Host>, PeerError> {
        self.in_order()
            .iter()
            .map(|peer| Ok((self.address(peer)?, peer.name.clone())))
            .collect()
    }

    /// Every peer's address with its ports, from the lines of [`ProjectPeers::hosts`].
    pub fn ports(&self, hosts: &[Host]) -> Vec<(String, Vec<u16>)> {
        self.in_order()
            .iter()
            .filter_map(|peer| {
                let (address, _) = hosts.iter().find(|(_, name)| *name == peer.name)?;
                Some((address.clone(), peer.spec.ports.clone()))
            })
            .collect()
    }

    /// Holds the project's `up.lock` until dropped: two commands starting or stopping the
    /// same project's peers take turns.
    pub fn take_turn(&self) -> Result<std::fs::File, PeerError> {
        super::files::hold_lock(&self.project_dir().join("up.lock"))
    }

    /// The peers with a folder in the project's runtime folder that the env file no longer
    /// names (renamed or removed while they ran), sorted.
    pub fn removed(&self) -> Vec<String> {
        let order = self.in_order();
        removed_from(&self.project_dir(), &order)
    }
}

fn removed_from(project_dir: &Path, order: &[&Peer]) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(project_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.path().is_dir())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| !order.iter().any(|p| p.name == *name))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
