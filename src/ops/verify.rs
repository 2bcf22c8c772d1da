//! `env verify`: everything stored for the project's image, already built, checked against what
//! it must be: each layer's tree against its recorded diff_id (see `build::verify`), the image's
//! record against the plan and its layers, the root record that keeps the image from `env gc`,
//! and the lock's `.deb`s in the download cache against their SHA-256.

use std::path::PathBuf;

use super::{Error, LockMode, Project, Result, say};
use crate::build::image::BuildError;
use crate::build::store::Store;
use crate::build::verify::{LayerCheck, image_record_problems, verify as check_layers};
use crate::solve::lockfile::{Lock, LockedPackage};

/// One thing checked, as it is found.
pub enum Check<'a> {
    Layer(&'a LayerCheck),
    /// A stored file other than a layer: what it is, and what is wrong with it if anything.
    Stored {
        what: &'a str,
        problem: Option<&'a str>,
    },
}

/// What `env verify` found, and mended with `--repair`.
pub struct Verified {
    pub image: String,
    /// What was built, written or downloaded again, for people.
    pub repaired: Vec<String>,
}

/// What does not match.
#[derive(Default)]
struct Damage {
    /// (name, key) of each layer.
    layers: Vec<(String, String)>,
    /// The image record, when it is wrong.
    image_record: Option<PathBuf>,
    root_record: bool,
    /// Cached `.deb`s whose bytes changed.
    debs: Vec<(PathBuf, LockedPackage)>,
}

impl Damage {
    fn is_empty(&self) -> bool {
        self.layers.is_empty()
            && self.image_record.is_none()
            && !self.root_record
            && self.debs.is_empty()
    }

    /// Each damaged thing, for people.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.layers.iter().map(|(layer, _)| layer.clone()).collect();
        if self.image_record.is_some() {
            names.push("the image record".into());
        }
        if self.root_record {
            names.push("the root record".into());
        }
        names.extend(
            self.debs
                .iter()
                .map(|(_, p)| format!("the cached {} {}", p.name, p.version)),
        );
        names
    }
}

/// Checks everything stored for the image, telling `on_check` each result as it comes (a layer
/// takes a full read of its tree). When all match, returns the image's name; otherwise, with
/// `repair`, deletes what is damaged, builds the layers again (from the team cache where it
/// has them: a build is deterministic, so the layers above stay valid), writes the records
/// again, downloads the damaged `.deb`s again, and checks again; without it, fails naming
/// what is damaged.
pub fn verify(
    project: &Project,
    mode: LockMode,
    repair: bool,
    on_check: &mut dyn FnMut(Check<'_>),
) -> Result<Verified> {
    crate::kernel::userns::enter()?;
    let spec = project.spec();
    let store = Store::default_location();
    let (name, damage) = check(project, mode, &store, repair, on_check)?;
    if damage.is_empty() {
        return Ok(Verified {
            image: name,
            repaired: Vec::new(),
        });
    }
    if !repair {
        return Err(damaged(&name, &damage));
    }
    let repaired = damage.names();
    say(&format!("repairing {}", repaired.join(", ")));
    if let Some(record) = &damage.image_record {
        // Recorded anew by the build below, from the layers' own records.
        crate::build::store::remove_path(record).map_err(BuildError::from)?;
    }
    let keys: Vec<String> = damage.layers.iter().map(|(_, key)| key.clone()).collect();
    crate::build::gc::discard_layers(&store, &keys, &|| {
        say("waiting for builds and sessions to finish")
    })
    .map_err(BuildError::from)?;
    if !damage.debs.is_empty() {
        for (path, _) in &damage.debs {
            crate::build::store::remove_path(path).map_err(BuildError::from)?;
        }
        let lock = super::lock::current_lock(spec, mode)?;
        let context = super::image::ImageContext::new(spec, &lock)?;
        let inputs = context.inputs(spec, &lock);
        let packages: Vec<&LockedPackage> = damage.debs.iter().map(|(_, p)| p).collect();
        crate::build::download::download(
            &packages,
            &lock,
            inputs.mirrors,
            inputs.cache_dir,
            &crate::fetch::Fetcher::new(),
        )
        .map_err(BuildError::from)?;
    }
    // Builds what is missing and records the image and its root again.
    let image = super::image::build_from_lock(spec, &project.lock_path(), mode, &store)?;
    crate::build::shortcut::remember(&store, spec, &project.lock_path(), &image);
    let (name, still) = check(project, mode, &store, false, on_check)?;
    if !still.is_empty() {
        return Err(damaged(&name, &still));
    }
    Ok(Verified {
        image: name,
        repaired,
    })
}

/// The image's name, and what of it does not match.
fn check(
    project: &Project,
    mode: LockMode,
    store: &Store,
    repair: bool,
    on_check: &mut dyn FnMut(Check<'_>),
) -> Result<(String, Damage)> {
    let spec = project.spec();
    let lock = super::lock::current_lock(spec, mode)?;
    let context = super::image::ImageContext::new(spec, &lock)?;
    let image_path = |name: &str| crate::build::image::image_path(store, name);
    // A damaged record stops the plan that names the image: with `repair`, a layer's goes
    // first (the build makes that layer again), one at a time as the plan meets them; the
    // image's record is left for the build to write again.
    let mut unreadable = Vec::new();
    let mut damage = Damage::default();
    let (name, image) = loop {
        match context.existing_image(spec, &lock, store) {
            Ok(found) => break found,
            Err(error) if repair && error.damaged_record().is_some() => {
                let path = error.damaged_record().map(std::path::Path::to_path_buf);
                let key = path
                    .as_deref()
                    .and_then(|path| damaged_layer_key(store, path));
                match key {
                    Some(key) if !unreadable.contains(&key) => {
                        say(&format!("the record of layer {key} is damaged"));
                        crate::build::gc::discard_layers(
                            store,
                            std::slice::from_ref(&key),
                            &|| say("waiting for builds and sessions to finish"),
                        )
                        .map_err(BuildError::from)?;
                        unreadable.push(key);
                    }
                    None if path.as_deref().is_some_and(|path| {
                        path.starts_with(store.images_dir()) && damage.image_record.is_none()
                    }) =>
                    {
                        say("the image record is damaged");
                        let path = path.unwrap_or_default();
                        crate::build::store::remove_path(&path).map_err(BuildError::from)?;
                        damage.image_record = Some(path);
                    }
                    // Not a record a rebuild makes, or one that deleting did not cure.
                    _ => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
        }
    };
    let Some(image) = image else {
        if damage.image_record.is_some() {
            // Deleted above: the repair's build writes it again.
            return Ok((name, damage));
        }
        return Err(super::image::not_built(&name, "run `env build` first"));
    };
    for check in check_layers(store, &image, &lock) {
        let check = check?;
        on_check(Check::Layer(&check));
        if check.outcome.is_damaged() {
            damage.layers.push((check.layer, check.key));
        }
    }
    let plan = crate::build::image::build_plan(&context.inputs(spec, &lock), store)?;
    let keys: Vec<String> = plan.layers.iter().map(|layer| layer.key.clone()).collect();
    let problems = image_record_problems(store, &image, &name, &keys, &lock.architecture);
    report(
        on_check,
        "image record",
        problems.first().map(String::as_str),
    );
    if !problems.is_empty() {
        damage.image_record = Some(image_path(&name));
    }
    let root = crate::build::roots::record_problem(store, &project.lock_path(), &name);
    report(on_check, "root record", root.as_deref());
    damage.root_record = root.is_some();
    damage.debs = damaged_debs(&lock, on_check)?;
    Ok((name, damage))
}

fn report(on_check: &mut dyn FnMut(Check<'_>), what: &str, problem: Option<&str>) {
    on_check(Check::Stored { what, problem });
}

/// The lock's `.deb`s the download cache holds whose bytes no longer have their SHA-256 (the
/// ones it lacks are downloaded when a build needs them).
fn damaged_debs(
    lock: &Lock,
    on_check: &mut dyn FnMut(Check<'_>),
) -> Result<Vec<(PathBuf, LockedPackage)>> {
    let cache_dir = crate::paths::cache_dir();
    let mut damaged = Vec::new();
    let mut checked = 0;
    for package in &lock.packages {
        let path = crate::build::download::deb_path(&cache_dir, &package.sha256);
        match crate::fetch::sha256_file(&path) {
            Ok(actual) if actual == package.sha256 => checked += 1,
            Ok(_) => {
                let what = format!("cached {} {}", package.name, package.version);
                report(on_check, &what, Some("its SHA-256 is not the lock's"));
                damaged.push((path, package.clone()));
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::io(
                    format!("cannot read `{}`", path.display()),
                    source,
                ));
            }
        }
    }
    if checked > 0 {
        let what = format!("{checked} cached .debs of the lock");
        report(on_check, &what, None);
    }
    Ok(damaged)
}

/// The key of the layer whose record is at `path`, if that is where layer records live.
fn damaged_layer_key(store: &Store, path: &std::path::Path) -> Option<String> {
    let dir = path.parent()?;
    (dir.parent()? == store.layers_dir()).then(|| dir.file_name()?.to_str().map(str::to_string))?
}

fn damaged(name: &str, damage: &Damage) -> Error {
    let layers: Vec<&str> = damage
        .layers
        .iter()
        .map(|(layer, _)| layer.as_str())
        .collect();
    let mut parts = Vec::new();
    if !layers.is_empty() {
        parts.push(format!(
            "{} layer(s) changed since they were built: {}",
            layers.len(),
            layers.join(", ")
        ));
    }
    let others: Vec<String> = damage.names().split_off(layers.len());
    if !others.is_empty() {
        parts.push(format!("damaged: {}", others.join(", ")));
    }
    Error::Stale {
        message: format!("{name}: {}", parts.join("; ")),
        reasons: Vec::new(),
        hint: Some(changed_layers_hint()),
    }
}

/// What to do about layers changed since they were built (`env verify` and `env export`).
pub fn changed_layers_hint() -> String {
    "the store was modified outside envkit; `env verify --repair` builds the damaged layers again and rewrites or downloads again what else is damaged"
        .into()
}
