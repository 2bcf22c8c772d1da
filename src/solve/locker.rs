//! From a release's index and the spec's request to a [`Lock`]: the base layer, the packages
//! layer on top of it split into groups, install batches, and pins kept from the previous lock.

use std::collections::{HashMap, HashSet};

use super::index::{Group, Index, PackageId};
use super::lockfile::{Layer, Lock, LockedIndex, LockedPackage};
use super::resolve::{self, Request, Resolution, ResolveError};

/// What the spec asks of the solver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub release: String,
    pub architecture: String,
    pub packages: Vec<String>,
    pub recommends: bool,
    /// The dpkg `status` of the image the packages go on (`base image=`): its installed
    /// packages are the base set, and the lock's base layer is empty. `None`: a Debian base
    /// set is chosen from the release.
    pub installed: Option<String>,
}

/// Image layers the packages layer may be split into; later requested packages share the
/// last. Each is one more lower folder in the overlays of builds and sessions, whose mount
/// options must fit in a page.
pub const MAX_PACKAGE_GROUPS: u32 = 16;

/// Which locked versions may move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Keep every package the previous lock pins, when the mirror still has that version.
    Nothing,
    /// Move these packages to the newest versions; keep the rest.
    Only(Vec<String>),
    /// Move everything to the newest versions.
    Everything,
}

/// Solves `inputs` against `index` (pinned to `previous` where `update` allows) into a lock.
pub fn lock(
    index: &mut Index,
    indexes: Vec<LockedIndex>,
    inputs: &Inputs,
    previous: Option<&Lock>,
    update: &Update,
) -> Result<Lock, ResolveError> {
    if let Some(previous) =
        previous.filter(|p| p.release == inputs.release && p.architecture == inputs.architecture)
    {
        for package in &previous.packages {
            let moves = match update {
                Update::Nothing => false,
                Update::Only(names) => names.contains(&package.name),
                Update::Everything => true,
            };
            if !moves {
                // A version the mirror no longer has cannot be kept; the newest one is used.
                index.pin(&package.name, &package.version);
            }
        }
    }
    let on_image = inputs
        .installed
        .as_deref()
        .map(|status| index.add_installed(status));
    let index = &*index;
    let (installed, essential): (Vec<PackageId>, HashSet<PackageId>) = match on_image {
        Some(installed) => (installed, HashSet::new()),
        None => (
            resolve::resolve_base(index, &inputs.release)?.packages,
            resolve::resolve_essential(index, &inputs.release)?
                .packages
                .into_iter()
                .collect(),
        ),
    };
    // What an image has installed is the image's, not the lock's.
    let locked_base: &[PackageId] = if inputs.installed.is_some() {
        &[]
    } else {
        &installed
    };
    let request = Request {
        release: &inputs.release,
        installed: &installed,
        names: &inputs.packages,
        recommends: inputs.recommends,
        requested_by: "your packages",
    };
    let packages = resolve::resolve(index, &request)?;
    let base_set: HashSet<PackageId> = installed.iter().copied().collect();
    let requested: HashSet<PackageId> = packages.requested.iter().copied().collect();
    let own: Vec<PackageId> = packages
        .packages
        .iter()
        .copied()
        .filter(|id| !base_set.contains(id))
        .collect();
    let groups = package_groups(&own, &packages);
    let mut locked = Vec::new();
    let base_batches = install_batches(locked_base, |id| {
        let package = index.package(id);
        let in_base = |group: &Group| {
            locked_base
                .iter()
                .copied()
                .find(|candidate| group.iter().any(|d| index.satisfies(*candidate, d)))
        };
        (
            package.pre_depends.iter().filter_map(in_base).collect(),
            package.depends.iter().filter_map(in_base).collect(),
        )
    });
    // Each group is installed by dpkg runs of its own over the groups below, so a package is
    // ordered only after what met its relations in its own group.
    let own_batches = install_batches(&own, |id| {
        let group = groups.get(&id);
        let same_group = |met: &Vec<PackageId>| -> Vec<PackageId> {
            met.iter()
                .copied()
                .filter(|m| groups.get(m) == group)
                .collect()
        };
        packages
            .met_by
            .get(&id)
            .map_or_else(Default::default, |met| {
                (same_group(&met.pre_depends), same_group(&met.depends))
            })
    });
    for (layer, members, batches) in [
        (Layer::Base, locked_base, &base_batches),
        (Layer::Packages, own.as_slice(), &own_batches),
    ] {
        for &id in members {
            let package = index.package(id);
            locked.push(LockedPackage {
                name: index.name(package.name).to_string(),
                version: package.version.to_string(),
                architecture: package.architecture.clone(),
                suite: index.suites.get(package.suite).cloned().unwrap_or_default(),
                path: package.filename.clone(),
                size: package.size,
                sha256: package.sha256.clone(),
                layer,
                requested: requested.contains(&id),
                essential: essential.contains(&id),
                batch: batches.get(&id).copied().unwrap_or(0),
                group: match layer {
                    Layer::Base => 0,
                    Layer::Packages => groups.get(&id).copied().unwrap_or(1),
                },
            });
        }
    }
    locked.sort_by(|a, b| (a.layer, &a.name).cmp(&(b.layer, &b.name)));
    Ok(Lock {
        release: inputs.release.clone(),
        architecture: inputs.architecture.clone(),
        recommends: inputs.recommends,
        requested: inputs.packages.clone(),
        indexes,
        image: None,
        packages: locked,
    })
}

/// The group of each of the environment's own packages: following the providers the resolver
/// chose from each requested package in the order written, each one not yet reached starts the
/// next group, which holds what it reaches that no lower group has (the base is not followed:
/// it is below every group); one already reached starts none. So a package's relations are
/// met at or below its group, and appending a package to `packages` leaves the groups below it
/// as they were, unless the new package changes the resolution of an earlier one (it may meet
/// an earlier one's alternative, as with apt). Every chosen package is reached from a requested
/// one; one that is not would join the last group.
fn package_groups(own: &[PackageId], resolution: &Resolution) -> HashMap<PackageId, u32> {
    let own_set: HashSet<PackageId> = own.iter().copied().collect();
    let mut group_of: HashMap<PackageId, u32> = HashMap::new();
    let mut next = 1;
    for &root in &resolution.requested {
        if !own_set.contains(&root) || group_of.contains_key(&root) {
            continue;
        }
        let group = next.min(MAX_PACKAGE_GROUPS);
        next += 1;
        group_of.insert(root, group);
        let mut walk = vec![root];
        while let Some(id) = walk.pop() {
            let Some(met) = resolution.met_by.get(&id) else {
                continue;
            };
            let providers = met
                .pre_depends
                .iter()
                .chain(&met.depends)
                .chain(&met.recommends);
            for &provider in providers {
                if own_set.contains(&provider) && !group_of.contains_key(&provider) {
                    group_of.insert(provider, group);
                    walk.push(provider);
                }
            }
        }
    }
    let last = (next - 1).clamp(1, MAX_PACKAGE_GROUPS);
    for &id in own {
        group_of.entry(id).or_insert(last);
    }
    group_of
}

/// The dpkg batch of each package of one dpkg install: dpkg configures a package only after
/// its Pre-Depends are configured, so a package goes one batch after its Pre-Depends and no
/// earlier than its Depends (which dpkg orders itself within one call). `met_by` gives a
/// package's (Pre-Depends, Depends) among `members`.
fn install_batches(
    members: &[PackageId],
    met_by: impl Fn(PackageId) -> (Vec<PackageId>, Vec<PackageId>),
) -> HashMap<PackageId, u32> {
    let set: HashSet<PackageId> = members.iter().copied().collect();
    let edges: HashMap<PackageId, (Vec<PackageId>, Vec<PackageId>)> = members
        .iter()
        .map(|&id| {
            let (pre, plain) = met_by(id);
            let keep = |list: Vec<PackageId>| -> Vec<PackageId> {
                list.into_iter()
                    .filter(|d| *d != id && set.contains(d))
                    .collect()
            };
            (id, (keep(pre), keep(plain)))
        })
        .collect();
    let mut batch: HashMap<PackageId, u32> = members.iter().map(|&id| (id, 0)).collect();
    // Longest-path relaxation; bounded because Depends may form cycles.
    for _ in 0..members.len() {
        let mut changed = false;
        for &id in members {
            let (pre, plain) = &edges[&id];
            let wanted = pre
                .iter()
                .map(|d| batch[d] + 1)
                .chain(plain.iter().map(|d| batch[d]))
                .max()
                .unwrap_or(0);
            if wanted > batch[&id] && wanted <= members.len() as u32 {
                batch.insert(id, wanted);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    batch
}

/// A line per difference between two locks: `+ name version`, `- name version`,
/// `~ name old -> new`.
pub fn changes(previous: Option<&Lock>, next: &Lock) -> Vec<String> {
    let old: HashMap<&str, &str> = previous
        .map(|p| {
            p.packages
                .iter()
                .map(|x| (x.name.as_str(), x.version.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let new: HashMap<&str, &str> = next
        .packages
        .iter()
        .map(|x| (x.name.as_str(), x.version.as_str()))
        .collect();
    let mut lines = Vec::new();
    let old_image = previous.and_then(|p| p.image.as_ref());
    if let Some(image) = &next.image
        && old_image != Some(image)
    {
        lines.push(match old_image {
            Some(old) if old.reference == image.reference => {
                format!(
                    "~ image {} {} -> {}",
                    image.reference, old.digest, image.digest
                )
            }
            _ => format!("+ image {} {}", image.reference, image.digest),
        });
    }
    for package in &next.packages {
        match old.get(package.name.as_str()) {
            None => lines.push(format!("+ {} {}", package.name, package.version)),
            Some(version) if *version != package.version => lines.push(format!(
                "~ {} {version} -> {}",
                package.name, package.version
            )),
            Some(_) => {}
        }
    }
    if let Some(previous) = previous {
        for package in &previous.packages {
            if !new.contains_key(package.name.as_str()) {
                lines.push(format!("- {} {}", package.name, package.version));
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARCHIVE: &str = "\
Package: base-files
Version: 12
Architecture: amd64
Essential: yes
Priority: required
Filename: pool/b/base-files_12_amd64.deb
Size: 10
SHA256: 01

Package: libc6
Version: 2.36-9
Architecture: amd64
Priority: optional
Filename: pool/g/libc6_2.36-9_amd64.deb
Size: 20
SHA256: 02

Package: bash
Version: 5.2
Architecture: amd64
Essential: yes
Priority: required
Pre-Depends: libc6
Filename: pool/b/bash_5.2_amd64.deb
Size: 30
SHA256: 03

Package: python3-minimal
Version: 3.11.2-1
Architecture: amd64
Priority: optional
Pre-Depends: python3.11-minimal
Filename: pool/p/python3-minimal.deb
Size: 40
SHA256: 04

Package: python3.11-minimal
Version: 3.11.2-6
Architecture: amd64
Priority: optional
Depends: libc6
Filename: pool/p/python3.11-minimal.deb
Size: 50
SHA256: 05

Package: python3
Version: 3.11.2-1
Architecture: amd64
Priority: optional
Pre-Depends: python3-minimal
Filename: pool/p/python3.deb
Size: 60
SHA256: 06
";

    fn inputs(packages: &[&str]) -> Inputs {
        Inputs {
            release: "bookworm".into(),
            architecture: "amd64".into(),
            packages: packages.iter().map(|s| s.to_string()).collect(),
            recommends: false,
            installed: None,
        }
    }

    fn fresh_index() -> Index {
        let mut index = Index::new("amd64");
        index.add_packages("bookworm", ARCHIVE);
        index.add_packages("bookworm-security", "Package: libc6\nVersion: 2.36-9+deb12u1\nArchitecture: amd64\nPriority: optional\nFilename: pool/updates/libc6.deb\nSize: 21\nSHA256: 12\n");
        index
    }

    #[test]
    fn packages_on_an_image_are_solved_against_what_it_has_installed() {
        // An older libc6 than the archive's, a package the archive never had, one removed
        // but configured, one of another architecture.
        let status = "\
Package: libc6
Status: install ok installed
Version: 2.36-8
Architecture: amd64
Priority: optional

Package: vendor-tool
Status: hold ok installed
Version: 1.0
Architecture: amd64
Provides: python3.11-minimal (= 3.11.2-6)

Package: bash
Status: deinstall ok config-files
Version: 5.2
Architecture: amd64

Package: zlib1g
Status: install ok installed
Version: 1:1.2.13
Architecture: i386
";
        let on_image = Inputs {
            installed: Some(status.into()),
            ..inputs(&["python3"])
        };
        let lock = lock(
            &mut fresh_index(),
            Vec::new(),
            &on_image,
            None,
            &Update::Nothing,
        )
        .unwrap();
        let names: Vec<(&str, Layer)> = lock
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.layer))
            .collect();
        assert_eq!(
            names,
            [
                ("python3", Layer::Packages),
                ("python3-minimal", Layer::Packages)
            ],
            "libc6 and python3.11-minimal (provided) are the image's; no base layer"
        );
    }

    #[test]
    fn layers_batches_and_requested_marks() {
        let lock = lock(
            &mut fresh_index(),
            Vec::new(),
            &inputs(&["python3", "bash"]),
            None,
            &Update::Nothing,
        )
        .unwrap();
        let find = |name: &str| lock.packages.iter().find(|p| p.name == name).unwrap();
        assert_eq!(find("bash").layer, Layer::Base);
        assert!(find("bash").requested, "requested although the base has it");
        assert!(find("bash").essential);
        assert_eq!(
            find("bash").batch,
            1,
            "after libc6, which it pre-depends on"
        );
        assert_eq!(find("libc6").suite, "bookworm-security");
        assert_eq!(
            (
                find("python3.11-minimal").batch,
                find("python3-minimal").batch,
                find("python3").batch
            ),
            (0, 1, 2)
        );
        assert_eq!(find("python3").layer, Layer::Packages);
        assert!(!find("python3-minimal").requested);
        assert_eq!(
            lock.packages
                .iter()
                .filter(|p| p.layer == Layer::Packages)
                .count(),
            3
        );
    }

    const TOOLS: &str = "\
Package: python3-pluggy
Version: 1.0
Architecture: all
Depends: python3
Filename: pool/p/python3-pluggy.deb
Size: 1
SHA256: 21

Package: python3-pytest
Version: 7.2
Architecture: all
Depends: python3, python3-pluggy
Filename: pool/p/python3-pytest.deb
Size: 1
SHA256: 22

Package: libonig5
Version: 6.9
Architecture: amd64
Depends: libc6
Filename: pool/o/libonig5.deb
Size: 1
SHA256: 23

Package: libjq1
Version: 1.6
Architecture: amd64
Depends: libonig5, libc6
Filename: pool/j/libjq1.deb
Size: 1
SHA256: 24

Package: jq
Version: 1.6
Architecture: amd64
Depends: libjq1 (= 1.6), libc6
Filename: pool/j/jq.deb
Size: 1
SHA256: 25
";

    fn groups_of(names: &[&str], extra: &str) -> Vec<(u32, Vec<String>)> {
        let mut index = fresh_index();
        index.add_packages("bookworm", TOOLS);
        index.add_packages("bookworm", extra);
        let lock = lock(
            &mut index,
            Vec::new(),
            &inputs(names),
            None,
            &Update::Nothing,
        )
        .unwrap();
        assert!(lock.layer(Layer::Base).all(|p| p.group == 0));
        assert_installable_group_by_group(&index, &lock);
        lock.groups()
            .into_iter()
            .map(|(g, p)| (g, p.iter().map(|p| p.name.clone()).collect()))
            .collect()
    }

    /// What dpkg needs when it installs each group's batches in order over the base and the
    /// groups below: every Pre-Depends met by the base, a lower group, or an earlier batch of
    /// the group; every Depends by the base, a lower group, or the same or an earlier batch.
    fn assert_installable_group_by_group(index: &Index, lock: &Lock) {
        let locked: HashMap<PackageId, &LockedPackage> = lock
            .packages
            .iter()
            .map(|p| {
                let name = index.name_id(&p.name).unwrap();
                (index.by_name(name).unwrap(), p)
            })
            .collect();
        for (&id, package) in &locked {
            if package.layer == Layer::Base {
                continue;
            }
            let fields = [
                (&index.package(id).pre_depends, 1),
                (&index.package(id).depends, 0),
            ];
            for (groups, gap) in fields {
                for alternatives in groups {
                    let met = locked.iter().any(|(&candidate, other)| {
                        alternatives.iter().any(|d| index.satisfies(candidate, d))
                            && (other.layer == Layer::Base
                                || other.group < package.group
                                || other.group == package.group
                                    && other.batch + gap <= package.batch)
                    });
                    assert!(
                        met,
                        "{} (group {}, batch {}) has {alternatives:?} unmet when its group is installed: {}",
                        package.name,
                        package.group,
                        package.batch,
                        lock.render()
                    );
                }
            }
        }
    }

    #[test]
    fn an_alternative_met_by_a_later_requested_package_is_installed_with_the_first() {
        let archive = "\
Package: dd
Version: 1
Architecture: all
Filename: pool/dd.deb
Size: 1
SHA256: 31

Package: cc
Version: 1
Architecture: all
Pre-Depends: dd
Filename: pool/cc.deb
Size: 1
SHA256: 32

Package: aa
Version: 1
Architecture: all
Pre-Depends: cc
Filename: pool/aa.deb
Size: 1
SHA256: 33

Package: bb
Version: 1
Architecture: all
Filename: pool/bb.deb
Size: 1
SHA256: 34

Package: pp
Version: 1
Architecture: all
Pre-Depends: aa | bb
Filename: pool/pp.deb
Size: 1
SHA256: 35

Package: rr
Version: 1
Architecture: all
Depends: aa
Filename: pool/rr.deb
Size: 1
SHA256: 36
";
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            groups_of(&["pp", "bb", "rr"], archive),
            [
                (1, names(&["bb", "pp"])),
                (2, names(&["aa", "cc", "dd", "rr"]))
            ],
            "pp's pre-dependency is met by bb, as the resolver chose"
        );
    }

    #[test]
    fn a_provider_the_resolver_chose_stays_with_what_needed_it() {
        let archive = "\
Package: appa
Version: 1
Architecture: all
Depends: libb, zc
Filename: pool/appa.deb
Size: 1
SHA256: 41

Package: libb
Version: 1
Architecture: all
Depends: vw
Filename: pool/libb.deb
Size: 1
SHA256: 42

Package: aw
Version: 1
Architecture: all
Provides: vw
Filename: pool/aw.deb
Size: 1
SHA256: 43

Package: zc
Version: 1
Architecture: all
Provides: vw
Filename: pool/zc.deb
Size: 1
SHA256: 44

Package: leafq
Version: 1
Architecture: all
Filename: pool/leafq.deb
Size: 1
SHA256: 45
";
        let before = groups_of(&["appa"], archive);
        let after = groups_of(&["appa", "leafq"], archive);
        assert_eq!(before.len(), 1);
        assert_eq!(
            after[..1],
            before[..],
            "an unrelated package leaves group 1 alone"
        );
        assert_eq!(after[1], (2, vec!["leafq".to_string()]));
    }

    #[test]
    fn each_requested_package_gets_the_group_of_what_it_adds() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            groups_of(&["python3-pytest", "python3", "bash", "jq"], ""),
            [
                (
                    1,
                    names(&[
                        "python3",
                        "python3-minimal",
                        "python3-pluggy",
                        "python3-pytest",
                        "python3.11-minimal"
                    ])
                ),
                (2, names(&["jq", "libjq1", "libonig5"])),
            ],
            "python3 came with pytest and bash with the base: neither has a group"
        );
        let before = groups_of(&["python3", "python3-pytest"], "");
        let after = groups_of(&["python3", "python3-pytest", "jq"], "");
        assert_eq!(before.len(), 2);
        assert_eq!(
            after[..2],
            before[..],
            "appending leaves the groups below alone"
        );
        assert_eq!(after[2], (3, names(&["jq", "libjq1", "libonig5"])));
    }

    #[test]
    fn groups_stop_at_the_cap_and_the_rest_share_the_last() {
        let leaves: String = (0..20)
            .map(|n| {
                format!(
                    "Package: leaf{n:02}\nVersion: 1\nArchitecture: all\nFilename: pool/l/leaf{n:02}.deb\nSize: 1\nSHA256: {n:02}\n\n"
                )
            })
            .collect();
        let names: Vec<String> = (0..20).map(|n| format!("leaf{n:02}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let groups = groups_of(&names, &leaves);
        assert_eq!(groups.len(), MAX_PACKAGE_GROUPS as usize);
        assert_eq!(groups[0].1, ["leaf00"]);
        assert_eq!(
            groups.last().unwrap(),
            &(
                MAX_PACKAGE_GROUPS,
                vec![
                    "leaf15".into(),
                    "leaf16".into(),
                    "leaf17".into(),
                    "leaf18".into(),
                    "leaf19".into()
                ]
            )
        );
    }

    #[test]
    fn pins_hold_unless_updated() {
        let mut first_index = Index::new("amd64");
        first_index.add_packages("bookworm", ARCHIVE);
        let first = lock(
            &mut first_index,
            Vec::new(),
            &inputs(&["python3"]),
            None,
            &Update::Nothing,
        )
        .unwrap();
        let libc = |l: &Lock| {
            l.packages
                .iter()
                .find(|p| p.name == "libc6")
                .unwrap()
                .version
                .clone()
        };
        assert_eq!(libc(&first), "2.36-9");

        // The security suite now has a newer libc6; adding a package keeps the pin.
        let kept = lock(
            &mut fresh_index(),
            Vec::new(),
            &inputs(&["python3", "bash"]),
            Some(&first),
            &Update::Nothing,
        )
        .unwrap();
        assert_eq!(libc(&kept), "2.36-9");
        let moved = lock(
            &mut fresh_index(),
            Vec::new(),
            &inputs(&["python3"]),
            Some(&first),
            &Update::Only(vec!["libc6".into()]),
        )
        .unwrap();
        assert_eq!(libc(&moved), "2.36-9+deb12u1");
        let all = lock(
            &mut fresh_index(),
            Vec::new(),
            &inputs(&["python3"]),
            Some(&first),
            &Update::Everything,
        )
        .unwrap();
        assert_eq!(libc(&all), "2.36-9+deb12u1");
        assert_eq!(
            changes(Some(&first), &all),
            ["~ libc6 2.36-9 -> 2.36-9+deb12u1"]
        );
    }
}
