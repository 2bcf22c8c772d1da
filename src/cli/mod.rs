//! The `env` command: argument parsing and one function per subcommand.

mod build;
mod check;
mod completions;
mod export;
mod gc;
mod images;
mod init;
mod inspect;
mod lock;
mod peers;
mod registry;
mod report;
mod session;
mod verify;
mod volume;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

pub use report::Failure;

/// envkit: declarative, reproducible development environments.
///
/// With one of the subcommands below, `env` is envkit. With anything else (no argument, `-i`,
/// `NAME=value`, a program name) it runs the system `env` with the same arguments.
#[derive(Debug, Parser)]
#[command(name = "env", version, about, long_about, propagate_version = true)]
pub struct Cli {
    /// Use this env file instead of `env.kdl` in the current folder or a parent.
    #[arg(short = 'f', long = "file", global = true, value_name = "FILE")]
    pub file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented env.kdl for the current folder.
    Init(init::InitArgs),
    /// Validate env.kdl and every peer it names.
    Check,
    /// Resolve packages into env.lock.
    Lock(lock::LockArgs),
    /// Build the image from env.lock.
    Build(build::BuildArgs),
    /// List built images.
    Images(images::ImagesArgs),
    /// Recompute every layer's digest and name the files that changed since the build; check
    /// the image's records and the lock's cached .debs.
    Verify {
        /// Build the damaged layers again (or pull them from the team cache), write damaged
        /// records again, download damaged .debs again.
        #[arg(long)]
        repair: bool,
    },
    /// Open an interactive shell in the environment.
    Shell {
        /// Be root inside the environment.
        #[arg(long)]
        root: bool,
        #[command(flatten)]
        locking: Locking,
    },
    /// Run one command in the environment.
    Run {
        /// Be root inside the environment.
        #[arg(long)]
        root: bool,
        #[command(flatten)]
        locking: Locking,
        /// The command and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Start every peer in the background.
    Up {
        #[command(flatten)]
        locking: Locking,
    },
    /// Stop the peers.
    Down {
        /// Also delete their volumes.
        #[arg(long)]
        volumes: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// List running peers and sessions.
    Ps {
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show the peers' output (`-f` after `logs` means `--follow`, as in `tail -f`).
    Logs {
        /// The peer (all when omitted).
        peer: Option<String>,
        /// Keep printing new output until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Write the image as an OCI or Docker archive, or the project for Kubernetes or Compose.
    Export(export::ExportArgs),
    /// Send the image to an OCI registry.
    ///
    /// Sends the built image as an OCI image index for this machine's platform, its layers
    /// compressed (gzip, or zstd on request). Layers the registry has are not sent again, and
    /// a layer pushed before is not compressed again. Credentials come from the Docker config
    /// file (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`: `auths`, `credHelpers`,
    /// `credsStore`), and registries that hand out tokens are asked for one. Prints the index's
    /// digest.
    Push(registry::PushArgs),
    /// Fetch an image `env push` sent, so the project builds nothing.
    ///
    /// Takes the manifest for this machine's platform, downloads the layers the store lacks
    /// (resuming an interrupted download), checks every blob against its digest, and refuses a
    /// layer whose unpacked files do not give its diff_id again. The project whose lock and
    /// setup steps the image was built from then finds it built: `env run` and `env shell`
    /// start at once. Prints the image's name.
    Pull(registry::PullArgs),
    /// Delete layers and downloads nothing needs.
    Gc(gc::GcArgs),
    /// Manage named volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Take back files that root inside an environment created in a mount.
    FixOwner,
    /// Show the validated spec (and later its lock and image).
    Inspect(inspect::InspectArgs),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Runs one peer in the background (started by `env up`).
    #[command(name = "__supervise", hide = true)]
    Supervise {
        peer: String,
        image: String,
        restarts: u32,
    },
}

/// What a command that needs the lock may do when it is missing or stale.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Locking {
    /// Use env.lock as it is: fail if it is missing or does not match env.kdl, instead of
    /// updating it (for CI).
    #[arg(long)]
    locked: bool,
}

impl Locking {
    fn mode(&self) -> crate::ops::LockMode {
        if self.locked {
            crate::ops::LockMode::Locked
        } else {
            crate::ops::LockMode::Update
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List volumes: name, size and project.
    Ls {
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Delete a volume.
    Rm {
        /// The volume's name.
        name: String,
    },
}

/// Names (and aliases) the first argument must match for the command line to be envkit's.
pub fn subcommand_names() -> Vec<String> {
    names_of(&Cli::command())
}

fn names_of(command: &clap::Command) -> Vec<String> {
    let mut names = vec!["help".to_string()];
    for sub in command.get_subcommands() {
        names.push(sub.get_name().to_string());
        names.extend(sub.get_all_aliases().map(str::to_string));
    }
    names
}

/// `env logs -f` follows, as `docker logs -f` and `tail -f` do, although `-f FILE` names the
/// env file everywhere else: after `logs`, a bare `-f` becomes `--follow` (the file can still
/// be given as `--file FILE`, or as `-f FILE` before `logs`).
fn follow_flag_of_logs(mut argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut index = 1;
    while index < argv.len() {
        let token = argv[index].to_string_lossy();
        if token == "-f" || token == "--file" {
            index += 2;
        } else if token.starts_with('-') {
            index += 1;
        } else {
            break;
        }
    }
    if argv.get(index).is_some_and(|token| token == "logs") {
        for token in &mut argv[index + 1..] {
            if token == "--" {
                break;
            }
            if token == "-f" {
                *token = "--follow".into();
            }
        }
    }
    argv
}

/// The program: passthrough to the system `env`, or envkit.
pub fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Built once: making clap's command is most of what a fast `env run` spends before the
    // sandbox.
    let command = Cli::command();
    if !crate::passthrough::is_envkit_invocation(
        argv.get(1).map(|a| a.as_os_str()),
        &names_of(&command),
    ) {
        let error = crate::passthrough::exec_system_env(argv);
        return report::exec_failed(&error);
    }
    let matches = command.get_matches_from(follow_flag_of_logs(argv));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report::render(&failure),
    }
}

fn dispatch(cli: Cli) -> Result<(), Failure> {
    let file = cli.file.as_deref();
    match cli.command {
        Command::Init(args) => init::run(&args, file),
        Command::Check => check::run(file),
        Command::Inspect(args) => inspect::run(&args, file),
        Command::Completions(args) => completions::run(&args),
        Command::Lock(args) => lock::run(&args, file),
        Command::Build(args) => build::run(&args, file),
        Command::Images(args) => images::run(&args),
        Command::Verify { repair } => verify::run(file, repair),
        Command::Shell { root, locking } => session::enter(file, root, Vec::new(), &locking),
        Command::Run {
            root,
            locking,
            command,
        } => session::enter(file, root, command, &locking),
        Command::Up { locking } => peers::up(file, &locking),
        Command::Down { volumes, yes } => peers::down(file, volumes, yes),
        Command::Ps { json } => peers::ps(file, json),
        Command::Logs { peer, follow } => peers::logs(file, peer.as_deref(), follow),
        Command::Supervise {
            peer,
            image,
            restarts,
        } => peers::supervise(file, &peer, &image, restarts),
        Command::Export(args) => export::run(&args, file),
        Command::Push(args) => registry::push(&args, file),
        Command::Pull(args) => registry::pull(&args),
        Command::Gc(args) => gc::run(&args),
        Command::Volume(command) => volume::run(&command, file),
        Command::FixOwner => session::fix_owner(file),
    }
}

/// The project of the env file (`-f FILE`, else `env.kdl` here or in a parent), its warnings
/// printed.
fn project(file: Option<&std::path::Path>) -> Result<crate::ops::Project, Failure> {
    let project = crate::ops::Project::load(file)?;
    for warning in project.warnings() {
        report::print_diagnostic(warning);
    }
    Ok(project)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<std::ffi::OsString> {
        line.split_whitespace().map(Into::into).collect()
    }

    #[test]
    fn dash_f_after_logs_follows_and_names_the_file_elsewhere() {
        for (given, meant) in [
            ("env logs -f db", "env logs --follow db"),
            (
                "env -f app.kdl logs db -f",
                "env -f app.kdl logs db --follow",
            ),
            ("env -f logs.kdl check", "env -f logs.kdl check"),
            ("env run -f x -- logs -f", "env run -f x -- logs -f"),
        ] {
            assert_eq!(follow_flag_of_logs(words(given)), words(meant), "{given}");
        }
        let cli = Cli::parse_from(follow_flag_of_logs(words("env -f a.kdl logs -f db")));
        assert_eq!(cli.file.as_deref(), Some(std::path::Path::new("a.kdl")));
        assert!(matches!(
            cli.command,
            Command::Logs { follow: true, peer: Some(ref p) } if p == "db"
        ));
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_is_an_envkit_word() {
        let names = subcommand_names();
        for expected in [
            "init",
            "check",
            "lock",
            "run",
            "volume",
            "inspect",
            "completions",
            "help",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected}");
        }
    }
}
