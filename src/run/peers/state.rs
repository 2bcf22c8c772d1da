//! What the supervisor writes about its peer (`state.json`), and what a reader makes of it:
//! a dead supervisor means the peer ended, whatever the file last said.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::PeerError;
use crate::run::io;

/// What the supervisor writes about a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    pub peer: String,
    pub project: PathBuf,
    pub image: String,
    pub address: String,
    pub ports: Vec<u16>,
    /// The supervisor's pid, and its start time (clock ticks after boot) so a reused pid is
    /// not taken for it.
    pub supervisor: u32,
    pub supervisor_start: u64,
    /// Seconds since 1970.
    pub started: u64,
    pub ready: bool,
    /// Set when the service ended: its status (128+N for a signal).
    pub exit: Option<i32>,
    /// Why it could not start, when it could not.
    pub failure: Option<String>,
    /// How many times `env up` started it again after it had ended.
    pub restarts: u32,
}

/// What a peer is doing, as `env ps` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "status")]
pub enum Status {
    Starting,
    Running,
    /// Ended with this status; `None` when its supervisor was killed and no status is known.
    Exited(Option<i32>),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Starting => write!(f, "starting"),
            Status::Running => write!(f, "running"),
            Status::Exited(Some(code)) => write!(f, "exited ({code})"),
            Status::Exited(None) => write!(f, "exited (killed)"),
        }
    }
}

impl PeerState {
    pub fn status(&self) -> Status {
        if let Some(code) = self.exit {
            return Status::Exited(Some(code));
        }
        if !crate::kernel::process::is_alive(self.supervisor, self.supervisor_start) {
            return Status::Exited(None);
        }
        if self.ready {
            Status::Running
        } else {
            Status::Starting
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    pub fn read(dir: &Path) -> Option<PeerState> {
        let bytes = std::fs::read(Self::path(dir)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn write(&self, dir: &Path) -> Result<(), PeerError> {
        let path = Self::path(dir);
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        crate::fetch::write_bytes_atomically(&path, &bytes)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .map_err(io("write", &path))?;
        Ok(())
    }
}

/// Seconds since 1970.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_supervisor_means_exited_never_running() {
        let me = std::process::id();
        let mut state = PeerState {
            peer: "db".into(),
            project: "/p".into(),
            image: "x:y".into(),
            address: "127.77.0.2".into(),
            ports: vec![5432],
            supervisor: me,
            supervisor_start: crate::kernel::process::start_time(me).unwrap(),
            started: now(),
            ready: true,
            exit: None,
            failure: None,
            restarts: 0,
        };
        assert_eq!(state.status(), Status::Running);
        state.supervisor_start += 1;
        assert_eq!(state.status(), Status::Exited(None), "a reused pid");
        state.exit = Some(137);
        assert_eq!(state.status(), Status::Exited(Some(137)));
        assert_eq!(state.status().to_string(), "exited (137)");
    }
}
