//! A lock that outlives its mirror: locked against one state of a signed fixture repository,
//! which then moves on and drops the locked version. With an empty download cache the build
//! names what is gone and the ways out; with a snapshot archive (a fixture with the layout of
//! Debian's snapshot service, serving the old files at the lock's index date) it builds what
//! the lock says (root, network tier: the base set comes from the mirror once).

use envkit::solve::lockfile::Lock;

use crate::can_test;
use crate::fixture::{repository_with_the_real_base_set, simple_deb};
use crate::project::{Project, assert_only_finished_layers};

#[test]
fn a_lock_whose_package_left_the_mirror_builds_from_the_snapshot_archive() {
    let _turn = crate::exclusive();
    if !can_test("a lock that outlives its mirror") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (repository, base) = repository_with_the_real_base_set(dir.path());
    let repository = repository.date("Sat, 01 Nov 2025 09:30:00 UTC");
    let old = repository.deb(
        "greeting",
        "1.0",
        &simple_deb(
            "greeting",
            "1.0",
            &[("usr/share/greeting", "hello from 1.0\n")],
        ),
        "Priority: optional",
    );
    repository.suite("bookworm", &format!("{base}{old}"));
    let keyring = repository.write_keyring(&dir.path().join("archive.gpg"));
    let snapshot = dir.path().join("snapshot");
    let mirror_url = repository.url();
    let env = |with_snapshot: bool| {
        let mut env = format!(
            "base \"debian:bookworm\"\nmirror \"{mirror_url}\" keyring=\"{}\"\npackages \"greeting\"\n",
            keyring.display()
        );
        if with_snapshot {
            env.push_str(&format!("snapshot \"file://{}\"\n", snapshot.display()));
        }
        env
    };

    // Each project starts with an empty download cache, as a new machine (or CI) does.
    let project = Project::alone(&env(false));
    let locked = project.env(&["lock"]);
    assert_eq!(locked.code, Some(0), "{}", locked.transcript());
    let lock_text = std::fs::read_to_string(project.dir.path().join("env.lock")).unwrap();
    let lock = Lock::parse(&lock_text).unwrap();
    let greeting = lock.packages.iter().find(|p| p.name == "greeting").unwrap();
    assert_eq!(greeting.version, "1.0");
    let index_date = &lock.indexes[0].date;

    // The repository moves on: 2.0 replaces 1.0, whose file leaves the pool.
    let old_file = repository.root.join(&greeting.path);
    let old_bytes = std::fs::read(&old_file).unwrap();
    std::fs::remove_file(&old_file).unwrap();
    let repository = repository.date("Mon, 01 Dec 2025 09:30:00 UTC");
    let new = repository.deb(
        "greeting",
        "2.0",
        &simple_deb(
            "greeting",
            "2.0",
            &[("usr/share/greeting", "hello from 2.0\n")],
        ),
        "Priority: optional",
    );
    repository.suite("bookworm", &format!("{base}{new}"));

    let built = project.env(&["build"]);
    assert_ne!(built.code, Some(0), "{}", built.transcript());
    assert!(
        built
            .stderr
            .contains("the mirror no longer serves greeting 1.0"),
        "{}",
        built.transcript()
    );
    for way_out in [
        "snapshot \"URL\"",
        "ENVKIT_SNAPSHOT",
        "`cache`",
        "env lock --update",
    ] {
        assert!(built.stderr.contains(way_out), "{}", built.transcript());
    }
    assert_only_finished_layers(&project.state().join("store"), "a package gone");

    // The snapshot archive holds the repository's state at the lock's index date.
    let timestamp =
        envkit::snapshot::timestamp(envkit::civil_time::rfc2822_epoch(index_date).unwrap());
    assert_eq!(timestamp, "20251101T093000Z");
    let held = snapshot
        .join("archive/debian")
        .join(&timestamp)
        .join(&greeting.path);
    std::fs::create_dir_all(held.parent().unwrap()).unwrap();
    std::fs::write(&held, &old_bytes).unwrap();

    let project = Project::alone(&env(true));
    std::fs::write(project.dir.path().join("env.lock"), &lock_text).unwrap();
    let built = project.env(&["build"]);
    assert_eq!(built.code, Some(0), "{}", built.transcript());
    assert!(
        built
            .stderr
            .contains("greeting 1.0 is gone from the mirror; fetched from the snapshot archive"),
        "{}",
        built.transcript()
    );
    let greeted = project.env(&["run", "--", "cat", "/usr/share/greeting"]);
    assert_eq!(
        greeted.stdout,
        "hello from 1.0\n",
        "{}",
        greeted.transcript()
    );
    assert_eq!(
        std::fs::read_to_string(project.dir.path().join("env.lock")).unwrap(),
        lock_text,
        "the lock is what was built, unchanged"
    );
    let verified = project.env(&["verify"]);
    assert_eq!(verified.code, Some(0), "{}", verified.transcript());

    // A snapshot archive that serves other bytes under the old name is refused.
    let project = Project::alone(&env(true));
    std::fs::write(project.dir.path().join("env.lock"), &lock_text).unwrap();
    std::fs::write(&held, b"not the locked file").unwrap();
    let built = project.env(&["build"]);
    assert_ne!(built.code, Some(0), "{}", built.transcript());
    assert!(
        built.stderr.contains("cannot download greeting 1.0"),
        "{}",
        built.transcript()
    );
}
