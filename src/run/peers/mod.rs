//! Peers: a project's other environments (a database, a cache), each running its `service` in
//! the background, each in a network namespace of its own, reached by name.
//!
//! Every peer of every project owns one loopback address on the host (`127.U.x.y`, U from the
//! user's uid, recorded in `<runtime>/addresses.json`), so two peers may listen on the same port and two projects
//! never collide. A supervisor process per peer (envkit itself, detached) holds listening
//! sockets on that address in the host's network namespace and forwards each connection into
//! the peer's namespace, to `127.0.0.1:PORT` there (see [`forward`]). Every environment of the
//! project gets `/etc/hosts` lines naming each peer's address: the main environment shares the
//! host's network and connects to it directly; inside a peer, the supervisor listens on the
//! other peers' addresses in the peer's own namespace and forwards them out.
//!
//! A peer's state lives in `<runtime>/peers/<project>/<peer>/`: `state.json` (written by the
//! supervisor), `log` (its output, capped), and the session's scratch folder.

pub mod forward;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The most a peer's log keeps: past it, the older half moves to `log.1`.
pub const LOG_CAP_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot {what} `{}`", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no free loopback address is left for peers")]
    NoAddress,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PeerError + use<> {
    let path = path.to_path_buf();
    move |source| PeerError::Io { what, path, source }
}

/// The folder of one project's peers.
pub fn project_dir(runtime_dir: &Path, project: &Path) -> PathBuf {
    let key = super::volumes::project_folder(Path::new("/"), project);
    runtime_dir
        .join("peers")
        .join(key.file_name().unwrap_or_default())
}

/// The folder of one peer.
pub fn peer_dir(runtime_dir: &Path, project: &Path, peer: &str) -> PathBuf {
    project_dir(runtime_dir, project).join(peer)
}

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
        if !process_alive(self.supervisor, self.supervisor_start) {
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
            .map_err(io("write", &path))
    }
}

/// Seconds since 1970.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A process's start time in clock ticks after boot (field 22 of `/proc/PID/stat`).
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is still the process that started at `start` (and not a zombie).
pub fn process_alive(pid: u32, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let zombie = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X");
    !zombie && process_start(pid) == Some(start)
}

/// The loopback address of `peer` in `project`, the same every time: chosen once, recorded in
/// `<runtime>/addresses.json` under a lock. A new address is one where none of `ports` is taken
/// (by another program, or by another runtime dir's peers).
pub fn address(
    runtime_dir: &Path,
    project: &Path,
    peer: &str,
    ports: &[u16],
) -> Result<String, PeerError> {
    let _held = hold_lock(&runtime_dir.join("addresses.lock"))?;
    let path = runtime_dir.join("addresses.json");
    let mut table: BTreeMap<String, String> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let key = format!("{}#{peer}", project.display());
    if let Some(address) = table.get(&key) {
        return Ok(address.clone());
    }
    let taken: std::collections::HashSet<&String> = table.values().collect();
    let address = user_addresses(crate::userns::invoker().uid)
        .find(|a| !taken.contains(a) && ports_are_free(a, ports))
        .ok_or(PeerError::NoAddress)?;
    table.insert(key, address.clone());
    let bytes = serde_json::to_vec_pretty(&table).unwrap_or_default();
    crate::fetch::write_bytes_atomically(&path, &bytes)
        .map_err(|e| std::io::Error::other(e.to_string()))
        .map_err(io("write", &path))?;
    Ok(address)
}

/// An exclusive lock on the file at `path` (made, with its folder, when missing), held until
/// the file is dropped; waits for another holder.
pub fn hold_lock(path: &Path) -> Result<std::fs::File, PeerError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io("open", path))?;
    file.lock().map_err(io("lock", path))?;
    Ok(file)
}

/// How many loopback addresses each user's peers may take.
const ADDRESSES_PER_USER: u32 = 512;

/// The loopback addresses a user's peers take from, in order: each user has a runtime dir
/// (and address table) of their own, so users get ranges of their own, apart on the one
/// loopback network: 127.64.0.0 to 127.191.255.255, 512 addresses for each of 16,384 uids
/// (uids that far apart share a range, and then `ports_are_free` keeps them apart).
pub fn user_addresses(uid: u32) -> impl Iterator<Item = String> {
    let first = (uid % 16_384) * ADDRESSES_PER_USER;
    (first..first + ADDRESSES_PER_USER)
        .map(|index| std::net::Ipv4Addr::from((127 << 24) | ((64 << 16) + index)))
        .filter(|ip| !matches!(ip.octets()[3], 0 | 255))
        .map(|ip| ip.to_string())
}

/// Whether nothing listens on any of `ports` at `address` (a port that may not be bound for
/// another reason, such as a privileged one, does not count as taken).
fn ports_are_free(address: &str, ports: &[u16]) -> bool {
    ports.iter().all(|port| {
        !matches!(
            std::net::TcpListener::bind((address, *port)),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse
        )
    })
}

/// The last `lines` lines of a log, for an error that says why a peer did not start.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let Ok(mut file) = std::fs::File::open(log) else {
        return String::new();
    };
    let length = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(16 * 1024)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where a log's older part goes when it is rotated: `log.1` beside it.
fn older_log(log: &Path) -> PathBuf {
    let mut older = log.as_os_str().to_owned();
    older.push(".1");
    PathBuf::from(older)
}

/// Copies a peer's output from `output` into its log until end of file, keeping the log under
/// [`LOG_CAP_BYTES`]: past it, the log is renamed `log.1` (replacing the older one) and a new
/// log begins. This is the log's only writer, so a rotation loses and repeats nothing, and a
/// reader that saw the log shrink finds the rest of what it read in `log.1`.
pub fn copy_to_log(mut output: impl Read, log: &Path) -> std::io::Result<()> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
    };
    let older = older_log(log);
    let mut file = open()?;
    let mut written = file.metadata()?.len();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match output.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if written > 0 && written + read as u64 > LOG_CAP_BYTES {
            std::fs::rename(log, &older)?;
            file = open()?;
            written = 0;
        }
        std::io::Write::write_all(&mut file, &buffer[..read])?;
        written += read as u64;
    }
}

/// Reads a peer's log as it grows, across rotations by [`copy_to_log`]: what `env logs`
/// prints, and `env logs -f` again and again.
#[derive(Debug, Default)]
pub struct LogFollower {
    position: u64,
    /// The log file read last (device, inode): another one means the log was rotated.
    file: Option<(u64, u64)>,
    /// The start of a line not finished yet.
    unfinished: Vec<u8>,
}

impl LogFollower {
    /// What `log` gained since the last call: whole lines only when `whole_lines` (a line
    /// being written waits for the next call, so it is never split or garbled), else all.
    pub fn read_new(&mut self, log: &Path, whole_lines: bool) -> Vec<u8> {
        use std::os::unix::fs::MetadataExt;
        let identity = |metadata: &std::fs::Metadata| (metadata.dev(), metadata.ino());
        if let Ok(mut file) = std::fs::File::open(log)
            && let Ok(metadata) = file.metadata()
        {
            let rotated = self.file.is_some_and(|seen| seen != identity(&metadata));
            if rotated {
                // The part of the older file not read yet comes first.
                if let Ok(mut older) = std::fs::File::open(older_log(log))
                    && older
                        .metadata()
                        .is_ok_and(|m| Some(identity(&m)) == self.file)
                {
                    let _ = older.seek(SeekFrom::Start(self.position));
                    let _ = older.read_to_end(&mut self.unfinished);
                }
            }
            if rotated || metadata.len() < self.position {
                self.position = 0;
            }
            self.file = Some(identity(&metadata));
            let _ = file.seek(SeekFrom::Start(self.position));
            let before = self.unfinished.len();
            let _ = file.read_to_end(&mut self.unfinished);
            self.position += (self.unfinished.len() - before) as u64;
        }
        let complete = if whole_lines {
            self.unfinished
                .iter()
                .rposition(|byte| *byte == b'\n')
                .map_or(0, |i| i + 1)
        } else {
            self.unfinished.len()
        };
        self.unfinished.drain(..complete).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_of_each_project_keeps_its_own_address() {
        let runtime = tempfile::tempdir().unwrap();
        let a = address(runtime.path(), Path::new("/p/one"), "db", &[5432]).unwrap();
        let b = address(runtime.path(), Path::new("/p/one"), "cache", &[]).unwrap();
        let c = address(runtime.path(), Path::new("/p/two"), "db", &[5432]).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
        assert_eq!(
            address(runtime.path(), Path::new("/p/one"), "db", &[5432]).unwrap(),
            a
        );
        assert!(a.starts_with("127."), "{a}");
        let parsed: std::net::Ipv4Addr = a.parse().unwrap();
        assert!(parsed.is_loopback());
    }

    #[test]
    fn users_take_addresses_from_ranges_of_their_own() {
        let root: Vec<String> = user_addresses(0).collect();
        assert_eq!(root.first().map(String::as_str), Some("127.64.0.1"));
        assert!(root.len() >= 500);
        let (one, other): (Vec<String>, Vec<String>) = (
            user_addresses(1000).collect(),
            user_addresses(1128).collect(),
        );
        assert!(
            one.iter().all(|a| !other.contains(a)),
            "uids 1000 and 1128 apart"
        );
        for uid in [0, 1000, 16_383, 65_534] {
            for address in user_addresses(uid) {
                let ip: std::net::Ipv4Addr = address.parse().unwrap();
                assert!(
                    ip.is_loopback() && (64..192).contains(&ip.octets()[1]),
                    "{ip}"
                );
            }
        }
    }

    #[test]
    fn a_new_address_skips_one_whose_port_is_taken() {
        let elsewhere = tempfile::tempdir().unwrap();
        let first = address(elsewhere.path(), Path::new("/p"), "web", &[]).unwrap();
        let busy = std::net::TcpListener::bind((first.as_str(), 0)).unwrap();
        let port = busy.local_addr().unwrap().port();
        let runtime = tempfile::tempdir().unwrap();
        let chosen = address(runtime.path(), Path::new("/p"), "web", &[port]).unwrap();
        assert_ne!(chosen, first, "{first}:{port} is taken");
        let unhindered = address(runtime.path(), Path::new("/q"), "web", &[]).unwrap();
        assert_eq!(unhindered, first);
    }

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
            supervisor_start: process_start(me).unwrap(),
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

    #[test]
    fn following_a_log_across_a_rotation_misses_and_repeats_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut follower = LogFollower::default();
        copy_to_log(&b"one\ntwo\npar"[..], &log).unwrap();
        assert_eq!(follower.read_new(&log, true), b"one\ntwo\n");
        // Enough more to rotate the log once before the follower looks again.
        let more: String = std::iter::once("tial\n".to_string())
            .chain((0..100_000).map(|n| format!("line {n}\n")))
            .collect();
        copy_to_log(more.as_bytes(), &log).unwrap();
        assert!(dir.path().join("log.1").exists(), "rotated");
        let followed = follower.read_new(&log, true);
        assert_eq!(String::from_utf8(followed).unwrap(), format!("par{more}"));
        assert!(follower.read_new(&log, true).is_empty());
    }

    #[test]
    fn logs_are_capped_and_nothing_is_lost_at_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let lines: String = (0..150_000).map(|n| format!("line {n}\n")).collect();
        assert!(lines.len() as u64 > LOG_CAP_BYTES);
        copy_to_log(lines.as_bytes(), &log).unwrap();
        let newer = std::fs::read_to_string(&log).unwrap();
        let older = std::fs::read_to_string(dir.path().join("log.1")).unwrap();
        assert!(older.len() as u64 <= LOG_CAP_BYTES && newer.len() as u64 <= LOG_CAP_BYTES);
        assert!(
            lines.ends_with(&format!("{older}{newer}")),
            "the newest output, whole"
        );
        assert_eq!(log_tail(&log, 2), "line 149998\nline 149999");
    }
}
