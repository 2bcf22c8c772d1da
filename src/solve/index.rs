//! The package index: every candidate package of one release and architecture, compact and
//! ready for the resolver.
//!
//! Names are interned to `NameId`s (virtual names too), versions are parsed once, and only the
//! fields resolution and download need are kept. Like apt with default pins, one candidate per
//! name survives: the highest version across the release's suites (`bookworm`,
//! `bookworm-updates`, `bookworm-security`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::lazy::LazyPackages;
use crate::debian::deb822;
use crate::debian::relationship;
use crate::debian::version::{Relation, Version};

/// An interned package name (real or virtual).
pub type NameId = u32;
/// A candidate package's position in the index.
pub type PackageId = u32;

/// Priority, in apt's order of preference among providers of a virtual package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    Required,
    Important,
    Standard,
    Optional,
    Extra,
    Unknown,
}

impl Priority {
    fn parse(text: &str) -> Self {
        match text.trim() {
            "required" => Priority::Required,
            "important" => Priority::Important,
            "standard" => Priority::Standard,
            "optional" => Priority::Optional,
            "extra" => Priority::Extra,
            _ => Priority::Unknown,
        }
    }
}

/// `Multi-Arch:` of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MultiArch {
    #[default]
    No,
    Same,
    Foreign,
    Allowed,
}

/// One alternative of a relation: `name[:any] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub name: NameId,
    pub constraint: Option<(Relation, Version)>,
}

/// `a | b | c`: satisfied by any one alternative.
pub type Group = Vec<Dependency>;

/// A candidate package.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Package {
    pub name: NameId,
    pub version: Version,
    pub architecture: String,
    pub multi_arch: MultiArch,
    pub essential: bool,
    pub priority: Priority,
    pub pre_depends: Vec<Group>,
    pub depends: Vec<Group>,
    pub recommends: Vec<Group>,
    pub conflicts: Vec<Dependency>,
    pub breaks: Vec<Dependency>,
    /// Virtual names this package provides, with the version it provides them at, if any.
    pub provides: Vec<(NameId, Option<Version>)>,
    /// Pool path relative to the mirror root.
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    /// Which suite of the release it comes from (index into `Index::suites`).
    pub suite: usize,
}

/// What the base set is chosen by, kept decoded for every package so choosing it does not
/// decode the whole index.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Head {
    pub name: NameId,
    pub essential: bool,
    pub priority: Priority,
}

impl Head {
    fn of(package: &Package) -> Self {
        Head {
            name: package.name,
            essential: package.essential,
            priority: package.priority,
        }
    }
}

/// All candidates of one release for one architecture.
///
/// Saved into the cache (see `repository`), so a warm `env lock` skips decompressing and
/// parsing tens of megabytes of `Packages`; loading it back decodes packages lazily.
#[derive(Debug, Clone, Default)]
pub struct Index {
    names: Vec<String>,
    /// For interning while an index is built; empty in a loaded index, which looks names up
    /// in `sorted` instead (building a map of 100,000 names would cost more than a solve).
    ids: HashMap<String, NameId>,
    /// Name ids in name order, for binary search in a loaded index.
    sorted: Vec<NameId>,
    packages: LazyPackages<Package>,
    heads: Vec<Head>,
    /// NameId -> the real package of that name, if any.
    by_name: Vec<Option<PackageId>>,
    /// NameId -> packages providing it (not counting the package of that name itself).
    providers: Vec<Vec<PackageId>>,
    /// Suite names, in the order they were added.
    pub suites: Vec<String>,
    native_architecture: String,
    /// Lower versions seen in other suites, kept so a lock can stay on them (see `pin`).
    superseded: Vec<Package>,
}

/// The suite of the packages an image has installed (see [`Index::add_installed`]).
pub const INSTALLED_SUITE: &str = "installed";

/// Marks (and versions) the cache format: a new layout gets a new magic.
const CACHE_MAGIC: &[u8] = b"envkit-index-v1\n";

/// Everything but the packages themselves, decoded eagerly on load.
#[derive(Serialize, Deserialize)]
struct Header {
    names: Vec<String>,
    sorted: Vec<NameId>,
    heads: Vec<Head>,
    by_name: Vec<Option<PackageId>>,
    providers: Vec<Vec<PackageId>>,
    suites: Vec<String>,
    native_architecture: String,
    superseded: Vec<Package>,
    offsets: Vec<u32>,
}

impl Index {
    /// An empty index for `architecture` (e.g. `amd64`); `all` packages are always included.
    pub fn new(architecture: &str) -> Self {
        Index {
            native_architecture: architecture.to_string(),
            ..Index::default()
        }
    }

    /// The index as bytes for the cache: a checksummed header with everything but the
    /// packages, then each package encoded on its own.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (packages, offsets) = self.packages.encode();
        let mut sorted: Vec<NameId> = (0..self.names.len() as NameId).collect();
        sorted.sort_unstable_by(|a, b| self.names[*a as usize].cmp(&self.names[*b as usize]));
        let header = Header {
            names: self.names.clone(),
            sorted,
            heads: self.heads.clone(),
            by_name: self.by_name.clone(),
            providers: self.providers.clone(),
            suites: self.suites.clone(),
            native_architecture: self.native_architecture.clone(),
            superseded: self.superseded.clone(),
            offsets,
        };
        // Plain data of strings, numbers and vectors: serialising cannot fail.
        let header = postcard::to_stdvec(&header).unwrap_or_default();
        let mut body = Vec::with_capacity(8 + header.len() + packages.len());
        body.extend((header.len() as u64).to_le_bytes());
        body.extend(header);
        body.extend(packages);
        let mut out = Vec::with_capacity(CACHE_MAGIC.len() + 32 + body.len());
        out.extend(CACHE_MAGIC);
        out.extend(blake3::hash(&body).as_bytes());
        out.extend(body);
        out
    }

    /// An index read back from [`Index::to_bytes`]; `None` when the bytes are not one (a cache
    /// written by another envkit version, or damaged).
    pub fn from_bytes(bytes: &[u8]) -> Option<Index> {
        let rest = bytes.strip_prefix(CACHE_MAGIC)?;
        let (checksum, body) = rest.split_at_checked(32)?;
        if blake3::hash(body).as_bytes() != checksum {
            return None;
        }
        let (length, body) = body.split_at_checked(8)?;
        let length = usize::try_from(u64::from_le_bytes(length.try_into().ok()?)).ok()?;
        let (header, packages) = body.split_at_checked(length)?;
        let header: Header = postcard::from_bytes(header).ok()?;
        let names = header.names.len();
        let packages = LazyPackages::from_encoded(packages.into(), header.offsets)?;
        let consistent = header.by_name.len() == names
            && header.providers.len() == names
            && packages.len() == header.heads.len()
            && header.heads.iter().all(|h| (h.name as usize) < names)
            && header
                .by_name
                .iter()
                .flatten()
                .chain(header.providers.iter().flatten())
                .all(|p| (*p as usize) < packages.len());
        if !consistent {
            return None;
        }
        if header.sorted.len() != names || header.sorted.iter().any(|id| (*id as usize) >= names) {
            return None;
        }
        Some(Index {
            names: header.names,
            ids: HashMap::new(),
            sorted: header.sorted,
            packages,
            heads: header.heads,
            by_name: header.by_name,
            providers: header.providers,
            suites: header.suites,
            native_architecture: header.native_architecture,
            superseded: header.superseded,
        })
    }

    pub fn architecture(&self) -> &str {
        &self.native_architecture
    }

    /// Interns `name`.
    pub fn intern(&mut self, name: &str) -> NameId {
        if self.ids.is_empty() && !self.names.is_empty() {
            // A loaded index grows again: switch back to the map.
            self.ids = self
                .names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i as NameId))
                .collect();
            self.sorted.clear();
        }
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = NameId::try_from(self.names.len()).unwrap_or(NameId::MAX);
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        self.by_name.push(None);
        self.providers.push(Vec::new());
        id
    }

    pub fn name_id(&self, name: &str) -> Option<NameId> {
        if !self.ids.is_empty() || self.sorted.is_empty() {
            return self.ids.get(name).copied();
        }
        self.sorted
            .binary_search_by(|id| self.names[*id as usize].as_str().cmp(name))
            .ok()
            .map(|position| self.sorted[position])
    }

    pub fn name(&self, id: NameId) -> &str {
        self.names.get(id as usize).map_or("?", String::as_str)
    }

    /// Every name known to the index, real or virtual.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    pub fn package(&self, id: PackageId) -> &Package {
        self.packages.get(id as usize)
    }

    /// What every package's base-set membership depends on, without decoding packages.
    pub fn heads(&self) -> impl Iterator<Item = (PackageId, Head)> + '_ {
        self.heads
            .iter()
            .enumerate()
            .map(|(i, h)| (i as PackageId, *h))
    }

    pub fn len(&self) -> usize {
        self.packages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packages.len() == 0
    }

    /// The real package called `name`.
    pub fn by_name(&self, name: NameId) -> Option<PackageId> {
        self.by_name.get(name as usize).copied().flatten()
    }

    /// Packages that provide `name` through `Provides:`.
    pub fn providers(&self, name: NameId) -> &[PackageId] {
        self.providers.get(name as usize).map_or(&[], Vec::as_slice)
    }

    /// Adds a suite's `Packages` text. Keeps, per name, the highest version seen so far.
    pub fn add_packages(&mut self, suite: &str, text: &str) {
        let suite_index = match self.suites.iter().position(|s| s == suite) {
            Some(i) => i,
            None => {
                self.suites.push(suite.to_string());
                self.suites.len() - 1
            }
        };
        for stanza in deb822::stanzas(text) {
            if let Some(package) = self.read_stanza(&stanza, suite_index) {
                self.insert(package);
            }
        }
    }

    /// Makes the packages a dpkg `status` file says are installed (an image's
    /// `/var/lib/dpkg/status`) the candidates of their names, at the versions installed,
    /// whatever the archive has: they are what the packages above them are solved against, and
    /// what dpkg there will find. Returns them (a foreign-architecture package is left out:
    /// the index holds one architecture). They are in the suite [`INSTALLED_SUITE`].
    pub fn add_installed(&mut self, status: &str) -> Vec<PackageId> {
        let suite = match self.suites.iter().position(|s| s == INSTALLED_SUITE) {
            Some(i) => i,
            None => {
                self.suites.push(INSTALLED_SUITE.to_string());
                self.suites.len() - 1
            }
        };
        let mut installed = Vec::new();
        for stanza in deb822::stanzas(status) {
            // `install ok installed`, `hold ok installed`: the last word is the state.
            let state = stanza
                .get("Status")
                .and_then(|s| s.split_whitespace().last());
            if state != Some("installed") {
                continue;
            }
            let Some(package) = self.read_package(&stanza, suite, String::new(), String::new())
            else {
                continue;
            };
            let slot = package.name as usize;
            let id = match self.by_name[slot] {
                Some(existing) if self.package(existing).version == package.version => existing,
                Some(existing) => {
                    let previous = self.replace(existing, package);
                    self.superseded.push(previous);
                    existing
                }
                None => self.push_new(package),
            };
            installed.push(id);
        }
        installed
    }

    fn insert(&mut self, package: Package) {
        let slot = package.name as usize;
        match self.by_name[slot] {
            Some(existing) if self.package(existing).version >= package.version => {
                self.superseded.push(package);
            }
            Some(existing) => {
                let previous = self.replace(existing, package);
                self.superseded.push(previous);
            }
            None => {
                self.push_new(package);
            }
        }
    }

    /// Adds the first package of its name.
    fn push_new(&mut self, package: Package) -> PackageId {
        let slot = package.name as usize;
        let id = PackageId::try_from(self.packages.len()).unwrap_or(PackageId::MAX);
        self.heads.push(Head::of(&package));
        self.packages.push(package);
        self.by_name[slot] = Some(id);
        self.register_provides(id);
        id
    }

    /// Puts `package` in `id`'s place and returns what was there.
    fn replace(&mut self, id: PackageId, package: Package) -> Package {
        self.unregister_provides(id);
        self.heads[id as usize] = Head::of(&package);
        let previous = self.packages.replace(id as usize, package);
        self.register_provides(id);
        previous
    }

    /// Makes `version` of `name` the candidate instead of the highest one, when some suite
    /// still has it. Returns whether the candidate is now that version.
    pub fn pin(&mut self, name: &str, version: &str) -> bool {
        let Some(id) = self.name_id(name).and_then(|n| self.by_name(n)) else {
            return false;
        };
        if self.package(id).version.to_string() == version {
            return true;
        }
        let Some(position) = self
            .superseded
            .iter()
            .position(|p| p.name == self.package(id).name && p.version.to_string() == version)
        else {
            return false;
        };
        let pinned = self.superseded.swap_remove(position);
        let previous = self.replace(id, pinned);
        self.superseded.push(previous);
        true
    }

    fn register_provides(&mut self, id: PackageId) {
        let provided: Vec<NameId> = self.package(id).provides.iter().map(|(n, _)| *n).collect();
        for name in provided {
            let list = &mut self.providers[name as usize];
            if !list.contains(&id) {
                list.push(id);
            }
        }
    }

    fn unregister_provides(&mut self, id: PackageId) {
        let provided: Vec<NameId> = self.package(id).provides.iter().map(|(n, _)| *n).collect();
        for name in provided {
            self.providers[name as usize].retain(|p| *p != id);
        }
    }

    /// A stanza as a candidate, or `None` when it is for another architecture or malformed
    /// (an archive index is trusted for content, not assumed perfect in form).
    fn read_stanza(&mut self, stanza: &deb822::Stanza<'_>, suite: usize) -> Option<Package> {
        let filename = stanza.get("Filename")?.trim().to_string();
        let sha256 = stanza.get("SHA256")?.trim().to_string();
        self.read_package(stanza, suite, filename, sha256)
    }

    /// A stanza's package and relations; where its file is comes from the caller.
    fn read_package(
        &mut self,
        stanza: &deb822::Stanza<'_>,
        suite: usize,
        filename: String,
        sha256: String,
    ) -> Option<Package> {
        let architecture = stanza.get("Architecture")?.trim();
        if architecture != "all" && architecture != self.native_architecture {
            return None;
        }
        let name = stanza.get("Package")?.trim();
        let version: Version = stanza.get("Version")?.trim().parse().ok()?;
        let size = stanza
            .get("Size")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let multi_arch = match stanza.get("Multi-Arch").map(str::trim) {
            Some("same") => MultiArch::Same,
            Some("foreign") => MultiArch::Foreign,
            Some("allowed") => MultiArch::Allowed,
            _ => MultiArch::No,
        };
        let name = self.intern(name);
        let groups = |index: &mut Index, field: &str| {
            stanza
                .get(field)
                .map(|text| index.parse_groups(text))
                .unwrap_or_default()
        };
        let pre_depends = groups(self, "Pre-Depends");
        let depends = groups(self, "Depends");
        let recommends = groups(self, "Recommends");
        let flat = |index: &mut Index, field: &str| -> Vec<Dependency> {
            groups(index, field).into_iter().flatten().collect()
        };
        let conflicts = flat(self, "Conflicts");
        let breaks = flat(self, "Breaks");
        let provides = flat(self, "Provides")
            .into_iter()
            .map(|dependency| {
                let version = match dependency.constraint {
                    Some((Relation::Eq, version)) => Some(version),
                    _ => None,
                };
                (dependency.name, version)
            })
            .collect();
        Some(Package {
            name,
            version,
            architecture: architecture.to_string(),
            multi_arch,
            essential: stanza.get("Essential").is_some_and(|e| e.trim() == "yes"),
            priority: stanza
                .get("Priority")
                .map_or(Priority::Unknown, Priority::parse),
            pre_depends,
            depends,
            recommends,
            conflicts,
            breaks,
            provides,
            filename,
            size,
            sha256,
            suite,
        })
    }

    /// Parses `a (>= 1) | b:any, c [amd64] <!nocheck>` into groups of alternatives, interning
    /// their names. Malformed alternatives are dropped; a group left empty is dropped too.
    /// `:any` and `:native` are met by the native package: the index holds one architecture.
    pub fn parse_groups(&mut self, text: &str) -> Vec<Group> {
        let mut groups = Vec::new();
        for alternatives in relationship::groups(text) {
            let group: Group = alternatives
                .map(|alternative| Dependency {
                    name: self.intern(alternative.name),
                    constraint: alternative.constraint,
                })
                .collect();
            if !group.is_empty() {
                groups.push(group);
            }
        }
        groups
    }

    /// Whether `package` satisfies `dependency` directly or through one of its `Provides`.
    pub fn satisfies(&self, package: PackageId, dependency: &Dependency) -> bool {
        let candidate = self.package(package);
        let version_ok = |version: &Version| match &dependency.constraint {
            None => true,
            Some((relation, wanted)) => relation.satisfied_by(version, wanted),
        };
        if candidate.name == dependency.name && version_ok(&candidate.version) {
            return true;
        }
        candidate.provides.iter().any(|(name, provided)| {
            *name == dependency.name
                && match (&dependency.constraint, provided) {
                    (None, _) => true,
                    (Some(_), Some(version)) => version_ok(version),
                    // An unversioned Provides never satisfies a versioned dependency.
                    (Some(_), None) => false,
                }
        })
    }

    /// A dependency as Debian writes it: `python3 (>= 3.11)`.
    pub fn describe(&self, dependency: &Dependency) -> String {
        match &dependency.constraint {
            None => self.name(dependency.name).to_string(),
            Some((relation, version)) => {
                format!("{} ({relation} {version})", self.name(dependency.name))
            }
        }
    }

    /// `a | b (>= 1)`.
    pub fn describe_group(&self, group: &Group) -> String {
        group
            .iter()
            .map(|d| self.describe(d))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGES: &str = "\
Package: libfoo1
Version: 1.0-1
Architecture: amd64
Priority: optional
Multi-Arch: same
Depends: libc6 (>= 2.36), zlib1g | libz-alt [amd64]
Provides: libfoo (= 1.0), foo-abi
Filename: pool/main/f/foo/libfoo1_1.0-1_amd64.deb
Size: 1234
SHA256: aaaa

Package: libfoo1
Version: 1.2-1
Architecture: amd64
Filename: pool/main/f/foo/libfoo1_1.2-1_amd64.deb
Size: 1300
SHA256: bbbb

Package: armonly
Version: 1
Architecture: arm64
Filename: pool/a.deb
SHA256: cccc

Package: tool
Version: 2:0.5~rc1
Architecture: all
Pre-Depends: python3:any (>= 3.11~)
Filename: pool/t.deb
SHA256: dddd
";

    /// The fixture without the newer libfoo1, so the older one (with its Provides) is the candidate.
    fn first_version_only() -> &'static str {
        PACKAGES
            .split("\n\nPackage: libfoo1\nVersion: 1.2")
            .next()
            .unwrap()
    }

    #[test]
    fn keeps_the_highest_version_of_each_name_for_the_architecture() {
        let mut index = Index::new("amd64");
        index.add_packages("bookworm", PACKAGES);
        assert_eq!(index.len(), 2, "arm64 left out, libfoo1 once");
        let foo = index.by_name(index.name_id("libfoo1").unwrap()).unwrap();
        assert_eq!(index.package(foo).version.to_string(), "1.2-1");
        assert!(
            index
                .providers(index.name_id("foo-abi").unwrap())
                .is_empty(),
            "the newer version no longer provides it"
        );
    }

    #[test]
    fn later_suites_win_only_with_higher_versions() {
        let mut index = Index::new("amd64");
        index.add_packages("bookworm", PACKAGES);
        index.add_packages("bookworm-security", "Package: libfoo1\nVersion: 1.2-1+deb12u1\nArchitecture: amd64\nFilename: pool/updates/x.deb\nSHA256: eeee\n");
        let foo = index.package(index.by_name(index.name_id("libfoo1").unwrap()).unwrap());
        assert_eq!(foo.version.to_string(), "1.2-1+deb12u1");
        assert_eq!(index.suites[foo.suite], "bookworm-security");
    }

    #[test]
    fn round_trips_through_bytes() {
        let mut index = Index::new("amd64");
        index.add_packages("bookworm", PACKAGES);
        let back = Index::from_bytes(&index.to_bytes()).unwrap();
        assert_eq!(back.len(), index.len());
        let id = back.name_id("libfoo1").unwrap();
        assert_eq!(
            back.package(back.by_name(id).unwrap()).version.to_string(),
            "1.2-1"
        );
        assert!(Index::from_bytes(b"garbage").is_none());
    }

    #[test]
    fn pins_keep_a_lower_version_that_a_suite_still_has() {
        let mut index = Index::new("amd64");
        index.add_packages("bookworm", PACKAGES);
        assert!(index.pin("libfoo1", "1.0-1"));
        let foo = index.by_name(index.name_id("libfoo1").unwrap()).unwrap();
        assert_eq!(index.package(foo).version.to_string(), "1.0-1");
        assert_eq!(
            index.providers(index.name_id("foo-abi").unwrap()),
            [foo],
            "its provides come back too"
        );
        assert!(index.pin("libfoo1", "1.2-1"), "and back up");
        assert!(!index.pin("libfoo1", "0.9"), "a version no suite has");
        assert!(!index.pin("nothing", "1"));
    }

    #[test]
    fn relations_are_parsed_with_alternatives_and_qualifiers() {
        let mut index = Index::new("amd64");
        index.add_packages("bookworm", first_version_only());
        let foo = index
            .package(index.by_name(index.name_id("libfoo1").unwrap()).unwrap())
            .clone();
        assert_eq!(index.describe_group(&foo.depends[0]), "libc6 (>= 2.36)");
        assert_eq!(index.describe_group(&foo.depends[1]), "zlib1g | libz-alt");
        assert_eq!(foo.multi_arch, MultiArch::Same);
        assert_eq!(foo.provides.len(), 2);
        assert_eq!(
            foo.provides[0]
                .1
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("1.0")
        );
        let mut index = Index::new("amd64");
        index.add_packages("bookworm", PACKAGES);
        let tool = index
            .package(index.by_name(index.name_id("tool").unwrap()).unwrap())
            .clone();
        assert_eq!(
            index.describe_group(&tool.pre_depends[0]),
            "python3 (>= 3.11~)"
        );
    }

    #[test]
    fn provides_satisfy_only_when_versions_allow() {
        let mut index = Index::new("amd64");
        index.add_packages("bookworm", first_version_only());
        let foo = index.by_name(index.name_id("libfoo1").unwrap()).unwrap();
        let groups = index.parse_groups("libfoo (>= 1.0), libfoo (>= 2), foo-abi, foo-abi (>= 1)");
        let results: Vec<bool> = groups.iter().map(|g| index.satisfies(foo, &g[0])).collect();
        assert_eq!(results, [true, false, true, false]);
    }
}
