//! `.deb` files: their control file, and their data archive as a stream of tar bytes.
//!
//! A `.deb` is an `ar` archive of `debian-binary`, `control.tar[.gz|.xz|.zst]` and
//! `data.tar[.gz|.xz|.zst]`. Members are streamed from the file through the decompressor, so
//! memory use does not grow with the package. What becomes of `data.tar` is the reader's
//! business: this module only hands out its decompressed bytes.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::deb822;

/// The signature every `ar` archive starts with.
const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
/// Size of an `ar` member header.
const AR_HEADER_LEN: u64 = 60;
/// A control file is a few kilobytes; the cap keeps a corrupt archive from asking for
/// gigabytes of memory.
const MAX_CONTROL_LEN: u64 = 4 << 20;
/// Buffer between the `.deb` file and the decompressor.
const READ_BUFFER_LEN: usize = 128 << 10;

/// Errors while reading a `.deb`.
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

    /// The package name errors give, as passed to [`Deb::open`].
    pub fn package(&self) -> &str {
        &self.package
    }

    /// The text of the control file (`./control` in `control.tar`).
    pub fn control(&self) -> Result<String, DebError> {
        let reader = self.member_reader(&self.control)?;
        let mut archive = tar::Archive::new(reader);
        let member_error = |source| self.member_error(&self.control, source);
        for entry in archive.entries().map_err(member_error)? {
            let entry = entry.map_err(member_error)?;
            let is_control = is_control_name(&entry.path_bytes());
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
        let stanza = deb822::stanzas(&text).next().unwrap_or_default();
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

    /// A reader of `data.tar`, decompressed. Its read errors are the archive's: turn them into
    /// a [`DebError`] with [`Deb::data_error`].
    pub fn data(&self) -> Result<Box<dyn Read + Send>, DebError> {
        self.member_reader(&self.data)
    }

    /// An error met reading [`Deb::data`], naming the member and the package.
    pub fn data_error(&self, source: io::Error) -> DebError {
        self.member_error(&self.data, source)
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

/// Whether a `control.tar` entry name is the control file: `./control` as dpkg-deb writes it,
/// or any spelling of it without `..` or a leading `/`.
fn is_control_name(path: &[u8]) -> bool {
    !path.starts_with(b"/")
        && path
            .split(|byte| *byte == b'/')
            .filter(|part| !part.is_empty() && *part != b".")
            .eq([b"control".as_slice()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::testing::{ALL, CONTROL, Tar, Z, ar, compress, deb_bytes, write_deb};

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
    fn reads_the_data_archive_in_every_compression() {
        let dir = tempdir();
        let data = Tar::new()
            .dir("./", 0o755)
            .file("./usr/bin/tool", 0o755, &vec![7; 300_000])
            .finish();
        for z in ALL {
            let deb = write_deb(dir.path(), "demo", &data, z);
            let mut read = Vec::new();
            deb.data().unwrap().read_to_end(&mut read).unwrap();
            assert!(read == data, "{z:?}");
        }
    }

    #[test]
    fn names_the_member_when_the_data_archive_is_corrupt() {
        let dir = tempdir();
        let data = Tar::new()
            .dir("./", 0o755)
            .file("./big", 0o644, &vec![7; 1 << 20])
            .finish();
        let path = dir.path().join("cut.deb");
        let mut xz = compress(&data, Z::Xz);
        xz.truncate(xz.len() / 2);
        std::fs::write(
            &path,
            ar(&[
                ("debian-binary", b"2.0\n"),
                (
                    "control.tar",
                    &Tar::new().file("./control", 0o644, b"x").finish(),
                ),
                ("data.tar.xz", &xz),
            ]),
        )
        .unwrap();
        let deb = Deb::open(&path, "cut").unwrap();
        let source = deb
            .data()
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        let error = deb.data_error(source);
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
    fn knows_the_control_file_by_any_spelling_of_its_name() {
        for name in ["./control", "control", ".//control", "././control/."] {
            assert!(is_control_name(name.as_bytes()), "{name}");
        }
        for name in [
            "/control",
            "./a/../control",
            "./control/x",
            "./controls",
            ".",
        ] {
            assert!(!is_control_name(name.as_bytes()), "{name}");
        }
    }
}
