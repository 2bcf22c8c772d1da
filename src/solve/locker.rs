//! From a release's index and the spec's request to a [`Lock`]: the base layer, the packages
//! layer on top of it, install batches, and pins kept from the previous lock.

use std::collections::{HashMap, HashSet};

use super::index::{Group, Index, PackageId};
use super::lockfile::{Layer, Lock, LockedIndex, LockedPackage};
use super::resolve::{self, Request, ResolveError};

/// What the spec asks of the solver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub release: String,
    pub architecture: String,
    pub packages: Vec<String>,
    pub recommends: bool,
}

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
    let index = &*index;
    let base = resolve::resolve_base(index, &inputs.release)?;
    let essential: HashSet<PackageId> = resolve::resolve_essential(index, &inputs.release)?
        .packages
        .into_iter()
        .collect();
    let request = Request {
        release: &inputs.release,
        installed: &base.packages,
        names: &inputs.packages,
        recommends: inputs.recommends,
        requested_by: "your packages",
    };
    let packages = resolve::resolve(index, &request)?;
    let base_set: HashSet<PackageId> = base.packages.iter().copied().collect();
    let requested: HashSet<PackageId> = packages.requested.iter().copied().collect();
    let mut locked = Vec::new();
    for (layer, members) in [
        (Layer::Base, &base.packages),
        (Layer::Packages, &packages.packages),
    ] {
        let batches = install_batches(index, members);
        for &id in members {
            if layer == Layer::Packages && base_set.contains(&id) {
                continue;
            }
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
        packages: locked,
    })
}

/// The dpkg batch of each package of a layer: dpkg configures a package only after its
/// Pre-Depends are configured, so a package goes one batch after its Pre-Depends and no
/// earlier than its Depends (which dpkg orders itself within one call).
fn install_batches(index: &Index, members: &[PackageId]) -> HashMap<PackageId, u32> {
    let set: HashSet<PackageId> = members.iter().copied().collect();
    let provider_in_layer = |group: &Group| -> Option<PackageId> {
        members.iter().copied().find(|candidate| {
            set.contains(candidate) && group.iter().any(|d| index.satisfies(*candidate, d))
        })
    };
    let edges: HashMap<PackageId, (Vec<PackageId>, Vec<PackageId>)> = members
        .iter()
        .map(|&id| {
            let package = index.package(id);
            let pre: Vec<PackageId> = package
                .pre_depends
                .iter()
                .filter_map(provider_in_layer)
                .filter(|d| *d != id)
                .collect();
            let plain: Vec<PackageId> = package
                .depends
                .iter()
                .filter_map(provider_in_layer)
                .filter(|d| *d != id)
                .collect();
            (id, (pre, plain))
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
        }
    }

    fn fresh_index() -> Index {
        let mut index = Index::new("amd64");
        index.add_packages("bookworm", ARCHIVE);
        index.add_packages("bookworm-security", "Package: libc6\nVersion: 2.36-9+deb12u1\nArchitecture: amd64\nPriority: optional\nFilename: pool/updates/libc6.deb\nSize: 21\nSHA256: 12\n");
        index
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
