//! `env up`: every peer not running yet is started, in order, each waited for until ready.

use super::{Host, PeerError, PeerState, ProjectPeers, Status};
use crate::spec::Peer;

/// A peer's image, built.
pub struct PeerImage {
    pub name: String,
    /// Whether the image says what to run (a registry image's Entrypoint or Cmd), for a peer
    /// without `service`.
    pub has_command: bool,
}

/// Starts the project's peers that are not running; `image_for` gives the name of a peer's
/// image, built if need be (building is the caller's: this module only runs images), and
/// `say` hears which peers start. Returns the `/etc/hosts` lines naming every peer.
pub fn up<E: From<PeerError>>(
    peers: &ProjectPeers<'_>,
    image_for: &mut dyn FnMut(&Peer) -> Result<PeerImage, E>,
    say: &dyn Fn(&str),
) -> Result<Vec<Host>, E> {
    let hosts = peers.hosts()?;
    // Two commands starting the same project's peers (two `env run` in two terminals) take
    // turns: the second finds them running instead of failing to bind their addresses.
    let _turn = peers.take_turn()?;
    for peer in peers.in_order() {
        let dir = peers.dir(&peer.name);
        let previous = PeerState::read(&dir);
        let restarts = match previous.as_ref().map(|s| (s.status(), s.restarts)) {
            Some((Status::Running, _)) => continue,
            Some((Status::Starting, _)) => {
                super::ready::wait_ready(peer, &dir, None)?;
                continue;
            }
            Some((Status::Exited(_), restarts)) => restarts + 1,
            None => 0,
        };
        let PeerImage {
            name: image,
            has_command,
        } = image_for(peer)?;
        if peer.spec.service.is_none() && !has_command {
            return Err(PeerError::NoService {
                peer: peer.name.clone(),
            }
            .into());
        }
        say(&format!("starting {} ({image})", peer.name));
        let mut supervisor = super::supervisor::spawn(peers, peer, &image, restarts)?;
        super::ready::wait_ready(peer, &dir, Some(&mut supervisor))?;
        say(&format!("{} is ready", peer.name));
    }
    Ok(hosts)
}
