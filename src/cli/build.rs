//! `env build`: the image of env.lock (locking first when needed), or with `--dry-run` the
//! plan of which layers are cached and which would be built.

use std::path::Path;

use clap::Parser;

use super::{Failure, load_spec};
use crate::build::download::human_bytes;
use std::path::PathBuf;

use crate::build::gc::StoreUse;
use crate::build::image::{
    BuildError, BuildInputs, Event, Image, build, build_plan, find_image, image_name,
};
use crate::build::roots;
use crate::build::shortcut;
use crate::build::store::Store;
use crate::mirror::Mirrors;
use crate::solve::lockfile::Lock;
use crate::solve::stage::lock_path;
use crate::spec::Spec;

#[derive(Debug, Parser)]
pub struct BuildArgs {
    /// Print which layers are cached and which would be built, and build nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: &BuildArgs, file: Option<&Path>) -> Result<(), Failure> {
    let loaded = load_spec(file)?;
    let spec = &loaded.spec;
    let store = Store::default_location();
    let lock_file = lock_path(&spec.origin.file);
    // Nothing changed since the image was built: say so without reading the lock again.
    if !args.dry_run
        && let Some(image) = shortcut::lookup(&store, spec, &lock_file)
    {
        report(&image);
        return Ok(());
    }
    let lock = super::lock::current_lock(spec)?;
    let context = ImageContext::new(spec)?;
    let inputs = context.inputs(spec, &lock);
    if args.dry_run {
        let plan = build_plan(&inputs, &store)?;
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
    let image = build_and_record(&lock_file, &inputs, &store)?;
    shortcut::remember(&store, spec, &lock_file, &image);
    report(&image);
    Ok(())
}

/// The image's name, id and layers, as `env build` ends.
fn report(image: &Image) {
    eprintln!("image {}  id {}", image.name, image.id);
    for layer in &image.layers {
        eprintln!(
            "  {:<11} {:>9}  {}",
            layer.name,
            human_bytes(layer.size),
            layer.diff_id
        );
    }
}

/// Builds what the store lacks (telling what it builds) and records the lock as a root of
/// the image, so `env gc` keeps it.
pub fn build_and_record(
    lock_file: &Path,
    inputs: &BuildInputs<'_>,
    store: &Store,
) -> Result<Image, Failure> {
    // `env gc` waits until the image and its root are recorded: until then the layers this
    // build reuses may belong to no live root.
    let _in_use = StoreUse::acquire(store, &|| eprintln!("waiting for `env gc` to finish"))
        .map_err(BuildError::from)?;
    let image = build(inputs, store, &|event| match event {
        Event::Building { layer } => eprintln!("building {layer} layer"),
        Event::Built { layer, seconds } => eprintln!("built {layer} layer in {seconds:.1} s"),
    })?;
    roots::record(store, lock_file, &image.name).map_err(BuildError::from)?;
    Ok(image)
}

/// Where setup steps see the project: where the env mounts `.`, else `/work`.
pub fn project_mount_point(spec: &Spec) -> &str {
    spec.mounts
        .iter()
        .find(|m| m.source == ".")
        .map_or("/work", |m| m.at.as_str())
}

/// The image name before the colon: the env's name, else its folder's.
pub fn image_repository(spec: &Spec) -> String {
    spec.name.clone().unwrap_or_else(|| {
        let folder = spec
            .origin
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Some(crate::spec::rules::sanitize_host_name(&folder))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "env".into())
    })
}

/// What building (or finding) the image of a spec needs besides the spec and its lock.
pub struct ImageContext {
    repository: String,
    mirrors: Mirrors,
    cache_dir: PathBuf,
}

impl ImageContext {
    pub fn new(spec: &Spec) -> Result<Self, Failure> {
        let mirrors =
            crate::mirror::for_spec(spec).map_err(crate::solve::stage::SolveError::from)?;
        Ok(ImageContext {
            repository: image_repository(spec),
            mirrors,
            cache_dir: crate::paths::cache_dir(),
        })
    }

    pub fn inputs<'a>(&'a self, spec: &'a Spec, lock: &'a Lock) -> BuildInputs<'a> {
        BuildInputs {
            name: &self.repository,
            lock,
            setup: &spec.setup,
            project_dir: &spec.origin.dir,
            project_at: project_mount_point(spec),
            mirrors: &self.mirrors,
            cache_dir: &self.cache_dir,
        }
    }

    /// The name `env build` gives this spec's image, and the image if the store has it.
    pub fn existing_image(
        &self,
        spec: &Spec,
        lock: &Lock,
        store: &Store,
    ) -> Result<(String, Option<Image>), Failure> {
        let inputs = self.inputs(spec, lock);
        let plan = build_plan(&inputs, store)?;
        let name = image_name(&inputs, &plan);
        let image = find_image(store, &name).map_err(BuildError::from)?;
        Ok((name, image))
    }
}
