//! A layer that arrives as a tar (a blob pulled from a registry) into the store, under the key
//! a build would give it, so the project then finds it built.
//!
//! The blob's uncompressed stream must hash to the diff_id its image's config names, and the
//! extracted tree must give that same canonical tar again: a layer whose files came out
//! differently from what was sent (an entry the extractor refused to reproduce, an owner the
//! user namespace cannot map, a lost file capability) is refused rather than used under a key
//! that promises the built tree. Extraction goes into the builder's temporary tree, so a
//! refused or interrupted import leaves nothing under a real name.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::extract::{ExtractError, ExtractOptions, Extractor};
use super::layer_kind::LayerKind;
use super::layer_tar::{LayerTarError, TarOptions, layer_digest};
use super::members::{self, MembersError};
use super::store::{LayerRecord, Store, StoreError};

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobCompression {
    None,
    Gzip,
    Zstd,
}

impl BlobCompression {
    /// The compression an OCI or Docker layer media type names; `None` for a type that is not
    /// a layer tar envkit reads (foreign or non-distributable layers among them).
    pub fn from_media_type(media_type: &str) -> Option<BlobCompression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar" => Some(BlobCompression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(BlobCompression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd" => Some(BlobCompression::Zstd),
            _ => None,
        }
    }
}

/// A downloaded layer blob and what its image says of it.
pub struct LayerBlobFile<'a> {
    /// `base`, `packages-1`, ...: for messages.
    pub name: &'a str,
    pub key: &'a str,
    pub kind: LayerKind,
    pub parent: Option<String>,
    /// `sha256:` of the uncompressed tar, from the image's config.
    pub diff_id: &'a str,
    pub compression: BlobCompression,
    /// Made by another tool (a base image's layer): the stream must still hash to `diff_id`,
    /// but the tree is recorded under envkit's own tar of it, which need not be the maker's.
    pub foreign: bool,
    pub path: &'a Path,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the {layer} layer's blob `{}`", path.display())]
    Read {
        layer: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot unpack the {layer} layer")]
    Extract {
        layer: String,
        #[source]
        source: ExtractError,
    },
    #[error(
        "the {layer} layer's tar is not the one its image names: expected {expected}, got {actual}"
    )]
    Sent {
        layer: String,
        expected: String,
        actual: String,
    },
    #[error(
        "the {layer} layer unpacked into files that do not give its tar again: expected {expected}, got {actual}"
    )]
    Unpacked {
        layer: String,
        expected: String,
        actual: String,
    },
    #[error("cannot read back the {layer} layer's files")]
    Digest {
        layer: String,
        #[source]
        source: LayerTarError,
    },
    #[error(transparent)]
    Members(#[from] MembersError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Unpacks `blob` into the store under its key and publishes it; `Ok(false)` when the store
/// had the layer already (another pull or build finished it meanwhile). `clamp_mtime` is the
/// image's `SOURCE_DATE_EPOCH`, which the layer's canonical tar depends on.
pub fn import_layer(
    store: &Store,
    blob: &LayerBlobFile<'_>,
    clamp_mtime: u64,
) -> Result<bool, ImportError> {
    let Some(build) = store.begin(blob.key)? else {
        return Ok(false);
    };
    let read_error = |source| ImportError::Read {
        layer: blob.name.to_string(),
        path: blob.path.to_path_buf(),
        source,
    };
    let file = BufReader::with_capacity(1 << 16, File::open(blob.path).map_err(read_error)?);
    let stream: Box<dyn Read> = match blob.compression {
        BlobCompression::None => Box::new(file),
        BlobCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        BlobCompression::Zstd => Box::new(zstd::Decoder::with_buffer(file).map_err(read_error)?),
    };
    let mut hashing = Hashing {
        inner: stream,
        hasher: Sha256::new(),
    };
    let options = ExtractOptions {
        preserve_owners: true,
        oci_whiteouts: true,
    };
    let tree = build.tree();
    let extract_error = |source| ImportError::Extract {
        layer: blob.name.to_string(),
        source,
    };
    Extractor::open(&tree, blob.name, &options)
        .map_err(extract_error)?
        .extract(&mut hashing)
        .map_err(extract_error)?;
    // The tar reader stops at the end-of-archive blocks; the padding after them is part of
    // the digest too.
    io::copy(&mut hashing, &mut io::sink()).map_err(read_error)?;
    let sent = format!("sha256:{}", crate::fetch::hex(&hashing.hasher.finalize()));
    if sent != blob.diff_id {
        return Err(ImportError::Sent {
            layer: blob.name.to_string(),
            expected: blob.diff_id.to_string(),
            actual: sent,
        });
    }
    let digest =
        layer_digest(&tree, &TarOptions::for_layer(&blob.kind, clamp_mtime)).map_err(|source| {
            ImportError::Digest {
                layer: blob.name.to_string(),
                source,
            }
        })?;
    if !blob.foreign && digest.diff_id != blob.diff_id {
        return Err(ImportError::Unpacked {
            layer: blob.name.to_string(),
            expected: blob.diff_id.to_string(),
            actual: digest.diff_id,
        });
    }
    members::write(&build.members_path(), &digest.members)?;
    build.publish(&LayerRecord {
        key: blob.key.to_string(),
        diff_id: digest.diff_id,
        size: digest.size,
        kind: blob.kind.clone(),
        parent: blob.parent.clone(),
    })?;
    Ok(true)
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::export::{LayerCompression, compress_layer};
    use crate::build::image::ImageLayer;
    use crate::build::image::testing::publish_layer;
    use std::os::unix::fs::MetadataExt;

    const CLAMP: u64 = 1_700_000_000;

    /// A packages layer that adds files, deletes `etc/gone` and replaces `opt/old` with a
    /// folder of its own, as overlayfs leaves it in an upper folder.
    fn upper_layer(store: &Store) -> ImageLayer {
        publish_layer(
            store,
            LayerKind::Packages(1),
            "packages-1",
            "k-upper",
            CLAMP,
            true,
            |tree| {
                std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
                std::fs::write(tree.join("usr/bin/tool"), "#!/bin/sh\n".repeat(500)).unwrap();
                std::fs::hard_link(tree.join("usr/bin/tool"), tree.join("usr/bin/tool2")).unwrap();
                std::os::unix::fs::symlink("tool", tree.join("usr/bin/alias")).unwrap();
                std::fs::create_dir_all(tree.join("etc")).unwrap();
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    tree.join("etc/gone"),
                    rustix::fs::FileType::CharacterDevice,
                    rustix::fs::Mode::empty(),
                    0,
                )
                .unwrap();
                std::fs::create_dir_all(tree.join("opt/old")).unwrap();
                rustix::fs::setxattr(
                    tree.join("opt/old"),
                    "user.overlay.opaque",
                    b"y",
                    rustix::fs::XattrFlags::empty(),
                )
                .unwrap();
                std::fs::write(tree.join("opt/old/new"), "replaced").unwrap();
            },
        )
    }

    fn blob_of(
        from: &Store,
        layer: &ImageLayer,
        compression: LayerCompression,
        scratch: &Path,
    ) -> (crate::build::export::Scratch, BlobCompression) {
        let (file, blob) = compress_layer(from, layer, (CLAMP, compression), scratch).unwrap();
        (
            file,
            BlobCompression::from_media_type(&blob.media_type).unwrap(),
        )
    }

    fn import(
        into: &Store,
        layer: &ImageLayer,
        path: &Path,
        compression: BlobCompression,
    ) -> Result<bool, ImportError> {
        import_layer(
            into,
            &LayerBlobFile {
                name: &layer.name,
                key: &layer.key,
                kind: LayerKind::Packages(1),
                parent: Some("k-base".into()),
                diff_id: &layer.diff_id,
                compression,
                foreign: false,
                path,
            },
            CLAMP,
        )
    }

    #[test]
    fn a_pulled_layer_is_the_built_one_with_its_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let built = Store::new(&dir.path().join("built"));
        let layer = upper_layer(&built);
        for compression in [LayerCompression::Gzip, LayerCompression::Zstd] {
            let pulled = Store::new(&dir.path().join(format!("pulled-{compression:?}")));
            let (file, kind) = blob_of(&built, &layer, compression, dir.path());
            assert!(import(&pulled, &layer, file.path(), kind).unwrap());
            let record = pulled.existing_layer(&layer.key).unwrap();
            assert_eq!(record.diff_id, layer.diff_id);
            assert_eq!(record.parent.as_deref(), Some("k-base"));
            let tree = pulled.tree(&layer.key);
            let gone = std::fs::symlink_metadata(tree.join("etc/gone")).unwrap();
            assert!(std::os::unix::fs::FileTypeExt::is_char_device(
                &gone.file_type()
            ));
            assert_eq!(gone.rdev(), 0);
            assert_eq!(
                rustix::fs::getxattr(tree.join("opt/old"), "user.overlay.opaque", &mut [0u8; 4])
                    .unwrap(),
                1
            );
            let tool = std::fs::metadata(tree.join("usr/bin/tool")).unwrap();
            assert_eq!(tool.nlink(), 2, "the hard link stays one file");
            assert_eq!(
                crate::build::members::read(&pulled.members_path(&layer.key)).unwrap(),
                crate::build::members::read(&built.members_path(&layer.key)).unwrap()
            );
            assert!(
                !import(&pulled, &layer, file.path(), kind).unwrap(),
                "a second import finds it there"
            );
        }
    }

    #[test]
    fn a_blob_that_is_not_the_named_tar_leaves_no_layer() {
        let dir = tempfile::tempdir().unwrap();
        let built = Store::new(&dir.path().join("built"));
        let layer = upper_layer(&built);
        let pulled = Store::new(&dir.path().join("pulled"));
        let (file, kind) = blob_of(&built, &layer, LayerCompression::Gzip, dir.path());
        let mut other = layer.clone();
        other.diff_id = format!("sha256:{}", "0".repeat(64));
        let error = import(&pulled, &other, file.path(), kind).unwrap_err();
        assert!(matches!(error, ImportError::Sent { .. }), "{error:?}");
        assert!(pulled.layer(&layer.key).unwrap().is_none());
        assert_eq!(std::fs::read_dir(pulled.tmp_dir()).unwrap().count(), 0);

        let mut bytes = std::fs::read(file.path()).unwrap();
        bytes.truncate(bytes.len() / 2);
        let cut = dir.path().join("cut.tar.gz");
        std::fs::write(&cut, bytes).unwrap();
        let error = import(&pulled, &layer, &cut, kind).unwrap_err();
        assert!(matches!(error, ImportError::Extract { .. }), "{error}");
        assert!(pulled.layer(&layer.key).unwrap().is_none());
    }

    #[test]
    fn media_types_name_their_compression() {
        use BlobCompression as C;
        let of = BlobCompression::from_media_type;
        assert_eq!(of("application/vnd.oci.image.layer.v1.tar"), Some(C::None));
        assert_eq!(
            of("application/vnd.oci.image.layer.v1.tar+gzip"),
            Some(C::Gzip)
        );
        assert_eq!(
            of("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(C::Gzip)
        );
        assert_eq!(
            of("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(C::Zstd)
        );
        assert_eq!(
            of("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
            None
        );
        assert_eq!(
            of("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            None
        );
    }
}
