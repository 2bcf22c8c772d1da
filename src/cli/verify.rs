//! `env verify`: the current project's image checked against its layers' trees (see
//! `build::verify`), told layer by layer.

use std::path::Path;

use super::{Failure, load_spec};
use crate::build::image::BuildError;
use crate::build::members::Differences;
use crate::build::store::Store;
use crate::build::verify::{ChangedFiles, LayerCheck, Outcome, verify};

pub fn run(file: Option<&Path>) -> Result<(), Failure> {
    let loaded = load_spec(file)?;
    let spec = &loaded.spec;
    let lock = super::lock::current_lock(spec)?;
    let store = Store::default_location();
    let (name, image) =
        super::build::ImageContext::new(spec)?.existing_image(spec, &lock, &store)?;
    let Some(image) = image else {
        return Err(Failure::user(
            format!("`{name}` is not built"),
            Some("run `env build` first".into()),
        ));
    };
    let mut damaged = Vec::new();
    for check in verify(&store, &image, &lock) {
        let check = check.map_err(BuildError::from)?;
        print_check(&check);
        if let Outcome::Changed { .. } = check.outcome {
            damaged.push(check.layer);
        }
    }
    if damaged.is_empty() {
        eprintln!("{name}: every layer matches its recorded diff_id");
        return Ok(());
    }
    Err(Failure::Stale {
        message: format!(
            "{name}: {} layer(s) changed since they were built: {}",
            damaged.len(),
            damaged.join(", ")
        ),
        reasons: Vec::new(),
    })
}

fn print_check(check: &LayerCheck) {
    match &check.outcome {
        Outcome::Matches => eprintln!("ok       {:<11} {}", check.layer, check.recorded),
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
