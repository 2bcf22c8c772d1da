//! Peers through the built binary (root, network tier): Debian's real PostgreSQL as the peer
//! of an app environment, its rows surviving `env down` and `env up` and going with
//! `env down --volumes --yes`, `env ps` telling the truth after SIGKILL; and two peers on the
//! same port in each of two projects at once, linked into a private session network and into
//! each other. Each scenario runs as root and as an unprivileged user with subordinate ids.
//!
//! Root's images go to the store the session tests share; root's peer tests share one runtime
//! dir, as one user's projects do. Every project is taken down when its test ends, passed or
//! failed, since peers outlive the commands that start them.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{Outcome, env_binary, repo_root, run};
use crate::rootless::{TestUser, UserFolders, WITH_RANGE, can_test, ensure_user};
use crate::run::{can_enter, shared_cache, shared_image, shared_store};

/// The app of the PostgreSQL scenario: a client and a driver, with `db` as its peer.
const APP_ENV: &str = "name \"app\"\nbase \"debian:bookworm\"\n\
    packages \"postgresql-client\" \"python3-psycopg2\"\npeer \"db\" file=\"postgres.kdl\"\n";

/// Two peers answering on the same port, each serving a folder of the project; the second is
/// ready only when it reaches the first by name. The session's network is private: it reaches
/// the peers through the links envkit makes into it.
const TWO_PEERS_ENV: &str = r#"name "web"
base "debian:bookworm"
packages "python3"
network "private"
peer "one" {
    base "debian:bookworm"
    packages "python3"
    mount "one" at="/srv"
    service "python3 -m http.server 8000 --bind 127.0.0.1 --directory /srv"
    port 8000
    ready tcp=8000
}
peer "two" {
    base "debian:bookworm"
    packages "python3"
    mount "two" at="/srv"
    service "python3 -m http.server 8000 --bind 127.0.0.1 --directory /srv"
    port 8000
    ready cmd="python3 -c \"import urllib.request as r; r.urlopen('http://one:8000/index.html', timeout=2)\"" timeout=60
}
"#;

/// Prints each page of both peers, one line each.
const FETCH_BOTH: &str = "import urllib.request as r\n\
    for peer in ('one', 'two'):\n    \
    print(r.urlopen(f'http://{peer}:8000/index.html', timeout=10).read().decode().strip())\n";

/// Held by the tests of peers run as the unprivileged test user: each has a runtime dir of
/// its own, and two of them choosing addresses from the user's one range at the same time
/// could choose the same.
pub static ROOTLESS_PEERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How a scenario runs `env`: as root or as the test user, in a given project folder.
pub type EnvCommand<'a> = dyn Fn(&Path, &[&str]) -> Command + 'a;

/// A project whose peers are taken down (with their volumes) when it goes out of scope.
pub struct Project<'a> {
    pub dir: PathBuf,
    pub command: &'a EnvCommand<'a>,
    pub runtime: PathBuf,
}

impl Project<'_> {
    pub fn env(&self, args: &[&str]) -> Outcome {
        run(&mut (self.command)(&self.dir, args))
    }

    pub fn env_ok(&self, args: &[&str]) -> Outcome {
        let outcome = self.env(args);
        assert_eq!(outcome.code, Some(0), "{args:?}\n{}", outcome.transcript());
        outcome
    }

    /// `env ps --json`'s entries for peers, by name.
    pub fn peers(&self) -> serde_json::Map<String, serde_json::Value> {
        let listed = self.env_ok(&["ps", "--json"]);
        let entries: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", listed.stdout));
        entries
            .into_iter()
            .filter(|e| e["kind"] == "peer")
            .map(|e| (e["name"].as_str().unwrap().to_string(), e))
            .collect()
    }

    /// Polls `env ps --json` until `peer` shows `state`, or fails after 30 s.
    fn wait_for_state(&self, peer: &str, state: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let entry = self.peers().get(peer).cloned().unwrap_or_default();
            if entry["state"] == state {
                return entry;
            }
            assert!(
                Instant::now() < deadline,
                "{peer} never showed as {state}: {entry}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the peer's supervisor recorded.
    pub fn state_of(&self, peer: &str) -> serde_json::Value {
        let peers = self.runtime.join("peers");
        let project = self.dir.canonicalize().unwrap();
        for entry in std::fs::read_dir(&peers).unwrap() {
            let path = entry.unwrap().path().join(peer).join("state.json");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let state: serde_json::Value = serde_json::from_str(&text).unwrap();
            if state["project"].as_str() == project.to_str() {
                return state;
            }
        }
        panic!("no state for {peer} of {}", project.display());
    }
}

impl Drop for Project<'_> {
    fn drop(&mut self) {
        let _ = self.env(&["down", "--volumes", "--yes"]);
    }
}

/// The processes whose parent is `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let after_name = &stat[stat.rfind(')').unwrap() + 1..];
        let parent: Option<u32> = after_name
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok());
        if parent == Some(pid) {
            found.push(child);
        }
    }
    found
}

/// The init of the peer's sandbox: the supervisor's child in a pid namespace of its own (a
/// readiness probe may be another child, for a moment).
fn sandbox_init(supervisor: u32) -> u32 {
    let pid_namespace = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let own = pid_namespace(supervisor);
    let inits: Vec<u32> = children(supervisor)
        .into_iter()
        .filter(|child| pid_namespace(*child).is_some_and(|ns| Some(ns) != own))
        .collect();
    assert_eq!(inits.len(), 1, "the supervisor runs one sandbox: {inits:?}");
    inits[0]
}

fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// A project folder with the app's env.kdl and `envs/postgres.kdl` beside it.
fn postgres_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("env.kdl"), APP_ENV).unwrap();
    std::fs::copy(
        repo_root().join("envs/postgres.kdl"),
        dir.path().join("postgres.kdl"),
    )
    .unwrap();
    dir
}

/// The lock texts of the PostgreSQL scenario (the app's, the peer's), made by root once; the
/// peer's image is built into the shared store, so its `.deb`s are in the shared cache.
pub fn postgres_locks() -> &'static (String, String) {
    static LOCKS: OnceLock<(String, String)> = OnceLock::new();
    LOCKS.get_or_init(|| {
        let project = postgres_project();
        let state = tempfile::tempdir().unwrap();
        let command = root_command(state.path());
        for args in [&["build"][..], &["build", "-f", "postgres.kdl"][..]] {
            let outcome = run(&mut command(project.path(), args));
            assert_eq!(outcome.code, Some(0), "{args:?}: {}", outcome.transcript());
        }
        let read = |name: &str| std::fs::read_to_string(project.path().join(name)).unwrap();
        (read("env.lock"), read("postgres.lock"))
    })
}

/// The runtime dir every root peer test shares, as one user's projects do.
pub fn root_runtime() -> PathBuf {
    static RUNTIME: OnceLock<tempfile::TempDir> = OnceLock::new();
    RUNTIME
        .get_or_init(|| tempfile::tempdir().unwrap())
        .path()
        .to_path_buf()
}

/// Root's `env`: the shared cache and store, data under `state`, the shared runtime dir.
pub fn root_command(state: &Path) -> impl Fn(&Path, &[&str]) -> Command + use<> {
    let data = state.join("data");
    move |dir: &Path, args: &[&str]| {
        let mut command = Command::new(env_binary());
        command
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .env("HOME", dir)
            .env("ENVKIT_CACHE_DIR", shared_cache())
            .env("ENVKIT_STORE_DIR", shared_store())
            .env("ENVKIT_DATA_DIR", &data)
            .env("ENVKIT_RUNTIME_DIR", root_runtime());
        command
    }
}

/// A project folder with `env` as its env.kdl and the shared python3 image's lock under each
/// of `locks` (the project's and its inline peers').
fn project_on_the_shared_image(env: &str, locks: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("env.kdl"), env).unwrap();
    for name in locks {
        std::fs::write(dir.path().join(name), &shared_image().lock).unwrap();
    }
    dir
}

/// Connects to PostgreSQL at `address`:5432 as `uid` and sends an SSL request: `answered` when
/// the server replied, `closed` when the connection was ended first.
pub fn postgres_answer_as(uid: u32, address: &str) -> String {
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('{address}', 5432), timeout=10)\n\
         try:\n    s.sendall(bytes.fromhex('0000000804d2162f'))\n    \
         print('answered' if s.recv(1) else 'closed')\n\
         except OSError:\n    print('closed')\n"
    );
    let output = Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
            "/usr/bin/python3".into(),
            "-c".into(),
            script,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The app writes rows into PostgreSQL through `db`; they survive `env down` and `env up` and
/// a SIGKILL; `env ps` tells the truth after each kill; `--volumes --yes` takes them away.
fn postgres_scenario(project: &Project<'_>) {
    let up = project.env_ok(&["up"]);
    assert!(up.stderr.contains("db is ready"), "{}", up.stderr);

    let write = "import psycopg2\n\
        connection = psycopg2.connect(host='db', user='postgres', dbname='postgres')\n\
        with connection, connection.cursor() as cursor:\n    \
        cursor.execute('create table notes (body text)')\n    \
        cursor.executemany('insert into notes values (%s)', [('a',), ('b',), ('c',)])\n    \
        cursor.execute('select count(*) from notes')\n    \
        print(cursor.fetchone()[0])\n";
    let written = project.env_ok(&["run", "--", "python3", "-c", write]);
    assert_eq!(written.stdout, "3\n", "{}", written.transcript());
    let count = || {
        project.env(&[
            "run",
            "--",
            "psql",
            "-h",
            "db",
            "-U",
            "postgres",
            "-tAc",
            "select count(*) from notes",
        ])
    };

    let peers = project.peers();
    let db = &peers["db"];
    assert_eq!(db["state"], "running", "{db}");
    assert_eq!(db["ports"], serde_json::json!([5432]), "{db}");
    assert_eq!(db["restarts"], 0, "{db}");

    // The host side of the port: another local user's connection is closed at once, while
    // the owner's (the project folder's) reaches PostgreSQL, which answers an SSL request
    // with one byte.
    let address = db["address"].as_str().unwrap();
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&project.dir).unwrap());
    assert_eq!(postgres_answer_as(owner, address), "answered", "the owner");
    assert_eq!(postgres_answer_as(65533, address), "closed", "another user");
    let address = db["address"].as_str().unwrap().to_string();
    let parsed: std::net::Ipv4Addr = address.parse().unwrap();
    assert!(parsed.is_loopback(), "{address}");
    let resolved = project.env_ok(&["run", "--", "getent", "hosts", "db"]);
    assert!(
        resolved.stdout.starts_with(&format!("{address} ")),
        "{}",
        resolved.stdout
    );
    let logs = project.env_ok(&["logs", "db"]);
    assert!(
        logs.stdout
            .contains("database system is ready to accept connections"),
        "{}",
        logs.stdout
    );

    // Down keeps the data; the next up finds it.
    let down = project.env_ok(&["down"]);
    assert!(down.stderr.contains("stopped db"), "{}", down.stderr);
    assert!(project.peers().is_empty(), "nothing runs after env down");
    assert!(
        TcpStream::connect((address.as_str(), 5432)).is_err(),
        "the address no longer answers"
    );
    project.env_ok(&["up"]);
    let after_restart = count();
    assert_eq!(
        after_restart.stdout,
        "3\n",
        "{}",
        after_restart.transcript()
    );

    // The server killed with SIGKILL: exited with 128+9, never running; up starts it again.
    let supervisor = project.state_of("db")["supervisor"].as_u64().unwrap() as u32;
    let service = children(sandbox_init(supervisor));
    assert_eq!(service.len(), 1, "the init runs the service: {service:?}");
    kill9(service[0]);
    let killed = project.wait_for_state("db", "exited");
    assert_eq!(killed["status"], 137, "{killed}");
    assert_eq!(killed["uptime_secs"], serde_json::Value::Null, "{killed}");
    project.env_ok(&["up"]);
    let db = project.wait_for_state("db", "running");
    assert_eq!(db["restarts"], 1, "{db}");
    assert_eq!(db["address"], address.as_str(), "the same address again");
    let after_kill = count();
    assert_eq!(after_kill.stdout, "3\n", "{}", after_kill.transcript());

    // The supervisor killed with SIGKILL: the peer goes with it, and shows as exited.
    let supervisor = project.state_of("db")["supervisor"].as_u64().unwrap() as u32;
    let init = sandbox_init(supervisor);
    kill9(supervisor);
    let gone = project.wait_for_state("db", "exited");
    assert_eq!(gone["status"], serde_json::Value::Null, "{gone}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{init}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the sandbox outlived its supervisor"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        TcpStream::connect((address.as_str(), 5432)).is_err(),
        "nothing answers for a dead peer"
    );

    // Deleting data asks first; a script confirms with --yes.
    let unconfirmed = project.env(&["down", "--volumes"]);
    assert_eq!(unconfirmed.code, Some(2), "{}", unconfirmed.transcript());
    assert!(
        unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    let volumes = project.env_ok(&["volume", "ls", "--json"]);
    assert!(volumes.stdout.contains("db.pgdata"), "{}", volumes.stdout);
    let deleted = project.env_ok(&["down", "--volumes", "--yes"]);
    assert!(
        deleted.stderr.contains("deleted volume db.pgdata"),
        "{}",
        deleted.stderr
    );
    let volumes = project.env_ok(&["volume", "ls", "--json"]);
    assert!(!volumes.stdout.contains("db.pgdata"), "{}", volumes.stdout);
    let fresh = count();
    assert_ne!(fresh.code, Some(0), "{}", fresh.transcript());
    assert!(
        fresh.stderr.contains("relation \"notes\" does not exist"),
        "{}",
        fresh.stderr
    );
    project.env_ok(&["down"]);
}

/// Writes a two-peer project labelled `label` into `dir`.
fn two_peer_project(dir: &Path, label: &str, lock: &str) {
    std::fs::create_dir_all(dir.join("one")).unwrap();
    std::fs::create_dir_all(dir.join("two")).unwrap();
    std::fs::write(dir.join("env.kdl"), TWO_PEERS_ENV).unwrap();
    for name in ["env.lock", "env.one.lock", "env.two.lock"] {
        std::fs::write(dir.join(name), lock).unwrap();
    }
    for peer in ["one", "two"] {
        std::fs::write(
            dir.join(peer).join("index.html"),
            format!("{peer} of {label}\n"),
        )
        .unwrap();
    }
}

/// Two projects, each with two peers on port 8000, up at once: every name answers with its
/// own project's peer, four addresses, and one project's `env down` leaves the other running.
fn two_peers_scenario(first: &Project<'_>, second: &Project<'_>) {
    // Two commands bringing up the same project at once take turns: both succeed.
    let racing = (first.command)(&first.dir, &["up"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let up = first.env_ok(&["up"]);
    let raced = racing.wait_with_output().unwrap();
    let raced_stderr = String::from_utf8_lossy(&raced.stderr);
    assert!(raced.status.success(), "{raced_stderr}");
    assert!(
        format!("{}{raced_stderr}", up.stderr).contains("two is ready"),
        "{}{raced_stderr}",
        up.stderr
    );
    let up = second.env_ok(&["up"]);
    assert!(up.stderr.contains("two is ready"), "{}", up.stderr);
    let label = |project: &Project<'_>| {
        project
            .dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    for project in [first, second] {
        let fetched = project.env_ok(&["run", "--", "python3", "-c", FETCH_BOTH]);
        let label = label(project);
        assert_eq!(
            fetched.stdout,
            format!("one of {label}\ntwo of {label}\n"),
            "{}",
            fetched.transcript()
        );
    }
    let mut addresses: Vec<String> = [first, second]
        .iter()
        .flat_map(|project| {
            let peers = project.peers();
            assert_eq!(peers.len(), 2, "{peers:?}");
            peers
                .values()
                .map(|p| {
                    assert_eq!(p["state"], "running", "{p}");
                    assert_eq!(p["ports"], serde_json::json!([8000]), "{p}");
                    p["address"].as_str().unwrap().to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 4, "{addresses:?}");

    // The session's network is its own: the host's loopback services are not in it.
    let host_only = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host_only.local_addr().unwrap().port().to_string();
    let probe = format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    \
         print('reached')\nexcept OSError:\n    print('private')\n"
    );
    let private = first.env_ok(&["run", "--", "python3", "-c", &probe]);
    assert_eq!(private.stdout, "private\n", "{}", private.transcript());

    first.env_ok(&["down"]);
    assert!(first.peers().is_empty());
    let still = second.env_ok(&["run", "--", "python3", "-c", FETCH_BOTH]);
    let label = label(second);
    assert_eq!(still.stdout, format!("one of {label}\ntwo of {label}\n"));
    second.env_ok(&["down"]);
}

#[test]
fn postgres_as_a_peer_keeps_its_rows_and_ps_tells_the_truth() {
    if !can_enter("PostgreSQL as a peer") {
        return;
    }
    postgres_locks();
    let state = tempfile::tempdir().unwrap();
    let command = root_command(state.path());
    let dir = postgres_project();
    let project = Project {
        dir: dir.path().to_path_buf(),
        command: &command,
        runtime: root_runtime(),
    };
    postgres_scenario(&project);
}

#[test]
fn two_peers_on_one_port_in_two_projects_at_once() {
    if !can_enter("two peers on one port") {
        return;
    }
    let lock = &shared_image().lock;
    let state = tempfile::tempdir().unwrap();
    let command = root_command(state.path());
    let projects = tempfile::tempdir().unwrap();
    let [first, second] = ["alpha", "beta"].map(|label| {
        let dir = projects.path().join(label);
        two_peer_project(&dir, label, lock);
        Project {
            dir,
            command: &command,
            runtime: root_runtime(),
        }
    });
    two_peers_scenario(&first, &second);
}

#[test]
fn an_unprivileged_user_runs_the_same_peers() {
    if !can_test("peers of an unprivileged user") {
        return;
    }
    let (app_lock, postgres_lock) = postgres_locks();
    let python_lock = &shared_image().lock;
    let _alone = ROOTLESS_PEERS.lock();
    let user: TestUser = ensure_user(WITH_RANGE, true);
    let folders = UserFolders::new(&user, APP_ENV, app_lock);
    folders.add_debs(&user, postgres_lock);
    folders.add_debs(&user, python_lock);
    let postgres = std::fs::read_to_string(repo_root().join("envs/postgres.kdl")).unwrap();
    folders.add_file(&user, "postgres.kdl", &postgres);
    folders.add_file(&user, "postgres.lock", postgres_lock);
    let command = |dir: &Path, args: &[&str]| {
        let mut command = folders.command_as(&user, args);
        command.current_dir(dir);
        command
    };
    let project = Project {
        dir: folders.project(),
        command: &command,
        runtime: folders.runtime(),
    };
    postgres_scenario(&project);
    drop(project);

    let projects = folders.project().join("more");
    let [first, second] = ["alpha", "beta"].map(|label| {
        let dir = projects.join(label);
        two_peer_project(&dir, label, python_lock);
        Project {
            dir,
            command: &command,
            runtime: folders.runtime(),
        }
    });
    for entry in walkdir::WalkDir::new(&projects) {
        let entry = entry.unwrap();
        std::os::unix::fs::lchown(entry.path(), Some(user.uid), Some(user.gid)).unwrap();
    }
    two_peers_scenario(&first, &second);
    // The user's peers took addresses of their own, apart from root's.
    let addresses = std::fs::read_to_string(folders.runtime().join("addresses.json")).unwrap();
    let table: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&addresses).unwrap();
    let theirs: Vec<String> = envkit::run::peers::address::user_addresses(user.uid).collect();
    let roots: Vec<String> = envkit::run::peers::address::user_addresses(0).collect();
    assert!(
        table
            .values()
            .all(|a| theirs.contains(a) && !roots.contains(a)),
        "{addresses}"
    );
}

/// A peer that never answers: `env up` gives up after its timeout, showing the last lines of
/// its output; `env logs -f` follows that output; `env down --volumes` asks on a terminal;
/// `env ps` lists an open session too.
#[test]
fn a_peer_that_never_gets_ready_is_reported_and_sessions_are_listed() {
    if !can_enter("a peer that never gets ready") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let command = root_command(state.path());
    let dir = project_on_the_shared_image(
        r#"name "slow"
base "debian:bookworm"
packages "python3"
peer "mute" {
    base "debian:bookworm"
    packages "python3"
    service "echo warming-up; echo still-warming; true && sh -c 'trap \"echo stopping-gently > /data/stopped; exit 0\" TERM; while :; do sleep 0.1; done'"
    volume "data" at="/data"
    port 9000
    ready tcp=9000 timeout=3
}
"#,
        &["env.lock", "env.mute.lock"],
    );
    let project = Project {
        dir: dir.path().to_path_buf(),
        command: &command,
        runtime: root_runtime(),
    };
    let started = Instant::now();
    let up = project.env(&["up"]);
    assert_eq!(up.code, Some(2), "{}", up.transcript());
    assert!(
        up.stderr
            .contains("peer `mute` did not become ready within 3 s"),
        "{}",
        up.stderr
    );
    assert!(
        up.stderr.contains("warming-up\nstill-warming"),
        "the last lines of its output: {}",
        up.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(60), "it gave up");

    // `env logs -f` prints what is there and keeps following.
    let mut follow = command(&project.dir, &["logs", "-f", "mute"]);
    let mut follower = follow.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(follower.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert_eq!(first, "warming-up\n");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        follower.try_wait().unwrap().is_none(),
        "env logs -f keeps following"
    );
    follower.kill().unwrap();
    follower.wait().unwrap();
    let starting = project.peers();
    assert_eq!(starting["mute"]["state"], "starting", "{starting:?}");

    // On a terminal, deleting volumes asks first; "no" deletes and stops nothing.
    let mut asked = command(&project.dir, &["down", "--volumes"]);
    asked.env("TERM", "dumb");
    let mut terminal = rexpect::session::spawn_command(asked, Some(30_000)).unwrap();
    terminal
        .exp_string("Delete the volumes mute.data?")
        .unwrap();
    terminal.send_line("n").unwrap();
    terminal.exp_string("nothing deleted").unwrap();
    terminal.exp_eof().unwrap();
    assert_eq!(project.peers()["mute"]["state"], "starting");
    let volumes = project.env_ok(&["volume", "ls", "--json"]);
    assert!(volumes.stdout.contains("mute.data"), "{}", volumes.stdout);

    // `env down` stops a service gently even when a shell line started it: the process the
    // shell started got the SIGTERM too, and its trap wrote into the volume.
    let down = project.env_ok(&["down"]);
    assert!(down.stderr.contains("stopped mute"), "{}", down.stderr);
    let stopped: Vec<String> = walkdir::WalkDir::new(state.path())
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.ends_with("mute.data/stopped"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(stopped, ["stopping-gently\n"]);
    let deleted = project.env_ok(&["down", "--volumes", "--yes"]);
    assert!(
        deleted.stderr.contains("deleted volume mute.data"),
        "{}",
        deleted.stderr
    );

    // A peer removed from the env file while it runs is still listed, and `env down` stops it.
    assert_eq!(project.env(&["up"]).code, Some(2));
    std::fs::write(
        dir.path().join("env.kdl"),
        "name \"slow\"\nbase \"debian:bookworm\"\npackages \"python3\"\n",
    )
    .unwrap();
    let removed = project.peers();
    assert_eq!(removed["mute"]["in_env_file"], false, "{removed:?}");
    assert_eq!(removed["mute"]["state"], "starting", "{removed:?}");
    let down = project.env_ok(&["down"]);
    assert!(
        down.stderr
            .contains("stopped mute (no longer in the env file)"),
        "{}",
        down.stderr
    );
    assert!(project.peers().is_empty());

    // An open session shows in `env ps` with its command, and is gone once it ends (without
    // the peer, which `env run` would wait for).
    let mut session = command(&project.dir, &["run", "--", "sleep", "30"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let listed = project.env_ok(&["ps", "--json"]);
        let entries: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).unwrap();
        if let Some(entry) = entries.into_iter().find(|e| e["kind"] == "session") {
            break entry;
        }
        assert!(Instant::now() < deadline, "the session never showed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(listed["command"], serde_json::json!(["sleep", "30"]));
    assert!(listed["name"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(listed["started"].as_u64().is_some_and(|t| t > 0));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(session.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    session.wait().unwrap();
    let after = project.env_ok(&["ps", "--json"]);
    assert!(!after.stdout.contains("\"session\""), "{}", after.stdout);
}

/// An inline peer shares its env file with the project, and here its lock's bytes too: the
/// project's `env run` after `env up` still gets its own image (with its setup step), never
/// the peer's, and the peer runs its own (without it).
#[test]
fn an_inline_peer_never_takes_the_projects_image() {
    if !can_enter("an inline peer beside its project") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    let command = root_command(state.path());
    let dir = project_on_the_shared_image(
        r#"name "twin"
base "debian:bookworm"
packages "python3"
setup "echo project > /etc/whose-image"
peer "side" {
    base "debian:bookworm"
    packages "python3"
    service "sh -c 'cat /etc/whose-image > /data/seen 2>&1; exec sleep 1000'"
    volume "data" at="/data"
}
"#,
        &["env.lock", "env.side.lock"],
    );
    let project = Project {
        dir: dir.path().to_path_buf(),
        command: &command,
        runtime: root_runtime(),
    };
    project.env_ok(&["up"]);
    let inside = project.env_ok(&["run", "--", "cat", "/etc/whose-image"]);
    assert_eq!(inside.stdout, "project\n", "{}", inside.transcript());
    let seen: Vec<String> = walkdir::WalkDir::new(state.path())
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.ends_with("side.data/seen"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].contains("No such file"),
        "the peer ran the project's image: {seen:?}"
    );
}
