//! `base image="REF"`: images made by buildah and podman from a busybox root, pushed to
//! docker-registry on loopback (uncompressed, gzip and zstd layers, whiteouts, an image index
//! with two platforms), as environments' bases; bad input refused with the store unchanged;
//! a registry that asks for credentials (root: podman and buildah here run as root).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Outcome, envkit, run};
use crate::engines::Podman;
use crate::registry::{Registry, TokenRegistry, can_test, docker_config};

/// A busybox root: the shell and a few tools, root's passwd entry, a file and a folder the
/// upper layer of some images deletes and replaces.
fn busybox_root(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for folder in ["bin", "etc", "srv", "opt/old/sub"] {
        std::fs::create_dir_all(root.join(folder)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for tool in [
        "sh", "ls", "cat", "echo", "pwd", "mkdir", "rm", "id", "env", "httpd", "wget",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(root.join("etc/doomed"), "deleted above\n").unwrap();
    std::fs::write(root.join("opt/old/sub/file"), "replaced above\n").unwrap();
    root
}

/// buildah with a storage of its own under `dir`.
fn buildah(dir: &Path, args: &[&str]) -> String {
    let outcome = run(Command::new("buildah")
        .arg("--root")
        .arg(dir.join("buildah/root"))
        .arg("--runroot")
        .arg(dir.join("buildah/run"))
        .env("STORAGE_DRIVER", "vfs")
        .env("BUILDAH_ISOLATION", "chroot")
        .args(args));
    assert_eq!(
        outcome.code,
        Some(0),
        "buildah {args:?}: {}",
        outcome.transcript()
    );
    outcome.stdout.trim().to_string()
}

/// Commits `root` as a one-layer image for `arch` and pushes it to `destination`.
fn push_busybox(dir: &Path, root: &Path, arch: &str, destination: &str) {
    let container = buildah(dir, &["from", "scratch"]);
    buildah(dir, &["copy", &container, &root.display().to_string(), "/"]);
    buildah(
        dir,
        &[
            "config",
            "--arch",
            arch,
            "--env",
            "GREETING=hello from the image",
            "--workingdir",
            "/srv",
            "--cmd",
            "sh -c 'echo the image cmd'",
            &container,
        ],
    );
    let local = format!("localhost/busybox-{arch}:latest");
    buildah(dir, &["commit", "-q", &container, &local]);
    buildah(
        dir,
        &[
            "push",
            "--tls-verify=false",
            &local,
            &format!("docker://{destination}"),
        ],
    );
}

/// Copies `from` to `to` (both `ADDRESS/REPO:TAG`) with its layers uncompressed: skopeo
/// writes them to a `dir:` layout, and the test uploads that as it is (every tool of the
/// containers family compresses what it sends to a registry).
fn uncompressed_copy(dir: &Path, from: &str, to: &str) {
    let layout = dir.join(format!("uncompressed-{}", to.replace(['/', ':'], "-")));
    let copied = run(Command::new("skopeo")
        .args(["copy", "-q", "--src-tls-verify=false", "--dest-decompress"])
        .arg(format!("docker://{from}"))
        .arg(format!("dir:{}", layout.display())));
    assert_eq!(copied.code, Some(0), "{}", copied.transcript());
    let (address, rest) = to.split_once('/').unwrap();
    let (repository, tag) = rest.rsplit_once(':').unwrap();
    let manifest = std::fs::read(layout.join("manifest.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let blobs = std::iter::once(&parsed["config"]).chain(parsed["layers"].as_array().unwrap());
    for blob in blobs {
        let digest = blob["digest"].as_str().unwrap();
        let bytes = std::fs::read(layout.join(digest.trim_start_matches("sha256:"))).unwrap();
        let started = ureq::post(format!("http://{address}/v2/{repository}/blobs/uploads/"))
            .send_empty()
            .unwrap();
        let location = started.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') {
            format!("http://{address}{location}")
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        ureq::put(format!("{location}{separator}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .send(&bytes[..])
            .unwrap();
    }
    ureq::put(format!("http://{address}/v2/{repository}/manifests/{tag}"))
        .header("Content-Type", parsed["mediaType"].as_str().unwrap())
        .send(&manifest[..])
        .unwrap();
}

/// The manifest (or index) `reference` names, raw, as skopeo reads it.
fn raw_manifest(reference: &str) -> serde_json::Value {
    let raw = run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    assert_eq!(raw.code, Some(0), "{}", raw.transcript());
    serde_json::from_str(&raw.stdout).unwrap()
}

/// The digest of the manifest `reference` names (a single-platform image), as skopeo says.
fn digest_of(reference: &str) -> String {
    let inspect = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    assert_eq!(inspect.code, Some(0), "{}", inspect.transcript());
    let parsed: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    parsed["Digest"].as_str().unwrap().to_string()
}

/// A project folder whose env.kdl starts from `reference`, with envkit's folders under
/// `state`.
struct Project {
    dir: tempfile::TempDir,
    state: PathBuf,
    docker_config: Option<PathBuf>,
}

impl Project {
    fn new(env: &str, state: &Path) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("env.kdl"), env).unwrap();
        Project {
            dir,
            state: state.to_path_buf(),
            docker_config: None,
        }
    }

    fn env(&self, args: &[&str]) -> Outcome {
        let mut command = envkit(self.dir.path(), args);
        command
            .env("ENVKIT_CACHE_DIR", self.state.join("cache"))
            .env("ENVKIT_STORE_DIR", self.state.join("store"))
            .env("ENVKIT_DATA_DIR", self.state.join("data"))
            .env("ENVKIT_RUNTIME_DIR", self.state.join("run"))
            .env(
                "DOCKER_CONFIG",
                self.docker_config
                    .clone()
                    .unwrap_or_else(|| self.state.join("no-docker-config")),
            );
        run(&mut command)
    }

    fn lock(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("env.lock")).unwrap()
    }

    fn diff_ids(&self) -> Vec<String> {
        let inspect = self.env(&["inspect", "--json"]);
        let image: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
        image["image"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|layer| layer["diff_id"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Project {
    /// A test that fails halfway leaves no peer running.
    fn drop(&mut self) {
        if std::fs::read_to_string(self.dir.path().join("env.kdl"))
            .is_ok_and(|env| env.contains("peer "))
        {
            let _ = self.env(&["down"]);
        }
    }
}

fn base(reference: &str) -> String {
    format!("base image=\"{reference}\"\n")
}

/// What the checks below print inside a session.
const LOOK: &str =
    "echo \"$GREETING\"; pwd; ls /opt/old; cat /etc/doomed 2>/dev/null || echo no doomed";

#[test]
fn images_made_by_other_tools_are_bases_with_their_layers_whiteouts_and_config() {
    if !can_test("registry images as bases") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(None);
    let address = registry.address.clone();
    let root = busybox_root(dir.path());
    push_busybox(
        dir.path(),
        &root,
        "amd64",
        &format!("{address}/busybox:gzip"),
    );
    uncompressed_copy(
        dir.path(),
        &format!("{address}/busybox:gzip"),
        &format!("{address}/busybox:plain"),
    );

    // podman builds on it, deleting a file and replacing a folder (whiteouts), and pushes
    // the result with its new layer in zstd, and again in gzip.
    let podman = Podman::trusting(&[&address]);
    std::fs::write(
        dir.path().join("Containerfile"),
        format!(
            "FROM {address}/busybox:plain\nRUN rm /etc/doomed && rm -rf /opt/old && mkdir /opt/old && echo fresh > /opt/old/fresh\n"
        ),
    )
    .unwrap();
    // Built once per compression: pushing one image twice would send the blob it already
    // compressed once.
    for format in ["zstd", "gzip"] {
        let local = format!("localhost/whiteouts-{format}");
        let built = podman.run(&[
            "build",
            "--no-cache",
            "--format",
            "oci",
            "-t",
            &local,
            "-f",
            &dir.path().join("Containerfile").display().to_string(),
            &dir.path().display().to_string(),
        ]);
        assert_eq!(built.code, Some(0), "{}", built.transcript());
        let pushed = podman.run(&[
            "push",
            "--compression-format",
            format,
            &local,
            &format!("{address}/whiteouts:{format}"),
        ]);
        assert_eq!(pushed.code, Some(0), "{}", pushed.transcript());
    }
    let media_types = |reference: &str| -> Vec<String> {
        raw_manifest(reference)["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|layer| layer["mediaType"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        media_types(&format!("{address}/busybox:plain")),
        ["application/vnd.oci.image.layer.v1.tar"]
    );
    assert_eq!(
        media_types(&format!("{address}/whiteouts:zstd"))
            .last()
            .unwrap(),
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        media_types(&format!("{address}/whiteouts:gzip"))
            .last()
            .unwrap(),
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // Both kinds of whiteout are in podman's layer: a file's, and an opaque folder's.
    let top = raw_manifest(&format!("{address}/whiteouts:gzip"))["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = ureq::get(format!("http://{address}/v2/whiteouts/blobs/{top}"))
        .call()
        .unwrap()
        .into_body()
        .read_to_vec()
        .unwrap();
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
    for entry in archive.entries().unwrap() {
        names.push(entry.unwrap().path().unwrap().display().to_string());
    }
    for whiteout in ["etc/.wh.doomed", "opt/old/.wh..wh..opq"] {
        assert!(
            names.iter().any(|n| n == whiteout),
            "{whiteout} in {names:?}"
        );
    }

    let state = tempfile::tempdir().unwrap();
    for (tag, expected) in [
        (
            "busybox:plain",
            "hello from the image\n/srv\nsub\ndeleted above\n",
        ),
        (
            "whiteouts:zstd",
            "hello from the image\n/srv\nfresh\nno doomed\n",
        ),
        (
            "whiteouts:gzip",
            "hello from the image\n/srv\nfresh\nno doomed\n",
        ),
    ] {
        let reference = format!("{address}/{tag}");
        let project = Project::new(&base(&reference), state.path());
        let locked = project.env(&["lock"]);
        assert_eq!(locked.code, Some(0), "{}", locked.transcript());
        let digest = digest_of(&reference);
        assert!(
            project
                .lock()
                .contains(&format!("image \"{reference}\" digest=\"{digest}\"")),
            "{}",
            project.lock()
        );
        let ran = project.env(&["run", "--", "sh", "-c", LOOK]);
        assert_eq!(ran.code, Some(0), "{tag}: {}", ran.transcript());
        assert_eq!(ran.stdout, expected, "{tag}: {}", ran.transcript());
        // The command replaces the image's Cmd; the env file's vars win over its Env.
        let overridden = Project::new(
            &format!(
                "{}vars {{\n    GREETING \"from env.kdl\"\n}}\n",
                base(&reference)
            ),
            state.path(),
        );
        let ran = overridden.env(&["run", "--", "sh", "-c", "echo $GREETING"]);
        assert_eq!(ran.stdout, "from env.kdl\n", "{}", ran.transcript());
    }

    // Two empty stores give the same layers.
    let reference = format!("{address}/whiteouts:zstd");
    let first = Project::new(&base(&reference), state.path());
    let other_state = tempfile::tempdir().unwrap();
    let second = Project::new(&base(&reference), other_state.path());
    for project in [&first, &second] {
        let built = project.env(&["build"]);
        assert_eq!(built.code, Some(0), "{}", built.transcript());
    }
    assert_eq!(first.diff_ids(), second.diff_ids());
    assert_eq!(first.diff_ids().len(), 2);
    let verified = first.env(&["verify"]);
    assert_eq!(verified.code, Some(0), "{}", verified.transcript());

    // An image index with two platforms: the lock pins this machine's.
    push_busybox(
        dir.path(),
        &root,
        "arm64",
        &format!("{address}/busybox:arm64"),
    );
    for (list, members) in [
        ("both", vec!["busybox:plain", "busybox:arm64"]),
        ("arm-only", vec!["busybox:arm64"]),
    ] {
        buildah(dir.path(), &["manifest", "create", list]);
        for member in members {
            buildah(
                dir.path(),
                &[
                    "manifest",
                    "add",
                    "--tls-verify=false",
                    list,
                    &format!("docker://{address}/{member}"),
                ],
            );
        }
        buildah(
            dir.path(),
            &[
                "manifest",
                "push",
                "--all",
                "--tls-verify=false",
                list,
                &format!("docker://{address}/multi:{list}"),
            ],
        );
    }
    let index = raw_manifest(&format!("{address}/multi:both"));
    let amd64 = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["platform"]["architecture"] == "amd64")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let project = Project::new(&base(&format!("{address}/multi:both")), state.path());
    let ran = project.env(&["run", "--", "sh", "-c", "echo $GREETING"]);
    assert_eq!(ran.stdout, "hello from the image\n", "{}", ran.transcript());
    assert!(
        project.lock().contains(&format!("digest=\"{amd64}\"")),
        "{}",
        project.lock()
    );
    let arm_only = Project::new(&base(&format!("{address}/multi:arm-only")), state.path());
    let refused = arm_only.env(&["lock"]);
    assert_ne!(refused.code, Some(0), "{}", refused.transcript());
    assert!(
        refused.stderr.contains("has no image for linux/amd64")
            && refused.stderr.contains("it has images for linux/arm64"),
        "{}",
        refused.transcript()
    );
}

#[test]
fn bad_input_is_a_clear_error_and_the_store_is_unchanged() {
    if !can_test("registry images as bases, refused") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(None);
    let address = registry.address.clone();
    let root = busybox_root(dir.path());
    push_busybox(dir.path(), &root, "amd64", &format!("{address}/busybox:1"));
    let state = tempfile::tempdir().unwrap();
    let layers_in_store = || {
        std::fs::read_dir(state.path().join("store/layers-v1"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    };

    let missing = Project::new(&base(&format!("{address}/busybox:nope")), state.path());
    let refused = missing.env(&["lock"]);
    assert_ne!(refused.code, Some(0), "{}", refused.transcript());
    assert!(
        refused.stderr.contains("busybox:nope") || refused.stderr.contains("nope"),
        "{}",
        refused.transcript()
    );
    assert!(!missing.dir.path().join("env.lock").exists());

    let with_packages = Project::new(
        &format!("{}packages \"jq\"\n", base(&format!("{address}/busybox:1"))),
        state.path(),
    );
    // busybox has no dpkg and no os-release: nothing to install Debian's packages with.
    let refused = with_packages.env(&["lock"]);
    assert_ne!(refused.code, Some(0), "{}", refused.transcript());
    assert!(
        refused
            .stderr
            .contains("`packages` cannot be installed on `")
            && refused.stderr.contains("no /etc/os-release"),
        "{}",
        refused.transcript()
    );
    assert!(!with_packages.dir.path().join("env.lock").exists());

    // The tag moves: `--check` says so, a plain lock keeps the pin, `--update` moves it.
    let pinned = Project::new(&base(&format!("{address}/busybox:1")), state.path());
    assert_eq!(pinned.env(&["lock"]).code, Some(0));
    let first_digest = digest_of(&format!("{address}/busybox:1"));
    std::fs::write(root.join("etc/moved"), "the tag moved\n").unwrap();
    push_busybox(dir.path(), &root, "amd64", &format!("{address}/busybox:1"));
    let moved_digest = digest_of(&format!("{address}/busybox:1"));
    assert_ne!(first_digest, moved_digest);
    let check = pinned.env(&["lock", "--check"]);
    assert_ne!(check.code, Some(0), "{}", check.transcript());
    assert!(
        check
            .stderr
            .contains(&format!("the registry now gives {moved_digest}")),
        "{}",
        check.transcript()
    );
    assert_eq!(pinned.env(&["lock"]).code, Some(0));
    assert!(pinned.lock().contains(&first_digest), "{}", pinned.lock());
    let ran = pinned.env(&["run", "--", "ls", "/etc"]);
    assert!(
        !ran.stdout.contains("moved"),
        "the pin, not the tag: {}",
        ran.transcript()
    );
    let updated = pinned.env(&["lock", "--update"]);
    assert_eq!(updated.code, Some(0), "{}", updated.transcript());
    assert!(
        updated.stderr.contains(&format!(
            "~ image {address}/busybox:1 {first_digest} -> {moved_digest}"
        )),
        "{}",
        updated.transcript()
    );
    let ran = pinned.env(&["run", "--", "cat", "/etc/moved"]);
    assert_eq!(ran.stdout, "the tag moved\n", "{}", ran.transcript());
    let layers_before = layers_in_store();

    // A blob whose bytes changed in the registry.
    std::fs::write(root.join("etc/tampered"), "another layer\n").unwrap();
    push_busybox(dir.path(), &root, "amd64", &format!("{address}/busybox:2"));
    let manifest = raw_manifest(&format!("{address}/busybox:2"));
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = registry.blob_path(&layer);
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&blob, bytes).unwrap();
    let tampered = Project::new(&base(&format!("{address}/busybox:2")), state.path());
    let refused = tampered.env(&["build"]);
    assert_ne!(refused.code, Some(0), "{}", refused.transcript());
    assert!(refused.stderr.contains(&layer), "{}", refused.transcript());
    assert_eq!(
        layers_in_store(),
        layers_before,
        "nothing of it in the store"
    );
    let gc = tampered.env(&["gc", "--dry-run"]);
    assert_eq!(gc.code, Some(0), "{}", gc.transcript());
    assert!(
        !gc.stderr.contains("would delete layer"),
        "{}",
        gc.transcript()
    );
}

#[test]
fn a_registry_that_asks_for_credentials_serves_a_base_with_the_docker_configs() {
    if !can_test("a registry image as a base, with credentials") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let basic = Registry::with_password(dir.path(), "s3cret");
    a_private_base_needs_the_docker_configs_credentials(&dir.path().join("basic"), &basic.address);

    // A registry that hands out tokens from a realm of its own: envkit asks it for a pull
    // token with the Docker config's credentials.
    let token = TokenRegistry::start();
    a_private_base_needs_the_docker_configs_credentials(&dir.path().join("token"), &token.address);
    let requests = token.realm_requests();
    assert!(
        requests.iter().any(|request| request["ok"] == true
            && request["scope"][0] == "repository:team/private:pull"),
        "{requests:?}"
    );
}

/// Pushes a busybox image to `address` (which wants `dev:s3cret`) and checks that envkit
/// locks and runs it with the right Docker config only, saying which registry refused.
fn a_private_base_needs_the_docker_configs_credentials(dir: &Path, address: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let root = busybox_root(dir);
    let container = buildah(dir, &["from", "scratch"]);
    buildah(dir, &["copy", &container, &root.display().to_string(), "/"]);
    buildah(dir, &["commit", "-q", &container, "localhost/private"]);
    buildah(
        dir,
        &[
            "push",
            "--creds",
            "dev:s3cret",
            "--tls-verify=false",
            "localhost/private",
            &format!("docker://{address}/team/private:1"),
        ],
    );
    let state = dir.join("state");
    let mut project = Project::new(&base(&format!("{address}/team/private:1")), &state);
    let anonymous = project.env(&["lock"]);
    assert_ne!(anonymous.code, Some(0), "{}", anonymous.transcript());
    assert!(
        anonymous.stderr.contains("wants credentials"),
        "{}",
        anonymous.transcript()
    );
    project.docker_config = Some(docker_config(dir, address, "wrong"));
    let wrong = project.env(&["lock"]);
    assert_ne!(wrong.code, Some(0), "{}", wrong.transcript());
    assert!(wrong.stderr.contains(address), "{}", wrong.transcript());
    assert!(!project.dir.path().join("env.lock").exists());
    project.docker_config = Some(docker_config(dir, address, "s3cret"));
    let ran = project.env(&["run", "--", "cat", "/etc/doomed"]);
    assert_eq!(ran.code, Some(0), "{}", ran.transcript());
    assert_eq!(ran.stdout, "deleted above\n");
}

/// A web server image as image makers write them: an Entrypoint script that counts its starts
/// in its VOLUME and execs busybox's httpd on the port its Cmd names, listening on every
/// address, as the User `www` that owns the volume's folder (and writes in a home the image
/// lacks); the port exposed; a page of its own in that folder.
fn push_web_server(dir: &Path, destination: &str) {
    let root = busybox_root(&dir.join("web"));
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(root.join("data/index.html"), "page from the image\n").unwrap();
    std::fs::write(
        root.join("start.sh"),
        "touch \"$HOME/.started\" && echo \"started in $(pwd) with $GREETING as $(id -un)\" >> /data/starts\nexec httpd -f -v -p \"$1\" -h /data\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nwww:x:1000:1000:web server:/home/www:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nwww:x:1000:\n").unwrap();
    let container = buildah(dir, &["from", "scratch"]);
    buildah(dir, &["copy", &container, &root.display().to_string(), "/"]);
    // The service's user owns its data folder, as the image's makers arrange (an added
    // tarball keeps its owners).
    let data = dir.join("web-data.tar");
    let packed = run(Command::new("tar")
        .args(["--owner=1000", "--group=1000", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&data)
        .arg("data"));
    assert_eq!(packed.code, Some(0), "{}", packed.transcript());
    buildah(dir, &["add", &container, &data.display().to_string(), "/"]);
    buildah(
        dir,
        &[
            "config",
            "--env",
            "GREETING=the image's greeting",
            "--workingdir",
            "/srv",
            "--entrypoint",
            // By name, found on the PATH, as official images name theirs.
            r#"["sh", "/start.sh"]"#,
            "--cmd",
            "8080",
            "--port",
            "8080/tcp",
            "--volume",
            "/data",
            "--user",
            "www",
            &container,
        ],
    );
    buildah(dir, &["commit", "-q", &container, "localhost/web:latest"]);
    buildah(
        dir,
        &[
            "push",
            "--tls-verify=false",
            "localhost/web:latest",
            &format!("docker://{destination}"),
        ],
    );
}

#[test]
fn a_peer_from_an_image_runs_its_entrypoint_on_its_exposed_port_with_its_volume() {
    if !can_test("peers from registry images") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(None);
    let address = registry.address.clone();
    push_web_server(dir.path(), &format!("{address}/web:1"));
    push_busybox(
        dir.path(),
        &busybox_root(dir.path()),
        "amd64",
        &format!("{address}/busybox:1"),
    );
    // Nothing but the image and a readiness probe: the service, its port and its volume
    // come from the image's config.
    let env = format!(
        "{}peer \"web\" {{\n    base image=\"{address}/web:1\"\n    vars {{\n        GREETING \"env.kdl's greeting\"\n    }}\n    ready tcp=8080\n}}\n",
        base(&format!("{address}/busybox:1"))
    );
    let project = Project::new(&env, &dir.path().join("state"));
    let fetch = "wget -q -O - http://web:8080/index.html && wget -q -O - http://web:8080/starts";
    // What the main environment gets from the peer: the image's page, and a line per start.
    let served = |outcome: &Outcome, starts: usize| {
        let line = "started in /srv with env.kdl's greeting as www\n";
        assert_eq!(
            outcome.stdout,
            format!("page from the image\n{}", line.repeat(starts)),
            "{}",
            outcome.transcript()
        );
    };

    let first = project.env(&["run", "--", "sh", "-c", fetch]);
    assert_eq!(first.code, Some(0), "{}", first.transcript());
    served(&first, 1);
    let ps = project.env(&["ps"]);
    assert_eq!(ps.code, Some(0), "{}", ps.transcript());
    assert!(
        ps.stdout.contains("web") && ps.stdout.contains("8080"),
        "{}",
        ps.transcript()
    );
    // Described for Compose, the peer is the image as its makers published it, pinned:
    // nothing to push, its port and volume carried over.
    let compose = project.env(&["export", "--compose", "-o", "-"]);
    assert_eq!(compose.code, Some(0), "{}", compose.transcript());
    let web_digest = digest_of(&format!("{address}/web:1"));
    for expected in [
        format!("image: \"{address}/web:1@{web_digest}\""),
        "8080".to_string(),
        "/data".to_string(),
    ] {
        assert!(
            compose.stdout.contains(&expected),
            "{expected}: {}",
            compose.transcript()
        );
    }
    // The service's output is the peer's log: httpd -v logs each response.
    let logs = project.env(&["logs", "web"]);
    assert!(
        logs.stdout.contains("response:200"),
        "{}",
        logs.transcript()
    );

    // The volume outlives the peer: the second start finds the first one's line.
    let down = project.env(&["down"]);
    assert_eq!(down.code, Some(0), "{}", down.transcript());
    let up = project.env(&["up"]);
    assert_eq!(up.code, Some(0), "{}", up.transcript());
    let second = project.env(&["run", "--", "sh", "-c", fetch]);
    served(&second, 2);
    let volumes = project.env(&["volume", "ls"]);
    assert!(
        volumes.stdout.contains("web.data"),
        "{}",
        volumes.transcript()
    );

    // `down --volumes` deletes the volume the image declared, as any other.
    let gone = project.env(&["down", "--volumes", "--yes"]);
    assert_eq!(gone.code, Some(0), "{}", gone.transcript());
    let up = project.env(&["up"]);
    assert_eq!(up.code, Some(0), "{}", up.transcript());
    let fresh = project.env(&["run", "--", "sh", "-c", fetch]);
    served(&fresh, 1);
    let down = project.env(&["down"]);
    assert_eq!(down.code, Some(0), "{}", down.transcript());

    // The same, committed locks and all, for an unprivileged user: the layers unpack with
    // their owners into the user's subordinate range, and the service runs as `www` there.
    if !crate::rootless::can_test("a peer from a registry image, rootless") {
        return;
    }
    let user = crate::rootless::ensure_user(crate::rootless::WITH_RANGE, true);
    let folders = crate::rootless::UserFolders::new(&user, &env, &project.lock());
    let web_lock = std::fs::read_to_string(project.dir.path().join("env.web.lock")).unwrap();
    folders.add_file(&user, "env.web.lock", &web_lock);
    let rootless = folders.env_as(&user, &["run", "--locked", "--", "sh", "-c", fetch]);
    assert_eq!(rootless.code, Some(0), "{}", rootless.transcript());
    served(&rootless, 1);
    let sub_uid = std::fs::read_to_string("/etc/subuid")
        .unwrap()
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next() == Some(user.name.as_str()))
                .then(|| fields.next().unwrap().parse::<u32>().unwrap())
        })
        .unwrap();
    let owners: Vec<u32> = std::fs::read_dir(folders.store().join("layers-v1"))
        .unwrap()
        .map(|entry| entry.unwrap().path().join("tree/data/index.html"))
        .filter(|page| page.exists())
        .map(|page| std::os::unix::fs::MetadataExt::uid(&page.metadata().unwrap()))
        .collect();
    assert_eq!(owners, [sub_uid + 1000], "www's page, in the user's range");
    let down = folders.env_as(&user, &["down"]);
    assert_eq!(down.code, Some(0), "{}", down.transcript());
}

/// A Debian root made by mmdebstrap (minbase, from the machine's apt sources), imported by
/// podman as a one-layer image and pushed to `destination`.
fn push_debian(dir: &Path, podman: &Podman, destination: &str) {
    let tarball = dir.join("debian-root.tar");
    let made = run(Command::new("mmdebstrap")
        .args(["--quiet", "--variant=minbase", "bookworm"])
        .arg(&tarball));
    assert_eq!(made.code, Some(0), "mmdebstrap: {}", made.transcript());
    let imported = podman.run(&[
        "import",
        "--change",
        "CMD [\"/bin/bash\"]",
        &tarball.display().to_string(),
        "localhost/debian-root:12",
    ]);
    assert_eq!(imported.code, Some(0), "{}", imported.transcript());
    let pushed = podman.run(&["push", "localhost/debian-root:12", destination]);
    assert_eq!(pushed.code, Some(0), "{}", pushed.transcript());
}

#[test]
fn debian_packages_go_on_a_debian_image_solved_against_what_it_has() {
    if !can_test("Debian packages on a registry image") {
        return;
    }
    if Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            !crate::common::must_work(),
            "ENVKIT_MUST_WORK=1 but this test needs mmdebstrap (scripts/setup installs it)"
        );
        eprintln!("skipped: needs mmdebstrap");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(None);
    let address = registry.address.clone();
    let podman = Podman::trusting(&[&address]);
    let reference = format!("{address}/debian:12");
    push_debian(dir.path(), &podman, &reference);
    let env = format!("{}packages \"jq\"\n", base(&reference));

    let project = Project::new(&env, &dir.path().join("state-1"));
    let ran = project.env(&["run", "--", "jq", "--version"]);
    assert_eq!(ran.code, Some(0), "{}", ran.transcript());
    assert!(ran.stdout.starts_with("jq-1."), "{}", ran.transcript());
    // The lock pins the image and the image's release, and only what the image lacks.
    let lock = project.lock();
    let digest = digest_of(&reference);
    assert!(
        lock.contains(&format!(
            "image \"{reference}\" digest=\"{digest}\" release=\"bookworm\""
        )),
        "{lock}"
    );
    for package in ["jq", "libjq1", "libonig5"] {
        assert!(
            lock.contains(&format!("package \"{package}\"")),
            "{package}: {lock}"
        );
    }
    let inspect = project.env(&["inspect", "--json"]);
    let inspected: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(inspected["lock"]["image"]["digest"], digest.as_str());
    assert_eq!(inspected["lock"]["release"], "bookworm");
    for in_the_image in ["libc6", "dpkg", "bash"] {
        assert!(
            !lock.contains(&format!("package \"{in_the_image}\"")),
            "{in_the_image} is the image's: {lock}"
        );
    }
    // dpkg in the environment knows both what the image had and what was added.
    let dpkg = project.env(&[
        "run",
        "--",
        "dpkg-query",
        "-W",
        "-f",
        "${Package} ${Status}\\n",
        "jq",
        "libc6",
    ]);
    assert_eq!(dpkg.code, Some(0), "{}", dpkg.transcript());
    assert_eq!(
        dpkg.stdout,
        "jq install ok installed\nlibc6 install ok installed\n",
        "{}",
        dpkg.transcript()
    );

    // Another empty store builds the same layers from the committed lock.
    let again = Project::new(&env, &dir.path().join("state-2"));
    std::fs::write(again.dir.path().join("env.lock"), &lock).unwrap();
    let built = again.env(&["build", "--locked"]);
    assert_eq!(built.code, Some(0), "{}", built.transcript());
    assert_eq!(again.diff_ids(), project.diff_ids());

    // setup, mount, volume and vars work on the image as on any environment.
    let fuller = Project::new(
        &format!(
            "{env}setup \"jq -n '{{made: \\\"by setup\\\"}}' > /etc/made.json\"\n\
             mount \".\" at=\"/work\"\nvolume \"cache\" at=\"/cache\"\n\
             vars {{\n    FROM_KDL \"yes\"\n}}\n"
        ),
        &dir.path().join("state-1"),
    );
    let inside = "jq -r .made /etc/made.json && ls /work/env.kdl && echo \"$FROM_KDL\" && \
                  cat /cache/kept 2>/dev/null; echo kept > /cache/kept";
    let first = fuller.env(&["run", "--", "sh", "-c", inside]);
    assert_eq!(first.code, Some(0), "{}", first.transcript());
    assert_eq!(
        first.stdout,
        "by setup\n/work/env.kdl\nyes\n",
        "{}",
        first.transcript()
    );
    let second = fuller.env(&["run", "--", "sh", "-c", inside]);
    assert_eq!(
        second.stdout,
        "by setup\n/work/env.kdl\nyes\nkept\n",
        "{}",
        second.transcript()
    );

    // An unprivileged user locks and builds it too: the image pulled into their range, the
    // same lock, jq installed by the image's dpkg in their namespace.
    if !crate::rootless::can_test("Debian packages on a registry image, rootless") {
        return;
    }
    let user = crate::rootless::ensure_user(crate::rootless::WITH_RANGE, true);
    let folders = crate::rootless::UserFolders::new(&user, &env, &lock);
    std::fs::remove_file(folders.project().join("env.lock")).unwrap();
    let rootless = folders.env_as(&user, &["run", "--", "jq", "--version"]);
    assert_eq!(rootless.code, Some(0), "{}", rootless.transcript());
    assert!(
        rootless.stdout.starts_with("jq-1."),
        "{}",
        rootless.transcript()
    );
    assert_eq!(
        std::fs::read_to_string(folders.project().join("env.lock")).unwrap(),
        lock,
        "the user's lock is root's"
    );
}
