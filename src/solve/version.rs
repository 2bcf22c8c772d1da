//! Debian package versions, compared exactly as dpkg compares them.
//!
//! `[epoch:]upstream[-revision]` (Debian policy 5.6.12). Epochs compare as numbers; upstream
//! and revision with dpkg's `verrevcmp`: alternating runs of non-digits (compared character by
//! character, where `~` sorts before everything, even the end of the string, and letters sort
//! before other characters) and digits (compared as numbers of any length). Versions are
//! parsed once and compared without allocating: the resolver compares them millions of times.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// A parsed Debian version. Equality follows dpkg (`1.0` = `1.00` = `0:1.0-0`); `Display`
/// gives back the text as written.
#[derive(Debug, Clone)]
pub struct Version {
    text: Box<str>,
    epoch: u32,
    /// Byte range of the upstream part in `text`.
    upstream: (u32, u32),
    /// Byte range of the revision in `text` (empty when there is none).
    revision: (u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("empty version")]
    Empty,
    #[error("version `{0}` contains white space")]
    WhiteSpace(String),
    #[error("version `{0}` has an epoch that is not a number")]
    BadEpoch(String),
    #[error("version `{0}` has nothing after the epoch")]
    EmptyAfterEpoch(String),
    #[error("version `{0}` has an empty revision")]
    EmptyRevision(String),
    #[error("version `{0}` has an empty upstream part")]
    EmptyUpstream(String),
}

impl FromStr for Version {
    type Err = VersionError;

    /// As lenient as dpkg's `parseversion`: what dpkg only warns about is accepted.
    fn from_str(text: &str) -> Result<Self, VersionError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(VersionError::Empty);
        }
        if text.contains(char::is_whitespace) {
            return Err(VersionError::WhiteSpace(text.to_string()));
        }
        let owned = || text.to_string();
        let (epoch, rest_start) = match text.find(':') {
            Some(colon) => {
                let digits = &text[..colon];
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VersionError::BadEpoch(owned()));
                }
                let epoch = digits
                    .parse::<u32>()
                    .map_err(|_| VersionError::BadEpoch(owned()))?;
                if colon + 1 == text.len() {
                    return Err(VersionError::EmptyAfterEpoch(owned()));
                }
                (epoch, colon + 1)
            }
            None => (0, 0),
        };
        let rest = &text[rest_start..];
        let (upstream, revision) = match rest.rfind('-') {
            Some(hyphen) => {
                if hyphen + 1 == rest.len() {
                    return Err(VersionError::EmptyRevision(owned()));
                }
                (
                    (rest_start, rest_start + hyphen),
                    (rest_start + hyphen + 1, text.len()),
                )
            }
            None => ((rest_start, text.len()), (text.len(), text.len())),
        };
        if upstream.0 == upstream.1 {
            return Err(VersionError::EmptyUpstream(owned()));
        }
        // Versions are short; a longer one cannot come from a real archive.
        let narrow = |(a, b): (usize, usize)| (a as u32, b as u32);
        Ok(Version {
            text: text.into(),
            epoch,
            upstream: narrow(upstream),
            revision: narrow(revision),
        })
    }
}

impl Version {
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn upstream(&self) -> &str {
        &self.text[self.upstream.0 as usize..self.upstream.1 as usize]
    }

    /// The Debian revision, `""` when there is none.
    pub fn revision(&self) -> &str {
        &self.text[self.revision.0 as usize..self.revision.1 as usize]
    }

    pub fn as_str(&self) -> &str {
        &self.text
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
            .then_with(|| verrevcmp(self.upstream().as_bytes(), other.upstream().as_bytes()))
            .then_with(|| verrevcmp(self.revision().as_bytes(), other.revision().as_bytes()))
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
    /// Hashes the form equal versions share: the epoch, and each part with leading zeros
    /// dropped from every digit run (the only way two different texts compare equal).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.epoch.hash(state);
        for part in [self.upstream(), self.revision()] {
            let mut in_digits = false;
            let mut leading = true;
            for byte in part.bytes() {
                if byte.is_ascii_digit() {
                    if !in_digits {
                        in_digits = true;
                        leading = true;
                    }
                    if leading && byte == b'0' {
                        continue;
                    }
                    leading = false;
                } else {
                    in_digits = false;
                }
                state.write_u8(byte);
            }
            state.write_u8(0xff);
        }
    }
}

/// dpkg's character order within non-digit runs: `~` before the end of the string, the end
/// before letters, letters before everything else.
fn order(byte: Option<u8>) -> i32 {
    match byte {
        None => 0,
        Some(b'~') => -1,
        Some(b) if b.is_ascii_digit() => 0,
        Some(b) if b.is_ascii_alphabetic() => i32::from(b),
        Some(b) => i32::from(b) + 256,
    }
}

fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (x, y) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if x != y {
                return x.cmp(&y);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_difference = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_difference == Ordering::Equal {
                first_difference = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_difference != Ordering::Equal {
            return first_difference;
        }
    }
    Ordering::Equal
}

/// A version relation of a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// `<<`
    Lt,
    /// `<=` (also the obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (also the obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Relation {
    /// Whether `candidate` stands in this relation to `wanted` (`candidate >= wanted`, ...).
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
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a version relation (<<, <=, =, >=, >>)")]
pub struct RelationError(pub String);

impl FromStr for Relation {
    type Err = RelationError;

    fn from_str(text: &str) -> Result<Self, RelationError> {
        match text.trim() {
            "<<" => Ok(Relation::Lt),
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
        f.write_str(match self {
            Relation::Lt => "<<",
            Relation::Le => "<=",
            Relation::Eq => "=",
            Relation::Ge => ">=",
            Relation::Gt => ">>",
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    #[test]
    fn parts_and_display() {
        let version = v("1:2.30-1+deb12u1");
        assert_eq!(
            (version.epoch(), version.upstream(), version.revision()),
            (1, "2.30", "1+deb12u1")
        );
        assert_eq!(version.to_string(), "1:2.30-1+deb12u1");
        assert_eq!(v("0:1.0").to_string(), "0:1.0");
        let hyphens = v("1.0-beta-2");
        assert_eq!((hyphens.upstream(), hyphens.revision()), ("1.0-beta", "2"));
    }

    #[test]
    fn ordering_follows_dpkg() {
        let ascending = [
            "1.0~~", "1.0~~a", "1.0~", "1.0~rc1", "1.0", "1.0-1", "1.0-1+b1", "1.0a", "1.0+dfsg",
            "1.0.1", "1.1", "1.10", "2", "10", "1:0.1", "2:0",
        ];
        for pair in ascending.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn equal_texts_that_differ() {
        assert_eq!(v("1.0"), v("1.00"));
        assert_eq!(v("1.0"), v("0:1.0"));
        assert_eq!(v("1.0"), v("1.0-0"));
        assert_eq!(v("007"), v("7"));
        let set: HashSet<Version> = ["1.0", "1.00", "0:1.0-0", "01.000"]
            .iter()
            .map(|t| v(t))
            .collect();
        assert_eq!(set.len(), 1, "hash agrees with equality");
        assert_ne!(v("1.0"), v("1.0."));
    }

    #[test]
    fn long_digit_runs_do_not_overflow() {
        assert!(v("1.123456789012345678901234567890") < v("1.123456789012345678901234567891"));
        assert!(v("99999999999999999999999999") > v("9999999999999999999999999"));
    }

    #[test]
    fn parse_errors() {
        assert_eq!("".parse::<Version>(), Err(VersionError::Empty));
        assert!(matches!(
            "a:1".parse::<Version>(),
            Err(VersionError::BadEpoch(_))
        ));
        assert!(matches!(
            "1:".parse::<Version>(),
            Err(VersionError::EmptyAfterEpoch(_))
        ));
        assert!(matches!(
            "1.0-".parse::<Version>(),
            Err(VersionError::EmptyRevision(_))
        ));
        assert!(matches!(
            "1:-1".parse::<Version>(),
            Err(VersionError::EmptyUpstream(_))
        ));
        assert!(matches!(
            "1 0".parse::<Version>(),
            Err(VersionError::WhiteSpace(_))
        ));
        assert!(
            "abc".parse::<Version>().is_ok(),
            "dpkg only warns about a non-digit start"
        );
    }

    #[test]
    fn relations() {
        let (one, two) = (v("1"), v("2"));
        assert!(Relation::Lt.satisfied_by(&one, &two));
        assert!(Relation::Le.satisfied_by(&one, &one));
        assert!(Relation::Ge.satisfied_by(&two, &one));
        assert!(!Relation::Gt.satisfied_by(&one, &one));
        assert!(Relation::Eq.satisfied_by(&v("1.0"), &v("1.00")));
        assert_eq!("<".parse::<Relation>(), Ok(Relation::Le));
        assert_eq!(">".parse::<Relation>(), Ok(Relation::Ge));
        assert_eq!(">>".parse::<Relation>().unwrap().to_string(), ">>");
        assert!("=>".parse::<Relation>().is_err());
    }

    /// Thousands of real version pairs from the host's package lists, compared by dpkg itself.
    #[test]
    fn agrees_with_dpkg_on_real_versions() {
        let must_work = std::env::var("ENVKIT_MUST_WORK").is_ok_and(|v| v == "1");
        let skip = |reason: &str| {
            assert!(!must_work, "ENVKIT_MUST_WORK=1 but {reason}");
            eprintln!("skipped: {reason}");
        };
        let Ok(available) = std::process::Command::new("apt-cache")
            .arg("dumpavail")
            .output()
        else {
            return skip("apt-cache is not installed");
        };
        let text = String::from_utf8_lossy(&available.stdout);
        let mut versions: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Version: "))
            .collect();
        versions.sort_unstable();
        versions.dedup();
        if versions.len() < 1000 {
            return skip("apt has fewer than 1000 known versions (run apt-get update)");
        }
        // Neighbours in text order share prefixes (the interesting cases), plus a fixed-stride
        // sample across the whole list; all deterministic.
        let mut pairs: Vec<(&str, &str)> = versions
            .windows(2)
            .step_by(versions.len() / 2500 + 1)
            .map(|w| (w[0], w[1]))
            .collect();
        let stride = versions.len() / 1500 + 1;
        pairs.extend(
            (0..versions.len())
                .step_by(stride)
                .map(|i| (versions[i], versions[(i * 7919) % versions.len()])),
        );
        pairs.extend(
            versions
                .iter()
                .filter(|v| v.contains(['~', ':']))
                .take(500)
                .zip(versions.iter().rev())
                .map(|(a, b)| (*a, *b)),
        );
        let mut script = String::new();
        for (a, b) in &pairs {
            script.push_str(&format!(
                "if dpkg --compare-versions '{a}' lt '{b}'; then echo L; elif dpkg --compare-versions '{a}' eq '{b}'; then echo E; else echo G; fi\n"
            ));
        }
        // The script goes through stdin: thousands of lines exceed the argument size limit.
        let child = std::process::Command::new("sh")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            return skip("sh cannot be started");
        };
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(script.as_bytes()).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        if !output.status.success() {
            return skip("dpkg --compare-versions did not run");
        }
        let answers: Vec<&str> = std::str::from_utf8(&output.stdout)
            .unwrap()
            .lines()
            .collect();
        assert_eq!(answers.len(), pairs.len(), "dpkg answered every pair");
        let mut mismatches = Vec::new();
        for ((a, b), answer) in pairs.iter().zip(&answers) {
            let ours = match v(a).cmp(&v(b)) {
                Ordering::Less => "L",
                Ordering::Equal => "E",
                Ordering::Greater => "G",
            };
            if ours != *answer {
                mismatches.push(format!("{a} vs {b}: dpkg {answer}, envkit {ours}"));
            }
        }
        assert!(pairs.len() >= 3000, "only {} pairs", pairs.len());
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    }
}
