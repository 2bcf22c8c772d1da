//! `env verify`: recompute every layer's diff_id from its tree and name what differs.

use std::path::Path;

use super::{Failure, project};
use crate::build::image::BuildError;
use crate::build::layer_tar::{TarOptions, layer_digest};
use crate::build::members::{self, Differences};
use crate::build::store::Store;
use crate::ops::{self, LockMode};

pub fn run(file: Option<&Path>) -> Result<(), Failure> {
    let project = project(file)?;
    crate::userns::enter()?;
    let spec = project.spec();
    let lock = ops::lock::current_lock(spec, LockMode::Update)?;
    let store = Store::default_location();
    let (name, image) = ops::image::ImageContext::new(spec)?.existing_image(spec, &lock, &store)?;
    let Some(image) = image else {
        return Err(Failure::user(
            format!("`{name}` is not built"),
            Some("run `env build` first".into()),
        ));
    };
    let clamp = crate::build::base::source_date_epoch(&lock);
    let mut damaged = Vec::new();
    for layer in &image.layers {
        let options = TarOptions {
            clamp_mtime: clamp,
            overlay_upper: layer.name != "base",
        };
        let tree = store.tree(&layer.key);
        let digest = layer_digest(&tree, &options).map_err(|source| BuildError::Digest {
            layer: layer.name.clone(),
            source,
        })?;
        if digest.diff_id == layer.diff_id {
            eprintln!("ok       {:<11} {}", layer.name, layer.diff_id);
        } else {
            eprintln!(
                "CHANGED  {:<11} recorded {}, tree gives {}",
                layer.name, layer.diff_id, digest.diff_id
            );
            match members::read(&store.members_path(&layer.key)) {
                Ok(Some(recorded)) => {
                    print_differences(&members::compare(&recorded, &digest.members));
                }
                Ok(None) => eprintln!(
                    "         (this layer was built without a member list, so its files cannot be named)"
                ),
                Err(error) => eprintln!("         ({error}, so its files cannot be named)"),
            }
            damaged.push(layer.name.clone());
        }
    }
    if damaged.is_empty() {
        eprintln!("{name}: every layer matches its recorded diff_id");
        return Ok(());
    }
    Err(Failure::from(ops::Error::Stale {
        message: format!(
            "{name}: {} layer(s) changed since they were built: {}",
            damaged.len(),
            damaged.join(", ")
        ),
        reasons: Vec::new(),
        hint: Some(ops::export::changed_layers_hint()),
    }))
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
