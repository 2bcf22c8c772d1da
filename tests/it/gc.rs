//! `env gc`: on an empty store (no network), and after a real rebuild (root, network tier):
//! the replaced packages layer and image go, the current image still verifies, the cache keeps
//! exactly the `.deb`s of the current lock, and a second gc has nothing to free.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::{Outcome, envkit, must_work, network_tier, run};

/// The `.deb` cache the build tests share (see `build.rs`).
fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envkit-shared-cache")
}

/// Root and the mirror, or a printed reason to skip (unless ENVKIT_MUST_WORK=1).
fn can_build(what: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        assert!(!must_work(), "ENVKIT_MUST_WORK=1 but {what} needs root");
        eprintln!("skipped: {what} needs root");
        return false;
    }
    network_tier(what)
}

fn env_in(project: &Path, store: &Path, cache: &Path, args: &[&str]) -> Outcome {
    let mut command = envkit(project, args);
    command
        .env("ENVKIT_CACHE_DIR", cache)
        .env("ENVKIT_STORE_DIR", store);
    run(&mut command)
}

/// A private copy of the shared cache's `.deb`s (hard links), so this test's gc deletes
/// nothing other tests use.
fn private_debs() -> tempfile::TempDir {
    let cache = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let debs = cache.path().join("debs-v1");
    std::fs::create_dir_all(&debs).unwrap();
    for entry in std::fs::read_dir(shared_cache().join("debs-v1")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".deb") {
            let target = debs.join(&name);
            if std::fs::hard_link(entry.path(), &target).is_err() {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    cache
}

fn cached_debs(cache: &Path) -> BTreeSet<String> {
    std::fs::read_dir(cache.join("debs-v1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deb"))
        .collect()
}

fn image_json(project: &Path, store: &Path) -> serde_json::Value {
    let outcome = env_in(project, store, &shared_cache(), &["inspect", "--json"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    let json: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    json["image"].clone()
}

fn layer_key(image: &serde_json::Value, name: &str) -> String {
    image["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .and_then(|l| l["key"].as_str())
        .unwrap()
        .to_string()
}

#[test]
fn gc_of_an_empty_store_frees_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let cache = dir.path().join("cache");
    for args in [&["gc"][..], &["gc", "--dry-run"]] {
        let outcome = env_in(dir.path(), &store, &cache, args);
        assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
        assert_eq!(outcome.stderr, "nothing to free\n");
        assert!(outcome.stdout.is_empty());
    }
}

#[test]
fn gc_after_adding_a_package_frees_the_old_layer_and_image() {
    if !can_build("collecting garbage after a rebuild") {
        return;
    }
    let project = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let env =
        |packages: &str| format!("name \"gc\"\nbase \"debian:bookworm\"\npackages {packages}\n");
    std::fs::write(project.path().join("env.kdl"), env("\"jq\"")).unwrap();
    let build = env_in(project.path(), store.path(), &shared_cache(), &["build"]);
    assert_eq!(build.code, Some(0), "{}", build.transcript());
    let old = image_json(project.path(), store.path());
    let old_packages = layer_key(&old, "packages-1");
    let base = layer_key(&old, "base");

    // Put first, tree takes the first packages layer and jq's is built anew on top of it.
    std::fs::write(project.path().join("env.kdl"), env("\"tree\" \"jq\"")).unwrap();
    let build = env_in(project.path(), store.path(), &shared_cache(), &["build"]);
    assert_eq!(build.code, Some(0), "{}", build.transcript());
    let new = image_json(project.path(), store.path());
    assert_ne!(new["name"], old["name"]);
    assert_eq!(layer_key(&new, "base"), base, "the base is shared");
    let layers = store.path().join("layers-v1");
    assert!(layers.join(&old_packages).is_dir());

    let cache = private_debs();
    let dry = env_in(
        project.path(),
        store.path(),
        cache.path(),
        &["gc", "--dry-run"],
    );
    assert_eq!(dry.code, Some(0), "{}", dry.transcript());
    assert!(
        dry.stderr.contains(&format!(
            "would delete packages-1 layer {}",
            &old_packages[..12]
        )),
        "{}",
        dry.stderr
    );
    assert!(
        dry.stderr.contains(&format!(
            "would delete image {}",
            old["name"].as_str().unwrap()
        )),
        "{}",
        dry.stderr
    );
    assert!(
        dry.stderr.contains("would free 1 layer, 1 image"),
        "{}",
        dry.stderr
    );
    assert!(
        layers.join(&old_packages).is_dir(),
        "a dry run deletes nothing"
    );

    let gc = env_in(project.path(), store.path(), cache.path(), &["gc"]);
    assert_eq!(gc.code, Some(0), "{}", gc.transcript());
    assert!(
        gc.stderr.contains("freed 1 layer, 1 image"),
        "{}",
        gc.stderr
    );
    assert!(!layers.join(&old_packages).exists(), "{}", gc.stderr);
    assert!(layers.join(&base).join("tree").is_dir());
    assert!(layers.join(layer_key(&new, "packages-2")).is_dir());
    let images = env_in(
        project.path(),
        store.path(),
        &shared_cache(),
        &["images", "--json"],
    );
    let images: serde_json::Value = serde_json::from_str(&images.stdout).unwrap();
    assert_eq!(images.as_array().unwrap().len(), 1, "{images}");
    assert_eq!(images[0]["name"], new["name"]);

    // The cache keeps exactly the .debs of the current lock.
    let lock = std::fs::read_to_string(project.path().join("env.lock")).unwrap();
    let lock = envkit::solve::lockfile::Lock::parse(&lock).unwrap();
    let wanted: BTreeSet<String> = lock
        .packages
        .iter()
        .map(|p| format!("{}.deb", p.sha256))
        .collect();
    assert_eq!(cached_debs(cache.path()), wanted);

    let verify = env_in(project.path(), store.path(), &shared_cache(), &["verify"]);
    assert_eq!(verify.code, Some(0), "{}", verify.transcript());

    let again = env_in(project.path(), store.path(), cache.path(), &["gc"]);
    assert_eq!(again.code, Some(0), "{}", again.transcript());
    assert_eq!(again.stderr, "nothing to free\n");

    // Deleting the project frees everything it kept.
    drop(project);
    let last = env_in(store.path(), store.path(), cache.path(), &["gc"]);
    assert_eq!(last.code, Some(0), "{}", last.transcript());
    assert!(
        last.stderr.contains("freed 3 layers, 1 image"),
        "{}",
        last.stderr
    );
    assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 0);
    assert!(cached_debs(cache.path()).is_empty());
}
