//! Faults: `kill -9` of `env build` while it downloads, extracts, runs dpkg and publishes a
//! layer; each time the next build succeeds, the image verifies, and `env gc` then finds
//! nothing stray to delete (root, network tier: the `.deb`s come from the mirror).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::can_test;
use crate::project::{Project, assert_only_finished_layers, stray};

/// The moment to kill the build at.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// Once it says it downloads.
    Downloading,
    /// Just after it starts the base layer, which unpacks the Essential set first.
    Extracting,
    /// While a `dpkg` it started runs.
    RunningDpkg,
    /// As it reports a layer built: the layer is being published and the image recorded.
    Publishing,
}

/// Whether some process below `root` runs `dpkg`.
fn dpkg_runs_below(root: u32) -> bool {
    let parent_of = |pid: &str| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after_name = &stat[stat.rfind(')')? + 2..];
        after_name.split_whitespace().nth(1)?.parse().ok()
    };
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "dpkg" {
            continue;
        }
        let mut current = pid.clone();
        for _ in 0..32 {
            match parent_of(&current) {
                Some(parent) if parent == root => return true,
                Some(parent) if parent > 1 => current = parent.to_string(),
                _ => break,
            }
        }
    }
    false
}

/// Starts `env build` and kills it (SIGKILL) at `moment`; returns whether the moment came.
fn kill_build_at(project: &Project, moment: Moment) -> bool {
    let mut child: Child = project
        .command(&["build"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut came = false;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        let line = seen.recv_timeout(Duration::from_millis(20)).ok();
        let now = match moment {
            Moment::Downloading => line
                .as_deref()
                .is_some_and(|l| l.starts_with("downloading ")),
            Moment::Extracting => line.as_deref() == Some("building base layer"),
            Moment::RunningDpkg => dpkg_runs_below(pid),
            Moment::Publishing => line.as_deref().is_some_and(|l| l.starts_with("built ")),
        };
        if now {
            if let Moment::Extracting = moment {
                std::thread::sleep(Duration::from_millis(300));
            }
            came = true;
            break;
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    came
}

/// Every file under `dir` whose name says it is temporary, outside the layers' trees (whose
/// files are the packages').
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .filter_entry(|entry| entry.file_name() != "tree")
        .flatten()
        .map(|entry| entry.path().to_path_buf())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.ends_with(".partial") || name.contains(".tmp") || name.starts_with(".envkit-")
        })
        .collect()
}

#[test]
fn a_build_killed_at_any_step_leaves_a_store_the_next_build_finishes() {
    let _turn = crate::exclusive();
    if !can_test("builds killed with SIGKILL") {
        return;
    }
    // Its own download cache: the first kill comes while it downloads.
    let project = Project::alone(
        "name \"faults\"\nbase \"debian:bookworm\"\npackages \"python3\"\n\
         setup \"echo set up > /etc/faults\"\n",
    );
    let locked = project.env(&["lock"]);
    assert_eq!(locked.code, Some(0), "{}", locked.transcript());

    for moment in [
        Moment::Downloading,
        Moment::Extracting,
        Moment::RunningDpkg,
        Moment::Publishing,
        Moment::RunningDpkg,
    ] {
        let came = kill_build_at(&project, moment);
        assert!(came, "the build finished before {moment:?}");
        assert_only_finished_layers(&project.state().join("store"), &format!("{moment:?}"));
    }
    // No build is running: whatever the killed ones left is for the next build to clear.
    let build = project.env(&["build"]);
    assert_eq!(build.code, Some(0), "{}", build.transcript());
    let ran = project.env(&["run", "--", "cat", "/etc/faults"]);
    assert_eq!(ran.code, Some(0), "{}", ran.transcript());
    assert_eq!(ran.stdout, "set up\n");
    let verify = project.env(&["verify"]);
    assert_eq!(verify.code, Some(0), "{}", verify.transcript());
    assert_eq!(
        stray(&project),
        Vec::<String>::new(),
        "env gc finds stray data"
    );
    assert_eq!(
        temporaries(project.state()),
        Vec::<PathBuf>::new(),
        "temporary files left"
    );
}

/// Flips one byte of `path` in place, halfway through.
fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_is_found_by_verify_and_repair_builds_the_same_layers_again() {
    let _turn = crate::exclusive();
    if !can_test("damaged layers repaired") {
        return;
    }
    let project = Project::sharing_downloads(
        "name \"flipped\"\nbase \"debian:bookworm\"\npackages \"python3\"\n\
         setup \"echo set up > /etc/flipped\"\n",
    );
    let build = project.env(&["build"]);
    assert_eq!(build.code, Some(0), "{}", build.transcript());
    let inspect = project.env(&["inspect", "--json"]);
    let image: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let layers = image["image"]["layers"].as_array().unwrap().clone();
    let layer_dir = |name: &str| {
        let layer = layers.iter().find(|layer| layer["name"] == name).unwrap();
        project
            .state()
            .join("store/layers-v1")
            .join(layer["key"].as_str().unwrap())
    };
    // A program of the base and python of the packages layer.
    flip_byte(&layer_dir("base").join("tree/usr/bin/dpkg"));
    flip_byte(&layer_dir("packages-1").join("tree/usr/bin/python3.11"));
    let found = project.env(&["verify"]);
    assert_eq!(found.code, Some(1), "{}", found.transcript());
    for needle in [
        "CHANGED  base",
        "changed  /usr/bin/dpkg",
        "CHANGED  packages-1",
        "changed  /usr/bin/python3.11",
        "ok       setup-1",
        "2 layer(s) changed since they were built: base, packages-1",
        "env verify --repair",
    ] {
        assert!(found.stderr.contains(needle), "{needle}: {}", found.stderr);
    }
    // And the record of the setup layer: no image can be named through it any more.
    let record = layer_dir("setup-1").join("layer.json");
    let mut text = std::fs::read(&record).unwrap();
    text[0] ^= 0x01;
    std::fs::write(&record, text).unwrap();
    let found = project.env(&["verify"]);
    assert_eq!(found.code, Some(1), "{}", found.transcript());
    assert!(
        found.stderr.contains("is damaged") && found.stderr.contains("env verify --repair"),
        "{}",
        found.stderr
    );

    let repaired = project.env(&["verify", "--repair"]);
    assert_eq!(repaired.code, Some(0), "{}", repaired.transcript());
    assert!(
        repaired
            .stderr
            .contains("repaired base, packages-1, setup-1"),
        "{}",
        repaired.stderr
    );
    let again = project.env(&["inspect", "--json"]);
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(
        again["image"]["layers"], image["image"]["layers"],
        "the same layers, bit for bit"
    );
    let clean = project.env(&["verify"]);
    assert_eq!(clean.code, Some(0), "{}", clean.transcript());
    let ran = project.env(&[
        "run",
        "--",
        "sh",
        "-c",
        "cat /etc/flipped && dpkg --version",
    ]);
    assert_eq!(ran.code, Some(0), "{}", ran.transcript());
    assert!(ran.stdout.starts_with("set up\n"), "{}", ran.stdout);
    // The download cache is shared with other stores, whose .debs this store does not need.
    let stray: Vec<String> = stray(&project)
        .into_iter()
        .filter(|line| !line.starts_with("would delete download "))
        .collect();
    assert_eq!(stray, Vec::<String>::new(), "env gc finds stray data");
}

/// A tmpfs of `size` mounted on `at`; unmounted when dropped.
struct SmallDisk {
    at: PathBuf,
}

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> SmallDisk {
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "envkit-full-disk",
            ])
            .arg(at)
            .output()
            .unwrap();
        assert!(mounted.status.success(), "{mounted:?}");
        SmallDisk {
            at: at.to_path_buf(),
        }
    }

    fn resize(&self, size: &str) {
        let resized = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.at)
            .output()
            .unwrap();
        assert!(resized.status.success(), "{resized:?}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_store_stays_usable() {
    let _turn = crate::exclusive();
    if !can_test("a build on a full disk") {
        return;
    }
    let project = Project::sharing_downloads(
        "name \"full\"\nbase \"debian:bookworm\"\npackages \"python3\"\n",
    );
    let store = project.state().join("store");
    std::fs::create_dir_all(&store).unwrap();
    // The base layer alone takes over 100 MB.
    let disk = SmallDisk::mount(&store, "48m");
    let build = project.env(&["build"]);
    assert_ne!(build.code, Some(0), "{}", build.transcript());
    assert!(
        build.stderr.contains("No space left on device"),
        "the error says the disk is full: {}",
        build.stderr
    );
    assert!(
        build.stderr.contains(&format!(
            "the disk holding envkit's store (`{}`)",
            store.display()
        )),
        "the error says where: {}",
        build.stderr
    );
    // Nothing half-made under a real name, and gc clears what the failed build left.
    assert_only_finished_layers(&store, "a full disk");
    let gc = project.env(&["gc"]);
    assert_eq!(gc.code, Some(0), "{}", gc.transcript());
    assert_eq!(
        temporaries(&store),
        Vec::<PathBuf>::new(),
        "temporary files left"
    );
    // With room again, the same store builds the image, and it verifies.
    disk.resize("2g");
    let build = project.env(&["build"]);
    assert_eq!(build.code, Some(0), "{}", build.transcript());
    let verify = project.env(&["verify"]);
    assert_eq!(verify.code, Some(0), "{}", verify.transcript());
    let ran = project.env(&["run", "--", "python3", "-c", "print('room')"]);
    assert_eq!(ran.stdout, "room\n", "{}", ran.transcript());
    drop(disk);
}

#[test]
fn a_flipped_byte_in_a_record_or_a_cached_deb_is_found_by_verify_and_repaired() {
    let _turn = crate::exclusive();
    if !can_test("damaged records and downloads repaired") {
        return;
    }
    // Its own download cache (one of its files gets damaged), filled from the shared one.
    let project = Project::alone("name \"records\"\nbase \"debian:bookworm\"\npackages \"jq\"\n");
    let locked = project.env(&["lock"]);
    assert_eq!(locked.code, Some(0), "{}", locked.transcript());
    let lock = envkit::solve::lockfile::Lock::parse(
        &std::fs::read_to_string(project.dir.path().join("env.lock")).unwrap(),
    )
    .unwrap();
    let shared = envkit::cache::Cache::new(&crate::shared_cache());
    let own = envkit::cache::Cache::new(project.cache());
    std::fs::create_dir_all(own.debs_dir()).unwrap();
    for package in &lock.packages {
        let _ = std::fs::copy(shared.deb(&package.sha256), own.deb(&package.sha256));
    }
    let build = project.env(&["build"]);
    assert_eq!(build.code, Some(0), "{}", build.transcript());
    let inspect = project.env(&["inspect", "--json"]);
    let image: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let store = project.state().join("store");
    let name = image["image"]["name"].as_str().unwrap().to_string();
    let (repository, tag) = name.split_once(':').unwrap();

    // The image record stays JSON, with one hex digit of a diff_id changed.
    let record = store
        .join("images-v1")
        .join(repository)
        .join(format!("{tag}.json"));
    let text = std::fs::read_to_string(&record).unwrap();
    let at = text.find("\"diff_id\": \"sha256:").unwrap() + "\"diff_id\": \"sha256:".len();
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&record, bytes).unwrap();
    // The root record, the member list of the packages layer, and jq's cached .deb.
    let root = std::fs::read_dir(store.join("roots-v1"))
        .unwrap()
        .flatten()
        .find(|entry| entry.file_name().to_string_lossy().ends_with(".json"))
        .unwrap()
        .path();
    flip_byte(&root);
    let packages_key = image["image"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|layer| layer["name"] == "packages-1")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    flip_byte(
        &store
            .join("layers-v1")
            .join(&packages_key)
            .join("members.zst"),
    );
    let jq = lock.packages.iter().find(|p| p.name == "jq").unwrap();
    flip_byte(&own.deb(&jq.sha256));

    let found = project.env(&["verify"]);
    assert_eq!(found.code, Some(1), "{}", found.transcript());
    for needle in [
        "ok       base",
        "DAMAGED  packages-1",
        "DAMAGED  image record",
        "DAMAGED  root record",
        &format!("DAMAGED  cached jq {}", jq.version),
        "env verify --repair",
    ] {
        assert!(found.stderr.contains(needle), "{needle}: {}", found.stderr);
    }

    let repaired = project.env(&["verify", "--repair"]);
    assert_eq!(repaired.code, Some(0), "{}", repaired.transcript());
    let again = project.env(&["inspect", "--json"]);
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(
        again["image"], image["image"],
        "the same image, bit for bit"
    );
    let clean = project.env(&["verify"]);
    assert_eq!(clean.code, Some(0), "{}", clean.transcript());
    assert_eq!(
        envkit::fetch::sha256_file(&own.deb(&jq.sha256)).unwrap(),
        jq.sha256,
        "jq downloaded again"
    );
    let ran = project.env(&["run", "--", "jq", "--version"]);
    assert_eq!(ran.code, Some(0), "{}", ran.transcript());

    // An image record that is no longer JSON at all.
    let text = std::fs::read(&record).unwrap();
    std::fs::write(&record, &text[..text.len() / 2]).unwrap();
    let found = project.env(&["verify"]);
    assert_eq!(found.code, Some(1), "{}", found.transcript());
    assert!(
        found.stderr.contains("env verify --repair"),
        "{}",
        found.transcript()
    );
    let repaired = project.env(&["verify", "--repair"]);
    assert_eq!(repaired.code, Some(0), "{}", repaired.transcript());
    assert!(
        repaired.stderr.contains("the image record is damaged"),
        "{}",
        repaired.transcript()
    );
    assert_eq!(
        std::fs::read(&record).unwrap(),
        text,
        "written again, the same"
    );
    // The root record keeps the image again: gc deletes nothing.
    assert_eq!(
        stray(&project),
        Vec::<String>::new(),
        "env gc finds stray data"
    );
}
