//! `env init`: write a commented `env.kdl` suited to what the folder holds.

use std::io::IsTerminal;
use std::path::Path;

use clap::Parser;

use super::Failure;
use crate::ops::init::{self, Answers, OFFERED_RELEASES};
use crate::spec::rules;

#[derive(Debug, Parser)]
pub struct InitArgs {
    /// Take the suggested answers without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Replace an existing env.kdl.
    #[arg(long)]
    force: bool,
}

pub fn run(args: &InitArgs, file: Option<&Path>) -> Result<(), Failure> {
    let target = init::target(file, args.force)?;
    let suggested = init::suggest(&init::folder_of(&target)?);
    let interactive =
        !args.yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let answers = if interactive {
        ask(suggested)?
    } else {
        suggested
    };
    init::write(&target, &answers)?;
    eprintln!(
        "wrote {} ({} on debian:{}, packages: {})",
        target.display(),
        answers.name,
        answers.release,
        if answers.packages.is_empty() {
            "none yet".to_string()
        } else {
            answers.packages.join(" ")
        }
    );
    eprintln!("next: `env check` validates it; `env shell` enters the environment");
    Ok(())
}

fn ask(suggested: Answers) -> Result<Answers, Failure> {
    let theme = dialoguer::theme::ColorfulTheme::default();
    let prompt_failed = |e: dialoguer::Error| match e {
        dialoguer::Error::IO(io) => Failure::io("cannot ask on the terminal", io),
    };
    let name: String = dialoguer::Input::with_theme(&theme)
        .with_prompt("Environment name")
        .default(suggested.name)
        .validate_with(|input: &String| rules::host_name("environment", input).map_err(|b| b.help))
        .interact_text()
        .map_err(prompt_failed)?;
    let release_index = dialoguer::Select::with_theme(&theme)
        .with_prompt("Debian release")
        .items(OFFERED_RELEASES)
        .default(0)
        .interact()
        .map_err(prompt_failed)?;
    let packages: String = dialoguer::Input::with_theme(&theme)
        .with_prompt("Debian packages (space-separated)")
        // Pre-filled rather than a default, so adding one package keeps the suggestions.
        .with_initial_text(suggested.packages.join(" "))
        .allow_empty(true)
        .validate_with(|input: &String| {
            input
                .split_whitespace()
                .try_for_each(|p| rules::package_name(p).map_err(|b| b.message))
        })
        .interact_text()
        .map_err(prompt_failed)?;
    let mount_project = dialoguer::Confirm::with_theme(&theme)
        .with_prompt("Mount this folder at /work?")
        .default(true)
        .interact()
        .map_err(prompt_failed)?;
    Ok(Answers {
        name,
        release: OFFERED_RELEASES[release_index].to_string(),
        packages: packages.split_whitespace().map(str::to_string).collect(),
        mount_project,
        requirements_setup: suggested.requirements_setup,
    })
}
