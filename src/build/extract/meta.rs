//! What a tar entry says about the file it makes: owner, mode, time (from pax records when
//! they give one) and extended attributes.

use std::io::{self, Read};

use rustix::fs::Timespec;

/// Owner, mode, time and extended attributes of one entry.
pub(super) struct Meta {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: Timespec,
    pub(super) xattrs: Vec<(String, Vec<u8>)>,
}

#[derive(thiserror::Error, Debug)]
pub(super) enum MetaError {
    #[error("its tar header has an invalid {0}")]
    Invalid(&'static str),
    /// The archive ended or broke inside the entry's pax records.
    #[error("cannot read its pax records")]
    Read(#[source] io::Error),
}

impl Meta {
    /// What `entry`'s header and pax records say.
    pub(super) fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, MetaError> {
        let header = entry.header();
        let bad = MetaError::Invalid;
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
        let extensions = entry.pax_extensions().map_err(MetaError::Read)?;
        if let Some(extensions) = extensions {
            for extension in extensions {
                let extension = extension.map_err(MetaError::Read)?;
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
}
