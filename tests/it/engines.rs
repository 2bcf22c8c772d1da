//! Images leave envkit for real engines: podman loads the OCI and the Docker archives of an app
//! baked with `copy` and `command`, and runs it, printing what `env run` prints; `podman kube
//! play` and `podman-compose` run the Kubernetes and Compose exports of an app and its
//! PostgreSQL peer, pulled from a `docker-registry` (root, network tier: the images are built
//! from the mirror). podman runs here with runc and lower limits, from a `containers.conf` the
//! test writes, and keeps its images and networks in a folder of the test's own.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Outcome, envkit, must_work, network_tier, run};

fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envkit-shared-cache")
}

fn shared_store() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envkit-shared-store")
}

/// podman with its own storage and this machine's settings; removed when dropped.
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    pub fn new() -> Podman {
        Podman::trusting(&[])
    }

    /// One that pulls over plain HTTP from these registries (`127.0.0.1:PORT`).
    pub fn trusting(insecure_registries: &[&str]) -> Podman {
        let dir = tempfile::tempdir().unwrap();
        // Networks are kept beside the storage: podman's default folder is the machine's, which
        // `system reset` would empty under another test.
        std::fs::write(
            dir.path().join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                 [network]\nnetwork_config_dir = \"{}\"\n\
                 [engine]\nruntime = \"runc\"\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n",
                dir.path().join("networks").display()
            ),
        )
        .unwrap();
        let registries: String = insecure_registries
            .iter()
            .map(|address| format!("[[registry]]\nlocation = \"{address}\"\ninsecure = true\n"))
            .collect();
        std::fs::write(dir.path().join("registries.conf"), registries).unwrap();
        Podman { dir }
    }

    /// The settings every podman (and podman-compose) this test starts must see.
    fn environment(&self, command: &mut Command) {
        command
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.path().join("registries.conf"),
            );
    }

    /// `--root` and `--runroot`: the test's own storage.
    fn storage_args(&self) -> [String; 4] {
        [
            "--root".into(),
            self.dir.path().join("root").display().to_string(),
            "--runroot".into(),
            self.dir.path().join("run").display().to_string(),
        ]
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new("podman");
        self.environment(&mut command);
        command.args(self.storage_args());
        command
    }

    /// podman-compose, driving this podman.
    pub fn compose(&self, args: &[&str]) -> Outcome {
        let mut command = Command::new("podman-compose");
        self.environment(&mut command);
        command
            .arg("--podman-args")
            .arg(self.storage_args().join(" "))
            .args(args);
        run(&mut command)
    }

    /// A container's output so far, stdout and stderr together.
    pub fn logs(&self, container: &str) -> String {
        let logs = self.run(&["logs", container]);
        format!("{}{}", logs.stdout, logs.stderr)
    }

    pub fn run(&self, args: &[&str]) -> Outcome {
        run(self.command().args(args))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // podman's storage holds overlay mounts and read-only folders.
        let _ = self.command().args(["system", "reset", "--force"]).output();
    }
}

/// Root, the mirror and podman, or a printed reason to skip (unless ENVKIT_MUST_WORK=1).
pub fn can_use_podman(what: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        assert!(!must_work(), "ENVKIT_MUST_WORK=1 but {what} needs root");
        eprintln!("skipped: {what} needs root");
        return false;
    }
    if Command::new("podman").arg("--version").output().is_err() {
        assert!(
            !must_work(),
            "ENVKIT_MUST_WORK=1 but {what} needs podman (scripts/setup installs it)"
        );
        eprintln!("skipped: {what} needs podman");
        return false;
    }
    network_tier(what)
}

fn in_project(project: &Path, args: &[&str]) -> Outcome {
    run(envkit(project, args)
        .env("ENVKIT_CACHE_DIR", shared_cache())
        .env("ENVKIT_STORE_DIR", shared_store()))
}

/// An app that prints a variable from env.kdl and a file baked into the image.
fn hello_app() -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    let root = project.path();
    std::fs::create_dir_all(root.join("app/__pycache__")).unwrap();
    std::fs::write(
        root.join("env.kdl"),
        "name \"hello\"\nbase \"debian:bookworm\"\npackages \"python3\"\n\
         copy \"app\" at=\"/app\"\nworkdir \"/app\"\n\
         vars {\n    GREETING \"hello from envkit\"\n}\ncommand \"python3 main.py\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("app/main.py"),
        "import os\nprint(os.environ['GREETING'], open('/app/data.txt').read().strip(), sorted(os.listdir('/app')))\n",
    )
    .unwrap();
    std::fs::write(root.join("app/data.txt"), "and its baked data\n").unwrap();
    std::fs::write(root.join("app/__pycache__/junk.pyc"), "junk").unwrap();
    std::fs::write(root.join(".envkitignore"), "**/__pycache__\n").unwrap();
    project
}

#[test]
fn podman_loads_both_archives_and_runs_the_baked_app_as_env_run_does() {
    if !can_use_podman("running exported images in podman") {
        return;
    }
    let project = hello_app();
    let build = in_project(project.path(), &["build"]);
    assert_eq!(build.code, Some(0), "{}", build.transcript());
    assert!(build.stderr.contains("copy-1"), "{}", build.stderr);
    let ran = in_project(project.path(), &["run", "--", "python3", "main.py"]);
    assert_eq!(ran.code, Some(0), "{}", ran.transcript());
    assert_eq!(
        ran.stdout, "hello from envkit and its baked data ['data.txt', 'main.py']\n",
        "the ignore file kept __pycache__ out"
    );
    let inspect = in_project(project.path(), &["inspect", "--json"]);
    let inspected: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let name = inspected["image"]["name"].as_str().unwrap().to_string();

    for format in ["oci", "docker"] {
        let archive = project.path().join(format!("image.{format}.tar"));
        let export = in_project(
            project.path(),
            &[
                "export",
                "--format",
                format,
                "-o",
                archive.to_str().unwrap(),
            ],
        );
        assert_eq!(export.code, Some(0), "{}", export.transcript());
        let podman = Podman::new();
        let load = podman.run(&["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(load.code, Some(0), "{}", load.transcript());
        assert!(
            load.stdout
                .contains(&format!("Loaded image: localhost/{name}")),
            "{format}: {}",
            load.transcript()
        );
        let started = podman.run(&["run", "--rm", &format!("localhost/{name}")]);
        assert_eq!(started.code, Some(0), "{format}: {}", started.transcript());
        assert_eq!(started.stdout, ran.stdout, "{format}: podman runs the app");
        let config = podman.run(&[
            "image",
            "inspect",
            &format!("localhost/{name}"),
            "--format",
            "{{json .Config}}",
        ]);
        let config: serde_json::Value = serde_json::from_str(&config.stdout).unwrap();
        assert_eq!(config["WorkingDir"], "/app", "{config}");
        assert_eq!(config["User"], "0:0", "{config}");
        assert_eq!(config["Cmd"][2], "python3 main.py", "{config}");
        assert_eq!(config["Labels"]["dev.envkit.project"], "hello", "{config}");
        assert!(
            config["Labels"]["dev.envkit.lock"]
                .as_str()
                .unwrap()
                .starts_with("sha256:"),
            "{config}"
        );
    }

    // A changed file changes only the copy layer, which the next build makes again.
    std::fs::write(project.path().join("app/data.txt"), "changed\n").unwrap();
    let rebuilt = in_project(project.path(), &["build"]);
    assert_eq!(rebuilt.code, Some(0), "{}", rebuilt.transcript());
    assert!(
        rebuilt.stderr.contains("building copy-1 layer")
            && !rebuilt.stderr.contains("building packages"),
        "{}",
        rebuilt.stderr
    );
    let ran = in_project(project.path(), &["run", "--", "python3", "main.py"]);
    assert!(
        ran.stdout.contains("hello from envkit changed"),
        "{}",
        ran.stdout
    );
}

/// An app that asks its PostgreSQL peer `db` for a greeting, baked with `copy` and `command`;
/// `db` is envs/postgres.kdl listening on every address, as a database in a cluster must.
fn shop_app() -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    let root = project.path();
    std::fs::create_dir_all(root.join("app")).unwrap();
    std::fs::write(
        root.join("env.kdl"),
        "name \"shop\"\nbase \"debian:bookworm\"\npackages \"python3\" \"python3-psycopg2\"\n\
         copy \"app\" at=\"/app\"\nworkdir \"/app\"\n\
         vars {\n    DATABASE_HOST \"db\"\n}\ncommand \"python3 -u main.py\"\n\
         peer \"db\" file=\"db.kdl\"\n",
    )
    .unwrap();
    let postgres = std::fs::read_to_string(crate::common::repo_root().join("envs/postgres.kdl"))
        .unwrap()
        .replace("name \"postgres\"", "name \"db\"");
    std::fs::write(
        root.join("db.kdl"),
        format!(
            "{postgres}setup \"echo \\\"listen_addresses = '*'\\\" >> /etc/postgresql/15/main/postgresql.conf\"\n"
        ),
    )
    .unwrap();
    // It waits for the database, as apps in a cluster must.
    std::fs::write(
        root.join("app/main.py"),
        r#"import os, sys, time
import psycopg2
for attempt in range(180):
    try:
        connection = psycopg2.connect(host=os.environ["DATABASE_HOST"], user="postgres",
                                      dbname="postgres", connect_timeout=5)
        break
    except psycopg2.OperationalError as error:
        print("waiting for the database:", str(error).strip(), flush=True)
        time.sleep(1)
else:
    sys.exit("the database never answered")
with connection, connection.cursor() as cursor:
    cursor.execute("select 'db says ' || 'hi'")
    print(cursor.fetchone()[0], flush=True)
"#,
    )
    .unwrap();
    project
}

/// kubernetes-validate and podman-compose, or a printed reason to skip (unless
/// ENVKIT_MUST_WORK=1).
fn can_run_exports(what: &str) -> bool {
    if !can_use_podman(what) {
        return false;
    }
    for (program, args) in [
        ("python3", &["-m", "kubernetes_validate", "--version"][..]),
        ("podman-compose", &["--version"][..]),
        ("docker-registry", &["--version"][..]),
    ] {
        let works = Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|output| output.status.success());
        if !works {
            assert!(
                !must_work(),
                "ENVKIT_MUST_WORK=1 but {what} needs `{program} {}` (scripts/setup installs it)",
                args.join(" ")
            );
            eprintln!("skipped: {what} needs `{program}`");
            return false;
        }
    }
    true
}

/// Waits until the container's output holds `text`, or fails with what it printed.
fn wait_for_output(podman: &Podman, container: &str, text: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    loop {
        let logs = podman.logs(container);
        if logs.contains(text) {
            return;
        }
        if std::time::Instant::now() > deadline {
            let listed = podman.run(&["ps", "-a"]);
            panic!(
                "{container} never printed {text:?}:\n{logs}\n{}",
                listed.stdout
            );
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

#[test]
fn kubernetes_and_compose_exports_run_the_app_and_its_database_in_podman() {
    if !can_run_exports("running the Kubernetes and Compose exports") {
        return;
    }
    let registry = crate::registry::Registry::start(None);
    let project = shop_app();
    let dir = project.path();
    let ran = in_project(dir, &["run", "--", "python3", "-u", "main.py"]);
    let _ = in_project(dir, &["down"]);
    assert_eq!(ran.code, Some(0), "{}", ran.transcript());
    assert!(ran.stdout.contains("db says hi"), "{}", ran.transcript());

    // Engines pull from a registry: an export before the pushes names what to push.
    let early = in_project(dir, &["export", "--kubernetes"]);
    assert_eq!(early.code, Some(2), "{}", early.transcript());
    assert!(
        early.stderr.contains("env push REGISTRY/REPOSITORY")
            && early
                .stderr
                .contains("env push --peer db REGISTRY/REPOSITORY"),
        "{}",
        early.stderr
    );
    let address = registry.address.as_str();
    for args in [
        vec!["push", "--insecure", "--compression", "zstd"],
        vec!["push", "--insecure", "--peer", "db"],
    ] {
        let reference = if args.contains(&"db") {
            format!("{address}/team/db")
        } else {
            format!("{address}/team/shop")
        };
        let mut args = args.clone();
        args.push(&reference);
        let pushed = in_project(dir, &args);
        assert_eq!(pushed.code, Some(0), "{}", pushed.transcript());
    }

    // Kubernetes: the manifests are valid for the API, and podman runs them.
    let exported = in_project(dir, &["export", "--kubernetes"]);
    assert_eq!(exported.code, Some(0), "{}", exported.transcript());
    let manifests_path = dir.join("shop.k8s.yaml");
    let manifests = std::fs::read_to_string(&manifests_path).unwrap();
    assert!(
        manifests.contains(&format!("image: \"{address}/team/shop@sha256:"))
            && manifests.contains(&format!("image: \"{address}/team/db@sha256:")),
        "images by their pushed digests:\n{manifests}"
    );
    let validated = run(Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .arg(&manifests_path));
    assert_eq!(validated.code, Some(0), "{}", validated.transcript());
    for object in [
        "persistentvolumeclaim/db-pgdata",
        "deployment/shop",
        "deployment/db",
        "service/db",
    ] {
        assert!(
            validated
                .stdout
                .contains(&format!("passed for resource {object}"))
                || validated
                    .stderr
                    .contains(&format!("passed for resource {object}")),
            "{object}: {}",
            validated.transcript()
        );
    }
    let podman = Podman::trusting(&[address]);
    let network = "envkit-kube";
    let created = podman.run(&["network", "create", network]);
    assert_eq!(created.code, Some(0), "{}", created.transcript());
    // podman 4.3 plays Deployments and claims but not Services: the peer's pod joins the
    // network under the name its Service gives it in a cluster.
    let documents: Vec<&str> = manifests.split("---\n").filter(|d| !d.is_empty()).collect();
    let (db_documents, app_documents): (Vec<&str>, Vec<&str>) = documents
        .iter()
        .partition(|d| d.contains("app.kubernetes.io/name: \"db\""));
    let db_yaml = dir.join("db.k8s.yaml");
    let app_yaml = dir.join("app.k8s.yaml");
    std::fs::write(&db_yaml, format!("---\n{}", db_documents.join("---\n"))).unwrap();
    std::fs::write(&app_yaml, format!("---\n{}", app_documents.join("---\n"))).unwrap();
    let played = podman.run(&[
        "kube",
        "play",
        "--network",
        &format!("{network}:alias=db"),
        db_yaml.to_str().unwrap(),
    ]);
    assert_eq!(played.code, Some(0), "{}", played.transcript());
    let played = podman.run(&[
        "kube",
        "play",
        "--network",
        network,
        app_yaml.to_str().unwrap(),
    ]);
    assert_eq!(played.code, Some(0), "{}", played.transcript());
    wait_for_output(&podman, "shop-pod-0-shop", "db says hi");
    // The claim started with what the image holds there: the cluster PostgreSQL made.
    let cluster = podman.run(&[
        "exec",
        "db-pod-0-db",
        "test",
        "-f",
        "/var/lib/postgresql/15/main/PG_VERSION",
    ]);
    assert_eq!(cluster.code, Some(0), "{}", cluster.transcript());
    for yaml in [&app_yaml, &db_yaml] {
        let down = podman.run(&["kube", "down", yaml.to_str().unwrap()]);
        assert_eq!(down.code, Some(0), "{}", down.transcript());
    }

    // Compose: the same services, by the same names.
    let exported = in_project(dir, &["export", "--compose"]);
    assert_eq!(exported.code, Some(0), "{}", exported.transcript());
    let compose_file = dir.join("compose.yaml");
    let project_name = "envkit-shop";
    let up = podman.compose(&[
        "-p",
        project_name,
        "-f",
        compose_file.to_str().unwrap(),
        "up",
        "-d",
    ]);
    assert_eq!(up.code, Some(0), "{}", up.transcript());
    wait_for_output(&podman, &format!("{project_name}_shop_1"), "db says hi");
    let down = podman.compose(&[
        "-p",
        project_name,
        "-f",
        compose_file.to_str().unwrap(),
        "down",
        "-v",
    ]);
    assert_eq!(down.code, Some(0), "{}", down.transcript());
}
