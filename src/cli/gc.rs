//! `env gc`: delete the images, layers and downloads no known lock needs (see `build::gc`).

use clap::Parser;

use super::Failure;
use crate::build::download::human_bytes;
use crate::build::gc::Kind;
use crate::ops;

#[derive(Debug, Parser)]
pub struct GcArgs {
    /// Print what would be deleted, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: &GcArgs) -> Result<(), Failure> {
    let report = ops::store::gc(args.dry_run)?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    for busy in &report.in_use {
        eprintln!("kept {busy}");
    }
    if args.dry_run {
        for removal in &report.removals {
            eprintln!(
                "would delete {}: {}",
                removal.what,
                human_bytes(removal.bytes)
            );
        }
    } else {
        for removal in &report.removals {
            if matches!(removal.kind, Kind::Image | Kind::Layer) {
                eprintln!("deleted {}", removal.what);
            }
        }
    }
    match report.summary() {
        None => eprintln!("nothing to free"),
        Some(summary) if args.dry_run => eprintln!("would free {summary}"),
        Some(summary) => eprintln!("freed {summary}"),
    }
    Ok(())
}
