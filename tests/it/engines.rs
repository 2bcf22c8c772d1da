//! Images leave envkit for real engines: podman loads the OCI and the Docker archives of an app
//! baked with `copy` and `command`, and runs it, printing what `env run` prints (root, network
//! tier: the image is built from the mirror). podman runs here with runc and lower limits, from
//! a `containers.conf` the test writes, and keeps its images in a folder of the test's own.

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
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\nruntime = \"runc\"\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n",
        )
        .unwrap();
        Podman { dir }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"));
        command
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
