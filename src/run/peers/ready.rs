//! Readiness: the supervisor probes its service with the peer's `ready` check from inside the
//! peer's namespaces; the command that started the peer waits for the state to say so.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{PeerError, PeerState, Status};
use crate::kernel::ns::{self, Namespace};
use crate::spec::{Peer, ReadyCheck};

/// How long one try of a `ready cmd=` may take before it counts as failed.
const READY_TRY_LIMIT: Duration = Duration::from_secs(10);

/// Waits until the peer is ready, has failed, or its time is up; `supervisor`, when this
/// command started it, is watched too: one that ends before writing any state has failed.
pub fn wait_ready(
    peer: &Peer,
    dir: &Path,
    mut supervisor: Option<&mut Child>,
) -> Result<(), PeerError> {
    let timeout = Duration::from_secs(u64::from(
        peer.spec
            .ready
            .as_ref()
            .map_or(crate::spec::DEFAULT_READY_TIMEOUT_SECS, |r| r.timeout_secs),
    ));
    let started = Instant::now();
    let log = dir.join("log");
    let failed = |why: String| PeerError::NotReady {
        peer: peer.name.clone(),
        why,
        output: super::log::log_tail(&log, 20),
    };
    loop {
        let state = PeerState::read(dir);
        if let Some(state) = &state {
            if let Some(reason) = &state.failure {
                return Err(failed(format!("could not start: {reason}")));
            }
            match state.status() {
                Status::Running => return Ok(()),
                Status::Exited(Some(code)) => {
                    return Err(failed(format!("exited with status {code}")));
                }
                Status::Exited(None) => return Err(failed("stopped unexpectedly".into())),
                Status::Starting => {}
            }
        }
        if state.is_none()
            && let Some(child) = supervisor.as_deref_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(failed(format!(
                "could not start: its supervisor ended ({status})"
            )));
        }
        if started.elapsed() > timeout {
            return Err(failed(format!(
                "did not become ready within {} s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the peer answers: its `ready` check, tried from inside its namespaces (`pid` is
/// its init, `inside` its network namespace).
pub fn probe_until_ready(pid: i32, inside: &Arc<OwnedFd>, check: Option<&ReadyCheck>) {
    match check {
        None => {}
        Some(ReadyCheck::Tcp(port)) => {
            let inside = Arc::clone(inside);
            let port = *port;
            // A thread of its own: joining the peer's network changes only the calling thread.
            let _ = std::thread::spawn(move || {
                if ns::join(inside.as_fd(), Namespace::Network).is_err() {
                    return;
                }
                let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                while std::net::TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_err()
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
            .join();
        }
        Some(ReadyCheck::Cmd(command)) => {
            while !check_command_succeeds(pid, command) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Runs `sh -c COMMAND` in the peer's mount, network, uts and ipc namespaces; a try that hangs
/// is killed after [`READY_TRY_LIMIT`], and none outlives the supervisor.
fn check_command_succeeds(pid: i32, command: &str) -> bool {
    let mut child = std::process::Command::new("/bin/sh");
    child
        .args(["-c", command])
        .env_clear()
        .env("PATH", crate::run::session::DEFAULT_PATH)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let inside = [
        Namespace::Network,
        Namespace::Uts,
        Namespace::Ipc,
        Namespace::Mount,
    ];
    if ns::run_inside(&mut child, pid, &inside).is_err() {
        return false;
    }
    let Ok(mut child) = child.spawn() else {
        return false;
    };
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if started.elapsed() < READY_TRY_LIMIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}
