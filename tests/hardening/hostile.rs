//! Hostile packages served end to end: a signed fixture repository holds the real bookworm
//! base set and one hostile `.deb` per attack. `env build` of an environment asking for one must refuse it naming the
//! package, write nothing outside its layer, and leave a store the next build uses (root,
//! network tier: the base set comes from the mirror once).

use std::path::{Path, PathBuf};

use envkit::debian::testing::{
    Tar, Z, ar, compress, deb_with_control, garbled_data, huge_member, suffix,
};
use envkit::solve::fixture::FixtureRepository;

use crate::can_test;
use crate::fixture::repository_with_the_real_base_set;
use crate::project::{Project, assert_only_finished_layers, stray};

/// Enough `../` to climb from any layer's tree to `/` (the store is a few folders deep), short
/// enough for a plain tar header.
fn climb() -> String {
    "../".repeat(16)
}

/// The control file of hostile package `name`.
fn control(name: &str) -> String {
    format!(
        "Package: {name}\nVersion: 1.0\nArchitecture: amd64\nMaintainer: Test <t@envkit.invalid>\nDescription: hostile\n"
    )
}

/// A `.deb` whose data archive is `data` (gzip).
fn deb(name: &str, data: &[u8]) -> Vec<u8> {
    deb_with_control(&control(name), data, Z::Gzip)
}

/// A `.deb` whose data member is `member`, holding `bytes` as given.
fn raw_deb(name: &str, member: &str, bytes: &[u8]) -> Vec<u8> {
    let control = compress(
        &Tar::new()
            .dir("./", 0o755)
            .file("./control", 0o644, control(name).as_bytes())
            .finish(),
        Z::Gzip,
    );
    ar(&[
        ("debian-binary", b"2.0\n"),
        ("control.tar.gz", &control),
        (member, bytes),
    ])
}

/// One attack: the package, its `.deb`, and words the refusal must hold.
struct Attack {
    package: &'static str,
    deb: Vec<u8>,
    refusal: &'static str,
}

fn attacks(outside: &Path) -> Vec<Attack> {
    let outside_from_root = outside.strip_prefix("/").unwrap().display().to_string();
    let dotdot = format!("./{}{outside_from_root}/dotdot", climb());
    let truncated = {
        let whole = deb(
            "hostile-truncated",
            &Tar::new()
                .dir("./", 0o755)
                .file("./usr/share/f", 0o644, &[1; 8192])
                .finish(),
        );
        whole[..whole.len() / 2].to_vec()
    };
    let ten_megabyte_field = deb_with_control(
        &format!(
            "{}X-Padding: {}\n",
            control("hostile-control"),
            "x".repeat(10 << 20)
        ),
        &Tar::new().dir("./", 0o755).finish(),
        Z::Gzip,
    );
    let mut list = vec![
        Attack {
            package: "hostile-dotdot",
            deb: deb(
                "hostile-dotdot",
                &Tar::new().file(&dotdot, 0o644, b"escaped").finish(),
            ),
            refusal: "`..` component",
        },
        Attack {
            package: "hostile-absolute",
            deb: deb(
                "hostile-absolute",
                &Tar::new()
                    .file(&format!("{}/absolute", outside.display()), 0o644, b"x")
                    .finish(),
            ),
            refusal: "its path is absolute",
        },
        Attack {
            package: "hostile-symlink",
            deb: deb(
                "hostile-symlink",
                &Tar::new()
                    .dir("./usr/", 0o755)
                    .symlink("./usr/hostile", &format!("{}{outside_from_root}", climb()))
                    .file("./usr/hostile/through-a-symlink", 0o644, b"x")
                    .finish(),
            ),
            refusal: "a symlink the same package declares",
        },
        Attack {
            package: "hostile-hardlink",
            deb: deb(
                "hostile-hardlink",
                &Tar::new()
                    .hard_link("./usr/passwd", &format!("{}etc/passwd", climb()))
                    .finish(),
            ),
            refusal: "hard link target",
        },
        Attack {
            package: "hostile-device",
            deb: deb(
                "hostile-device",
                &Tar::new()
                    .push(tar::EntryType::Block, "./dev/disk", "", 0o660, 0, 0, b"")
                    .finish(),
            ),
            refusal: "block device",
        },
        Attack {
            package: "hostile-huge",
            deb: raw_deb("hostile-huge", "data.tar", &huge_member("usr/share/huge")),
            refusal: "hostile-huge",
        },
        Attack {
            package: "hostile-truncated",
            deb: truncated,
            refusal: "hostile-truncated",
        },
        Attack {
            package: "hostile-control",
            deb: ten_megabyte_field,
            refusal: "more than a control file can be",
        },
    ];
    for (z, package) in [
        (Z::Gzip, "hostile-gzip"),
        (Z::Xz, "hostile-xz"),
        (Z::Zstd, "hostile-zstd"),
    ] {
        list.push(Attack {
            package,
            deb: raw_deb(
                package,
                &format!("data.tar{}", suffix(z)),
                &garbled_data("usr/share/big", z),
            ),
            refusal: package,
        });
    }
    list
}

fn env_file(repository: &FixtureRepository, keyring: &Path, package: &str) -> String {
    format!(
        "base \"debian:bookworm\"\nmirror \"{}\" keyring=\"{}\"\npackages \"{package}\"\n",
        repository.url(),
        keyring.display()
    )
}

/// What is in `dir`, as sorted names.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn hostile_packages_from_a_signed_repository_are_refused_and_the_store_stays_usable() {
    let _turn = crate::exclusive();
    if !can_test("hostile packages through `env build`") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The folder every attack aims at, outside the store and the project.
    let outside: PathBuf = tempfile::tempdir_in("/tmp").unwrap().keep();
    std::fs::write(outside.join("victim"), b"original").unwrap();
    let passwd_before = std::fs::read("/etc/passwd").unwrap();

    let (repository, mut stanzas) = repository_with_the_real_base_set(dir.path());
    let attacks = attacks(&outside);
    for attack in &attacks {
        stanzas.push_str(&repository.deb(attack.package, "1.0", &attack.deb, "Priority: optional"));
    }
    let setuid_id = Tar::new()
        .dir("./", 0o755)
        .dir("./usr/", 0o755)
        .dir("./usr/local/", 0o755)
        .dir("./usr/local/bin/", 0o755)
        .file(
            "./usr/local/bin/hostile-id",
            0o4755,
            &std::fs::read("/usr/bin/id").unwrap(),
        )
        .finish();
    stanzas.push_str(&repository.deb(
        "hostile-setuid",
        "1.0",
        &deb("hostile-setuid", &setuid_id),
        "Priority: optional",
    ));
    repository.suite("bookworm", &stanzas);
    let keyring = repository.write_keyring(&dir.path().join("archive.gpg"));

    let state = tempfile::tempdir().unwrap();
    for attack in &attacks {
        let project = Project::sharing_state(
            &env_file(&repository, &keyring, attack.package),
            Some(state.path()),
        );
        let locked = project.env(&["lock"]);
        assert_eq!(locked.code, Some(0), "{}", locked.transcript());
        let built = project.env(&["build"]);
        assert_ne!(built.code, Some(0), "{}", built.transcript());
        assert!(
            built.stderr.contains(attack.package) && built.stderr.contains(attack.refusal),
            "{}: the refusal must name the package and say `{}`:\n{}",
            attack.package,
            attack.refusal,
            built.transcript()
        );
        assert!(!built.stderr.contains("panicked"), "{}", built.transcript());
        assert_eq!(
            names_in(&outside),
            ["victim"],
            "{}: written outside the layer",
            attack.package
        );
        assert_only_finished_layers(&state.path().join("store"), attack.package);
    }
    assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"original");
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd_before);

    // The store that refused them all builds the next environment, which verifies.
    let project = Project::sharing_state(
        &env_file(&repository, &keyring, "hostile-setuid"),
        Some(state.path()),
    );
    assert_eq!(project.env(&["lock"]).code, Some(0));
    let built = project.env(&["build"]);
    assert_eq!(built.code, Some(0), "{}", built.transcript());
    let verified = project.env(&["verify"]);
    assert_eq!(verified.code, Some(0), "{}", verified.transcript());
    // Kept as dpkg keeps it (`su` needs its bit); sessions run with no new privileges, which
    // `escapes` proves for an unprivileged user.
    let mode = project.env(&["run", "--", "stat", "-c", "%a", "/usr/local/bin/hostile-id"]);
    assert_eq!(mode.stdout.trim(), "4755", "{}", mode.transcript());
    // The download cache is shared with other tests, so only the store is judged.
    let stray_in_store: Vec<String> = stray(&project)
        .into_iter()
        .filter(|line| !line.starts_with("would delete download"))
        .collect();
    assert_eq!(stray_in_store, Vec::<String>::new());
    std::fs::remove_dir_all(&outside).unwrap();
}
