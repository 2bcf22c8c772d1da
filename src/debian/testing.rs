//! Archives for tests: tar streams written header by header, `ar` archives and whole `.deb`s
//! in every compression a `.deb` may use. Public (and hidden) for the end-to-end suites, which
//! serve hostile `.deb`s from fixture repositories.

use std::io::Write;
use std::path::Path;

use super::deb::Deb;

/// The mtime of every entry [`Tar`] writes.
pub const MTIME: u64 = 1_700_000_000;

/// A compression a `.deb` member can use.
#[derive(Debug, Clone, Copy)]
pub enum Z {
    None,
    Gzip,
    Xz,
    Zstd,
}

pub const ALL: [Z; 4] = [Z::None, Z::Gzip, Z::Xz, Z::Zstd];

/// The member name suffix of `z`.
pub fn suffix(z: Z) -> &'static str {
    match z {
        Z::None => "",
        Z::Gzip => ".gz",
        Z::Xz => ".xz",
        Z::Zstd => ".zst",
    }
}

pub fn compress(bytes: &[u8], z: Z) -> Vec<u8> {
    match z {
        Z::None => bytes.to_vec(),
        Z::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(bytes).expect("an in-memory archive");
            encoder.finish().expect("an in-memory archive")
        }
        Z::Xz => {
            let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 1);
            encoder.write_all(bytes).expect("an in-memory archive");
            encoder.finish().expect("an in-memory archive")
        }
        Z::Zstd => zstd::stream::encode_all(bytes, 1).expect("an in-memory archive"),
    }
}

/// A data archive of one megabyte of varied bytes at `./PATH`, compressed with `z` (zstd with
/// its checksum, which dpkg-deb asks for) and garbled in the middle of the compressed stream.
pub fn garbled_data(path: &str, z: Z) -> Vec<u8> {
    let data = Tar::new()
        .dir("./", 0o755)
        .file(
            &format!("./{path}"),
            0o644,
            &(0..1u32 << 20)
                .map(|i| (i * 7 % 251) as u8)
                .collect::<Vec<_>>(),
        )
        .finish();
    let mut compressed = match z {
        Z::Zstd => {
            let mut encoder = zstd::Encoder::new(Vec::new(), 1).expect("a zstd encoder");
            encoder.include_checksum(true).expect("a zstd setting");
            encoder.write_all(&data).expect("an in-memory archive");
            encoder.finish().expect("an in-memory archive")
        }
        _ => compress(&data, z),
    };
    let middle = compressed.len() / 2;
    for byte in &mut compressed[middle..middle + 64] {
        *byte ^= 0x5a;
    }
    compressed
}

/// A data archive whose member `./PATH` declares 100 GB and holds a few bytes before the
/// stream ends.
pub fn huge_member(path: &str) -> Vec<u8> {
    let mut data = Tar::new().dir("./", 0o755).finish();
    let mut header = tar::Header::new_gnu();
    header.set_path(format!("./{path}")).expect("a short path");
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(100 << 30);
    header.set_cksum();
    // Over the end-of-archive blocks.
    data.truncate(data.len() - 1024);
    data.extend_from_slice(header.as_bytes());
    data.extend_from_slice(&[7; 4096]);
    data
}

/// A tar archive written header by header, so tests can also write the names the `tar`
/// crate's own setters refuse (`..`, absolute paths).
pub struct Tar(tar::Builder<Vec<u8>>);

impl Default for Tar {
    fn default() -> Self {
        Tar::new()
    }
}

impl Tar {
    pub fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn push(
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
        self.0.append(&header, data).expect("an in-memory archive");
        self
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Tar {
        self.push(tar::EntryType::Directory, path, "", mode, 0, 0, b"")
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Tar {
        self.push(tar::EntryType::Regular, path, "", mode, 0, 0, data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Tar {
        self.push(tar::EntryType::Symlink, path, target, 0o777, 0, 0, b"")
    }

    pub fn hard_link(&mut self, path: &str, target: &str) -> &mut Tar {
        self.push(tar::EntryType::Link, path, target, 0o644, 0, 0, b"")
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        builder.into_inner().expect("an in-memory archive")
    }
}

/// An `ar` archive of `members`, laid out as dpkg-deb writes one.
pub fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
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

/// The control file of every `.deb` that [`deb_bytes`] makes.
pub const CONTROL: &str = "Package: demo\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: Someone <a@b.c>\nDepends: libc6 (>= 2.36),\n libtinfo6 (>= 6)\nDescription: a demo\n more text\n";

/// A `.deb` with [`CONTROL`] and `data` as its data archive, both compressed with `z`.
pub fn deb_bytes(data: &[u8], z: Z) -> Vec<u8> {
    deb_with_control(CONTROL, data, z)
}

/// A `.deb` with `control` as its control file and `data` as its data archive, both
/// compressed with `z`.
pub fn deb_with_control(control: &str, data: &[u8], z: Z) -> Vec<u8> {
    let control = Tar::new()
        .dir("./", 0o755)
        .file("./control", 0o644, control.as_bytes())
        .finish();
    let control_name = format!("control.tar{}", suffix(z));
    let data_name = format!("data.tar{}", suffix(z));
    ar(&[
        ("debian-binary", b"2.0\n"),
        (&control_name, &compress(&control, z)),
        (&data_name, &compress(data, z)),
    ])
}

/// [`deb_bytes`] written as `dir/PACKAGE.deb` and opened.
pub fn write_deb(dir: &Path, package: &str, data: &[u8], z: Z) -> Deb {
    let path = dir.join(format!("{package}.deb"));
    std::fs::write(&path, deb_bytes(data, z)).expect("an in-memory archive");
    Deb::open(&path, package).expect("an in-memory archive")
}
