//! `env up`, `down`, `ps`, `logs` and the supervisor's entry: each peer's image comes from the
//! image step (locked and built as any environment's), the lifecycle from `run::peers`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::base_image;
use super::{Error, LockMode, Project, Result, say};
use crate::build::image::{BuildError, Image, find_image};
use crate::build::store::Store;
use crate::run::peers::up::PeerImage;
use crate::run::peers::{self, Host, ProjectPeers, listing, log::LogFollower};
use crate::spec::{Base, Peer};

/// The project's peer called `name`, or an error listing the peers it has.
pub(super) fn named<'a>(project: &'a Project, name: &str) -> Result<&'a Peer> {
    let peers = crate::run::peers::peers_in_order(project.spec());
    peers
        .iter()
        .copied()
        .find(|peer| peer.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = peers.iter().map(|peer| peer.name.as_str()).collect();
            Error::user(
                format!("the project has no peer called `{name}`"),
                Some(if known.is_empty() {
                    "its env.kdl declares no `peer`".into()
                } else {
                    format!("its peers: {}", known.join(", "))
                }),
            )
        })
}

/// The peers, running.
pub struct Started {
    /// The `/etc/hosts` lines naming every peer.
    pub hosts: Vec<Host>,
    /// Every peer's address with its ports, to link into a private network.
    pub ports: Vec<(String, Vec<u16>)>,
}

/// Starts the peers not running yet, building their images first. What `env up` does, and
/// `env shell` and `env run` first.
pub fn start(project: &Project, mode: LockMode) -> Result<Started> {
    let store = Store::default_location();
    // A peer from a registry image not pulled yet is pulled before anything reads its ports
    // and volumes, which the image declares.
    let mut built: BTreeMap<String, Image> = BTreeMap::new();
    for peer in peers::peers_in_order(project.spec()) {
        let lock = crate::solve::stage::peer_lock_path(peer);
        if matches!(peer.spec.base, Base::Image { .. })
            && !base_image::is_recorded(&peer.spec, &lock)
        {
            let image = super::image::build_from_lock(&peer.spec, &lock, mode, &store)?;
            built.insert(peer.name.clone(), image);
        }
    }
    let completed =
        (!built.is_empty()).then(|| base_image::with_image_declarations(project.spec()));
    let spec = completed.as_ref().unwrap_or(project.spec());
    let peers = ProjectPeers::new(spec, crate::paths::runtime_dir());
    let mut image_for = |peer: &Peer| -> Result<PeerImage> {
        let image = match built.remove(&peer.name) {
            Some(image) => image,
            None => super::image::build_from_lock(
                &peer.spec,
                &crate::solve::stage::peer_lock_path(peer),
                mode,
                &store,
            )?,
        };
        // What the supervisor would run without a `service`.
        let defaults = super::image::image_defaults(&image);
        let has_command = !defaults.entrypoint.is_empty() || !defaults.cmd.is_empty();
        Ok(PeerImage {
            name: image.name,
            has_command,
        })
    };
    let hosts = peers::up::up(&peers, &mut image_for, &say)?;
    let ports = peers.ports(&hosts);
    Ok(Started { hosts, ports })
}

/// `env up`. Returns how many peers the project has.
pub fn up(project: &Project, mode: LockMode) -> Result<usize> {
    crate::kernel::userns::enter()?;
    let count = project.peers().in_order().len();
    if count > 0 {
        start(project, mode)?;
    }
    Ok(count)
}

/// The volumes `env down --volumes` would delete, to confirm first.
pub fn volumes_to_delete(project: &Project) -> Vec<String> {
    let peers = project.peers();
    peers::stop::volume_names(&peers)
}

/// `env down [--volumes]`.
pub fn down(project: &Project, delete_volumes: bool) -> Result<()> {
    crate::kernel::userns::enter()?;
    let peers = project.peers();
    peers::stop::down(&peers, delete_volumes, &say)?;
    Ok(())
}

/// `env ps`: the project's peers and open sessions.
pub fn ps(project: &Project) -> Vec<listing::Entry> {
    let peers = project.peers();
    listing::entries(&peers)
}

/// `env logs [PEER]`: the chosen peers' logs, read as they grow.
pub struct Logs {
    logs: Vec<(String, PathBuf, LogFollower)>,
}

impl Logs {
    /// Each peer's output since the last call, in start order: whole lines only when
    /// `following` (a line being written waits for the next call).
    pub fn read_new(&mut self, following: bool) -> Vec<(&str, Vec<u8>)> {
        self.logs
            .iter_mut()
            .map(|(name, log, follower)| (name.as_str(), follower.read_new(log, following)))
            .collect()
    }

    /// Whether more than one peer is shown (each line then says whose it is).
    pub fn several(&self) -> bool {
        self.logs.len() > 1
    }
}

/// The logs of `peer`, or of every peer.
pub fn logs(project: &Project, peer: Option<&str>) -> Result<Logs> {
    let peers = project.peers();
    let order = peers.in_order();
    if let Some(name) = peer
        && !order.iter().any(|p| p.name == name)
    {
        return Err(peers::PeerError::Unknown {
            name: name.to_string(),
            known: order.iter().map(|p| p.name.clone()).collect(),
        }
        .into());
    }
    Ok(Logs {
        logs: order
            .iter()
            .filter(|p| peer.is_none_or(|name| p.name == name))
            .map(|p| (p.name.clone(), peers.log(&p.name), LogFollower::default()))
            .collect(),
    })
}

/// `env __supervise PEER IMAGE RESTARTS`: runs one peer until it ends.
pub fn supervise(project: &Project, name: &str, image: &str, restarts: u32) -> Result<()> {
    let entered = crate::kernel::userns::enter()?;
    let peers = project.peers();
    let peer = peers
        .find(name)
        .ok_or_else(|| peers::PeerError::NotInEnvFile(name.to_string()))?;
    let store = Store::default_location();
    let image = find_image(&store, image)
        .map_err(BuildError::from)?
        .ok_or_else(|| Error::user(format!("image `{image}` is not in the store"), None))?;
    peers::supervisor::supervise(&peers::supervisor::Supervised {
        peers: &peers,
        peer,
        layers: image.layers.iter().map(|l| store.tree(&l.key)).collect(),
        defaults: super::image::image_defaults(&image),
        image: image.name,
        invoker: &entered.invoker,
        restarts,
    })?;
    Ok(())
}
