//! `env inspect`: what envkit knows about the environment, for people or (`--json`) scripts.

use std::io::Write;
use std::path::Path;

use clap::Parser;
use serde_json::json;

use super::{Failure, project};
use crate::ops;
use crate::solve::lockfile::Lock;
use crate::spec::Spec;

#[derive(Debug, Parser)]
pub struct InspectArgs {
    /// Print one JSON object on stdout (keys: `hash`, `spec`).
    #[arg(long)]
    json: bool,
}

pub fn run(args: &InspectArgs, file: Option<&Path>) -> Result<(), Failure> {
    let project = project(file)?;
    let spec = project.spec();
    let inspection = ops::inspect::inspect(&project, args.json)?;
    let text = if args.json {
        let mut document = json!({ "hash": inspection.hash, "spec": spec });
        if let Some(lock) = &inspection.lock {
            document["lock"] = lock_json(lock);
            if let Some(image) = &inspection.image {
                document["image"] = serde_json::to_value(image).unwrap_or_default();
            }
        }
        format!("{document:#}\n")
    } else {
        let mut text = describe(spec, &inspection.hash);
        if let Some(lock) = &inspection.lock {
            let packages = format!("{} packages from {}", lock.packages.len(), lock.release);
            let locked = match &lock.image {
                Some(image) if lock.packages.is_empty() => {
                    format!("image {} at {}", image.reference, image.digest)
                }
                Some(image) => format!(
                    "image {} at {}, + {packages}",
                    image.reference, image.digest
                ),
                None => packages,
            };
            text.push_str(&format!("{:<11}{locked}\n", "lock"));
        }
        text
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::io("cannot write to stdout", e))
}

fn describe(spec: &Spec, hash: &str) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<11}{value}\n"));
    line("file", spec.origin.file.display().to_string());
    line("hash", hash.to_string());
    if let Some(name) = &spec.name {
        line("name", name.clone());
    }
    line("base", spec.base.to_string());
    if let Some(mirror) = &spec.mirror {
        line("mirror", mirror.url.clone());
    }
    line("packages", spec.packages.join(" "));
    for step in &spec.setup {
        line("setup", step.command.clone());
    }
    for mount in &spec.mounts {
        let mode = if mount.readonly { " (read-only)" } else { "" };
        line(
            "mount",
            format!("{} -> {}{mode}", mount.host_path.display(), mount.at),
        );
    }
    for volume in &spec.volumes {
        line("volume", format!("{} -> {}", volume.name, volume.at));
    }
    for (name, value) in &spec.vars {
        line("var", format!("{name}={value}"));
    }
    for peer in &spec.peers {
        line("peer", format!("{} ({})", peer.name, peer.spec.base));
    }
    out
}

/// The lock as DESIGN.md promises scripts: `{"release", "packages": [{"name", "version",
/// "arch", "sha256", "layer", "requested"}]}`, plus the packages layer's group, the pool path
/// and suite, and for a registry image base its `image` (`reference`, `digest`).
fn lock_json(lock: &Lock) -> serde_json::Value {
    let packages: Vec<serde_json::Value> = lock
        .packages
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "version": p.version,
                "arch": p.architecture,
                "sha256": p.sha256,
                "layer": p.layer,
                "group": p.group,
                "requested": p.requested,
                "suite": p.suite,
                "path": p.path,
                "size": p.size,
            })
        })
        .collect();
    let mut document =
        json!({ "release": lock.release, "architecture": lock.architecture, "packages": packages });
    if let Some(image) = &lock.image {
        document["image"] = json!({ "reference": image.reference, "digest": image.digest });
    }
    document
}
