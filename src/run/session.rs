//! One session: an overlay of the image's layers with a throw-away upper folder, the env's
//! mounts and volumes, generated identity files, and the program, run by the sandbox.
//!
//! The session's scratch lives in `<runtime>/sessions/<id>/` (upper, work, the mount point and
//! `session.json`, which `env ps` reads) and is deleted when the program ends.

use super::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::kernel::sandbox::{
    Bind, Exit, Overlay, RunAs, SandboxError, SandboxNetwork, SandboxSpec,
};
use crate::kernel::userns::Invoker;
use crate::spec::{Network, Spec, User};

use super::layers;
use super::terminal::{Terminal, TerminalError};
use super::volumes::{self, VolumeError};

/// The PATH of every session (Debian's root PATH: sessions often administer their image).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Io(#[from] crate::run::FileError),
    #[error("the mount `{source_as_written}` names `{}`, which does not exist", host_path.display())]
    MissingMountSource {
        source_as_written: String,
        host_path: PathBuf,
    },
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Terminal(#[from] TerminalError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    ImageUser(#[from] crate::run::image_user::ImageUserError),
}

/// What the image an environment starts from says it runs with (a registry image's config);
/// each of env.kdl's own settings wins over it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    /// `Env`, in order.
    pub env: Vec<(String, String)>,
    /// `WorkingDir`.
    pub workdir: Option<String>,
    /// `Entrypoint`: what a command given to `env run` is handed to, as Docker does.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `User`: whom a service from the image runs as (a developer's own session runs as
    /// the developer, so its caller leaves this out).
    pub user: Option<String>,
}

/// What to run, where and as whom.
pub struct SessionRequest<'a> {
    /// The env's name: the session's host name.
    pub name: &'a str,
    pub spec: &'a Spec,
    /// The image's layer trees, bottom first.
    pub layers: Vec<PathBuf>,
    pub invoker: &'a Invoker,
    /// `--root`.
    pub root: bool,
    /// The command; empty means the env's shell.
    pub command: Vec<String>,
    /// What the base image says it runs with.
    pub image: ImageDefaults,
    /// Give the program a pty (`env shell` on a terminal).
    pub terminal: bool,
    /// The host's variables the session may see (TERM, LANG and the `pass` list are picked).
    pub host_environment: Vec<(String, String)>,
    /// The host folder envkit was started in: a session starts at its place in a mount.
    pub host_cwd: Option<PathBuf>,
    pub volumes_dir: PathBuf,
    pub runtime_dir: PathBuf,
    /// Whose volumes these are: the project's folder, and a prefix for a peer's volume names
    /// (`db.`), so a project's environments never share a volume by accident.
    pub volume_project: PathBuf,
    pub volume_prefix: String,
    /// Extra `/etc/hosts` lines: (address, name), the project's peers.
    pub hosts: Vec<(String, String)>,
    /// A peer's service: it runs in a network namespace of its own, its output goes to a log,
    /// and its scratch lives in the given folder.
    pub background: Option<Background>,
}

impl<'a> SessionRequest<'a> {
    /// A session of `spec` in the foreground as the invoking user, seeing the host's variables
    /// (those the env passes), with the project's volumes: what `env run` asks for; a peer's
    /// service changes a few fields.
    pub fn new(name: &'a str, spec: &'a Spec, layers: Vec<PathBuf>, invoker: &'a Invoker) -> Self {
        SessionRequest {
            name,
            spec,
            layers,
            invoker,
            root: false,
            command: Vec::new(),
            image: ImageDefaults::default(),
            terminal: false,
            host_environment: std::env::vars().collect(),
            host_cwd: None,
            volumes_dir: crate::paths::volumes_dir(),
            runtime_dir: crate::paths::runtime_dir(),
            volume_project: spec.origin.dir.clone(),
            volume_prefix: String::new(),
            hosts: Vec::new(),
            background: None,
        }
    }
}

/// Where a background session keeps its scratch and its output.
#[derive(Debug, Clone)]
pub struct Background {
    pub dir: PathBuf,
    pub log: PathBuf,
}

/// What `env ps` reads about a session while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    /// The env file's folder.
    pub project: PathBuf,
    pub env: String,
    pub command: Vec<String>,
    /// Seconds since 1970.
    pub started: u64,
    /// envkit's pid and its start time (clock ticks after boot), so a record left by a
    /// killed envkit is not taken for a live one, even once its pid is reused.
    pub pid: u32,
    #[serde(default)]
    pub pid_start: u64,
}

impl SessionRecord {
    /// Whether the envkit that wrote this record still runs (a record from before start
    /// times were kept is judged by its pid alone).
    pub fn is_alive(&self) -> bool {
        if self.pid_start == 0 {
            return Path::new(&format!("/proc/{}", self.pid)).exists();
        }
        crate::kernel::process::is_alive(self.pid, self.pid_start)
    }
}

/// The sessions of `project` (a canonical folder) still running, from their records in the
/// runtime folder.
pub fn live_sessions(runtime_dir: &Path, project: &Path) -> Vec<SessionRecord> {
    let Ok(sessions) = std::fs::read_dir(runtime_dir.join("sessions")) else {
        return Vec::new();
    };
    sessions
        .flatten()
        .filter_map(|session| {
            let bytes = std::fs::read(session.path().join("session.json")).ok()?;
            serde_json::from_slice::<SessionRecord>(&bytes).ok()
        })
        .filter(|record| {
            record.project.canonicalize().ok().as_deref() == Some(project) && record.is_alive()
        })
        .collect()
}

/// How a session ended.
pub struct SessionOutcome {
    pub exit: Exit,
    /// Rootless root sessions: files in writable mounts now owned by the subordinate root, per
    /// mount (its path inside, how many).
    pub foreign_files: Vec<(String, usize)>,
}

/// Runs the session and cleans up after it.
pub fn run(request: &SessionRequest<'_>) -> Result<SessionOutcome, RunError> {
    run_with(request, &mut |_| {})
}

/// Runs the session, calling `before_start` with its init's pid once its namespaces are made
/// and before the program starts (see `sandbox::run_with`).
pub fn run_with(
    request: &SessionRequest<'_>,
    before_start: &mut dyn FnMut(i32),
) -> Result<SessionOutcome, RunError> {
    crate::kernel::sandbox::catch_signals()?;
    let id = session_id();
    let dir = match &request.background {
        Some(background) => background.dir.clone(),
        None => {
            let sessions = request.runtime_dir.join("sessions");
            remove_abandoned_sessions(&sessions);
            sessions.join(&id)
        }
    };
    if dir.exists() {
        crate::files::remove_tree(&dir).map_err(io("remove", &dir))?;
    }
    let result = run_in(request, &id, &dir, before_start);
    if dir.exists() {
        let _ = crate::files::remove_tree(&dir);
    }
    result
}

/// Deletes the scratch folders of sessions whose envkit was killed before it could (a
/// `kill -9`, or a signal before envkit catches signals): their process is gone, or their
/// record was never written and the folder is more than a minute old.
fn remove_abandoned_sessions(sessions: &Path) {
    let Ok(entries) = std::fs::read_dir(sessions) else {
        return;
    };
    for entry in entries.flatten() {
        let folder = entry.path();
        let abandoned = match std::fs::read(folder.join("session.json")) {
            Ok(bytes) => serde_json::from_slice::<SessionRecord>(&bytes)
                .is_ok_and(|record| !record.is_alive()),
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 60),
        };
        if abandoned {
            let _ = crate::files::remove_tree(&folder);
        }
    }
}

fn session_id() -> String {
    let mut bytes = [0u8; 6];
    use rand_core::RngCore;
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The image's `User`, when it names one other than root, looked up in the image.
fn image_user(
    request: &SessionRequest<'_>,
) -> Result<Option<crate::run::image_user::ImageUser>, RunError> {
    let Some(user) = request.image.user.as_deref() else {
        return Ok(None);
    };
    let resolved = crate::run::image_user::resolve(
        user,
        &image_etc(request, "passwd"),
        &image_etc(request, "group"),
    )?;
    Ok((resolved.uid != 0).then_some(resolved))
}

/// The image's `/etc/FILE` as text, empty when it has none.
fn image_etc(request: &SessionRequest<'_>, file: &str) -> String {
    layers::find(&request.layers, &format!("etc/{file}"))
        .and_then(|path| std::fs::read_to_string(path).ok())
        .unwrap_or_default()
}

/// Who the program runs as, by name and home.
struct Identity {
    run_as: RunAs,
    name: String,
    home: String,
    /// The invoking user, whom the session's passwd and group must name (an image's user
    /// and root are in the image's own).
    is_invoker: bool,
}

impl Identity {
    fn of(request: &SessionRequest<'_>) -> Result<Identity, RunError> {
        if let Some(user) = image_user(request)? {
            return Ok(Identity {
                run_as: RunAs::User {
                    uid: user.uid,
                    gid: user.gid,
                },
                name: user.name,
                home: user.home,
                is_invoker: false,
            });
        }
        let run_as = run_as(request);
        Ok(match run_as {
            RunAs::User { .. } => Identity {
                run_as,
                name: request.invoker.name.clone(),
                home: format!("/home/{}", request.invoker.name),
                is_invoker: true,
            },
            _ => Identity {
                run_as,
                name: "root".into(),
                home: "/root".into(),
                is_invoker: false,
            },
        })
    }

    /// The uid and gid of whoever runs the program.
    fn ids(&self) -> (u32, u32) {
        match self.run_as {
            RunAs::User { uid, gid } => (uid, gid),
            _ => (0, 0),
        }
    }
}

/// Who the program runs as.
fn run_as(request: &SessionRequest<'_>) -> RunAs {
    if request.root || request.spec.user == User::Root || request.invoker.is_root() {
        RunAs::Root
    } else {
        RunAs::User {
            uid: request.invoker.uid,
            gid: request.invoker.gid,
        }
    }
}

fn run_in(
    request: &SessionRequest<'_>,
    id: &str,
    dir: &Path,
    before_start: &mut dyn FnMut(i32),
) -> Result<SessionOutcome, RunError> {
    let started = SystemTime::now();
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("root"));
    for folder in [&upper, &work, &merged] {
        std::fs::create_dir_all(folder).map_err(io("create", folder))?;
    }
    let record = SessionRecord {
        id: id.to_string(),
        project: request.spec.origin.dir.clone(),
        env: request.name.to_string(),
        command: request.command.clone(),
        started: started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        pid: std::process::id(),
        pid_start: crate::kernel::process::start_time(std::process::id()).unwrap_or(0),
    };
    let record_path = dir.join("session.json");
    let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
    std::fs::write(&record_path, bytes).map_err(io("write", &record_path))?;

    let identity = Identity::of(request)?;
    let run_as = identity.run_as;
    let shell = shell(request);
    write_identity(request, &upper, &identity, &shell)?;

    let mut binds = Vec::new();
    for mount in &request.spec.mounts {
        if !mount.host_path.exists() {
            return Err(RunError::MissingMountSource {
                source_as_written: mount.source.clone(),
                host_path: mount.host_path.clone(),
            });
        }
        binds.push(Bind {
            source: mount.host_path.clone(),
            target: mount.at.clone(),
            readonly: mount.readonly,
        });
    }
    let owner = identity.ids();
    for volume in &request.spec.volumes {
        let path = volumes::prepare(
            &request.volumes_dir,
            &request.volume_project,
            &format!("{}{}", request.volume_prefix, volume.name),
            &request.layers,
            &volume.at,
            owner,
        )?;
        binds.push(Bind {
            source: path,
            target: volume.at.clone(),
            readonly: false,
        });
    }

    let argv = if request.command.is_empty() {
        vec![shell.clone()]
    } else {
        // As `docker run IMAGE CMD`: the command replaces the image's Cmd and is handed to
        // its Entrypoint.
        let mut argv = request.image.entrypoint.clone();
        argv.extend(request.command.iter().cloned());
        argv
    };
    let mut terminal = if request.terminal {
        Some(Terminal::open()?)
    } else {
        None
    };
    if let Some(terminal) = &terminal
        && let RunAs::User { uid, gid } = run_as
    {
        // The user's terminal is theirs, as after a login (screen and pinentry open it by name).
        terminal.give_to(uid, gid)?;
    }
    // The pty comes from the host's devpts, which the session cannot see: bound at
    // /dev/console, `ttyname` (`tty`, ssh, gpg) finds the shell's terminal there.
    if let Some(replica) = terminal.as_ref().and_then(Terminal::replica_path) {
        binds.push(Bind {
            source: replica,
            target: "/dev/console".into(),
            readonly: false,
        });
    }
    let spec = SandboxSpec {
        root: merged,
        overlay: Some(Overlay {
            lowers: request.layers.iter().rev().cloned().collect(),
            upper,
            work,
        }),
        binds,
        tmpfs: vec!["/tmp".into(), "/run".into()],
        hostname: request.name.to_string(),
        network: match request.spec.network {
            Network::Host if request.background.is_none() => SandboxNetwork::Host,
            _ => SandboxNetwork::None,
        },
        environment: environment(request, &identity.name, &identity.home, &shell),
        workdir: workdir(request, &identity.home),
        argv,
        log: request.background.as_ref().map(|b| b.log.clone()),
        run_as,
        terminal: terminal.as_ref().and_then(Terminal::replica_fd),
        forward_signals: true,
        discard_syncs: false,
        service: request.background.is_some(),
    };
    let exit = match terminal.as_mut() {
        Some(terminal) => {
            let relay = terminal.start()?;
            let exit = crate::kernel::sandbox::run_with(&spec, before_start);
            terminal.finish(relay);
            exit?
        }
        None => crate::kernel::sandbox::run_with(&spec, before_start)?,
    };
    let foreign_files = if run_as == RunAs::Root && !request.invoker.is_root() {
        foreign_files(request, started)
    } else {
        Vec::new()
    };
    Ok(SessionOutcome {
        exit,
        foreign_files,
    })
}

/// `shell` from env.kdl, else bash when the image has it, else sh.
fn shell(request: &SessionRequest<'_>) -> String {
    if let Some(shell) = &request.spec.shell {
        return shell.clone();
    }
    if layers::find(&request.layers, "usr/bin/bash").is_some() {
        "/bin/bash".into()
    } else {
        "/bin/sh".into()
    }
}

/// Where the program starts: `workdir`, else the host folder's place in a mount, else the
/// project mount, else the image's WorkingDir, else home.
fn workdir(request: &SessionRequest<'_>, home: &str) -> String {
    if let Some(workdir) = &request.spec.workdir {
        return workdir.clone();
    }
    if let Some(cwd) = &request.host_cwd {
        for mount in &request.spec.mounts {
            let host = mount
                .host_path
                .canonicalize()
                .unwrap_or_else(|_| mount.host_path.clone());
            if let Ok(rest) = cwd.strip_prefix(&host) {
                let inside = Path::new(&mount.at).join(rest);
                return inside.to_string_lossy().into_owned();
            }
        }
    }
    request
        .spec
        .mounts
        .iter()
        .find(|m| m.source == ".")
        .map(|m| m.at.clone())
        .or_else(|| request.image.workdir.clone())
        .unwrap_or_else(|| home.to_string())
}

/// Only TERM, LANG, the env's `vars` and its `pass` list come from outside.
fn environment(
    request: &SessionRequest<'_>,
    user: &str,
    home: &str,
    shell: &str,
) -> Vec<(String, String)> {
    let host = |name: &str| {
        request
            .host_environment
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut environment: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), home.into()),
        ("USER".into(), user.into()),
        ("LOGNAME".into(), user.into()),
        ("SHELL".into(), shell.into()),
        ("ENVKIT_ENV".into(), request.name.into()),
    ];
    if let Some(term) = host("TERM").or_else(|| request.terminal.then(|| "xterm".into())) {
        environment.push(("TERM".into(), term));
    }
    if let Some(lang) = host("LANG") {
        environment.push(("LANG".into(), lang));
    }
    if !shell.ends_with("bash") {
        // bash builds its prompt (with the host name, the env's name) from its own startup
        // files; other shells take PS1 from here.
        environment.push(("PS1".into(), format!("({}) $ ", request.name)));
    }
    let mut set = |name: &str, value: String| {
        environment.retain(|(k, _)| k != name);
        environment.push((name.to_string(), value));
    };
    for (name, value) in &request.image.env {
        set(name, value.clone());
    }
    for name in &request.spec.pass {
        if let Some(value) = host(name) {
            set(name, value);
        }
    }
    for (name, value) in &request.spec.vars {
        set(name, value.clone());
    }
    environment
}

/// Writes into the session's upper folder what makes the image feel like a machine of its own:
/// `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`, and for the invoking user their
/// `passwd` and `group` entries and a home folder.
fn write_identity(
    request: &SessionRequest<'_>,
    upper: &Path,
    identity: &Identity,
    shell: &str,
) -> Result<(), RunError> {
    let home = identity.home.as_str();
    let (uid, gid) = identity.ids();
    let etc = upper.join("etc");
    make_like_image(request, upper, "etc")?;
    let hostname = request.name;
    let mut hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    for (address, name) in &request.hosts {
        hosts.push_str(&format!("{address}\t{name}\n"));
    }
    let mut files: Vec<(&str, String)> =
        vec![("hostname", format!("{hostname}\n")), ("hosts", hosts)];
    if request.spec.network == Network::Host && request.background.is_none() {
        // The host's resolver answers in the host's network, which the session shares.
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        files.push(("resolv.conf", resolv));
    }
    if identity.is_invoker {
        let name = &identity.name;
        let mut passwd: String = image_etc(request, "passwd")
            .lines()
            .filter(|line| {
                let mut fields = line.split(':');
                let (entry_name, entry_uid) = (fields.next(), fields.nth(1));
                entry_name != Some(name) && entry_uid != Some(&uid.to_string())
            })
            .map(|line| format!("{line}\n"))
            .collect();
        passwd.push_str(&format!("{name}:x:{uid}:{gid}:{name}:{home}:{shell}\n"));
        let mut group = image_etc(request, "group");
        let has_group = group
            .lines()
            .any(|line| line.split(':').nth(2) == Some(&gid.to_string()));
        if !has_group {
            let group_name = if group.lines().any(|l| l.split(':').next() == Some(name)) {
                format!("{name}-{gid}")
            } else {
                name.clone()
            };
            group.push_str(&format!("{group_name}:x:{gid}:\n"));
        }
        files.push(("passwd", passwd));
        files.push(("group", group));
        make_like_image(request, upper, "home")?;
        let home_dir = upper.join(home.trim_start_matches('/'));
        std::fs::create_dir_all(&home_dir).map_err(io("create", &home_dir))?;
        std::os::unix::fs::chown(&home_dir, Some(uid), Some(gid)).map_err(io("give", &home_dir))?;
        std::fs::set_permissions(&home_dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io("set the mode of", &home_dir))?;
    } else if home != "/" && layers::find(&request.layers, home.trim_start_matches('/')).is_none() {
        // Images made by other tools may have no home for root (busybox, distroless), nor
        // for the user they name.
        let home_dir = upper.join(home.trim_start_matches('/'));
        std::fs::create_dir_all(&home_dir).map_err(io("create", &home_dir))?;
        std::os::unix::fs::chown(&home_dir, Some(uid), Some(gid)).map_err(io("give", &home_dir))?;
        std::fs::set_permissions(&home_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("set the mode of", &home_dir))?;
    }
    for (file, content) in files {
        let path = etc.join(file);
        std::fs::write(&path, content).map_err(io("write", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(io("set the mode of", &path))?;
    }
    Ok(())
}

/// Makes `upper/<relative>` a folder with the image's owner and mode for it, so the overlay
/// shows it unchanged.
fn make_like_image(
    request: &SessionRequest<'_>,
    upper: &Path,
    relative: &str,
) -> Result<(), RunError> {
    let path = upper.join(relative);
    std::fs::create_dir_all(&path).map_err(io("create", &path))?;
    let (uid, gid, mode) = layers::find(&request.layers, relative)
        .and_then(|p| p.metadata().ok())
        .map_or((0, 0, 0o755), |m| (m.uid(), m.gid(), m.mode() & 0o7777));
    std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(io("give", &path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .map_err(io("set the mode of", &path))?;
    Ok(())
}

/// Files root created in writable mounts during the session, which on the host belong to the
/// user's subordinate root rather than to the user.
fn foreign_files(request: &SessionRequest<'_>, since: SystemTime) -> Vec<(String, usize)> {
    let since = since.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let invoker = request.invoker.uid;
    let mut found = Vec::new();
    for mount in request.spec.mounts.iter().filter(|m| !m.readonly) {
        let count = walkdir::WalkDir::new(&mount.host_path)
            .into_iter()
            .take(200_000)
            .flatten()
            .filter_map(|e| e.path().symlink_metadata().ok())
            .filter(|m| m.uid() != invoker && m.ctime() >= since)
            .count();
        if count > 0 {
            found.push((mount.at.clone(), count));
        }
    }
    found
}
