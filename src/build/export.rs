//! `env export`: an image as an OCI image layout archive, the format of `oci-archive:` in
//! skopeo and podman (the tests check it with `skopeo inspect` and `umoci unpack`).
//!
//! ```text
//! blobs/sha256/<hex>   the config, the manifest and each layer, gzip-compressed
//! index.json           the manifest, annotated `org.opencontainers.image.ref.name` = the
//!                      image's name (`NAME:TAG`), which `podman load` names the image by
//! oci-layout           {"imageLayoutVersion":"1.0.0"}
//! ```
//! The config is the image's own ([`oci_config`], the bytes its id covers). The manifest is
//! built by [`oci_manifest`] too, listing the layers as `tar+gzip` blobs, so its digest is not
//! the image id (that one names the manifest of the uncompressed tars).
//!
//! Each layer's canonical tar is written again from its tree ([`write_layer_tar`], with the
//! options [`TarOptions::for_layer`] gives the kind its record names) and must give the
//! diff_id recorded when the layer was built; this is checked as it is written, and a
//! changed tree stops the export (`env verify` names such layers). Layers are compressed in
//! parallel, each into a temporary file beside the archive, so no layer is held in memory;
//! the archive is then written in one pass.
//!
//! **Same image, same bytes.** gzip at level 6 with mtime 0, no file name and OS byte 255 (as
//! Go's `compress/gzip` writes it); the archive is ustar with its members in byte order of
//! their names (`blobs/`, `blobs/sha256/`, the blobs by digest, `index.json`, `oci-layout`),
//! owner 0:0, modes 0755 and 0644, and every mtime at the lock's SOURCE_DATE_EPOCH. The bytes
//! depend on the compressor too, so another envkit version may compress differently; the
//! layers' diff_ids never change.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::{Compression, GzBuilder};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::archive::{
    Archive, ArchiveFormat, ExportError, Exported, append_dir, append_file, write_error,
};
use super::image::{Image, ImageLayer, LayerBlob, image_id, oci_manifest};
use super::layer_tar::{TarOptions, write_layer_tar};
use super::store::Store;

/// Media type of a gzip-compressed layer tar.
pub const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Media type of a zstd-compressed layer tar.
pub const LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// gzip level: zlib's default, a fair trade between size and time.
const GZIP_LEVEL: u32 = 6;

/// zstd level: its default, faster than gzip's and smaller.
const ZSTD_LEVEL: i32 = 3;

/// The default file name of an image's archive: `NAME-TAG.oci.tar` or `NAME-TAG.docker.tar`.
pub fn archive_name(image: &Image, format: ArchiveFormat) -> String {
    let kind = match format {
        ArchiveFormat::Oci => "oci",
        ArchiveFormat::Docker => "docker",
    };
    format!("{}.{kind}.tar", image.name.replace([':', '/'], "-"))
}

/// Writes the archive to `path` atomically (a temporary file beside it, then a rename).
pub fn export_to_file(
    store: &Store,
    archive: &Archive<'_>,
    path: &Path,
) -> Result<Exported, ExportError> {
    let image = archive.image;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| archive_name(image, archive.format));
    let temporary = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let scratch = Scratch::new(temporary.clone());
    let file = File::create(&temporary).map_err(write_error(path))?;
    let mut out = BufWriter::new(file);
    let exported = write_archive(store, archive, dir, &mut out, path)?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .map_err(write_error(path))?;
    file.sync_all().map_err(write_error(path))?;
    std::fs::rename(&temporary, path).map_err(write_error(path))?;
    scratch.keep();
    Ok(exported)
}

/// Writes `archive` to `out` (named `shown` in errors); an OCI archive's layers are compressed
/// into temporary files in `scratch_dir` first.
pub fn write_archive(
    store: &Store,
    archive: &Archive<'_>,
    scratch_dir: &Path,
    out: impl Write,
    shown: &Path,
) -> Result<Exported, ExportError> {
    let (image, clamp_mtime) = (archive.image, archive.clamp_mtime);
    if image_id(&image.architecture, &image.layers) != image.id {
        return Err(ExportError::Record {
            image: image.name.clone(),
        });
    }
    if archive.format == ArchiveFormat::Docker {
        return super::docker_archive::write(store, archive, out, shown);
    }
    let layers = compress_layers(
        store,
        image,
        clamp_mtime,
        scratch_dir,
        LayerCompression::Gzip,
    )?;
    let config = archive.config;
    let blobs: Vec<LayerBlob> = layers.iter().map(|(_, blob)| blob.clone()).collect();
    let manifest = oci_manifest(config, &blobs);
    let manifest_digest = format!("sha256:{}", crate::fetch::sha256_hex(&manifest));
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": image.name },
        }],
    });
    let index = serde_json::to_vec(&index).unwrap_or_default();

    // Blobs by digest, each once (two empty setup layers compress alike).
    let mut members: Vec<(String, Content<'_>)> = vec![
        (
            hex_of(&format!("sha256:{}", crate::fetch::sha256_hex(config))),
            Content::Bytes(config),
        ),
        (hex_of(&manifest_digest), Content::Bytes(&manifest)),
    ];
    for (file, blob) in &layers {
        members.push((hex_of(&blob.digest), Content::File(&file.0, blob.size)));
    }
    members.sort_by(|a, b| a.0.cmp(&b.0));
    members.dedup_by(|a, b| a.0 == b.0);

    let mut counted = Counting::new(out);
    write_members(&mut counted, &members, &index, clamp_mtime)
        .and_then(|()| counted.flush())
        .map_err(write_error(shown))?;
    Ok(Exported {
        digest: manifest_digest,
        bytes: counted.size,
    })
}

/// The archive's members in order, then its end.
fn write_members(
    out: &mut impl Write,
    members: &[(String, Content<'_>)],
    index: &[u8],
    mtime: u64,
) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(out);
    append_dir(&mut tar, "blobs/", mtime)?;
    append_dir(&mut tar, "blobs/sha256/", mtime)?;
    for (hex, content) in members {
        let path = format!("blobs/sha256/{hex}");
        match content {
            Content::Bytes(bytes) => {
                append_file(&mut tar, &path, bytes.len() as u64, *bytes, mtime)?
            }
            Content::File(file, size) => {
                let reader = std::io::BufReader::with_capacity(1 << 16, File::open(file)?);
                append_file(&mut tar, &path, *size, reader, mtime)?;
            }
        }
    }
    append_file(&mut tar, "index.json", index.len() as u64, index, mtime)?;
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append_file(
        &mut tar,
        "oci-layout",
        layout.len() as u64,
        &layout[..],
        mtime,
    )?;
    tar.into_inner().map(|_| ())
}

/// What an archive member holds.
enum Content<'a> {
    Bytes(&'a [u8]),
    /// A compressed layer in its temporary file, and its size.
    File(&'a Path, u64),
}

fn hex_of(digest: &str) -> String {
    digest.trim_start_matches("sha256:").to_string()
}

/// A temporary file, removed when dropped unless kept.
pub struct Scratch(PathBuf, bool);

impl Scratch {
    fn new(path: PathBuf) -> Self {
        Scratch(path, false)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    fn keep(mut self) {
        self.1 = true;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// A writer that hashes and counts what goes through it.
struct Counting<W: Write> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Counting<W> {
    fn new(inner: W) -> Self {
        Counting {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A layer compressed into its temporary file, or why not.
type Compressed = Result<(Scratch, LayerBlob), ExportError>;

/// How layer blobs are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerCompression {
    /// What every engine reads.
    #[default]
    Gzip,
    /// Smaller and faster to unpack; engines from 2021 on read it.
    Zstd,
}

/// Every layer, compressed into a temporary file in `scratch_dir`, bottom first; each
/// layer's tree must still give its recorded diff_id.
pub fn compress_layers(
    store: &Store,
    image: &Image,
    clamp_mtime: u64,
    scratch_dir: &Path,
    compression: LayerCompression,
) -> Result<Vec<(Scratch, LayerBlob)>, ExportError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(image.layers.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Compressed>>> =
        Mutex::new((0..image.layers.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(layer) = image.layers.get(index) else {
                        break;
                    };
                    let result =
                        compress_layer(store, layer, (clamp_mtime, compression), scratch_dir);
                    let failed = result.is_err();
                    if let Ok(mut slots) = results.lock() {
                        slots[index] = Some(result);
                    }
                    if failed {
                        // The others stop at their next layer.
                        next.store(usize::MAX / 2, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let slots = results.into_inner().unwrap_or_default();
    let mut layers = Vec::with_capacity(slots.len());
    let mut first_error = None;
    for slot in slots {
        match slot {
            Some(Ok(layer)) => layers.push(layer),
            Some(Err(error)) => {
                first_error.get_or_insert(error);
            }
            None => {}
        }
    }
    match first_error {
        Some(error) => Err(error),
        None if layers.len() == image.layers.len() => Ok(layers),
        None => Err(ExportError::Write {
            path: scratch_dir.to_path_buf(),
            source: std::io::Error::other("a layer was not compressed"),
        }),
    }
}

/// One layer, compressed into a temporary file in `scratch_dir`; its tree must still give its
/// recorded diff_id. The blob's digest is remembered beside the layer
/// ([`known_blob`] finds it).
pub fn compress_layer(
    store: &Store,
    layer: &ImageLayer,
    (clamp_mtime, compression): (u64, LayerCompression),
    scratch_dir: &Path,
) -> Result<(Scratch, LayerBlob), ExportError> {
    let kind = store.existing_layer(&layer.key)?.kind;
    let options = TarOptions::for_layer(&kind, clamp_mtime);
    let path = scratch_dir.join(format!(
        ".envkit-export-{}-{}.tar.z",
        std::process::id(),
        SCRATCH_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(write_error(&path))?;
    let scratch = Scratch::new(path);
    let counting = Counting::new(BufWriter::with_capacity(1 << 16, file));
    let tree = store.tree(&layer.key);
    let failed = |source| ExportError::Layer {
        layer: layer.name.clone(),
        source,
    };
    let (digest, mut counting, media_type) = match compression {
        LayerCompression::Gzip => {
            let mut gzip = GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(counting, Compression::new(GZIP_LEVEL));
            let digest = write_layer_tar(&tree, &options, &mut gzip).map_err(failed)?;
            let counting = gzip.finish().map_err(write_error(&scratch.0))?;
            (digest, counting, LAYER_TAR_GZIP)
        }
        LayerCompression::Zstd => {
            let mut zstd =
                zstd::Encoder::new(counting, ZSTD_LEVEL).map_err(write_error(&scratch.0))?;
            let digest = write_layer_tar(&tree, &options, &mut zstd).map_err(failed)?;
            let counting = zstd.finish().map_err(write_error(&scratch.0))?;
            (digest, counting, LAYER_TAR_ZSTD)
        }
    };
    if digest.diff_id != layer.diff_id || digest.size != layer.size {
        return Err(ExportError::Changed {
            layer: layer.name.clone(),
            recorded: layer.diff_id.clone(),
            actual: digest.diff_id,
        });
    }
    counting.flush().map_err(write_error(&scratch.0))?;
    let blob = LayerBlob {
        media_type: media_type.into(),
        digest: format!("sha256:{}", crate::fetch::hex(&counting.hasher.finalize())),
        size: counting.size,
    };
    remember_blob(store, &layer.key, compression, &blob);
    Ok((scratch, blob))
}

/// What `compressed.json` holds: each compression's blob.
type KnownBlobs = std::collections::BTreeMap<String, (String, u64)>;

fn compression_name(compression: LayerCompression) -> &'static str {
    match compression {
        LayerCompression::Gzip => "gzip",
        LayerCompression::Zstd => "zstd",
    }
}

/// The blob the layer `key` gave when last compressed so, if it was.
pub fn known_blob(store: &Store, key: &str, compression: LayerCompression) -> Option<LayerBlob> {
    let bytes = std::fs::read(store.compressed_record(key)).ok()?;
    let known: KnownBlobs = serde_json::from_slice(&bytes).ok()?;
    let (digest, size) = known.get(compression_name(compression))?.clone();
    Some(LayerBlob {
        media_type: match compression {
            LayerCompression::Gzip => LAYER_TAR_GZIP,
            LayerCompression::Zstd => LAYER_TAR_ZSTD,
        }
        .into(),
        digest,
        size,
    })
}

/// Best effort: without the record, the next push compresses the layer again.
pub fn remember_blob(store: &Store, key: &str, compression: LayerCompression, blob: &LayerBlob) {
    let path = store.compressed_record(key);
    let mut known: KnownBlobs = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    known.insert(
        compression_name(compression).into(),
        (blob.digest.clone(), blob.size),
    );
    if let Ok(bytes) = serde_json::to_vec(&known) {
        let _ = crate::fetch::write_bytes_atomically(&path, &bytes);
    }
}

/// Tells apart the temporary files of two exports or pushes in one process.
static SCRATCH_COUNTER: AtomicUsize = AtomicUsize::new(0);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::image::oci_config;
    use crate::build::image::testing::{image_of, publish_layer};
    use crate::build::layer_kind::LayerKind;
    use std::io::Read;

    const CLAMP: u64 = 1_700_000_000;

    fn archive<'a>(image: &'a Image, config: &'a [u8], format: ArchiveFormat) -> Archive<'a> {
        Archive {
            image,
            config,
            format,
            clamp_mtime: CLAMP,
        }
    }

    /// The config and manifest bytes are part of every image id: they must not drift.
    #[test]
    fn config_and_manifest_bytes_are_stable() {
        let layers = vec![ImageLayer {
            name: "base".into(),
            key: "k".into(),
            diff_id: "sha256:aa".into(),
            size: 10,
        }];
        let config = oci_config("amd64", &layers);
        assert_eq!(
            String::from_utf8(config.clone()).unwrap(),
            r#"{"architecture":"amd64","config":{"Cmd":["/bin/bash"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"os":"linux","rootfs":{"diff_ids":["sha256:aa"],"type":"layers"}}"#
        );
        let id = image_id("amd64", &layers);
        let manifest = format!(
            r#"{{"config":{{"digest":"sha256:{}","mediaType":"application/vnd.oci.image.config.v1+json","size":{}}},"layers":[{{"digest":"sha256:aa","mediaType":"application/vnd.oci.image.layer.v1.tar","size":10}}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}}"#,
            crate::fetch::sha256_hex(&config),
            config.len()
        );
        assert_eq!(
            id,
            format!("sha256:{}", crate::fetch::sha256_hex(manifest.as_bytes()))
        );
    }

    /// A store with a base layer and a packages layer, and their image.
    fn fixture() -> (tempfile::TempDir, Store, Image) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("store"));
        let layers = [
            ("base", LayerKind::Base, "k1"),
            ("packages", LayerKind::Packages(1), "k2"),
        ]
        .into_iter()
        .map(|(name, kind, key)| {
            publish_layer(&store, kind, name, key, 1_700_000_000, false, |tree| {
                std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
                std::fs::write(tree.join(format!("usr/bin/{name}")), name.repeat(1000)).unwrap();
            })
        })
        .collect();
        (dir, store, image_of(layers))
    }

    fn members(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut reader = tar::Archive::new(archive);
        for entry in reader.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            out.push((path, bytes));
        }
        out
    }

    #[test]
    fn the_archive_is_an_oci_layout_and_the_same_every_time() {
        let (dir, store, image) = fixture();
        let path = dir
            .path()
            .join("out")
            .join(archive_name(&image, ArchiveFormat::Oci));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let config = oci_config("amd64", &image.layers);
        let oci = archive(&image, &config, ArchiveFormat::Oci);
        let first = export_to_file(&store, &oci, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(first.bytes, bytes.len() as u64);
        assert_eq!(path.file_name().unwrap(), "app-0123456789ab.oci.tar");
        // No temporary file is left beside it.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );

        let mut streamed = Vec::new();
        let second =
            write_archive(&store, &oci, dir.path(), &mut streamed, Path::new("-")).unwrap();
        assert_eq!(first, second);
        assert!(streamed == bytes, "same image, same bytes");

        let members = members(&bytes);
        let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), 2 + 4 + 2, "{names:?}");
        assert_eq!(names[..2], ["blobs/", "blobs/sha256/"]);
        assert_eq!(names[6..], ["index.json", "oci-layout"]);
        let blob = |digest: &str| {
            let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
            let (_, bytes) = members.iter().find(|(n, _)| *n == name).unwrap();
            assert_eq!(
                format!("sha256:{}", crate::fetch::sha256_hex(bytes)),
                digest,
                "{name}"
            );
            bytes.clone()
        };
        let index: serde_json::Value = serde_json::from_slice(&members[6].1).unwrap();
        let entry = &index["manifests"][0];
        assert_eq!(
            entry["annotations"]["org.opencontainers.image.ref.name"], "app:0123456789ab",
            "podman load names the image by it"
        );
        assert_eq!(entry["digest"], first.digest.as_str());
        let manifest: serde_json::Value =
            serde_json::from_slice(&blob(entry["digest"].as_str().unwrap())).unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
        for (i, layer) in manifest["layers"].as_array().unwrap().iter().enumerate() {
            assert_eq!(layer["mediaType"], LAYER_TAR_GZIP);
            let compressed = blob(layer["digest"].as_str().unwrap());
            assert_eq!(layer["size"], compressed.len() as u64);
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(&compressed[..])
                .read_to_end(&mut tar)
                .unwrap();
            assert_eq!(
                format!("sha256:{}", crate::fetch::sha256_hex(&tar)),
                config["rootfs"]["diff_ids"][i].as_str().unwrap(),
                "the uncompressed layer is the diff_id's tar"
            );
            assert_eq!(
                &compressed[4..10],
                [0, 0, 0, 0, 0, 255],
                "mtime 0, OS unknown"
            );
        }
        assert_eq!(members[7].1, br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
    }

    #[test]
    fn the_docker_archive_holds_each_layer_tar_by_its_diff_id() {
        let (dir, store, image) = fixture();
        let config = oci_config("amd64", &image.layers);
        let docker = archive(&image, &config, ArchiveFormat::Docker);
        let path = dir.path().join(archive_name(&image, ArchiveFormat::Docker));
        assert_eq!(path.file_name().unwrap(), "app-0123456789ab.docker.tar");
        let first = export_to_file(&store, &docker, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut streamed = Vec::new();
        let second =
            write_archive(&store, &docker, dir.path(), &mut streamed, Path::new("-")).unwrap();
        assert_eq!(first, second);
        assert!(streamed == bytes, "same image, same bytes");
        assert_eq!(
            first.digest,
            format!("sha256:{}", crate::fetch::sha256_hex(&config)),
            "the image id docker shows"
        );
        let members = members(&bytes);
        let find = |name: &str| {
            members
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .1
                .clone()
        };
        let manifest: serde_json::Value = serde_json::from_slice(&find("manifest.json")).unwrap();
        assert_eq!(manifest[0]["RepoTags"][0], "app:0123456789ab");
        assert_eq!(
            find(manifest[0]["Config"].as_str().unwrap()),
            config,
            "the config given"
        );
        let layers = manifest[0]["Layers"].as_array().unwrap();
        assert_eq!(layers.len(), image.layers.len());
        for (name, layer) in layers.iter().zip(&image.layers) {
            let tar = find(name.as_str().unwrap());
            assert_eq!(
                format!("sha256:{}", crate::fetch::sha256_hex(&tar)),
                layer.diff_id
            );
            assert_eq!(
                name.as_str().unwrap(),
                format!("{}/layer.tar", layer.diff_id.trim_start_matches("sha256:"))
            );
        }
    }

    #[test]
    fn a_changed_layer_stops_the_export_and_leaves_nothing() {
        let (dir, store, image) = fixture();
        std::fs::write(store.tree("k2").join("usr/bin/packages"), "changed").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let config = oci_config("amd64", &image.layers);
        for format in [ArchiveFormat::Oci, ArchiveFormat::Docker] {
            let path = out.join("a.tar");
            let error =
                export_to_file(&store, &archive(&image, &config, format), &path).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("the packages layer changed since it was built"),
                "{error}"
            );
            assert!(!path.exists());
        }
        let error = export_to_file(
            &store,
            &archive(&image, &config, ArchiveFormat::Oci),
            &out.join("a.tar"),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("the packages layer changed since it was built"),
            "{error}"
        );
        assert!(error.hint().unwrap().contains("env verify"));
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    }

    #[test]
    fn a_record_that_does_not_match_its_layers_is_refused() {
        let (dir, store, mut image) = fixture();
        image.id = "sha256:00".into();
        let config = oci_config("amd64", &image.layers);
        for format in [ArchiveFormat::Oci, ArchiveFormat::Docker] {
            let error = write_archive(
                &store,
                &archive(&image, &config, format),
                dir.path(),
                std::io::sink(),
                Path::new("-"),
            )
            .unwrap_err();
            assert!(matches!(error, ExportError::Record { .. }), "{error}");
        }
    }
}
