//! `env build` against the real mirror (network tier), as root: real bookworm and trixie
//! images, reproducible across empty stores, sharing one download cache for the run.

use std::path::{Path, PathBuf};

use crate::common::{Outcome, envkit, network_tier, run};

/// One `.deb` cache for every build test of the run.
fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envkit-shared-cache")
}

/// Whether this test can build: it needs root (`rootless.rs` builds as a user) and the
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

/// The image's layers as `env inspect --json` reports them.
fn layers(project: &Path, store: &Path) -> Vec<serde_json::Value> {
    let outcome = build_in(project, store, &["inspect", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    json["image"]["layers"]
        .as_array()
        .expect("an image")
        .clone()
}

fn diff_ids(project: &Path, store: &Path) -> Vec<String> {
    layers(project, store)
        .iter()
        .map(|l| l["diff_id"].as_str().unwrap().to_string())
        .collect()
}

/// Every entry of a layer's tree: its path, type, mode, owner, and content (a file's blake3,
/// a link's target). Times are left out: the layer tar clamps them, the tree keeps the build's.
fn tree_listing(tree: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut listing: Vec<String> = walkdir::WalkDir::new(tree)
        .into_iter()
        .map(|entry| {
            let entry = entry.unwrap();
            let metadata = entry.path().symlink_metadata().unwrap();
            let kind = metadata.file_type();
            let content = if kind.is_symlink() {
                std::fs::read_link(entry.path())
                    .unwrap()
                    .display()
                    .to_string()
            } else if kind.is_file() {
                blake3::hash(&std::fs::read(entry.path()).unwrap())
                    .to_hex()
                    .to_string()
            } else {
                String::new()
            };
            format!(
                "{} {:o} {}:{} {content}",
                entry.path().strip_prefix(tree).unwrap().display(),
                metadata.mode(),
                metadata.uid(),
                metadata.gid()
            )
        })
        .collect();
    listing.sort();
    listing
}

/// Each layer's tree listing, by layer key.
fn store_listing(project: &Path, store: &Path) -> Vec<(String, Vec<String>)> {
    layers(project, store)
        .iter()
        .map(|layer| {
            let key = layer["key"].as_str().unwrap().to_string();
            let tree = store.join("layers-v1").join(&key).join("tree");
            (key, tree_listing(&tree))
        })
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
        "name \"py\"\nbase \"debian:bookworm\"\npackages \"python3\" \"jq\"\n",
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
    assert_eq!(
        ids.len(),
        3,
        "base and a packages layer per requested package"
    );
    assert_eq!(
        ids,
        diff_ids(project.path(), second.path()),
        "identical layers from two empty stores"
    );
    let (first_trees, second_trees) = (
        store_listing(project.path(), first.path()),
        store_listing(project.path(), second.path()),
    );
    for ((key, one), (other_key, two)) in first_trees.iter().zip(&second_trees) {
        assert_eq!(key, other_key);
        assert!(one.len() > 40, "a real tree: {one:?}");
        let differences: Vec<_> = one
            .iter()
            .zip(two)
            .filter(|(a, b)| a != b)
            .take(5)
            .collect();
        assert!(
            one.len() == two.len() && differences.is_empty(),
            "layer {key}: the trees differ ({} against {} entries): {differences:?}",
            one.len(),
            two.len()
        );
    }

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
    assert_eq!(plan.code, Some(0), "{}", plan.transcript());
    let planned: Vec<&str> = plan.stderr.lines().collect();
    assert!(
        planned.len() == 3 && planned.iter().all(|l| l.contains(" cached ")),
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
fn appending_a_package_builds_one_layer_on_top() {
    if !can_build("appending a package to a built image") {
        return;
    }
    let project = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let env = |packages: &str| {
        format!(
            "name \"grow\"\nbase \"debian:bookworm\"\npackages {packages}\nsetup \"touch /opt/stamp\"\n"
        )
    };
    std::fs::write(project.path().join("env.kdl"), env("\"jq\"")).unwrap();
    let outcome = build_in(project.path(), store.path(), &["build"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    let before = layers(project.path(), store.path());

    std::fs::write(project.path().join("env.kdl"), env("\"jq\" \"tree\"")).unwrap();
    let outcome = build_in(project.path(), store.path(), &["build"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    for kept in ["building base", "building packages-1"] {
        assert!(!outcome.stderr.contains(kept), "{}", outcome.stderr);
    }
    for built in ["built packages-2 layer", "built setup-1 layer"] {
        assert!(outcome.stderr.contains(built), "{}", outcome.stderr);
    }
    let after = layers(project.path(), store.path());
    let names: Vec<&str> = after.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["base", "packages-1", "packages-2", "setup-1"]);
    assert_eq!(
        after[..2],
        before[..2],
        "the layers below are the same ones"
    );

    // Both groups are installed as far as dpkg inside the environment knows.
    let outcome = build_in(
        project.path(),
        store.path(),
        &[
            "run",
            "--",
            "sh",
            "-c",
            "jq --version && tree --version && dpkg --audit && dpkg-query -W -f='${db:Status-Abbrev}${Package}\\n' jq libjq1 tree && test -f /opt/stamp",
        ],
    );
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    assert!(
        outcome.stdout.contains("ii jq\nii libjq1\nii tree"),
        "{}",
        outcome.stdout
    );
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

#[test]
fn a_killed_build_leaves_only_whole_layers_and_the_next_build_continues() {
    if !can_build("interrupting a build") {
        return;
    }
    let project = tempfile::tempdir().unwrap();
    let env = |step: &str| {
        format!("name \"killed\"\nbase \"debian:bookworm\"\npackages \"jq\"\nsetup \"{step}\"\n")
    };
    std::fs::write(project.path().join("env.kdl"), env("sleep 60")).unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut command = envkit(project.path(), &["build"]);
    command
        .env("ENVKIT_CACHE_DIR", shared_cache())
        .env("ENVKIT_STORE_DIR", store.path());
    command.stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    // Wait until the setup step runs, then kill envkit outright.
    let started = std::time::Instant::now();
    let log_dir = store.path().join("logs");
    while store
        .path()
        .join("layers-v1")
        .read_dir()
        .map_or(0, |d| d.count())
        < 2
    {
        assert!(
            started.elapsed().as_secs() < 300,
            "base and packages layers never appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(log_dir.exists());

    for entry in std::fs::read_dir(store.path().join("layers-v1")).unwrap() {
        let layer = entry.unwrap().path();
        assert!(
            layer.join("layer.json").is_file(),
            "{} is under a real name without its record",
            layer.display()
        );
    }
    assert_eq!(
        std::fs::read_dir(store.path().join("layers-v1"))
            .unwrap()
            .count(),
        2,
        "only base and packages"
    );
    // The sandbox died with envkit: nothing is left sleeping.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sleeping = std::process::Command::new("pgrep")
        .args(["-x", "sleep"])
        .output()
        .unwrap();
    let sleepers = String::from_utf8_lossy(&sleeping.stdout)
        .lines()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c == "sleep\u{0}60\u{0}")
        })
        .count();
    assert_eq!(sleepers, 0, "the setup step outlived envkit");

    std::fs::write(project.path().join("env.kdl"), env("true")).unwrap();
    let outcome = build_in(project.path(), store.path(), &["build"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    assert!(
        !outcome.stderr.contains("building base") && !outcome.stderr.contains("building packages"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("built setup-1 layer"),
        "{}",
        outcome.stderr
    );

    // env verify notices a layer changed behind envkit's back.
    assert_eq!(
        build_in(project.path(), store.path(), &["verify"]).code,
        Some(0)
    );
    let packages = std::fs::read_dir(store.path().join("layers-v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_to_string(p.join("layer.json"))
                .unwrap()
                .contains("\"packages-1\"")
        })
        .unwrap();
    std::fs::write(packages.join("tree/usr/bin/jq"), "not jq").unwrap();
    let verify = build_in(project.path(), store.path(), &["verify"]);
    assert_eq!(verify.code, Some(1), "{}", verify.transcript());
    assert!(
        verify.stderr.contains("CHANGED  packages-1"),
        "{}",
        verify.stderr
    );
    assert!(
        verify.stderr.contains("changed  /usr/bin/jq\n"),
        "the changed file is named: {}",
        verify.stderr
    );
    assert!(!verify.stderr.contains("added "), "{}", verify.stderr);
}
