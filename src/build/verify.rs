//! `env verify`: every layer of an image tarred again from its tree, its diff_id compared
//! with the one recorded when it was built and, where they differ, the files named that
//! changed, were added or were removed since (from the layer's member list).

use crate::solve::lockfile::Lock;

use super::base::source_date_epoch;
use super::image::{Image, ImageLayer};
use super::layer_tar::{LayerTarError, TarOptions, layer_digest};
use super::members::{self, Differences, MembersError};
use super::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot compute the {layer} layer's digest")]
    Digest {
        layer: String,
        #[source]
        source: LayerTarError,
    },
}

/// What one layer's tree gives now.
#[derive(Debug)]
pub struct LayerCheck {
    /// The layer's name in the image (`base`, `packages-1`, ...).
    pub layer: String,
    /// Its key in the store.
    pub key: String,
    /// The diff_id recorded when it was built.
    pub recorded: String,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub enum Outcome {
    /// The tree gives the recorded diff_id.
    Matches,
    /// The tree gives another diff_id.
    Changed { actual: String, files: ChangedFiles },
    /// The layer's record cannot be read: the folder is no longer a layer envkit can trust.
    Damaged { reason: String },
}

impl Outcome {
    /// Whether the layer must be built (or pulled) again.
    pub fn is_damaged(&self) -> bool {
        !matches!(self, Outcome::Matches)
    }
}

/// Which files of a changed layer differ from its member list.
#[derive(Debug)]
pub enum ChangedFiles {
    /// Possibly empty: the same members with the same bytes give the same tar, so then only
    /// the list can be stale.
    Named(Differences),
    /// The layer was built before member lists existed.
    Unlisted,
    /// The list cannot be read.
    Unreadable(MembersError),
}

/// Checks the layers of `image`, built from `lock`, bottom first, one at a time as the
/// iterator is advanced (each takes a full read of the layer's tree).
pub fn verify<'a>(
    store: &'a Store,
    image: &'a Image,
    lock: &Lock,
) -> impl Iterator<Item = Result<LayerCheck, VerifyError>> + 'a {
    let clamp_mtime = source_date_epoch(lock);
    image
        .layers
        .iter()
        .map(move |layer| check_layer(store, layer, clamp_mtime))
}

fn check_layer(
    store: &Store,
    layer: &ImageLayer,
    clamp_mtime: u64,
) -> Result<LayerCheck, VerifyError> {
    // The layer's own record is the authority on its diff_id; the image's copy of it is
    // checked against that record by `image_record_problems`.
    let check = |recorded: &str, outcome| LayerCheck {
        layer: layer.name.clone(),
        key: layer.key.clone(),
        recorded: recorded.to_string(),
        outcome,
    };
    let record = match store.existing_layer(&layer.key) {
        Ok(record) => record,
        Err(error) => {
            return Ok(check(
                &layer.diff_id,
                Outcome::Damaged {
                    reason: error.to_string(),
                },
            ));
        }
    };
    let kind = record.kind;
    let digest = layer_digest(
        &store.tree(&layer.key),
        &TarOptions::for_layer(&kind, clamp_mtime),
    )
    .map_err(|source| VerifyError::Digest {
        layer: layer.name.clone(),
        source,
    })?;
    let outcome = if digest.diff_id == record.diff_id {
        // The list names the files `env verify` reports as changed; a damaged one would name
        // the wrong files next time, so it counts as damage too.
        match members::read(&store.members_path(&layer.key)) {
            Ok(Some(recorded)) if recorded != digest.members => Outcome::Damaged {
                reason: "its member list does not match its tree".into(),
            },
            Err(error) => Outcome::Damaged {
                reason: error.to_string(),
            },
            Ok(_) => Outcome::Matches,
        }
    } else {
        let files = match members::read(&store.members_path(&layer.key)) {
            Ok(Some(recorded)) => ChangedFiles::Named(members::compare(&recorded, &digest.members)),
            Ok(None) => ChangedFiles::Unlisted,
            Err(error) => ChangedFiles::Unreadable(error),
        };
        Outcome::Changed {
            actual: digest.diff_id,
            files,
        }
    };
    Ok(check(&record.diff_id, outcome))
}

/// What is wrong with the record of `image`, judged by what it must say: the name it is kept
/// under, the layers the plan names (`keys`, bottom first), each layer's diff_id and size as
/// the layer's own record has them, and the id those give. Empty when it says all that.
pub fn image_record_problems(
    store: &Store,
    image: &Image,
    name: &str,
    keys: &[String],
    architecture: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    if image.name != name {
        problems.push(format!("it names the image `{}`", image.name));
    }
    if image.architecture != architecture {
        problems.push(format!(
            "it says the architecture is `{}`",
            image.architecture
        ));
    }
    let recorded: Vec<&String> = image.layers.iter().map(|layer| &layer.key).collect();
    if recorded != keys.iter().collect::<Vec<_>>() {
        problems.push("its layers are not the ones the lock and env file give".into());
    }
    for layer in &image.layers {
        if let Ok(record) = store.existing_layer(&layer.key)
            && (record.diff_id != layer.diff_id || record.size != layer.size)
        {
            problems.push(format!(
                "its {} layer's diff_id or size differs from the layer's record",
                layer.name
            ));
        }
    }
    if image.id != super::image::image_id(&image.architecture, &image.layers) {
        problems.push("its id is not the digest of its layers".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::image::testing::{image_of, publish_layer};
    use crate::build::layer_kind::LayerKind;
    use rustix::fs::XattrFlags;

    fn lock() -> Lock {
        crate::solve::fixture::bookworm_lock(vec![])
    }

    /// A store with a base layer and a packages layer, and their image.
    fn fixture(with_members: bool) -> (tempfile::TempDir, Store, Image) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let clamp = source_date_epoch(&lock());
        let layers = [(LayerKind::Base, "k1"), (LayerKind::Packages(1), "k2")]
            .into_iter()
            .map(|(kind, key)| {
                let name = kind.name();
                publish_layer(&store, kind, &name, key, clamp, with_members, |tree| {
                    let bin = tree.join("usr/bin");
                    std::fs::create_dir_all(&bin).unwrap();
                    for file in ["jq", "tree", "less"] {
                        std::fs::write(bin.join(format!("{file}-{key}")), file).unwrap();
                    }
                })
            })
            .collect();
        (dir, store, image_of(layers))
    }

    fn checks(store: &Store, image: &Image) -> Vec<LayerCheck> {
        verify(store, image, &lock())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn untouched_layers_match() {
        let (_dir, store, image) = fixture(true);
        let checks = checks(&store, &image);
        assert_eq!(checks.len(), 2);
        for (check, layer) in checks.iter().zip(&image.layers) {
            assert_eq!(check.layer, layer.name);
            assert_eq!(check.recorded, layer.diff_id);
            assert!(matches!(check.outcome, Outcome::Matches), "{check:?}");
        }
    }

    #[test]
    fn a_changed_layer_names_its_files() {
        let (_dir, store, image) = fixture(true);
        let bin = store.tree("k2").join("usr/bin");
        std::fs::write(bin.join("jq-k2"), "not jq").unwrap();
        std::fs::remove_file(bin.join("less-k2")).unwrap();
        std::fs::write(bin.join("new"), "").unwrap();
        let checks = checks(&store, &image);
        assert!(matches!(checks[0].outcome, Outcome::Matches));
        let Outcome::Changed { actual, files } = &checks[1].outcome else {
            panic!("{:?}", checks[1]);
        };
        assert_ne!(actual, &checks[1].recorded);
        let ChangedFiles::Named(differences) = files else {
            panic!("{files:?}");
        };
        assert_eq!(
            differences,
            &Differences {
                changed: vec!["/usr/bin/jq-k2".into()],
                added: vec!["/usr/bin/new".into()],
                removed: vec!["/usr/bin/less-k2".into()],
            }
        );
    }

    #[test]
    fn a_layer_without_a_member_list_is_changed_without_names() {
        let (_dir, store, image) = fixture(false);
        std::fs::write(store.tree("k1").join("usr/bin/jq-k1"), "not jq").unwrap();
        let checks = checks(&store, &image);
        assert!(
            matches!(
                checks[0].outcome,
                Outcome::Changed {
                    files: ChangedFiles::Unlisted,
                    ..
                }
            ),
            "{:?}",
            checks[0]
        );
    }

    /// Only the layers above the base are overlay upper folders, whose overlay xattrs mean
    /// something: the kind recorded with the layer decides, whatever the image calls it.
    #[test]
    fn the_recorded_kind_decides_how_a_layer_is_tarred() {
        let (_dir, store, mut image) = fixture(true);
        image.layers[1].name = "base".into();
        let bin = store.tree("k2").join("usr/bin");
        let opaque = rustix::fs::lsetxattr(&bin, "user.overlay.opaque", b"y", XattrFlags::empty());
        if let Err(errno) = opaque {
            let must_work = std::env::var("ENVKIT_MUST_WORK").is_ok_and(|value| value == "1");
            assert!(
                !must_work,
                "ENVKIT_MUST_WORK=1 but no `user.*` xattrs: {errno}"
            );
            eprintln!("skipped: the temporary folder has no `user.*` xattrs: {errno}");
            return;
        }
        let checks = checks(&store, &image);
        let Outcome::Changed {
            files: ChangedFiles::Named(differences),
            ..
        } = &checks[1].outcome
        else {
            panic!("{:?}", checks[1]);
        };
        assert_eq!(differences.added, ["/usr/bin/.wh..wh..opq"]);
    }

    #[test]
    fn a_layer_missing_from_the_store_is_damaged() {
        let (_dir, store, image) = fixture(true);
        crate::build::store::remove_tree(&store.layer_dir("k2")).unwrap();
        let mut checks = verify(&store, &image, &lock());
        assert!(matches!(
            checks.next().unwrap().unwrap().outcome,
            Outcome::Matches
        ));
        let check = checks.next().unwrap().unwrap();
        let Outcome::Damaged { reason } = &check.outcome else {
            panic!("{check:?}");
        };
        assert_eq!(reason, "the store has no layer `k2`");
        assert!(check.outcome.is_damaged());
    }
}
