//! What an image needs, as data, before anything is built: its layers, each with the key that
//! names it in the store and whether the store already has it.
//!
//! A layer's key is blake3 of its parent's key and its own inputs, so a change anywhere
//! rebuilds that layer and everything above it, and nothing below:
//! - base: the release, the architecture, the lock's `SOURCE_DATE_EPOCH` (the newest index
//!   date: dpkg stamps files it writes with it and the layer tar clamps every time to it, so
//!   two locks of the same packages made on different days give different trees), and every
//!   base-layer package's name, version and SHA-256 (sorted by name). Two environments locked
//!   against the same state of the mirror share it.
//! - packages-N, one per group of the lock's packages layer in order (see
//!   `solve::locker::package_groups`): the parent key, the lock's `SOURCE_DATE_EPOCH`, and
//!   every package of the group's name,
//!   version and SHA-256. Appending a package to `packages` adds a group and so a layer on top;
//!   the layers below keep their keys. None when the environment asks for nothing beyond the base.
//! - image-N, in place of base and packages when the environment starts from a registry
//!   image: one per layer of the image, bottom first, keyed by the parent key and the layer's
//!   diff_id (so images built on the same layers share them).
//! - setup, one per step in order: the parent key, the command, and each input file's path
//!   (relative to the env file) and blake3 of its contents.
//! - copy, one per `copy` in order, above the setup steps (the app changes most often, so its
//!   files sit on top and a change rebuilds nothing below): the parent key, `at`, and
//!   `build::copy::digest` of every entry it puts into the image.
//!
//! Every key also covers `RECIPE_VERSION`: a change in how envkit builds layers must not reuse
//! layers built the old way.

use std::path::{Path, PathBuf};

use crate::solve::lockfile::{Layer, Lock, LockedPackage};
use crate::spec::{CopyFiles, SetupStep};

use super::copy::{CopyEntry, CopyError, IgnoreRules};
use super::layer_kind::LayerKind;
use super::store::{Store, StoreError};

/// Bump when layer contents would differ for the same inputs (a new cleanup rule, say), or
/// when what keys a layer changes (v3: the lock's `SOURCE_DATE_EPOCH`).
pub const RECIPE_VERSION: &str = "envkit-layer-v3";

/// One layer of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLayer {
    pub kind: LayerKind,
    pub key: String,
    pub parent: Option<String>,
    /// The store has it.
    pub cached: bool,
    /// For people: what goes into it.
    pub summary: String,
    /// A copy layer's entries, read when it was planned (its key covers them).
    pub copy: Option<Vec<CopyEntry>>,
}

/// The layers of an image, bottom first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    pub layers: Vec<PlannedLayer>,
}

impl BuildPlan {
    /// Whether nothing needs building.
    pub fn is_complete(&self) -> bool {
        self.layers.iter().all(|l| l.cached)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("setup step {step} (`{command}`): input `{pattern}` matches no file in `{}`", dir.display())]
    NoInputMatch {
        step: usize,
        command: String,
        pattern: String,
        dir: PathBuf,
    },
    #[error("cannot read setup input `{}`", path.display())]
    Input {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the base image {reference} is not pulled yet: `env build` pulls it")]
    ImageUnknown { reference: String },
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The plan for `lock` (with `image_diff_ids`, the layers of the image it pins, if it pins
/// one) plus `setup` steps (inputs relative to `project_dir`, which the steps see at
/// `project_at` and start in), against `store`.
pub fn plan(
    lock: &Lock,
    image_diff_ids: Option<&[String]>,
    setup: &[SetupStep],
    copies: &[CopyFiles],
    project_dir: &Path,
    project_at: &str,
    store: &Store,
) -> Result<BuildPlan, PlanError> {
    let mut layers = Vec::new();
    let mut parent: Option<String> = None;
    if let Some(image) = &lock.image {
        let diff_ids = image_diff_ids.ok_or_else(|| PlanError::ImageUnknown {
            reference: image.reference.clone(),
        })?;
        for (index, diff_id) in diff_ids.iter().enumerate() {
            let kind = LayerKind::Image(index as u32 + 1);
            let mut hasher = keyed(parent.as_deref(), &kind);
            hasher.update(diff_id.as_bytes());
            let summary = format!("{} of {}", short_digest(diff_id), image.reference);
            parent = Some(push(&mut layers, kind, hasher, parent, summary, store)?);
        }
    }
    let epoch = super::base::source_date_epoch(lock);
    let mut base: Vec<&LockedPackage> = lock.layer(Layer::Base).collect();
    base.sort_by(|a, b| a.name.cmp(&b.name));
    let groups = lock
        .groups()
        .into_iter()
        .map(|(group, packages)| (LayerKind::Packages(group), packages));
    // An image base brings its own system: no base layer of Debian packages.
    let base_layer = lock.image.is_none().then_some((LayerKind::Base, base));
    for (kind, packages) in base_layer.into_iter().chain(groups) {
        let mut hasher = keyed(parent.as_deref(), &kind);
        hasher.update(lock.release.as_bytes());
        hasher.update(b"\0");
        hasher.update(lock.architecture.as_bytes());
        hasher.update(b"\0");
        hasher.update(epoch.to_string().as_bytes());
        for package in &packages {
            for field in [&package.name, &package.version, &package.sha256] {
                hasher.update(b"\0");
                hasher.update(field.as_bytes());
            }
        }
        let requested: Vec<&str> = packages
            .iter()
            .filter(|p| p.requested && kind != LayerKind::Base)
            .map(|p| p.name.as_str())
            .collect();
        let summary = match requested.as_slice() {
            [] => format!("{} packages", packages.len()),
            names => format!("{}: {} packages", names.join(" "), packages.len()),
        };
        parent = Some(push(&mut layers, kind, hasher, parent, summary, store)?);
    }
    for (index, step) in setup.iter().enumerate() {
        let kind = LayerKind::Setup(index);
        let mut hasher = keyed(parent.as_deref(), &kind);
        hasher.update(step.command.as_bytes());
        // Where the step runs can change what it does (`pip install .`, relative paths).
        hasher.update(b"\0");
        hasher.update(project_at.as_bytes());
        for (relative, digest) in input_digests(index, step, project_dir)? {
            hasher.update(b"\0");
            hasher.update(relative.as_bytes());
            hasher.update(b"\0");
            hasher.update(digest.as_bytes());
        }
        parent = Some(push(
            &mut layers,
            kind,
            hasher,
            parent,
            step.command.clone(),
            store,
        )?);
    }
    if !copies.is_empty() {
        let ignore = IgnoreRules::of_project(project_dir)?;
        for (index, copy) in copies.iter().enumerate() {
            let kind = LayerKind::Copy(index);
            let entries = super::copy::collect(
                project_dir,
                &copy.source,
                &copy.source_path,
                &copy.at,
                &ignore,
            )?;
            let mut hasher = keyed(parent.as_deref(), &kind);
            hasher.update(copy.at.as_bytes());
            hasher.update(b"\0");
            hasher.update(super::copy::digest(&entries)?.as_bytes());
            let summary = format!("{} -> {}", copy.source, copy.at);
            let key = push(&mut layers, kind, hasher, parent, summary, store)?;
            if let Some(last) = layers.last_mut() {
                last.copy = Some(entries);
            }
            parent = Some(key);
        }
    }
    Ok(BuildPlan { layers })
}

/// `sha256:0123456789ab`, for people.
fn short_digest(digest: &str) -> &str {
    &digest[..digest.len().min("sha256:".len() + 12)]
}

fn keyed(parent: Option<&str>, kind: &LayerKind) -> blake3::Hasher {
    let mut hasher = blake3::Hasher::new();
    hasher.update(RECIPE_VERSION.as_bytes());
    hasher.update(b"\0");
    hasher.update(parent.unwrap_or("").as_bytes());
    hasher.update(b"\0");
    hasher.update(kind.name().as_bytes());
    hasher.update(b"\0");
    hasher
}

fn push(
    layers: &mut Vec<PlannedLayer>,
    kind: LayerKind,
    hasher: blake3::Hasher,
    parent: Option<String>,
    summary: String,
    store: &Store,
) -> Result<String, PlanError> {
    let key = hasher.finalize().to_hex().to_string();
    let cached = store.layer(&key)?.is_some();
    layers.push(PlannedLayer {
        kind,
        key: key.clone(),
        parent,
        cached,
        summary,
        copy: None,
    });
    Ok(key)
}

/// Each file the step's inputs match, as (path relative to the project, blake3 hex), sorted.
fn input_digests(
    step_index: usize,
    step: &SetupStep,
    project_dir: &Path,
) -> Result<Vec<(String, String)>, PlanError> {
    let mut files = Vec::new();
    for pattern in &step.inputs {
        let full = project_dir.join(pattern);
        let matches: Vec<PathBuf> = glob::glob(&full.to_string_lossy())
            .map(|paths| paths.flatten().filter(|p| p.is_file()).collect())
            .unwrap_or_default();
        if matches.is_empty() {
            return Err(PlanError::NoInputMatch {
                step: step_index + 1,
                command: step.command.clone(),
                pattern: pattern.clone(),
                dir: project_dir.to_path_buf(),
            });
        }
        for path in matches {
            let relative = path
                .strip_prefix(project_dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).map_err(|source| PlanError::Input {
                path: path.clone(),
                source,
            })?;
            files.push((relative, blake3::hash(&bytes).to_hex().to_string()));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solve::lockfile::LockedPackage;

    fn package(name: &str, version: &str, layer: Layer) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            suite: "bookworm".into(),
            path: format!("pool/{name}.deb"),
            size: 1,
            sha256: format!("{name}{version}"),
            layer,
            requested: false,
            essential: false,
            batch: 0,
            group: u32::from(layer == Layer::Packages),
        }
    }

    fn lock(packages: Vec<LockedPackage>) -> Lock {
        crate::solve::fixture::bookworm_lock(packages)
    }

    fn base() -> Vec<LockedPackage> {
        vec![
            package("bash", "5.2", Layer::Base),
            package("libc6", "2.36", Layer::Base),
        ]
    }

    #[test]
    fn appending_a_package_adds_a_layer_and_keeps_those_below() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::new(store_dir.path());
        let project = tempfile::tempdir().unwrap();
        std::fs::write(project.path().join("requirements.txt"), "pytest\n").unwrap();
        let setup = vec![SetupStep {
            command: "pip install -r requirements.txt".into(),
            inputs: vec!["requirements.txt".into()],
        }];
        let mut packages = base();
        packages.push(package("python3", "3.11", Layer::Packages));
        let names = |plan: &BuildPlan| {
            plan.layers
                .iter()
                .map(|l| l.kind.name())
                .collect::<Vec<_>>()
        };
        let plan_of = |packages: &[LockedPackage]| {
            plan(
                &lock(packages.to_vec()),
                None,
                &setup,
                &[],
                project.path(),
                "/work",
                &store,
            )
            .unwrap()
        };
        let first = plan_of(&packages);
        assert_eq!(names(&first), ["base", "packages-1", "setup-1"]);
        assert!(!first.is_complete());

        let mut git = package("git", "2.39", Layer::Packages);
        git.group = 2;
        git.requested = true;
        packages.push(git);
        let second = plan_of(&packages);
        assert_eq!(
            names(&second),
            ["base", "packages-1", "packages-2", "setup-1"]
        );
        assert_eq!(second.layers[2].summary, "git: 1 packages");
        assert_eq!(first.layers[0].key, second.layers[0].key, "base shared");
        assert_eq!(
            first.layers[1].key, second.layers[1].key,
            "the first group kept"
        );
        assert_ne!(first.layers[2].key, second.layers[3].key);
        assert_eq!(
            second.layers[3].parent.as_ref(),
            Some(&second.layers[2].key),
            "setup sits on the new group"
        );

        // A change in a lower group rebuilds every group above it.
        packages[2].version = "3.11.1".into();
        packages[2].sha256 = "other".into();
        let third = plan_of(&packages);
        assert_eq!(first.layers[0].key, third.layers[0].key);
        assert_ne!(second.layers[1].key, third.layers[1].key);
        assert_ne!(second.layers[2].key, third.layers[2].key);
    }

    /// dpkg and the layer tar stamp files with the lock's index date, so a lock of the same
    /// packages made another day must not find the other day's layers.
    #[test]
    fn the_index_date_keys_every_layer() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::new(store_dir.path());
        let project = tempfile::tempdir().unwrap();
        let mut packages = base();
        packages.push(package("python3", "3.11", Layer::Packages));
        let mut first = lock(packages);
        first.indexes = vec![crate::solve::lockfile::LockedIndex {
            suite: "bookworm".into(),
            date: "Sat, 11 Jul 2026 10:16:37 UTC".into(),
            path: "main/binary-amd64/Packages.xz".into(),
            sha256: "00".into(),
        }];
        let mut later = first.clone();
        later.indexes[0].date = "Sat, 12 Dec 2026 10:00:00 UTC".into();
        assert_ne!(
            crate::build::base::source_date_epoch(&first),
            crate::build::base::source_date_epoch(&later)
        );
        let keys = |lock: &Lock| -> Vec<String> {
            plan(lock, None, &[], &[], project.path(), "/work", &store)
                .unwrap()
                .layers
                .into_iter()
                .map(|layer| layer.key)
                .collect()
        };
        let (before, after) = (keys(&first), keys(&later));
        assert_eq!(before.len(), 2);
        assert!(before.iter().zip(&after).all(|(a, b)| a != b));
    }

    #[test]
    fn setup_inputs_key_the_step() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::new(store_dir.path());
        let project = tempfile::tempdir().unwrap();
        std::fs::create_dir(project.path().join("src")).unwrap();
        std::fs::write(project.path().join("src/a.py"), "1").unwrap();
        let setup = vec![SetupStep {
            command: "make".into(),
            inputs: vec!["src/*.py".into()],
        }];
        let before = plan(
            &lock(base()),
            None,
            &setup,
            &[],
            project.path(),
            "/work",
            &store,
        )
        .unwrap();
        assert_eq!(before.layers.len(), 2, "no packages layer without packages");
        std::fs::write(project.path().join("src/a.py"), "2").unwrap();
        let after = plan(
            &lock(base()),
            None,
            &setup,
            &[],
            project.path(),
            "/work",
            &store,
        )
        .unwrap();
        assert_eq!(before.layers[0].key, after.layers[0].key);
        assert_ne!(before.layers[1].key, after.layers[1].key);
        let elsewhere = plan(
            &lock(base()),
            None,
            &setup,
            &[],
            project.path(),
            "/src",
            &store,
        )
        .unwrap();
        assert_eq!(after.layers[0].key, elsewhere.layers[0].key);
        assert_ne!(
            after.layers[1].key, elsewhere.layers[1].key,
            "where the step runs keys it too"
        );

        let missing = vec![SetupStep {
            command: "make".into(),
            inputs: vec!["Makefile".into()],
        }];
        let error = plan(
            &lock(base()),
            None,
            &missing,
            &[],
            project.path(),
            "/work",
            &store,
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("setup step 1 (`make`): input `Makefile` matches no file"),
            "{error}"
        );
    }

    #[test]
    fn cached_layers_are_marked() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::new(store_dir.path());
        let project = tempfile::tempdir().unwrap();
        let first = plan(
            &lock(base()),
            None,
            &[],
            &[],
            project.path(),
            "/work",
            &store,
        )
        .unwrap();
        let build = store.begin(&first.layers[0].key).unwrap().unwrap();
        let record = super::super::store::LayerRecord {
            key: first.layers[0].key.clone(),
            diff_id: "sha256:0".into(),
            size: 0,
            kind: LayerKind::Base,
            parent: None,
        };
        build.publish(&record).unwrap();
        assert!(
            plan(
                &lock(base()),
                None,
                &[],
                &[],
                project.path(),
                "/work",
                &store
            )
            .unwrap()
            .is_complete()
        );
    }
}
