//! `env inspect`: what envkit knows about the environment, for people or (`--json`) scripts.

use std::io::Write;
use std::path::Path;

use clap::Parser;
use serde_json::json;

use super::{Failure, load_spec};
use crate::spec::{Spec, spec_hash};

#[derive(Debug, Parser)]
pub struct InspectArgs {
    /// Print one JSON object on stdout (keys: `hash`, `spec`).
    #[arg(long)]
    json: bool,
}

pub fn run(args: &InspectArgs, file: Option<&Path>) -> Result<(), Failure> {
    let loaded = load_spec(file)?;
    let spec = &loaded.spec;
    let text = if args.json {
        let document = json!({ "hash": spec_hash(spec), "spec": spec });
        format!("{document:#}\n")
    } else {
        describe(spec)
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::io("cannot write to stdout", e))
}

fn describe(spec: &Spec) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<11}{value}\n"));
    line("file", spec.origin.file.display().to_string());
    line("hash", spec_hash(spec));
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
