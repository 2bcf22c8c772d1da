//! `env up`, `env down`, `env ps`, `env logs`, and the supervisor each peer runs under
//! (`env __supervise`, started detached by `env up`; see `run::peers` for the design).

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::build::{ImageContext, build_and_record};
use super::{Failure, load_spec};
use crate::build::image::{BuildError, find_image};
use crate::build::store::Store;
use crate::run::peers::{self, PeerState, Status, forward};
use crate::run::session::{self, Background, SessionRequest};
use crate::spec::{Peer, ReadyCheck, Spec};

/// How long `env down` lets a peer shut down before killing it.
const GRACE: Duration = Duration::from_secs(10);

fn peer_failure(error: peers::PeerError) -> Failure {
    Failure::Run(crate::run::RunError::Peer(error))
}

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

/// A peer's lock: beside its own file, or for an inline peer `<file>.<peer>.lock` beside the
/// file holding it.
pub fn peer_lock_path(peer: &Peer) -> PathBuf {
    match &peer.file {
        Some(file) => crate::solve::stage::lock_path(file),
        None => peer
            .spec
            .origin
            .file
            .with_extension(format!("{}.lock", peer.name)),
    }
}

fn project_of(spec: &Spec) -> PathBuf {
    spec.origin
        .dir
        .canonicalize()
        .unwrap_or_else(|_| spec.origin.dir.clone())
}

/// The `/etc/hosts` lines naming every peer of the project.
pub fn peer_hosts(spec: &Spec) -> Result<Vec<(String, String)>, Failure> {
    let runtime = crate::paths::runtime_dir();
    let project = project_of(spec);
    peers_in_order(spec)
        .iter()
        .map(|peer| {
            let address = peers::address(&runtime, &project, &peer.name, &peer.spec.ports)
                .map_err(peer_failure)?;
            Ok((address, peer.name.clone()))
        })
        .collect()
}

/// Every peer's address with its ports, from the `/etc/hosts` lines of [`peer_hosts`].
pub fn peer_ports(spec: &Spec, hosts: &[(String, String)]) -> Vec<(String, Vec<u16>)> {
    peers_in_order(spec)
        .iter()
        .filter_map(|peer| {
            let (address, _) = hosts.iter().find(|(_, name)| *name == peer.name)?;
            Some((address.clone(), peer.spec.ports.clone()))
        })
        .collect()
}

/// `env up`; also what `env shell` and `env run` do first. Returns the hosts lines. Says
/// which peers it starts (on stderr); peers already running pass silently.
pub fn up(spec: &Spec) -> Result<Vec<(String, String)>, Failure> {
    let hosts = peer_hosts(spec)?;
    let runtime = crate::paths::runtime_dir();
    let project = project_of(spec);
    let store = Store::default_location();
    // Two commands starting the same project's peers (two `env run` in two terminals) take
    // turns: the second finds them running instead of failing to bind their addresses.
    let _starting = lock_project(&peers::project_dir(&runtime, &project))?;
    for peer in peers_in_order(spec) {
        let dir = peers::peer_dir(&runtime, &project, &peer.name);
        let previous = PeerState::read(&dir);
        let restarts = match previous.as_ref().map(|s| (s.status(), s.restarts)) {
            Some((Status::Running, _)) => continue,
            Some((Status::Starting, _)) => {
                wait_ready(peer, &dir, None)?;
                continue;
            }
            Some((Status::Exited(_), restarts)) => restarts + 1,
            None => 0,
        };
        if peer.spec.service.is_none() {
            return Err(Failure::user(
                format!("peer `{}` has no `service` to run", peer.name),
                Some("add `service \"COMMAND\"` to the peer's env file".into()),
            ));
        }
        let lock_file = peer_lock_path(peer);
        let lock = super::lock::current_lock_at(&peer.spec, &lock_file)?;
        let context = ImageContext::new(&peer.spec)?;
        let inputs = context.inputs(&peer.spec, &lock);
        let image = build_and_record(&lock_file, &inputs, &store)?;
        eprintln!("starting {} ({})", peer.name, image.name);
        let mut supervisor = start_supervisor(spec, peer, &image.name, &dir, restarts)?;
        wait_ready(peer, &dir, Some(&mut supervisor))?;
        eprintln!("{} is ready", peer.name);
    }
    Ok(hosts)
}

/// Holds `<project peers dir>/up.lock` until dropped.
fn lock_project(dir: &Path) -> Result<std::fs::File, Failure> {
    peers::hold_lock(&dir.join("up.lock")).map_err(peer_failure)
}

fn start_supervisor(
    spec: &Spec,
    peer: &Peer,
    image: &str,
    dir: &Path,
    restarts: u32,
) -> Result<std::process::Child, Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::io(format!("cannot create `{}`", dir.display()), e))?;
    let _ = std::fs::remove_file(PeerState::path(dir));
    let log_path = dir.join("log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Failure::io(format!("cannot open `{}`", log_path.display()), e))?;
    let err = log
        .try_clone()
        .map_err(|e| Failure::io("cannot open the peer's log", e))?;
    let exe = std::env::current_exe().map_err(|e| Failure::io("cannot find envkit itself", e))?;
    let mut command = std::process::Command::new(exe);
    // The subcommand first: anything else first would go to the system `env`.
    command
        .arg("__supervise")
        .arg("-f")
        .arg(&spec.origin.file)
        .args([&peer.name, image, &restarts.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err);
    if let Some(value) = crate::userns::inherited_value() {
        command.env(crate::userns::INHERITED_VARIABLE, value);
    }
    // SAFETY: setsid is async-signal-safe; the supervisor outlives this envkit and must not
    // get its terminal's signals.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    command
        .spawn()
        .map_err(|e| Failure::io("cannot start the peer's supervisor", e))
}

/// Waits until the peer is ready, has failed, or its time is up; `supervisor`, when this
/// command started it, is watched too: one that ends before writing any state has failed.
fn wait_ready(
    peer: &Peer,
    dir: &Path,
    mut supervisor: Option<&mut std::process::Child>,
) -> Result<(), Failure> {
    let timeout = Duration::from_secs(u64::from(
        peer.spec
            .ready
            .as_ref()
            .map_or(crate::spec::DEFAULT_READY_TIMEOUT_SECS, |r| r.timeout_secs),
    ));
    let started = Instant::now();
    let log = dir.join("log");
    let failed = |why: String| {
        let tail = peers::log_tail(&log, 20);
        let shown = if tail.is_empty() {
            String::new()
        } else {
            format!("\nits last output:\n{tail}")
        };
        Failure::user(
            format!("peer `{}` {why}{shown}", peer.name),
            Some(format!(
                "`env logs {}` shows all of it; `env down` stops the others",
                peer.name
            )),
        )
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

/// `env __supervise PEER IMAGE RESTARTS`: runs one peer until it ends.
pub fn supervise(
    file: Option<&Path>,
    name: &str,
    image: &str,
    restarts: u32,
) -> Result<(), Failure> {
    let entered = crate::userns::enter()?;
    let loaded = load_spec(file)?;
    let spec = &loaded.spec;
    let order = peers_in_order(spec);
    let peer = order
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| Failure::user(format!("no peer `{name}` in this env file"), None))?;
    let store = Store::default_location();
    let image = find_image(&store, image)
        .map_err(BuildError::from)?
        .ok_or_else(|| Failure::user(format!("image `{image}` is not in the store"), None))?;
    let runtime = crate::paths::runtime_dir();
    let project = project_of(spec);
    let dir = peers::peer_dir(&runtime, &project, name);
    let hosts = peer_hosts(spec)?;
    let address =
        peers::address(&runtime, &project, name, &peer.spec.ports).map_err(peer_failure)?;
    let me = std::process::id();
    let state = Arc::new(Mutex::new(PeerState {
        peer: name.to_string(),
        project: project.clone(),
        image: image.name.clone(),
        address: address.clone(),
        ports: peer.spec.ports.clone(),
        supervisor: me,
        supervisor_start: peers::process_start(me).unwrap_or(0),
        started: peers::now(),
        ready: false,
        exit: None,
        failure: None,
        restarts,
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
                if *port < 1024 && !entered.invoker.is_root() {
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
    let Some(service) = &peer.spec.service else {
        return Ok(());
    };
    let service = service_command(service);
    let others: Vec<(String, Vec<u16>)> = peer_ports(spec, &hosts)
        .into_iter()
        .filter(|(other, _)| *other != address)
        .collect();
    let (output_reader, output_writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Failure::io("cannot make the peer's output pipe", e.into()))?;
    let request = SessionRequest {
        name,
        spec: &peer.spec,
        layers: image.layers.iter().map(|l| store.tree(&l.key)).collect(),
        invoker: &entered.invoker,
        // A service starts as root and drops to its own user (postgres, redis), as in a
        // container; the invoking user owns nothing of it.
        root: true,
        command: vec!["/bin/sh".into(), "-c".into(), service],
        terminal: false,
        host_environment: std::env::vars().collect(),
        host_cwd: None,
        volumes_dir: crate::paths::volumes_dir(),
        runtime_dir: runtime.clone(),
        volume_project: project.clone(),
        volume_prefix: format!("{name}."),
        hosts: hosts.iter().filter(|(_, n)| n != name).cloned().collect(),
        background: Some(Background {
            dir: dir.join("session"),
            // The service writes into a pipe whose other end this supervisor copies into the
            // log, so only it writes the log and can rotate it without losing a line.
            log: PathBuf::from(format!("/proc/self/fd/{}", output_writer.as_raw_fd())),
        }),
    };
    let log = dir.join("log");
    let copier =
        std::thread::spawn(move || peers::copy_to_log(std::fs::File::from(output_reader), &log));
    let ready = peer.spec.ready.clone();
    let ready_state = Arc::clone(&state);
    let ready_dir = dir.clone();
    let outcome = session::run_with(&request, &mut |pid| {
        let Ok(inside) = forward::namespace_of(pid) else {
            return;
        };
        for (port, listener) in listeners.drain(..) {
            let target = SocketAddr::from(([127, 0, 0, 1], port));
            forward::serve(listener, target, Some(Arc::clone(&inside)));
        }
        forward::link_peers_into(&inside, &others);
        let probe_state = Arc::clone(&ready_state);
        let probe_dir = ready_dir.clone();
        let ready = ready.clone();
        std::thread::spawn(move || {
            probe_until_ready(pid, &inside, ready.as_ref().map(|r| &r.check));
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

/// Waits until the peer answers: its `ready` check, tried from inside its namespaces.
fn probe_until_ready(pid: i32, inside: &Arc<std::os::fd::OwnedFd>, check: Option<&ReadyCheck>) {
    match check {
        None => {}
        Some(ReadyCheck::Tcp(port)) => {
            let inside = Arc::clone(inside);
            let port = *port;
            let _ = std::thread::spawn(move || {
                if nix::sched::setns(
                    std::os::fd::AsFd::as_fd(&*inside),
                    nix::sched::CloneFlags::CLONE_NEWNET,
                )
                .is_err()
                {
                    return;
                }
                let target = SocketAddr::from(([127, 0, 0, 1], port));
                while std::net::TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_err()
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
            .join();
        }
        Some(ReadyCheck::Cmd(command)) => {
            while !run_inside(pid, command) {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// How long one try of a `ready cmd=` may take before it counts as failed.
const READY_TRY_LIMIT: Duration = Duration::from_secs(10);

/// Runs `sh -c COMMAND` in the peer's mount, network, uts and ipc namespaces; a try that hangs
/// is killed after [`READY_TRY_LIMIT`], and none outlives the supervisor.
fn run_inside(pid: i32, command: &str) -> bool {
    let open = |kind: &str| std::fs::File::open(format!("/proc/{pid}/ns/{kind}"));
    let (Ok(mnt), Ok(net), Ok(uts), Ok(ipc)) = (open("mnt"), open("net"), open("uts"), open("ipc"))
    else {
        return false;
    };
    let mut child = std::process::Command::new("/bin/sh");
    child
        .args(["-c", command])
        .env_clear()
        .env("PATH", session::DEFAULT_PATH)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only prctl, setns and chdir, which are async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        child.pre_exec(move || {
            use nix::sched::{CloneFlags, setns};
            use std::os::fd::AsFd;
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            for (file, kind) in [
                (&net, CloneFlags::CLONE_NEWNET),
                (&uts, CloneFlags::CLONE_NEWUTS),
                (&ipc, CloneFlags::CLONE_NEWIPC),
                (&mnt, CloneFlags::CLONE_NEWNS),
            ] {
                setns(file.as_fd(), kind).map_err(std::io::Error::from)?;
            }
            nix::unistd::chdir("/").map_err(std::io::Error::from)
        });
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

/// `env down [--volumes] [--yes]`.
pub fn down(file: Option<&Path>, volumes: bool, yes: bool) -> Result<(), Failure> {
    let loaded = load_spec(file)?;
    let spec = &loaded.spec;
    let runtime = crate::paths::runtime_dir();
    let project = project_of(spec);
    let order = peers_in_order(spec);
    if volumes && !yes {
        let names: Vec<String> = order
            .iter()
            .flat_map(|p| {
                p.spec
                    .volumes
                    .iter()
                    .map(move |v| format!("{}.{}", p.name, v.name))
            })
            .collect();
        if !names.is_empty() {
            if !std::io::stdin().is_terminal() {
                return Err(Failure::user(
                    "`env down --volumes` deletes data and needs a confirmation",
                    Some("add `--yes` to confirm from a script".into()),
                ));
            }
            let confirmed = dialoguer::Confirm::new()
                .with_prompt(format!("Delete the volumes {}?", names.join(", ")))
                .default(false)
                .interact()
                .map_err(|e| {
                    Failure::io("cannot ask for confirmation", std::io::Error::other(e))
                })?;
            if !confirmed {
                eprintln!("nothing deleted; the peers keep running");
                return Ok(());
            }
        }
    }
    // Not while another command is starting them.
    let project_dir = peers::project_dir(&runtime, &project);
    let _starting = lock_project(&project_dir)?;
    // Peers no longer in env.kdl (renamed or removed) still run until stopped: first them,
    // then the others, dependents first (the reverse of the start order).
    for name in removed_peers(&project_dir, &order) {
        let dir = project_dir.join(&name);
        if let Some(state) = PeerState::read(&dir) {
            stop(&state);
            eprintln!("stopped {name} (no longer in the env file)");
        }
        let _ = crate::build::store::remove_tree(&dir);
    }
    for peer in order.iter().rev() {
        let dir = peers::peer_dir(&runtime, &project, &peer.name);
        if let Some(state) = PeerState::read(&dir) {
            stop(&state);
            eprintln!("stopped {}", peer.name);
        }
        if dir.exists() {
            let _ = crate::build::store::remove_tree(&dir);
        }
        if volumes {
            for volume in &peer.spec.volumes {
                let name = format!("{}.{}", peer.name, volume.name);
                match crate::run::volumes::remove(&crate::paths::volumes_dir(), &project, &name) {
                    Ok(()) => eprintln!("deleted volume {name}"),
                    Err(crate::run::volumes::VolumeError::Unknown { .. }) => {}
                    Err(error) => return Err(Failure::Run(error.into())),
                }
            }
        }
    }
    Ok(())
}

/// The peers with a folder in the project's runtime folder that the env file no longer names
/// (renamed or removed while they ran), sorted.
fn removed_peers(project_dir: &Path, order: &[&Peer]) -> Vec<String> {
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

/// SIGTERM to the supervisor (which passes it to the service), then SIGKILL after the grace
/// period (the service dies with its supervisor).
fn stop(state: &PeerState) {
    let pid = nix::unistd::Pid::from_raw(state.supervisor as i32);
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        if !peers::process_alive(state.supervisor, state.supervisor_start) {
            return;
        }
        let _ = nix::sys::signal::kill(pid, signal);
        let sent = Instant::now();
        while sent.elapsed() < GRACE {
            if !peers::process_alive(state.supervisor, state.supervisor_start) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!(
        "warning: the supervisor of {} (pid {}) does not end",
        state.peer, state.supervisor
    );
}

/// One line of `env ps --json`.
#[derive(Debug, serde::Serialize)]
struct PsEntry {
    kind: &'static str,
    name: String,
    /// False for a peer still running after it was renamed or removed from the env file.
    in_env_file: bool,
    #[serde(flatten)]
    status: Option<Status>,
    address: Option<String>,
    ports: Vec<u16>,
    started: u64,
    uptime_secs: Option<u64>,
    restarts: u32,
    command: Vec<String>,
}

/// `env ps [--json]`: the project's peers and open sessions.
pub fn ps(file: Option<&Path>, json: bool) -> Result<(), Failure> {
    let loaded = load_spec(file)?;
    let spec = &loaded.spec;
    let runtime = crate::paths::runtime_dir();
    let project = project_of(spec);
    let now = peers::now();
    let mut entries = Vec::new();
    let order = peers_in_order(spec);
    // The env file's peers in start order, then any it no longer names that still have a
    // state (renamed or removed while running: `env down` stops them too).
    let mut names: Vec<(String, Option<&Peer>)> =
        order.iter().map(|p| (p.name.clone(), Some(*p))).collect();
    let removed = removed_peers(&peers::project_dir(&runtime, &project), &order);
    names.extend(removed.into_iter().map(|name| (name, None)));
    for (name, peer) in names {
        let dir = peers::peer_dir(&runtime, &project, &name);
        let Some(state) = PeerState::read(&dir) else {
            continue;
        };
        let status = state.status();
        entries.push(PsEntry {
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
    if let Ok(sessions) = std::fs::read_dir(runtime.join("sessions")) {
        for session in sessions.flatten() {
            let Ok(bytes) = std::fs::read(session.path().join("session.json")) else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<session::SessionRecord>(&bytes) else {
                continue;
            };
            let same_project = record.project.canonicalize().ok().as_ref() == Some(&project);
            if !same_project || !record.is_alive() {
                continue;
            }
            entries.push(PsEntry {
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
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).unwrap_or_default()
        );
        return Ok(());
    }
    if entries.is_empty() {
        eprintln!("no peers or sessions running for this project");
        return Ok(());
    }
    println!(
        "{:<8} {:<14} {:<16} {:<16} {:<12} {:>8}  {:>8}  COMMAND",
        "KIND", "NAME", "STATE", "ADDRESS", "PORTS", "UPTIME", "RESTARTS"
    );
    for entry in &entries {
        let ports: Vec<String> = entry.ports.iter().map(u16::to_string).collect();
        println!(
            "{:<8} {:<14} {:<16} {:<16} {:<12} {:>8}  {:>8}  {}",
            entry.kind,
            if entry.in_env_file {
                entry.name.clone()
            } else {
                format!("{} (removed)", entry.name)
            },
            entry
                .status
                .as_ref()
                .map_or_else(|| "running".into(), ToString::to_string),
            entry.address.as_deref().unwrap_or("-"),
            if ports.is_empty() {
                "-".into()
            } else {
                ports.join(",")
            },
            entry
                .uptime_secs
                .map_or_else(|| "-".into(), |s| format!("{s}s")),
            entry.restarts,
            if entry.command.is_empty() {
                "(shell)".into()
            } else {
                entry.command.join(" ")
            }
        );
    }
    Ok(())
}

/// `env logs [PEER] [--follow]`.
pub fn logs(file: Option<&Path>, peer: Option<&str>, follow: bool) -> Result<(), Failure> {
    let loaded = load_spec(file)?;
    let spec = &loaded.spec;
    let order = peers_in_order(spec);
    if let Some(name) = peer
        && !order.iter().any(|p| p.name == name)
    {
        let known: Vec<&str> = order.iter().map(|p| p.name.as_str()).collect();
        return Err(Failure::user(
            format!("this project has no peer `{name}`"),
            Some(if known.is_empty() {
                "env.kdl names no peers".into()
            } else {
                format!("its peers: {}", known.join(", "))
            }),
        ));
    }
    let runtime = crate::paths::runtime_dir();
    let project = project_of(spec);
    let chosen: Vec<&&Peer> = order
        .iter()
        .filter(|p| peer.is_none_or(|name| p.name == name))
        .collect();
    let prefix = chosen.len() > 1;
    let mut followers: Vec<peers::LogFollower> = chosen
        .iter()
        .map(|_| peers::LogFollower::default())
        .collect();
    let mut stdout = std::io::stdout();
    loop {
        for (peer, follower) in chosen.iter().zip(&mut followers) {
            let log = peers::peer_dir(&runtime, &project, &peer.name).join("log");
            let lines = follower.read_new(&log, follow);
            for line in String::from_utf8_lossy(&lines).split_inclusive('\n') {
                let _ = if prefix {
                    write!(stdout, "{} | {line}", peer.name)
                } else {
                    write!(stdout, "{line}")
                };
            }
        }
        let _ = stdout.flush();
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
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
