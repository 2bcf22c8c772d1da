//! Debian package versions, compared exactly as dpkg compares them.
//!
//! `[epoch:]upstream[-revision]` (Debian policy 5.6.12). Epochs compare as numbers; upstream
//! and revision with dpkg's `verrevcmp`: alternating runs of non-digits (compared character by
//! character, where `~` sorts before everything, even the end of the string, and letters sort
//! before other characters) and digits (compared as numbers of any length). Versions are
//! split once when parsed and compared without allocating: the resolver compares them millions
//! of times.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// dpkg keeps the epoch in a C `int` and rejects anything larger.
const MAX_EPOCH: u32 = 2_147_483_647;

/// A Debian package version.
///
/// Equality is dpkg's, not the text's: `1.0`, `1.00`, `1.0-0`, `0:1.0` and even `1.` are the
/// same version, so a set of versions keeps one of them. `Display` gives back the text as
/// written (without surrounding blanks, which dpkg ignores too).
#[derive(Debug, Clone)]
pub struct Version {
    text: Box<str>,
    epoch: u32,
    // Offsets rather than more strings keep a version at 32 bytes and one allocation: the
    // index holds one per package stanza, hundreds of thousands of them.
    /// Where the upstream part starts: after `epoch:`.
    upstream_start: u32,
    /// Where the upstream part ends: at the last hyphen, or the end of the text when there is
    /// no revision.
    upstream_end: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("empty version")]
    Empty,
    #[error("version `{0}` contains white space")]
    WhiteSpace(String),
    /// Shown escaped: a NUL cannot be printed, and dpkg, reading C strings, never sees one.
    #[error("version `{0}` contains a NUL character")]
    Nul(String),
    #[error("version `{0}` has an epoch that is not a number")]
    BadEpoch(String),
    #[error("version `{0}` has an epoch larger than dpkg allows (2147483647)")]
    EpochTooBig(String),
    #[error("version `{0}` has nothing after the epoch")]
    EmptyAfterEpoch(String),
    #[error("version `{0}` has an empty upstream part")]
    EmptyUpstream(String),
    #[error("version `{0}` ends with a hyphen but has no revision after it")]
    EmptyRevision(String),
    #[error("a version of {0} bytes is too long")]
    TooLong(usize),
}

impl FromStr for Version {
    type Err = VersionError;

    /// As lenient as dpkg's `parseversion`: what dpkg only warns about (an upstream part that
    /// does not start with a digit, characters outside policy's set) is accepted, because
    /// dpkg installs such packages and real archives contain a few.
    fn from_str(text: &str) -> Result<Self, VersionError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(VersionError::Empty);
        }
        if text.contains(char::is_whitespace) {
            return Err(VersionError::WhiteSpace(text.to_string()));
        }
        // The comparison reads a 0 byte as the end of the string, as dpkg's C code does.
        if text.contains('\0') {
            return Err(VersionError::Nul(text.escape_debug().to_string()));
        }
        if u32::try_from(text.len()).is_err() {
            return Err(VersionError::TooLong(text.len()));
        }
        let (epoch, upstream_start) = match text.split_once(':') {
            None => (0, 0),
            Some((digits, rest)) => {
                // dpkg reads the epoch with `strtol`, which would also take a sign or leading
                // white space; no archive has either, so only plain digits count as a number.
                if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                    return Err(VersionError::BadEpoch(text.to_string()));
                }
                let epoch = digits
                    .parse::<u32>()
                    .ok()
                    .filter(|epoch| *epoch <= MAX_EPOCH)
                    .ok_or_else(|| VersionError::EpochTooBig(text.to_string()))?;
                if rest.is_empty() {
                    return Err(VersionError::EmptyAfterEpoch(text.to_string()));
                }
                (epoch, digits.len() + 1)
            }
        };
        // Upstream versions may contain hyphens themselves, so the revision is what follows the
        // last one; a colon after the first belongs to the upstream part.
        let upstream_end = match text[upstream_start..].rfind('-') {
            Some(hyphen) if upstream_start + hyphen + 1 == text.len() => {
                return Err(VersionError::EmptyRevision(text.to_string()));
            }
            Some(hyphen) => upstream_start + hyphen,
            None => text.len(),
        };
        if upstream_end == upstream_start {
            return Err(VersionError::EmptyUpstream(text.to_string()));
        }
        // Both offsets are at most the length, which fits in a `u32`.
        Ok(Version {
            text: text.into(),
            epoch,
            upstream_start: upstream_start as u32,
            upstream_end: upstream_end as u32,
        })
    }
}

impl Version {
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn upstream(&self) -> &str {
        &self.text[self.upstream_start as usize..self.upstream_end as usize]
    }

    /// The Debian revision, `""` when there is none (which compares equal to `0`).
    pub fn revision(&self) -> &str {
        self.text
            .get(self.upstream_end as usize + 1..)
            .unwrap_or("")
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    // Byte slices: comparing needs no char boundaries, so no checks for them on the hot path.
    fn upstream_bytes(&self) -> &[u8] {
        self.text
            .as_bytes()
            .get(self.upstream_start as usize..self.upstream_end as usize)
            .unwrap_or_default()
    }

    fn revision_bytes(&self) -> &[u8] {
        self.text
            .as_bytes()
            .get(self.upstream_end as usize + 1..)
            .unwrap_or_default()
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream_bytes(), other.upstream_bytes()))
            .then_with(|| verrevcmp(self.revision_bytes(), other.revision_bytes()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl Hash for Version {
    /// Hashes what equal versions share. Two parts compare equal exactly when their non-digit
    /// runs are identical and their digit runs are equal numbers, so dropping the leading zeros
    /// of every digit run gives equal versions equal hashes. (It also merges a few unequal
    /// parts, `a0b` and `ab`, which only costs a collision.)
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.epoch.hash(state);
        for part in [self.upstream_bytes(), self.revision_bytes()] {
            let mut previous = b'.';
            for &byte in part {
                if byte == b'0' && !previous.is_ascii_digit() {
                    continue;
                }
                state.write_u8(byte);
                previous = byte;
            }
            // UTF-8 text never contains 0xff: an unambiguous end of the part.
            state.write_u8(0xff);
        }
    }
}

/// Where a character of a non-digit run sorts, as dpkg's `order`: `~` before the end of the
/// run (0), the end before letters, letters before everything else.
///
/// Bytes above 0x7f (invalid in a version, which dpkg only warns about) keep their own value
/// there while other punctuation gets 256 added, because dpkg's `char` is signed on amd64 and
/// `c + 256` brings them back to 128..=255. dpkg on an unsigned-`char` architecture (arm64)
/// sorts them after punctuation instead; this follows amd64.
fn order(byte: u8) -> i32 {
    match byte {
        b'~' => -1,
        0 | b'0'..=b'9' => 0,
        b'a'..=b'z' | b'A'..=b'Z' | 0x80..=0xff => i32::from(byte),
        _ => i32::from(byte) + 256,
    }
}

/// dpkg's `verrevcmp`, step for step, so that every corner (empty runs, a digit run against a
/// non-digit one) behaves as in dpkg.
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    // 0 past the end, like the terminating NUL dpkg reads; parsing keeps NUL out of versions.
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let non_digit = |byte: u8| byte != 0 && !byte.is_ascii_digit();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while non_digit(at(a, i)) || non_digit(at(b, j)) {
            let (x, y) = (order(at(a, i)), order(at(b, j)));
            if x != y {
                return x.cmp(&y);
            }
            i += 1;
            j += 1;
        }
        while at(a, i) == b'0' {
            i += 1;
        }
        while at(b, j) == b'0' {
            j += 1;
        }
        // Without leading zeros the longer run is the larger number and runs of equal length
        // compare by their first differing digit: numbers of any length, never parsed.
        let mut first_difference = Ordering::Equal;
        while at(a, i).is_ascii_digit() && at(b, j).is_ascii_digit() {
            if first_difference == Ordering::Equal {
                first_difference = at(a, i).cmp(&at(b, j));
            }
            i += 1;
            j += 1;
        }
        if at(a, i).is_ascii_digit() {
            return Ordering::Greater;
        }
        if at(b, j).is_ascii_digit() {
            return Ordering::Less;
        }
        if first_difference != Ordering::Equal {
            return first_difference;
        }
    }
    Ordering::Equal
}

/// The version relation of a dependency: `candidate <relation> wanted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Relation {
    /// `<<`
    Lt,
    /// `<=`, also written as the obsolete `<`
    Le,
    /// `=`
    Eq,
    /// `>=`, also written as the obsolete `>`
    Ge,
    /// `>>`
    Gt,
}

impl Relation {
    /// Whether `candidate` stands in this relation to `wanted`: `Ge` asks `candidate >= wanted`.
    pub fn satisfied_by(self, candidate: &Version, wanted: &Version) -> bool {
        let ordering = candidate.cmp(wanted);
        match self {
            Relation::Lt => ordering == Ordering::Less,
            Relation::Le => ordering != Ordering::Greater,
            Relation::Eq => ordering == Ordering::Equal,
            Relation::Ge => ordering != Ordering::Less,
            Relation::Gt => ordering == Ordering::Greater,
        }
    }

    /// The canonical operator.
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Lt => "<<",
            Relation::Le => "<=",
            Relation::Eq => "=",
            Relation::Ge => ">=",
            Relation::Gt => ">>",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a version relation (`<<`, `<=`, `=`, `>=` or `>>`)")]
pub struct RelationError(pub String);

impl FromStr for Relation {
    type Err = RelationError;

    fn from_str(text: &str) -> Result<Self, RelationError> {
        match text {
            "<<" => Ok(Relation::Lt),
            // dpkg still reads the obsolete one-character forms, as "or equal".
            "<=" | "<" => Ok(Relation::Le),
            "=" => Ok(Relation::Eq),
            ">=" | ">" => Ok(Relation::Ge),
            ">>" => Ok(Relation::Gt),
            other => Err(RelationError(other.to_string())),
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;
    use std::collections::{BTreeSet, HashSet};
    use std::process::Command;
    use std::time::Instant;

    use proptest::prelude::*;

    use super::*;

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    fn hash_of(version: &Version) -> u64 {
        let mut hasher = DefaultHasher::new();
        version.hash(&mut hasher);
        hasher.finish()
    }

    fn assert_ascending(texts: &[&str]) {
        for pair in texts.windows(2) {
            let (a, b) = (v(pair[0]), v(pair[1]));
            assert_eq!(a.cmp(&b), Ordering::Less, "`{a}` < `{b}`");
            assert_eq!(b.cmp(&a), Ordering::Greater, "`{b}` > `{a}`");
        }
    }

    fn assert_same(texts: &[&str]) {
        let first = v(texts[0]);
        for text in texts {
            let other = v(text);
            assert_eq!(first, other, "`{first}` = `{other}`");
            assert_eq!(
                hash_of(&first),
                hash_of(&other),
                "hash of `{first}` and `{other}`"
            );
        }
    }

    #[test]
    fn parts_and_display() {
        let version = v("1:2.30-1+deb12u1");
        assert_eq!(
            (version.epoch(), version.upstream(), version.revision()),
            (1, "2.30", "1+deb12u1")
        );
        assert_eq!(version.to_string(), "1:2.30-1+deb12u1");
        let hyphens = v("1.0-beta-2");
        assert_eq!((hyphens.upstream(), hyphens.revision()), ("1.0-beta", "2"));
        let native = v("20230311");
        assert_eq!(
            (native.epoch(), native.upstream(), native.revision()),
            (0, "20230311", "")
        );
        let colons = v("1:2:3-4");
        assert_eq!(
            (colons.epoch(), colons.upstream(), colons.revision()),
            (1, "2:3", "4")
        );
        for text in [
            "0:1.0",
            "1.0",
            "00:1.0-0",
            "1:2.0-1",
            "2.36-9+deb12u4",
            "1.0~rc1",
            "abc",
        ] {
            assert_eq!(v(text).to_string(), text);
            assert_eq!(v(text).as_str(), text);
        }
        assert_eq!(
            v(" 1.0\t").to_string(),
            "1.0",
            "dpkg ignores surrounding blanks"
        );
    }

    #[test]
    fn stays_small() {
        assert_eq!(std::mem::size_of::<Version>(), 32);
    }

    #[test]
    fn epochs_come_first() {
        assert_ascending(&[
            "9.9-9",
            "1:0",
            "1:0.1",
            "1:1.0",
            "2:0",
            "10:0",
            "2147483647:0",
        ]);
        assert_same(&["1.0", "0:1.0", "00:1.0"]);
        assert_same(&["1:1", "01:1"]);
    }

    #[test]
    fn tilde_sorts_before_everything() {
        assert_ascending(&[
            "1.0~~",
            "1.0~~a",
            "1.0~",
            "1.0~rc1",
            "1.0~rc1-1",
            "1.0",
            "1.0a",
        ]);
        assert_ascending(&["1.0-1~bpo1", "1.0-1", "1.0-1+b1"]);
        assert_ascending(&["2.0~~~", "2.0~~", "2.0"]);
    }

    #[test]
    fn revisions() {
        assert_ascending(&[
            "1.0", "1.0-1", "1.0-1+b1", "1.0-1.1", "1.0-2", "1.0-10", "1.0a-1",
        ]);
        assert_same(&["1.0", "1.0-0", "1.0-00"]);
        assert!(v("1.0-1") > v("1.0"), "revision 1 is after no revision");
        assert!(
            v("1.0-1") < v("1.0.1"),
            "upstream decides before the revision"
        );
    }

    #[test]
    fn leading_zeros_and_empty_digit_runs() {
        assert_same(&["1.1", "1.01", "1.001", "1.000000000000000000000000000001"]);
        assert_same(&["7", "007"]);
        // dpkg reads a missing digit run as 0, so a trailing zero is the same as none.
        assert_same(&["1.0", "1.00", "1.", "1.-0", "0:1.-0"]);
        assert_ne!(v("1.0"), v("1.0."));
        assert_ne!(v("1"), v("1.0"));
        assert_ascending(&["1.0a", "1.01"]);
    }

    #[test]
    fn letters_before_symbols() {
        assert_ascending(&[
            "1.0", "1.0a", "1.0a1", "1.0z", "1.0+", "1.0+dfsg", "1.0.1", "1.1",
        ]);
        // Letters and other characters each in ASCII order: upper case first, `+ - . :`.
        assert_ascending(&["1.0A", "1.0Z", "1.0a", "1.0z"]);
        assert_ascending(&["1+b-1", "1-b-1", "1.b-1", "0:1:b-1"]);
        // Non-ASCII (dpkg warns but compares): between letters and punctuation, as on amd64.
        assert_ascending(&["1.~", "1.z", "1.é", "1.+"]);
    }

    #[test]
    fn long_digit_runs_do_not_overflow() {
        assert_ascending(&[
            "1.123456789012345678901234567890",
            "1.123456789012345678901234567891",
        ]);
        assert_ascending(&[
            "9999999999999999999999999",
            "99999999999999999999999999",
            "1:0",
        ]);
        assert_ascending(&[
            "0~git20220105193632.41237ef-2",
            "0~git20220105194034.62f5a78-3",
        ]);
    }

    #[test]
    fn equal_versions_hash_alike() {
        let set: HashSet<Version> = ["1.0", "1.00", "0:1.0-0", "01.000", "1."]
            .iter()
            .map(|t| v(t))
            .collect();
        assert_eq!(set.len(), 1);
        let set: BTreeSet<Version> = ["1.0", "1.00", "1.0-1", "1.0-01"]
            .iter()
            .map(|t| v(t))
            .collect();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn parse_errors() {
        let error = |text: &str| text.parse::<Version>().unwrap_err();
        assert_eq!(error(""), VersionError::Empty);
        assert_eq!(error("  "), VersionError::Empty);
        assert_eq!(error("1 0"), VersionError::WhiteSpace("1 0".into()));
        assert_eq!(error("1:\n2"), VersionError::WhiteSpace("1:\n2".into()));
        assert_eq!(error("1\u{0}"), VersionError::Nul("1\\0".into()));
        assert_eq!(error("a:1"), VersionError::BadEpoch("a:1".into()));
        assert_eq!(error(":1"), VersionError::BadEpoch(":1".into()));
        assert_eq!(error("1.0-1:2"), VersionError::BadEpoch("1.0-1:2".into()));
        assert_eq!(error("+1:2"), VersionError::BadEpoch("+1:2".into()));
        assert_eq!(
            error("2147483648:1"),
            VersionError::EpochTooBig("2147483648:1".into())
        );
        assert_eq!(
            error("99999999999999999999:1"),
            VersionError::EpochTooBig("99999999999999999999:1".into())
        );
        assert_eq!(error("1:"), VersionError::EmptyAfterEpoch("1:".into()));
        assert_eq!(error("1.0-"), VersionError::EmptyRevision("1.0-".into()));
        assert_eq!(error("1:-"), VersionError::EmptyRevision("1:-".into()));
        assert_eq!(error("-1"), VersionError::EmptyUpstream("-1".into()));
        assert_eq!(error("1:-1"), VersionError::EmptyUpstream("1:-1".into()));
        assert_eq!(
            error("a:1").to_string(),
            "version `a:1` has an epoch that is not a number"
        );
        // What dpkg only warns about.
        for text in [
            "abc",
            "~1",
            "1.0_1",
            "1.é",
            "1-2-3",
            "1:2:3",
            "2147483647:1",
        ] {
            assert!(
                text.parse::<Version>().is_ok(),
                "`{text}` is accepted as dpkg accepts it"
            );
        }
    }

    #[test]
    fn relations() {
        let (one, two) = (v("1"), v("2"));
        let holds = |relation: &str, a: &Version, b: &Version| {
            relation.parse::<Relation>().unwrap().satisfied_by(a, b)
        };
        assert!(holds("<<", &one, &two) && !holds("<<", &one, &one) && !holds("<<", &two, &one));
        assert!(holds("<=", &one, &two) && holds("<=", &one, &one) && !holds("<=", &two, &one));
        assert!(!holds("=", &one, &two) && holds("=", &one, &one) && !holds("=", &two, &one));
        assert!(!holds(">=", &one, &two) && holds(">=", &one, &one) && holds(">=", &two, &one));
        assert!(!holds(">>", &one, &two) && !holds(">>", &one, &one) && holds(">>", &two, &one));
        assert!(holds("=", &v("1.0"), &v("1.00")));
        assert_eq!("<".parse::<Relation>(), Ok(Relation::Le));
        assert_eq!(">".parse::<Relation>(), Ok(Relation::Ge));
        for relation in [
            Relation::Lt,
            Relation::Le,
            Relation::Eq,
            Relation::Ge,
            Relation::Gt,
        ] {
            assert_eq!(relation.to_string().parse::<Relation>(), Ok(relation));
        }
        assert_eq!("<".parse::<Relation>().unwrap().to_string(), "<=");
        assert_eq!(
            "=>".parse::<Relation>().unwrap_err().to_string(),
            "`=>` is not a version relation (`<<`, `<=`, `=`, `>=` or `>>`)"
        );
        assert!("".parse::<Relation>().is_err());
        assert!("==".parse::<Relation>().is_err());
    }

    /// Text built from the characters versions are made of, the odd ones included.
    fn version_text() -> impl Strategy<Value = String> {
        "([0-9]{1,2}:)?[0-9a~.+]{1,2}[0-9a-c~.+A]{0,6}(-[0-9a~.+]{1,4})?"
    }

    proptest! {
        #[test]
        fn comparison_is_a_total_order(a in version_text(), b in version_text(), c in version_text()) {
            let (a, b, c) = (v(&a), v(&b), v(&c));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            if a == b {
                prop_assert_eq!(hash_of(&a), hash_of(&b));
            }
            if a <= b && b <= c {
                prop_assert!(a <= c, "{} <= {} <= {}", a, b, c);
            }
            let again = v(&a.to_string());
            prop_assert_eq!(again.as_str(), a.as_str());
        }
    }

    /// Skips with the reason, unless `ENVKIT_MUST_WORK=1` (CI) forbids skipping.
    fn skip(reason: &str) {
        let must_work = std::env::var("ENVKIT_MUST_WORK").is_ok_and(|value| value == "1");
        assert!(!must_work, "ENVKIT_MUST_WORK=1 but {reason}");
        eprintln!("skipped: {reason}");
    }

    /// Every `Version:` of the host's package lists, or of the installed packages when there
    /// are no lists, sorted and without repeats; with where they came from.
    fn host_versions() -> (&'static str, Vec<String>) {
        let fields = |text: &str, into: &mut BTreeSet<String>| {
            into.extend(
                text.lines()
                    .filter_map(|line| line.strip_prefix("Version:"))
                    .map(|value| value.trim().to_string()),
            );
        };
        let mut plain = Vec::new();
        let mut compressed = Vec::new();
        for path in std::fs::read_dir("/var/lib/apt/lists")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
        {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default();
            if name.ends_with("_Packages") {
                plain.push(path);
            } else if name.contains("_Packages.") {
                compressed.push(path);
            }
        }
        let mut versions = BTreeSet::new();
        for path in &plain {
            if let Ok(text) = std::fs::read_to_string(path) {
                fields(&text, &mut versions);
            }
        }
        // With `Acquire::GzipIndexes` (set in Debian's container images) apt keeps the lists
        // compressed, as `.lz4` or `.gz`; apt's own helper reads whatever apt wrote.
        if !compressed.is_empty()
            && let Ok(output) = Command::new("/usr/lib/apt/apt-helper")
                .arg("cat-file")
                .args(&compressed)
                .output()
            && output.status.success()
        {
            fields(&String::from_utf8_lossy(&output.stdout), &mut versions);
        }
        if !versions.is_empty() {
            return (
                "the apt lists in `/var/lib/apt/lists`",
                versions.into_iter().collect(),
            );
        }
        if let Ok(text) = std::fs::read_to_string("/var/lib/dpkg/status") {
            fields(&text, &mut versions);
        }
        ("`/var/lib/dpkg/status`", versions.into_iter().collect())
    }

    /// Deterministic pairs (indices into `versions`, sorted by text) that exercise different
    /// parts of the comparison, then spread over the whole list up to `want` pairs.
    fn pick_pairs(versions: &[Version], want: usize) -> Vec<(usize, usize)> {
        let n = versions.len();
        let texts: Vec<&str> = versions.iter().map(Version::as_str).collect();
        let closest = |text: &str| texts.partition_point(|other| *other < text).min(n - 1);
        let mut pairs = Vec::new();
        let mut seen = HashSet::new();
        // Returns how many pairs there are now.
        let mut push = |pair: (usize, usize)| {
            if pair.0 != pair.1 && seen.insert(pair) {
                pairs.push(pair);
            }
            pairs.len()
        };
        // Neighbours in text order share a prefix: revisions, suffixes, `+b1`, `~rc`.
        for i in (0..n - 1).step_by(n / 1200 + 1) {
            push((i, i + 1));
        }
        // Neighbours in envkit's order, where dpkg must agree that nothing lies between them,
        // and every pair of different texts that compare equal.
        let mut by_order: Vec<usize> = (0..n).collect();
        by_order.sort_by(|&a, &b| versions[a].cmp(&versions[b]).then(a.cmp(&b)));
        for (k, pair) in by_order.windows(2).enumerate() {
            if k % (n / 800 + 1) == 0 || versions[pair[0]] == versions[pair[1]] {
                push((pair[0], pair[1]));
            }
        }
        // Each epoch against the same text without it (or the closest), epochs against each
        // other, and tildes against the release they come before.
        let with_epoch: Vec<usize> = (0..n).filter(|&i| texts[i].contains(':')).collect();
        for &i in with_epoch.iter().step_by(with_epoch.len() / 400 + 1) {
            let without = texts[i].split_once(':').map_or("", |(_, rest)| rest);
            push((i, closest(without)));
        }
        for pair in with_epoch.windows(2).step_by(with_epoch.len() / 200 + 1) {
            push((pair[0], pair[1]));
        }
        let with_tilde: Vec<usize> = (0..n).filter(|&i| texts[i].contains('~')).collect();
        for &i in with_tilde.iter().step_by(with_tilde.len() / 500 + 1) {
            let release = texts[i].split('~').next().unwrap_or_default();
            push((i, closest(release)));
        }
        for k in 0..4 * want {
            if push(((k * 7919) % n, (k * 104_729 + n / 2) % n)) >= want {
                break;
            }
        }
        pairs
    }

    /// Whether dpkg agrees with each `(a, relation, b)`: its exit status per claim, 0 when it
    /// holds. One `sh` per CPU runs a script of `dpkg --compare-versions` calls, since spawning
    /// dpkg is what takes the time.
    fn dpkg_statuses(claims: &[(&str, &str, &str)]) -> Vec<String> {
        let quote = |text: &str| format!("'{}'", text.replace('\'', r"'\''"));
        let folder = tempfile::tempdir().unwrap();
        let shells = std::thread::available_parallelism()
            .map_or(2, usize::from)
            .min(8);
        let chunks: Vec<_> = claims
            .chunks(claims.len().div_ceil(shells).max(1))
            .collect();
        std::thread::scope(|scope| {
            let running: Vec<_> = chunks
                .iter()
                .enumerate()
                .map(|(number, chunk)| {
                    let mut script = String::from(
                        "c() { dpkg --compare-versions \"$1\" \"$2\" \"$3\"; echo $?; }\n",
                    );
                    for (a, relation, b) in chunk.iter() {
                        script.push_str(&format!("c {} {relation} {}\n", quote(a), quote(b)));
                    }
                    let path = folder.path().join(format!("compare-{number}.sh"));
                    std::fs::write(&path, script).unwrap();
                    scope.spawn(move || Command::new("sh").arg(path).output().unwrap())
                })
                .collect();
            let mut statuses = Vec::new();
            for shell in running {
                let output = shell.join().unwrap();
                statuses.extend(
                    String::from_utf8_lossy(&output.stdout)
                        .lines()
                        .map(str::to_string),
                );
            }
            statuses
        })
    }

    /// dpkg's own answer for one pair, to explain a disagreement.
    fn dpkg_answer(a: &str, b: &str) -> &'static str {
        let holds = |relation| {
            Command::new("dpkg")
                .args(["--compare-versions", a, relation, b])
                .status()
                .is_ok_and(|s| s.success())
        };
        if holds("lt") {
            "<<"
        } else if holds("eq") {
            "="
        } else if holds("gt") {
            ">>"
        } else {
            "an error"
        }
    }

    fn check_with_dpkg(pairs: &[(&Version, &Version)]) -> Vec<String> {
        let claims: Vec<(&str, &str, &str)> = pairs
            .iter()
            .map(|(a, b)| {
                let relation = match a.cmp(b) {
                    Ordering::Less => "lt",
                    Ordering::Equal => "eq",
                    Ordering::Greater => "gt",
                };
                (a.as_str(), relation, b.as_str())
            })
            .collect();
        let statuses = dpkg_statuses(&claims);
        assert_eq!(statuses.len(), claims.len(), "dpkg answered every pair");
        claims
            .iter()
            .zip(&statuses)
            .filter(|(_, status)| *status != "0")
            .take(20)
            .map(|((a, relation, b), status)| {
                format!(
                    "envkit says `{a}` {relation} `{b}`, dpkg (exit {status}) says {}",
                    dpkg_answer(a, b)
                )
            })
            .collect()
    }

    /// Thousands of real version pairs from the host's package lists, each compared by dpkg.
    #[test]
    fn agrees_with_dpkg_on_real_versions() {
        if !Command::new("dpkg")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
        {
            return skip("`dpkg` is not installed");
        }
        let (source, texts) = host_versions();
        if texts.len() < 100 {
            return skip(
                "no apt lists in `/var/lib/apt/lists` (run `apt-get update`) and few installed packages",
            );
        }
        let unparsed: Vec<_> = texts
            .iter()
            .filter_map(|text| text.parse::<Version>().err())
            .collect();
        assert!(
            unparsed.is_empty(),
            "real versions from {source} that do not parse: {unparsed:#?}"
        );
        // A version starting with `-` would reach dpkg as an option; archives have none.
        let versions: Vec<Version> = texts
            .iter()
            .filter(|text| !text.starts_with('-'))
            .map(|text| v(text))
            .collect();
        let started = Instant::now();
        let picked = pick_pairs(&versions, 4000);
        let pairs: Vec<_> = picked
            .iter()
            .map(|&(a, b)| (&versions[a], &versions[b]))
            .collect();
        let epochs = pairs.iter().filter(|(a, b)| a.epoch() != b.epoch()).count();
        let tildes = pairs
            .iter()
            .filter(|(a, b)| a.as_str().contains('~') || b.as_str().contains('~'))
            .count();
        let equal = pairs.iter().filter(|(a, b)| a == b).count();
        let disagreements = check_with_dpkg(&pairs);
        eprintln!(
            "compared {} pairs of {} real versions from {source} with dpkg in {:.1?} ({epochs} across epochs, {tildes} with `~`, {equal} equal with different texts)",
            pairs.len(),
            versions.len(),
            started.elapsed()
        );
        assert!(disagreements.is_empty(), "{disagreements:#?}");
        assert!(pairs.len() >= 3000, "only {} pairs", pairs.len());
    }

    /// Odd versions no archive has, to pin down dpkg's corners (empty digit runs, `~~`, symbols,
    /// colons and hyphens in odd places) in both parsing and comparing.
    #[test]
    fn agrees_with_dpkg_on_odd_versions() {
        if !Command::new("dpkg")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
        {
            return skip("`dpkg` is not installed");
        }
        // A fixed linear congruential sequence: the same texts on every run.
        let alphabet = b"0019a.z.~+-:0A";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        let mut texts = BTreeSet::new();
        while texts.len() < 600 {
            let length = 1 + next() % 7;
            let text: String = (0..length)
                .map(|_| char::from(alphabet[next() % alphabet.len()]))
                .collect();
            // dpkg would take `-...` for an option, and it reads `+1:` as epoch 1 (`strtol`),
            // which envkit rejects on purpose.
            if !text.starts_with(['-', '+']) {
                texts.insert(text);
            }
        }
        // dpkg exits with 2 for a version it rejects, even compared with itself.
        let claims: Vec<(&str, &str, &str)> = texts
            .iter()
            .map(|text| (text.as_str(), "eq", text.as_str()))
            .collect();
        let statuses = dpkg_statuses(&claims);
        assert_eq!(statuses.len(), claims.len(), "dpkg answered every text");
        let parsing: Vec<String> = texts
            .iter()
            .zip(&statuses)
            .filter(|(text, status)| text.parse::<Version>().is_ok() != (*status == "0"))
            .map(|(text, status)| {
                format!(
                    "`{text}`: envkit {:?}, dpkg exit {status}",
                    text.parse::<Version>()
                )
            })
            .collect();
        assert!(parsing.is_empty(), "{parsing:#?}");
        let versions: Vec<Version> = texts.iter().filter_map(|text| text.parse().ok()).collect();
        let n = versions.len();
        let pairs: Vec<_> = (0..4 * n)
            .map(|k| (&versions[k % n], &versions[(k * 7 + k / n + 1) % n]))
            .collect();
        let disagreements = check_with_dpkg(&pairs);
        eprintln!(
            "dpkg agrees on parsing {} odd texts ({n} of them versions) and on {} pairs of them",
            texts.len(),
            pairs.len()
        );
        assert!(disagreements.is_empty(), "{disagreements:#?}");
    }
}
