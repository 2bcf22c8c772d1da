//! The peers' network when services bind as they would alone (root and rootless, network
//! tier): PostgreSQL with `listen_addresses='*'` and `python3 -m http.server 5432` (which binds
//! the wildcard address) are peers of one project on the same port. Started in both orders,
//! through ten `env up`/`env down` cycles, each is reached by name from the main environment,
//! from a private session and from the other peer; a thousand connections at once go through
//! one link; `env down` leaves no process, namespace or folder of the peers behind.

use std::path::Path;

use crate::peers::{Project, children, postgres_locks, root_command, root_runtime};
use crate::rootless::{TestUser, UserFolders, WITH_RANGE, can_test, ensure_user};
use crate::run::{can_enter, shared_image};

/// PostgreSQL as images usually ship it: listening on every address of its namespace.
fn db_env() -> String {
    let postgres = std::fs::read_to_string(crate::common::repo_root().join("envs/postgres.kdl"))
        .unwrap()
        .replace("name \"postgres\"", "name \"db\"");
    format!(
        "{postgres}setup \"echo \\\"listen_addresses = '*'\\\" >> /etc/postgresql/15/main/postgresql.conf\"\n"
    )
}

/// Python's HTTP server on the same port, on every address (its default); its CGI script
/// reaches `db` from inside this peer.
const WEB_ENV: &str = r#"name "web"
base "debian:bookworm"
packages "python3"
mount "site" at="/srv"
service "cd /srv && python3 -m http.server --cgi 5432"
port 5432
ready tcp=5432
"#;

/// Asks PostgreSQL for TLS (it answers one byte) from wherever it runs, by the name `db`.
const DB_PROBE_CGI: &str = "#!/usr/bin/python3\n\
    import socket\n\
    s = socket.create_connection(('db', 5432), timeout=10)\n\
    s.sendall(bytes.fromhex('0000000804d2162f'))\n\
    print('Content-Type: text/plain\\n')\n\
    print('db answered' if s.recv(1) else 'db closed')\n";

/// Run in the main environment or a private session: each peer by name, and each peer
/// reaching the other (PostgreSQL runs a program that fetches `web`'s page; `web` runs a
/// script that asks `db`).
const CHECK_BOTH: &str = r#"import psycopg2, urllib.request as r
fetch = "bash -c 'exec 3<>/dev/tcp/web/5432; printf \"GET /index.html HTTP/1.0\\r\\n\\r\\n\" >&3; tail -n 1 <&3'"
connection = psycopg2.connect(host='db', user='postgres', dbname='postgres', connect_timeout=10)
with connection, connection.cursor() as cursor:
    cursor.execute('select 41 + 1')
    print('db', cursor.fetchone()[0])
    cursor.execute('create temp table fetched (line text)')
    cursor.execute('copy fetched from program %s', (fetch,))
    cursor.execute('select line from fetched')
    print('db reaches', cursor.fetchall()[-1][0])
print('web', r.urlopen('http://web:5432/index.html', timeout=10).read().decode().strip())
print('web reaches', r.urlopen('http://web:5432/cgi-bin/db.py', timeout=10).read().decode().strip())
"#;

const CHECKED: &str = "db 42\ndb reaches web\nweb web\nweb reaches db answered\n";

/// A peer that echoes what each connection sends, on every address, with room in its
/// listen queue for a thousand clients at once (Python's HTTP server has room for five, so it
/// cannot be the judge of a link's capacity).
const ECHO_ENV: &str = r#"name "echo"
base "debian:bookworm"
packages "python3"
mount "site" at="/srv"
service "python3 /srv/echo.py"
port 7000
ready tcp=7000
"#;

const ECHO_SERVER: &str = "import socket, threading\n\
    server = socket.create_server(('', 7000), backlog=4096)\n\
    def echo(client):\n    \
    with client:\n        \
    while data := client.recv(65536):\n            \
    client.sendall(data)\n\
    while True:\n    \
    client, _ = server.accept()\n    \
    threading.Thread(target=echo, args=(client,), daemon=True).start()\n";

/// A thousand connections to `echo` open at once through its link; then each sends a line
/// and reads it back.
const THOUSAND: &str = r#"import resource, socket
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
connections = [socket.create_connection(('echo', 7000), timeout=60) for _ in range(1000)]
for number, c in enumerate(connections):
    c.sendall(b'line %d\n' % number)
echoed = 0
for number, c in enumerate(connections):
    reply = b''
    while len(reply) < len(b'line %d\n' % number) and (chunk := c.recv(100)):
        reply += chunk
    echoed += reply == b'line %d\n' % number
    c.close()
print(echoed)
"#;

/// A thousand connections through one link at once, from the main environment and from a
/// private session, then nothing left after `env down`.
fn thousand_connections(project: &Project<'_>, lock: &str, owner: Option<&TestUser>) {
    let files = [
        ("load.kdl", "name \"load\"\nbase \"debian:bookworm\"\npackages \"python3\"\npeer \"echo\" file=\"echo.kdl\"\n".to_string()),
        ("private-load.kdl", "name \"load\"\nbase \"debian:bookworm\"\npackages \"python3\"\nnetwork \"private\"\npeer \"echo\" file=\"echo.kdl\"\n".to_string()),
        ("echo.kdl", ECHO_ENV.to_string()),
        ("site/echo.py", ECHO_SERVER.to_string()),
    ];
    for (name, contents) in files {
        let path = project.dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
    }
    for name in ["load.lock", "private-load.lock", "echo.lock"] {
        std::fs::write(project.dir.join(name), lock).unwrap();
    }
    give_to(&project.dir, owner);
    for env_file in ["load.kdl", "private-load.kdl"] {
        let thousand = project.env(&["run", "-f", env_file, "--", "python3", "-c", THOUSAND]);
        assert_eq!(
            thousand.stdout,
            "1000\n",
            "{env_file}: {}",
            thousand.transcript()
        );
    }
    let processes = peer_processes(project, &["echo"]);
    project.env_ok(&["down", "-f", "load.kdl"]);
    nothing_left(project, processes, "after the thousand connections");
}

/// Makes everything in `dir` the test user's, when the project is theirs.
fn give_to(dir: &Path, owner: Option<&TestUser>) {
    if let Some(user) = owner {
        for entry in walkdir::WalkDir::new(dir) {
            let entry = entry.unwrap();
            std::os::unix::fs::lchown(entry.path(), Some(user.uid), Some(user.gid)).unwrap();
        }
    }
}

/// The project's files: the app (`env.kdl`, host network) and a private session
/// (`private.kdl`), both naming the peers in `order`; the peers' own files; every lock.
fn write_project(dir: &Path, order: [&str; 2], app_lock: &str, db_lock: &str) {
    let python_lock = &shared_image().lock;
    let peers: String = order
        .iter()
        .map(|name| format!("peer \"{name}\" file=\"{name}.kdl\"\n"))
        .collect();
    let app = format!(
        "name \"app\"\nbase \"debian:bookworm\"\n\
         packages \"postgresql-client\" \"python3-psycopg2\"\n{peers}"
    );
    let files = [
        ("env.kdl", app.clone()),
        ("env.lock", app_lock.to_string()),
        ("private.kdl", format!("{app}network \"private\"\n")),
        ("private.lock", app_lock.to_string()),
        ("db.kdl", db_env()),
        ("db.lock", db_lock.to_string()),
        ("web.kdl", WEB_ENV.to_string()),
        ("web.lock", python_lock.clone()),
        ("site/index.html", "web\n".to_string()),
        ("site/cgi-bin/db.py", DB_PROBE_CGI.to_string()),
    ];
    for (name, contents) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
    }
    let script = dir.join("site/cgi-bin/db.py");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

type Processes = Vec<(u32, Option<std::path::PathBuf>)>;

/// Every process of the peers (supervisors and what they run) with its network namespace.
fn peer_processes(project: &Project<'_>, peers: &[&str]) -> Processes {
    let mut found = Vec::new();
    let mut next: Vec<u32> = peers
        .iter()
        .map(|peer| project.state_of(peer)["supervisor"].as_u64().unwrap() as u32)
        .collect();
    while let Some(pid) = next.pop() {
        found.push((pid, std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()));
        next.extend(children(pid));
    }
    found
}

/// Whether any process on the machine is in the network namespace `namespace`.
fn namespace_in_use(namespace: &Path) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read_link(entry.path().join("ns/net")).is_ok_and(|ns| ns == namespace)
    })
}

/// Ten cycles of `env up`, the checks from the main environment and from a private session,
/// and `env down`, with the peers started in `order`; the thousand connections in the first.
fn cycles(project: &Project<'_>, order: [&str; 2]) {
    for cycle in 0..10 {
        let up = project.env_ok(&["up"]);
        let (first, second) = (
            up.stderr.find(&format!("{} is ready", order[0])),
            up.stderr.find(&format!("{} is ready", order[1])),
        );
        assert!(
            first.is_some() && first < second,
            "cycle {cycle}: {order:?}\n{}",
            up.stderr
        );
        for env_file in ["env.kdl", "private.kdl"] {
            let checked = project.env(&["run", "-f", env_file, "--", "python3", "-c", CHECK_BOTH]);
            assert_eq!(
                checked.stdout,
                CHECKED,
                "cycle {cycle}, {env_file}, {order:?}\n{}\ndb's log:\n{}\nweb's log:\n{}",
                checked.transcript(),
                project.env(&["logs", "db"]).stdout,
                project.env(&["logs", "web"]).stdout,
            );
        }
        let peers = project.peers();
        for name in order {
            assert_eq!(peers[name]["state"], "running", "{}", peers[name]);
            assert_eq!(peers[name]["ports"], serde_json::json!([5432]));
        }
        let processes = peer_processes(project, &order);
        project.env_ok(&["down"]);
        nothing_left(project, processes, &format!("cycle {cycle}"));
    }
}

/// After `env down`: no peer in `env ps`, none of `processes` alive, none of their network
/// namespaces in use, none of the peers' folders.
fn nothing_left(project: &Project<'_>, processes: Processes, when: &str) {
    let host_namespace = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(project.peers().is_empty(), "{when}: env ps after down");
    for (pid, namespace) in processes {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
        let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        // A zombie has let go of everything; only its parent's reaping is left.
        let ended = status
            .as_ref()
            .map_or(true, |status| status.contains("State:\tZ"));
        assert!(
            ended,
            "{when}: process {pid} outlived env down: {}\n{}",
            String::from_utf8_lossy(&command).replace('\0', " "),
            status.unwrap_or_default()
        );
        if let Some(namespace) = namespace.filter(|ns| *ns != host_namespace) {
            assert!(
                !namespace_in_use(&namespace),
                "{when}: {} outlived env down",
                namespace.display()
            );
        }
    }
    let canonical = project.dir.canonicalize().unwrap();
    let project_dir = envkit::run::peers::files::project_dir(&project.runtime, &canonical);
    let left: Vec<_> = std::fs::read_dir(&project_dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{when}: {left:?} outlived env down");
}

fn both_orders(project: &Project<'_>, app_lock: &str, db_lock: &str, owner: Option<&TestUser>) {
    for order in [["db", "web"], ["web", "db"]] {
        write_project(&project.dir, order, app_lock, db_lock);
        give_to(&project.dir, owner);
        cycles(project, order);
    }
    thousand_connections(project, &shared_image().lock, owner);
}

#[test]
fn two_wildcard_services_on_one_port_reach_each_other() {
    if !can_enter("two wildcard peers on one port") {
        return;
    }
    let (app_lock, db_lock) = postgres_locks();
    let state = tempfile::tempdir().unwrap();
    let command = root_command(state.path());
    let dir = tempfile::tempdir().unwrap();
    let project = Project {
        dir: dir.path().to_path_buf(),
        command: &command,
        runtime: root_runtime(),
    };
    both_orders(&project, app_lock, db_lock, None);
}

#[test]
fn an_unprivileged_users_wildcard_services_reach_each_other() {
    if !can_test("wildcard peers of an unprivileged user") {
        return;
    }
    let (app_lock, db_lock) = postgres_locks();
    let _alone = crate::peers::ROOTLESS_PEERS.lock();
    let user: TestUser = ensure_user(WITH_RANGE, true);
    let folders = UserFolders::new(&user, "", app_lock);
    folders.add_debs(&user, db_lock);
    folders.add_debs(&user, &shared_image().lock);
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
    both_orders(&project, app_lock, db_lock, Some(&user));
}
