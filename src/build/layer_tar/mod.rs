//! The canonical OCI layer tar of a layer tree, and its `diff_id`.
//!
//! The store keeps every layer as an unpacked tree; the layer's `diff_id` is the SHA-256 of
//! the tar this module writes from that tree. `env verify` recomputes it, `env export` writes
//! the same bytes, and two builds of one lock must agree on it. The form below is therefore a
//! contract: changing any detail of it changes every `diff_id` in every store, so a change
//! needs a new store version.
//!
//! # Canonical form, version 1
//!
//! **Order.** The tree's root directory has no entry of its own (as in Docker's and
//! containerd's layers); its children are the top-level entries. The walk is depth first and a
//! directory's entry comes right before its contents. Inside one directory the order is: the
//! opaque marker (if the directory is opaque), then the whiteouts in byte order of the deleted
//! names, then every other child in byte order of its name. Whiteouts go first because the
//! image spec asks for whiteout files before their sibling entries, which a plain byte sort
//! does not give (`-x` sorts before `.wh.y`).
//!
//! **Names.** Relative, without a leading `./` or `/` (Docker's spelling); a directory's name
//! ends in `/`. Names and symlink targets are the bytes on disk: no Unicode normalisation, no
//! charset conversion.
//!
//! **Entries.**
//! - A regular file is type `0` with its contents as they are; a directory type `5`; a
//!   symlink type `2` with its target as it is.
//! - A non-directory with more than one link is written in full at its first path in the
//!   order above; each later path to the same inode (within the tree) is a hard link (type
//!   `1`, size 0) to that first path, with the inode's mode, owner and mtime and no xattrs.
//! - Sockets are left out (runtime state, never content). FIFOs and device nodes are errors:
//!   the builder removes `/dev`'s contents, so one here is a mistake worth stopping for.
//! - A name starting with `.wh.` is an error: consumers would read it as a whiteout.
//!
//! **Header.** POSIX ustar (`ustar\0`, version `00`). Numeric fields are octal, zero-padded
//! and NUL-terminated; the checksum is six octal digits, NUL, space. `mode` holds the
//! permission bits including setuid, setgid and sticky; `uid` and `gid` are numeric and
//! `uname`/`gname` are empty; `mtime` is the whole seconds of the file's mtime (the fraction
//! dropped), lowered to [`TarOptions::clamp_mtime`] when later; there is no atime or ctime.
//! `devmajor`, `devminor` and `prefix` are all NUL: no entry is a device and long names are
//! never split into `prefix` (they go to PAX instead, one rule instead of two).
//!
//! **PAX.** An `x` extended header precedes an entry only when a value does not fit its ustar
//! field or has none: `path` or `linkpath` longer than 100 bytes, `size` of 8 GiB or more,
//! `uid` or `gid` of 2097152 (8^7) or more, `mtime` before 1970 or from 8^11 seconds on, and
//! the file capability as `SCHILY.xattr.security.capability` (raw bytes). The ustar field then
//! holds the first 100 bytes of the name, or 0. `hdrcharset=BINARY` is added when a `path` or
//! `linkpath` record is not UTF-8. Records are in byte order of their keywords; the extended
//! header is named `././@PaxHeader` with mode, owner and mtime 0 (as Python's `tarfile` and
//! star write it, and unlike GNU tar's default it holds no process id). No global headers and
//! no GNU extensions.
//!
//! **Extended attributes.** Only `security.capability` is kept (file capabilities, such as
//! ping's). Dropped: overlayfs bookkeeping (`trusted.overlay.*`, `user.overlay.*`), SELinux
//! labels (the host's policy, not the image's content), POSIX ACLs and other `user.*` (Debian
//! packages carry none, and dpkg does not keep them).
//!
//! **End.** Two 512-byte zero blocks and nothing after them: no padding to a 10240-byte
//! record, as with Go's `archive/tar` (Docker, containerd) and the `tar` crate.
//!
//! # Overlay upper directories
//!
//! With [`TarOptions::overlay_upper`] the tree is an overlayfs upper directory, whose xattrs
//! may be `trusted.overlay.*` or, on a `userxattr` mount, `user.overlay.*`; both are read.
//! - A whiteout is a character device 0:0, or a zero-size regular file carrying
//!   `overlay.whiteout`. It becomes an empty regular file `.wh.<name>` in the same directory.
//!   Whiteouts and opaque markers get mode 0644, owner 0:0 and mtime `clamp_mtime`: only their
//!   name means anything, and their on-disk owner differs between a rootful and a rootless
//!   build of the same layer.
//! - A directory with `overlay.opaque` = `y` gets an empty regular file `.wh..wh..opq` right
//!   after its own entry. The value `x` means "holds xattr whiteouts", not opaque. The opaque
//!   xattr of the tree's root is ignored: overlayfs does not consult it there, and a
//!   top-level `.wh..wh..opq` would hide every lower layer.
//! - `overlay.redirect` (a renamed directory) and `overlay.metacopy` (metadata copied up, data
//!   still below) are errors: part of such an entry lives in a lower layer, so the upper
//!   directory alone cannot be turned into a layer. Build with `redirect_dir=off,metacopy=off`.
//! - Other `overlay.*` xattrs (`origin`, `impure`, ...) are dropped.
//!
//! The walk never follows symlinks and stays on the root's file system: a mount point inside
//! the tree is an error, so a forgotten `/proc` mount cannot end up in a layer. Only reads
//! are done, so the tree may belong to any uids as long as the process can read it (root, or
//! mapped root in a user namespace).
//!
//! # The writer
//!
//! `walk` visits the tree in the order above, asking `classify` what each entry is;
//! `ustar` turns each header into bytes, and everything passes through `sink`, which
//! hashes exactly what is written.

mod classify;
mod sink;
mod ustar;
mod walk;

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::layer_kind::LayerKind;

/// How a layer tree becomes its tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarOptions {
    /// SOURCE_DATE_EPOCH: every mtime later than this is clamped to it.
    pub clamp_mtime: u64,
    /// Treat the tree as an overlay upper dir: convert whiteouts and opaque dirs to OCI form.
    pub overlay_upper: bool,
}

impl TarOptions {
    /// The options of a layer's canonical tar, the one its diff_id is recorded for: every
    /// layer above the base is built as an overlay upper folder, the base as a whole root.
    /// Building, `env verify` and `env export` must agree on this, so they all ask here.
    pub fn for_layer(kind: &LayerKind, clamp_mtime: u64) -> TarOptions {
        TarOptions {
            // An image's layer keeps the times its maker gave it: nothing of envkit's lock
            // dates it.
            clamp_mtime: match kind {
                LayerKind::Image(_) => u64::MAX,
                _ => clamp_mtime,
            },
            // A copy's files are written as they are, never by overlayfs.
            overlay_upper: !matches!(kind, LayerKind::Base | LayerKind::Copy(_)),
        }
    }
}

/// What identifies a layer tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigest {
    /// `sha256:<hex>` of the uncompressed tar: the layer's OCI `diff_id`.
    pub diff_id: String,
    /// Bytes of the tar.
    pub size: u64,
    /// Members of the tar, PAX extended headers not counted.
    pub entries: u64,
    /// Each member's path and a digest of every byte the tar holds for it (PAX header, header,
    /// contents), in tar order: what tells `env verify` which files changed.
    pub members: Vec<MemberDigest>,
}

/// One member of a layer tar: its path (bytes, as in the tar) and the first 128 bits of
/// blake3 of its bytes in the tar, so a change in contents, mode, owner or link shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDigest {
    pub path: Vec<u8>,
    pub digest: [u8; 16],
}

#[derive(Debug, thiserror::Error)]
pub enum LayerTarError {
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write the layer tar of `{}`", root.display())]
    Write {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer root `{}` is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("`{}` is a {kind}, which a layer cannot hold", path.display())]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("`{}` starts with `.wh.`, which OCI layers reserve for whiteouts", path.display())]
    ReservedName { path: PathBuf },
    #[error("`{}` is a mount point: the layer must be one file system", path.display())]
    OtherFileSystem { path: PathBuf },
    #[error(
        "`{}` carries `{xattr}`, so part of it lives in a lower layer and the upper dir alone \
         cannot become a layer tar",
        path.display()
    )]
    LowerReference { path: PathBuf, xattr: String },
    #[error("`{}` changed while its layer tar was being written", path.display())]
    Changed { path: PathBuf },
}

/// Writes the canonical layer tar of `root` into `out` (any Write) and returns its digest.
pub fn write_layer_tar(
    root: &Path,
    options: &TarOptions,
    out: impl Write,
) -> Result<LayerDigest, LayerTarError> {
    let root_meta = fs::metadata(root).map_err(read_error(root))?;
    if !root_meta.is_dir() {
        return Err(LayerTarError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut writer = walk::LayerWriter::new(
        root,
        options.overlay_upper,
        i64::try_from(options.clamp_mtime).unwrap_or(i64::MAX),
        root_meta.dev(),
        out,
    );
    writer.walk()?;
    writer.finish()
}

/// Only the digest (streams into a hasher; no tar kept) — used by `env verify` and while building.
pub fn layer_digest(root: &Path, options: &TarOptions) -> Result<LayerDigest, LayerTarError> {
    write_layer_tar(root, options, io::sink())
}

fn read_error(path: &Path) -> impl FnOnce(io::Error) -> LayerTarError + '_ {
    move |source| LayerTarError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn write_error(root: &Path) -> impl FnOnce(io::Error) -> LayerTarError + '_ {
    move |source| LayerTarError::Write {
        root: root.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::ustar::{BLOCK, DIRECTORY, HARD_LINK, REGULAR, SYMLINK};
    use super::*;
    use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};
    use sha2::{Digest, Sha256};
    use std::ffi::OsStr;
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{PermissionsExt, lchown, symlink};
    use std::process::Command;

    pub(super) const CLAMP: u64 = 1_700_000_000;
    const LONG: &str =
        "libsomething-with-a-long-name-libsomething-with-a-long-name-libsomething-with-a-long";

    /// Skips with the reason, unless `ENVKIT_MUST_WORK=1` (CI) forbids skipping.
    pub(super) fn skip(reason: &str) {
        let must_work = std::env::var("ENVKIT_MUST_WORK").is_ok_and(|value| value == "1");
        assert!(!must_work, "ENVKIT_MUST_WORK=1 but {reason}");
        eprintln!("skipped: {reason}");
    }

    fn is_root() -> bool {
        // A new file belongs to the effective uid; no need for another rustix feature.
        let probe = tempfile::NamedTempFile::new().unwrap();
        probe.as_file().metadata().unwrap().uid() == 0
    }

    pub(super) fn options(overlay_upper: bool) -> TarOptions {
        TarOptions {
            clamp_mtime: CLAMP,
            overlay_upper,
        }
    }

    enum Item {
        Dir(u32),
        File(Vec<u8>, u32),
        Symlink(String),
        /// Another name for the file at this path.
        Link(&'static str),
    }

    struct Node {
        path: String,
        item: Item,
        mtime: Option<i64>,
        owner: Option<(u32, u32)>,
    }

    impl Node {
        fn mtime(mut self, mtime: i64) -> Self {
            self.mtime = Some(mtime);
            self
        }
        fn owner(mut self, uid: u32, gid: u32) -> Self {
            self.owner = Some((uid, gid));
            self
        }
    }

    fn node(path: impl Into<String>, item: Item) -> Node {
        Node {
            path: path.into(),
            item,
            mtime: None,
            owner: None,
        }
    }
    fn dir(path: impl Into<String>, mode: u32) -> Node {
        node(path, Item::Dir(mode))
    }
    fn file(path: impl Into<String>, contents: &[u8], mode: u32) -> Node {
        node(path, Item::File(contents.to_vec(), mode))
    }

    /// A small root with every kind of entry a Debian layer has, plus the awkward cases.
    fn sample() -> Vec<Node> {
        let long_dir = format!("usr/share/doc/{LONG}");
        let gzip: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        vec![
            dir("etc", 0o755),
            file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644),
            file("etc/shadow", b"root:*:19675:0:99999:7:::\n", 0o640).owner(0, 42),
            dir("tmp", 0o1777),
            dir("usr", 0o755),
            dir("usr/bin", 0o755),
            file("usr/bin/gzip", &gzip, 0o755),
            node("usr/bin/gunzip", Item::Link("usr/bin/gzip")),
            node("usr/bin/zcat", Item::Link("usr/bin/gzip")),
            file("usr/bin/su", b"\x7fELF su", 0o4755),
            node("usr/bin/sh", Item::Symlink("dash".into())),
            file("usr/bin/dash", b"\x7fELF dash", 0o755),
            dir("usr/lib", 0o755),
            node(
                "usr/lib/changelog",
                Item::Symlink(format!("../share/doc/{LONG}/changelog.Debian.gz")),
            ),
            dir("usr/share", 0o755),
            dir("usr/share/doc", 0o755),
            dir(long_dir.clone(), 0o755),
            file(format!("{long_dir}/changelog.Debian.gz"), b"changes", 0o644),
            dir("var", 0o755),
            dir("var/mail", 0o2775).owner(0, 8),
            file("var/old", b"old", 0o644).mtime(1_000_000),
            file("var/ancient", b"", 0o644).mtime(-1),
            file("var/big-ids", b"x", 0o600).owner(3_000_000, 3_000_001),
            file("var/B", b"B", 0o644),
            file("var/_u", b"_", 0o644),
            file("var/a", b"a", 0o644),
            file("var/-m", b"-", 0o644),
        ]
    }

    /// The entries of `sample()` in canonical order: (path, type, link target).
    fn sample_listing() -> Vec<(String, u8, String)> {
        let long_dir = format!("usr/share/doc/{LONG}/");
        let target = format!("../share/doc/{LONG}/changelog.Debian.gz");
        [
            ("etc/", DIRECTORY, ""),
            ("etc/passwd", REGULAR, ""),
            ("etc/shadow", REGULAR, ""),
            ("tmp/", DIRECTORY, ""),
            ("usr/", DIRECTORY, ""),
            ("usr/bin/", DIRECTORY, ""),
            ("usr/bin/dash", REGULAR, ""),
            ("usr/bin/gunzip", REGULAR, ""),
            ("usr/bin/gzip", HARD_LINK, "usr/bin/gunzip"),
            ("usr/bin/sh", SYMLINK, "dash"),
            ("usr/bin/su", REGULAR, ""),
            ("usr/bin/zcat", HARD_LINK, "usr/bin/gunzip"),
            ("usr/lib/", DIRECTORY, ""),
            ("usr/lib/changelog", SYMLINK, &target),
            ("usr/share/", DIRECTORY, ""),
            ("usr/share/doc/", DIRECTORY, ""),
            (&long_dir, DIRECTORY, ""),
            (&format!("{long_dir}changelog.Debian.gz"), REGULAR, ""),
            ("var/", DIRECTORY, ""),
            ("var/-m", REGULAR, ""),
            ("var/B", REGULAR, ""),
            ("var/_u", REGULAR, ""),
            ("var/a", REGULAR, ""),
            ("var/ancient", REGULAR, ""),
            ("var/big-ids", REGULAR, ""),
            ("var/mail/", DIRECTORY, ""),
            ("var/old", REGULAR, ""),
        ]
        .into_iter()
        .map(|(path, kind, link)| (path.to_string(), kind, link.to_string()))
        .collect()
    }

    fn set_mtime(path: &Path, seconds: i64) {
        let time = Timespec {
            tv_sec: seconds,
            tv_nsec: 987_654_321,
        };
        let times = Timestamps {
            last_access: time,
            last_modification: time,
        };
        rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    /// Builds `nodes` under `root`, in reverse order when asked (children before their
    /// directories, and a hard-linked file first created under another of its names), and
    /// gives every entry without its own mtime `late_mtime`.
    fn build(root: &Path, nodes: &[Node], reverse: bool, late_mtime: i64) {
        let group = |node: &Node| match node.item {
            Item::Link(to) => to.to_string(),
            _ => node.path.clone(),
        };
        let mut order: Vec<&Node> = nodes.iter().collect();
        if reverse {
            order.reverse();
        }
        for node in order {
            let path = root.join(&node.path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mode = match &node.item {
                Item::Dir(mode) => {
                    fs::create_dir_all(&path).unwrap();
                    Some(*mode)
                }
                Item::Symlink(target) => {
                    symlink(target, &path).unwrap();
                    None
                }
                Item::File(..) | Item::Link(_) => {
                    let name = group(node);
                    let existing = nodes
                        .iter()
                        .filter(|other| group(other) == name)
                        .map(|other| root.join(&other.path))
                        .find(|other| other.exists());
                    if let Some(existing) = existing {
                        fs::hard_link(existing, &path).unwrap();
                        None
                    } else {
                        let Some(Item::File(contents, mode)) = nodes
                            .iter()
                            .find(|other| other.path == name)
                            .map(|other| &other.item)
                        else {
                            panic!("{name} is not a file");
                        };
                        fs::write(&path, contents).unwrap();
                        Some(*mode)
                    }
                }
            };
            // chown clears setuid, so it goes first.
            if let Some((uid, gid)) = node.owner
                && is_root()
            {
                lchown(&path, Some(uid), Some(gid)).unwrap();
            }
            if let Some(mode) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        for node in nodes {
            set_mtime(&root.join(&node.path), node.mtime.unwrap_or(late_mtime));
        }
    }

    pub(super) fn tar_of(root: &Path, options: &TarOptions) -> (Vec<u8>, LayerDigest) {
        let mut bytes = Vec::new();
        let digest = write_layer_tar(root, options, &mut bytes).unwrap();
        (bytes, digest)
    }

    pub(super) struct Member {
        pub(super) path: String,
        pub(super) kind: u8,
        pub(super) link: String,
        pub(super) mode: u32,
        pub(super) uid: u64,
        pub(super) gid: u64,
        pub(super) mtime: u64,
        pub(super) size: u64,
        pub(super) pax: Vec<(String, Vec<u8>)>,
        pub(super) contents: Vec<u8>,
    }

    /// The tar read back with the `tar` crate.
    pub(super) fn members(bytes: &[u8]) -> Vec<Member> {
        let mut archive = tar::Archive::new(bytes);
        let mut members = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            assert_eq!(header.username_bytes(), Some(&b""[..]));
            assert_eq!(header.groupname_bytes(), Some(&b""[..]));
            assert_eq!(&header.as_bytes()[257..265], b"ustar\x0000");
            let pax = match entry.pax_extensions().unwrap() {
                Some(extensions) => extensions
                    .map(|extension| {
                        let extension = extension.unwrap();
                        let key = extension.key().unwrap().to_string();
                        (key, extension.value_bytes().to_vec())
                    })
                    .collect(),
                None => Vec::new(),
            };
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).unwrap();
            members.push(Member {
                path: String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
                kind: header.entry_type().as_byte(),
                link: entry
                    .link_name_bytes()
                    .map(|link| String::from_utf8(link.into_owned()).unwrap())
                    .unwrap_or_default(),
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                mtime: header.mtime().unwrap(),
                size: header.size().unwrap(),
                pax,
                contents,
            });
        }
        members
    }

    pub(super) fn pax_value<'a>(member: &'a Member, key: &str) -> Option<&'a [u8]> {
        member
            .pax
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value.as_slice())
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        let digest = Sha256::digest(bytes);
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("sha256:{hex}")
    }

    #[test]
    fn same_tree_built_differently_gives_the_same_bytes() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        build(one.path(), &sample(), false, CLAMP as i64 + 1_000);
        build(two.path(), &sample(), true, CLAMP as i64 + 500_000);

        let (first, first_digest) = tar_of(one.path(), &options(false));
        let (second, second_digest) = tar_of(two.path(), &options(false));
        assert_eq!(first_digest, second_digest);
        assert!(first == second, "the two tars differ");
        assert_eq!(first_digest.diff_id, sha256_hex(&first));
        assert_eq!(first_digest.size, first.len() as u64);
        assert_eq!(first_digest.entries, sample_listing().len() as u64);
        assert_eq!(
            layer_digest(two.path(), &options(false)).unwrap(),
            first_digest
        );

        // A single mode bit is part of the identity.
        let su = two.path().join("usr/bin/su");
        fs::set_permissions(&su, fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(
            layer_digest(two.path(), &options(false)).unwrap().diff_id,
            first_digest.diff_id
        );
    }

    #[test]
    fn tar_holds_every_entry_in_canonical_form() {
        let tree = tempfile::tempdir().unwrap();
        build(tree.path(), &sample(), false, CLAMP as i64 + 86_400);
        let (bytes, digest) = tar_of(tree.path(), &options(false));

        assert_eq!(bytes.len() % BLOCK, 0);
        assert!(bytes[bytes.len() - 2 * BLOCK..].iter().all(|&b| b == 0));
        assert_eq!(digest.diff_id, sha256_hex(&bytes));

        let members = members(&bytes);
        let listing: Vec<(String, u8, String)> = members
            .iter()
            .map(|m| (m.path.clone(), m.kind, m.link.clone()))
            .collect();
        assert_eq!(listing, sample_listing());

        // The last member ends exactly where the two zero blocks begin: no record padding.
        let data_blocks: usize = members
            .iter()
            .map(|m| (m.contents.len()).div_ceil(BLOCK))
            .sum();
        let pax_members = members.iter().filter(|m| !m.pax.is_empty()).count();
        let pax_blocks = 2 * pax_members; // every record set here fits one block
        assert_eq!(
            bytes.len(),
            (members.len() + data_blocks + pax_blocks + 2) * BLOCK
        );

        let by_path = |path: &str| {
            members
                .iter()
                .find(|m| m.path == path)
                .unwrap_or_else(|| panic!("no {path}"))
        };
        for node in sample() {
            let on_disk = fs::symlink_metadata(tree.path().join(&node.path)).unwrap();
            let path = match node.item {
                Item::Dir(_) => format!("{}/", node.path),
                _ => node.path.clone(),
            };
            let member = by_path(&path);
            assert_eq!(member.mode, on_disk.mode() & 0o7777, "{path}");
            let expected_mtime = node.mtime.unwrap_or(CLAMP as i64);
            if expected_mtime >= 0 {
                assert_eq!(member.mtime as i64, expected_mtime, "{path}");
                assert_eq!(pax_value(member, "mtime"), None, "{path}");
            } else {
                assert_eq!(member.mtime, 0, "{path}");
                let pax_mtime = expected_mtime.to_string();
                assert_eq!(pax_value(member, "mtime"), Some(pax_mtime.as_bytes()));
            }
            let (uid, gid) = (u64::from(on_disk.uid()), u64::from(on_disk.gid()));
            // The `tar` crate applies PAX `uid`/`gid` to the header it hands out.
            assert_eq!((member.uid, member.gid), (uid, gid), "{path}");
            if uid >= 1 << 21 {
                assert_eq!(pax_value(member, "uid"), Some(uid.to_string().as_bytes()));
                assert_eq!(pax_value(member, "gid"), Some(gid.to_string().as_bytes()));
            }
            if let Item::File(contents, _) = &node.item
                && member.kind == REGULAR
            {
                assert_eq!(&member.contents, contents, "{path}");
                assert_eq!(member.size, contents.len() as u64, "{path}");
            }
        }
        assert_eq!(by_path("usr/bin/su").mode, 0o4755);
        assert_eq!(by_path("tmp/").mode, 0o1777);
        assert_eq!(by_path("var/mail/").mode, 0o2775);
        assert_eq!(by_path("usr/bin/gzip").size, 0);
        if is_root() {
            assert_eq!(by_path("etc/shadow").gid, 42);
            assert_eq!(by_path("var/mail/").gid, 8);
            assert_eq!(
                pax_value(by_path("var/big-ids"), "uid"),
                Some(&b"3000000"[..])
            );
        }
        // Long names and link targets are carried by PAX, the ustar field holds their start.
        let long = members.iter().find(|m| m.path.len() > 100).unwrap();
        assert!(pax_value(long, "path").is_some());
        let changelog = by_path("usr/lib/changelog");
        assert_eq!(
            pax_value(changelog, "linkpath"),
            Some(changelog.link.as_bytes())
        );
        assert!(members.iter().all(|m| {
            m.pax
                .iter()
                .all(|(key, _)| key != "atime" && key != "ctime")
        }));
    }

    /// Python's `tarfile`, an independent reader and writer, as the oracle.
    #[test]
    fn python_tarfile_reads_the_same_entries_and_rewrites_the_same_bytes() {
        if Command::new("python3").arg("--version").output().is_err() {
            skip("`python3` is not installed");
            return;
        }
        let tree = tempfile::tempdir().unwrap();
        build(tree.path(), &sample(), true, CLAMP as i64 + 7);
        let work = tempfile::tempdir().unwrap();
        let ours = work.path().join("layer.tar");
        let theirs = work.path().join("python.tar");
        let mut bytes = Vec::new();
        write_layer_tar(tree.path(), &options(false), &mut bytes).unwrap();
        fs::write(&ours, &bytes).unwrap();

        let script = r#"
import json, sys, tarfile
src = tarfile.open(sys.argv[1], "r:")
members = src.getmembers()
print(json.dumps([[m.name, m.type.decode(), m.mode, m.uid, m.gid, int(m.mtime), m.size, m.linkname]
                  for m in members]))
with tarfile.open(sys.argv[2], "w", format=tarfile.PAX_FORMAT) as dst:
    for m in members:
        dst.addfile(m, src.extractfile(m) if m.isreg() else None)
"#;
        let output = Command::new("python3")
            .args(["-c", script])
            .arg(&ours)
            .arg(&theirs)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let listed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
        let members = members(&bytes);
        assert_eq!(listed.len(), members.len());
        for (python, ours) in listed.iter().zip(&members) {
            let pax_number = |key: &str| {
                pax_value(ours, key).map(|v| String::from_utf8_lossy(v).parse::<i64>().unwrap())
            };
            let expected = serde_json::json!([
                ours.path.trim_end_matches('/'),
                char::from(ours.kind).to_string(),
                ours.mode,
                pax_number("uid").unwrap_or(ours.uid as i64),
                pax_number("gid").unwrap_or(ours.gid as i64),
                pax_number("mtime").unwrap_or(ours.mtime as i64),
                ours.size,
                ours.link,
            ]);
            assert_eq!(python, &expected);
        }

        // Python writes the same headers and records, then pads to its 10240-byte records.
        let rewritten = fs::read(&theirs).unwrap();
        assert_eq!(rewritten.len() % 10240, 0);
        assert!(rewritten.len() >= bytes.len());
        assert!(
            rewritten[..bytes.len()] == bytes[..],
            "python rewrote different bytes"
        );
        assert!(rewritten[bytes.len()..].iter().all(|&b| b == 0));
    }

    pub(super) fn members_paths(bytes: &[u8]) -> Vec<String> {
        members(bytes).into_iter().map(|m| m.path).collect()
    }

    #[test]
    fn names_are_bytes_and_long_binary_ones_say_so() {
        let tree = tempfile::tempdir().unwrap();
        let short = OsStr::from_bytes(b"caf\xe9");
        let mut long_name = vec![b'x'; 120];
        long_name.push(0xff);
        fs::write(tree.path().join(short), "latin-1").unwrap();
        fs::write(tree.path().join(OsStr::from_bytes(&long_name)), "binary").unwrap();
        let (bytes, _) = tar_of(tree.path(), &options(false));
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path_bytes().into_owned();
            let charset = entry.pax_extensions().unwrap().and_then(|extensions| {
                extensions
                    .map(Result::unwrap)
                    .find(|extension| extension.key_bytes() == b"hdrcharset")
                    .map(|extension| extension.value_bytes().to_vec())
            });
            seen.push((path, charset));
        }
        assert_eq!(
            seen,
            [
                (b"caf\xe9".to_vec(), None),
                (long_name, Some(b"BINARY".to_vec())),
            ]
        );
    }

    #[test]
    fn sockets_are_left_out_and_fifos_refused() {
        let tree = tempfile::tempdir().unwrap();
        fs::write(tree.path().join("file"), "x").unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(tree.path().join("sock")).unwrap();
        let (bytes, _) = tar_of(tree.path(), &options(true));
        assert_eq!(members_paths(&bytes), ["file"]);

        let fifo = tree.path().join("fifo");
        rustix::fs::mknodat(CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
        let error = layer_digest(tree.path(), &options(true)).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("`{}` is a fifo, which a layer cannot hold", fifo.display())
        );
    }

    #[test]
    fn names_reserved_for_whiteouts_are_refused() {
        let tree = tempfile::tempdir().unwrap();
        fs::create_dir(tree.path().join("etc")).unwrap();
        fs::write(tree.path().join("etc/.wh.motd"), "").unwrap();
        let error = layer_digest(tree.path(), &options(false)).unwrap_err();
        assert!(
            matches!(error, LayerTarError::ReservedName { .. }),
            "{error}"
        );
    }

    #[test]
    fn root_must_be_a_directory() {
        let tree = tempfile::tempdir().unwrap();
        let file = tree.path().join("file");
        fs::write(&file, "x").unwrap();
        let error = layer_digest(&file, &options(false)).unwrap_err();
        assert!(
            matches!(error, LayerTarError::NotADirectory { .. }),
            "{error}"
        );
        let empty = layer_digest(tree.path().join("missing").as_path(), &options(false));
        assert!(matches!(empty, Err(LayerTarError::Read { .. })));
    }

    #[test]
    fn empty_tree_is_just_the_end_blocks() {
        let tree = tempfile::tempdir().unwrap();
        let (bytes, digest) = tar_of(tree.path(), &options(false));
        assert_eq!(bytes, vec![0; 2 * BLOCK]);
        assert_eq!(digest.entries, 0);
        assert_eq!(digest.diff_id, sha256_hex(&bytes));
    }

    #[test]
    fn only_the_base_is_tarred_as_a_whole_root() {
        assert_eq!(
            TarOptions::for_layer(&LayerKind::Base, CLAMP),
            options(false)
        );
        for kind in [LayerKind::Packages(1), LayerKind::Setup(0)] {
            assert_eq!(TarOptions::for_layer(&kind, CLAMP), options(true));
        }
    }

    /// Measures a real tree: `ENVKIT_LAYER_TAR_TREE=/usr/lib/python3.11 cargo test --release
    /// --lib build::layer_tar -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement, not a check"]
    fn measure_a_real_tree() {
        let Some(tree) = std::env::var_os("ENVKIT_LAYER_TAR_TREE") else {
            eprintln!("set ENVKIT_LAYER_TAR_TREE to a folder to measure");
            return;
        };
        for run in 1..=3 {
            let start = std::time::Instant::now();
            let digest = layer_digest(Path::new(&tree), &options(false)).unwrap();
            let elapsed = start.elapsed();
            println!(
                "run {run}: {} entries, {:.1} MB, {:.0} ms, {:.0} MB/s, {}",
                digest.entries,
                digest.size as f64 / 1e6,
                elapsed.as_secs_f64() * 1e3,
                digest.size as f64 / 1e6 / elapsed.as_secs_f64(),
                digest.diff_id
            );
        }
    }
}
