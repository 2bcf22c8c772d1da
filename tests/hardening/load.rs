//! Load: many sessions of one environment at once, builds of overlapping environments at once,
//! and a thousand sessions in a row, after which the machine holds what it held before (root,
//! network tier: the image is built from the mirror).

use std::collections::BTreeSet;
use std::path::Path;

use crate::can_test;
use crate::project::Project;

const PYTHON_ENV: &str = "name \"load\"\nbase \"debian:bookworm\"\npackages \"python3\"\n";

#[test]
fn sixteen_sessions_of_one_environment_at_once_each_print_their_own_output() {
    let _turn = crate::exclusive();
    if !can_test("sixteen concurrent sessions") {
        return;
    }
    let project = Project::sharing_downloads(PYTHON_ENV);
    let build = project.env(&["build"]);
    assert_eq!(build.code, Some(0), "{}", build.transcript());
    let children: Vec<_> = (0..16)
        .map(|index| {
            project
                .command(&[
                    "run",
                    "--",
                    "python3",
                    "-c",
                    &format!(
                        "import os, time; time.sleep(0.5); print('session {index}', os.getpid())"
                    ),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (index, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "session {index}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Each session has a pid namespace of its own: the program is its init's child.
        assert_eq!(stdout, format!("session {index} 2\n"), "session {index}");
    }
}

#[test]
fn four_builds_of_overlapping_environments_at_once_all_succeed() {
    let _turn = crate::exclusive();
    if !can_test("four concurrent builds") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    // Each shares the base with the others, and a packages layer with one of them.
    let envs = [
        ("python3", "python3 --version"),
        ("python3\" \"jq", "jq --version"),
        ("jq", "jq --version"),
        ("jq\" \"make", "make --version"),
    ];
    let projects: Vec<Project> = envs
        .iter()
        .enumerate()
        .map(|(index, (packages, _))| {
            Project::sharing_state(
                &format!(
                    "name \"overlap{index}\"\nbase \"debian:bookworm\"\npackages \"{packages}\"\n"
                ),
                Some(state.path()),
            )
        })
        .collect();
    let builds: Vec<_> = projects
        .iter()
        .map(|project| {
            project
                .command(&["build"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (index, build) in builds.into_iter().enumerate() {
        let output = build.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "build {index}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for (project, (_, check)) in projects.iter().zip(envs) {
        let ran = project.env(&["run", "--", "sh", "-c", check]);
        assert_eq!(ran.code, Some(0), "{check}: {}", ran.transcript());
        assert!(!ran.stderr.contains("building"), "{}", ran.stderr);
    }
    let verify = projects[0].env(&["verify"]);
    assert_eq!(verify.code, Some(0), "{}", verify.transcript());
}

/// What the machine holds that a session could leave behind.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    /// The host's mount table.
    mounts: BTreeSet<String>,
    /// Every namespace some process is in.
    namespaces: BTreeSet<String>,
    /// Processes in a namespace other than this test's, or running envkit's binary.
    processes: BTreeSet<String>,
    /// What the runtime folder and the store's temporary folder hold.
    files: BTreeSet<String>,
}

fn footprint(state: &Path) -> Footprint {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        // Mount ids change; where and what is mounted does not.
        .map(|line| {
            line.split_whitespace()
                .skip(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let ours = |kind: &str| std::fs::read_link(format!("/proc/self/ns/{kind}")).ok();
    let env_binary = crate::common::env_binary();
    let mut namespaces = BTreeSet::new();
    let mut processes = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let mut foreign = false;
        for kind in ["mnt", "pid", "user", "net", "ipc", "uts"] {
            if let Ok(target) = std::fs::read_link(format!("/proc/{name}/ns/{kind}")) {
                foreign |= Some(&target) != ours(kind).as_ref();
                namespaces.insert(target.display().to_string());
            }
        }
        let exe = std::fs::read_link(format!("/proc/{name}/exe")).ok();
        if foreign || exe.as_deref() == Some(env_binary.as_path()) {
            let cmdline = std::fs::read(format!("/proc/{name}/cmdline")).unwrap_or_default();
            processes.insert(format!(
                "{name} {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    let mut files = BTreeSet::new();
    for dir in [state.join("run"), state.join("store/tmp")] {
        for entry in walkdir::WalkDir::new(&dir)
            .min_depth(1)
            .into_iter()
            .flatten()
        {
            files.insert(entry.path().display().to_string());
        }
    }
    Footprint {
        mounts,
        namespaces,
        processes,
        files,
    }
}

#[test]
fn a_thousand_sessions_in_a_row_leave_nothing_behind() {
    let _turn = crate::exclusive();
    if !can_test("a thousand sessions in a row") {
        return;
    }
    let project = Project::sharing_downloads(PYTHON_ENV);
    // The first session builds and records what later ones find; count from the second on.
    let first = project.env(&["run", "--", "true"]);
    assert_eq!(first.code, Some(0), "{}", first.transcript());
    let before = footprint(project.state());
    for index in 0..1000 {
        let ran = project.env(&["run", "--", "true"]);
        assert_eq!(ran.code, Some(0), "run {index}: {}", ran.transcript());
    }
    let after = footprint(project.state());
    let left = |a: &BTreeSet<String>, b: &BTreeSet<String>| -> Vec<String> {
        b.difference(a).cloned().collect()
    };
    assert_eq!(
        left(&before.mounts, &after.mounts),
        Vec::<String>::new(),
        "mounts"
    );
    assert_eq!(
        left(&before.namespaces, &after.namespaces),
        Vec::<String>::new(),
        "namespaces"
    );
    assert_eq!(
        left(&before.processes, &after.processes),
        Vec::<String>::new(),
        "processes"
    );
    assert_eq!(
        left(&before.files, &after.files),
        Vec::<String>::new(),
        "files"
    );
}
