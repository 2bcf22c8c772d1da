//! `env init` writes a valid, commented env file suited to the folder.

use crate::common::{envkit, run};

#[test]
fn init_suggests_packages_from_project_files_and_the_result_checks() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("pyproject.toml"),
        "[project]\nname = \"x\"\n",
    )
    .unwrap();
    std::fs::write(project.path().join("Cargo.toml"), "[package]\n").unwrap();
    let outcome = run(&mut envkit(project.path(), &["init", "--yes"]));
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    let text = std::fs::read_to_string(project.path().join("env.kdl")).unwrap();
    assert!(
        text.contains("packages \"python3\" \"python3-pip\" \"python3-venv\" \"cargo\" \"rustc\""),
        "{text}"
    );
    assert!(text.contains("base \"debian:bookworm\""), "{text}");
    assert!(
        text.lines().filter(|l| l.starts_with("//")).count() > 5,
        "commented: {text}"
    );
    let check = run(&mut envkit(project.path(), &["check"]));
    assert_eq!(check.code, Some(0), "{}", check.transcript());
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let project = tempfile::tempdir().unwrap();
    let file = project.path().join("env.kdl");
    std::fs::write(&file, "// mine\n").unwrap();
    let outcome = run(&mut envkit(project.path(), &["init", "--yes"]));
    assert_eq!(outcome.code, Some(2), "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("already exists"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("hint: pass `--force`"),
        "{}",
        outcome.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "// mine\n",
        "left untouched"
    );

    let forced = run(&mut envkit(project.path(), &["init", "--yes", "--force"]));
    assert_eq!(forced.code, Some(0), "{}", forced.transcript());
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("base \"debian:")
    );
}

#[test]
fn init_names_the_environment_after_the_folder() {
    let parent = tempfile::tempdir().unwrap();
    let project = parent.path().join("My Service_2");
    std::fs::create_dir(&project).unwrap();
    let outcome = run(&mut envkit(&project, &["init", "--yes"]));
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    let text = std::fs::read_to_string(project.join("env.kdl")).unwrap();
    assert!(text.contains("name \"my-service-2\""), "{text}");
}

#[test]
fn init_without_a_terminal_takes_the_defaults() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("package.json"), "{}").unwrap();
    let outcome = run(envkit(project.path(), &["init"]).stdin(std::process::Stdio::null()));
    assert_eq!(outcome.code, Some(0), "{}", outcome.transcript());
    let text = std::fs::read_to_string(project.path().join("env.kdl")).unwrap();
    assert!(text.contains("packages \"nodejs\" \"npm\""), "{text}");
}

/// The prompts, driven through a real terminal: a rejected name is asked again, the suggested
/// packages can be extended, and the chosen release is written.
#[test]
fn init_asks_on_a_terminal() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("requirements.txt"), "pytest\n").unwrap();
    let mut command = envkit(project.path(), &["init"]);
    command.env("TERM", "xterm");
    let mut session = rexpect::session::spawn_command(command, Some(20_000)).unwrap();
    session.exp_string("Environment name").unwrap();
    session.send_line("Bad Name").unwrap();
    session.exp_string("lowercase").unwrap();
    session.send(&"\x7f".repeat(12)).unwrap();
    session.flush().unwrap();
    session.send_line("mysvc").unwrap();
    session.exp_string("Debian release").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    session.send("\x1b[B").unwrap(); // arrow down: the second release offered
    session.flush().unwrap();
    session.send_line("").unwrap();
    session.exp_string("Debian packages").unwrap();
    session.send_line(" git").unwrap();
    session.exp_string("Mount this folder").unwrap();
    // A single key is read in raw mode; give the prompt time to switch the terminal to it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    session.send("n").unwrap();
    session.flush().unwrap();
    session.exp_string("wrote").unwrap();
    session.exp_eof().unwrap();

    let text = std::fs::read_to_string(project.path().join("env.kdl")).unwrap();
    assert!(text.contains("name \"mysvc\""), "{text}");
    assert!(text.contains("base \"debian:trixie\""), "{text}");
    assert!(
        text.contains("packages \"python3\" \"python3-pip\" \"python3-venv\" \"git\""),
        "{text}"
    );
    assert!(
        text.contains("// mount \".\" at=\"/work\""),
        "mount declined: {text}"
    );
}
