//! `env verify`: the project's image, already built, checked layer by layer against the
//! trees in the store (see `build::verify`).

use super::{Error, LockMode, Project, Result};
use crate::build::store::{LAYERS_DIR, Store};
use crate::build::verify::{LayerCheck, Outcome, verify as check_layers};

/// Checks every layer, telling `on_check` each result as it comes (a layer takes a full read of
/// its tree); returns the image's name when all match, and a stale-store error naming the
/// changed layers otherwise.
pub fn verify(
    project: &Project,
    mode: LockMode,
    on_check: &mut dyn FnMut(&LayerCheck),
) -> Result<String> {
    crate::kernel::userns::enter()?;
    let spec = project.spec();
    let lock = super::lock::current_lock(spec, mode)?;
    let store = Store::default_location();
    let (name, image) =
        super::image::ImageContext::new(spec)?.existing_image(spec, &lock, &store)?;
    let Some(image) = image else {
        return Err(Error::user(
            format!("`{name}` is not built"),
            Some("run `env build` first".into()),
        ));
    };
    let mut damaged = Vec::new();
    for check in check_layers(&store, &image, &lock) {
        let check = check?;
        on_check(&check);
        if let Outcome::Changed { .. } = check.outcome {
            damaged.push(check.layer);
        }
    }
    if damaged.is_empty() {
        return Ok(name);
    }
    Err(Error::Stale {
        message: format!(
            "{name}: {} layer(s) changed since they were built: {}",
            damaged.len(),
            damaged.join(", ")
        ),
        reasons: Vec::new(),
        hint: Some(changed_layers_hint()),
    })
}

/// What to do about layers changed since they were built (`env verify` and `env export`).
pub fn changed_layers_hint() -> String {
    format!(
        "the store was modified outside envkit; delete the store folder's {LAYERS_DIR} entries named above and run `env build`"
    )
}
