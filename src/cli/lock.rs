//! `env lock`: resolve env.kdl's packages into env.lock, or check that it is current.

use std::path::Path;

use clap::Parser;

use super::{Failure, project};
use crate::ops::lock::{LockOutcome, LockRequest, lock};
use crate::solve::lockfile::Layer;
use crate::spec::display_name;

#[derive(Debug, Parser)]
pub struct LockArgs {
    /// Exit 1 if env.lock does not match env.kdl, instead of writing it (for CI).
    #[arg(long, conflicts_with_all = ["update", "refresh"])]
    check: bool,
    /// Move these packages (all when none are named) to the newest versions.
    #[arg(long, num_args = 0.., value_name = "PKG")]
    update: Option<Vec<String>>,
    /// Resolve again from fresh indexes even when env.lock is current.
    #[arg(long)]
    refresh: bool,
}

pub fn run(args: &LockArgs, file: Option<&Path>) -> Result<(), Failure> {
    let project = project(file)?;
    let request = LockRequest {
        check: args.check,
        update: args.update.clone(),
        refresh: args.refresh,
    };
    match lock(&project, &request)? {
        LockOutcome::Matches { lock_file } => {
            eprintln!(
                "ok: {lock_file} matches {}",
                display_name(&project.spec().origin.file)
            );
        }
        LockOutcome::UpToDate { lock_file, lock } => match &lock.image {
            Some(image) => eprintln!(
                "{lock_file} is up to date (image {} at {}{})",
                image.reference,
                image.digest,
                packages_on_image(&lock)
            ),
            None => eprintln!(
                "{lock_file} is up to date ({} packages from {})",
                lock.packages.len(),
                lock.release
            ),
        },
        LockOutcome::Locked {
            lock_file,
            lock,
            written,
            changes,
        } => {
            for line in changes {
                eprintln!("  {line}");
            }
            let base = lock.layer(Layer::Base).count();
            let own = lock.layer(Layer::Packages).count();
            let date = lock.indexes.first().map_or("", |i| i.date.as_str());
            let verb = if written { "locked" } else { "unchanged:" };
            if let Some(image) = &lock.image {
                eprintln!(
                    "{verb} {lock_file}: image {} at {}{}",
                    image.reference,
                    image.digest,
                    packages_on_image(&lock)
                );
                return Ok(());
            }
            eprintln!(
                "{verb} {lock_file}: {base} base + {own} packages from {} (index of {date})",
                lock.release
            );
        }
    }
    Ok(())
}

/// `, + 3 packages from bookworm (index of DATE)` when packages go on the image.
fn packages_on_image(lock: &crate::solve::lockfile::Lock) -> String {
    if lock.packages.is_empty() {
        return String::new();
    }
    let date = lock.indexes.first().map_or("", |i| i.date.as_str());
    format!(
        ", + {} packages from {} (index of {date})",
        lock.packages.len(),
        lock.release
    )
}
