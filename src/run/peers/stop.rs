//! `env down`: the peers stop, dependents first, and their folders go; peers the env file no
//! longer names are stopped first.

use std::time::{Duration, Instant};

use super::{PeerError, PeerState, ProjectPeers};

/// How long a peer may take to shut down before it is killed.
const GRACE: Duration = Duration::from_secs(10);

/// Stops every peer of the project (and those it no longer names), removing their folders;
/// with `delete_volumes`, their volumes too. `say` hears each step.
pub fn down(
    peers: &ProjectPeers<'_>,
    delete_volumes: bool,
    say: &dyn Fn(&str),
) -> Result<(), PeerError> {
    let project_dir = peers.project_dir();
    // Not while another command is starting them.
    let _turn = peers.take_turn()?;
    // Peers no longer in env.kdl (renamed or removed) still run until stopped: first them,
    // then the others, dependents first (the reverse of the start order).
    for name in peers.removed() {
        let dir = project_dir.join(&name);
        if let Some(state) = PeerState::read(&dir) {
            stop(&state, say);
            say(&format!("stopped {name} (no longer in the env file)"));
        }
        let _ = crate::files::remove_tree(&dir);
    }
    for peer in peers.in_order().iter().rev() {
        let dir = peers.dir(&peer.name);
        if let Some(state) = PeerState::read(&dir) {
            stop(&state, say);
            say(&format!("stopped {}", peer.name));
        }
        if dir.exists() {
            let _ = crate::files::remove_tree(&dir);
        }
        if delete_volumes {
            for volume in &peer.spec.volumes {
                let name = format!("{}.{}", peer.name, volume.name);
                match crate::run::volumes::remove(
                    &crate::paths::volumes_dir(),
                    &peers.project,
                    &name,
                ) {
                    Ok(()) => say(&format!("deleted volume {name}")),
                    Err(crate::run::volumes::VolumeError::Unknown { .. }) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    Ok(())
}

/// The names of the volumes `env down --volumes` would delete.
pub fn volume_names(peers: &ProjectPeers<'_>) -> Vec<String> {
    peers
        .in_order()
        .iter()
        .flat_map(|p| {
            p.spec
                .volumes
                .iter()
                .map(move |v| format!("{}.{}", p.name, v.name))
        })
        .collect()
}

/// SIGTERM to the supervisor (which passes it to the service), then SIGKILL after the grace
/// period (the service dies with its supervisor).
fn stop(state: &PeerState, say: &dyn Fn(&str)) {
    let pid = nix::unistd::Pid::from_raw(state.supervisor as i32);
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        if !crate::kernel::process::is_alive(state.supervisor, state.supervisor_start) {
            return;
        }
        let _ = nix::sys::signal::kill(pid, signal);
        let sent = Instant::now();
        while sent.elapsed() < GRACE {
            if !crate::kernel::process::is_alive(state.supervisor, state.supervisor_start) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    say(&format!(
        "warning: the supervisor of {} (pid {}) does not end",
        state.peer, state.supervisor
    ));
}
