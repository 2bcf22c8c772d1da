//! Reading `.deb` files: the control file, and the data archive extracted into a root folder.
//!
//! A `.deb` is an `ar` archive of `debian-binary`, `control.tar[.gz|.xz|.zst]` and
//! `data.tar[.gz|.xz|.zst]`. Members are streamed from the file through the decompressor into
//! the tar reader, so memory use does not grow with the package; `data.tar` is decompressed on
//! a second thread a few chunks ahead of the writes, since both take about as long.
//!
//! # Extraction
//!
//! [`Deb::extract_data`] does what `tar --keep-directory-symlink -x` does when run as root,
//! with one difference that matters for images: every path is resolved inside the root, as the
//! image itself will resolve it when it runs there.
//!
//! - Paths are looked up one component at a time from a handle on the root, with `O_NOFOLLOW`,
//!   so the kernel never follows a symlink on its own. A symlink met on the way is read and its
//!   target resolved by the same walk: an absolute target starts again from the root and `..`
//!   stops at the root, as in a chroot. So `bin -> usr/bin` (or `lib -> /usr/lib`) is followed
//!   into the root's own `usr`, and a link to `/etc/alternatives/x` means the root's
//!   `etc/alternatives/x`, never the host's. Nothing can be reached outside the root.
//! - Folders are only created for components the entry itself names; a symlink whose target
//!   does not lead to a folder is never "repaired" by creating one. Writing through such a link
//!   (`./evil -> /elsewhere`, then `./evil/payload`) is refused.
//! - A directory entry that meets a symlink to a folder keeps the symlink and changes nothing,
//!   which is `--keep-directory-symlink` and what keeps merged `/usr` intact.
//! - Entry names (and hard link targets) that are absolute or have a `..` component are
//!   refused: dpkg-deb writes every name as `./path`, so either means the archive was not made
//!   by it, and a name that would leave the root is an attack, not a package.
//! - Device nodes and fifos are refused: Debian binary packages do not ship them (`makedev`
//!   and friends create them in maintainer scripts), so one in a data archive means the file
//!   is not what it claims to be.
//! - Existing files are unlinked and recreated, never written through; an existing folder is
//!   kept and gets the entry's owner, mode and time. Folder modes and times are set once the
//!   whole archive is written: writing into a folder changes its time, and a read-only folder
//!   would stop an unprivileged caller from filling it. (GNU tar sets them when it leaves the
//!   folder, so a folder written again later through `bin -> usr/bin` ends up with the time
//!   of extraction there; here it keeps the archive's.)
//! - Owners are the archive's numeric ids (names are never looked up). `chown` comes before
//!   `chmod`, because `chown` clears the setuid and setgid bits, and extended attributes come
//!   after both, because `chown` also drops `security.capability`.
//! - Extended attributes in pax `SCHILY.xattr.*` records are applied when the file system
//!   takes them; a failure is recorded in [`ExtractSummary::ignored_xattrs`] and extraction
//!   goes on. dpkg-deb writes none (file capabilities are set by maintainer scripts), so for
//!   Debian's own packages the list stays empty.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, SyncSender};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

/// The signature every `ar` archive starts with.
const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
/// Size of an `ar` member header.
const AR_HEADER_LEN: u64 = 60;
/// Linux gives up after this many symlinks in one lookup (`MAXSYMLINKS`); so does the walk.
const MAX_SYMLINKS: u32 = 40;
/// A control file is a few kilobytes; the cap keeps a corrupt archive from asking for
/// gigabytes of memory.
const MAX_CONTROL_LEN: u64 = 4 << 20;
/// Buffer between the `.deb` file and the decompressor.
const READ_BUFFER_LEN: usize = 128 << 10;
/// Decompressed data is handed between threads in chunks of this size...
const PREFETCH_CHUNK_LEN: usize = 256 << 10;
/// ...with at most this many waiting, which bounds the memory the look-ahead takes.
const PREFETCH_CHUNKS: usize = 8;
/// Read size when copying file contents: large enough that the decompressor, not the system
/// calls, sets the pace.
const COPY_BUFFER_LEN: usize = 256 << 10;

/// Errors while reading a `.deb` or extracting it.
#[derive(thiserror::Error, Debug)]
pub enum DebError {
    #[error("cannot read `{}` of package `{package}`", path.display())]
    Read {
        package: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{}` of package `{package}` is not a valid `.deb`: {reason}", path.display())]
    Format {
        package: String,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "`{member}` in `{}` of package `{package}` uses a compression envkit does not read (it reads gzip, xz, zstd and uncompressed tar)",
        path.display()
    )]
    Compression {
        package: String,
        path: PathBuf,
        member: String,
    },
    #[error("cannot read `{member}` in `{}` of package `{package}`", path.display())]
    Member {
        package: String,
        path: PathBuf,
        member: String,
        #[source]
        source: io::Error,
    },
    #[error("`{}` of package `{package}` has no `control` file in `{member}`", path.display())]
    NoControl {
        package: String,
        path: PathBuf,
        member: String,
    },
    #[error("the control file of package `{package}` has no `{field}` field")]
    ControlField {
        package: String,
        field: &'static str,
    },
    #[error("cannot open the root folder `{}` to extract package `{package}`", path.display())]
    Root {
        package: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing entry `{entry}` of package `{package}`: {reason}")]
    Unsafe {
        package: String,
        entry: String,
        reason: String,
    },
    #[error(
        "entry `{entry}` of package `{package}` is a {kind}, which envkit does not extract (Debian binary packages do not ship them)"
    )]
    Unsupported {
        package: String,
        entry: String,
        kind: String,
    },
    #[error("cannot extract `{entry}` of package `{package}`: {reason}")]
    Conflict {
        package: String,
        entry: String,
        reason: String,
    },
    #[error("cannot extract `{entry}` of package `{package}`")]
    Write {
        package: String,
        entry: String,
        #[source]
        source: io::Error,
    },
}

/// How [`Deb::extract_data`] treats what the caller may not be allowed to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Give every entry the archive's numeric uid and gid. Needs root, or a user namespace
    /// that maps every id the packages use; with a single-id mapping leave it off (files then
    /// belong to the caller). Modes are applied either way, setuid and setgid bits included,
    /// though the kernel drops setgid when the caller is not in the file's group.
    pub preserve_owners: bool,
}

/// What [`Deb::extract_data`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Regular files written.
    pub files: u64,
    /// Bytes of regular file contents written.
    pub bytes: u64,
    /// Directory entries created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hard_links: u64,
    /// Directory entries left alone because the root holds a symlink to a folder there
    /// (merged `/usr`).
    pub kept_dir_symlinks: u64,
    /// Extended attributes the file system would not take.
    pub ignored_xattrs: Vec<IgnoredXattr>,
}

/// An extended attribute from the archive that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredXattr {
    /// The entry, as named in the archive.
    pub entry: String,
    /// The attribute's name, such as `security.capability`.
    pub name: String,
    /// Why it was not applied.
    pub reason: String,
}

/// The fields of a control file that later stages read, plus all of them in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub package: String,
    pub version: String,
    pub architecture: String,
    pub pre_depends: Option<String>,
    pub depends: Option<String>,
    /// Every field, in file order, values as written (continuation lines included).
    pub fields: Vec<(String, String)>,
}

/// A `.deb` file whose `ar` structure has been checked. Members are read from the file on
/// each call, so a `Deb` holds no open file.
#[derive(Debug, Clone)]
pub struct Deb {
    path: PathBuf,
    package: String,
    control: Member,
    data: Member,
}

/// Where one `ar` member's bytes are in the file.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    offset: u64,
    size: u64,
    compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Deb {
    /// Opens the `.deb` at `path` and checks its `ar` layout; `package` is the name used in
    /// errors.
    pub fn open(path: &Path, package: &str) -> Result<Deb, DebError> {
        let read_error = |source| DebError::Read {
            package: package.to_owned(),
            path: path.to_owned(),
            source,
        };
        let format_error = |reason: String| DebError::Format {
            package: package.to_owned(),
            path: path.to_owned(),
            reason,
        };
        let mut file = File::open(path).map_err(read_error)?;
        let len = file.metadata().map_err(read_error)?.len();

        let mut magic = [0u8; 8];
        if len < AR_MAGIC.len() as u64 {
            return Err(format_error("it is too short to be an `ar` archive".into()));
        }
        file.read_exact(&mut magic).map_err(read_error)?;
        if &magic != AR_MAGIC {
            return Err(format_error(
                "it does not start with the `!<arch>` signature of an `ar` archive".into(),
            ));
        }

        let mut offset = AR_MAGIC.len() as u64;
        let mut index = 0;
        let mut control: Option<Member> = None;
        let mut data: Option<Member> = None;
        while offset < len && data.is_none() {
            if offset + AR_HEADER_LEN > len {
                return Err(format_error(format!(
                    "the member header at byte {offset} is cut short"
                )));
            }
            let mut header = [0u8; AR_HEADER_LEN as usize];
            file.seek(SeekFrom::Start(offset)).map_err(read_error)?;
            file.read_exact(&mut header).map_err(read_error)?;
            let (name, size) = parse_ar_header(&header)
                .map_err(|reason| format_error(format!("member at byte {offset}: {reason}")))?;
            let start = offset + AR_HEADER_LEN;
            if size > len - start {
                return Err(format_error(format!(
                    "member `{name}` claims {size} bytes but the file ends before"
                )));
            }

            if index == 0 {
                // dpkg-deb reads the format version first and gives up on anything else.
                if name != "debian-binary" {
                    return Err(format_error(format!(
                        "the first member is `{name}`, not `debian-binary`"
                    )));
                }
                let mut version = vec![0u8; size.min(64) as usize];
                file.read_exact(&mut version).map_err(read_error)?;
                if !version.starts_with(b"2.") {
                    let shown = String::from_utf8_lossy(&version);
                    return Err(format_error(format!(
                        "format version `{}` is not 2.x",
                        shown.trim()
                    )));
                }
            } else if name.starts_with('_') {
                // Members starting with `_` are reserved for local additions; dpkg skips them.
            } else if let Some(suffix) = name.strip_prefix("control.tar") {
                if control.is_some() {
                    return Err(format_error("it has two `control.tar` members".into()));
                }
                control = Some(Member {
                    compression: compression(suffix, package, path, &name)?,
                    name,
                    offset: start,
                    size,
                });
            } else if let Some(suffix) = name.strip_prefix("data.tar") {
                if control.is_none() {
                    return Err(format_error("`data.tar` comes before `control.tar`".into()));
                }
                data = Some(Member {
                    compression: compression(suffix, package, path, &name)?,
                    name,
                    offset: start,
                    size,
                });
            } else {
                return Err(format_error(format!("unexpected member `{name}`")));
            }
            index += 1;
            // Members start at even offsets; an odd-sized member is followed by one pad byte.
            offset = start + size + (size & 1);
        }

        let Some(control) = control else {
            return Err(format_error("it has no `control.tar` member".into()));
        };
        let Some(data) = data else {
            return Err(format_error("it has no `data.tar` member".into()));
        };
        Ok(Deb {
            path: path.to_owned(),
            package: package.to_owned(),
            control,
            data,
        })
    }

    /// The path this `.deb` was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The text of the control file (`./control` in `control.tar`).
    pub fn control(&self) -> Result<String, DebError> {
        let reader = self.member_reader(&self.control)?;
        let mut archive = tar::Archive::new(reader);
        let member_error = |source| self.member_error(&self.control, source);
        for entry in archive.entries().map_err(member_error)? {
            let entry = entry.map_err(member_error)?;
            let is_control = components(&entry.path_bytes()).is_ok_and(|c| c == [b"control"]);
            if !is_control || !entry.header().entry_type().is_file() {
                continue;
            }
            if entry.size() > MAX_CONTROL_LEN {
                return Err(self.format_error(format!(
                    "its control file is {} bytes, more than a control file can be",
                    entry.size()
                )));
            }
            let mut bytes = Vec::new();
            entry
                .take(MAX_CONTROL_LEN)
                .read_to_end(&mut bytes)
                .map_err(member_error)?;
            return String::from_utf8(bytes)
                .map_err(|_| self.format_error("its control file is not UTF-8".into()));
        }
        Err(DebError::NoControl {
            package: self.package.clone(),
            path: self.path.clone(),
            member: self.control.name.clone(),
        })
    }

    /// The control file's fields, with the ones later stages need picked out.
    pub fn control_fields(&self) -> Result<Control, DebError> {
        let text = self.control()?;
        let stanza = crate::solve::deb822::stanzas(&text)
            .next()
            .unwrap_or_default();
        let required = |field: &'static str| {
            stanza
                .get(field)
                .map(str::to_owned)
                .ok_or_else(|| DebError::ControlField {
                    package: self.package.clone(),
                    field,
                })
        };
        Ok(Control {
            package: required("Package")?,
            version: required("Version")?,
            architecture: required("Architecture")?,
            pre_depends: stanza.get("Pre-Depends").map(str::to_owned),
            depends: stanza.get("Depends").map(str::to_owned),
            fields: stanza
                .fields()
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        })
    }

    /// Extracts `data.tar` into `root`, an existing folder, as `tar --keep-directory-symlink
    /// -x` does when run as root, except that every path, symlinks included, is resolved
    /// inside `root` (see the module documentation for the rules).
    pub fn extract_data(
        &self,
        root: &Path,
        options: &ExtractOptions,
    ) -> Result<ExtractSummary, DebError> {
        let root_fd = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| DebError::Root {
            package: self.package.clone(),
            path: root.to_owned(),
            source: errno.into(),
        })?;
        let reader = self.member_reader(&self.data)?;
        // Decompressing (mostly xz) and writing files take about as long as each other, so
        // the archive is decompressed on a second thread, a few chunks ahead of the writes.
        std::thread::scope(|scope| {
            let (sender, receiver) = mpsc::sync_channel(PREFETCH_CHUNKS);
            std::thread::Builder::new()
                .name("deb-decompress".into())
                .spawn_scoped(scope, move || prefetch(reader, &sender))
                .map_err(|source| self.member_error(&self.data, source))?;
            let mut archive = tar::Archive::new(Prefetched {
                receiver,
                chunk: Vec::new(),
                position: 0,
            });
            let mut extraction = Extraction {
                deb: self,
                root: Rc::new(root_fd),
                options: *options,
                resolved: Vec::new(),
                pending_dirs: Vec::new(),
                buffer: vec![0; COPY_BUFFER_LEN],
                summary: ExtractSummary::default(),
            };
            let entries = archive
                .entries()
                .map_err(|source| self.member_error(&self.data, source))?;
            for entry in entries {
                let mut entry = entry.map_err(|source| self.member_error(&self.data, source))?;
                extraction.entry(&mut entry)?;
            }
            extraction.finish()
            // Dropping the receiver here stops the decompressing thread if it is still going.
        })
    }

    /// A reader of `member`'s decompressed bytes.
    fn member_reader(&self, member: &Member) -> Result<Box<dyn Read + Send>, DebError> {
        let read_error = |source| DebError::Read {
            package: self.package.clone(),
            path: self.path.clone(),
            source,
        };
        let mut file = File::open(&self.path).map_err(read_error)?;
        file.seek(SeekFrom::Start(member.offset))
            .map_err(read_error)?;
        let raw = BufReader::with_capacity(READ_BUFFER_LEN, file.take(member.size));
        Ok(match member.compression {
            Compression::None => Box::new(raw),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(raw)),
            Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(raw)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(raw)
                    .map_err(|source| self.member_error(member, source))?,
            ),
        })
    }

    fn member_error(&self, member: &Member, source: io::Error) -> DebError {
        DebError::Member {
            package: self.package.clone(),
            path: self.path.clone(),
            member: member.name.clone(),
            source,
        }
    }

    fn format_error(&self, reason: String) -> DebError {
        DebError::Format {
            package: self.package.clone(),
            path: self.path.clone(),
            reason,
        }
    }
}

/// Sends `reader`'s bytes in chunks until it ends, fails, or the receiving side is gone.
fn prefetch(mut reader: impl Read, sender: &SyncSender<io::Result<Vec<u8>>>) {
    loop {
        let mut chunk = vec![0; PREFETCH_CHUNK_LEN];
        let mut filled = 0;
        while filled < chunk.len() {
            match reader.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let _ = sender.send(Err(error));
                    return;
                }
            }
        }
        if filled == 0 {
            return;
        }
        chunk.truncate(filled);
        if sender.send(Ok(chunk)).is_err() {
            return;
        }
    }
}

/// The reading end of [`prefetch`]: the end of the channel is the end of the data.
struct Prefetched {
    receiver: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    position: usize,
}

impl Read for Prefetched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.chunk.len() {
            match self.receiver.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.position = 0;
                }
                Ok(Err(error)) => return Err(error),
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let available = &self.chunk[self.position..];
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.position += count;
        Ok(count)
    }
}

/// Name and size from a 60-byte `ar` member header.
fn parse_ar_header(header: &[u8; AR_HEADER_LEN as usize]) -> Result<(String, u64), String> {
    if &header[58..60] != b"`\n" {
        return Err("its header does not end with the `ar` terminator".into());
    }
    let name = std::str::from_utf8(&header[..16])
        .map_err(|_| "its name is not UTF-8".to_owned())?
        .trim_end_matches(' ');
    // GNU ar ends names with `/`; dpkg accepts both spellings.
    let name = name.strip_suffix('/').unwrap_or(name);
    let size = std::str::from_utf8(&header[48..58])
        .ok()
        .and_then(|text| text.trim_end_matches(' ').parse::<u64>().ok())
        .ok_or_else(|| format!("member `{name}` has an invalid size"))?;
    Ok((name.to_owned(), size))
}

/// The compression a member's name suffix (after `control.tar` or `data.tar`) stands for.
fn compression(
    suffix: &str,
    package: &str,
    path: &Path,
    member: &str,
) -> Result<Compression, DebError> {
    match suffix {
        "" => Ok(Compression::None),
        ".gz" => Ok(Compression::Gzip),
        ".xz" => Ok(Compression::Xz),
        ".zst" => Ok(Compression::Zstd),
        _ => Err(DebError::Compression {
            package: package.to_owned(),
            path: path.to_owned(),
            member: member.to_owned(),
        }),
    }
}

/// The components of an archive path, without `.` or empty components; an empty list is the
/// root itself. Absolute names and `..` are refused.
fn components(path: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if path.first() == Some(&b'/') {
        return Err("is absolute");
    }
    let mut parts = Vec::new();
    for part in path.split(|byte| *byte == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("has a `..` component"),
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Where a walk has got to: the folders entered below the root, each with its name, so `..`
/// can step back and errors can say where they happened.
type Stack = Vec<(Vec<u8>, Rc<OwnedFd>)>;

/// Why a walk from the root did not reach a folder.
enum WalkError {
    /// A component is missing and the walk may not create it.
    Missing {
        at: String,
    },
    /// A component is something other than a folder or a symlink.
    NotDirectory {
        at: String,
    },
    /// A symlink on the way does not lead to a folder inside the root.
    BadLink {
        link: String,
        target: String,
        reason: String,
    },
    /// More symlinks than the kernel would follow.
    Loop {
        link: String,
    },
    Io {
        at: String,
        source: io::Error,
    },
}

impl WalkError {
    fn describe(&self) -> String {
        match self {
            WalkError::Missing { at } => format!("`{at}` does not exist in the root"),
            WalkError::NotDirectory { at } => format!("`{at}` is not a folder"),
            WalkError::BadLink { link, .. } => format!("`{link}` does not lead to a folder"),
            WalkError::Loop { link } => format!("too many symlinks at `{link}`"),
            WalkError::Io { at, source } => format!("`{at}`: {source}"),
        }
    }
}

/// A folder whose mode and time are set once the archive is written: writing into a folder
/// changes its time, and a mode without write permission would stop an unprivileged caller
/// from filling it. Checked by identity, so a folder replaced in the meantime is left alone.
struct PendingDir {
    name: String,
    path: Vec<Vec<u8>>,
    dev: u64,
    ino: u64,
    mode: u32,
    mtime: Timespec,
}

/// Owner, mode, time and extended attributes of one entry.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// State of one `extract_data` call.
struct Extraction<'a> {
    deb: &'a Deb,
    root: Rc<OwnedFd>,
    options: ExtractOptions,
    /// The components of the last path resolved, each with where it led. Archives list a
    /// folder's entries together and in order, so most lookups share a long prefix with the
    /// previous one. Cleared whenever a folder or symlink is removed, since a cached walk may
    /// have passed through it.
    resolved: Vec<(Vec<u8>, Stack)>,
    pending_dirs: Vec<PendingDir>,
    buffer: Vec<u8>,
    summary: ExtractSummary,
}

impl Extraction<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), DebError> {
        let raw = entry.path_bytes().into_owned();
        let name = shown(&raw);
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // A global header would change defaults for later entries; dpkg-deb never writes
            // one and nothing in it decides where files go.
            return Ok(());
        }
        let path = components(&raw)
            .map_err(|reason| self.unsafe_entry(&name, format!("its path {reason}")))?;
        let meta = self.meta(entry, &name)?;
        match kind {
            tar::EntryType::Directory => self.directory(&path, &name, &meta),
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.file(&path, &name, &meta, entry)
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.symlink(&path, &name, &meta, target)
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.hard_link(&path, &name, target)
            }
            tar::EntryType::Char => Err(self.unsupported(&name, "character device")),
            tar::EntryType::Block => Err(self.unsupported(&name, "block device")),
            tar::EntryType::Fifo => Err(self.unsupported(&name, "fifo")),
            other => Err(self.unsupported(
                &name,
                &format!("tar entry of type `{}`", char::from(other.as_byte())),
            )),
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, DebError> {
        let header = entry.header();
        let bad = |what: &str| self.conflict(name, format!("its tar header has an invalid {what}"));
        let mode = header.mode().map_err(|_| bad("mode"))? & 0o7777;
        // The tar crate already applies pax `uid` and `gid` records to the header.
        let uid = header.uid().map_err(|_| bad("uid"))?;
        let gid = header.gid().map_err(|_| bad("gid"))?;
        let uid = u32::try_from(uid).map_err(|_| bad("uid"))?;
        let gid = u32::try_from(gid).map_err(|_| bad("gid"))?;
        let seconds = header.mtime().map_err(|_| bad("mtime"))?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(seconds).map_err(|_| bad("mtime"))?,
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        let extensions = entry
            .pax_extensions()
            .map_err(|source| self.deb.member_error(&self.deb.data, source))?;
        if let Some(extensions) = extensions {
            for extension in extensions {
                let extension =
                    extension.map_err(|source| self.deb.member_error(&self.deb.data, source))?;
                let Ok(key) = extension.key() else { continue };
                if key == "mtime" {
                    mtime = extension
                        .value()
                        .ok()
                        .and_then(parse_pax_time)
                        .ok_or_else(|| bad("pax mtime"))?;
                } else if let Some(attribute) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.push((attribute.to_owned(), extension.value_bytes().to_vec()));
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs,
        })
    }

    fn directory(&mut self, path: &[&[u8]], name: &str, meta: &Meta) -> Result<(), DebError> {
        let Some((last, parent_path)) = path.split_last() else {
            // `./` is the root itself; tar gives it the entry's attributes too.
            let root = rustix::io::fcntl_dupfd_cloexec(&*self.root, 0)
                .map_err(|errno| self.write_error(name, errno))?;
            return self.finish_directory(root, Vec::new(), name, meta);
        };
        let parent = self.parent(parent_path, name)?;
        match rustix::fs::statat(&*parent, *last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {}
                FileType::Symlink => {
                    if self.resolve(path, false).is_ok() {
                        self.summary.kept_dir_symlinks += 1;
                        return Ok(());
                    }
                    // tar replaces a symlink that does not lead to a folder.
                    self.remove(&parent, last, name)?;
                    self.make_dir(&parent, last, name)?;
                }
                _ => {
                    self.remove(&parent, last, name)?;
                    self.make_dir(&parent, last, name)?;
                }
            },
            Err(Errno::NOENT) => self.make_dir(&parent, last, name)?,
            Err(errno) => return Err(self.write_error(name, errno)),
        }
        let dir = rustix::fs::openat(
            &*parent,
            *last,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| self.write_error(name, errno))?;
        let owned_path = path.iter().map(|part| part.to_vec()).collect();
        self.finish_directory(dir, owned_path, name, meta)
    }

    fn finish_directory(
        &mut self,
        dir: OwnedFd,
        path: Vec<Vec<u8>>,
        name: &str,
        meta: &Meta,
    ) -> Result<(), DebError> {
        self.apply(&dir, name, meta, false)?;
        let stat = rustix::fs::fstat(&dir).map_err(|errno| self.write_error(name, errno))?;
        self.pending_dirs.push(PendingDir {
            name: name.to_owned(),
            path,
            dev: stat.st_dev,
            ino: stat.st_ino,
            mode: meta.mode,
            mtime: meta.mtime,
        });
        self.summary.dirs += 1;
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        path: &[&[u8]],
        name: &str,
        meta: &Meta,
        contents: &mut R,
    ) -> Result<(), DebError> {
        let Some((last, parent_path)) = path.split_last() else {
            return Err(self.conflict(name, "the root folder cannot be a file".into()));
        };
        let parent = self.parent(parent_path, name)?;
        self.remove(&parent, last, name)?;
        let fd = rustix::fs::openat(
            &*parent,
            *last,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|errno| self.write_error(name, errno))?;
        let mut file = File::from(fd);
        let mut written = 0u64;
        loop {
            let count = match contents.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(self.deb.member_error(&self.deb.data, source)),
            };
            let chunk = &self.buffer[..count];
            if let Err(source) = file.write_all(chunk) {
                return Err(self.write_error(name, source));
            }
            written += count as u64;
        }
        self.apply(&file, name, meta, true)?;
        rustix::fs::futimens(&file, &times(meta.mtime))
            .map_err(|errno| self.write_error(name, errno))?;
        self.summary.files += 1;
        self.summary.bytes += written;
        Ok(())
    }

    fn symlink(
        &mut self,
        path: &[&[u8]],
        name: &str,
        meta: &Meta,
        target: Option<Vec<u8>>,
    ) -> Result<(), DebError> {
        let Some(target) = target.filter(|target| !target.is_empty()) else {
            return Err(self.conflict(name, "it is a symlink without a target".into()));
        };
        let Some((last, parent_path)) = path.split_last() else {
            return Err(self.conflict(name, "the root folder cannot be a symlink".into()));
        };
        let parent = self.parent(parent_path, name)?;
        self.remove(&parent, last, name)?;
        // The target is stored as written: where it leads is only decided when something
        // walks through it, and the walk keeps that inside the root.
        rustix::fs::symlinkat(target.as_slice(), &*parent, *last)
            .map_err(|errno| self.write_error(name, errno))?;
        if self.options.preserve_owners {
            rustix::fs::chownat(
                &*parent,
                *last,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|errno| self.write_error(name, errno))?;
        }
        for (attribute, _) in &meta.xattrs {
            // Linux offers no fd-based call for a symlink's attributes, and a path-based one
            // would mean handing the kernel a path to resolve.
            self.summary.ignored_xattrs.push(IgnoredXattr {
                entry: name.to_owned(),
                name: attribute.clone(),
                reason: "extended attributes are not set on symlinks".into(),
            });
        }
        rustix::fs::utimensat(
            &*parent,
            *last,
            &times(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|errno| self.write_error(name, errno))?;
        self.summary.symlinks += 1;
        Ok(())
    }

    fn hard_link(
        &mut self,
        path: &[&[u8]],
        name: &str,
        target: Option<Vec<u8>>,
    ) -> Result<(), DebError> {
        let Some(target) = target.filter(|target| !target.is_empty()) else {
            return Err(self.conflict(name, "it is a hard link without a target".into()));
        };
        let target_name = shown(&target);
        let target_path = components(&target).map_err(|reason| {
            self.unsafe_entry(
                name,
                format!("its hard link target `{target_name}` {reason}"),
            )
        })?;
        let Some((target_last, target_parent_path)) = target_path.split_last() else {
            return Err(self.unsafe_entry(name, "it is a hard link to the root folder".into()));
        };
        let target_parent = self
            .resolve(target_parent_path, false)
            .map_err(|error| self.walk_error(name, error))?;
        let target_stat =
            match rustix::fs::statat(&target_parent, *target_last, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::NOENT) => {
                    return Err(self.conflict(
                        name,
                        format!("its hard link target `{target_name}` does not exist"),
                    ));
                }
                Err(errno) => return Err(self.write_error(name, errno)),
            };
        let Some((last, parent_path)) = path.split_last() else {
            return Err(self.conflict(name, "the root folder cannot be a hard link".into()));
        };
        let parent = self.parent(parent_path, name)?;
        if let Ok(stat) = rustix::fs::statat(&*parent, *last, AtFlags::SYMLINK_NOFOLLOW)
            && stat.st_dev == target_stat.st_dev
            && stat.st_ino == target_stat.st_ino
        {
            // Already the same file: unlinking it first could remove the only name it has.
            self.summary.hard_links += 1;
            return Ok(());
        }
        self.remove(&parent, last, name)?;
        // Without `AT_SYMLINK_FOLLOW`, a link to a symlink links the symlink itself, as tar does.
        rustix::fs::linkat(
            &target_parent,
            *target_last,
            &*parent,
            *last,
            AtFlags::empty(),
        )
        .map_err(|errno| self.write_error(name, errno))?;
        self.summary.hard_links += 1;
        Ok(())
    }

    /// Owner, mode (unless `chmod` is false: folders get theirs at the end) and extended
    /// attributes, in the only order that keeps all three.
    fn apply(
        &mut self,
        fd: &impl AsFd,
        name: &str,
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), DebError> {
        if self.options.preserve_owners {
            rustix::fs::fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|errno| self.write_error(name, errno))?;
        }
        if chmod {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))
                .map_err(|errno| self.write_error(name, errno))?;
        }
        for (attribute, value) in &meta.xattrs {
            if let Err(errno) =
                rustix::fs::fsetxattr(fd, attribute.as_str(), value, XattrFlags::empty())
            {
                self.summary.ignored_xattrs.push(IgnoredXattr {
                    entry: name.to_owned(),
                    name: attribute.clone(),
                    reason: io::Error::from(errno).to_string(),
                });
            }
        }
        Ok(())
    }

    /// Sets the mode and time of every folder written, now that nothing more goes into them.
    fn finish(mut self) -> Result<ExtractSummary, DebError> {
        let pending_dirs = std::mem::take(&mut self.pending_dirs);
        for dir in pending_dirs.iter().rev() {
            let parts: Vec<&[u8]> = dir.path.iter().map(Vec::as_slice).collect();
            let Some(fd) = self.open_dir(&parts) else {
                continue;
            };
            let same = rustix::fs::fstat(&fd)
                .is_ok_and(|stat| stat.st_dev == dir.dev && stat.st_ino == dir.ino);
            if same {
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(dir.mode))
                    .and_then(|()| rustix::fs::futimens(&fd, &times(dir.mtime)))
                    .map_err(|errno| self.write_error(&dir.name, errno))?;
            }
        }
        Ok(self.summary)
    }

    /// Opens the folder at `path` for changing its attributes, without following a symlink
    /// in its last component; `None` when it is no longer there.
    fn open_dir(&mut self, path: &[&[u8]]) -> Option<OwnedFd> {
        let Some((last, parent_path)) = path.split_last() else {
            return rustix::io::fcntl_dupfd_cloexec(&*self.root, 0).ok();
        };
        let parent = self.resolve(parent_path, false).ok()?;
        rustix::fs::openat(
            &*parent,
            *last,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
    }

    /// The folder that holds an entry, created as needed.
    fn parent(&mut self, path: &[&[u8]], name: &str) -> Result<Rc<OwnedFd>, DebError> {
        self.resolve(path, true)
            .map_err(|error| self.walk_error(name, error))
    }

    /// The folder an archive path leads to, walked on from the longest prefix it shares with
    /// the previous lookup.
    fn resolve(&mut self, path: &[&[u8]], create: bool) -> Result<Rc<OwnedFd>, WalkError> {
        let shared = self
            .resolved
            .iter()
            .zip(path)
            .take_while(|((resolved, _), part)| resolved.as_slice() == **part)
            .count();
        self.resolved.truncate(shared);
        for part in path.iter().skip(shared) {
            let from = self
                .resolved
                .last()
                .map(|(_, stack)| stack.clone())
                .unwrap_or_default();
            let stack = self.walk(from, part, create)?;
            self.resolved.push((part.to_vec(), stack));
        }
        let top = self
            .resolved
            .last()
            .and_then(|(_, stack)| stack.last())
            .map(|(_, fd)| fd);
        Ok(Rc::clone(top.unwrap_or(&self.root)))
    }

    /// Walks one archive path component from `dirs`, following symlinks by reading them and
    /// walking their targets from the root (absolute) or from the folder that holds them
    /// (relative), with `..` stopping at the root. The kernel never follows a link itself:
    /// every step is an `openat` with `O_NOFOLLOW` below a folder already reached. With
    /// `create`, a missing `part` is created; components that come from a symlink's target
    /// never are.
    fn walk(&self, mut dirs: Stack, part: &[u8], create: bool) -> Result<Stack, WalkError> {
        // Components still to walk, last one first; `true` marks those from a symlink target.
        let mut pending: Vec<(Vec<u8>, bool)> = vec![(part.to_vec(), false)];
        let mut links = 0;
        let mut last_link: Option<(String, String)> = None;
        let at = |dirs: &Stack, part: &[u8]| {
            let mut parts: Vec<&[u8]> = dirs.iter().map(|(name, _)| name.as_slice()).collect();
            parts.push(part);
            format!("/{}", shown(&parts.join(&b'/')))
        };
        // A dead end met while following a symlink is blamed on the symlink.
        let bad_link = |last_link: &Option<(String, String)>, other: WalkError| match last_link {
            Some((link, target)) => WalkError::BadLink {
                link: link.clone(),
                target: target.clone(),
                reason: other.describe(),
            },
            None => other,
        };
        while let Some((part, from_link)) = pending.pop() {
            match part.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    dirs.pop();
                    continue;
                }
                _ => {}
            }
            let here = dirs.last().map_or(&self.root, |(_, fd)| fd).as_fd();
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(here, part.as_slice(), flags, Mode::empty()) {
                Ok(fd) => dirs.push((part, Rc::new(fd))),
                Err(Errno::NOENT) if create && !from_link => {
                    let fd = make_dir_at(here, &part).map_err(|source| WalkError::Io {
                        at: at(&dirs, &part),
                        source,
                    })?;
                    dirs.push((part, Rc::new(fd)));
                }
                Err(Errno::NOENT) => {
                    let missing = WalkError::Missing {
                        at: at(&dirs, &part),
                    };
                    return Err(if from_link {
                        bad_link(&last_link, missing)
                    } else {
                        missing
                    });
                }
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    let place = at(&dirs, &part);
                    let stat = rustix::fs::statat(here, part.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|errno| WalkError::Io {
                            at: place.clone(),
                            source: errno.into(),
                        })?;
                    if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink {
                        let not_dir = WalkError::NotDirectory { at: place.clone() };
                        return Err(if from_link {
                            bad_link(&last_link, not_dir)
                        } else {
                            not_dir
                        });
                    }
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(WalkError::Loop { link: place });
                    }
                    let target = rustix::fs::readlinkat(here, part.as_slice(), Vec::new())
                        .map_err(|errno| WalkError::Io {
                            at: place.clone(),
                            source: errno.into(),
                        })?
                        .into_bytes();
                    if target.starts_with(b"/") {
                        dirs.clear();
                    }
                    pending.extend(
                        target
                            .split(|byte| *byte == b'/')
                            .rev()
                            .map(|part| (part.to_vec(), true)),
                    );
                    last_link = Some((place, shown(&target)));
                }
                Err(errno) => {
                    return Err(WalkError::Io {
                        at: at(&dirs, &part),
                        source: errno.into(),
                    });
                }
            }
        }
        Ok(dirs)
    }

    fn make_dir(&mut self, parent: &OwnedFd, last: &[u8], name: &str) -> Result<(), DebError> {
        rustix::fs::mkdirat(parent, last, Mode::from_raw_mode(0o700))
            .map_err(|errno| self.write_error(name, errno))
    }

    /// Removes whatever is at `last` in `parent` so a new entry can take its place: tar's
    /// default for existing files, and the reason nothing is ever written through a symlink
    /// at the entry's own name.
    fn remove(&mut self, parent: &OwnedFd, last: &[u8], name: &str) -> Result<(), DebError> {
        let kind = match rustix::fs::statat(parent, last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => FileType::from_raw_mode(stat.st_mode),
            Err(Errno::NOENT) => return Ok(()),
            Err(errno) => return Err(self.write_error(name, errno)),
        };
        let flags = if kind == FileType::Directory {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match rustix::fs::unlinkat(parent, last, flags) {
            Ok(()) => {}
            Err(Errno::NOTEMPTY | Errno::EXIST) => {
                return Err(self.conflict(
                    name,
                    "a folder that is not empty is in the way (an earlier package ships files inside it)"
                        .into(),
                ));
            }
            Err(errno) => return Err(self.write_error(name, errno)),
        }
        if kind != FileType::RegularFile {
            self.resolved.clear();
        }
        Ok(())
    }

    fn walk_error(&self, name: &str, error: WalkError) -> DebError {
        match error {
            WalkError::Missing { .. } | WalkError::NotDirectory { .. } => {
                self.conflict(name, error.describe())
            }
            WalkError::BadLink {
                link,
                target,
                reason,
            } => self.unsafe_entry(
                name,
                format!(
                    "its path goes through the symlink `{link}` -> `{target}`, which does not lead to a folder inside the root: {reason}"
                ),
            ),
            WalkError::Loop { link } => self.unsafe_entry(
                name,
                format!("more than {MAX_SYMLINKS} symlinks on its path (a loop at `{link}`?)"),
            ),
            WalkError::Io { at, source } => DebError::Write {
                package: self.deb.package.clone(),
                entry: name.to_owned(),
                source: io::Error::new(source.kind(), format!("at `{at}`: {source}")),
            },
        }
    }

    fn unsafe_entry(&self, name: &str, reason: String) -> DebError {
        DebError::Unsafe {
            package: self.deb.package.clone(),
            entry: name.to_owned(),
            reason,
        }
    }

    fn unsupported(&self, name: &str, kind: &str) -> DebError {
        DebError::Unsupported {
            package: self.deb.package.clone(),
            entry: name.to_owned(),
            kind: kind.to_owned(),
        }
    }

    fn conflict(&self, name: &str, reason: String) -> DebError {
        DebError::Conflict {
            package: self.deb.package.clone(),
            entry: name.to_owned(),
            reason,
        }
    }

    fn write_error(&self, name: &str, source: impl Into<io::Error>) -> DebError {
        DebError::Write {
            package: self.deb.package.clone(),
            entry: name.to_owned(),
            source: source.into(),
        }
    }
}

/// Creates a folder for a missing path component, as tar does: mode 0755 whatever the umask,
/// owned by the caller.
fn make_dir_at(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755))?;
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))?;
    Ok(fd)
}

/// Access and modification time both set to the entry's time, so the result does not depend
/// on when it was extracted.
fn times(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}

/// A pax time record: seconds with an optional fraction, such as `1700000000.25`.
fn parse_pax_time(text: &str) -> Option<Timespec> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let tv_sec = seconds.parse::<i64>().ok()?;
    let digits: String = fraction.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let tv_nsec = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse::<i64>().ok()?
    };
    // A negative time with a fraction counts the fraction away from zero.
    let (tv_sec, tv_nsec) = if seconds.starts_with('-') && tv_nsec > 0 {
        (tv_sec - 1, 1_000_000_000 - tv_nsec)
    } else {
        (tv_sec, tv_nsec)
    };
    Some(Timespec { tv_sec, tv_nsec })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::process::Command;
    use std::time::Instant;

    const MTIME: u64 = 1_700_000_000;

    #[derive(Debug, Clone, Copy)]
    enum Z {
        None,
        Gzip,
        Xz,
        Zstd,
    }

    const ALL: [Z; 4] = [Z::None, Z::Gzip, Z::Xz, Z::Zstd];

    fn suffix(z: Z) -> &'static str {
        match z {
            Z::None => "",
            Z::Gzip => ".gz",
            Z::Xz => ".xz",
            Z::Zstd => ".zst",
        }
    }

    fn compress(bytes: &[u8], z: Z) -> Vec<u8> {
        match z {
            Z::None => bytes.to_vec(),
            Z::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(bytes).unwrap();
                encoder.finish().unwrap()
            }
            Z::Xz => {
                let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
                encoder.write_all(bytes).unwrap();
                encoder.finish().unwrap()
            }
            Z::Zstd => zstd::stream::encode_all(bytes, 1).unwrap(),
        }
    }

    /// A tar archive written header by header, so tests can also write the names the `tar`
    /// crate's own setters refuse (`..`, absolute paths).
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(tar::Builder::new(Vec::new()))
        }

        #[allow(clippy::too_many_arguments)]
        fn push(
            &mut self,
            kind: tar::EntryType,
            path: &str,
            link: &str,
            mode: u32,
            uid: u64,
            gid: u64,
            data: &[u8],
        ) -> &mut Tar {
            let mut header = tar::Header::new_gnu();
            {
                let old = header.as_old_mut();
                old.name[..path.len()].copy_from_slice(path.as_bytes());
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_uid(uid);
            header.set_gid(gid);
            header.set_mtime(MTIME);
            header.set_size(data.len() as u64);
            header.set_cksum();
            self.0.append(&header, data).unwrap();
            self
        }

        fn dir(&mut self, path: &str, mode: u32) -> &mut Tar {
            self.push(tar::EntryType::Directory, path, "", mode, 0, 0, b"")
        }

        fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Tar {
            self.push(tar::EntryType::Regular, path, "", mode, 0, 0, data)
        }

        fn symlink(&mut self, path: &str, target: &str) -> &mut Tar {
            self.push(tar::EntryType::Symlink, path, target, 0o777, 0, 0, b"")
        }

        fn hard_link(&mut self, path: &str, target: &str) -> &mut Tar {
            self.push(tar::EntryType::Link, path, target, 0o644, 0, 0, b"")
        }

        fn finish(&mut self) -> Vec<u8> {
            let builder = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
            builder.into_inner().unwrap()
        }
    }

    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = AR_MAGIC.to_vec();
        for (name, data) in members {
            let header = format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                name,
                0,
                0,
                0,
                100644,
                data.len()
            );
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    const CONTROL: &str = "Package: demo\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: Someone <a@b.c>\nDepends: libc6 (>= 2.36),\n libtinfo6 (>= 6)\nDescription: a demo\n more text\n";

    fn deb_bytes(data: &[u8], z: Z) -> Vec<u8> {
        let control = Tar::new()
            .dir("./", 0o755)
            .file("./control", 0o644, CONTROL.as_bytes())
            .finish();
        let control_name = format!("control.tar{}", suffix(z));
        let data_name = format!("data.tar{}", suffix(z));
        ar(&[
            ("debian-binary", b"2.0\n"),
            (&control_name, &compress(&control, z)),
            (&data_name, &compress(data, z)),
        ])
    }

    fn write_deb(dir: &Path, package: &str, data: &[u8], z: Z) -> Deb {
        let path = dir.join(format!("{package}.deb"));
        std::fs::write(&path, deb_bytes(data, z)).unwrap();
        Deb::open(&path, package).unwrap()
    }

    /// Whether this process can give files away (the ids of a new file are the caller's).
    fn is_root(dir: &Path) -> bool {
        let probe = dir.join(".probe");
        std::fs::write(&probe, b"").unwrap();
        let root = std::fs::metadata(&probe).unwrap().uid() == 0;
        std::fs::remove_file(probe).unwrap();
        root
    }

    fn must_work() -> bool {
        std::env::var("ENVKIT_MUST_WORK").is_ok_and(|value| value == "1")
    }

    /// Skips with the reason, unless `ENVKIT_MUST_WORK=1` (CI) forbids skipping.
    fn skip(reason: &str) {
        assert!(!must_work(), "ENVKIT_MUST_WORK=1 but {reason}");
        eprintln!("skipped: {reason}");
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn mtime(path: &Path) -> i64 {
        std::fs::symlink_metadata(path).unwrap().mtime()
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn reads_the_control_file_in_every_compression() {
        let dir = tempdir();
        for z in ALL {
            let deb = write_deb(dir.path(), "demo", &Tar::new().dir("./", 0o755).finish(), z);
            assert_eq!(deb.control().unwrap(), CONTROL, "{z:?}");
            let control = deb.control_fields().unwrap();
            assert_eq!(control.package, "demo");
            assert_eq!(control.version, "1.0-1");
            assert_eq!(control.architecture, "amd64");
            assert_eq!(
                control.depends.as_deref(),
                Some("libc6 (>= 2.36),\n libtinfo6 (>= 6)")
            );
            assert_eq!(control.pre_depends, None);
            assert_eq!(control.fields.len(), 6);
        }
    }

    #[test]
    fn rejects_what_is_not_a_readable_deb() {
        let dir = tempdir();
        let check = |name: &str, bytes: &[u8], expected: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let error = Deb::open(&path, "broken").unwrap_err().to_string();
            assert!(error.contains("package `broken`"), "{error}");
            assert!(error.contains(expected), "{error}");
        };
        check("short.deb", b"!<ar", "too short");
        check("text.deb", b"hello, this is not an archive", "`!<arch>`");
        let data = Tar::new().dir("./", 0o755).finish();
        check(
            "bz2.deb",
            &ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", &compress(&data, Z::Gzip)),
                ("data.tar.bz2", b"BZh9"),
            ]),
            "`data.tar.bz2`",
        );
        check(
            "order.deb",
            &ar(&[("control.tar", &data), ("debian-binary", b"2.0\n")]),
            "not `debian-binary`",
        );
        check(
            "version.deb",
            &ar(&[("debian-binary", b"3.0\n")]),
            "format version `3.0`",
        );
        check(
            "nodata.deb",
            &ar(&[("debian-binary", b"2.0\n"), ("control.tar", &data)]),
            "no `data.tar`",
        );
        let mut cut = deb_bytes(&data, Z::None);
        cut.truncate(cut.len() - 10);
        check("cut.deb", &cut, "claims");
        // Members starting with `_` are skipped, as dpkg does.
        let extra = ar(&[
            ("debian-binary", b"2.0\n"),
            ("_gpgorigin", b"signature"),
            ("control.tar", &data),
            ("data.tar", &data),
        ]);
        let path = dir.path().join("extra.deb");
        std::fs::write(&path, extra).unwrap();
        let deb = Deb::open(&path, "extra").unwrap();
        let error = deb.control().unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "`{}` of package `extra` has no `control` file in `control.tar`",
                path.display()
            )
        );
    }

    #[test]
    fn reports_a_corrupt_data_archive() {
        let dir = tempdir();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let data = Tar::new()
            .dir("./", 0o755)
            .file("./big", 0o644, &vec![7; 1 << 20])
            .finish();
        let mut xz = compress(&data, Z::Xz);
        let middle = xz.len() / 2;
        xz.truncate(middle);
        let control = compress(&Tar::new().file("./control", 0o644, b"x").finish(), Z::Gzip);
        let path = dir.path().join("cut.deb");
        std::fs::write(
            &path,
            ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", &control),
                ("data.tar.xz", &xz),
            ]),
        )
        .unwrap();
        let error = Deb::open(&path, "cut")
            .unwrap()
            .extract_data(&root, &ExtractOptions::default())
            .unwrap_err();
        assert!(matches!(error, DebError::Member { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "cannot read `data.tar.xz` in `{}` of package `cut`",
                path.display()
            )
        );
    }

    #[test]
    fn extracts_every_kind_of_entry_in_every_compression() {
        for z in ALL {
            let dir = tempdir();
            let root = dir.path().join("root");
            std::fs::create_dir(&root).unwrap();
            let root_user = is_root(dir.path());
            let data = Tar::new()
                .dir("./", 0o755)
                .dir("./usr/", 0o755)
                .dir("./usr/bin/", 0o755)
                .file("./usr/bin/tool", 0o755, b"#!/bin/sh\necho tool\n")
                .push(
                    tar::EntryType::Regular,
                    "./usr/bin/su",
                    "",
                    0o4755,
                    0,
                    0,
                    b"su",
                )
                .push(
                    tar::EntryType::Regular,
                    "./usr/bin/chage",
                    "",
                    0o2755,
                    0,
                    42,
                    b"chage",
                )
                .symlink("./usr/bin/alias", "tool")
                .hard_link("./usr/bin/tool2", "./usr/bin/tool")
                .dir("./var/", 0o755)
                .push(
                    tar::EntryType::Directory,
                    "./var/mail/",
                    "",
                    0o2775,
                    0,
                    8,
                    b"",
                )
                // No `./usr/share/` entry: tar creates missing folders itself.
                .dir("./usr/share/doc/demo/", 0o755)
                .file("./usr/share/doc/demo/copyright", 0o644, b"free")
                .finish();
            let deb = write_deb(dir.path(), "demo", &data, z);
            let options = ExtractOptions {
                preserve_owners: root_user,
            };
            let summary = deb.extract_data(&root, &options).unwrap();
            assert_eq!(
                summary,
                ExtractSummary {
                    files: 4,
                    bytes: 20 + 2 + 5 + 4,
                    dirs: 6,
                    symlinks: 1,
                    hard_links: 1,
                    kept_dir_symlinks: 0,
                    ignored_xattrs: Vec::new(),
                },
                "{z:?}"
            );

            let bin = root.join("usr/bin");
            assert_eq!(
                std::fs::read(bin.join("tool")).unwrap(),
                b"#!/bin/sh\necho tool\n"
            );
            assert_eq!(
                std::fs::read_link(bin.join("alias")).unwrap(),
                Path::new("tool")
            );
            let tool = std::fs::metadata(bin.join("tool")).unwrap();
            let tool2 = std::fs::metadata(bin.join("tool2")).unwrap();
            assert_eq!((tool.ino(), tool.nlink()), (tool2.ino(), 2));
            assert_eq!(mode(&bin.join("tool")), 0o755);
            assert_eq!(mode(&root.join("usr/share/doc/demo/copyright")), 0o644);
            assert_eq!(mode(&root.join("usr/share")), 0o755);
            assert_eq!(mode(&root), 0o755);
            // Folder times are set after their contents are written.
            for path in [
                "",
                "usr",
                "usr/bin",
                "usr/bin/tool",
                "usr/bin/alias",
                "var/mail",
            ] {
                assert_eq!(mtime(&root.join(path)), MTIME as i64, "{path}");
            }

            if root_user {
                assert_eq!(mode(&bin.join("su")), 0o4755);
                assert_eq!(mode(&bin.join("chage")), 0o2755);
                assert_eq!(mode(&root.join("var/mail")), 0o2775);
                let chage = std::fs::metadata(bin.join("chage")).unwrap();
                assert_eq!((chage.uid(), chage.gid()), (0, 42));
                let mail = std::fs::metadata(root.join("var/mail")).unwrap();
                assert_eq!((mail.uid(), mail.gid()), (0, 8));
            } else {
                skip("not root: owners and setuid/setgid bits of extracted files are not checked");
            }
        }
    }

    #[test]
    fn keeps_merged_usr_symlinks_and_resolves_them_inside_the_root() {
        let dir = tempdir();
        let root = dir.path().join("root");
        for sub in ["usr/bin", "usr/lib", "usr/sbin"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("usr/sbin", root.join("sbin")).unwrap();
        // An absolute link: followed as the image will follow it, to the root's own `/usr/lib`.
        std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
        let marker = format!("envkit-deb-test-{}.so", std::process::id());

        let data = Tar::new()
            .dir("./", 0o755)
            .dir("./bin/", 0o755)
            .file("./bin/sh", 0o755, b"shell")
            .dir("./lib/", 0o755)
            .file(&format!("./lib/{marker}"), 0o644, b"library")
            .dir("./sbin/", 0o755)
            .dir("./usr/", 0o755)
            .dir("./usr/bin/", 0o755)
            .finish();
        let deb = write_deb(dir.path(), "dash", &data, Z::Xz);
        let summary = deb.extract_data(&root, &ExtractOptions::default()).unwrap();
        assert_eq!(summary.kept_dir_symlinks, 3);

        for (link, target) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "/usr/lib"),
        ] {
            assert_eq!(
                std::fs::read_link(root.join(link)).unwrap(),
                Path::new(target),
                "{link}"
            );
        }
        assert_eq!(std::fs::read(root.join("usr/bin/sh")).unwrap(), b"shell");
        assert_eq!(
            std::fs::read(root.join("usr/lib").join(&marker)).unwrap(),
            b"library"
        );
        assert!(!Path::new("/usr/lib").join(&marker).exists());

        // A later package replaces the file through the same link, and trixie's base-files
        // ships the link itself.
        let data = Tar::new()
            .dir("./", 0o755)
            .symlink("./bin", "usr/bin")
            .file("./bin/sh", 0o755, b"newer shell")
            .finish();
        let deb = write_deb(dir.path(), "base-files", &data, Z::Zstd);
        deb.extract_data(&root, &ExtractOptions::default()).unwrap();
        assert_eq!(
            std::fs::read_link(root.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(
            std::fs::read(root.join("usr/bin/sh")).unwrap(),
            b"newer shell"
        );
    }

    #[test]
    fn replaces_existing_names_instead_of_writing_through_them() {
        let dir = tempdir();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"original").unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), root.join("etc/z")).unwrap();

        let first = Tar::new()
            .dir("./etc/", 0o755)
            .file("./etc/x", 0o644, b"one")
            .hard_link("./etc/y", "./etc/x")
            .finish();
        write_deb(dir.path(), "first", &first, Z::Gzip)
            .extract_data(&root, &ExtractOptions::default())
            .unwrap();
        let second = Tar::new()
            .dir("./etc/", 0o700)
            .file("./etc/x", 0o600, b"two")
            .file("./etc/z", 0o644, b"mine")
            .finish();
        write_deb(dir.path(), "second", &second, Z::Gzip)
            .extract_data(&root, &ExtractOptions::default())
            .unwrap();

        assert_eq!(std::fs::read(root.join("etc/x")).unwrap(), b"two");
        assert_eq!(mode(&root.join("etc/x")), 0o600);
        assert_eq!(std::fs::read(root.join("etc/y")).unwrap(), b"one");
        assert_eq!(std::fs::read(root.join("etc/z")).unwrap(), b"mine");
        assert!(
            std::fs::symlink_metadata(root.join("etc/z"))
                .unwrap()
                .is_file()
        );
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"original");
        // An existing folder is kept and takes the newer entry's attributes.
        assert_eq!(mode(&root.join("etc")), 0o700);
    }

    #[test]
    fn refuses_absolute_names_and_follows_absolute_links_inside_the_root() {
        let dir = tempdir();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("inside")).unwrap();
        let data = Tar::new()
            .symlink("./link", "/inside")
            .file("./link/payload", 0o644, b"payload")
            .finish();
        write_deb(dir.path(), "abs", &data, Z::None)
            .extract_data(&root, &ExtractOptions::default())
            .unwrap();
        assert_eq!(
            std::fs::read(root.join("inside/payload")).unwrap(),
            b"payload"
        );
        assert!(!Path::new("/inside/payload").exists());

        let name = format!("envkit-deb-test-abs-{}", std::process::id());
        let error = refused(|tar, _| {
            tar.file(&format!("/etc/{name}"), 0o644, b"absolute");
        });
        assert_eq!(
            error,
            format!("refusing entry `/etc/{name}` of package `evil-pkg`: its path is absolute")
        );
        let error = refused(|tar, _| {
            tar.file("./etc/real", 0o644, b"x")
                .hard_link("./etc/copy", "/etc/real");
        });
        assert!(
            error.contains("its hard link target `/etc/real` is absolute"),
            "{error}"
        );
        assert!(!Path::new("/etc").join(&name).exists());
    }

    /// Extracts an archive built by `build` into a fresh root beside a folder `outside` that
    /// holds `victim`; returns the error and checks nothing outside the root changed.
    fn refused(build: impl FnOnce(&mut Tar, &Path)) -> String {
        let dir = tempdir();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"original").unwrap();
        let mut tar = Tar::new();
        build(&mut tar, &outside);
        let data = tar.finish();
        let error = write_deb(dir.path(), "evil-pkg", &data, Z::Gzip)
            .extract_data(&root, &ExtractOptions::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("package `evil-pkg`"), "{error}");
        let mut outside_now: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        outside_now.sort();
        assert_eq!(outside_now, ["victim"], "{error}");
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"original");
        assert_eq!(
            std::fs::metadata(outside.join("victim")).unwrap().nlink(),
            1
        );
        let mut beside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        beside.sort();
        assert_eq!(beside, ["evil-pkg.deb", "outside", "root"], "{error}");
        error
    }

    #[test]
    fn refuses_entries_that_climb_out_of_the_root() {
        let error = refused(|tar, _| {
            tar.file("../escape", 0o644, b"x");
        });
        assert_eq!(
            error,
            "refusing entry `../escape` of package `evil-pkg`: its path has a `..` component"
        );
        let error = refused(|tar, _| {
            tar.dir("./a/", 0o755).file("./a/../../escape", 0o644, b"x");
        });
        assert!(error.contains("`./a/../../escape`"), "{error}");
    }

    #[test]
    fn refuses_to_write_through_a_symlink_that_leaves_the_root() {
        let error = refused(|tar, outside| {
            tar.symlink("./evil", outside.to_str().unwrap())
                .file("./evil/payload", 0o644, b"x");
        });
        assert!(
            error.starts_with("refusing entry `./evil/payload`"),
            "{error}"
        );
        assert!(
            error.contains("its path goes through the symlink `/evil` -> `/"),
            "{error}"
        );

        let error = refused(|tar, _| {
            tar.symlink("./rel", "../outside")
                .dir("./rel/sub/", 0o755)
                .file("./rel/sub/payload", 0o644, b"x");
        });
        assert!(error.starts_with("refusing entry `./rel/sub/`"), "{error}");
        assert!(error.contains("`/rel` -> `../outside`"), "{error}");

        // A symlink in the middle of the path, through a folder the package created.
        let error = refused(|tar, outside| {
            tar.dir("./usr/", 0o755)
                .symlink(
                    "./usr/share",
                    &format!("../../../../../../../../{}", outside.display()),
                )
                .file("./usr/share/victim", 0o644, b"overwritten");
        });
        assert!(error.contains("`./usr/share/victim`"), "{error}");

        let error = refused(|tar, _| {
            tar.symlink("./loop1", "loop2")
                .symlink("./loop2", "loop1")
                .file("./loop1/x", 0o644, b"x");
        });
        assert!(error.contains("symlinks on its path"), "{error}");
    }

    #[test]
    fn refuses_hard_links_to_files_outside_the_root() {
        let error = refused(|tar, _| {
            tar.hard_link("./x", "../../outside/victim");
        });
        assert_eq!(
            error,
            "refusing entry `./x` of package `evil-pkg`: its hard link target `../../outside/victim` has a `..` component"
        );
        let error = refused(|tar, outside| {
            tar.symlink("./evil", outside.to_str().unwrap())
                .hard_link("./y", "./evil/victim");
        });
        assert!(error.starts_with("refusing entry `./y`"), "{error}");
    }

    #[test]
    fn refuses_device_nodes_and_fifos() {
        for (kind, name) in [
            (tar::EntryType::Char, "character device"),
            (tar::EntryType::Block, "block device"),
            (tar::EntryType::Fifo, "fifo"),
        ] {
            let error = refused(|tar, _| {
                tar.push(kind, "./dev/node", "", 0o644, 0, 0, b"");
            });
            assert_eq!(
                error,
                format!(
                    "entry `./dev/node` of package `evil-pkg` is a {name}, which envkit does not extract (Debian binary packages do not ship them)"
                )
            );
        }
    }

    #[test]
    fn a_directory_entry_replaces_a_symlink_that_does_not_lead_to_a_folder() {
        let dir = tempdir();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let data = Tar::new()
            .symlink("./evil", outside.to_str().unwrap())
            .dir("./evil/", 0o755)
            .file("./evil/payload", 0o644, b"x")
            .finish();
        write_deb(dir.path(), "evil-pkg", &data, Z::Gzip)
            .extract_data(&root, &ExtractOptions::default())
            .unwrap();
        assert!(
            std::fs::symlink_metadata(root.join("evil"))
                .unwrap()
                .is_dir()
        );
        assert!(root.join("evil/payload").is_file());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn applies_pax_times_and_records_extended_attributes_it_cannot_set() {
        let dir = tempdir();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([
                ("mtime", b"1600000000.5".as_slice()),
                ("SCHILY.xattr.user.envkit", b"yes".as_slice()),
                ("SCHILY.xattr.bogus.name", b"no".as_slice()),
            ])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_path("./file").unwrap();
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(4);
        header.set_mtime(MTIME);
        header.set_cksum();
        builder.append(&header, b"data".as_slice()).unwrap();
        let data = builder.into_inner().unwrap();
        let summary = write_deb(dir.path(), "xattrs", &data, Z::Zstd)
            .extract_data(&root, &ExtractOptions::default())
            .unwrap();
        let metadata = std::fs::metadata(root.join("file")).unwrap();
        assert_eq!(
            (metadata.mtime(), metadata.mtime_nsec()),
            (1_600_000_000, 500_000_000)
        );
        // `bogus.` is no namespace Linux knows; `user.` works where the file system allows it.
        assert!(
            summary
                .ignored_xattrs
                .iter()
                .any(|x| x.name == "bogus.name")
        );
        assert!(summary.ignored_xattrs.iter().all(|x| x.entry == "file"));
    }

    #[test]
    fn parses_pax_times() {
        let t = |s, n| {
            Some(Timespec {
                tv_sec: s,
                tv_nsec: n,
            })
        };
        assert_eq!(parse_pax_time("1700000000"), t(1_700_000_000, 0));
        assert_eq!(parse_pax_time("1.25"), t(1, 250_000_000));
        assert_eq!(parse_pax_time("-0.5"), t(-1, 500_000_000));
        assert_eq!(parse_pax_time("-2.25"), t(-3, 750_000_000));
        assert_eq!(parse_pax_time("1.2x"), None);
        assert_eq!(parse_pax_time("x"), None);
    }

    /// Real `.deb`s from the machine's caches, or downloaded with `apt-get download` when
    /// `ENVKIT_MUST_WORK=1`; bash and coreutils when present.
    fn real_debs(work: &Path) -> Result<Vec<PathBuf>, String> {
        let cache = std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".cache/envkit/debs"))
            .unwrap_or_else(|| PathBuf::from("/root/.cache/envkit/debs"));
        for folder in [cache.as_path(), Path::new("/var/cache/apt/archives")] {
            let Ok(entries) = std::fs::read_dir(folder) else {
                continue;
            };
            let mut debs: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
                .collect();
            debs.sort();
            let wanted: Vec<PathBuf> = debs
                .iter()
                .filter(|path| {
                    let name = path.file_name().unwrap().to_string_lossy();
                    name.starts_with("bash_") || name.starts_with("coreutils_")
                })
                .cloned()
                .collect();
            if !wanted.is_empty() {
                return Ok(wanted);
            }
            if !debs.is_empty() {
                debs.truncate(2);
                return Ok(debs);
            }
        }
        if !must_work() {
            return Err("no `.deb` in the envkit or apt caches (with ENVKIT_MUST_WORK=1 the test downloads bash and coreutils)".into());
        }
        // apt downloads as `_apt` when that user can write the folder, and warns otherwise.
        std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o777)).unwrap();
        let status = Command::new("apt-get")
            .args(["download", "bash", "coreutils"])
            .current_dir(work)
            .status()
            .map_err(|error| format!("cannot run `apt-get download`: {error}"))?;
        if !status.success() {
            return Err(format!(
                "`apt-get download bash coreutils` failed: {status}"
            ));
        }
        let mut debs: Vec<PathBuf> = std::fs::read_dir(work)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
            .collect();
        debs.sort();
        Ok(debs)
    }

    /// `ls -l`'s type and permission letters, as `dpkg-deb -c` prints them.
    fn letters(metadata: &std::fs::Metadata) -> String {
        let mode = metadata.permissions().mode();
        let kind = if metadata.is_dir() {
            'd'
        } else if metadata.is_symlink() {
            'l'
        } else {
            '-'
        };
        let bit = |mask: u32, letter: char| if mode & mask != 0 { letter } else { '-' };
        let special = |exec: u32, special: u32, set: char, unset: char| match (
            mode & exec != 0,
            mode & special != 0,
        ) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        };
        [
            kind,
            bit(0o400, 'r'),
            bit(0o200, 'w'),
            special(0o100, 0o4000, 's', 'S'),
            bit(0o040, 'r'),
            bit(0o020, 'w'),
            special(0o010, 0o2000, 's', 'S'),
            bit(0o004, 'r'),
            bit(0o002, 'w'),
            special(0o001, 0o1000, 't', 'T'),
        ]
        .iter()
        .collect()
    }

    /// One line of `dpkg-deb -c`: letters, path without `./` or a trailing `/`, and the
    /// symlink or hard link target.
    struct Listed {
        letters: String,
        link: Option<String>,
        hard_link: Option<String>,
    }

    fn dpkg_deb_list(deb: &Path) -> BTreeMap<String, Listed> {
        let output = Command::new("dpkg-deb")
            .arg("-c")
            .arg(deb)
            .output()
            .unwrap();
        assert!(output.status.success(), "dpkg-deb -c {}", deb.display());
        let text = String::from_utf8(output.stdout).unwrap();
        let mut listed = BTreeMap::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.splitn(6, char::is_whitespace).collect();
            let letters = fields[0].to_owned();
            // The name starts after the time column, at the first `./`.
            let name = &line[line.find(" ./").unwrap() + 1..];
            let (name, link, hard_link) = if let Some((name, target)) = name.split_once(" -> ") {
                (name, Some(target.to_owned()), None)
            } else if let Some((name, target)) = name.split_once(" link to ") {
                (name, None, Some(target.trim_start_matches("./").to_owned()))
            } else {
                (name, None, None)
            };
            let path = name
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_owned();
            listed.insert(
                path,
                Listed {
                    letters,
                    link,
                    hard_link,
                },
            );
        }
        listed
    }

    fn tree(root: &Path, under: &Path, into: &mut Vec<String>) {
        for entry in std::fs::read_dir(under).unwrap() {
            let path = entry.unwrap().path();
            into.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                tree(root, &path, into);
            }
        }
    }

    #[test]
    fn extracts_real_packages_as_dpkg_deb_does() {
        let work = tempdir();
        let debs = match real_debs(work.path()) {
            Ok(debs) => debs,
            Err(reason) => return skip(&reason),
        };
        if Command::new("dpkg-deb").arg("--version").output().is_err() {
            return skip("`dpkg-deb` is not installed to compare with");
        }
        let root_user = is_root(work.path());
        let options = ExtractOptions {
            preserve_owners: root_user,
        };
        for deb_path in &debs {
            let name = deb_path.file_name().unwrap().to_string_lossy().into_owned();
            let ours = work.path().join(format!("ours-{name}"));
            let theirs = work.path().join(format!("theirs-{name}"));
            std::fs::create_dir(&ours).unwrap();
            let deb = Deb::open(deb_path, &name).unwrap();
            let control = deb.control_fields().unwrap();
            assert!(name.starts_with(&format!("{}_", control.package)), "{name}");
            deb.extract_data(&ours, &options).unwrap();
            let status = Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb_path)
                .arg(&theirs)
                .status()
                .unwrap();
            assert!(status.success());

            let listed = dpkg_deb_list(deb_path);
            let mut found = Vec::new();
            tree(&ours, &ours, &mut found);
            found.sort();
            let expected: Vec<String> = listed.keys().filter(|p| !p.is_empty()).cloned().collect();
            assert_eq!(found, expected, "{name}");

            for (path, entry) in &listed {
                let mine = ours.join(path);
                let reference = theirs.join(path);
                let metadata = std::fs::symlink_metadata(&mine).unwrap();
                let other = std::fs::symlink_metadata(&reference).unwrap();
                let mut wanted = entry.letters.clone();
                if wanted.starts_with('h') {
                    wanted.replace_range(..1, "-");
                }
                assert_eq!(letters(&metadata), wanted, "{name}: {path}");
                // `dpkg-deb -x` leaves folders with the time of extraction.
                if !metadata.is_dir() {
                    assert_eq!(metadata.mtime(), other.mtime(), "{name}: {path}");
                }
                if root_user {
                    assert_eq!((metadata.uid(), metadata.gid()), (other.uid(), other.gid()));
                }
                if let Some(target) = &entry.link {
                    assert_eq!(std::fs::read_link(&mine).unwrap(), Path::new(target));
                } else if let Some(target) = &entry.hard_link {
                    let target = std::fs::metadata(ours.join(target)).unwrap();
                    assert_eq!(metadata.ino(), target.ino(), "{name}: {path}");
                } else if metadata.is_file() {
                    assert!(
                        std::fs::read(&mine).unwrap() == std::fs::read(&reference).unwrap(),
                        "{name}: {path} differs"
                    );
                }
            }
        }

        // All of them into one merged-/usr root, as the build does.
        let merged = work.path().join("merged");
        for sub in ["bin", "sbin", "lib", "lib64"] {
            std::fs::create_dir_all(merged.join("usr").join(sub)).unwrap();
            std::os::unix::fs::symlink(format!("usr/{sub}"), merged.join(sub)).unwrap();
        }
        let started = Instant::now();
        let mut files = 0;
        let mut bytes = 0;
        for deb_path in &debs {
            let name = deb_path.file_name().unwrap().to_string_lossy().into_owned();
            let summary = Deb::open(deb_path, &name)
                .unwrap()
                .extract_data(&merged, &options)
                .unwrap();
            files += summary.files;
            bytes += summary.bytes;
        }
        eprintln!(
            "extracted {} packages ({files} files, {bytes} bytes) into a merged-/usr root in {:?}",
            debs.len(),
            started.elapsed()
        );
        for sub in ["bin", "sbin", "lib", "lib64"] {
            let metadata = std::fs::symlink_metadata(merged.join(sub)).unwrap();
            assert!(metadata.is_symlink(), "{sub} was replaced");
        }
        if debs.iter().any(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("bash_")
        }) {
            assert!(merged.join("usr/bin/bash").is_file());
        }
    }
}
