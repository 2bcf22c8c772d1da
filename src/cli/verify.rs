//! `env verify`: everything stored for the current project's image checked (see
//! `ops::verify`), told thing by thing.

use std::path::Path;

use super::{Failure, project};
use crate::build::members::Differences;
use crate::build::verify::{ChangedFiles, LayerCheck, Outcome};
use crate::ops::verify::Check;
use crate::ops::{self, LockMode};

pub fn run(file: Option<&Path>, repair: bool) -> Result<(), Failure> {
    let verified =
        ops::verify::verify(&project(file)?, LockMode::Update, repair, &mut print_check)?;
    if !verified.repaired.is_empty() {
        eprintln!("repaired {}", verified.repaired.join(", "));
    }
    eprintln!(
        "{}: every layer matches its recorded diff_id, and its records and cached .debs are whole",
        verified.image
    );
    Ok(())
}

fn print_check(check: Check<'_>) {
    match check {
        Check::Layer(layer) => print_layer(layer),
        Check::Stored {
            what,
            problem: None,
        } => eprintln!("ok       {what}"),
        Check::Stored {
            what,
            problem: Some(problem),
        } => eprintln!("DAMAGED  {what}: {problem}"),
    }
}

fn print_layer(check: &LayerCheck) {
    match &check.outcome {
        Outcome::Matches => eprintln!("ok       {:<11} {}", check.layer, check.recorded),
        Outcome::Damaged { reason } => {
            eprintln!("DAMAGED  {:<11} {reason}", check.layer)
        }
        Outcome::Changed { actual, files } => {
            eprintln!(
                "CHANGED  {:<11} recorded {}, tree gives {}",
                check.layer, check.recorded, actual
            );
            match files {
                ChangedFiles::Named(differences) => print_differences(differences),
                ChangedFiles::Unlisted => eprintln!(
                    "         (this layer was built without a member list, so its files cannot be named)"
                ),
                ChangedFiles::Unreadable(error) => {
                    eprintln!("         ({error}, so its files cannot be named)")
                }
            }
        }
    }
}

/// The files that differ, at most `SHOWN` of each kind.
fn print_differences(differences: &Differences) {
    const SHOWN: usize = 20;
    if differences.is_empty() {
        // The same members with the same bytes give the same tar: only the list can be stale.
        eprintln!("         (every file matches the layer's member list)");
    }
    for (label, paths) in [
        ("changed", &differences.changed),
        ("added", &differences.added),
        ("removed", &differences.removed),
    ] {
        for path in paths.iter().take(SHOWN) {
            eprintln!("         {label:<8} {path}");
        }
        if paths.len() > SHOWN {
            eprintln!("         ... and {} more {label}", paths.len() - SHOWN);
        }
    }
}
