//! Signed fixture repositories that images can really be built from: the real bookworm base
//! set (the `.deb`s a lock of the mirror names, taken from the shared download cache) served
//! beside whatever packages a test adds.

use std::path::Path;

use envkit::cache::Cache;
use envkit::debian::deb::Deb;
use envkit::fetch::Fetcher;
use envkit::solve::fixture::FixtureRepository;
use envkit::solve::lockfile::Lock;

use crate::project::Project;

/// A fixture repository serving the base set of a bookworm lock made against the mirror,
/// with the `.deb`s taken from the shared download cache; returns it and the base stanzas.
pub fn repository_with_the_real_base_set(dir: &Path) -> (FixtureRepository, String) {
    let reference = Project::sharing_downloads("base \"debian:bookworm\"\n");
    let locked = reference.env(&["lock"]);
    assert_eq!(locked.code, Some(0), "{}", locked.transcript());
    let lock =
        Lock::parse(&std::fs::read_to_string(reference.dir.path().join("env.lock")).unwrap())
            .unwrap();
    let mirrors = envkit::mirror::host_mirrors(Path::new("/etc/apt")).unwrap();
    envkit::build::download::download_all(&lock, &mirrors, &crate::shared_cache(), &Fetcher::new())
        .unwrap();
    let repository = FixtureRepository::new(&dir.join("mirror"));
    let cache = Cache::new(&crate::shared_cache());
    let mut stanzas = String::new();
    for package in &lock.packages {
        let path = cache.deb(&package.sha256);
        let control = Deb::open(&path, &package.name).unwrap().control().unwrap();
        stanzas.push_str(control.trim_end());
        stanzas.push('\n');
        stanzas.push_str(&repository.serve(&package.path, &std::fs::read(&path).unwrap()));
        stanzas.push('\n');
    }
    (repository, stanzas)
}

/// A small real `.deb` of `name` `version` holding `files` (path below `/`, contents).
pub fn simple_deb(name: &str, version: &str, files: &[(&str, &str)]) -> Vec<u8> {
    use envkit::debian::testing::{Tar, Z, deb_with_control};
    let mut data = Tar::new();
    data.dir("./", 0o755);
    let mut folders: Vec<String> = Vec::new();
    for (path, _) in files {
        let mut prefix = String::from(".");
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            prefix = format!("{prefix}/{part}");
            if !folders.contains(&prefix) {
                folders.push(prefix.clone());
                data.dir(&format!("{prefix}/"), 0o755);
            }
        }
    }
    for (path, contents) in files {
        data.file(&format!("./{path}"), 0o644, contents.as_bytes());
    }
    deb_with_control(
        &format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: Test <t@envkit.invalid>\nDescription: a test package\n"
        ),
        &data.finish(),
        Z::Gzip,
    )
}
