//! `env check`: validate the env file and its peers, then say what it describes in one line.

use std::path::Path;

use super::{Failure, project};
use crate::spec::{Spec, display_name, spec_hash};

pub fn run(file: Option<&Path>) -> Result<(), Failure> {
    let project = project(file)?;
    eprintln!("ok: {}", summary(project.spec()));
    Ok(())
}

/// `env.kdl: api on debian:bookworm, 3 packages, 1 setup step, peers db, cache (hash 1a2b3c4d5e6f)`
fn summary(spec: &Spec) -> String {
    let mut parts = vec![count(spec.packages.len(), "package", "packages")];
    if !spec.setup.is_empty() {
        parts.push(count(spec.setup.len(), "setup step", "setup steps"));
    }
    if !spec.mounts.is_empty() {
        parts.push(count(spec.mounts.len(), "mount", "mounts"));
    }
    if !spec.volumes.is_empty() {
        parts.push(count(spec.volumes.len(), "volume", "volumes"));
    }
    let peers = spec.all_peers();
    if !peers.is_empty() {
        let names: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
        parts.push(format!(
            "{} {}",
            if names.len() == 1 { "peer" } else { "peers" },
            names.join(", ")
        ));
    }
    let name = spec
        .name
        .as_deref()
        .map_or_else(String::new, |n| format!("{n} on "));
    let hash = spec_hash(spec);
    format!(
        "{}: {name}{}, {} (hash {})",
        display_name(&spec.origin.file),
        spec.base,
        parts.join(", "),
        &hash[..12]
    )
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
