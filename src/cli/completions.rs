//! `env completions SHELL`: a completion script on stdout.

use clap::{CommandFactory, Parser};
use clap_complete::Shell;

use super::{Cli, Failure};

#[derive(Debug, Parser)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    shell: Shell,
}

pub fn run(args: &CompletionsArgs) -> Result<(), Failure> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "env", &mut std::io::stdout());
    Ok(())
}
