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

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use sha2::{Digest, Sha256};

/// How a layer tree becomes its tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TarOptions {
    /// SOURCE_DATE_EPOCH: every mtime later than this is clamped to it.
    pub clamp_mtime: u64,
    /// Treat the tree as an overlay upper dir: convert whiteouts and opaque dirs to OCI form.
    pub overlay_upper: bool,
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
    let mut writer = LayerWriter {
        root,
        overlay_upper: options.overlay_upper,
        clamp: i64::try_from(options.clamp_mtime).unwrap_or(i64::MAX),
        dev: root_meta.dev(),
        sink: Sink {
            out: BufWriter::with_capacity(64 * 1024, out),
            hasher: Sha256::new(),
            size: 0,
            member: None,
            members: Vec::new(),
        },
        first_paths: HashMap::new(),
        chunk: vec![0; 256 * 1024],
        entries: 0,
    };
    writer.walk()?;
    writer.finish()
}

/// Only the digest (streams into a hasher; no tar kept) — used by `env verify` and while building.
pub fn layer_digest(root: &Path, options: &TarOptions) -> Result<LayerDigest, LayerTarError> {
    write_layer_tar(root, options, io::sink())
}

const BLOCK: usize = 512;
const ZEROS: [u8; 2 * BLOCK] = [0; 2 * BLOCK];
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const PAX_HEADER_NAME: &[u8] = b"././@PaxHeader";
const NAME_LEN: usize = 100;

const REGULAR: u8 = b'0';
const HARD_LINK: u8 = b'1';
const SYMLINK: u8 = b'2';
const DIRECTORY: u8 = b'5';
const PAX_EXTENDED: u8 = b'x';

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Whiteout,
    Directory { opaque: bool },
    File,
    Symlink,
}

struct Child {
    name: OsString,
    meta: Metadata,
    kind: Kind,
    capability: Option<Vec<u8>>,
}

/// A directory whose entry is written and whose children are being written.
struct Frame {
    /// Its path in the tar, ending in `/`; empty for the root.
    dir: Vec<u8>,
    children: std::vec::IntoIter<Child>,
}

/// One member's header fields, before they are split between ustar and PAX.
struct Header<'a> {
    path: &'a [u8],
    typeflag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: i64,
    link: &'a [u8],
    capability: Option<&'a [u8]>,
}

/// Everything written goes through here, so the digest is always of exactly the bytes written.
struct Sink<W: Write> {
    out: BufWriter<W>,
    hasher: Sha256,
    size: u64,
    /// The member being written and the hash of its bytes so far.
    member: Option<(Vec<u8>, blake3::Hasher)>,
    members: Vec<MemberDigest>,
}

impl<W: Write> Sink<W> {
    /// Ends the member being written; what follows belongs to the member at `path`.
    fn begin_member(&mut self, path: &[u8]) {
        self.end_member();
        self.member = Some((path.to_vec(), blake3::Hasher::new()));
    }

    fn end_member(&mut self) {
        if let Some((path, hasher)) = self.member.take() {
            let mut digest = [0; 16];
            digest.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
            self.members.push(MemberDigest { path, digest });
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some((_, hasher)) = &mut self.member {
            hasher.update(bytes);
        }
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// Zeros up to the next block boundary after `len` bytes of data.
    fn pad(&mut self, len: u64) -> io::Result<()> {
        let partial = (len % BLOCK as u64) as usize;
        if partial == 0 {
            return Ok(());
        }
        self.write(&ZEROS[..BLOCK - partial])
    }
}

struct LayerWriter<'a, W: Write> {
    root: &'a Path,
    overlay_upper: bool,
    clamp: i64,
    dev: u64,
    sink: Sink<W>,
    /// (device, inode) -> tar path of the first entry for a multiply linked non-directory.
    first_paths: HashMap<(u64, u64), Vec<u8>>,
    chunk: Vec<u8>,
    entries: u64,
}

impl<W: Write> LayerWriter<'_, W> {
    fn walk(&mut self) -> Result<(), LayerTarError> {
        // An explicit stack rather than recursion: a tree may nest deeper than a thread's stack.
        let mut stack = vec![Frame {
            dir: Vec::new(),
            children: self.children(&[])?.into_iter(),
        }];
        while let Some(frame) = stack.last_mut() {
            let Some(child) = frame.children.next() else {
                stack.pop();
                continue;
            };
            let mut path = frame.dir.clone();
            let name = child.name.as_bytes();
            match child.kind {
                Kind::Whiteout => {
                    path.extend_from_slice(WHITEOUT_PREFIX);
                    path.extend_from_slice(name);
                    self.marker(&path)?;
                }
                Kind::Directory { opaque } => {
                    path.extend_from_slice(name);
                    path.push(b'/');
                    self.entry(&self.header(&child, &path, DIRECTORY, 0, b""))?;
                    if opaque {
                        let mut marker = path.clone();
                        marker.extend_from_slice(OPAQUE_MARKER);
                        self.marker(&marker)?;
                    }
                    let children = self.children(&path)?;
                    stack.push(Frame {
                        dir: path,
                        children: children.into_iter(),
                    });
                }
                Kind::File | Kind::Symlink => {
                    path.extend_from_slice(name);
                    self.non_directory(&child, &path)?;
                }
            }
        }
        Ok(())
    }

    /// The children of the directory at tar path `dir`, classified and in canonical order.
    fn children(&self, dir: &[u8]) -> Result<Vec<Child>, LayerTarError> {
        let dir_path = self.disk_path(dir);
        let mut children = Vec::new();
        for entry in fs::read_dir(&dir_path).map_err(read_error(&dir_path))? {
            let entry = entry.map_err(read_error(&dir_path))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(read_error(&path))?;
            let file_type = meta.file_type();
            if file_type.is_socket() {
                continue;
            }
            if meta.dev() != self.dev {
                return Err(LayerTarError::OtherFileSystem { path });
            }
            let name = entry.file_name();
            if name.as_bytes().starts_with(WHITEOUT_PREFIX) {
                return Err(LayerTarError::ReservedName { path });
            }
            let attrs = read_attributes(&path, self.overlay_upper).map_err(read_error(&path))?;
            let kind = if file_type.is_dir() {
                Kind::Directory {
                    opaque: self.overlay_upper && attrs.opaque,
                }
            } else if file_type.is_file() {
                if self.overlay_upper && attrs.whiteout && meta.len() == 0 {
                    Kind::Whiteout
                } else {
                    Kind::File
                }
            } else if file_type.is_symlink() {
                Kind::Symlink
            } else if self.overlay_upper && file_type.is_char_device() && meta.rdev() == 0 {
                Kind::Whiteout
            } else {
                let kind = if file_type.is_char_device() {
                    "character device"
                } else if file_type.is_block_device() {
                    "block device"
                } else if file_type.is_fifo() {
                    "fifo"
                } else {
                    "file of unknown type"
                };
                return Err(LayerTarError::Unsupported { path, kind });
            };
            if let Some(xattr) = attrs.lower_reference
                && kind != Kind::Whiteout
            {
                return Err(LayerTarError::LowerReference { path, xattr });
            }
            children.push(Child {
                name,
                meta,
                kind,
                capability: attrs.capability,
            });
        }
        children.sort_unstable_by(|a, b| {
            (a.kind != Kind::Whiteout, a.name.as_bytes())
                .cmp(&(b.kind != Kind::Whiteout, b.name.as_bytes()))
        });
        Ok(children)
    }

    fn non_directory(&mut self, child: &Child, path: &[u8]) -> Result<(), LayerTarError> {
        let meta = &child.meta;
        if meta.nlink() > 1 {
            match self.first_paths.entry((meta.dev(), meta.ino())) {
                Entry::Occupied(first) => {
                    let first = first.get().clone();
                    return self.entry(&self.header(child, path, HARD_LINK, 0, &first));
                }
                Entry::Vacant(slot) => {
                    slot.insert(path.to_vec());
                }
            }
        }
        let disk_path = self.disk_path(path);
        if child.kind == Kind::Symlink {
            let target = fs::read_link(&disk_path).map_err(read_error(&disk_path))?;
            let target = target.as_os_str().as_bytes();
            return self.entry(&self.header(child, path, SYMLINK, 0, target));
        }
        // Opened before the header is written, so an unreadable file fails cleanly.
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&disk_path)
            .map_err(read_error(&disk_path))?;
        let mut header = self.header(child, path, REGULAR, meta.len(), b"");
        header.capability = child.capability.as_deref();
        self.entry(&header)?;
        self.contents(file, &disk_path, meta.len())
    }

    /// Streams exactly `size` bytes, the size the header promised.
    fn contents(&mut self, mut file: File, path: &Path, size: u64) -> Result<(), LayerTarError> {
        let mut left = size;
        loop {
            // One byte more than is left: a file that grew must be noticed, not cut short.
            let want = (left.min(self.chunk.len() as u64 - 1) + 1) as usize;
            let read = match file.read(&mut self.chunk[..want]) {
                Ok(read) => read as u64,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(read_error(path)(error)),
            };
            if read > left || (read == 0 && left > 0) {
                return Err(LayerTarError::Changed {
                    path: path.to_path_buf(),
                });
            }
            if read == 0 {
                break;
            }
            self.sink
                .write(&self.chunk[..read as usize])
                .map_err(write_error(self.root))?;
            left -= read;
        }
        self.sink.pad(size).map_err(write_error(self.root))
    }

    fn header<'h>(
        &self,
        child: &Child,
        path: &'h [u8],
        typeflag: u8,
        size: u64,
        link: &'h [u8],
    ) -> Header<'h> {
        Header {
            path,
            typeflag,
            mode: child.meta.mode() & 0o7777,
            uid: child.meta.uid().into(),
            gid: child.meta.gid().into(),
            size,
            mtime: child.meta.mtime().min(self.clamp),
            link,
            capability: None,
        }
    }

    /// A whiteout or opaque marker: an empty file whose name is all that matters.
    fn marker(&mut self, path: &[u8]) -> Result<(), LayerTarError> {
        self.entry(&Header {
            path,
            typeflag: REGULAR,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: self.clamp,
            link: b"",
            capability: None,
        })
    }

    /// Writes one member's header block, preceded by a PAX extended header when needed.
    fn entry(&mut self, header: &Header) -> Result<(), LayerTarError> {
        self.sink.begin_member(header.path);
        let mut records: Vec<(&[u8], Vec<u8>)> = Vec::new();
        let mut binary = false;
        if header.path.len() > NAME_LEN {
            records.push((b"path", header.path.to_vec()));
            binary |= std::str::from_utf8(header.path).is_err();
        }
        if header.link.len() > NAME_LEN {
            records.push((b"linkpath", header.link.to_vec()));
            binary |= std::str::from_utf8(header.link).is_err();
        }
        if binary {
            records.push((b"hdrcharset", b"BINARY".to_vec()));
        }
        let mut numeric = |key: &'static [u8], value: u64, digits: u32| {
            if value < 1 << (3 * digits) {
                value
            } else {
                records.push((key, value.to_string().into_bytes()));
                0
            }
        };
        let uid = numeric(b"uid", header.uid, 7);
        let gid = numeric(b"gid", header.gid, 7);
        let size = numeric(b"size", header.size, 11);
        let mtime = match u64::try_from(header.mtime) {
            Ok(mtime) if mtime < 1 << 33 => mtime,
            _ => {
                records.push((b"mtime", header.mtime.to_string().into_bytes()));
                0
            }
        };
        if let Some(capability) = header.capability {
            records.push((b"SCHILY.xattr.security.capability", capability.to_vec()));
        }

        if !records.is_empty() {
            records.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let mut data = Vec::new();
            for (key, value) in &records {
                pax_record(&mut data, key, value);
            }
            let block = ustar_block(&UstarFields {
                name: PAX_HEADER_NAME,
                mode: 0,
                uid: 0,
                gid: 0,
                size: data.len() as u64,
                mtime: 0,
                typeflag: PAX_EXTENDED,
                link: b"",
            });
            let sink = &mut self.sink;
            sink.write(&block)
                .and_then(|()| sink.write(&data))
                .and_then(|()| sink.pad(data.len() as u64))
                .map_err(write_error(self.root))?;
        }

        let block = ustar_block(&UstarFields {
            name: header.path,
            mode: header.mode.into(),
            uid,
            gid,
            size,
            mtime,
            typeflag: header.typeflag,
            link: header.link,
        });
        self.sink.write(&block).map_err(write_error(self.root))?;
        self.entries += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<LayerDigest, LayerTarError> {
        self.sink.end_member();
        self.sink.write(&ZEROS).map_err(write_error(self.root))?;
        self.sink.out.flush().map_err(write_error(self.root))?;
        let digest = self.sink.hasher.finalize();
        let mut diff_id = String::with_capacity(7 + 2 * digest.len());
        diff_id.push_str("sha256:");
        for byte in digest.iter() {
            diff_id.push(char::from(HEX[usize::from(byte >> 4)]));
            diff_id.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        Ok(LayerDigest {
            diff_id,
            size: self.sink.size,
            entries: self.entries,
            members: self.sink.members,
        })
    }

    /// Where the tar path `path` is on disk (without the trailing `/` of directories).
    fn disk_path(&self, path: &[u8]) -> PathBuf {
        let path = path.strip_suffix(b"/").unwrap_or(path);
        if path.is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(OsStr::from_bytes(path))
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The values that go into a ustar block, each already known to fit its field.
struct UstarFields<'a> {
    name: &'a [u8],
    mode: u64,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    link: &'a [u8],
}

fn ustar_block(fields: &UstarFields) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    truncated(&mut block[0..100], fields.name);
    octal(&mut block[100..108], fields.mode);
    octal(&mut block[108..116], fields.uid);
    octal(&mut block[116..124], fields.gid);
    octal(&mut block[124..136], fields.size);
    octal(&mut block[136..148], fields.mtime);
    block[148..156].fill(b' ');
    block[156] = fields.typeflag;
    truncated(&mut block[157..257], fields.link);
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    let checksum: u64 = block.iter().map(|&byte| u64::from(byte)).sum();
    // Six digits and a NUL; the eighth byte keeps its space, as tar writers have always done.
    octal(&mut block[148..155], checksum);
    block
}

/// The first bytes of `value` that fit; longer values also go to a PAX record.
fn truncated(field: &mut [u8], value: &[u8]) {
    let len = value.len().min(field.len());
    field[..len].copy_from_slice(&value[..len]);
}

/// Zero-padded octal digits filling all but the last byte, which is NUL.
fn octal(field: &mut [u8], mut value: u64) {
    let Some((nul, digits)) = field.split_last_mut() else {
        return;
    };
    *nul = 0;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value & 7) as u8;
        value >>= 3;
    }
}

/// `<length> <key>=<value>\n`, where the length counts the whole record, its own digits included.
fn pax_record(data: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while rest + decimal_digits(len) != len {
        len = rest + decimal_digits(len);
    }
    data.extend_from_slice(len.to_string().as_bytes());
    data.push(b' ');
    data.extend_from_slice(key);
    data.push(b'=');
    data.extend_from_slice(value);
    data.push(b'\n');
}

fn decimal_digits(mut value: usize) -> usize {
    let mut digits = 1;
    while value >= 10 {
        value /= 10;
        digits += 1;
    }
    digits
}

/// The extended attributes that matter for the tar; all others are dropped.
#[derive(Default)]
struct Attributes {
    capability: Option<Vec<u8>>,
    opaque: bool,
    whiteout: bool,
    /// The name of an `overlay.redirect` or `overlay.metacopy` xattr.
    lower_reference: Option<String>,
}

fn read_attributes(path: &Path, overlay_upper: bool) -> io::Result<Attributes> {
    let mut attributes = Attributes::default();
    let mut small = [0u8; 1024];
    let mut large = Vec::new();
    let names = match rustix::fs::llistxattr(path, &mut small[..]) {
        Ok(len) => &small[..len],
        Err(Errno::RANGE) => {
            large.resize(rustix::fs::llistxattr_query(path)?, 0);
            let len = rustix::fs::llistxattr(path, &mut large[..])?;
            &large[..len]
        }
        Err(Errno::OPNOTSUPP) => return Ok(attributes),
        Err(errno) => return Err(errno.into()),
    };
    for name in names
        .split(|&byte| byte == 0)
        .filter(|name| !name.is_empty())
    {
        if name == b"security.capability" {
            attributes.capability = Some(xattr_value(path, name)?);
            continue;
        }
        if !overlay_upper {
            continue;
        }
        let Some(key) = name
            .strip_prefix(b"trusted.overlay.")
            .or_else(|| name.strip_prefix(b"user.overlay."))
        else {
            continue;
        };
        match key {
            b"opaque" => attributes.opaque = xattr_value(path, name)? == b"y",
            b"whiteout" => attributes.whiteout = true,
            b"redirect" | b"metacopy" => {
                attributes.lower_reference = Some(String::from_utf8_lossy(name).into_owned());
            }
            _ => {}
        }
    }
    Ok(attributes)
}

fn xattr_value(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    let mut value = vec![0; rustix::fs::lgetxattr_query(path, name)?];
    if value.is_empty() {
        return Ok(value);
    }
    let len = rustix::fs::lgetxattr(path, name, &mut value[..])?;
    value.truncate(len);
    Ok(value)
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
    use super::*;
    use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};
    use std::os::unix::fs::{PermissionsExt, lchown, symlink};
    use std::process::Command;

    const CLAMP: u64 = 1_700_000_000;
    const LONG: &str =
        "libsomething-with-a-long-name-libsomething-with-a-long-name-libsomething-with-a-long";

    /// Skips with the reason, unless `ENVKIT_MUST_WORK=1` (CI) forbids skipping.
    fn skip(reason: &str) {
        let must_work = std::env::var("ENVKIT_MUST_WORK").is_ok_and(|value| value == "1");
        assert!(!must_work, "ENVKIT_MUST_WORK=1 but {reason}");
        eprintln!("skipped: {reason}");
    }

    fn is_root() -> bool {
        // A new file belongs to the effective uid; no need for another rustix feature.
        let probe = tempfile::NamedTempFile::new().unwrap();
        probe.as_file().metadata().unwrap().uid() == 0
    }

    fn options(overlay_upper: bool) -> TarOptions {
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

    fn tar_of(root: &Path, options: &TarOptions) -> (Vec<u8>, LayerDigest) {
        let mut bytes = Vec::new();
        let digest = write_layer_tar(root, options, &mut bytes).unwrap();
        (bytes, digest)
    }

    struct Member {
        path: String,
        kind: u8,
        link: String,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        size: u64,
        pax: Vec<(String, Vec<u8>)>,
        contents: Vec<u8>,
    }

    /// The tar read back with the `tar` crate.
    fn members(bytes: &[u8]) -> Vec<Member> {
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

    fn pax_value<'a>(member: &'a Member, key: &str) -> Option<&'a [u8]> {
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

    /// Sets an xattr, or says why the machine cannot.
    fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), String> {
        rustix::fs::lsetxattr(path, name, value, XattrFlags::empty())
            .map_err(|errno| format!("cannot set `{name}` on `{}`: {errno}", path.display()))
    }

    fn whiteout_device(path: &Path) -> Result<(), String> {
        rustix::fs::mknodat(
            CWD,
            path,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(|errno| format!("cannot create whiteout `{}`: {errno}", path.display()))
    }

    /// A file capability blob (VFS_CAP_REVISION_2, effective): cap_net_raw, as ping has.
    const CAP_NET_RAW: [u8; 20] = [
        0x01, 0, 0, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn overlay_upper(up: &Path) -> Result<(), String> {
        for dir in [
            "etc",
            "usr/bin",
            "usr/share/doc",
            "var/lib/apt/lists/partial",
            "var/cache",
            "var/log",
        ] {
            fs::create_dir_all(up.join(dir)).unwrap();
        }
        fs::write(up.join("etc/hostname"), "envkit\n").unwrap();
        fs::write(up.join("etc/empty"), "").unwrap();
        fs::write(up.join("etc/-dash"), "sorts before .wh.\n").unwrap();
        fs::write(up.join("usr/bin/ping"), "\x7fELF ping").unwrap();
        fs::write(up.join("var/log/dpkg.log"), "").unwrap();
        whiteout_device(&up.join("etc/motd"))?;
        // Newer kernels share one whiteout inode between all whiteouts: not a hard link here.
        fs::hard_link(up.join("etc/motd"), up.join("usr/share/doc/python3")).unwrap();
        set_xattr(up, "trusted.overlay.opaque", b"y")?;
        set_xattr(
            &up.join("var/lib/apt/lists"),
            "trusted.overlay.opaque",
            b"y",
        )?;
        set_xattr(&up.join("var/log"), "trusted.overlay.opaque", b"x")?;
        set_xattr(&up.join("var/cache"), "user.overlay.opaque", b"y")?;
        set_xattr(&up.join("var/log/dpkg.log"), "user.overlay.whiteout", b"")?;
        set_xattr(&up.join("usr/bin"), "trusted.overlay.impure", b"y")?;
        let ping = up.join("usr/bin/ping");
        set_xattr(&ping, "trusted.overlay.origin", b"\x00\xfb\x21\x00\x01")?;
        set_xattr(&ping, "user.comment", b"dropped")?;
        set_xattr(&ping, "security.capability", &CAP_NET_RAW)?;
        Ok(())
    }

    /// Needs root: whiteout devices (CAP_MKNOD), `trusted.*` xattrs and file capabilities.
    #[test]
    fn overlay_whiteouts_and_opaque_directories_become_oci_markers() {
        let upper = tempfile::tempdir().unwrap();
        let up = upper.path();
        if let Err(reason) = overlay_upper(up) {
            skip(&format!("needs root: {reason}"));
            return;
        }
        let (bytes, digest) = tar_of(up, &options(true));
        let members = members(&bytes);
        let listing: Vec<&str> = members.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            listing,
            [
                "etc/",
                "etc/.wh.motd",
                "etc/-dash",
                "etc/empty",
                "etc/hostname",
                "usr/",
                "usr/bin/",
                "usr/bin/ping",
                "usr/share/",
                "usr/share/doc/",
                "usr/share/doc/.wh.python3",
                "var/",
                "var/cache/",
                "var/cache/.wh..wh..opq",
                "var/lib/",
                "var/lib/apt/",
                "var/lib/apt/lists/",
                "var/lib/apt/lists/.wh..wh..opq",
                "var/lib/apt/lists/partial/",
                "var/log/",
                "var/log/.wh.dpkg.log",
            ]
        );
        assert_eq!(digest.entries, members.len() as u64);
        for member in &members {
            assert!(member.kind == REGULAR || member.kind == DIRECTORY);
            if member
                .path
                .rsplit('/')
                .next()
                .unwrap_or("")
                .starts_with(".wh.")
            {
                assert_eq!(
                    (
                        member.mode,
                        member.uid,
                        member.gid,
                        member.mtime,
                        member.size
                    ),
                    (0o644, 0, 0, CLAMP, 0),
                    "{}",
                    member.path
                );
            }
            let expected_pax: &[&str] = if member.path == "usr/bin/ping" {
                &["SCHILY.xattr.security.capability"]
            } else {
                &[]
            };
            let keys: Vec<&str> = member.pax.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, expected_pax, "{}", member.path);
        }
        let ping = members.iter().find(|m| m.path == "usr/bin/ping").unwrap();
        assert_eq!(
            pax_value(ping, "SCHILY.xattr.security.capability"),
            Some(&CAP_NET_RAW[..])
        );

        // The same tree is not a valid full root: its whiteout devices are refused.
        match layer_digest(up, &options(false)) {
            Err(LayerTarError::Unsupported { path, kind }) => {
                assert_eq!((path, kind), (up.join("etc/motd"), "character device"));
            }
            other => panic!("expected a refused device, got {other:?}"),
        }

        // A renamed directory's contents partly live below: refused, not silently wrong.
        set_xattr(&up.join("var/lib"), "trusted.overlay.redirect", b"/var/old").unwrap();
        match layer_digest(up, &options(true)) {
            Err(error @ LayerTarError::LowerReference { .. }) => assert_eq!(
                error.to_string(),
                format!(
                    "`{}` carries `trusted.overlay.redirect`, so part of it lives in a lower \
                     layer and the upper dir alone cannot become a layer tar",
                    up.join("var/lib").display()
                )
            ),
            other => panic!("expected a lower reference, got {other:?}"),
        }
    }

    /// The `userxattr` variant needs no privilege where the file system has `user.*` xattrs.
    #[test]
    fn user_xattr_whiteouts_and_opaque_directories() {
        let upper = tempfile::tempdir().unwrap();
        let up = upper.path();
        fs::create_dir_all(up.join("a")).unwrap();
        fs::create_dir_all(up.join("b")).unwrap();
        fs::write(up.join("a/inside"), "x").unwrap();
        fs::write(up.join("gone"), "").unwrap();
        fs::write(up.join("keep"), "not empty, so not a whiteout").unwrap();
        let set = [
            (up.join("a"), "user.overlay.opaque", &b"y"[..]),
            (up.join("b"), "user.overlay.opaque", b"x"),
            (up.join("gone"), "user.overlay.whiteout", b""),
            (up.join("keep"), "user.overlay.whiteout", b""),
            (up.join("keep"), "user.overlay.origin", b"\x00"),
        ];
        for (path, name, value) in set {
            if let Err(reason) = set_xattr(&path, name, value) {
                skip(&format!(
                    "the temporary folder has no `user.*` xattrs: {reason}"
                ));
                return;
            }
        }
        let (bytes, _) = tar_of(up, &options(true));
        let members = members(&bytes);
        let listing: Vec<(&str, u64)> = members.iter().map(|m| (m.path.as_str(), m.size)).collect();
        assert_eq!(
            listing,
            [
                (".wh.gone", 0),
                ("a/", 0),
                ("a/.wh..wh..opq", 0),
                ("a/inside", 1),
                ("b/", 0),
                ("keep", 28),
            ]
        );
        assert!(members.iter().all(|m| m.pax.is_empty()));

        // Outside overlay mode the same xattrs mean nothing and are dropped.
        let (plain, _) = tar_of(up, &options(false));
        let listing: Vec<String> = members_paths(&plain);
        assert_eq!(listing, ["a/", "a/inside", "b/", "gone", "keep"]);
    }

    fn members_paths(bytes: &[u8]) -> Vec<String> {
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
    fn pax_records_count_their_own_length() {
        let record = |value_len: usize| {
            let mut data = Vec::new();
            pax_record(&mut data, b"path", &vec![b'a'; value_len]);
            data
        };
        assert!(record(89).starts_with(b"98 path=") && record(89).len() == 98);
        assert!(record(90).starts_with(b"99 path=") && record(90).len() == 99);
        // The length's third digit is counted too; no `path` record can be 100 bytes long.
        assert!(record(91).starts_with(b"101 path=") && record(91).len() == 101);
        let mut data = Vec::new();
        pax_record(&mut data, b"uid", b"3000000");
        assert_eq!(data, b"15 uid=3000000\n");
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
