//! The walk over a tree in canonical order, writing each entry's header and contents.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::classify::{Classified, Kind, OPAQUE_MARKER, WHITEOUT_PREFIX, classify};
use super::sink::Sink;
use super::ustar::{self, DIRECTORY, HARD_LINK, Header, REGULAR, SYMLINK};
use super::{LayerDigest, LayerTarError, read_error, write_error};

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

pub(super) struct LayerWriter<'a, W: Write> {
    root: &'a Path,
    overlay_upper: bool,
    clamp: i64,
    dev: u64,
    sink: Sink<W>,
    /// (device, inode) -> tar path of the first entry for a multiply linked non-directory.
    first_paths: HashMap<(u64, u64), Vec<u8>>,
    chunk: Vec<u8>,
    /// The bytes of the header being written, kept to spare an allocation per entry.
    header_bytes: Vec<u8>,
    entries: u64,
}

impl<'a, W: Write> LayerWriter<'a, W> {
    pub fn new(root: &'a Path, overlay_upper: bool, clamp: i64, dev: u64, out: W) -> Self {
        LayerWriter {
            root,
            overlay_upper,
            clamp,
            dev,
            sink: Sink::new(out),
            first_paths: HashMap::new(),
            chunk: vec![0; 256 * 1024],
            header_bytes: Vec::with_capacity(4 * ustar::BLOCK),
            entries: 0,
        }
    }

    pub fn walk(&mut self) -> Result<(), LayerTarError> {
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
            if meta.file_type().is_socket() {
                continue;
            }
            if meta.dev() != self.dev {
                return Err(LayerTarError::OtherFileSystem { path });
            }
            let name = entry.file_name();
            let Classified { kind, capability } =
                classify(&path, &name, &meta, self.overlay_upper)?;
            children.push(Child {
                name,
                meta,
                kind,
                capability,
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

    /// Writes one member's header, which begins the member.
    fn entry(&mut self, header: &Header) -> Result<(), LayerTarError> {
        self.sink.begin_member(header.path);
        ustar::encode(header, &mut self.header_bytes);
        self.sink
            .write(&self.header_bytes)
            .map_err(write_error(self.root))?;
        self.entries += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<LayerDigest, LayerTarError> {
        let written = self.sink.finish().map_err(write_error(self.root))?;
        Ok(LayerDigest {
            diff_id: written.diff_id,
            size: written.size,
            entries: self.entries,
            members: written.members,
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
