//! Peers: a project's other environments (a database, a cache), each running its `service` in
//! the background, each in a network namespace of its own, reached by name.
//!
//! Every peer of every project owns one loopback address on the host (`127.U.x.y`, U from the
//! user's uid, recorded in `<runtime>/addresses.json`), so two peers may listen on the same port and two projects
//! never collide. A supervisor process per peer (envkit itself, detached) holds listening
//! sockets on that address in the host's network namespace and forwards each connection into
//! the peer's namespace, to `127.0.0.1:PORT` there (see [`forward`]). Every environment of the
//! project gets `/etc/hosts` lines naming each peer's address: the main environment shares the
//! host's network and connects to it directly; inside a peer (and a private session), the
//! kernel redirects connections for the other peers' addresses to listeners of envkit's on
//! ports it picked, which forward them out, so the service keeps every port of its own.
//!
//! A peer's state lives in `<runtime>/peers/<project>/<peer>/`: `state.json` (written by the
//! supervisor), `log` (its output, capped), and the session's scratch folder.
//!
//! The lifecycle, one module a step: [`ProjectPeers`] orders a project's peers and names their
//! addresses; [`up`] starts what is not running (through [`supervisor`], detached) and waits
//! for [`ready`]; [`stop`] ends them, dependents first; [`listing`] is what `env ps` shows. The
//! pieces they share: [`files`] (folders and lock files), [`state`], [`address`], [`log`],
//! [`forward`] (with [`relay`], one event loop per link). Building a peer's image is not theirs: `up` asks its caller for it.

pub mod address;
pub mod files;
pub mod forward;
pub mod listing;
pub mod log;
mod project;
pub mod ready;
mod relay;
pub mod state;
pub mod stop;
pub mod supervisor;
pub mod up;

pub use project::{Host, ProjectPeers, peers_in_order};
pub use state::{PeerState, Status};

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Io(#[from] crate::run::FileError),
    #[error("{what}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("no free loopback address is left for peers")]
    NoAddress,
    #[error("peer `{peer}` has no `service` to run, and its image names no Entrypoint or Cmd")]
    NoService { peer: String },
    /// The peer failed to start or become ready; `output` is the end of its log.
    #[error("peer `{peer}` {why}{}", if output.is_empty() { String::new() } else { format!("\nits last output:\n{output}") })]
    NotReady {
        peer: String,
        why: String,
        output: String,
    },
    #[error("this project has no peer `{name}`")]
    Unknown { name: String, known: Vec<String> },
    #[error("no peer `{0}` in this env file")]
    NotInEnvFile(String),
    #[error(transparent)]
    Volume(#[from] crate::run::volumes::VolumeError),
}

impl PeerError {
    /// Whether the env file (or the service it names) is at fault, rather than the machine.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            PeerError::NoService { .. }
                | PeerError::NotReady { .. }
                | PeerError::Unknown { .. }
                | PeerError::NotInEnvFile(_)
        )
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            PeerError::NoService { .. } => {
                Some("add `service \"COMMAND\"` to the peer's env file".into())
            }
            PeerError::NotReady { peer, .. } => Some(format!(
                "`env logs {peer}` shows all of it; `env down` stops the others"
            )),
            PeerError::Unknown { known, .. } => Some(if known.is_empty() {
                "env.kdl names no peers".into()
            } else {
                format!("its peers: {}", known.join(", "))
            }),
            _ => None,
        }
    }
}
