//! How failures reach the user: one renderer, one exit code per kind of failure.
//!
//! Messages follow one rule: lowercase first word, no final period, literals in backticks, and
//! an optional `hint:` saying what to do next.

use std::io::IsTerminal;
use std::process::ExitCode;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme};

use crate::ops::{self, Error, Kind};
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
    Ops(Box<ops::Error>),
    /// A session's program failed: envkit says nothing more and exits with its status.
    #[error("the command exited with status {0}")]
    Exited(u8),
}

impl<E: Into<ops::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Ops(Box::new(error.into()))
    }
}

impl Failure {
    pub fn user(message: impl Into<String>, hint: Option<String>) -> Self {
        Failure::Ops(Box::new(ops::Error::user(message, hint)))
    }

    pub fn io(message: impl Into<String>, source: std::io::Error) -> Self {
        Failure::Ops(Box::new(ops::Error::io(message, source)))
    }

    fn exit_code(&self) -> u8 {
        let error = match self {
            Failure::Exited(code) => return *code,
            Failure::Ops(error) => error,
        };
        match error.kind() {
            Kind::Input => EXIT_USER_ERROR,
            Kind::Failed => EXIT_FAILURE,
            Kind::NotRunnable => EXIT_EXEC_FAILED,
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
    if let Failure::Ops(error) = failure {
        render_error(error);
    }
    ExitCode::from(failure.exit_code())
}

fn render_error(error: &Error) {
    if let Error::Spec(SpecError::Invalid { diagnostics }) = error {
        for diagnostic in diagnostics {
            print_diagnostic(diagnostic);
        }
        if diagnostics.len() > 1 {
            eprintln!("error: {error}");
        }
        return;
    }
    eprintln!("error: {error}");
    if let Error::Stale { reasons, .. } = error {
        for reason in reasons {
            eprintln!("  - {reason}");
        }
    }
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        eprintln!("  caused by: {error}");
        cause = error.source();
    }
    if let Some(hint) = error.hint() {
        eprintln!("\nhint: {hint}");
    }
}

/// Reports that the system `env` could not be executed.
pub fn exec_failed(error: &std::io::Error) -> ExitCode {
    eprintln!("env: cannot run the system `env`: {error}");
    ExitCode::from(EXIT_EXEC_FAILED)
}
