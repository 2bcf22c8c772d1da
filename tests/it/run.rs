//! `env run` and `env shell` through the built binary, as root (network tier): exit codes,
//! signals, stdin, isolation, ownership, volumes, read-only mounts, the throw-away root and an
//! interactive shell on a terminal.
//!
//! Every test enters the same image (bookworm with python3, the env `build.rs` and `export.rs`
//! build), built once per run into the store `export.rs` keeps between runs. Each test has its
//! own project folder, data dir (so volumes are isolated) and runtime dir.

use std::io::{BufRead, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::common::{Outcome, envkit, must_work, network_tier, run};

/// The `.deb` cache the build tests share (see `build.rs`).
pub fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envkit-shared-cache")
}

/// The store `export.rs` keeps between runs: sessions only read images.
pub fn shared_store() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("envkit-shared-store")
}

/// The image every session test enters: the env of `build.rs`'s bookworm test, plus the
/// project mount (which does not change the image).
pub const IMAGE_ENV: &str =
    "name \"py\"\nbase \"debian:bookworm\"\npackages \"python3\"\nmount \".\" at=\"/work\"\n";

/// Root and the mirror, or a printed reason to skip (unless ENVKIT_MUST_WORK=1).
pub fn can_enter(what: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        assert!(!must_work(), "ENVKIT_MUST_WORK=1 but {what} needs root");
        eprintln!("skipped: {what} needs root");
        return false;
    }
    network_tier(what)
}

/// The shared image, built by root once per run.
pub struct SharedImage {
    /// The text of its env.lock, copied into every test's project.
    pub lock: String,
    /// Its id (`env inspect --json`'s `image.id`).
    pub id: String,
}

/// Locks and builds [`IMAGE_ENV`] into the shared store once; every caller gets its lock.
pub fn shared_image() -> &'static SharedImage {
    static IMAGE: OnceLock<SharedImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let project = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        std::fs::write(project.path().join("env.kdl"), IMAGE_ENV).unwrap();
        let with_dirs = |args: &[&str]| {
            let mut command = envkit(project.path(), args);
            command
                .env("ENVKIT_CACHE_DIR", shared_cache())
                .env("ENVKIT_STORE_DIR", shared_store())
                .env("ENVKIT_DATA_DIR", state.path().join("data"))
                .env("ENVKIT_RUNTIME_DIR", state.path().join("run"));
            run(&mut command)
        };
        let build = with_dirs(&["build"]);
        assert_eq!(build.code, Some(0), "{}", build.transcript());
        let inspect = with_dirs(&["inspect", "--json"]);
        let json: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
        SharedImage {
            lock: std::fs::read_to_string(project.path().join("env.lock")).unwrap(),
            id: json["image"]["id"]
                .as_str()
                .expect("an image id")
                .to_string(),
        }
    })
}

/// One test's project: its folder (env.kdl, env.lock) and its own data and runtime dirs.
struct Project {
    dir: tempfile::TempDir,
    /// `data/` (volumes) and `run/` (sessions).
    state: PathBuf,
    _state: Option<tempfile::TempDir>,
}

impl Project {
    /// A project whose env is the shared image named `name`, with `extra` lines of env.kdl.
    fn new(name: &str, extra: &str) -> Project {
        let state = tempfile::tempdir().unwrap();
        let mut project = Project::sharing_state(name, extra, state.path());
        project._state = Some(state);
        project
    }

    /// A project using another project's data and runtime dirs.
    fn sharing_state(name: &str, extra: &str, state: &Path) -> Project {
        let image = shared_image();
        let dir = tempfile::tempdir().unwrap();
        let env = IMAGE_ENV.replace("name \"py\"", &format!("name \"{name}\""));
        std::fs::write(dir.path().join("env.kdl"), format!("{env}{extra}")).unwrap();
        std::fs::write(dir.path().join("env.lock"), &image.lock).unwrap();
        Project {
            dir,
            state: state.to_path_buf(),
            _state: None,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The project's folder as sessions report it.
    fn canonical(&self) -> PathBuf {
        self.path().canonicalize().unwrap()
    }

    fn runtime_dir(&self) -> PathBuf {
        self.state.join("run")
    }

    /// `env ARGS...` in the project folder with every envkit dir set.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(crate::common::env_binary());
        command.args(args);
        self.prepare(&mut command);
        command
    }

    /// Sets envkit's dirs on `command`, to start in the project folder with a plain
    /// environment (as `common::envkit` does).
    fn prepare(&self, command: &mut Command) {
        command
            .current_dir(self.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .env("HOME", self.path())
            .env("ENVKIT_CACHE_DIR", shared_cache())
            .env("ENVKIT_STORE_DIR", shared_store())
            .env("ENVKIT_DATA_DIR", self.state.join("data"))
            .env("ENVKIT_RUNTIME_DIR", self.runtime_dir());
    }

    fn env(&self, args: &[&str]) -> Outcome {
        run(&mut self.command(args))
    }

    /// `env run -- sh -c SCRIPT`.
    fn sh(&self, script: &str) -> Outcome {
        self.env(&["run", "--", "sh", "-c", script])
    }

    /// `env run -- sh -c SCRIPT`, which must succeed; its stdout.
    fn sh_ok(&self, script: &str) -> String {
        let outcome = self.sh(script);
        assert_eq!(outcome.code, Some(0), "{script}\n{}", outcome.transcript());
        outcome.stdout
    }

    /// No session's scratch folder is left in the runtime dir.
    fn assert_no_session_left(&self) {
        let sessions = self.runtime_dir().join("sessions");
        let left: Vec<_> = std::fs::read_dir(&sessions)
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "sessions left behind: {left:?}");
    }
}

#[test]
fn exit_codes_are_the_commands_own() {
    if !can_enter("entering a bookworm image") {
        return;
    }
    let project = Project::new("run-codes", "");
    let ok = project.env(&["run", "--", "true"]);
    assert_eq!(ok.code, Some(0), "{}", ok.transcript());
    assert_eq!(ok.stderr, "", "a built image enters silently");

    let seven = project.sh("exit 7");
    assert_eq!(seven.code, Some(7), "{}", seven.transcript());
    assert_eq!(seven.stderr, "", "envkit adds nothing to a failing command");

    let missing = project.env(&["run", "--", "no-such-command-here", "--flag"]);
    assert_eq!(missing.code, Some(127), "{}", missing.transcript());
    assert!(
        missing
            .stderr
            .contains("error: cannot run `no-such-command-here`: No such file or directory"),
        "{}",
        missing.stderr
    );
    let not_executable = project.env(&["run", "--", "/etc/passwd"]);
    assert_eq!(
        not_executable.code,
        Some(127),
        "{}",
        not_executable.transcript()
    );
    assert!(
        not_executable.stderr.contains("`/etc/passwd`")
            && not_executable.stderr.contains("Permission denied"),
        "{}",
        not_executable.stderr
    );

    // Killed by a signal: 128 + its number, as a shell reports it.
    let killed = project.sh("kill -KILL $$");
    assert_eq!(killed.code, Some(128 + 9), "{}", killed.transcript());
    let terminated = project.sh("kill -USR1 $$; sleep 5");
    assert_eq!(
        terminated.code,
        Some(128 + 10),
        "{}",
        terminated.transcript()
    );
    project.assert_no_session_left();
}

/// Lines a child prints on stdout, read by a thread so a test can wait with a deadline.
fn stdout_lines(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// Waits for `child` at most `limit`; kills it (it is this test's own child) when it hangs.
fn wait_at_most(child: &mut Child, limit: Duration, what: &str) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `env run -- sh -c SCRIPT`, waits for the line `ready`, sends `signal` to envkit,
/// and returns the exit code and every line printed.
fn signal_session(project: &Project, script: &str, signal: Signal) -> (Option<i32>, Vec<String>) {
    let mut child = project
        .command(&["run", "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = stdout_lines(&mut child);
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                let ready = line == "ready";
                seen.push(line);
                if ready {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                let _ = child.kill();
                let code = child.wait().unwrap().code();
                panic!("the session never said ready (exit {code:?}): {seen:?}");
            }
        }
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
    let code = wait_at_most(&mut child, Duration::from_secs(30), "after the signal");
    seen.extend(lines.iter());
    (code, seen)
}

#[test]
fn signals_sent_to_envkit_reach_the_program() {
    if !can_enter("entering a bookworm image") {
        return;
    }
    let project = Project::new("run-signals", "");
    for (signal, name) in [
        (Signal::SIGTERM, "TERM"),
        (Signal::SIGINT, "INT"),
        (Signal::SIGHUP, "HUP"),
    ] {
        let script = format!(
            "trap 'echo got-{name}; exit 42' {name}; echo ready; while :; do sleep 0.1; done"
        );
        let (code, lines) = signal_session(&project, &script, signal);
        assert_eq!(
            lines,
            ["ready".to_string(), format!("got-{name}")],
            "the trap ran"
        );
        assert_eq!(code, Some(42), "SIG{name}: the trap's exit code");
    }
    // Without a trap the program dies of it, and envkit reports that as 128 + N.
    let (code, lines) = signal_session(&project, "echo ready; exec sleep 300", Signal::SIGTERM);
    assert_eq!(lines, ["ready"]);
    assert_eq!(code, Some(128 + 15));
    project.assert_no_session_left();
}

#[test]
fn a_signal_sent_while_the_session_starts_is_not_lost() {
    if !can_enter("entering a bookworm image") {
        return;
    }
    let project = Project::new("run-early-signal", "");
    // Once entered, the project starts by the fast path, a few milliseconds long.
    project.sh_ok("true");
    // Sent at every moment of the start: before envkit catches signals (it dies of it),
    // while the sandbox is being made, or once the program runs; never lost.
    for delay_ms in 0..40 {
        let mut child = project
            .command(&["run", "--", "sleep", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
        let code = wait_at_most(
            &mut child,
            Duration::from_secs(20),
            &format!("SIGTERM {delay_ms} ms after the start"),
        );
        assert!(
            matches!(code, None | Some(143)),
            "{delay_ms} ms: exit {code:?}"
        );
    }
    project.assert_no_session_left();
}

#[test]
fn stdin_is_piped_through_and_no_terminal_is_made() {
    if !can_enter("entering a bookworm image") {
        return;
    }
    let project = Project::new("run-stdin", "");
    let mut child = project
        .command(&["run", "--", "wc", "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a\nb\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "2");

    // A pipe stays a pipe: no pty between it and the program.
    let mut child = project
        .command(&["run", "--", "sh", "-c", "test -t 0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1), "stdin is not a terminal");
    let fds = project.sh_ok("test ! -t 1 && test ! -t 2 && readlink /proc/self/fd/0");
    assert!(
        !fds.contains("/dev/pts"),
        "stdin is not a pty inside: {fds}"
    );
}

#[test]
fn only_what_the_env_names_is_visible_inside() {
    if !can_enter("entering a bookworm image") {
        return;
    }
    let project = Project::new(
        "run-isolated",
        "vars {\n    GREETING \"hello from vars\"\n}\npass \"PASSED_IN\" \"NOT_SET_ON_HOST\"\n",
    );
    // A file in the host's /tmp and a process on the host.
    let marker = tempfile::Builder::new()
        .prefix("envkit-host-only-")
        .tempfile_in("/tmp")
        .unwrap();
    let mut sleeper = Command::new("sleep").arg("300").spawn().unwrap();
    let sleeper_pid = sleeper.id();

    let script = format!(
        "test ! -e {marker}; echo tmp=$?; echo tmp-entries=$(ls -A /tmp | wc -l); \
         test ! -e {manifest}/Cargo.toml; echo repo=$?; \
         cd /proc && echo pids=$(echo [0-9]*); echo comms=$(cat /proc/[0-9]*/comm); \
         echo host-pid=$(test -e /proc/{sleeper_pid}/comm && cat /proc/{sleeper_pid}/comm); \
         echo uname=$(uname -n); echo hostname-file=$(cat /etc/hostname); \
         echo resolved=$(getent hosts run-isolated)",
        marker = marker.path().display(),
        manifest = env!("CARGO_MANIFEST_DIR"),
    );
    let outcome = run(project
        .command(&["run", "--", "sh", "-c", &script])
        .env("FOO_SECRET", "must-not-leak")
        .env("PASSED_IN", "passed value")
        .env("TERM", "xterm-envkit-test")
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C"));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    let value = |key: &str| {
        outcome
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {}", outcome.stdout))
            .to_string()
    };
    assert_eq!(value("tmp"), "0", "the host's /tmp file is not visible");
    assert_eq!(value("tmp-entries"), "0", "/tmp starts empty");
    assert_eq!(value("repo"), "0", "the host's folders are not visible");
    let pids: Vec<u32> = value("pids")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        pids.contains(&1) && pids.len() <= 3,
        "only the session's own processes: {pids:?}"
    );
    assert!(
        !value("comms").split_whitespace().any(|c| c == "sleep"),
        "the host's sleep is not visible: {}",
        value("comms")
    );
    assert_eq!(
        value("host-pid"),
        "",
        "no process with the host sleep's pid"
    );
    assert_eq!(value("uname"), "run-isolated", "the host name is the env's");
    assert_eq!(value("hostname-file"), "run-isolated");
    assert_eq!(
        value("resolved").split_whitespace().collect::<Vec<_>>(),
        ["127.0.1.1", "run-isolated"],
        "/etc/hosts names the env"
    );

    // The environment: what envkit sets, TERM, LANG, vars and pass; nothing else of the host.
    let environment = run(project
        .command(&["run", "--", "env"])
        .env("FOO_SECRET", "must-not-leak")
        .env("PASSED_IN", "passed value")
        .env("TERM", "xterm-envkit-test")
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C"));
    assert_eq!(environment.code, Some(0), "{}", environment.transcript());
    let variables: Vec<(&str, &str)> = environment
        .stdout
        .lines()
        .map(|l| l.split_once('=').unwrap())
        .collect();
    let get = |name: &str| variables.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    assert_eq!(get("GREETING"), Some("hello from vars"));
    assert_eq!(get("PASSED_IN"), Some("passed value"));
    assert_eq!(get("TERM"), Some("xterm-envkit-test"));
    assert_eq!(get("LANG"), Some("C.UTF-8"));
    assert_eq!(get("HOME"), Some("/root"), "not the host's HOME");
    assert_eq!(get("ENVKIT_ENV"), Some("run-isolated"));
    for host_only in [
        "FOO_SECRET",
        "LC_ALL",
        "NOT_SET_ON_HOST",
        "NO_COLOR",
        "ENVKIT_STORE_DIR",
        "ENVKIT_CACHE_DIR",
    ] {
        assert_eq!(get(host_only), None, "{host_only} leaked: {variables:?}");
    }
    let path = get("PATH").unwrap();
    assert_ne!(
        Some(path),
        std::env::var("PATH").ok().as_deref(),
        "the session's PATH, not the host's"
    );
}

#[test]
fn descriptors_envkit_inherits_do_not_reach_the_program() {
    if !can_enter("entering a bookworm image") {
        return;
    }
    let project = Project::new("run-fds", "");
    let mut command = project.command(&[
        "run",
        "--",
        "sh",
        "-c",
        "for fd in 3 4 5 6 7 8 9; do [ -e /proc/$$/fd/$fd ] && echo open-$fd; done; echo checked",
    ]);
    // envkit is started holding the host's root folder open as descriptor 7, not
    // close-on-exec, as a careless parent process might leave it.
    let host_root = std::fs::File::open("/").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&host_root);
    // SAFETY: dup2 is async-signal-safe; the descriptor stays open until the spawn returns.
    #[allow(unsafe_code)]
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            if nix::libc::dup2(raw, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let outcome = run(&mut command);
    drop(host_root);
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    assert_eq!(outcome.stdout, "checked\n", "only stdin, stdout and stderr");
}

#[test]
fn files_made_in_the_project_mount_belong_to_the_invoking_user() {
    if !can_enter("entering a bookworm image") {
        return;
    }
    let project = Project::new("run-owners", "");
    let out = project.sh_ok(
        "mkdir /work/made && echo inside > /work/made/file && id -u && id -un && \
         stat -c %u:%g /usr /usr/bin/python3 /etc/passwd",
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0", "root", "0:0", "0:0", "0:0"],
        "root inside, the image's files root's"
    );
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    for path in ["made", "made/file"] {
        let metadata = std::fs::metadata(project.path().join(path)).unwrap();
        assert_eq!((metadata.uid(), metadata.gid()), (uid, gid), "{path}");
    }
    assert_eq!(
        std::fs::read_to_string(project.path().join("made/file")).unwrap(),
        "inside\n"
    );
    // The session starts where the host folder is in the mount.
    std::fs::create_dir(project.path().join("sub")).unwrap();
    let mut command = project.command(&["run", "--", "pwd"]);
    command.current_dir(project.path().join("sub"));
    let pwd = run(&mut command);
    assert_eq!(pwd.stdout.trim(), "/work/sub", "{}", pwd.transcript());
}

#[test]
fn volumes_persist_until_removed_and_start_with_the_images_content() {
    if !can_enter("entering a bookworm image") {
        return;
    }
    let volumes = "volume \"data\" at=\"/data\"\nvolume \"skel\" at=\"/etc/skel\"\n";
    let project = Project::new("run-volumes", volumes);
    let first = project.sh_ok(
        "test -z \"$(ls -A /data)\" && echo persisted > /data/file && \
         ls -A /etc/skel && stat -c %u /etc/skel/.profile && rm /etc/skel/.bashrc",
    );
    let first: Vec<&str> = first.lines().collect();
    assert!(
        first.contains(&".bashrc") && first.contains(&".profile"),
        "the image's /etc/skel: {first:?}"
    );
    assert_eq!(first.last(), Some(&"0"), "owned as in the image");
    // The next session sees what the first left, and the volume is not filled again.
    let second = project.sh_ok("cat /data/file; ls -A /etc/skel");
    assert!(second.starts_with("persisted\n"), "{second}");
    assert!(
        second.contains(".profile") && !second.contains(".bashrc"),
        "{second}"
    );

    let listed = project.env(&["volume", "ls"]);
    assert_eq!(listed.code, Some(0), "{}", listed.transcript());
    let canonical = project.canonical().display().to_string();
    for name in ["data", "skel"] {
        assert!(
            listed
                .stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name) && l.ends_with(&canonical)),
            "{name} of {canonical}: {}",
            listed.stdout
        );
    }
    let json = project.env(&["volume", "ls", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let data = json
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "data")
        .unwrap();
    assert_eq!(data["project"], canonical.as_str());
    assert_eq!(data["size"], "persisted\n".len());

    // Another project with the same volume names has volumes of its own.
    let other = Project::sharing_state("run-volumes", volumes, &project.state);
    other.sh_ok("test -z \"$(ls -A /data)\" && test -e /etc/skel/.bashrc");

    let removed = project.env(&["volume", "rm", "data"]);
    assert_eq!(removed.code, Some(0), "{}", removed.transcript());
    assert!(
        removed.stderr.contains("removed volume data"),
        "{}",
        removed.stderr
    );
    let after = project.sh_ok("ls -A /data | wc -l; ls -A /etc/skel");
    assert!(
        after.starts_with("0\n"),
        "a removed volume starts empty: {after}"
    );
    assert!(!after.contains(".bashrc"), "skel was kept: {after}");
    let again = project.env(&["volume", "rm", "nothing"]);
    assert_eq!(again.code, Some(2), "{}", again.transcript());
    assert!(
        again.stderr.contains("no volume `nothing`") && again.stderr.contains("data, skel"),
        "{}",
        again.stderr
    );
    // The other project's volume is still there.
    let other_list = other.env(&["volume", "ls", "--json"]);
    let other_list: serde_json::Value = serde_json::from_str(&other_list.stdout).unwrap();
    let other_canonical = other.canonical().display().to_string();
    assert!(
        other_list
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "data" && v["project"] == other_canonical.as_str()),
        "{other_list}"
    );
    project.assert_no_session_left();
}

#[test]
fn read_only_mounts_refuse_writes() {
    if !can_enter("entering a bookworm image") {
        return;
    }
    let project = Project::new("run-readonly", "mount \"ro\" at=\"/ro\" readonly=#true\n");
    let host = project.path().join("ro");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("given.txt"), "given\n").unwrap();
    assert_eq!(project.sh_ok("cat /ro/given.txt"), "given\n");
    for script in [
        "touch /ro/x",
        "echo changed > /ro/given.txt",
        "rm /ro/given.txt",
        "mount -o remount,rw /ro && touch /ro/x",
    ] {
        let outcome = project.sh(script);
        assert_ne!(outcome.code, Some(0), "{script}: {}", outcome.transcript());
    }
    let touch = project.sh("touch /ro/x");
    assert!(
        touch.stderr.contains("Read-only file system"),
        "{}",
        touch.stderr
    );
    let entries: Vec<String> = std::fs::read_dir(&host)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["given.txt"], "nothing appeared on the host");
    assert_eq!(
        std::fs::read_to_string(host.join("given.txt")).unwrap(),
        "given\n"
    );
    // The project mount beside it stays writable.
    project.sh_ok("touch /work/writable");
    assert!(project.path().join("writable").exists());
}

#[test]
fn the_sessions_root_is_thrown_away() {
    if !can_enter("entering a bookworm image") {
        return;
    }
    let project = Project::new("run-scratch", "");
    project.sh_ok(
        "echo marker > /etc/envkit-marker && rm /etc/debian_version && \
         echo '#!/bin/sh' > /usr/local/bin/left-over",
    );
    project.assert_no_session_left();
    let out = project.sh_ok(
        "test ! -e /etc/envkit-marker; echo marker=$?; test -e /etc/debian_version; \
         echo restored=$?; test ! -e /usr/local/bin/left-over; echo bin=$?",
    );
    assert_eq!(out, "marker=0\nrestored=0\nbin=0\n");
    // Nothing reached the image's layers.
    for layer in std::fs::read_dir(shared_store().join("layers-v1")).unwrap() {
        let tree = layer.unwrap().path().join("tree");
        assert!(
            !tree.join("etc/envkit-marker").exists(),
            "{}",
            tree.display()
        );
        assert!(!tree.join("usr/local/bin/left-over").exists());
    }
    project.assert_no_session_left();
}

#[test]
fn env_shell_is_an_interactive_shell_with_job_control() {
    if !can_enter("entering a bookworm image") {
        return;
    }
    let project = Project::new("run-shell", "");
    // A terminal as a person has it: rexpect's pty starts without echo, and envkit gives the
    // shell's pty the user's settings.
    let mut command = Command::new("sh");
    command.args(["-c", "stty echo rows 24 cols 100 && exec \"$0\" shell"]);
    command.arg(crate::common::env_binary());
    project.prepare(&mut command);
    command.env("TERM", "dumb");
    let mut session = rexpect::session::spawn_command(command, Some(60_000)).unwrap();
    let prompt = "root@run-shell:/work# ";
    // bash's prompt shows the host name, which is the env's name.
    session.exp_string(prompt).unwrap();
    session.send_line("echo $((6*7))").unwrap();
    session.exp_string("echo $((6*7))\r\n42\r\n").unwrap();
    session.exp_string(prompt).unwrap();
    // The shell's terminal has a name inside (ssh, gpg and `tty` look it up).
    session
        .send_line("tty >/dev/null; echo tty-status=$?")
        .unwrap();
    session.exp_string("tty-status=0").unwrap();
    session.exp_string(prompt).unwrap();

    session.send_line("sleep 30 &").unwrap();
    session.exp_string(prompt).unwrap();
    session.send_line("jobs").unwrap();
    session.exp_regex(r"\[1\]\+ +Running +sleep 30 &").unwrap();
    session.exp_string(prompt).unwrap();

    // Ctrl-C reaches the foreground job, not the shell (nor envkit).
    session
        .send_line("sh -c 'trap \"echo caught-int; exit 5\" INT; echo sta\"\"rted; sleep 30'")
        .unwrap();
    session.exp_string("started").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let interrupted = Instant::now();
    session.send_control('c').unwrap();
    session.exp_string("caught-int").unwrap();
    session.exp_string(prompt).unwrap();
    assert!(
        interrupted.elapsed() < Duration::from_secs(20),
        "sleep was interrupted"
    );
    session.send_line("echo status=$?").unwrap();
    session.exp_string("status=5").unwrap();
    session.exp_string(prompt).unwrap();

    // Ctrl-Z stops the foreground job and gives the terminal back to the shell.
    session.send_line("sleep 40").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    session.send_control('z').unwrap();
    session.exp_regex(r"\[2\]\+ +Stopped +sleep 40").unwrap();
    session.exp_string(prompt).unwrap();
    session.send_line("jobs -s").unwrap();
    session.exp_regex(r"\[2\]\+ +Stopped +sleep 40").unwrap();
    session.exp_string(prompt).unwrap();
    session.send_line("kill -9 %1 %2; wait").unwrap();
    session.exp_string(prompt).unwrap();

    // A resized window reaches the shell's terminal.
    session.send_line("stty size").unwrap();
    session.exp_string("24 100").unwrap();
    session.exp_string(prompt).unwrap();
    resize(&session, 33, 77);
    std::thread::sleep(Duration::from_millis(300));
    session.send_line("stty size").unwrap();
    session.exp_string("33 77").unwrap();
    session.exp_string(prompt).unwrap();

    session.send_line("exit 3").unwrap();
    session.exp_eof().unwrap();
    match session.process().wait().unwrap() {
        rexpect::process::WaitStatus::Exited(_, code) => {
            assert_eq!(code, 3, "the shell's exit status");
        }
        other => panic!("envkit did not exit: {other:?}"),
    }
    project.assert_no_session_left();
}

/// Resizes the terminal envkit runs on, as a terminal window does.
fn resize(session: &rexpect::session::PtySession, rows: u16, cols: u16) {
    use std::os::fd::AsRawFd;
    let terminal = session.process().get_file_handle().unwrap();
    let size = nix::libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    #[allow(unsafe_code)]
    let outcome = unsafe { nix::libc::ioctl(terminal.as_raw_fd(), nix::libc::TIOCSWINSZ, &size) };
    assert_eq!(outcome, 0, "resize the terminal");
}

#[test]
fn env_shell_runs_the_shell_env_kdl_names() {
    if !can_enter("entering a bookworm image") {
        return;
    }
    let project = Project::new("run-dash", "shell \"/bin/sh\"\n");
    let mut command = project.command(&["shell"]);
    command.env("TERM", "dumb");
    let mut session = rexpect::session::spawn_command(command, Some(60_000)).unwrap();
    // Shells other than bash get a prompt naming the env.
    let prompt = "(run-dash) $ ";
    session.exp_string(prompt).unwrap();
    session
        .send_line("readlink /proc/$$/exe; echo \"shell=$SHELL\"")
        .unwrap();
    session.exp_string("/usr/bin/dash").unwrap();
    session.exp_string("shell=/bin/sh").unwrap();
    session.exp_string(prompt).unwrap();
    session.send_line("exit 4").unwrap();
    session.exp_eof().unwrap();
    match session.process().wait().unwrap() {
        rexpect::process::WaitStatus::Exited(_, code) => assert_eq!(code, 4),
        other => panic!("envkit did not exit: {other:?}"),
    }
    project.assert_no_session_left();
}

#[test]
fn orphans_are_reaped_by_the_sessions_init() {
    if !can_enter("entering a bookworm image") {
        return;
    }
    let project = Project::new("run-orphans", "");
    // The inner shell exits at once, leaving its background sleeps to the init; once they
    // end, nothing in the session may be left a zombie.
    let script = "sh -c 'sleep 0.2 & sleep 0.3 & exit 0'; sleep 1.5; zombies=0; \
                  for stat in /proc/[0-9]*/stat; do read -r _ _ state _ < \"$stat\" || continue; \
                  [ \"$state\" = Z ] && zombies=$((zombies + 1)); done; echo zombies=$zombies";
    assert_eq!(project.sh_ok(script), "zombies=0\n");
    project.assert_no_session_left();
}
