//! `env push` and `env pull` against Debian's `docker-registry`, started by each test on a free
//! port of 127.0.0.1, with skopeo as the judge of what was pushed (root, network tier: the
//! image is the export test's, built from the mirror).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Outcome, envkit, must_work, network_tier, run};

fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envkit-shared-cache")
}

fn shared_store() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envkit-shared-store")
}

/// A `docker-registry` serving a temporary folder on 127.0.0.1; stopped when dropped.
pub struct Registry {
    child: Child,
    pub address: String,
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts one; with `htpasswd`, it asks for Basic credentials checked against that file.
    pub fn start(htpasswd: Option<&Path>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let storage = dir.path().join("data");
        let auth = htpasswd.map_or(String::new(), |file| {
            format!(
                "auth:\n  htpasswd:\n    realm: envkit-test\n    path: {}\n",
                file.display()
            )
        });
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n{auth}",
                storage.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            address,
            storage,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// One that asks for Basic credentials: the user `dev` with `password` (its file under
    /// `dir`).
    pub fn with_password(dir: &Path, password: &str) -> Registry {
        let htpasswd = dir.join("htpasswd");
        let made = Command::new("htpasswd")
            .args(["-Bbc"])
            .arg(&htpasswd)
            .args(["dev", password])
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        Registry::start(Some(&htpasswd))
    }

    /// Every layer blob file the registry holds, by its hex digest.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Root, the mirror, docker-registry and skopeo, or a printed reason to skip (unless
/// ENVKIT_MUST_WORK=1).
pub fn can_test(what: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        assert!(!must_work(), "ENVKIT_MUST_WORK=1 but {what} needs root");
        eprintln!("skipped: {what} needs root");
        return false;
    }
    for (tool, flag) in [
        ("docker-registry", "--version"),
        ("skopeo", "--version"),
        ("htpasswd", "-h"),
    ] {
        if Command::new(tool).arg(flag).output().is_err() {
            assert!(
                !must_work(),
                "ENVKIT_MUST_WORK=1 but {what} needs `{tool}` (scripts/setup installs it)"
            );
            eprintln!("skipped: {what} needs `{tool}`");
            return false;
        }
    }
    network_tier(what)
}

/// The export test's project: bookworm with python3, built in the shared store.
fn python_project() -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("env.kdl"),
        "name \"py\"\nbase \"debian:bookworm\"\npackages \"python3\"\n",
    )
    .unwrap();
    let build = in_store(project.path(), &shared_store(), &shared_cache(), &["build"]);
    assert_eq!(build.code, Some(0), "{}", build.transcript());
    project
}

fn in_store(project: &Path, store: &Path, cache: &Path, args: &[&str]) -> Outcome {
    run(envkit(project, args)
        .env("ENVKIT_CACHE_DIR", cache)
        .env("ENVKIT_STORE_DIR", store)
        .env("DOCKER_CONFIG", project.join("no-docker-config")))
}

/// The image `env inspect --json` reports in that store.
fn image(project: &Path, store: &Path) -> serde_json::Value {
    let inspect = in_store(project, store, &shared_cache(), &["inspect", "--json"]);
    assert_eq!(inspect.code, Some(0), "{}", inspect.transcript());
    let value: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    value["image"].clone()
}

fn diff_ids(image: &serde_json::Value) -> Vec<String> {
    image["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["diff_id"].as_str().unwrap().to_string())
        .collect()
}

fn skopeo_inspect(reference: &str, extra: &[&str]) -> serde_json::Value {
    let output = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_pushed_image_is_seen_by_skopeo_and_pulled_into_an_empty_store_runs_without_building() {
    if !can_test("pushing to and pulling from docker-registry") {
        return;
    }
    let registry = Registry::start(None);
    let project = python_project();
    let built = image(project.path(), &shared_store());
    let name = built["name"].as_str().unwrap().to_string();
    let tag = name.split_once(':').unwrap().1;
    let repository = format!("{}/team/py", registry.address);

    // Without --insecure the registry is spoken to over HTTPS, which it does not serve.
    let refused = in_store(
        project.path(),
        &shared_store(),
        &shared_cache(),
        &["push", &repository],
    );
    assert_eq!(refused.code, Some(1), "{}", refused.transcript());
    assert!(
        refused.stderr.contains("add `--insecure`"),
        "{}",
        refused.stderr
    );

    let push = in_store(
        project.path(),
        &shared_store(),
        &shared_cache(),
        &["push", "--insecure", &repository],
    );
    assert_eq!(push.code, Some(0), "{}", push.transcript());
    let layers = built["layers"].as_array().unwrap().len();
    assert!(
        push.stderr.contains(&format!(
            "pushed {name} to {repository}:{tag} ({layers} layers sent"
        )) || push.stderr.contains("already there)"),
        "{}",
        push.stderr
    );
    let index_digest = push.stdout.trim().to_string();
    assert!(index_digest.starts_with("sha256:"), "{}", push.stdout);

    // skopeo sees the image for this platform, through an index, with gzip layers.
    let reference = format!("{repository}:{tag}");
    let inspected = skopeo_inspect(&reference, &[]);
    assert_eq!(inspected["Architecture"], "amd64", "{inspected}");
    assert_eq!(inspected["Os"], "linux");
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), layers);
    let index = skopeo_inspect(&reference, &["--raw"]);
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");
    let manifest_reference = format!(
        "{repository}@{}",
        index["manifests"][0]["digest"].as_str().unwrap()
    );
    let layer_types = |reference: &str| -> Vec<String> {
        skopeo_inspect(reference, &["--raw"])["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|layer| layer["mediaType"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        layer_types(&manifest_reference),
        vec!["application/vnd.oci.image.layer.v1.tar+gzip"; layers]
    );
    let config = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--config"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!(diff_ids(&built)),
        "the layers' diff_ids are the built ones"
    );

    // A second push sends nothing and names the same index.
    let again = in_store(
        project.path(),
        &shared_store(),
        &shared_cache(),
        &["push", "--insecure", &repository],
    );
    assert_eq!(again.code, Some(0), "{}", again.transcript());
    assert!(
        again
            .stderr
            .contains(&format!("(0 layers sent, 0 B; {layers} already there)")),
        "{}",
        again.stderr
    );
    assert_eq!(again.stdout.trim(), index_digest);

    // Pulled into an empty store and an empty cache, the project runs without building.
    let empty = tempfile::tempdir().unwrap();
    let (store, cache) = (empty.path().join("store"), empty.path().join("cache"));
    let pull = in_store(
        project.path(),
        &store,
        &cache,
        &["pull", "--insecure", &reference],
    );
    assert_eq!(pull.code, Some(0), "{}", pull.transcript());
    assert_eq!(pull.stdout.trim(), name);
    assert!(
        pull.stderr.contains(&format!("({layers} layers fetched")),
        "{}",
        pull.stderr
    );
    let ran = in_store(
        project.path(),
        &store,
        &cache,
        &[
            "run",
            "--",
            "python3",
            "-c",
            "print('hello from the pulled image')",
        ],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.transcript());
    assert_eq!(ran.stdout, "hello from the pulled image\n");
    assert!(!ran.stderr.contains("building"), "{}", ran.stderr);
    assert!(
        !cache.join("debs-v1").exists(),
        "nothing was downloaded from the mirror"
    );
    let pulled = image(project.path(), &store);
    assert_eq!(diff_ids(&pulled), diff_ids(&built));
    assert_eq!(pulled["id"], built["id"]);
    let verify = in_store(project.path(), &store, &cache, &["verify"]);
    assert_eq!(verify.code, Some(0), "{}", verify.transcript());
    // Nothing of the download is left but the layers.
    let blobs: Vec<_> = std::fs::read_dir(cache.join("blobs-v1")).unwrap().collect();
    assert!(blobs.is_empty(), "{blobs:?}");

    // A pull of what the store has fetches nothing; a zstd push pulls the same.
    let twice = in_store(
        project.path(),
        &store,
        &cache,
        &["pull", "--insecure", &reference],
    );
    assert!(
        twice.stderr.contains(&format!(
            "(0 layers fetched, 0 B; {layers} already in the store)"
        )),
        "{}",
        twice.stderr
    );
    let zstd_reference = format!("{repository}:zstd");
    let push_zstd = in_store(
        project.path(),
        &shared_store(),
        &shared_cache(),
        &[
            "push",
            "--insecure",
            "--compression",
            "zstd",
            &zstd_reference,
        ],
    );
    assert_eq!(push_zstd.code, Some(0), "{}", push_zstd.transcript());
    let zstd_index = skopeo_inspect(&zstd_reference, &["--raw"]);
    assert_eq!(
        layer_types(&format!(
            "{repository}@{}",
            zstd_index["manifests"][0]["digest"].as_str().unwrap()
        )),
        vec!["application/vnd.oci.image.layer.v1.tar+zstd"; layers]
    );
    let zstd_store = empty.path().join("zstd-store");
    let pull_zstd = in_store(
        project.path(),
        &zstd_store,
        &cache,
        &["pull", "--insecure", &zstd_reference],
    );
    assert_eq!(pull_zstd.code, Some(0), "{}", pull_zstd.transcript());
    assert_eq!(
        diff_ids(&image(project.path(), &zstd_store)),
        diff_ids(&built)
    );

    // A blob damaged in the registry is refused by its digest, and the store is unchanged.
    let manifest = skopeo_inspect(&manifest_reference, &["--raw"]);
    let top = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = registry.blob_path(&top);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let damaged_store = empty.path().join("damaged-store");
    let refused = in_store(
        project.path(),
        &damaged_store,
        &cache,
        &["pull", "--insecure", &reference],
    );
    assert_eq!(refused.code, Some(1), "{}", refused.transcript());
    assert!(
        refused
            .stderr
            .contains(&format!("blob {top}` does not match its digest")),
        "{}",
        refused.stderr
    );
    let images = in_store(project.path(), &damaged_store, &cache, &["images"]);
    assert!(!images.stdout.contains(&name), "{}", images.stdout);
    let store_tmp: Vec<_> = std::fs::read_dir(damaged_store.join("tmp"))
        .map(|entries| entries.collect())
        .unwrap_or_default();
    assert!(store_tmp.is_empty(), "{store_tmp:?}");
    let blobs: Vec<_> = std::fs::read_dir(cache.join("blobs-v1")).unwrap().collect();
    assert!(
        blobs.is_empty(),
        "the damaged download is not kept: {blobs:?}"
    );
}

#[test]
fn a_registry_that_asks_for_credentials_gets_them_from_the_docker_config() {
    if !can_test("pushing to a registry with basic auth") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::with_password(dir.path(), "s3cret");
    let project = python_project();
    let repository = format!("{}/team/py", registry.address);
    let docker_config = |password: &str| docker_config(dir.path(), &registry.address, password);
    let with_config = |folder: Option<&Path>, args: &[&str]| {
        let mut command = envkit(project.path(), args);
        command
            .env("ENVKIT_CACHE_DIR", shared_cache())
            .env("ENVKIT_STORE_DIR", shared_store())
            .env(
                "DOCKER_CONFIG",
                folder.map_or(dir.path().join("none"), Path::to_path_buf),
            );
        run(&mut command)
    };

    let anonymous = with_config(None, &["push", "--insecure", &repository]);
    assert_eq!(anonymous.code, Some(2), "{}", anonymous.transcript());
    assert!(
        anonymous.stderr.contains(&format!(
            "`{}` wants credentials, and the Docker config file has none for it",
            registry.address
        )),
        "{}",
        anonymous.stderr
    );
    assert!(
        anonymous.stderr.contains("hint: log in with"),
        "{}",
        anonymous.stderr
    );

    let wrong = with_config(
        Some(&docker_config("wrong")),
        &["push", "--insecure", &repository],
    );
    assert_eq!(wrong.code, Some(2), "{}", wrong.transcript());
    assert!(
        wrong.stderr.contains(&format!(
            "`{}` refused the credentials from the Docker config file",
            registry.address
        )),
        "{}",
        wrong.stderr
    );

    let right = docker_config("s3cret");
    let push = with_config(Some(&right), &["push", "--insecure", &repository]);
    assert_eq!(push.code, Some(0), "{}", push.transcript());
    let empty = tempfile::tempdir().unwrap();
    let pull = run(envkit(
        project.path(),
        &[
            "pull",
            "--insecure",
            &format!("{repository}@{}", push.stdout.trim()),
        ],
    )
    .env("ENVKIT_CACHE_DIR", empty.path().join("cache"))
    .env("ENVKIT_STORE_DIR", empty.path().join("store"))
    .env("DOCKER_CONFIG", &right));
    assert_eq!(pull.code, Some(0), "{}", pull.transcript());

    // A credential helper the config names for this registry gives them instead (what
    // `docker login` sets up with a desktop keychain), asked with the registry on stdin.
    let helpers = dir.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let helper = helpers.join("docker-credential-envkit-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh
[ \"$1\" = get ] || exit 1
read server
echo \"$server\" > {}
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"dev\",\"Secret\":\"s3cret\"}}' \"$server\"
",
            helpers.join("asked").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let with_helper = dir.path().join("docker-helper");
    std::fs::create_dir_all(&with_helper).unwrap();
    std::fs::write(
        with_helper.join("config.json"),
        format!(
            r#"{{"credHelpers": {{"{}": "envkit-test"}}}}"#,
            registry.address
        ),
    )
    .unwrap();
    let empty = tempfile::tempdir().unwrap();
    let pull = run(envkit(
        project.path(),
        &[
            "pull",
            "--insecure",
            &format!("{repository}@{}", push.stdout.trim()),
        ],
    )
    .env("ENVKIT_CACHE_DIR", empty.path().join("cache"))
    .env("ENVKIT_STORE_DIR", empty.path().join("store"))
    .env("DOCKER_CONFIG", &with_helper)
    .env(
        "PATH",
        format!(
            "{}:{}",
            helpers.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    ));
    assert_eq!(pull.code, Some(0), "{}", pull.transcript());
    assert_eq!(
        std::fs::read_to_string(helpers.join("asked"))
            .unwrap()
            .trim(),
        registry.address,
        "the helper was asked for this registry"
    );
}

/// A folder holding a Docker `config.json` with the user `dev` and `password` for `registry`.
pub fn docker_config(dir: &Path, registry: &str, password: &str) -> PathBuf {
    let folder = dir.join(format!("docker-{password}"));
    std::fs::create_dir_all(&folder).unwrap();
    let auth = base64_encode(format!("dev:{password}").as_bytes());
    std::fs::write(
        folder.join("config.json"),
        format!(r#"{{"auths": {{"{registry}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    folder
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// CI fills the team cache with `env build --push-cache`; a new hire's first `env run` in an
/// empty store pulls every layer from it and never runs dpkg; an entry that is not the layer
/// its tag names is refused and that layer built instead.
#[test]
fn a_new_hire_pulls_every_layer_ci_pushed_to_the_team_cache() {
    if !can_test("the team cache on docker-registry") {
        return;
    }
    let registry = Registry::start(None);
    let cache_repository = format!("{}/team/cache", registry.address);
    let project = python_project();
    let built = image(project.path(), &shared_store());
    let layers = built["layers"].as_array().unwrap().len();
    let ci = |args: &[&str]| {
        run(envkit(project.path(), args)
            .env("ENVKIT_CACHE_DIR", shared_cache())
            .env("ENVKIT_STORE_DIR", shared_store())
            .env("ENVKIT_TEAM_CACHE", &cache_repository)
            .env("ENVKIT_TEAM_CACHE_INSECURE", "1")
            .env("DOCKER_CONFIG", project.path().join("no-docker-config")))
    };

    let without = in_store(
        project.path(),
        &shared_store(),
        &shared_cache(),
        &["build", "--push-cache"],
    );
    assert_eq!(without.code, Some(2), "{}", without.transcript());
    assert!(
        without
            .stderr
            .contains("`--push-cache` needs a team cache, and none is configured"),
        "{}",
        without.stderr
    );
    let filled = ci(&["build", "--locked", "--push-cache"]);
    assert_eq!(filled.code, Some(0), "{}", filled.transcript());
    assert!(
        filled
            .stderr
            .contains(&format!("team cache: {layers} layers sent")),
        "{}",
        filled.stderr
    );
    let again = ci(&["build", "--locked", "--push-cache"]);
    assert!(
        again.stderr.contains(&format!(
            "team cache: 0 layers sent (0 B), {layers} already there"
        )),
        "{}",
        again.stderr
    );

    // The new hire's project names the cache in env.kdl.
    let text = std::fs::read_to_string(project.path().join("env.kdl")).unwrap();
    std::fs::write(
        project.path().join("env.kdl"),
        format!("{text}cache \"{cache_repository}\" insecure=#true\n"),
    )
    .unwrap();
    let laptop = tempfile::tempdir().unwrap();
    let (store, cache) = (laptop.path().join("store"), laptop.path().join("cache"));
    let first = in_store(
        project.path(),
        &store,
        &cache,
        &[
            "run",
            "--locked",
            "--",
            "python3",
            "-c",
            "print('from the cache')",
        ],
    );
    assert_eq!(first.code, Some(0), "{}", first.transcript());
    assert_eq!(first.stdout, "from the cache\n");
    assert_eq!(
        first.stderr.matches("from the team cache").count(),
        layers,
        "{}",
        first.stderr
    );
    assert!(!first.stderr.contains("building"), "{}", first.stderr);
    assert!(!cache.join("debs-v1").exists(), "no .deb was downloaded");
    assert_eq!(diff_ids(&image(project.path(), &store)), diff_ids(&built));

    // The top layer's tag made to hold the base layer's manifest: refused, and built.
    let keys: Vec<&str> = built["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["key"].as_str().unwrap())
        .collect();
    let copied = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{cache_repository}:layer-{}", keys[0]))
        .arg(format!(
            "docker://{cache_repository}:layer-{}",
            keys[layers - 1]
        ))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{copied:?}");
    let other = tempfile::tempdir().unwrap();
    let (store, cache) = (other.path().join("store"), other.path().join("cache"));
    let mixed = in_store(project.path(), &store, &cache, &["build", "--locked"]);
    assert_eq!(mixed.code, Some(0), "{}", mixed.transcript());
    let top = built["layers"][layers - 1]["name"].as_str().unwrap();
    assert!(
        mixed.stderr.contains(&format!(
            "warning: the team cache's {top} layer is not used: its manifest says dev.envkit.layer.key"
        )),
        "{}",
        mixed.stderr
    );
    assert!(
        mixed.stderr.contains(&format!("building {top} layer")),
        "{}",
        mixed.stderr
    );
    assert_eq!(
        mixed.stderr.matches("from the team cache").count(),
        layers - 1,
        "{}",
        mixed.stderr
    );
    assert_eq!(diff_ids(&image(project.path(), &store)), diff_ids(&built));
}

/// The CI job the book shows (`book/src/examples/ci-job.sh`), run as a CI system runs it: in
/// a fresh store each time, envkit's `env` first on PATH, no terminal.
#[test]
fn the_ci_job_in_the_book_fills_the_team_cache_and_fails_when_the_tests_do() {
    if !can_test("the book's CI job against docker-registry") {
        return;
    }
    let registry = Registry::start(None);
    let cache_repository = format!("{}/team/cache", registry.address);
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    std::fs::write(
        dir.join("env.kdl"),
        "name \"citest\"\nbase \"debian:bookworm\"\npackages \"python3\" \"python3-pytest\"\n\
         mount \".\" at=\"/work\"\nworkdir \"/work\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.join("tests")).unwrap();
    std::fs::write(
        dir.join("tests/test_app.py"),
        "def test_adds():\n    assert 1 + 1 == 2\n",
    )
    .unwrap();
    // The developer's step: the lock is committed with the project.
    let locked = in_store(dir, &shared_store(), &shared_cache(), &["lock"]);
    assert_eq!(locked.code, Some(0), "{}", locked.transcript());

    let job_script = crate::common::repo_root().join("book/src/examples/ci-job.sh");
    let bin_dir = crate::common::env_binary().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let job = || {
        let store = tempfile::tempdir().unwrap();
        let outcome = run(Command::new("sh")
            .arg(&job_script)
            .current_dir(dir)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", dir)
            .env("ENVKIT_CACHE_DIR", shared_cache())
            .env("ENVKIT_STORE_DIR", store.path())
            .env("ENVKIT_TEAM_CACHE", &cache_repository)
            .env("ENVKIT_TEAM_CACHE_INSECURE", "1")
            .env("DOCKER_CONFIG", dir.join("no-docker-config"))
            .stdin(Stdio::null()));
        (outcome, store)
    };

    let (first, _) = job();
    assert_eq!(first.code, Some(0), "{}", first.transcript());
    assert!(first.stdout.contains("1 passed"), "{}", first.transcript());
    assert!(
        first.stderr.contains("team cache: ") && first.stderr.contains("layers sent"),
        "{}",
        first.stderr
    );
    // The next job (or a laptop) starts from an empty store and builds nothing.
    let (second, _) = job();
    assert_eq!(second.code, Some(0), "{}", second.transcript());
    assert!(
        second.stderr.contains("packages-1: from the team cache")
            && !second.stderr.contains("building "),
        "{}",
        second.stderr
    );
    assert!(
        second
            .stderr
            .lines()
            .all(|line| !line.contains('\r') && !line.contains('\u{1b}')),
        "plain progress lines: {:?}",
        second.stderr
    );

    // A failing test fails the job with pytest's exit code.
    std::fs::write(
        dir.join("tests/test_broken.py"),
        "def test_breaks():\n    assert 1 + 1 == 3\n",
    )
    .unwrap();
    let (failing, _) = job();
    assert_eq!(failing.code, Some(1), "{}", failing.transcript());
    assert!(
        failing.stdout.contains("1 failed"),
        "{}",
        failing.transcript()
    );

    // env.kdl changed without its lock: the job stops at the check and says why.
    let text = std::fs::read_to_string(dir.join("env.kdl")).unwrap();
    std::fs::write(dir.join("env.kdl"), format!("{text}packages \"jq\"\n")).unwrap();
    let (stale, _) = job();
    assert_ne!(stale.code, Some(0), "{}", stale.transcript());
    assert!(stale.stderr.contains("jq"), "{}", stale.transcript());
    assert!(!stale.stderr.contains("building "), "{}", stale.stderr);
}

/// A TCP relay to a registry that drops the connection carrying the `cut_after`-th byte its
/// clients send, once: a network failing in the middle of an upload.
struct DroppingRelay {
    address: String,
    dropped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DroppingRelay {
    fn start(target: &str, cut_after: u64) -> DroppingRelay {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpStream};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let sent = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let target = target.to_string();
        let relay_dropped = dropped.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let (sent, dropped) = (sent.clone(), relay_dropped.clone());
                let (mut from_client, mut to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buffer = vec![0u8; 1 << 16];
                    while let Ok(read) = from_client.read(&mut buffer) {
                        if read == 0 {
                            break;
                        }
                        let before = sent.fetch_add(read as u64, Ordering::SeqCst);
                        if before + read as u64 > cut_after && !dropped.swap(true, Ordering::SeqCst)
                        {
                            let part = cut_after.saturating_sub(before) as usize;
                            let _ = to_server.write_all(&buffer[..part]);
                            let _ = from_client.shutdown(Shutdown::Both);
                            let _ = to_server.shutdown(Shutdown::Both);
                            return;
                        }
                        if to_server.write_all(&buffer[..read]).is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown(Shutdown::Write);
                });
                let (mut from_server, mut to_client) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(Shutdown::Both);
                });
            }
        });
        DroppingRelay { address, dropped }
    }
}

#[test]
fn a_push_whose_connection_drops_mid_upload_goes_on_and_the_image_is_whole() {
    if !can_test("a dropped connection during a push") {
        return;
    }
    let registry = Registry::start(None);
    // Past the first blob's start: the drop lands inside the base layer's upload.
    let relay = DroppingRelay::start(&registry.address, 6 << 20);
    let project = python_project();
    let built = image(project.path(), &shared_store());
    let repository = format!("{}/team/dropped", relay.address);
    let push = in_store(
        project.path(),
        &shared_store(),
        &shared_cache(),
        &["push", "--insecure", &repository],
    );
    assert_eq!(push.code, Some(0), "{}", push.transcript());
    assert!(
        relay.dropped.load(std::sync::atomic::Ordering::SeqCst),
        "the relay never dropped a connection"
    );
    assert!(
        push.stderr.contains("the connection dropped once"),
        "{}",
        push.stderr
    );
    // Every blob the registry holds is whole: a pull into an empty store checks each digest
    // and diff_id, and gives the image built here.
    let store = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let pulled = in_store(
        project.path(),
        store.path(),
        cache.path(),
        &[
            "pull",
            "--insecure",
            &format!("{}/team/dropped@{}", registry.address, push.stdout.trim()),
        ],
    );
    assert_eq!(pulled.code, Some(0), "{}", pulled.transcript());
    assert_eq!(
        diff_ids(&image(project.path(), store.path())),
        diff_ids(&built)
    );
}

/// A token realm for docker-registry's `auth: token` (a test server, as registries' own are
/// services apart): it checks Basic credentials, then signs a JWT with a key whose self-signed
/// certificate the registry trusts, granting what the scope asks for. Each request is logged.
const TOKEN_SERVER: &str = r#"
import base64, http.server, json, os, subprocess, sys, time, urllib.parse
port, key, cert, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], capture_output=True, check=True).stdout
def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
class Realm(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        given = self.headers.get("Authorization", "")
        ok = given == "Basic " + base64.b64encode(b"dev:s3cret").decode()
        with open(log, "a") as out:
            out.write(json.dumps({"scope": query.get("scope", []), "ok": ok}) + "\n")
        if not ok:
            self.send_response(401)
            self.end_headers()
            return
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(der).decode()]}
        claims = {"iss": "envkit-test-issuer", "sub": "dev", "aud": query["service"][0],
                  "exp": now + 600, "nbf": now - 60, "iat": now, "jti": os.urandom(8).hex(),
                  "access": access}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key],
                                   input=signing_input.encode(), capture_output=True, check=True).stdout
        body = json.dumps({"token": signing_input + "." + b64url(signature)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Realm).serve_forever()
"#;

/// A docker-registry that trusts tokens from [`TOKEN_SERVER`], and that server; both stopped
/// when dropped.
pub struct TokenRegistry {
    pub address: String,
    realm_log: PathBuf,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl TokenRegistry {
    pub fn start() -> TokenRegistry {
        let dir = tempfile::tempdir().unwrap();
        let free_port = || {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=envkit-test-issuer", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        let realm_port = free_port();
        let realm_log = dir.path().join("realm.log");
        let script = dir.path().join("realm.py");
        std::fs::write(&script, TOKEN_SERVER).unwrap();
        let realm = Command::new("python3")
            .arg(&script)
            .arg(realm_port.to_string())
            .arg(&key)
            .arg(&cert)
            .arg(&realm_log)
            .stderr(std::fs::File::create(dir.path().join("realm.err")).unwrap())
            .spawn()
            .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {address}\nauth:\n  token:\n    realm: http://127.0.0.1:{realm_port}/token\n\
                 \x20   service: envkit-test-registry\n    issuer: envkit-test-issuer\n\
                 \x20   rootcertbundle: {}\n",
                dir.path().join("data").display(),
                cert.display()
            ),
        )
        .unwrap();
        let registry = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .unwrap();
        let started = TokenRegistry {
            address,
            realm_log,
            children: vec![realm, registry],
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for target in [format!("127.0.0.1:{realm_port}"), started.address.clone()] {
            while std::net::TcpStream::connect(&target).is_err() {
                assert!(Instant::now() < deadline, "{target} did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        started
    }

    /// The realm's requests so far: each scope asked for, and whether the credentials were
    /// right.
    pub fn realm_requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.realm_log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_registry_with_a_token_realm_gets_a_token_for_the_docker_configs_credentials() {
    if !can_test("pushing to a registry with a token realm") {
        return;
    }
    let registry = TokenRegistry::start();
    let project = python_project();
    let repository = format!("{}/team/py", registry.address);
    let dir = tempfile::tempdir().unwrap();
    let docker_config = |password: &str| docker_config(dir.path(), &registry.address, password);
    let with_config = |folder: &Path, store: &Path, cache: &Path, args: &[&str]| {
        run(envkit(project.path(), args)
            .env("ENVKIT_CACHE_DIR", cache)
            .env("ENVKIT_STORE_DIR", store)
            .env("DOCKER_CONFIG", folder))
    };

    let wrong = with_config(
        &docker_config("wrong"),
        &shared_store(),
        &shared_cache(),
        &["push", "--insecure", &repository],
    );
    assert_eq!(wrong.code, Some(2), "{}", wrong.transcript());
    assert!(
        wrong.stderr.contains(&format!(
            "`{}` refused the credentials from the Docker config file",
            registry.address
        )),
        "{}",
        wrong.stderr
    );

    let right = docker_config("s3cret");
    let push = with_config(
        &right,
        &shared_store(),
        &shared_cache(),
        &["push", "--insecure", &repository],
    );
    assert_eq!(push.code, Some(0), "{}", push.transcript());
    let requests = registry.realm_requests();
    assert!(
        requests.iter().any(|request| request["ok"] == true
            && request["scope"][0] == "repository:team/py:pull,push"),
        "a token for pushing was asked for: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|request| request["scope"][0] == "repository:team/py:pull,push"),
        "a push asks for one token that covers it all, the wrong password's tries too: {requests:?}"
    );
    // skopeo, with the same credentials, sees what was pushed.
    let inspected = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds", "dev:s3cret"])
        .arg(format!("docker://{repository}@{}", push.stdout.trim()))
        .output()
        .unwrap();
    assert!(
        inspected.status.success(),
        "{}",
        String::from_utf8_lossy(&inspected.stderr)
    );

    let empty = tempfile::tempdir().unwrap();
    let pull = with_config(
        &right,
        &empty.path().join("store"),
        &empty.path().join("cache"),
        &[
            "pull",
            "--insecure",
            &format!("{repository}@{}", push.stdout.trim()),
        ],
    );
    assert_eq!(pull.code, Some(0), "{}", pull.transcript());
    assert!(
        registry.realm_requests().iter().any(
            |request| request["ok"] == true && request["scope"][0] == "repository:team/py:pull"
        ),
        "a token for pulling was asked for"
    );
}
