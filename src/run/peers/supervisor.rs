//! The supervisor: envkit itself, started detached as `env __supervise` by [`spawn`], runs one
//! peer's service in a background session ([`supervise`]), holds the host side of its ports,
//! links the other peers into its network, probes it until ready, and records all of it in the
//! peer's state.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Child;
use std::sync::{Arc, Mutex};

use super::{PeerError, PeerState, ProjectPeers, forward};
use crate::kernel::userns::Invoker;
use crate::run::session::{self, Background, ImageDefaults, SessionRequest};
use crate::spec::Peer;

/// The hidden subcommand that runs a supervisor.
pub const SUPERVISE_COMMAND: &str = "__supervise";

/// Starts the supervisor of `peer` detached from this command (it outlives it), its output
/// going to the peer's log.
pub fn spawn(
    peers: &ProjectPeers<'_>,
    peer: &Peer,
    image: &str,
    restarts: u32,
) -> Result<Child, PeerError> {
    let dir = peers.dir(&peer.name);
    std::fs::create_dir_all(&dir).map_err(crate::run::io("create", &dir))?;
    let _ = std::fs::remove_file(PeerState::path(&dir));
    let log_path = dir.join("log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(crate::run::io("open", &log_path))?;
    let err = log.try_clone().map_err(crate::run::io("open", &log_path))?;
    let exe = std::env::current_exe().map_err(|source| PeerError::Start {
        what: "cannot find envkit itself",
        source,
    })?;
    let mut command = std::process::Command::new(exe);
    // The subcommand first: anything else first would go to the system `env`.
    command
        .arg(SUPERVISE_COMMAND)
        .arg("-f")
        .arg(&peers.spec.origin.file)
        .args([&peer.name, image, &restarts.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err);
    if let Some(value) = crate::kernel::userns::inherited_value() {
        command.env(crate::kernel::userns::INHERITED_VARIABLE, value);
    }
    // The supervisor must not get its starter's terminal signals.
    crate::kernel::ns::detach(&mut command);
    command.spawn().map_err(|source| PeerError::Start {
        what: "cannot start the peer's supervisor",
        source,
    })
}

/// What a supervisor runs: one peer of a project, from an image already built.
pub struct Supervised<'a> {
    pub peers: &'a ProjectPeers<'a>,
    pub peer: &'a Peer,
    pub image: String,
    /// The image's layer trees, bottom first.
    pub layers: Vec<PathBuf>,
    pub invoker: &'a Invoker,
    pub restarts: u32,
    /// What a registry image the peer starts from runs with.
    pub defaults: ImageDefaults,
}

/// Runs the peer until its service ends, keeping its state file current. A peer that cannot
/// start is recorded as such (the starter reads why), not returned as an error.
pub fn supervise(run: &Supervised<'_>) -> Result<(), PeerError> {
    let Supervised { peers, peer, .. } = run;
    let name = peer.name.as_str();
    let dir = peers.dir(name);
    let hosts = peers.hosts()?;
    // Each connection through a link holds two descriptors here: the soft limit (often
    // 1,024) would cap a peer at some five hundred clients, when the hard limit allows more.
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    // The hosts lines hold every peer's address, this one's too: no second look-up.
    let address = match hosts.iter().find(|(_, host)| host == name) {
        Some((address, _)) => address.clone(),
        None => peers.address(peer)?,
    };
    let me = std::process::id();
    let state = Arc::new(Mutex::new(PeerState {
        peer: name.to_string(),
        project: peers.project.clone(),
        image: run.image.clone(),
        address: address.clone(),
        ports: peer.spec.ports.clone(),
        supervisor: me,
        supervisor_start: crate::kernel::process::start_time(me).unwrap_or(0),
        started: super::state::now(),
        ready: false,
        exit: None,
        failure: None,
        restarts: run.restarts,
    }));
    let save = |state: &Arc<Mutex<PeerState>>| {
        if let Ok(state) = state.lock() {
            let _ = state.write(&dir);
        }
    };
    // The host side of every port, bound before the service starts so a clash is reported.
    let mut listeners = Vec::new();
    for port in &peer.spec.ports {
        match TcpListener::bind((address.as_str(), *port)) {
            Ok(listener) => listeners.push((*port, listener)),
            Err(error) => {
                let mut reason = format!("cannot listen on {address}:{port}: {error}");
                if *port < 1024 && !run.invoker.is_root() {
                    reason.push_str(
                        " (ports below 1024 need root on the host side; use a higher port)",
                    );
                }
                if let Ok(mut state) = state.lock() {
                    state.failure = Some(reason);
                }
                save(&state);
                return Ok(());
            }
        }
    }
    save(&state);
    let Some((command, defaults)) = what_to_run(peer, &run.defaults) else {
        return Ok(());
    };
    let others: Vec<(String, Vec<u16>)> = peers
        .ports(&hosts)
        .into_iter()
        .filter(|(other, _)| *other != address)
        .collect();
    let (output_reader, output_writer) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|error| PeerError::Start {
            what: "cannot make the peer's output pipe",
            source: error.into(),
        })?;
    let mut request = SessionRequest::new(name, &peer.spec, run.layers.clone(), run.invoker);
    // A service starts as root and drops to its own user (postgres, redis), as in a
    // container; the invoking user owns nothing of it.
    request.root = true;
    request.command = command;
    request.image = defaults;
    request.volume_project = peers.project.clone();
    request.volume_prefix = format!("{name}.");
    request.hosts = hosts.iter().filter(|(_, n)| n != name).cloned().collect();
    request.background = Some(Background {
        dir: dir.join("session"),
        // The service writes into a pipe whose other end this supervisor copies into the
        // log, so only it writes the log and can rotate it without losing a line.
        log: PathBuf::from(format!("/proc/self/fd/{}", output_writer.as_raw_fd())),
    });
    let log = dir.join("log");
    let copier = std::thread::spawn(move || {
        super::log::copy_to_log(std::fs::File::from(output_reader), &log)
    });
    let owner = run.invoker.uid;
    let ready = peer.spec.ready.clone();
    let ready_state = Arc::clone(&state);
    let ready_dir = dir.clone();
    let outcome = session::run_with(&request, &mut |pid| {
        let Ok(inside) = forward::namespace_of(pid) else {
            return;
        };
        for (port, listener) in listeners.drain(..) {
            let target = SocketAddr::from(([127, 0, 0, 1], port));
            // On the host's loopback every local user reaches the port: only the project's
            // owner (and root) get through. The check is opened here, in the host's network
            // namespace, where those connections are; the serving thread joins the peer's.
            forward::serve(
                listener,
                target,
                Some(Arc::clone(&inside)),
                forward::Admit::owner(owner),
            );
        }
        if let forward::Linked::OnTheirPorts { why } = forward::link_peers_into(&inside, &others) {
            // Into the log, where whoever finds the service unable to bind a port looks.
            eprintln!(
                "envkit: the kernel cannot redirect connections to the other peers ({why}); \
                 envkit listens on their ports inside this peer instead, so the service \
                 cannot bind the wildcard address on those ports"
            );
        }
        let probe_state = Arc::clone(&ready_state);
        let probe_dir = ready_dir.clone();
        let ready = ready.clone();
        std::thread::spawn(move || {
            super::ready::probe_until_ready(pid, &inside, ready.as_ref().map(|r| &r.check));
            if let Ok(mut state) = probe_state.lock() {
                state.ready = true;
                let _ = state.write(&probe_dir);
            }
        });
    });
    // Its last words are in the log before the state says it ended.
    drop(request);
    drop(output_writer);
    let _ = copier.join();
    if let Ok(mut state) = state.lock() {
        match outcome {
            Ok(outcome) => state.exit = Some(outcome.exit.code()),
            Err(error) => state.failure = Some(error.to_string()),
        }
    }
    save(&state);
    Ok(())
}

/// The program a peer runs and the image defaults it runs with: its `service`, through the
/// shell, in place of a registry image's Entrypoint and Cmd; else those, as the image's
/// makers run them (no shell: an image may have none).
fn what_to_run(peer: &Peer, image: &ImageDefaults) -> Option<(Vec<String>, ImageDefaults)> {
    let mut defaults = image.clone();
    if peer.spec.user == crate::spec::User::Root {
        // env.kdl's `user "root"` wins over the image's User.
        defaults.user = None;
    }
    let entrypoint = std::mem::take(&mut defaults.entrypoint);
    let cmd = std::mem::take(&mut defaults.cmd);
    let command = match &peer.spec.service {
        Some(service) => vec!["/bin/sh".into(), "-c".into(), service_command(service)],
        None => entrypoint.into_iter().chain(cmd).collect(),
    };
    (!command.is_empty()).then_some((command, defaults))
}

/// The shell text a peer runs: a simple command is `exec`ed, so the service itself is the
/// program, whose end (and exit status) is the peer's. Lists, pipelines, compound commands and
/// commands that start with a builtin or an assignment stay as written.
fn service_command(service: &str) -> String {
    const KEEP_AS_WRITTEN: &[&str] = &[
        "exec", "if", "for", "while", "until", "case", "cd", "export", "set", "unset", ".",
        "source", "trap", "ulimit", "umask", "eval", "{", "(", "!",
    ];
    let first = service.split_whitespace().next().unwrap_or_default();
    let compound = service.contains(['&', '|', ';', '\n', '(', ')', '`']);
    if compound || first.contains('=') || KEEP_AS_WRITTEN.contains(&first) {
        service.to_string()
    } else {
        format!("exec {service}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_services_are_execed_and_the_rest_kept() {
        for (written, run) in [
            (
                "pg_ctlcluster --foreground 15 main start",
                "exec pg_ctlcluster --foreground 15 main start",
            ),
            ("redis-server > /tmp/log", "exec redis-server > /tmp/log"),
            ("exec postgres", "exec postgres"),
            ("FOO=1 server", "FOO=1 server"),
            (
                "cd /srv && python3 -m http.server",
                "cd /srv && python3 -m http.server",
            ),
            ("a; b", "a; b"),
            ("if true; then b; fi", "if true; then b; fi"),
        ] {
            assert_eq!(service_command(written), run, "{written}");
        }
    }
}
