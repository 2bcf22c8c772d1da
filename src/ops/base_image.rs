//! An image from a registry as an environment's base (`base image="REF"`): pinned by digest
//! in the lock, its layers pulled into the store, its config handed to sessions.

use super::registry::platform::platform_manifest;
use super::registry::{Transport, client, parse_reference};
use super::{Error, Result};
use crate::registry::{Access, Reference};
use crate::solve::lockfile::{Lock, LockedImage};
use crate::spec::Spec;

/// How a base image's registry is reached: plain HTTP only on this machine's loopback, as
/// Docker treats a local registry.
fn transport(reference: &Reference) -> Transport {
    Transport {
        insecure: reference.is_loopback(),
    }
}

/// The digest `reference` names now for this machine's platform.
pub fn current_digest(reference: &str) -> Result<String> {
    let parsed = parse_reference(reference)?;
    let client = client(&parsed, Access::Pull, transport(&parsed))?;
    let (digest, _) =
        platform_manifest(&client, &parsed, crate::paths::debian_architecture())?;
    Ok(digest)
}

/// The lock of an environment whose base is the image `reference`: the previous pin when it
/// is for the same reference and `keep` allows, else the digest the registry gives now.
pub fn lock(spec: &Spec, reference: &str, previous: Option<&Lock>, keep: bool) -> Result<Lock> {
    if !spec.packages.is_empty() {
        return Err(Error::user(
            format!(
                "{}: `packages` on an image base is not supported yet",
                crate::spec::display_name(&spec.origin.file)
            ),
            Some(
                "install them in a `setup` step (it has the network), or start from `base \"debian:RELEASE\"`"
                    .into(),
            ),
        ));
    }
    let kept = previous
        .and_then(|lock| lock.image.as_ref())
        .filter(|image| keep && image.reference == reference)
        .map(|image| image.digest.clone());
    let digest = match kept {
        Some(digest) => digest,
        None => current_digest(reference)?,
    };
    Ok(Lock {
        release: String::new(),
        architecture: crate::paths::debian_architecture().to_string(),
        recommends: spec.recommends,
        requested: Vec::new(),
        indexes: Vec::new(),
        image: Some(LockedImage {
            reference: reference.to_string(),
            digest,
        }),
        packages: Vec::new(),
    })
}
