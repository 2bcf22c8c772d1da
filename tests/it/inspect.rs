//! `env inspect --json`: the contract scripts rely on, and the hash's invariances on disk.

use crate::common::{copy_fixture, envkit, repo_root, run};

fn inspect_json(dir: &std::path::Path) -> serde_json::Value {
    let outcome = run(&mut envkit(dir, &["inspect", "--json"]));
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    serde_json::from_str(&outcome.stdout).expect("stdout is one JSON object")
}

#[test]
fn json_has_hash_and_spec() {
    let fixture = repo_root().join("tests/fixtures/spec/valid/every-node");
    let project = copy_fixture(&fixture);
    let json = inspect_json(project.path());
    let hash = json["hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64);
    let spec = &json["spec"];
    assert_eq!(spec["name"], "api");
    assert_eq!(spec["base"], "debian:trixie");
    assert_eq!(
        spec["packages"],
        serde_json::json!(["python3", "python3-pytest", "git"])
    );
    assert_eq!(spec["ports"], serde_json::json!([8000]));
    assert_eq!(spec["vars"]["PORT"], "8080");
    assert_eq!(spec["network"], "private");
    assert_eq!(spec["user"], "root");
    assert_eq!(spec["mirror"]["url"], "file:///srv/mirror/debian");
    assert_eq!(
        spec["setup"][1]["inputs"],
        serde_json::json!(["Makefile", "assets/**/*.css"])
    );
    assert_eq!(spec["mounts"][1]["readonly"], true);
    assert_eq!(spec["peers"][0]["name"], "db");
    assert_eq!(
        spec["peers"][0]["spec"]["ready"]["check"]["cmd"],
        "pg_isready -h 127.0.0.1"
    );
    assert_eq!(
        spec["mounts"][0]["host_path"].as_str().unwrap(),
        project.path().to_str().unwrap(),
        "mount sources are resolved against the env file's folder"
    );
}

#[test]
fn moving_the_project_keeps_the_hash() {
    let fixture = repo_root().join("tests/fixtures/spec/valid/every-node");
    let first = copy_fixture(&fixture);
    let second = copy_fixture(&fixture);
    assert_eq!(
        inspect_json(first.path())["hash"],
        inspect_json(second.path())["hash"]
    );
}

#[test]
fn editing_a_peer_changes_the_hash() {
    let fixture = repo_root().join("tests/fixtures/spec/valid/every-node");
    let project = copy_fixture(&fixture);
    let before = inspect_json(project.path())["hash"].clone();
    let peer = project.path().join("envs/postgres.kdl");
    let text = std::fs::read_to_string(&peer)
        .unwrap()
        .replace("port 5432", "port 5433");
    std::fs::write(&peer, text).unwrap();
    assert_ne!(inspect_json(project.path())["hash"], before);
}

#[test]
fn human_inspect_lists_the_essentials() {
    let fixture = repo_root().join("tests/fixtures/spec/valid/inline-peer");
    let outcome = run(&mut envkit(&fixture, &["inspect"]));
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    assert!(
        outcome.stdout.contains("base       debian:bookworm"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome
            .stdout
            .contains("peer       cache (debian:bookworm)"),
        "{}",
        outcome.stdout
    );
}
