//! Where the tar's bytes go: everything written passes through [`Sink`], so the diff_id and
//! the member digests are always of exactly the bytes written.

use std::io::{self, BufWriter, Write};

use sha2::{Digest, Sha256};

use super::MemberDigest;
use super::ustar::{END, padding};

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(super) struct Sink<W: Write> {
    out: BufWriter<W>,
    hasher: Sha256,
    size: u64,
    /// The member being written and the hash of its bytes so far.
    member: Option<(Vec<u8>, blake3::Hasher)>,
    members: Vec<MemberDigest>,
}

/// What the sink saw, once the tar is ended.
pub(super) struct Written {
    pub diff_id: String,
    pub size: u64,
    pub members: Vec<MemberDigest>,
}

impl<W: Write> Sink<W> {
    pub fn new(out: W) -> Self {
        Sink {
            out: BufWriter::with_capacity(64 * 1024, out),
            hasher: Sha256::new(),
            size: 0,
            member: None,
            members: Vec::new(),
        }
    }

    /// Ends the member being written; what follows belongs to the member at `path`.
    pub fn begin_member(&mut self, path: &[u8]) {
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

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some((_, hasher)) = &mut self.member {
            hasher.update(bytes);
        }
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    /// Zeros up to the next block boundary after `len` bytes of data.
    pub fn pad(&mut self, len: u64) -> io::Result<()> {
        self.write(padding(len))
    }

    /// Writes the end of the tar and flushes it.
    pub fn finish(mut self) -> io::Result<Written> {
        self.end_member();
        self.write(&END)?;
        self.out.flush()?;
        let digest = self.hasher.finalize();
        let mut diff_id = String::with_capacity(7 + 2 * digest.len());
        diff_id.push_str("sha256:");
        for byte in digest.iter() {
            diff_id.push(char::from(HEX[usize::from(byte >> 4)]));
            diff_id.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        Ok(Written {
            diff_id,
            size: self.size,
            members: self.members,
        })
    }
}
