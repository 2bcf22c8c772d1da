//! `env build`: the image of env.lock (locking first when needed), or with `--dry-run` the
//! plan of which layers are cached and which would be built.

use std::path::Path;

use clap::Parser;

use super::{Failure, Locking, project};
use crate::build::download::human_bytes;
use crate::ops;

#[derive(Debug, Parser)]
pub struct BuildArgs {
    /// Print which layers are cached and which would be built, and build nothing.
    #[arg(long)]
    dry_run: bool,
    /// Send every layer of the image the team cache lacks (`cache` in env.kdl, or
    /// ENVKIT_TEAM_CACHE): what a CI job does, so others pull instead of building.
    #[arg(long, conflicts_with = "dry_run")]
    push_cache: bool,
    #[command(flatten)]
    locking: Locking,
}

pub fn run(args: &BuildArgs, file: Option<&Path>) -> Result<(), Failure> {
    let project = project(file)?;
    if args.dry_run {
        let plan = ops::image::plan_image(&project, args.locking.mode())?;
        for layer in &plan.layers {
            let state = if layer.cached { "cached" } else { "to build" };
            eprintln!(
                "{:<11} {:<9} {}  {}",
                layer.kind.name(),
                state,
                &layer.key[..12],
                layer.summary
            );
        }
        return Ok(());
    }
    let (image, pushed) = ops::image::build_image(&project, args.locking.mode(), args.push_cache)?;
    eprintln!("image {}  id {}", image.name, image.id);
    for layer in &image.layers {
        eprintln!(
            "  {:<11} {:>9}  {}",
            layer.name,
            human_bytes(layer.size),
            layer.diff_id
        );
    }
    if let Some(pushed) = pushed {
        eprintln!(
            "team cache: {} layers sent ({}), {} already there",
            pushed.sent,
            human_bytes(pushed.bytes_sent),
            pushed.present
        );
    }
    Ok(())
}
