//! The examples users copy must stay valid.

use crate::common::{assert_checks_cleanly, envkit, repo_root, run};

#[test]
fn every_example_environment_passes_check() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_root().join("envs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "kdl") {
            continue;
        }
        assert_checks_cleanly(&path);
        checked += 1;
    }
    assert!(checked >= 4, "python, rust, node and postgres at least");
}

#[test]
fn the_postgres_example_is_a_usable_peer() {
    let outcome = run(&mut envkit(
        &repo_root(),
        &["inspect", "--json", "-f", "envs/webapp.kdl"],
    ));
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    let json: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    let peers = json["spec"]["peers"].as_array().unwrap();
    let db = peers.iter().find(|p| p["name"] == "db").expect("db peer");
    assert_eq!(db["spec"]["ports"], serde_json::json!([5432]));
    assert!(
        db["spec"]["service"]
            .as_str()
            .unwrap()
            .contains("pg_ctlcluster")
    );
}
