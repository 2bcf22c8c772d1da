//! Escapes, as root and as an unprivileged user (made here, with a subordinate range): a
//! process inside sees none of the host's processes, gains nothing from a setuid binary of the
//! image, cannot mount, and what it writes outside its mounts and volumes dies with the session
//! (root, network tier: the image is built from the mirror).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use envkit::kernel::userns::idmap::free_range_start;

use crate::can_test;
use crate::common::{Outcome, env_binary, run};

const USER: &str = "envkit-escapes";
const ENV: &str = "name \"escapes\"\nbase \"debian:bookworm\"\nmount \".\" at=\"/work\"\n";

/// The test's unprivileged user, made once, with one subordinate uid and gid range.
fn ensure_user() -> (u32, u32) {
    if nix::unistd::User::from_name(USER).unwrap().is_none() {
        let made = Command::new("useradd")
            .args(["-m", "-s", "/bin/bash", USER])
            .status()
            .unwrap();
        assert!(made.success(), "useradd {USER}");
    }
    let user = nix::unistd::User::from_name(USER).unwrap().unwrap();
    for (file, flag) in [
        ("/etc/subuid", "--add-subuids"),
        ("/etc/subgid", "--add-subgids"),
    ] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text
            .lines()
            .any(|line| line.starts_with(&format!("{USER}:")))
        {
            continue;
        }
        let start = free_range_start(&std::fs::read_to_string("/etc/subuid").unwrap_or_default())
            .max(free_range_start(
                &std::fs::read_to_string("/etc/subgid").unwrap_or_default(),
            ));
        let range = format!("{start}-{}", start + 65_535);
        let added = Command::new("usermod")
            .args([flag, &range, USER])
            .status()
            .unwrap();
        assert!(added.success(), "usermod {flag} {range}");
    }
    (user.uid.as_raw(), user.gid.as_raw())
}

/// A project and envkit's folders, owned by whoever runs the sessions.
struct Place {
    root: tempfile::TempDir,
    ids: Option<(u32, u32)>,
}

impl Place {
    fn new(ids: Option<(u32, u32)>) -> Place {
        let root = tempfile::tempdir().unwrap();
        for dir in ["project", "store", "cache", "data", "run"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("project/env.kdl"), ENV).unwrap();
        if let Some((uid, gid)) = ids {
            for entry in walkdir::WalkDir::new(root.path()) {
                let entry = entry.unwrap();
                std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid)).unwrap();
            }
        }
        Place { root, ids }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn env(&self, args: &[&str]) -> Outcome {
        let mut command = Command::new(env_binary());
        command
            .args(args)
            .current_dir(self.path("project"))
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("NO_COLOR", "1")
            .env("HOME", self.path("project"))
            .env("ENVKIT_CACHE_DIR", self.path("cache"))
            .env("ENVKIT_STORE_DIR", self.path("store"))
            .env("ENVKIT_DATA_DIR", self.path("data"))
            .env("ENVKIT_RUNTIME_DIR", self.path("run"))
            .stdin(Stdio::null());
        if let Some((uid, gid)) = self.ids {
            command.uid(uid).gid(gid);
        }
        run(&mut command)
    }
}

/// What a session tries, one line per attempt.
const ATTEMPTS: &str = r#"
echo "nonewprivs $(grep NoNewPrivs /proc/self/status | cut -f2)"
echo "processes $(ls /proc | grep -c '^[0-9]')"
if cat /proc/[0-9]*/comm 2>/dev/null | grep -qx sleep; then echo "host process seen"; fi
su -c 'echo su gave root' root </dev/null >/dev/null 2>&1; echo "su $?"
mount -t tmpfs escape /mnt 2>/dev/null; echo "mount $?"
mknod /tmp/disk b 8 0 2>/dev/null; echo "mknod $?"
echo "capabilities $(grep CapEff /proc/self/status | cut -f2)"
for path in /etc/escaped /tmp/escaped /escaped; do echo inside > $path 2>/dev/null && echo "wrote $path"; done
echo kept > /work/kept && echo "wrote the mount"
"#;

/// The line of `output` that starts with `label `, without the label.
fn answer<'a>(output: &'a str, label: &str) -> &'a str {
    output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{label} ")))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{output}"))
}

fn escapes_are_refused(ids: Option<(u32, u32)>, who: &str) {
    let place = Place::new(ids);
    let build = place.env(&["build"]);
    assert_eq!(build.code, Some(0), "{who}: {}", build.transcript());
    // A process of the host (a `sleep`, which the session itself never runs).
    let mut marker = Command::new("sleep").arg("600").spawn().unwrap();
    let ran = place.env(&["run", "--", "sh", "-c", ATTEMPTS]);
    let _ = marker.kill();
    let _ = marker.wait();
    assert_eq!(ran.code, Some(0), "{who}: {}", ran.transcript());
    let out = ran.stdout.as_str();
    assert_eq!(answer(out, "nonewprivs"), "1", "{who}: {out}");
    let processes: usize = answer(out, "processes").parse().unwrap();
    assert!(
        processes <= 5,
        "{who}: {processes} processes visible:\n{out}"
    );
    assert!(!out.contains("host process seen"), "{who}: {out}");
    assert_ne!(
        answer(out, "mount"),
        "0",
        "{who} mounted a file system: {out}"
    );
    assert_ne!(answer(out, "mknod"), "0", "{who} made a device node: {out}");
    let capabilities = u64::from_str_radix(answer(out, "capabilities"), 16).unwrap();
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    const CAP_SYS_MODULE: u64 = 1 << 16;
    const CAP_SYS_PTRACE: u64 = 1 << 19;
    assert_eq!(
        capabilities & (CAP_SYS_ADMIN | CAP_SYS_MODULE | CAP_SYS_PTRACE),
        0,
        "{who}: capabilities {capabilities:x}"
    );
    if ids.is_some() {
        // A setuid root binary of the image gives the user nothing.
        assert_ne!(answer(out, "su"), "0", "{who}: su gave root: {out}");
        assert_eq!(capabilities, 0, "{who}: capabilities {capabilities:x}");
    }
    assert!(out.contains("wrote the mount"), "{who}: {out}");
    // What was written outside the mounts died with the session; the mount kept its file.
    for path in ["/etc/escaped", "/tmp/escaped", "/escaped"] {
        assert!(
            !std::path::Path::new(path).exists(),
            "{who}: {path} reached the host"
        );
    }
    let in_store = walkdir::WalkDir::new(place.path("store"))
        .into_iter()
        .flatten()
        .any(|entry| entry.file_name() == "escaped");
    assert!(!in_store, "{who}: a session's write reached a layer");
    let again = place.env(&[
        "run",
        "--",
        "sh",
        "-c",
        "cat /etc/escaped /tmp/escaped /escaped 2>/dev/null; true",
    ]);
    assert_eq!(
        again.stdout, "",
        "{who}: the next session sees the last one's writes"
    );
    assert_eq!(
        std::fs::read_to_string(place.path("project/kept")).unwrap(),
        "kept\n",
        "{who}"
    );
}

#[test]
fn a_session_of_root_sees_no_host_process_and_gains_nothing() {
    let _turn = crate::exclusive();
    if !can_test("escapes as root") {
        return;
    }
    escapes_are_refused(None, "root");
}

#[test]
fn a_session_of_an_unprivileged_user_sees_no_host_process_and_gains_nothing() {
    let _turn = crate::exclusive();
    if !can_test("escapes as an unprivileged user") {
        return;
    }
    let ids = ensure_user();
    escapes_are_refused(Some(ids), "an unprivileged user");
}

#[test]
fn a_session_cannot_reach_another_projects_volume() {
    let _turn = crate::exclusive();
    if !can_test("another project's volume") {
        return;
    }
    // Two projects of one user: same store, same data folder, a volume each.
    let place = Place::new(None);
    let other = place.path("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        place.path("project/env.kdl"),
        format!("{ENV}volume \"mine\" at=\"/data\"\n"),
    )
    .unwrap();
    std::fs::write(
        other.join("env.kdl"),
        "name \"neighbour\"\nbase \"debian:bookworm\"\nvolume \"theirs\" at=\"/data\"\n",
    )
    .unwrap();
    let neighbour = |args: &[&str]| {
        let mut command = Command::new(env_binary());
        command
            .args(args)
            .current_dir(&other)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("NO_COLOR", "1")
            .env("HOME", &other)
            .env("ENVKIT_CACHE_DIR", place.path("cache"))
            .env("ENVKIT_STORE_DIR", place.path("store"))
            .env("ENVKIT_DATA_DIR", place.path("data"))
            .env("ENVKIT_RUNTIME_DIR", place.path("run"))
            .stdin(Stdio::null());
        run(&mut command)
    };
    let wrote = neighbour(&[
        "run",
        "--",
        "sh",
        "-c",
        "echo neighbours-secret > /data/secret",
    ]);
    assert_eq!(wrote.code, Some(0), "{}", wrote.transcript());
    let volumes = place.path("data");
    let looked = place.env(&[
        "run",
        "--",
        "sh",
        "-c",
        &format!(
            "ls /data; grep -rs neighbours-secret / --exclude-dir=proc --exclude-dir=sys -l; \
             ls {} 2>&1; true",
            volumes.display()
        ),
    ]);
    assert_eq!(looked.code, Some(0), "{}", looked.transcript());
    // No file anywhere inside holds the neighbour's secret, its own /data does not list it,
    // and the host's volume folder is not there at all.
    assert!(
        !looked
            .stdout
            .lines()
            .any(|line| line == "secret" || line.ends_with("/secret")),
        "the neighbour's volume is visible: {}",
        looked.stdout
    );
    assert!(looked.stdout.contains("No such file"), "{}", looked.stdout);
    // Its own volume is there, and empty of the neighbour's file.
    let own = place.env(&[
        "run",
        "--",
        "sh",
        "-c",
        "test -d /data && ! test -e /data/secret",
    ]);
    assert_eq!(own.code, Some(0), "{}", own.transcript());
}
