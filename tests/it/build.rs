//! `env build` against the real mirror (network tier), as root: real bookworm and trixie
//! images, reproducible across empty stores, sharing one download cache for the run.

use std::path::{Path, PathBuf};

use crate::common::{Outcome, envkit, network_tier, run};

/// One `.deb` cache for every build test of the run.
fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envkit-shared-cache")
}

/// Whether this test can build: it needs root (rootless builds are not built yet) and the
/// mirror; it skips saying why, unless ENVKIT_MUST_WORK=1.
fn can_build(what: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            !crate::common::must_work(),
            "ENVKIT_MUST_WORK=1 but {what} needs root"
        );
        eprintln!("skipped: {what} needs root");
        return false;
    }
    network_tier(what)
}

fn build_in(project: &Path, store: &Path, args: &[&str]) -> Outcome {
    let mut command = envkit(project, args);
    command
        .env("ENVKIT_CACHE_DIR", shared_cache())
        .env("ENVKIT_STORE_DIR", store);
    run(&mut command)
}

fn diff_ids(project: &Path, store: &Path) -> Vec<String> {
    let outcome = build_in(project, store, &["inspect", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    json["image"]["layers"]
        .as_array()
        .expect("an image")
        .iter()
        .map(|l| l["diff_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn bookworm_python_builds_the_same_in_two_empty_stores() {
    if !can_build("building a bookworm image") {
        return;
    }
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("env.kdl"),
        "name \"py\"\nbase \"debian:bookworm\"\npackages \"python3\"\n",
    )
    .unwrap();
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let outcome = build_in(project.path(), first.path(), &["build"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("built base layer"),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stderr.contains("image py:"), "{}", outcome.stderr);
    let outcome = build_in(project.path(), second.path(), &["build"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    let ids = diff_ids(project.path(), first.path());
    assert_eq!(ids.len(), 2, "base and packages");
    assert_eq!(
        ids,
        diff_ids(project.path(), second.path()),
        "identical layers from two empty stores"
    );

    // The layers hold a configured Debian with python3.
    let layers = first.path().join("layers-v1");
    let trees: Vec<PathBuf> = std::fs::read_dir(&layers)
        .unwrap()
        .map(|e| e.unwrap().path().join("tree"))
        .collect();
    assert!(
        trees.iter().any(|t| t.join("usr/bin/python3.11").is_file()),
        "python3 installed"
    );
    let status = trees
        .iter()
        .filter_map(|t| std::fs::read_to_string(t.join("var/lib/dpkg/status")).ok())
        .collect::<String>();
    assert!(
        status.contains("Package: python3\nStatus: install ok installed"),
        "dpkg knows python3"
    );
    assert!(
        !status.contains("half-configured") && !status.contains("unpacked"),
        "everything configured"
    );

    // Nothing changed: nothing to build.
    let plan = build_in(project.path(), first.path(), &["build", "--dry-run"]);
    assert!(
        plan.stderr.lines().all(|l| l.contains(" cached ")),
        "{}",
        plan.stderr
    );
    let again = build_in(project.path(), first.path(), &["build"]);
    assert_eq!(again.code, Some(0), "{}", again.transcript());
    assert!(!again.stderr.contains("building"), "{}", again.stderr);
    let images = build_in(project.path(), first.path(), &["images", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&images.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
}

#[test]
fn trixie_python_builds() {
    if !can_build("building a trixie image") {
        return;
    }
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("env.kdl"), "name \"py13\"\nbase \"debian:trixie\"\npackages \"python3\"\nsetup \"python3 -c 'import sys; open(\\\"/opt/version\\\", \\\"w\\\").write(sys.version)'\"\n").unwrap();
    let store = tempfile::tempdir().unwrap();
    let outcome = build_in(project.path(), store.path(), &["build"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("built setup-1 layer"),
        "{}",
        outcome.stderr
    );
    let versions: Vec<String> = std::fs::read_dir(store.path().join("layers-v1"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("tree/opt/version")).ok())
        .collect();
    assert_eq!(
        versions.len(),
        1,
        "the setup layer holds what the step wrote"
    );
    assert!(
        versions[0].starts_with("3.13"),
        "trixie's python: {}",
        versions[0]
    );
}
