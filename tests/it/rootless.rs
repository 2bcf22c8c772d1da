//! envkit for an unprivileged user, set up by root (root, network tier): a user with a
//! subordinate id range builds the same image as root from the same env.lock, is themself in
//! sessions and owns what they create in the project mount; root inside writes as their
//! subordinate root, envkit says so and `env fix-owner` gives the files back. A user without a
//! range is told how to get one.
//!
//! The users are made once with `useradd` and reused; their files live in temporary folders
//! they own. The `.deb`s come from the shared cache, so the rootless build downloads nothing.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use envkit::kernel::userns::idmap::{IdRange, find_range, free_range_start};

use crate::common::{Outcome, env_binary, must_work, run};
use crate::run::{IMAGE_ENV, can_enter, shared_cache, shared_image};

/// A user with a subordinate range.
pub const WITH_RANGE: &str = "envkit-rootless";
/// A user whose subordinate ranges are removed.
const WITHOUT_RANGE: &str = "envkit-norange";

/// /etc/subuid and /etc/subgid are edited by one test at a time.
static SUBORDINATE_FILES: Mutex<()> = Mutex::new(());

/// Root, useradd, newuidmap and the mirror (for root's build), or a printed reason to skip.
pub fn can_test(what: &str) -> bool {
    if !can_enter(what) {
        return false;
    }
    for tool in ["useradd", "usermod", "newuidmap", "newgidmap"] {
        let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .any(|dir| Path::new(dir).join(tool).exists());
        if !found {
            assert!(
                !must_work(),
                "ENVKIT_MUST_WORK=1 but {what} needs `{tool}` (packages passwd, uidmap)"
            );
            eprintln!("skipped: {what} needs `{tool}`");
            return false;
        }
    }
    true
}

/// A user made for these tests.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Makes `name` with `useradd -m` unless it exists; gives it exactly one subordinate uid and
/// gid range, or none.
pub fn ensure_user(name: &str, with_range: bool) -> TestUser {
    let _guard = SUBORDINATE_FILES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if nix::unistd::User::from_name(name).unwrap().is_none() {
        let status = Command::new("useradd")
            .args(["-m", "-s", "/bin/bash", name])
            .status()
            .unwrap();
        assert!(status.success(), "useradd {name}");
    }
    let user = nix::unistd::User::from_name(name).unwrap().unwrap();
    for (file, flag) in [
        ("/etc/subuid", "--add-subuids"),
        ("/etc/subgid", "--add-subgids"),
    ] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let is_theirs = |line: &str| {
            let owner = line.split(':').next().unwrap_or_default();
            owner == name || owner == user.uid.as_raw().to_string()
        };
        let theirs = text.lines().filter(|l| is_theirs(l)).count();
        if with_range && theirs == 0 {
            let start =
                free_range_start(&std::fs::read_to_string("/etc/subuid").unwrap_or_default()).max(
                    free_range_start(&std::fs::read_to_string("/etc/subgid").unwrap_or_default()),
                );
            let range = format!("{start}-{}", start + 65_535);
            let status = Command::new("usermod")
                .args([flag, &range, name])
                .status()
                .unwrap();
            assert!(status.success(), "usermod {flag} {range} {name}");
        } else if (with_range && theirs > 1) || (!with_range && theirs > 0) {
            let mut first = with_range;
            let kept: String = text
                .lines()
                .filter(|line| {
                    if !is_theirs(line) {
                        return true;
                    }
                    std::mem::replace(&mut first, false)
                })
                .map(|line| format!("{line}\n"))
                .collect();
            let temporary = format!("{file}.envkit-test");
            std::fs::write(&temporary, kept).unwrap();
            std::fs::rename(&temporary, file).unwrap();
        }
    }
    TestUser {
        name: name.to_string(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: user.dir,
    }
}

/// The user's subordinate range in `file`.
fn range_of(user: &TestUser, file: &str) -> IdRange {
    let text = std::fs::read_to_string(file).unwrap();
    find_range(&text, &user.name, user.uid).expect("a subordinate range")
}

/// A folder tree owned by the user: cache (with the shared `.deb`s of `lock`), store, data,
/// runtime and a project with env.kdl and env.lock.
pub struct UserFolders {
    root: tempfile::TempDir,
}

impl UserFolders {
    pub fn new(user: &TestUser, env: &str, lock: &str) -> UserFolders {
        let root = tempfile::tempdir().unwrap();
        let folders = UserFolders { root };
        let debs = folders.cache().join("debs-v1");
        for dir in [
            &debs,
            &folders.store(),
            &folders.data(),
            &folders.runtime(),
            &folders.project(),
        ] {
            std::fs::create_dir_all(dir).unwrap();
        }
        // A lock without packages (a registry image's) needs none, and there may be none.
        let shared = std::fs::read_dir(shared_cache().join("debs-v1"));
        for entry in shared.into_iter().flatten() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let Some(sha256) = name.strip_suffix(".deb") else {
                continue;
            };
            if lock.contains(sha256) {
                std::fs::copy(&path, debs.join(&name)).unwrap();
            }
        }
        std::fs::write(folders.project().join("env.kdl"), env).unwrap();
        std::fs::write(folders.project().join("env.lock"), lock).unwrap();
        for entry in walkdir::WalkDir::new(folders.root.path()) {
            let entry = entry.unwrap();
            std::os::unix::fs::lchown(entry.path(), Some(user.uid), Some(user.gid)).unwrap();
        }
        folders
    }

    /// Writes a file in the project, owned by the user.
    pub fn add_file(&self, user: &TestUser, relative: &str, contents: &str) {
        let path = self.project().join(relative);
        let parent = path.parent().unwrap();
        std::fs::create_dir_all(parent).unwrap();
        std::fs::write(&path, contents).unwrap();
        for owned in [parent, path.as_path()] {
            std::os::unix::fs::lchown(owned, Some(user.uid), Some(user.gid)).unwrap();
        }
    }

    /// Copies the `.deb`s of another lock from the shared cache, owned by the user.
    pub fn add_debs(&self, user: &TestUser, lock: &str) {
        let debs = self.cache().join("debs-v1");
        for entry in std::fs::read_dir(shared_cache().join("debs-v1")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let target = debs.join(&name);
            if name
                .strip_suffix(".deb")
                .is_some_and(|sha| lock.contains(sha))
                && !target.exists()
            {
                std::fs::copy(&path, &target).unwrap();
                std::os::unix::fs::lchown(&target, Some(user.uid), Some(user.gid)).unwrap();
            }
        }
    }

    pub fn cache(&self) -> PathBuf {
        self.root.path().join("cache")
    }
    pub fn store(&self) -> PathBuf {
        self.root.path().join("store")
    }
    pub fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }
    pub fn runtime(&self) -> PathBuf {
        self.root.path().join("run")
    }
    pub fn project(&self) -> PathBuf {
        self.root.path().join("project")
    }

    /// `env ARGS...` as the user, in the project, with a clean environment.
    pub fn env_as(&self, user: &TestUser, args: &[&str]) -> Outcome {
        run(&mut self.command_as(user, args))
    }

    pub fn command_as(&self, user: &TestUser, args: &[&str]) -> Command {
        let mut command = Command::new(env_binary());
        command
            .args(args)
            .current_dir(self.project())
            .env_clear()
            .env("HOME", &user.home)
            .env("USER", &user.name)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("NO_COLOR", "1")
            .env("ENVKIT_CACHE_DIR", self.cache())
            .env("ENVKIT_STORE_DIR", self.store())
            .env("ENVKIT_DATA_DIR", self.data())
            .env("ENVKIT_RUNTIME_DIR", self.runtime())
            // std drops root's supplementary groups when it sets the uid.
            .uid(user.uid)
            .gid(user.gid);
        command
    }
}

/// Every layer's `/usr` in the user's store is owned by `owner` (their subordinate root).
fn assert_usr_belongs_to(folders: &UserFolders, expected: (u32, u32)) {
    let usr_owners: Vec<(u32, u32)> = std::fs::read_dir(folders.store().join("layers-v1"))
        .unwrap()
        .map(|e| e.unwrap().path().join("tree/usr"))
        .filter(|usr| usr.exists())
        .map(|usr| owner(&usr))
        .collect();
    assert!(!usr_owners.is_empty());
    assert!(
        usr_owners.iter().all(|owner| *owner == expected),
        "{usr_owners:?}"
    );
}

fn owner(path: &Path) -> (u32, u32) {
    let metadata = path.symlink_metadata().unwrap();
    (metadata.uid(), metadata.gid())
}

#[test]
fn an_unprivileged_user_builds_the_same_image_and_owns_what_it_creates() {
    if !can_test("a rootless build and session") {
        return;
    }
    let image = shared_image();
    let user = ensure_user(WITH_RANGE, true);
    let (sub_uids, sub_gids) = (
        range_of(&user, "/etc/subuid"),
        range_of(&user, "/etc/subgid"),
    );
    let env = format!("{IMAGE_ENV}volume \"cache\" at=\"/cache\"\n");
    let folders = UserFolders::new(&user, &env, &image.lock);
    let project = folders.project();
    let debs_before = std::fs::read_dir(folders.cache().join("debs-v1"))
        .unwrap()
        .count();

    // The same image, bit for bit, from an empty store.
    let build = folders.env_as(&user, &["build"]);
    assert_eq!(build.code, Some(0), "{}", build.transcript());
    assert!(
        build.stderr.contains("built base layer"),
        "{}",
        build.stderr
    );
    assert!(
        build.stderr.contains(&format!("id {}", image.id)),
        "the rootless build gives root's image id {}: {}",
        image.id,
        build.stderr
    );
    let inspect = folders.env_as(&user, &["inspect", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(json["image"]["id"], image.id.as_str());
    assert_eq!(
        std::fs::read_dir(folders.cache().join("debs-v1"))
            .unwrap()
            .count(),
        debs_before,
        "nothing was downloaded"
    );
    // On disk the image's root files belong to the user's subordinate root.
    assert_usr_belongs_to(&folders, (sub_uids.start, sub_gids.start));

    // Inside, the user is themself and the image's files are root's.
    let id = folders.env_as(
        &user,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "id -u; id -g; id -un; stat -c %u:%g /usr /etc/passwd; echo $HOME; \
             touch /work/mine $HOME/at-home; touch /usr/not-mine 2>/dev/null; echo usr=$?",
        ],
    );
    assert_eq!(id.code, Some(0), "{}", id.transcript());
    assert_eq!(
        id.stdout,
        format!(
            "{}\n{}\n{}\n0:0\n0:0\n/home/{}\nusr=1\n",
            user.uid, user.gid, user.name, user.name
        )
    );
    assert!(
        !id.stderr.contains("warning"),
        "nothing to warn about: {}",
        id.stderr
    );
    assert_eq!(owner(&project.join("mine")), (user.uid, user.gid));

    // Root inside is the subordinate root on the host; envkit says so.
    let root_id = folders.env_as(&user, &["run", "--root", "--", "id", "-u"]);
    assert_eq!(root_id.code, Some(0), "{}", root_id.transcript());
    assert_eq!(root_id.stdout, "0\n");
    let root_made = folders.env_as(
        &user,
        &[
            "run",
            "--root",
            "--",
            "sh",
            "-c",
            "mkdir /work/by-root && touch /work/by-root/file /cache/by-root",
        ],
    );
    assert_eq!(root_made.code, Some(0), "{}", root_made.transcript());
    for path in ["by-root", "by-root/file"] {
        assert_eq!(
            owner(&project.join(path)),
            (sub_uids.start, sub_gids.start),
            "{path}"
        );
    }
    assert!(
        root_made.stderr.contains("warning")
            && root_made.stderr.contains("/work")
            && root_made.stderr.contains("`env fix-owner`"),
        "{}",
        root_made.stderr
    );

    // env fix-owner gives them back, and leaves alone what belongs to someone outside the
    // user's ids (another user's file, one made with sudo), which it cannot change.
    let stranger = 4242;
    assert!(
        stranger != user.uid
            && !(sub_uids.start..sub_uids.start + sub_uids.count).contains(&stranger)
    );
    std::fs::create_dir(project.join("strangers")).unwrap();
    std::fs::write(project.join("strangers/file"), "theirs").unwrap();
    std::fs::set_permissions(
        project.join("strangers"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    for path in ["strangers/file", "strangers"] {
        std::os::unix::fs::lchown(project.join(path), Some(stranger), Some(stranger)).unwrap();
    }
    let fixed = folders.env_as(&user, &["fix-owner"]);
    assert_eq!(fixed.code, Some(0), "{}", fixed.transcript());
    assert!(fixed.stderr.contains("gave 2 file(s)"), "{}", fixed.stderr);
    for path in ["by-root", "by-root/file", "mine", "env.kdl"] {
        assert_eq!(owner(&project.join(path)), (user.uid, user.gid), "{path}");
    }
    for path in ["strangers", "strangers/file"] {
        assert_eq!(owner(&project.join(path)), (stranger, stranger), "{path}");
    }
    let again = folders.env_as(&user, &["fix-owner"]);
    assert_eq!(again.code, Some(0), "{}", again.transcript());
    assert!(
        again.stderr.contains("already belongs to"),
        "{}",
        again.stderr
    );

    // On a terminal the user's shell has a terminal of their own, with a name.
    let mut shell = folders.command_as(&user, &["shell"]);
    shell.env("TERM", "dumb");
    let mut session = rexpect::session::spawn_command(shell, Some(60_000)).unwrap();
    let prompt = format!("{}@py:/work$ ", user.name);
    session.exp_string(&prompt).unwrap();
    session
        .send_line("test -O \"$(tty)\" && echo own\"\"-tty")
        .unwrap();
    session.exp_string("own-tty").unwrap();
    session.exp_string(&prompt).unwrap();
    session.send_line("exit 3").unwrap();
    session.exp_eof().unwrap();
    match session.process().wait().unwrap() {
        rexpect::process::WaitStatus::Exited(_, code) => assert_eq!(code, 3),
        other => panic!("envkit did not exit: {other:?}"),
    }

    // A volume holding subordinate root's files is still the user's to delete.
    let removed = folders.env_as(&user, &["volume", "rm", "cache"]);
    assert_eq!(removed.code, Some(0), "{}", removed.transcript());
    let listed = folders.env_as(&user, &["volume", "ls", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed, serde_json::json!([]), "{listed}");
    let sessions = folders.runtime().join("sessions");
    assert_eq!(
        std::fs::read_dir(&sessions).map_or(0, |d| d.count()),
        0,
        "no session scratch is left"
    );
}

#[test]
fn a_user_without_subordinate_ids_is_told_how_to_get_them() {
    if !can_test("a rootless build without subordinate ids") {
        return;
    }
    let image = shared_image();
    let user = ensure_user(WITHOUT_RANGE, false);
    let folders = UserFolders::new(&user, IMAGE_ENV, &image.lock);
    for args in [&["build"][..], &["run", "--", "true"][..]] {
        let outcome = folders.env_as(&user, args);
        assert_eq!(outcome.code, Some(2), "{args:?}: {}", outcome.transcript());
        assert!(
            outcome.stderr.contains(&format!(
                "user `{WITHOUT_RANGE}` has no subordinate uid range in /etc/subuid"
            )),
            "{}",
            outcome.stderr
        );
        assert!(
            outcome.stderr.contains("usermod --add-subuids")
                && outcome.stderr.contains(&format!(" {WITHOUT_RANGE}`")),
            "{}",
            outcome.stderr
        );
    }
    assert!(
        !folders.store().join("layers-v1").exists(),
        "nothing was built"
    );
}

#[test]
fn an_unprivileged_user_pulls_what_root_pushed_and_runs_it_without_building() {
    if !can_test("a rootless pull") || !crate::registry::can_test("a rootless pull") {
        return;
    }
    let image = shared_image();
    let registry = crate::registry::Registry::start(None);
    let pushed_from = tempfile::tempdir().unwrap();
    std::fs::write(pushed_from.path().join("env.kdl"), IMAGE_ENV).unwrap();
    std::fs::write(pushed_from.path().join("env.lock"), &image.lock).unwrap();
    let reference = format!("{}/team/py", registry.address);
    let push = run(
        crate::common::envkit(pushed_from.path(), &["push", "--insecure", &reference])
            .env("ENVKIT_CACHE_DIR", shared_cache())
            .env("ENVKIT_STORE_DIR", crate::run::shared_store()),
    );
    assert_eq!(push.code, Some(0), "{}", push.transcript());

    let user = ensure_user(WITH_RANGE, true);
    let (sub_uids, sub_gids) = (
        range_of(&user, "/etc/subuid"),
        range_of(&user, "/etc/subgid"),
    );
    let folders = UserFolders::new(&user, IMAGE_ENV, &image.lock);
    let pull = folders.env_as(
        &user,
        &[
            "pull",
            "--insecure",
            &format!("{reference}@{}", push.stdout.trim()),
        ],
    );
    assert_eq!(pull.code, Some(0), "{}", pull.transcript());
    let ran = folders.env_as(
        &user,
        &[
            "run",
            "--",
            "python3",
            "-c",
            "import os; print('pulled', os.getuid())",
        ],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.transcript());
    assert_eq!(ran.stdout, format!("pulled {}\n", user.uid));
    assert!(
        !ran.stderr.contains("building") && !ran.stderr.contains("downloading"),
        "the pulled image is used as it is: {}",
        ran.stderr
    );
    let inspect = folders.env_as(&user, &["inspect", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(
        json["image"]["id"],
        image.id.as_str(),
        "root's image, bit for bit"
    );
    // Unpacked in the user's namespace: root's files belong to their subordinate root.
    assert_usr_belongs_to(&folders, (sub_uids.start, sub_gids.start));
}
