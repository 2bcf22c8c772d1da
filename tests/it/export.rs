//! `env export`: without an image it says to build (no network); with one (root, network
//! tier) it writes the same OCI archive to a file and to stdout, which skopeo reads and umoci
//! unpacks into a root file system.

use std::path::{Path, PathBuf};
use std::process::Command;

use envkit::solve::fixture::{FixtureRepository, minimal_archive};

use crate::common::{Outcome, envkit, must_work, network_tier, run};

/// The `.deb` cache the build tests share (see `build.rs`).
fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envkit-shared-cache")
}

/// A store kept between runs for tests that only read images (never for `env gc`), so the
/// image below is built once.
fn shared_store() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envkit-shared-store")
}

/// Root, the mirror, skopeo and umoci, or a printed reason to skip (unless
/// ENVKIT_MUST_WORK=1).
fn can_export(what: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        assert!(!must_work(), "ENVKIT_MUST_WORK=1 but {what} needs root");
        eprintln!("skipped: {what} needs root");
        return false;
    }
    for tool in ["skopeo", "umoci"] {
        if Command::new(tool).arg("--version").output().is_err() {
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

fn env_in(project: &Path, store: &Path, args: &[&str]) -> Outcome {
    let mut command = envkit(project, args);
    command
        .env("ENVKIT_CACHE_DIR", shared_cache())
        .env("ENVKIT_STORE_DIR", store);
    run(&mut command)
}

#[test]
fn export_without_an_image_says_to_build_first() {
    let dir = tempfile::tempdir().unwrap();
    let repository = FixtureRepository::new(&dir.path().join("mirror"));
    repository.write_keyring(&dir.path().join("archive.gpg"));
    repository.suite("bookworm", &minimal_archive(&repository));
    std::fs::write(
        dir.path().join("env.kdl"),
        format!(
            "name \"app\"\nbase \"debian:bookworm\"\nmirror \"{}\" keyring=\"archive.gpg\"\n",
            repository.url()
        ),
    )
    .unwrap();
    let outcome = run(envkit(dir.path(), &["export"])
        .env("ENVKIT_CACHE_DIR", dir.path().join("cache"))
        .env("ENVKIT_STORE_DIR", dir.path().join("store")));
    assert_eq!(outcome.code, Some(2), "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("error: `app:") && outcome.stderr.contains("` is not built"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome
            .stderr
            .contains("hint: run `env build` first, then `env export`"),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stdout.is_empty());
    let archives = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".oci.tar")
        })
        .count();
    assert_eq!(archives, 0);
}

#[test]
fn an_exported_image_is_read_by_skopeo_and_unpacked_by_umoci() {
    if !can_export("exporting a bookworm image") {
        return;
    }
    // The env of build.rs's bookworm test.
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("env.kdl"),
        "name \"py\"\nbase \"debian:bookworm\"\npackages \"python3\"\n",
    )
    .unwrap();
    let store = shared_store();
    let build = env_in(project.path(), &store, &["build"]);
    assert_eq!(build.code, Some(0), "{}", build.transcript());
    let inspect = env_in(project.path(), &store, &["inspect", "--json"]);
    let image: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let name = image["image"]["name"].as_str().unwrap().to_string();
    let (repository, tag) = name.split_once(':').unwrap();

    let export = env_in(project.path(), &store, &["export"]);
    assert_eq!(export.code, Some(0), "{}", export.transcript());
    let archive = project.path().join(format!("{repository}-{tag}.oci.tar"));
    assert!(archive.is_file(), "{}", export.stderr);
    assert!(
        export
            .stderr
            .contains(&format!("exported {name} to {repository}-{tag}.oci.tar")),
        "{}",
        export.stderr
    );
    let bytes = std::fs::read(&archive).unwrap();
    let mut left: Vec<String> = std::fs::read_dir(project.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "env.kdl",
            "env.lock",
            &format!("{repository}-{tag}.oci.tar")
        ],
        "no temporary file is left"
    );

    // The same bytes on stdout (each export takes some 20 s in a debug build, so only two).
    let mut command = envkit(project.path(), &["export", "-o", "-"]);
    command
        .env("ENVKIT_CACHE_DIR", shared_cache())
        .env("ENVKIT_STORE_DIR", &store);
    let streamed = command.output().unwrap();
    assert!(
        streamed.status.success(),
        "{}",
        String::from_utf8_lossy(&streamed.stderr)
    );
    assert!(streamed.stdout == bytes, "stdout differs from the file");
    // skopeo reads it as an OCI archive.
    let inspect = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        inspected["Architecture"],
        envkit::paths::debian_architecture(),
        "{inspected}"
    );
    assert_eq!(inspected["Os"], "linux");
    assert_eq!(
        inspected["Layers"].as_array().unwrap().len(),
        2,
        "{inspected}"
    );
    assert!(
        export
            .stderr
            .contains(inspected["Digest"].as_str().unwrap()),
        "the manifest digest: {inspected}\n{}",
        export.stderr
    );

    // umoci unpacks the layout (it checks every blob's digest and each layer's diff_id). Its
    // tags take no `:`, and the archive names the image `NAME:TAG` (as podman load wants), so
    // skopeo first copies the image, blobs unchanged, into a layout under a plain tag.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let copy = Command::new("skopeo")
        .arg("copy")
        .arg("--quiet")
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("oci:{}:unpacked", layout.display()))
        .output()
        .unwrap();
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    for layer in inspected["Layers"].as_array().unwrap() {
        let hex = layer.as_str().unwrap().trim_start_matches("sha256:");
        assert!(
            layout.join("blobs/sha256").join(hex).is_file(),
            "skopeo changed the layer blob {hex}"
        );
    }
    let bundle = work.path().join("bundle");
    let unpack = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:unpacked", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        unpack.status.success(),
        "{}",
        String::from_utf8_lossy(&unpack.stderr)
    );
    let rootfs = bundle.join("rootfs");
    for path in [
        "usr/bin/python3",
        "bin/sh",
        "usr/bin/dpkg",
        "var/lib/dpkg/status",
    ] {
        assert!(
            rootfs.join(path).symlink_metadata().is_ok(),
            "{path} is missing from the unpacked image"
        );
    }
    let status = std::fs::read_to_string(rootfs.join("var/lib/dpkg/status")).unwrap();
    assert!(
        status.contains("Package: python3\nStatus: install ok installed"),
        "the packages layer's dpkg database replaced the base's"
    );
    use std::os::unix::fs::MetadataExt;
    let usr_bin = std::fs::metadata(rootfs.join("usr/bin")).unwrap();
    assert_eq!((usr_bin.uid(), usr_bin.gid()), (0, 0));
}
