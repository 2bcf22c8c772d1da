//! `env lock` against small signed `file://` repositories built by the tests (no network), and
//! once against the real mirror of the host's apt sources (network tier).

use std::path::{Path, PathBuf};

use envkit::solve::fixture::{FixtureRepository, minimal_archive};

use crate::common::{Outcome, envkit, run};

/// A project folder with a signed repository and an env.kdl that uses it.
struct Project {
    dir: tempfile::TempDir,
    repository: FixtureRepository,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repository = FixtureRepository::new(&dir.path().join("mirror"));
        repository.write_keyring(&dir.path().join("archive.gpg"));
        Project { dir, repository }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write_env(&self, packages: &[&str]) {
        let quoted: Vec<String> = packages.iter().map(|p| format!("\"{p}\"")).collect();
        let text = format!(
            "name \"app\"\nbase \"debian:bookworm\"\nmirror \"{}\" keyring=\"archive.gpg\"\npackages {}\n",
            self.repository.url(),
            quoted.join(" ")
        );
        std::fs::write(self.path().join("env.kdl"), text).unwrap();
    }

    fn env(&self, args: &[&str]) -> Outcome {
        run(envkit(self.path(), args).env("ENVKIT_CACHE_DIR", self.path().join("cache")))
    }

    fn lock_text(&self) -> String {
        std::fs::read_to_string(self.path().join("env.lock")).unwrap_or_default()
    }
}

fn app_packages(repository: &FixtureRepository) -> Vec<String> {
    vec![
        repository.package("python3", "3.11.2-1", "Priority: optional\nPre-Depends: python3-minimal (= 3.11.2-1)\nDepends: libpython3-stdlib"),
        repository.package("python3-minimal", "3.11.2-1", "Priority: optional\nDepends: libc6"),
        repository.package("libpython3-stdlib", "3.11.2-1", "Priority: optional"),
        repository.package("git", "1:2.39.5-0+deb12u1", "Priority: optional\nDepends: libc6, perl-base | perl"),
        repository.package("perl", "5.36.0-7", "Priority: optional"),
    ]
}

fn project_with_app() -> Project {
    let project = Project::new();
    let mut all = minimal_archive(&project.repository);
    all.push_str(&app_packages(&project.repository).concat());
    project.repository.suite("bookworm", &all);
    project
}

#[test]
fn lock_writes_a_complete_lock_and_check_agrees() {
    let project = project_with_app();
    project.write_env(&["python3", "git"]);
    let outcome = project.env(&["lock"]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    assert!(
        outcome
            .stderr
            .contains("locked env.lock: 6 base + 5 packages from bookworm"),
        "{}",
        outcome.stderr
    );
    let lock = project.lock_text();
    assert!(lock.contains("version 1\nrelease \"bookworm\" architecture=\"amd64\" recommends=#false\nrequested \"python3\" \"git\""), "{lock}");
    assert!(lock.contains("index \"bookworm\" date=\"Sat, 01 Nov 2025 00:00:00 UTC\" path=\"main/binary-amd64/Packages.gz\""), "{lock}");
    assert!(lock.contains("package \"git\" version=\"1:2.39.5-0+deb12u1\" arch=\"amd64\" suite=\"bookworm\" path=\"pool/git_1%3a2.39.5-0+deb12u1_amd64.deb\""), "{lock}");
    assert!(
        lock.contains("layer=\"packages\" batch=1 group=1 requested=#true"),
        "python3 after python3-minimal, in the first group: {lock}"
    );
    assert!(
        lock.lines()
            .any(|l| l.starts_with("package \"git\"") && l.contains(" group=2 ")),
        "git has the second group: {lock}"
    );
    assert!(lock.contains("package \"bash\""), "{lock}");
    assert!(!lock.contains("package \"perl-base\""), "{lock}");

    let check = project.env(&["lock", "--check"]);
    assert_eq!(check.code, Some(0), "{}", check.transcript());
    let again = project.env(&["lock"]);
    assert!(
        again.stderr.contains("env.lock is up to date"),
        "{}",
        again.stderr
    );
}

#[test]
fn check_explains_a_stale_lock_and_a_new_lock_keeps_pins() {
    let project = project_with_app();
    project.write_env(&["python3"]);
    assert_eq!(project.env(&["lock"]).code, Some(0));
    let first = project.lock_text();

    project.write_env(&["python3", "git"]);
    let check = project.env(&["lock", "--check"]);
    assert_eq!(check.code, Some(1), "{}", check.transcript());
    assert!(
        check
            .stderr
            .contains("error: `env.lock` does not match env.kdl"),
        "{}",
        check.stderr
    );
    assert!(
        check.stderr.contains("- packages added to env.kdl: git"),
        "{}",
        check.stderr
    );
    assert!(
        check.stderr.contains("hint: run `env lock`"),
        "{}",
        check.stderr
    );

    // A newer libc6 appears in the security suite: adding git must not move it.
    let security = project.repository.package(
        "libc6",
        "2.36-9+deb12u13",
        "Priority: optional\nMulti-Arch: same",
    );
    project.repository.suite("bookworm-security", &security);
    let relock = project.env(&["lock"]);
    assert_eq!(relock.code, Some(0), "{}", relock.transcript());
    assert!(
        relock.stderr.contains("+ git 1:2.39.5-0+deb12u1"),
        "{}",
        relock.stderr
    );
    assert!(!relock.stderr.contains("libc6"), "{}", relock.stderr);
    let second = project.lock_text();
    let libc = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("package \"libc6\""))
            .unwrap()
            .to_string()
    };
    assert_eq!(libc(&first), libc(&second));

    let update = project.env(&["lock", "--update", "libc6"]);
    assert_eq!(update.code, Some(0), "{}", update.transcript());
    assert!(
        update.stderr.contains("~ libc6 2.36-9 -> 2.36-9+deb12u13"),
        "{}",
        update.stderr
    );
    assert!(project.lock_text().contains("suite=\"bookworm-security\""));

    let unknown = project.env(&["lock", "--update", "nonesuch"]);
    assert_eq!(unknown.code, Some(2), "{}", unknown.transcript());
}

/// `--locked` (as in CI) builds from the committed lock or refuses, and never writes one. Needs
/// root, as every command that builds does here (`rootless.rs` builds as a user).
#[test]
fn locked_refuses_a_missing_or_stale_lock_and_writes_nothing() {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            !crate::common::must_work(),
            "ENVKIT_MUST_WORK=1 but `--locked` needs root to enter envkit's namespace"
        );
        eprintln!("skipped: `--locked` needs root to enter envkit's namespace");
        return;
    }
    let project = project_with_app();
    project.write_env(&["python3"]);
    let missing = project.env(&["build", "--locked"]);
    assert_eq!(missing.code, Some(1), "{}", missing.transcript());
    assert!(
        missing
            .stderr
            .contains("there is no `env.lock`, and `--locked` forbids making one"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("hint: run `env lock`"),
        "{}",
        missing.stderr
    );
    assert!(!project.path().join("env.lock").exists());

    assert_eq!(project.env(&["lock"]).code, Some(0));
    let locked = project.lock_text();
    project.write_env(&["python3", "git"]);
    for args in [
        &["build", "--locked"][..],
        &["build", "--dry-run", "--locked"],
        &["run", "--locked", "--", "true"],
        &["export", "--locked"],
    ] {
        let stale = project.env(args);
        assert_eq!(stale.code, Some(1), "{args:?}: {}", stale.transcript());
        assert!(
            stale
                .stderr
                .contains("`env.lock` does not match env.kdl, and `--locked` forbids updating it"),
            "{args:?}: {}",
            stale.stderr
        );
        assert!(
            stale.stderr.contains("- packages added to env.kdl: git"),
            "{args:?}: {}",
            stale.stderr
        );
        assert_eq!(project.lock_text(), locked, "{args:?} changed the lock");
    }
}

#[test]
fn a_tampered_index_is_refused_and_nothing_is_written() {
    let project = project_with_app();
    project.write_env(&["python3"]);
    let in_release = project.repository.root.join("dists/bookworm/InRelease");
    let text = std::fs::read_to_string(&in_release)
        .unwrap()
        .replace("Codename: bookworm", "Codename: bookwurm");
    std::fs::write(&in_release, text).unwrap();
    let outcome = project.env(&["lock"]);
    assert_eq!(outcome.code, Some(1), "{}", outcome.transcript());
    assert!(
        outcome
            .stderr
            .contains("dists/bookworm/InRelease` failed verification"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("bad signature"),
        "{}",
        outcome.stderr
    );
    assert!(!project.path().join("env.lock").exists());
    assert!(
        !project.path().join("cache/indexes-v1/suites").exists()
            || std::fs::read_dir(project.path().join("cache/indexes-v1/suites"))
                .unwrap()
                .next()
                .is_none(),
        "the cache stays as it was"
    );
}

#[test]
fn an_index_that_does_not_match_its_signed_checksum_is_refused() {
    let project = project_with_app();
    project.write_env(&["python3"]);
    let packages = project
        .repository
        .root
        .join("dists/bookworm/main/binary-amd64/Packages.gz");
    let mut bytes = std::fs::read(&packages).unwrap();
    bytes.push(0);
    std::fs::write(&packages, bytes).unwrap();
    let outcome = project.env(&["lock"]);
    assert_eq!(outcome.code, Some(1), "{}", outcome.transcript());
    assert!(
        outcome
            .stderr
            .contains("Packages.gz` does not match its signed checksum"),
        "{}",
        outcome.stderr
    );
    assert!(!project.path().join("env.lock").exists());
}

#[test]
fn an_expired_index_or_one_from_the_future_is_refused() {
    for (field, date, expected) in [
        (
            Some("Sun, 02 Nov 2025 00:00:00 UTC"),
            "Sat, 01 Nov 2025 00:00:00 UTC",
            "InRelease` expired at Sun, 02 Nov 2025 00:00:00 UTC (its Valid-Until)",
        ),
        (
            None,
            "Fri, 01 Jan 2100 00:00:00 UTC",
            "InRelease` is dated Fri, 01 Jan 2100 00:00:00 UTC, later than this machine's clock",
        ),
    ] {
        let mut project = Project::new();
        project.repository = match field {
            Some(until) => std::mem::replace(
                &mut project.repository,
                FixtureRepository::new(Path::new("/nonexistent")),
            )
            .release_field("Valid-Until", until),
            None => std::mem::replace(
                &mut project.repository,
                FixtureRepository::new(Path::new("/nonexistent")),
            ),
        }
        .date(date);
        let mut all = minimal_archive(&project.repository);
        all.push_str(&app_packages(&project.repository).concat());
        project.repository.suite("bookworm", &all);
        project.write_env(&["python3"]);
        let outcome = project.env(&["lock"]);
        assert_eq!(outcome.code, Some(1), "{}", outcome.transcript());
        assert!(outcome.stderr.contains(expected), "{}", outcome.stderr);
        assert!(outcome.stderr.contains("hint:"), "{}", outcome.stderr);
        assert!(!project.path().join("env.lock").exists());
    }
}

#[test]
fn a_key_outside_the_keyring_is_refused() {
    let project = project_with_app();
    project.write_env(&["python3"]);
    FixtureRepository::new(&project.path().join("other"))
        .write_keyring(&project.path().join("archive.gpg"));
    let outcome = project.env(&["lock"]);
    assert_eq!(outcome.code, Some(1), "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("is not signed by any key in"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn a_release_the_mirror_does_not_serve() {
    let project = project_with_app();
    let text = format!(
        "base \"debian:trixie\"\nmirror \"{}\" keyring=\"archive.gpg\"\npackages \"git\"\n",
        project.repository.url()
    );
    std::fs::write(project.path().join("env.kdl"), text).unwrap();
    let outcome = project.env(&["lock"]);
    assert_eq!(outcome.code, Some(1), "{}", outcome.transcript());
    assert!(
        outcome
            .stderr
            .contains("the mirror does not serve `trixie`"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("dists/trixie/InRelease"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn unsolvable_requests_are_explained() {
    let project = Project::new();
    let extra = [
        project
            .repository
            .package("python3-foo", "1.4", "Priority: optional"),
        project.repository.package(
            "app",
            "1.0",
            "Priority: optional\nDepends: python3-foo (>= 2.0)",
        ),
    ];
    let mut all = minimal_archive(&project.repository);
    all.push_str(&extra.concat());
    project.repository.suite("bookworm", &all);
    project.write_env(&["app"]);
    let outcome = project.env(&["lock"]);
    assert_eq!(outcome.code, Some(2), "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("python3-foo (>= 2.0) is required by app, which is required by your packages, but bookworm has python3-foo 1.4"),
        "{}",
        outcome.stderr
    );
    project.write_env(&["ap"]);
    let outcome = project.env(&["lock"]);
    assert!(
        outcome
            .stderr
            .contains("package `ap` is not in bookworm; did you mean one of: `app`, `apt`?"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn inspect_reports_the_lock() {
    let project = project_with_app();
    project.write_env(&["git"]);
    assert_eq!(project.env(&["lock"]).code, Some(0));
    let outcome = project.env(&["inspect", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(json["lock"]["release"], "bookworm");
    let git = json["lock"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "git")
        .unwrap();
    assert_eq!(git["version"], "1:2.39.5-0+deb12u1");
    assert_eq!(git["arch"], "amd64");
    assert_eq!(git["layer"], "packages");
    assert_eq!(git["requested"], true);
    assert_eq!(git["sha256"].as_str().unwrap().len(), 64);
}

/// The network tier: locks `env_text` against the Debian mirror of the host's apt sources,
/// with one cache for the whole run; `None` when the tier is skipped.
fn lock_against_real_mirror(what: &str, env_text: &str) -> Option<String> {
    if !crate::common::network_tier(what) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("env.kdl"), env_text).unwrap();
    let outcome = run(envkit(dir.path(), &["lock"]).env("ENVKIT_CACHE_DIR", shared_cache()));
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    let check = run(&mut envkit(dir.path(), &["lock", "--check"]));
    assert_eq!(check.code, Some(0), "{}", check.transcript());
    let lock = std::fs::read_to_string(dir.path().join("env.lock")).unwrap();
    assert!(
        !lock.contains("package \"usrmerge\""),
        "never usrmerge:\n{lock}"
    );
    Some(lock)
}

#[test]
fn locks_python_against_the_real_mirror() {
    let env = "base \"debian:bookworm\"\npackages \"python3\" \"python3-pytest\"\n";
    let Some(lock) =
        lock_against_real_mirror("locking bookworm against the real Debian mirror", env)
    else {
        return;
    };
    for expected in [
        "package \"python3\"",
        "package \"python3-pytest\"",
        "package \"libc6\"",
        "package \"usr-is-merged\"",
    ] {
        assert!(lock.contains(expected), "{expected} missing:\n{lock}");
    }
}

#[test]
fn locks_trixie_against_the_real_mirror() {
    let env = "base \"debian:trixie\"\npackages \"python3\"\n";
    let Some(lock) = lock_against_real_mirror("locking trixie against the real Debian mirror", env)
    else {
        return;
    };
    assert!(lock.contains("release \"trixie\""), "{lock}");
    assert!(lock.contains("package \"python3\""), "{lock}");
}

/// One cache for every network test of the run, so indexes are fetched once.
fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envkit-shared-cache")
}

#[test]
fn an_unreachable_mirror_names_the_url() {
    let project = project_with_app();
    let text = "base \"debian:bookworm\"\nmirror \"http://127.0.0.1:9/debian\" keyring=\"archive.gpg\"\npackages \"git\"\n";
    std::fs::write(project.path().join("env.kdl"), text).unwrap();
    let outcome = project.env(&["lock"]);
    assert_eq!(outcome.code, Some(1), "{}", outcome.transcript());
    assert!(
        outcome
            .stderr
            .contains("error: cannot reach `http://127.0.0.1:9/debian/dists/bookworm/InRelease`"),
        "{}",
        outcome.stderr
    );
    assert!(!project.path().join("env.lock").exists());
}
