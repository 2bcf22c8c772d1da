//! One member's header as bytes: a ustar block, preceded by a PAX extended header when a value
//! does not fit its ustar field (the rules are in the parent module's docs).

pub(super) const BLOCK: usize = 512;
/// What ends a tar: two zero blocks.
pub(super) const END: [u8; 2 * BLOCK] = [0; 2 * BLOCK];
const PAX_HEADER_NAME: &[u8] = b"././@PaxHeader";
const NAME_LEN: usize = 100;

pub(super) const REGULAR: u8 = b'0';
pub(super) const HARD_LINK: u8 = b'1';
pub(super) const SYMLINK: u8 = b'2';
pub(super) const DIRECTORY: u8 = b'5';
const PAX_EXTENDED: u8 = b'x';

/// One member's header fields, before they are split between ustar and PAX.
pub(super) struct Header<'a> {
    pub path: &'a [u8],
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub link: &'a [u8],
    pub capability: Option<&'a [u8]>,
}

/// The zeros that follow `len` bytes of data up to the next block boundary.
pub(super) fn padding(len: u64) -> &'static [u8] {
    let partial = (len % BLOCK as u64) as usize;
    if partial == 0 {
        return &[];
    }
    &END[..BLOCK - partial]
}

/// Replaces `out` with the bytes of `header`: its PAX extended header (and padding) if one is
/// needed, then its ustar block.
pub(super) fn encode(header: &Header, out: &mut Vec<u8>) {
    out.clear();
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
        out.extend_from_slice(&ustar_block(&UstarFields {
            name: PAX_HEADER_NAME,
            mode: 0,
            uid: 0,
            gid: 0,
            size: data.len() as u64,
            mtime: 0,
            typeflag: PAX_EXTENDED,
            link: b"",
        }));
        out.extend_from_slice(&data);
        out.extend_from_slice(padding(data.len() as u64));
    }

    out.extend_from_slice(&ustar_block(&UstarFields {
        name: header.path,
        mode: header.mode.into(),
        uid,
        gid,
        size,
        mtime,
        typeflag: header.typeflag,
        link: header.link,
    }));
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
