//! The image a reference names for this machine's platform: through an image index (a
//! multi-platform image) to the one manifest for it.

use serde::Deserialize;

use super::transfer::{Descriptor, ImageManifest, Platform};
use super::{DOCKER_LIST, OCI_INDEX, registry_error};
use crate::build::image::oci_architecture;
use crate::ops::{Error, Result};
use crate::registry::{Client, Reference};

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

fn protocol(reference: &Reference, reason: String) -> Error {
    Error::user(format!("cannot pull `{reference}`: {reason}"), None)
}

/// The manifest for `architecture` (Debian's name) under the reference, through an image
/// index when the reference names one; and its digest.
pub(crate) fn platform_manifest(
    client: &Client,
    reference: &Reference,
    architecture: &str,
) -> Result<(String, ImageManifest)> {
    let top = client
        .manifest(reference.manifest_reference())
        .map_err(registry_error)?;
    let manifest = if top.media_type == OCI_INDEX || top.media_type == DOCKER_LIST {
        let index: Index = serde_json::from_slice(&top.bytes)
            .map_err(|error| protocol(reference, format!("its index is damaged: {error}")))?;
        let (oci_arch, variant) = oci_architecture(architecture);
        let fits = |platform: &Platform| {
            platform.os == "linux"
                && platform.architecture == oci_arch
                && (platform.variant.is_none() || platform.variant.as_deref() == variant)
        };
        let Some(chosen) = index
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(fits))
        else {
            let offered: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref())
                .map(|p| match &p.variant {
                    Some(variant) => format!("{}/{}/{variant}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect();
            return Err(Error::user(
                format!("`{reference}` has no image for linux/{oci_arch}"),
                Some(format!("it has images for {}", offered.join(", "))),
            ));
        };
        client.manifest(&chosen.digest).map_err(registry_error)?
    } else {
        top
    };
    let parsed: ImageManifest = serde_json::from_slice(&manifest.bytes)
        .map_err(|error| protocol(reference, format!("its manifest is damaged: {error}")))?;
    Ok((manifest.digest, parsed))
}
