//! `env verify`: the project's image, already built, checked layer by layer against the
//! trees in the store (see `build::verify`).

use super::{Error, LockMode, Project, Result, say};
use crate::build::image::BuildError;
use crate::build::store::Store;
use crate::build::verify::{LayerCheck, verify as check_layers};

/// What `env verify` found, and mended with `--repair`.
pub struct Verified {
    pub image: String,
    /// The layers built (or pulled) again, by name.
    pub repaired: Vec<String>,
}

/// Checks every layer, telling `on_check` each result as it comes (a layer takes a full read of
/// its tree). When all match, returns the image's name; otherwise, with `repair`, deletes the
/// damaged layers, builds them again (from the team cache where it has them: a build is
/// deterministic, so the layers above stay valid) and checks again; without it, fails naming
/// the changed layers.
pub fn verify(
    project: &Project,
    mode: LockMode,
    repair: bool,
    on_check: &mut dyn FnMut(&LayerCheck),
) -> Result<Verified> {
    crate::kernel::userns::enter()?;
    let spec = project.spec();
    let store = Store::default_location();
    let (name, damaged) = check(project, mode, &store, repair, on_check)?;
    if damaged.is_empty() {
        return Ok(Verified {
            image: name,
            repaired: Vec::new(),
        });
    }
    if !repair {
        return Err(changed(&name, &damaged));
    }
    let keys: Vec<String> = damaged.iter().map(|(_, key)| key.clone()).collect();
    say(&format!(
        "repairing {}: building the damaged layer(s) again",
        names(&damaged)
    ));
    crate::build::gc::discard_layers(&store, &keys, &|| {
        say("waiting for builds and sessions to finish")
    })
    .map_err(crate::build::image::BuildError::from)?;
    let image = super::image::build_from_lock(spec, &project.lock_path(), mode, &store)?;
    crate::build::shortcut::remember(&store, spec, &project.lock_path(), &image);
    let (name, still) = check(project, mode, &store, false, on_check)?;
    if !still.is_empty() {
        return Err(changed(&name, &still));
    }
    Ok(Verified {
        image: name,
        repaired: damaged.into_iter().map(|(layer, _)| layer).collect(),
    })
}

/// The image's name, and the (name, key) of each layer that does not match.
fn check(
    project: &Project,
    mode: LockMode,
    store: &Store,
    repair: bool,
    on_check: &mut dyn FnMut(&LayerCheck),
) -> Result<(String, Vec<(String, String)>)> {
    let spec = project.spec();
    let lock = super::lock::current_lock(spec, mode)?;
    let context = super::image::ImageContext::new(spec)?;
    // A layer whose record is damaged stops the plan that names the image: with `repair`,
    // such layers go first (the build makes them again), one at a time as the plan meets them.
    let mut unreadable = Vec::new();
    let (name, image) = loop {
        match context.existing_image(spec, &lock, store) {
            Ok(found) => break found,
            Err(error) if repair && error.damaged_record().is_some() => {
                let key = match error
                    .damaged_record()
                    .and_then(|path| damaged_layer_key(store, path))
                {
                    Some(key) if !unreadable.contains(&key) => key,
                    // Not a layer's record, or one that deleting did not cure.
                    _ => return Err(error.into()),
                };
                say(&format!("the record of layer {key} is damaged"));
                crate::build::gc::discard_layers(store, std::slice::from_ref(&key), &|| {
                    say("waiting for builds and sessions to finish")
                })
                .map_err(BuildError::from)?;
                unreadable.push(key);
            }
            Err(error) => return Err(error.into()),
        }
    };
    let Some(image) = image else {
        return Err(Error::user(
            format!("`{name}` is not built"),
            Some("run `env build` first".into()),
        ));
    };
    let mut damaged = Vec::new();
    for check in check_layers(store, &image, &lock) {
        let check = check?;
        on_check(&check);
        if check.outcome.is_damaged() {
            damaged.push((check.layer, check.key));
        }
    }
    Ok((name, damaged))
}

/// The key of the layer whose record is at `path`, if that is where layer records live.
fn damaged_layer_key(store: &Store, path: &std::path::Path) -> Option<String> {
    let dir = path.parent()?;
    (dir.parent()? == store.layers_dir()).then(|| dir.file_name()?.to_str().map(str::to_string))?
}

fn names(damaged: &[(String, String)]) -> String {
    damaged
        .iter()
        .map(|(layer, _)| layer.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn changed(name: &str, damaged: &[(String, String)]) -> Error {
    Error::Stale {
        message: format!(
            "{name}: {} layer(s) changed since they were built: {}",
            damaged.len(),
            names(damaged)
        ),
        reasons: Vec::new(),
        hint: Some(changed_layers_hint()),
    }
}

/// What to do about layers changed since they were built (`env verify` and `env export`).
pub fn changed_layers_hint() -> String {
    "the store was modified outside envkit; `env verify --repair` builds the damaged layers again"
        .into()
}
