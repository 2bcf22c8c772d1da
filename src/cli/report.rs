//! How failures reach the user: one renderer, one exit code per kind of failure.
//!
//! Messages follow one rule: lowercase first word, no final period, literals in backticks, and
//! an optional `hint:` saying what to do next.

use std::io::IsTerminal;
use std::process::ExitCode;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};

use crate::solve::stage::SolveError;
use crate::spec::SpecError;

/// Exit code for input the user can fix: a bad env file, a wrong argument, a missing feature.
pub const EXIT_USER_ERROR: u8 = 2;
/// Exit code for an operation that failed although the input was fine (I/O, network).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code when the system `env` could not be started, as a shell reports a missing command.
pub const EXIT_EXEC_FAILED: u8 = 127;

/// Why a subcommand did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{message}")]
    User {
        message: String,
        hint: Option<String>,
    },
    #[error("{message}")]
    Io {
        message: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Solve(#[from] crate::solve::stage::SolveError),
    #[error(transparent)]
    Build(#[from] crate::build::image::BuildError),
    #[error("{message}")]
    Stale {
        message: String,
        reasons: Vec<String>,
    },
    #[error(transparent)]
    Userns(#[from] crate::userns::UsernsError),
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    /// A session's program could not be started (not found, not executable): 127, as a shell.
    #[error("{0}")]
    NotRunnable(String),
    /// A session's program failed: envkit says nothing more and exits with its status.
    #[error("the command exited with status {0}")]
    Exited(u8),
}

impl Failure {
    pub fn user(message: impl Into<String>, hint: Option<String>) -> Self {
        Failure::User {
            message: message.into(),
            hint,
        }
    }

    pub fn io(message: impl Into<String>, source: std::io::Error) -> Self {
        Failure::Io {
            message: message.into(),
            source,
        }
    }

    fn exit_code(&self) -> u8 {
        match self {
            Failure::Spec(SpecError::Read { .. }) | Failure::Io { .. } | Failure::Stale { .. } => {
                EXIT_FAILURE
            }
            Failure::Solve(
                SolveError::Resolve { .. } | SolveError::Sources(_) | SolveError::BadLock { .. },
            ) => EXIT_USER_ERROR,
            Failure::Solve(_) => EXIT_FAILURE,
            Failure::Build(crate::build::image::BuildError::Plan(
                crate::build::plan::PlanError::NoInputMatch { .. },
            )) => EXIT_USER_ERROR,
            Failure::Build(_) => EXIT_FAILURE,
            Failure::Spec(_) | Failure::User { .. } => EXIT_USER_ERROR,
            Failure::Userns(crate::userns::UsernsError::NoRange { .. }) => EXIT_USER_ERROR,
            Failure::Run(crate::run::RunError::MissingMountSource { .. }) => EXIT_USER_ERROR,
            Failure::Userns(_) | Failure::Run(_) => EXIT_FAILURE,
            Failure::NotRunnable(_) => EXIT_EXEC_FAILED,
            Failure::Exited(code) => *code,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Failure::Spec(error) => error.hint(),
            Failure::User { hint, .. } => hint.clone(),
            Failure::Io { .. } => None,
            Failure::Solve(error) => error.hint(),
            Failure::Build(crate::build::image::BuildError::Download(error)) => error.hint(),
            Failure::Build(_) => None,
            Failure::Userns(error) => error.help(),
            Failure::Run(_) | Failure::Exited(_) => None,
            Failure::NotRunnable(_) => Some(
                "check the command's name; packages it needs go in env.kdl's `packages`".into(),
            ),
            Failure::Stale { message, .. } if message.contains("changed since they were built") => {
                Some(format!(
                    "the store was modified outside envkit; delete the store folder's {} entries named above and run `env build`",
                    crate::build::store::LAYERS_DIR
                ))
            }
            Failure::Stale { .. } => {
                Some("run `env lock` to update it, and commit the result".into())
            }
        }
    }
}

fn wants_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

fn handler() -> GraphicalReportHandler {
    let mut theme = if wants_color() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    // Words rather than symbols: they survive CI logs and are what people search for.
    theme.characters.error = "error:".into();
    theme.characters.warning = "warning:".into();
    let width = if std::io::stderr().is_terminal() {
        terminal_width()
    } else {
        100
    };
    GraphicalReportHandler::new_themed(theme)
        .with_width(width)
        .with_links(false)
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

/// Prints one diagnostic about an env file, with its source line and marker, to stderr.
pub fn print_diagnostic(diagnostic: &dyn Diagnostic) {
    let mut out = String::new();
    if handler().render_report(&mut out, diagnostic).is_err() {
        out = format!("{diagnostic}\n");
    }
    eprint!("{out}");
}

/// Prints the failure to stderr and returns its exit code.
pub fn render(failure: &Failure) -> ExitCode {
    match failure {
        Failure::Exited(_) => {}
        Failure::Spec(SpecError::Invalid { diagnostics }) => {
            for diagnostic in diagnostics {
                print_diagnostic(diagnostic);
            }
            if diagnostics.len() > 1 {
                eprintln!("error: {failure}");
            }
        }
        _ => {
            eprintln!("error: {failure}");
            let mut cause = std::error::Error::source(failure);
            if let Failure::Stale { reasons, .. } = failure {
                for reason in reasons {
                    eprintln!("  - {reason}");
                }
            }
            while let Some(error) = cause {
                eprintln!("  caused by: {error}");
                cause = error.source();
            }
            if let Some(hint) = failure.hint() {
                eprintln!("\nhint: {hint}");
            }
        }
    }
    ExitCode::from(failure.exit_code())
}

/// Reports that the system `env` could not be executed.
pub fn exec_failed(error: &std::io::Error) -> ExitCode {
    eprintln!("env: cannot run the system `env`: {error}");
    ExitCode::from(EXIT_EXEC_FAILED)
}
