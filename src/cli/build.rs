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
    let image = ops::image::build_image(&project, args.locking.mode())?;
    eprintln!("image {}  id {}", image.name, image.id);
    for layer in &image.layers {
        eprintln!(
            "  {:<11} {:>9}  {}",
            layer.name,
            human_bytes(layer.size),
            layer.diff_id
        );
    }
    Ok(())
}
