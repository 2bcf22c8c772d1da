//! What `env ps` lists: the project's peers (with those it no longer names that still run) and
//! its open sessions.

use super::{ProjectPeers, Status};
use crate::spec::Peer;

/// One line of `env ps`.
#[derive(Debug, serde::Serialize)]
pub struct Entry {
    pub kind: &'static str,
    pub name: String,
    /// False for a peer still running after it was renamed or removed from the env file.
    pub in_env_file: bool,
    #[serde(flatten)]
    pub status: Option<Status>,
    pub address: Option<String>,
    pub ports: Vec<u16>,
    pub started: u64,
    pub uptime_secs: Option<u64>,
    pub restarts: u32,
    pub command: Vec<String>,
}

/// The peers with a state, in start order, then the live sessions of the project.
pub fn entries(peers: &ProjectPeers<'_>) -> Vec<Entry> {
    let now = super::state::now();
    let mut entries = Vec::new();
    // The env file's peers in start order, then any it no longer names that still have a
    // state (renamed or removed while running: `env down` stops them too).
    let mut names: Vec<(String, Option<&Peer>)> = peers
        .in_order()
        .into_iter()
        .map(|p| (p.name.clone(), Some(p)))
        .collect();
    names.extend(peers.removed().into_iter().map(|name| (name, None)));
    for (name, peer) in names {
        let Some(state) = super::PeerState::read(&peers.dir(&name)) else {
            continue;
        };
        let status = state.status();
        entries.push(Entry {
            kind: "peer",
            name,
            in_env_file: peer.is_some(),
            uptime_secs: matches!(status, Status::Running | Status::Starting)
                .then(|| now.saturating_sub(state.started)),
            status: Some(status),
            address: Some(state.address.clone()),
            ports: state.ports.clone(),
            started: state.started,
            restarts: state.restarts,
            command: peer
                .and_then(|p| p.spec.service.clone())
                .into_iter()
                .collect(),
        });
    }
    for record in crate::run::session::live_sessions(&peers.runtime, &peers.project) {
        entries.push(Entry {
            kind: "session",
            name: record.id.clone(),
            in_env_file: true,
            status: None,
            address: None,
            ports: Vec::new(),
            started: record.started,
            uptime_secs: Some(now.saturating_sub(record.started)),
            restarts: 0,
            command: record.command.clone(),
        });
    }
    entries
}
