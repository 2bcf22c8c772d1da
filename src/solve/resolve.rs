//! Choosing the packages of an environment the way apt does.
//!
//! Why not resolvo or pubgrub: both are complete solvers that find *a* solution (pubgrub for
//! semver-style ranges, resolvo a CDCL SAT solver); neither knows apt's preferences, and the
//! lock must equal what `apt-get install --no-install-recommends` picks (same names, same
//! versions). apt itself is greedy with fixed preferences, and with one candidate per name (the
//! highest version, as with default pins) a greedy walk reproduces it exactly; measured against
//! apt in `../shared/notes/debian-rootfs.md`. The rules, in apt's order:
//!
//! 1. Every requested package is marked first, then each is resolved depth first in the order
//!    given; a dependency met by one requested later is not installed twice.
//! 2. A dependency group already met by an installed or already chosen package (directly or
//!    through `Provides`, versioned ones included) does nothing.
//! 3. Otherwise the first alternative a candidate satisfies wins; a virtual name goes to its
//!    providers, sorted by priority (required first) then name.
//! 4. `usrmerge` is never chosen (it converts the tree at configure time; `usr-is-merged` is the
//!    alternative debootstrap's minbase uses).
//! 5. A candidate that conflicts with (or breaks) a chosen or installed package, or is
//!    conflicted by one, is skipped in favour of the next alternative.
//!
//! Failures are explained as a chain from the user's request to the unmet dependency.

use std::collections::{HashMap, HashSet};

use super::index::{Dependency, Group, Index, NameId, PackageId};

/// Never chosen; see rule 4.
const NEVER_CHOSEN: &[&str] = &["usrmerge"];

/// Why the requested packages cannot be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("package `{name}` is not in {release}{}", suggestion_text(suggestions))]
    UnknownPackage {
        name: String,
        release: String,
        suggestions: Vec<String>,
    },
    #[error("`{name}` is a virtual package provided by {}; name the one you want in `packages`", providers.join(", "))]
    VirtualChoice {
        name: String,
        providers: Vec<String>,
    },
    #[error("{requirement} is required by {}, but {reason}", chain.join(", which is required by "))]
    Unsatisfiable {
        requirement: String,
        chain: Vec<String>,
        reason: String,
    },
    #[error("{first} and {second} cannot be installed together: {reason}")]
    Conflict {
        first: String,
        second: String,
        reason: String,
    },
}

fn suggestion_text(suggestions: &[String]) -> String {
    match suggestions {
        [] => String::new(),
        [one] => format!("; did you mean `{one}`?"),
        many => format!(
            "; did you mean one of: {}?",
            many.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What to resolve.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Release name, for messages.
    pub release: &'a str,
    /// Packages already present (the base layer when resolving the packages layer).
    pub installed: &'a [PackageId],
    /// Requested names, in the order written.
    pub names: &'a [String],
    /// Also follow Recommends.
    pub recommends: bool,
    /// What to call the requester of `names` in explanations.
    pub requested_by: &'a str,
}

/// The chosen packages (not counting the installed ones) and which of them were asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Dependencies before dependents.
    pub packages: Vec<PackageId>,
    pub requested: Vec<PackageId>,
    /// For each chosen package, the chosen packages that met its relations, in field order:
    /// the providers this resolution settled on (present packages left out).
    pub met_by: HashMap<PackageId, MetBy>,
}

/// The chosen packages that met one package's relations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetBy {
    pub pre_depends: Vec<PackageId>,
    pub depends: Vec<PackageId>,
    /// Only when Recommends are followed.
    pub recommends: Vec<PackageId>,
}

/// The Essential closure: what a root needs before its own dpkg can run (extracted first).
pub fn resolve_essential(index: &Index, release: &str) -> Result<Resolution, ResolveError> {
    let mut names: Vec<String> = index
        .heads()
        .filter(|(_, h)| h.essential)
        .map(|(_, h)| index.name(h.name).to_string())
        .collect();
    names.sort_unstable();
    let request = Request {
        release,
        installed: &[],
        names: &names,
        recommends: false,
        requested_by: "the essential set",
    };
    resolve(index, &request)
}

/// The base set: Essential and Priority required packages plus apt, as debootstrap's minbase.
pub fn resolve_base(index: &Index, release: &str) -> Result<Resolution, ResolveError> {
    let mut essential: Vec<&str> = Vec::new();
    let mut required: Vec<&str> = Vec::new();
    for (_, head) in index.heads() {
        if head.essential {
            essential.push(index.name(head.name));
        } else if head.priority == super::index::Priority::Required {
            required.push(index.name(head.name));
        }
    }
    essential.sort_unstable();
    required.sort_unstable();
    let mut names: Vec<String> = essential
        .iter()
        .chain(&required)
        .map(|s| s.to_string())
        .collect();
    if index
        .name_id("apt")
        .and_then(|id| index.by_name(id))
        .is_some()
    {
        names.push("apt".to_string());
    }
    let request = Request {
        release,
        installed: &[],
        names: &names,
        recommends: false,
        requested_by: "the base system",
    };
    resolve(index, &request)
}

/// Resolves `request` against `index`.
pub fn resolve(index: &Index, request: &Request<'_>) -> Result<Resolution, ResolveError> {
    let mut walk = Walk {
        index,
        request,
        installed: request.installed.iter().copied().collect(),
        chosen: HashSet::new(),
        present: Present::of(index, request.installed),
        done: HashSet::new(),
        order: Vec::new(),
        parent: HashMap::new(),
        met_by: HashMap::new(),
    };
    let mut requested = Vec::new();
    for name in request.names {
        let id = walk.requested_package(name)?;
        if !requested.contains(&id) {
            requested.push(id);
        }
    }
    // Rule 1: mark them all before resolving any.
    for &id in &requested {
        walk.choose(id);
    }
    for &id in &requested {
        if !walk.installed.contains(&id) {
            walk.visit(id)?;
        }
    }
    walk.check_conflicts()?;
    Ok(Resolution {
        packages: walk.order,
        requested,
        met_by: walk.met_by,
    })
}

struct Walk<'a> {
    index: &'a Index,
    request: &'a Request<'a>,
    installed: HashSet<PackageId>,
    chosen: HashSet<PackageId>,
    /// The installed and chosen packages, indexed for conflict checks.
    present: Present,
    done: HashSet<PackageId>,
    order: Vec<PackageId>,
    /// Who pulled each package in; requested packages have none.
    parent: HashMap<PackageId, PackageId>,
    met_by: HashMap<PackageId, MetBy>,
}

impl Walk<'_> {
    fn choose(&mut self, id: PackageId) {
        if self.chosen.insert(id) {
            self.present.add(self.index, id);
        }
    }

    /// The package a requested name stands for: the real one, or the only provider.
    fn requested_package(&self, name: &str) -> Result<PackageId, ResolveError> {
        let index = self.index;
        let unknown = || ResolveError::UnknownPackage {
            name: name.to_string(),
            release: self.request.release.to_string(),
            suggestions: near_names(index, name),
        };
        let id = index.name_id(name).ok_or_else(unknown)?;
        if let Some(package) = index.by_name(id) {
            return Ok(package);
        }
        let providers = index.providers(id);
        if let Some(present) = providers.iter().find(|p| self.installed.contains(p)) {
            return Ok(*present);
        }
        match providers {
            [] => Err(unknown()),
            [only] => Ok(*only),
            many => {
                let mut names: Vec<String> = many
                    .iter()
                    .map(|p| index.name(index.package(*p).name).to_string())
                    .collect();
                names.sort();
                Err(ResolveError::VirtualChoice {
                    name: name.to_string(),
                    providers: names,
                })
            }
        }
    }

    fn visit(&mut self, id: PackageId) -> Result<(), ResolveError> {
        if !self.done.insert(id) {
            return Ok(());
        }
        let package = self.index.package(id);
        let mut fields: Vec<(&[Group], bool)> =
            vec![(&package.pre_depends, true), (&package.depends, true)];
        if self.request.recommends {
            fields.push((&package.recommends, false));
        }
        let mut met_by = MetBy::default();
        for (field, (groups, required)) in fields.into_iter().enumerate() {
            for group in groups {
                let target = match self.already_met(group) {
                    Some(found) => found,
                    None => match self.pick(group) {
                        Some(picked) => {
                            self.choose(picked);
                            self.parent.entry(picked).or_insert(id);
                            picked
                        }
                        // Missing recommendations are skipped, as apt does.
                        None if !required => continue,
                        None => return Err(self.unsatisfiable(id, group)),
                    },
                };
                if !self.installed.contains(&target) {
                    match field {
                        0 => met_by.pre_depends.push(target),
                        1 => met_by.depends.push(target),
                        _ => met_by.recommends.push(target),
                    }
                    self.visit(target)?;
                }
            }
        }
        self.met_by.insert(id, met_by);
        self.order.push(id);
        Ok(())
    }

    /// Rule 2: a package already present or chosen that meets the group.
    fn already_met(&self, group: &Group) -> Option<PackageId> {
        group.iter().find_map(|dependency| {
            self.candidates(dependency.name).find(|c| {
                (self.installed.contains(c) || self.chosen.contains(c))
                    && self.index.satisfies(*c, dependency)
            })
        })
    }

    /// Rules 3 to 5: the candidate apt would install for the group.
    fn pick(&self, group: &Group) -> Option<PackageId> {
        for dependency in group {
            if let Some(real) = self.index.by_name(dependency.name)
                && self.choosable(real)
                && self.index.satisfies(real, dependency)
            {
                return Some(real);
            }
            let mut providers: Vec<PackageId> = self
                .index
                .providers(dependency.name)
                .iter()
                .copied()
                .filter(|p| self.choosable(*p) && self.index.satisfies(*p, dependency))
                .collect();
            providers.sort_by_key(|p| {
                let package = self.index.package(*p);
                (package.priority, self.index.name(package.name))
            });
            if let Some(first) = providers.first() {
                return Some(*first);
            }
        }
        None
    }

    fn choosable(&self, id: PackageId) -> bool {
        let name = self.index.name(self.index.package(id).name);
        !NEVER_CHOSEN.contains(&name) && !self.clashes_with_present(id)
    }

    fn clashes_with_present(&self, id: PackageId) -> bool {
        self.present.clash(self.index, id).is_some()
    }

    fn candidates(&self, name: NameId) -> impl Iterator<Item = PackageId> + '_ {
        self.index
            .by_name(name)
            .into_iter()
            .chain(self.index.providers(name).iter().copied())
    }

    /// The chain from the user's request down to `id`, as package names.
    fn chain(&self, mut id: PackageId) -> Vec<String> {
        let mut chain = vec![self.index.name(self.index.package(id).name).to_string()];
        let mut seen = HashSet::from([id]);
        while let Some(&parent) = self.parent.get(&id) {
            if !seen.insert(parent) {
                break;
            }
            chain.push(self.index.name(self.index.package(parent).name).to_string());
            id = parent;
        }
        chain.push(self.request.requested_by.to_string());
        chain
    }

    fn unsatisfiable(&self, id: PackageId, group: &Group) -> ResolveError {
        let reasons: Vec<String> = group.iter().map(|d| self.why_unmet(d)).collect();
        ResolveError::Unsatisfiable {
            requirement: self.index.describe_group(group),
            chain: self.chain(id),
            reason: reasons.join("; "),
        }
    }

    fn why_unmet(&self, dependency: &Dependency) -> String {
        let index = self.index;
        let name = index.name(dependency.name);
        let release = self.request.release;
        if let Some(real) = index.by_name(dependency.name) {
            let version = &index.package(real).version;
            if !index.satisfies(real, dependency) {
                return format!("{release} has {name} {version}");
            }
            if NEVER_CHOSEN.contains(&name) {
                return format!("envkit never installs {name}");
            }
            if let Some(other) = self.present.clash(index, real) {
                return format!(
                    "{name} {version} conflicts with {}",
                    index.name(index.package(other).name)
                );
            }
        }
        if index.providers(dependency.name).is_empty() && index.by_name(dependency.name).is_none() {
            return format!("no package in {release} is called or provides {name}");
        }
        format!(
            "no package in {release} that provides {} can be installed",
            index.describe(dependency)
        )
    }

    /// Rule 5 across the whole result: nothing chosen may clash with anything present.
    fn check_conflicts(&self) -> Result<(), ResolveError> {
        let mut all: Vec<PackageId> = self.installed.iter().chain(&self.order).copied().collect();
        all.sort_unstable();
        all.dedup();
        let present = Present::of(self.index, &all);
        for &chosen in &self.order {
            if let Some(other) = present.clash(self.index, chosen) {
                let name = |id: PackageId| self.index.name(self.index.package(id).name).to_string();
                let reason = conflict_between(self.index, chosen, other).unwrap_or_default();
                return Err(ResolveError::Conflict {
                    first: name(chosen),
                    second: name(other),
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// Packages present, indexed by the names that conflicts can hit, so a candidate is checked
/// against the few packages its relations (or theirs) name instead of against every one: with
/// a hundred thousand packages present, the walk stays linear.
#[derive(Default)]
struct Present {
    /// Each package under its own name and every name it provides.
    by_name: HashMap<NameId, Vec<PackageId>>,
    /// Each package under every name its Conflicts and Breaks name.
    targeting: HashMap<NameId, Vec<PackageId>>,
}

impl Present {
    fn of(index: &Index, packages: &[PackageId]) -> Present {
        let mut present = Present::default();
        for &id in packages {
            present.add(index, id);
        }
        present
    }

    fn add(&mut self, index: &Index, id: PackageId) {
        let package = index.package(id);
        for name in std::iter::once(package.name).chain(package.provides.iter().map(|(n, _)| *n)) {
            self.by_name.entry(name).or_default().push(id);
        }
        for dependency in package.conflicts.iter().chain(&package.breaks) {
            self.targeting.entry(dependency.name).or_default().push(id);
        }
    }

    /// The present package `id` conflicts with or breaks (either way), the lowest id first.
    fn clash(&self, index: &Index, id: PackageId) -> Option<PackageId> {
        let package = index.package(id);
        let hit_by_id = package
            .conflicts
            .iter()
            .chain(&package.breaks)
            .filter_map(|dependency| self.by_name.get(&dependency.name))
            .flatten();
        let hitting_id = std::iter::once(package.name)
            .chain(package.provides.iter().map(|(n, _)| *n))
            .filter_map(|name| self.targeting.get(&name))
            .flatten();
        hit_by_id
            .chain(hitting_id)
            .copied()
            .filter(|&other| other != id && conflict_between(index, id, other).is_some())
            .min()
    }
}

/// Whether `a` and `b` conflict or break each other, and how.
fn conflict_between(index: &Index, a: PackageId, b: PackageId) -> Option<String> {
    let one_way = |from: PackageId, to: PackageId| {
        let package = index.package(from);
        package
            .conflicts
            .iter()
            .map(|d| ("conflicts with", d))
            .chain(package.breaks.iter().map(|d| ("breaks", d)))
            .find_map(|(verb, dependency)| {
                // A package may conflict with a virtual name it provides itself; that never clashes.
                (index.satisfies(to, dependency) && index.package(to).name != package.name).then(
                    || {
                        format!(
                            "{} {verb} {}",
                            index.name(package.name),
                            index.describe(dependency)
                        )
                    },
                )
            })
    };
    one_way(a, b).or_else(|| one_way(b, a))
}

/// Up to three known names close to `name`, for "did you mean".
fn near_names(index: &Index, name: &str) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = index
        .names()
        .filter(|candidate| {
            index
                .name_id(candidate)
                .is_some_and(|id| index.by_name(id).is_some() || !index.providers(id).is_empty())
        })
        .map(|candidate| (strsim::levenshtein(name, candidate), candidate))
        .filter(|(distance, candidate)| {
            *distance <= (name.len() / 3).max(1)
                || (candidate.starts_with(name) && candidate.len() <= name.len() + 4)
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy index: each entry is `name version` followed by control fields.
    fn index(entries: &[&str]) -> Index {
        let mut text = String::new();
        for entry in entries {
            let mut lines = entry.lines();
            let head = lines.next().unwrap();
            let (name, version) = head.split_once(' ').unwrap();
            text.push_str(&format!(
                "Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
            ));
            for line in lines {
                text.push_str(line.trim());
                text.push('\n');
            }
            text.push_str(&format!(
                "Filename: pool/{name}_{version}.deb\nSHA256: 00\nSize: 1\n\n"
            ));
        }
        let mut index = Index::new("amd64");
        index.add_packages("toy", &text);
        index
    }

    fn names(index: &Index, ids: &[PackageId]) -> Vec<String> {
        let mut out: Vec<String> = ids
            .iter()
            .map(|id| index.name(index.package(*id).name).to_string())
            .collect();
        out.sort();
        out
    }

    fn solve(
        index: &Index,
        installed: &[&str],
        requested: &[&str],
    ) -> Result<Vec<String>, ResolveError> {
        let installed: Vec<PackageId> = installed
            .iter()
            .map(|n| index.by_name(index.name_id(n).unwrap()).unwrap())
            .collect();
        let names: Vec<String> = requested.iter().map(|s| s.to_string()).collect();
        let request = Request {
            release: "toy",
            installed: &installed,
            names: &names,
            recommends: false,
            requested_by: "your packages",
        };
        resolve(index, &request).map(|r| names_of(index, &r))
    }

    fn names_of(index: &Index, resolution: &Resolution) -> Vec<String> {
        names(index, &resolution.packages)
    }

    #[test]
    fn dependencies_and_first_satisfiable_alternative() {
        let idx = index(&[
            "app 1\nDepends: lib (>= 2) | libcompat, tool",
            "lib 1",
            "libcompat 1",
            "tool 1\nPre-Depends: libc",
            "libc 1",
        ]);
        assert_eq!(
            solve(&idx, &[], &["app"]).unwrap(),
            ["app", "libc", "libcompat", "tool"]
        );
    }

    #[test]
    fn dependencies_come_before_dependents() {
        let idx = index(&["app 1\nDepends: mid", "mid 1\nPre-Depends: low", "low 1"]);
        let names = vec!["app".to_string()];
        let request = Request {
            release: "toy",
            installed: &[],
            names: &names,
            recommends: false,
            requested_by: "you",
        };
        let order: Vec<String> = resolve(&idx, &request)
            .unwrap()
            .packages
            .iter()
            .map(|id| idx.name(idx.package(*id).name).to_string())
            .collect();
        assert_eq!(order, ["low", "mid", "app"]);
    }

    #[test]
    fn a_group_met_by_an_installed_provider_installs_nothing() {
        // sysvinit-utils provides lsb-base, so apt never installs the real lsb-base.
        let idx = index(&[
            "postgresql 1\nDepends: lsb-base (>= 3.0-3)",
            "lsb-base 11.6",
            "sysvinit-utils 3.06\nProvides: lsb-base (= 11.1.0)",
        ]);
        assert_eq!(
            solve(&idx, &["sysvinit-utils"], &["postgresql"]).unwrap(),
            ["postgresql"]
        );
    }

    #[test]
    fn versioned_provides_satisfy_versioned_dependencies() {
        let idx = index(&[
            "npm 1\nDepends: node-cssesc (>= 3.0~)",
            "node-css-selector 1\nProvides: node-cssesc (= 3.0.0)",
            "node-old 1\nProvides: node-cssesc",
        ]);
        assert_eq!(
            solve(&idx, &[], &["npm"]).unwrap(),
            ["node-css-selector", "npm"]
        );
    }

    #[test]
    fn requested_packages_are_marked_before_any_is_resolved() {
        // Resolving the JDK chooses a JRE that provides java-runtime, so maven's alternative
        // group is met and the default JRE is not added.
        let idx = index(&[
            "jdk 17\nDepends: jre",
            "jre 17\nProvides: java7-runtime-headless",
            "maven 3\nDepends: default-jre-headless | java7-runtime-headless",
            "default-jre-headless 2",
        ]);
        assert_eq!(
            solve(&idx, &[], &["jdk", "maven"]).unwrap(),
            ["jdk", "jre", "maven"]
        );
    }

    #[test]
    fn virtual_providers_by_priority_then_name() {
        let idx = index(&[
            "script 1\nDepends: awk",
            "gawk 1\nPriority: optional\nProvides: awk",
            "mawk 1\nPriority: required\nProvides: awk",
            "original-awk 1\nPriority: optional\nProvides: awk",
        ]);
        assert_eq!(solve(&idx, &[], &["script"]).unwrap(), ["mawk", "script"]);
    }

    #[test]
    fn usrmerge_is_never_chosen() {
        let idx = index(&[
            "init-system-helpers 1\nDepends: usrmerge | usr-is-merged",
            "usrmerge 35",
            "usr-is-merged 35",
        ]);
        assert_eq!(
            solve(&idx, &[], &["init-system-helpers"]).unwrap(),
            ["init-system-helpers", "usr-is-merged"]
        );
    }

    #[test]
    fn conflicting_alternatives_are_skipped() {
        let idx = index(&[
            "app 1\nDepends: mta",
            "exim 1\nPriority: important\nProvides: mta\nConflicts: postfix",
            "postfix 1\nProvides: mta",
        ]);
        assert_eq!(
            solve(&idx, &["postfix"], &["app"]).unwrap(),
            ["app"],
            "postfix already provides mta"
        );
        let idx = index(&[
            "app 1\nDepends: exim | postfix",
            "exim 1\nConflicts: sendmail",
            "postfix 1",
            "sendmail 1",
        ]);
        assert_eq!(
            solve(&idx, &["sendmail"], &["app"]).unwrap(),
            ["app", "postfix"]
        );
    }

    #[test]
    fn unavoidable_conflicts_and_breaks_are_errors() {
        let idx = index(&["a 1\nBreaks: b (<< 2)", "b 1"]);
        let error = solve(&idx, &[], &["a", "b"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "a and b cannot be installed together: a breaks b (<< 2)"
        );
        let idx = index(&["a 1\nDepends: c", "c 1\nConflicts: b", "b 1"]);
        let error = solve(&idx, &["b"], &["a"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "c is required by a, which is required by your packages, but c 1 conflicts with b"
        );
    }

    #[test]
    fn too_old_versions_are_explained_as_a_chain() {
        let idx = index(&[
            "app 1\nDepends: python3-foo",
            "python3-foo 1\nDepends: python3-bar (>= 2.0)",
            "python3-bar 1.4",
        ]);
        let error = solve(&idx, &[], &["app"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "python3-bar (>= 2.0) is required by python3-foo, which is required by app, which is required by your packages, but toy has python3-bar 1.4"
        );
    }

    #[test]
    fn missing_dependencies_are_named() {
        let idx = index(&["app 1\nDepends: ghost | phantom"]);
        let error = solve(&idx, &[], &["app"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "ghost | phantom is required by app, which is required by your packages, but no package in toy is called or provides ghost; no package in toy is called or provides phantom"
        );
    }

    #[test]
    fn unknown_packages_get_near_names() {
        let idx = index(&["python3 3.11", "python3-pytest 7", "git 2"]);
        let error = solve(&idx, &[], &["pyhton3"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "package `pyhton3` is not in toy; did you mean `python3`?"
        );
        let error = solve(&idx, &[], &["kubernetes"]).unwrap_err();
        assert_eq!(error.to_string(), "package `kubernetes` is not in toy");
    }

    #[test]
    fn a_requested_virtual_package_needs_a_choice_unless_only_one_provides_it() {
        let idx = index(&[
            "gawk 1\nProvides: awk",
            "mawk 1\nProvides: awk",
            "only 1\nProvides: lonely",
        ]);
        let error = solve(&idx, &[], &["awk"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`awk` is a virtual package provided by gawk, mawk; name the one you want in `packages`"
        );
        assert_eq!(solve(&idx, &[], &["lonely"]).unwrap(), ["only"]);
        assert_eq!(
            solve(&idx, &["mawk"], &["awk"]).unwrap(),
            Vec::<String>::new(),
            "already installed"
        );
    }

    #[test]
    fn recommends_only_when_asked() {
        let idx = index(&["app 1\nRecommends: extra, missing-thing", "extra 1"]);
        assert_eq!(solve(&idx, &[], &["app"]).unwrap(), ["app"]);
        let names = vec!["app".to_string()];
        let request = Request {
            release: "toy",
            installed: &[],
            names: &names,
            recommends: true,
            requested_by: "you",
        };
        assert_eq!(
            names_of(&idx, &resolve(&idx, &request).unwrap()),
            ["app", "extra"]
        );
    }

    #[test]
    fn the_base_set_is_essential_required_and_apt() {
        let idx = index(&[
            "bash 5\nEssential: yes\nPriority: required\nDepends: base-files",
            "base-files 12\nEssential: yes\nPriority: required",
            "mawk 1\nPriority: required\nProvides: awk",
            "apt 2.6\nPriority: important\nDepends: libapt",
            "libapt 2.6\nPriority: optional",
            "vim 9\nPriority: optional",
        ]);
        let base = resolve_base(&idx, "toy").unwrap();
        assert_eq!(
            names_of(&idx, &base),
            ["apt", "base-files", "bash", "libapt", "mawk"]
        );
    }

    /// Hostile indexes: what a mirror could serve to make resolving hang, eat memory or
    /// panic. Each must end, quickly, with a resolution or a clear error.
    #[test]
    fn a_stanza_with_a_hundred_thousand_dependencies_is_explained_in_bounded_time() {
        let depends: Vec<String> = (0..100_000).map(|i| format!("missing{i}")).collect();
        let entry = format!("app 1\nDepends: {}", depends.join(", "));
        let started = std::time::Instant::now();
        let idx = index(&[&entry]);
        let error = solve(&idx, &[], &["app"]).unwrap_err().to_string();
        assert!(error.contains("missing0"), "{error}");
        assert!(
            error.len() < 4096,
            "the explanation stays short: {} bytes",
            error.len()
        );
        // Far beyond what the work needs on any machine; a quadratic walk would take minutes.
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn a_hundred_thousand_satisfiable_dependencies_resolve() {
        let mut entries: Vec<String> = (0..100_000).map(|i| format!("lib{i} 1")).collect();
        let depends: Vec<String> = (0..100_000).map(|i| format!("lib{i}")).collect();
        entries.push(format!("app 1\nDepends: {}", depends.join(", ")));
        let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
        let idx = index(&entries);
        let resolved = solve(&idx, &[], &["app"]).unwrap();
        assert_eq!(resolved.len(), 100_001);
    }

    #[test]
    fn a_dependency_loop_resolves_as_dpkg_installs_it() {
        let idx = index(&[
            "a 1\nDepends: b",
            "b 1\nDepends: c",
            "c 1\nDepends: a",
            "d 1\nPre-Depends: d",
        ]);
        assert_eq!(solve(&idx, &[], &["a"]).unwrap(), ["a", "b", "c"]);
        assert_eq!(solve(&idx, &[], &["d"]).unwrap(), ["d"]);
    }

    #[test]
    fn a_ten_kilobyte_version_is_read_and_compared() {
        let long = format!("1.{}", "9".repeat(10_000));
        let entry = format!("app {long}");
        let idx = index(&[&entry, "tool 1\nDepends: app (>= 1.5)"]);
        assert_eq!(solve(&idx, &[], &["tool"]).unwrap(), ["app", "tool"]);
        let wanted = format!("tool2 1\nDepends: app (>= 2.{})", "0".repeat(10_000));
        let idx = index(&[&entry, &wanted]);
        let error = solve(&idx, &[], &["tool2"]).unwrap_err().to_string();
        assert!(error.contains("app"), "{error}");
    }
}
