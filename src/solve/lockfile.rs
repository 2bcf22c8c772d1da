//! `env.lock`: every package of an environment pinned, as diffable text.
//!
//! Design goals: complete (build needs nothing else: names, versions, pool paths, sizes,
//! SHA-256, which suite, layer, install batch), readable and diffable (one line per package,
//! sorted by layer then name), byte-for-byte deterministic (the same lock renders the same
//! text), and checkable without a solve (`satisfies` compares it with the spec).
//!
//! Format versions:
//! - 1: the first format. `group=` on packages-layer packages came later and is optional:
//!   a lock without it installs all its own packages as one group.

use std::fmt::Write as _;

use kdl::{KdlDocument, KdlNode, KdlValue};

/// The format this envkit writes and reads.
pub const LOCK_VERSION: i128 = 1;

/// Which image layer a package is installed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Essential, Priority required and apt: shared by every environment on the release.
    Base,
    /// The environment's own packages.
    Packages,
}

impl Layer {
    fn as_str(self) -> &'static str {
        match self {
            Layer::Base => "base",
            Layer::Packages => "packages",
        }
    }
}

/// A suite's signed index the lock was resolved from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedIndex {
    pub suite: String,
    /// The signed `Release` file's date.
    pub date: String,
    /// The `Packages` index used, below `dists/SUITE/`.
    pub path: String,
    pub sha256: String,
}

/// The image an environment starts from, pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedImage {
    /// As env.kdl names it (`postgres:16`).
    pub reference: String,
    /// `sha256:` of the image's manifest for the lock's platform (through an image index when
    /// the reference names one): builds and sessions use this, never the tag.
    pub digest: String,
}

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Which suite serves it (the security suite lives on another mirror path).
    pub suite: String,
    /// Pool path relative to the mirror root.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub layer: Layer,
    /// Named in `packages` (rather than pulled in).
    pub requested: bool,
    /// In the Essential closure (Essential packages and what they need): extracted before
    /// dpkg runs when the base layer is built.
    pub essential: bool,
    /// Install batch within the layer: a package's Pre-Depends are configured in an earlier one.
    pub batch: u32,
    /// Packages layer only: which of its image layers (from 1) installs the package. Group n
    /// holds what the n-th requested package adds to the groups below it, so appending a
    /// package to `packages` adds a layer instead of changing one. 0 in the base layer.
    pub group: u32,
}

/// The parsed `env.lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub release: String,
    pub architecture: String,
    pub recommends: bool,
    /// The spec's `packages` the lock was made for, in the spec's order.
    pub requested: Vec<String>,
    pub indexes: Vec<LockedIndex>,
    /// The image the environment starts from (`base image=`); `None` for a Debian release.
    pub image: Option<LockedImage>,
    /// Sorted by layer, then name.
    pub packages: Vec<LockedPackage>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LockFileError {
    #[error("env.lock is not valid KDL: {0}")]
    Syntax(String),
    #[error(
        "env.lock was written by a newer envkit (lock format {found}; this one reads {LOCK_VERSION})"
    )]
    NewerVersion { found: i128 },
    #[error("env.lock line {line}: {message}")]
    Invalid { line: usize, message: String },
}

impl LockFileError {
    pub fn hint(&self) -> &'static str {
        match self {
            LockFileError::NewerVersion { .. } => {
                "update envkit, or run `env lock --update` to rewrite it with this version"
            }
            _ => "env.lock is written by `env lock`; run `env lock --update` to write it anew",
        }
    }
}

/// Why a lock no longer fits its env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsat {
    Release {
        locked: String,
        wanted: String,
    },
    /// The base image changed (or the base changed between an image and a release).
    Image {
        locked: Option<String>,
        wanted: Option<String>,
    },
    Architecture {
        locked: String,
        wanted: String,
    },
    Recommends {
        locked: bool,
    },
    Added(Vec<String>),
    Removed(Vec<String>),
}

impl std::fmt::Display for Unsat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsat::Release { locked, wanted } => {
                write!(f, "the base changed from {locked} to {wanted}")
            }
            Unsat::Image { locked, wanted } => {
                let shown = |image: &Option<String>| match image {
                    Some(reference) => format!("image {reference}"),
                    None => "a Debian release".to_string(),
                };
                write!(
                    f,
                    "the base changed from {} to {}",
                    shown(locked),
                    shown(wanted)
                )
            }
            Unsat::Architecture { locked, wanted } => {
                write!(f, "the lock is for {locked}, this machine is {wanted}")
            }
            Unsat::Recommends { locked } => {
                write!(f, "`recommends` changed from {locked} to {}", !locked)
            }
            Unsat::Added(names) => write!(f, "packages added to env.kdl: {}", names.join(", ")),
            Unsat::Removed(names) => {
                write!(f, "packages removed from env.kdl: {}", names.join(", "))
            }
        }
    }
}

impl Lock {
    /// Whether the lock was made for these inputs; every difference otherwise.
    pub fn satisfies(
        &self,
        image: Option<&str>,
        release: &str,
        architecture: &str,
        packages: &[String],
        recommends: bool,
    ) -> Result<(), Vec<Unsat>> {
        let mut reasons = Vec::new();
        let locked_image = self.image.as_ref().map(|i| i.reference.as_str());
        if locked_image != image {
            reasons.push(Unsat::Image {
                locked: locked_image.map(str::to_string),
                wanted: image.map(str::to_string),
            });
        } else if image.is_none() && self.release != release {
            // An image's release is the image's (its os-release), not env.kdl's.
            reasons.push(Unsat::Release {
                locked: self.release.clone(),
                wanted: release.to_string(),
            });
        }
        if self.architecture != architecture {
            reasons.push(Unsat::Architecture {
                locked: self.architecture.clone(),
                wanted: architecture.to_string(),
            });
        }
        if self.recommends != recommends {
            reasons.push(Unsat::Recommends {
                locked: self.recommends,
            });
        }
        let added: Vec<String> = packages
            .iter()
            .filter(|p| !self.requested.contains(p))
            .cloned()
            .collect();
        let removed: Vec<String> = self
            .requested
            .iter()
            .filter(|p| !packages.contains(p))
            .cloned()
            .collect();
        if !added.is_empty() {
            reasons.push(Unsat::Added(added));
        }
        if !removed.is_empty() {
            reasons.push(Unsat::Removed(removed));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// Packages of one layer.
    pub fn layer(&self, layer: Layer) -> impl Iterator<Item = &LockedPackage> {
        self.packages.iter().filter(move |p| p.layer == layer)
    }

    /// The packages layer's groups, in install order, each with its packages (by name).
    pub fn groups(&self) -> std::collections::BTreeMap<u32, Vec<&LockedPackage>> {
        let mut groups: std::collections::BTreeMap<u32, Vec<&LockedPackage>> =
            std::collections::BTreeMap::new();
        for package in self.layer(Layer::Packages) {
            groups.entry(package.group).or_default().push(package);
        }
        for packages in groups.values_mut() {
            packages.sort_by(|a, b| a.name.cmp(&b.name));
        }
        groups
    }

    /// The lock as text. Deterministic: the same lock always renders the same bytes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "// env.lock: the exact packages of this environment, written by `env lock`.\n",
        );
        out.push_str("// Commit it. To change it, edit env.kdl and run `env lock` (or `env lock --update`).\n");
        let _ = writeln!(out, "version {LOCK_VERSION}");
        match &self.image {
            Some(image) => {
                let _ = write!(
                    out,
                    "image {} digest={}",
                    quote(&image.reference),
                    quote(&image.digest)
                );
                // The image's own Debian release, when packages are solved on top of it.
                if !self.release.is_empty() {
                    let _ = write!(out, " release={}", quote(&self.release));
                }
                let _ = writeln!(
                    out,
                    " architecture={} recommends=#{}",
                    quote(&self.architecture),
                    self.recommends
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "release {} architecture={} recommends=#{}",
                    quote(&self.release),
                    quote(&self.architecture),
                    self.recommends
                );
            }
        }
        if !self.requested.is_empty() {
            let names: Vec<String> = self.requested.iter().map(|n| quote(n)).collect();
            let _ = writeln!(out, "requested {}", names.join(" "));
        }
        for index in &self.indexes {
            let _ = writeln!(
                out,
                "index {} date={} path={} sha256={}",
                quote(&index.suite),
                quote(&index.date),
                quote(&index.path),
                quote(&index.sha256)
            );
        }
        let mut packages: Vec<&LockedPackage> = self.packages.iter().collect();
        packages.sort_by(|a, b| (a.layer, &a.name).cmp(&(b.layer, &b.name)));
        for p in packages {
            let _ = write!(
                out,
                "package {} version={} arch={} suite={} path={} size={} sha256={} layer={} batch={}",
                quote(&p.name),
                quote(&p.version),
                quote(&p.architecture),
                quote(&p.suite),
                quote(&p.path),
                p.size,
                quote(&p.sha256),
                quote(p.layer.as_str()),
                p.batch
            );
            if p.layer == Layer::Packages {
                let _ = write!(out, " group={}", p.group);
            }
            if p.essential {
                out.push_str(" essential=#true");
            }
            if p.requested {
                out.push_str(" requested=#true");
            }
            out.push('\n');
        }
        out
    }

    /// Parses `env.lock` text.
    pub fn parse(text: &str) -> Result<Lock, LockFileError> {
        let document = KdlDocument::parse(text).map_err(|e| {
            let first = e
                .diagnostics
                .first()
                .and_then(|d| d.message.clone())
                .unwrap_or_default();
            LockFileError::Syntax(first)
        })?;
        let line_of = |node: &KdlNode| {
            text[..node.span().offset().min(text.len())]
                .matches('\n')
                .count()
                + 1
        };
        let mut version = None;
        let mut lock = Lock {
            release: String::new(),
            architecture: String::new(),
            recommends: false,
            requested: Vec::new(),
            indexes: Vec::new(),
            image: None,
            packages: Vec::new(),
        };
        for node in document.nodes() {
            let fields = Fields {
                node,
                line: line_of(node),
            };
            match node.name().value() {
                "version" => version = Some(fields.integer_argument()?),
                "release" => {
                    lock.release = fields.string_argument()?;
                    lock.architecture = fields.string("architecture")?;
                    lock.recommends = fields.bool("recommends")?;
                }
                "image" => {
                    lock.image = Some(LockedImage {
                        reference: fields.string_argument()?,
                        digest: fields.string("digest")?,
                    });
                    if fields.property("release").is_some() {
                        lock.release = fields.string("release")?;
                    }
                    lock.architecture = fields.string("architecture")?;
                    lock.recommends = fields.bool("recommends")?;
                }
                "requested" => lock.requested = fields.string_arguments()?,
                "index" => lock.indexes.push(LockedIndex {
                    suite: fields.string_argument()?,
                    date: fields.string("date")?,
                    path: fields.string("path")?,
                    sha256: fields.string("sha256")?,
                }),
                "package" => lock.packages.push(LockedPackage {
                    group: match fields.property("group") {
                        None => 1,
                        Some(_) => u32::try_from(fields.integer("group")?)
                            .ok()
                            .filter(|g| *g >= 1)
                            .ok_or_else(|| fields.invalid("`group` must be 1 or more"))?,
                    },
                    name: fields.string_argument()?,
                    version: fields.string("version")?,
                    architecture: fields.string("arch")?,
                    suite: fields.string("suite")?,
                    path: fields.string("path")?,
                    size: u64::try_from(fields.integer("size")?)
                        .map_err(|_| fields.invalid("`size` is out of range"))?,
                    sha256: fields.string("sha256")?,
                    layer: match fields.string("layer")?.as_str() {
                        "base" => Layer::Base,
                        "packages" => Layer::Packages,
                        other => return Err(fields.invalid(&format!("unknown layer `{other}`"))),
                    },
                    batch: u32::try_from(fields.integer("batch")?)
                        .map_err(|_| fields.invalid("`batch` is out of range"))?,
                    essential: fields.optional_bool("essential")?,
                    requested: fields.optional_bool("requested")?,
                }),
                other => return Err(fields.invalid(&format!("unknown node `{other}`"))),
            }
        }
        match version {
            Some(LOCK_VERSION) => {}
            Some(found) if found > LOCK_VERSION => {
                return Err(LockFileError::NewerVersion { found });
            }
            Some(found) => {
                return Err(LockFileError::Invalid {
                    line: 1,
                    message: format!("unknown lock format {found}"),
                });
            }
            None => {
                return Err(LockFileError::Invalid {
                    line: 1,
                    message: "no `version` node".into(),
                });
            }
        }
        for package in &mut lock.packages {
            if package.layer == Layer::Base {
                package.group = 0;
            }
        }
        if lock.release.is_empty() && lock.image.is_none() {
            return Err(LockFileError::Invalid {
                line: 1,
                message: "no `release` or `image` node".into(),
            });
        }
        Ok(lock)
    }
}

/// Typed access to one node's values, with errors naming the line.
struct Fields<'a> {
    node: &'a KdlNode,
    line: usize,
}

impl Fields<'_> {
    fn invalid(&self, message: &str) -> LockFileError {
        LockFileError::Invalid {
            line: self.line,
            message: format!("`{}`: {message}", self.node.name().value()),
        }
    }

    fn arguments(&self) -> impl Iterator<Item = &KdlValue> {
        self.node
            .entries()
            .iter()
            .filter(|e| e.name().is_none())
            .map(|e| e.value())
    }

    fn string_argument(&self) -> Result<String, LockFileError> {
        self.arguments()
            .next()
            .and_then(KdlValue::as_string)
            .map(str::to_string)
            .ok_or_else(|| self.invalid("expected a string value"))
    }

    fn string_arguments(&self) -> Result<Vec<String>, LockFileError> {
        self.arguments()
            .map(|v| {
                v.as_string()
                    .map(str::to_string)
                    .ok_or_else(|| self.invalid("expected strings"))
            })
            .collect()
    }

    fn integer_argument(&self) -> Result<i128, LockFileError> {
        self.arguments()
            .next()
            .and_then(KdlValue::as_integer)
            .ok_or_else(|| self.invalid("expected an integer"))
    }

    fn property(&self, key: &str) -> Option<&KdlValue> {
        self.node
            .entries()
            .iter()
            .find(|e| e.name().is_some_and(|n| n.value() == key))
            .map(|e| e.value())
    }

    fn string(&self, key: &str) -> Result<String, LockFileError> {
        self.property(key)
            .and_then(KdlValue::as_string)
            .map(str::to_string)
            .ok_or_else(|| self.invalid(&format!("needs `{key}=\"...\"`")))
    }

    fn integer(&self, key: &str) -> Result<i128, LockFileError> {
        self.property(key)
            .and_then(KdlValue::as_integer)
            .ok_or_else(|| self.invalid(&format!("needs `{key}=` as an integer")))
    }

    fn bool(&self, key: &str) -> Result<bool, LockFileError> {
        self.property(key)
            .and_then(KdlValue::as_bool)
            .ok_or_else(|| self.invalid(&format!("needs `{key}=#true` or `#false`")))
    }

    fn optional_bool(&self, key: &str) -> Result<bool, LockFileError> {
        match self.property(key) {
            None => Ok(false),
            Some(value) => value
                .as_bool()
                .ok_or_else(|| self.invalid(&format!("`{key}=` must be #true or #false"))),
        }
    }
}

/// A KDL string literal.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lock {
        let package = |name: &str, layer, requested, batch| LockedPackage {
            name: name.into(),
            version: "1.0-1+b1".into(),
            architecture: "amd64".into(),
            suite: "bookworm".into(),
            path: format!("pool/main/x/{name}/{name}_1.0-1+b1_amd64.deb"),
            size: 1234,
            sha256: "ab".repeat(32),
            layer,
            requested,
            essential: layer == Layer::Base,
            batch,
            group: u32::from(layer == Layer::Packages),
        };
        Lock {
            release: "bookworm".into(),
            architecture: "amd64".into(),
            recommends: false,
            requested: vec!["python3".into(), "git".into()],
            indexes: vec![LockedIndex {
                suite: "bookworm".into(),
                date: "Sat, 11 Jul 2026 10:16:37 UTC".into(),
                path: "main/binary-amd64/Packages.xz".into(),
                sha256: "cd".repeat(32),
            }],
            image: None,
            packages: vec![
                package("python3", Layer::Packages, true, 2),
                package("bash", Layer::Base, false, 0),
                package("git", Layer::Packages, true, 0),
            ],
        }
    }

    #[test]
    fn an_image_lock_round_trips() {
        let lock = Lock {
            release: String::new(),
            architecture: "amd64".into(),
            recommends: false,
            requested: vec![],
            indexes: vec![],
            image: Some(LockedImage {
                reference: "127.0.0.1:5000/app:v1".into(),
                digest: format!("sha256:{}", "0".repeat(64)),
            }),
            packages: vec![],
        };
        let text = lock.render();
        assert!(
            text.contains("image \"127.0.0.1:5000/app:v1\" digest=\"sha256:"),
            "{text}"
        );
        assert_eq!(Lock::parse(&text).unwrap(), lock);
        assert!(
            lock.satisfies(Some("127.0.0.1:5000/app:v1"), "", "amd64", &[], false)
                .is_ok()
        );
        let moved = lock
            .satisfies(None, "bookworm", "amd64", &[], false)
            .unwrap_err();
        assert_eq!(
            moved[0].to_string(),
            "the base changed from image 127.0.0.1:5000/app:v1 to a Debian release"
        );
    }

    #[test]
    fn an_image_lock_with_packages_keeps_the_images_release() {
        let lock = Lock {
            image: Some(LockedImage {
                reference: "127.0.0.1:5000/debian:12".into(),
                digest: format!("sha256:{}", "1".repeat(64)),
            }),
            requested: vec!["git".into()],
            ..sample()
        };
        let lock = Lock {
            packages: lock
                .packages
                .iter()
                .filter(|p| p.layer == Layer::Packages)
                .cloned()
                .collect(),
            ..lock
        };
        let text = lock.render();
        assert!(text.contains("release=\"bookworm\""), "{text}");
        let mut parsed = Lock::parse(&text).unwrap();
        parsed.packages.sort_by(|a, b| b.name.cmp(&a.name));
        assert_eq!(parsed, lock);
        // env.kdl names no release for an image: the image's own is not a change.
        assert!(
            lock.satisfies(
                Some("127.0.0.1:5000/debian:12"),
                "",
                "amd64",
                &["git".into()],
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn renders_sorted_and_parses_back() {
        let lock = sample();
        let text = lock.render();
        let names: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("package"))
            .map(|l| l.split('"').nth(1).unwrap())
            .collect();
        assert_eq!(
            names,
            ["bash", "git", "python3"],
            "base first, then by name"
        );
        let parsed = Lock::parse(&text).unwrap();
        assert_eq!(parsed.render(), text, "byte-identical re-rendering");
        assert_eq!(parsed.packages.len(), 3);
        assert!(
            parsed
                .packages
                .iter()
                .any(|p| p.name == "python3" && p.requested && p.batch == 2 && p.group == 1)
        );
    }

    #[test]
    fn groups_are_kept_and_older_locks_are_one_group() {
        let mut lock = sample();
        for package in &mut lock.packages {
            if package.name == "git" {
                package.group = 2;
            }
        }
        let text = lock.render();
        assert!(
            text.contains("layer=\"packages\" batch=0 group=2"),
            "{text}"
        );
        let parsed = Lock::parse(&text).unwrap();
        let groups: Vec<(u32, Vec<&str>)> = parsed
            .groups()
            .into_iter()
            .map(|(g, p)| (g, p.iter().map(|p| p.name.as_str()).collect()))
            .collect();
        assert_eq!(groups, [(1, vec!["python3"]), (2, vec!["git"])]);

        let without = text.replace(" group=2", "").replace(" group=1", "");
        let parsed = Lock::parse(&without).unwrap();
        assert_eq!(parsed.groups().len(), 1, "a lock from before groups");
        assert_eq!(
            parsed
                .packages
                .iter()
                .find(|p| p.name == "bash")
                .unwrap()
                .group,
            0
        );

        let error = Lock::parse(&text.replace("group=2", "group=0")).unwrap_err();
        assert!(
            error.to_string().contains("`group` must be 1 or more"),
            "{error}"
        );
    }

    #[test]
    fn newer_formats_are_refused_with_advice() {
        let text = sample().render().replace("version 1", "version 2");
        let error = Lock::parse(&text).unwrap_err();
        assert_eq!(error, LockFileError::NewerVersion { found: 2 });
        assert!(error.hint().contains("update envkit"));
    }

    #[test]
    fn damaged_locks_name_the_line() {
        let text = sample().render().replace(" size=1234", "");
        let error = Lock::parse(&text).unwrap_err();
        assert!(
            matches!(&error, LockFileError::Invalid { line: 7, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("needs `size=`"), "{error}");
        assert!(matches!(
            Lock::parse("package \"x"),
            Err(LockFileError::Syntax(_))
        ));
    }

    #[test]
    fn satisfies_explains_every_difference() {
        let lock = sample();
        assert_eq!(
            lock.satisfies(
                None,
                "bookworm",
                "amd64",
                &["git".into(), "python3".into()],
                false
            ),
            Ok(()),
            "order does not matter"
        );
        let reasons = lock
            .satisfies(
                None,
                "trixie",
                "amd64",
                &["python3".into(), "curl".into()],
                true,
            )
            .unwrap_err();
        let text: Vec<String> = reasons.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "the base changed from bookworm to trixie",
                "`recommends` changed from false to true",
                "packages added to env.kdl: curl",
                "packages removed from env.kdl: git"
            ]
        );
    }
}
