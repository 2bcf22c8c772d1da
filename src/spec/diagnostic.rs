//! Errors and warnings about an env file, each pointing at the text it is about.

use std::path::PathBuf;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, Severity, SourceSpan};

/// The text of one env file, shared by every diagnostic about it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The name diagnostics show: the path as the user would type it.
    pub name: String,
    /// The file's contents.
    pub text: Arc<String>,
}

impl SourceFile {
    /// Wraps a file's text for diagnostics.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: Arc::new(text.into()),
        }
    }

    fn named_source(&self) -> NamedSource<Arc<String>> {
        NamedSource::new(self.name.clone(), Arc::clone(&self.text)).with_language("kdl")
    }
}

/// One mistake (or, with `Severity::Warning`, one doubtful thing) in an env file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SpecDiagnostic {
    message: String,
    severity: Severity,
    src: NamedSource<Arc<String>>,
    labels: Vec<LabeledSpan>,
    help: Option<String>,
}

impl Diagnostic for SpecDiagnostic {
    fn severity(&self) -> Option<Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|help| Box::new(help) as Box<dyn std::fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
}

impl SpecDiagnostic {
    /// The one-line message, without location.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether this is only a warning.
    pub fn is_warning(&self) -> bool {
        self.severity == Severity::Warning
    }

    /// The name of the file this diagnostic is about.
    pub fn file_name(&self) -> &str {
        self.src.name()
    }

    /// The first label's location as (line, column), both counted from 1.
    pub fn line_column(&self) -> (usize, usize) {
        let offset = self.labels.first().map_or(0, |label| label.offset());
        line_column(self.src.inner(), offset)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |tail| tail.chars().count())
        + 1;
    (line, column)
}

/// Builds a [`SpecDiagnostic`] about one file.
pub struct DiagnosticBuilder {
    diagnostic: SpecDiagnostic,
}

impl DiagnosticBuilder {
    /// An error at `span`, with `label` under the marked text.
    pub fn error(
        file: &SourceFile,
        message: impl Into<String>,
        span: SourceSpan,
        label: impl Into<String>,
    ) -> Self {
        let diagnostic = SpecDiagnostic {
            message: message.into(),
            severity: Severity::Error,
            src: file.named_source(),
            labels: vec![LabeledSpan::new_primary_with_span(Some(label.into()), span)],
            help: None,
        };
        Self { diagnostic }
    }

    /// Turns the error into a warning.
    pub fn warning(mut self) -> Self {
        self.diagnostic.severity = Severity::Warning;
        self
    }

    /// Adds a hint on what to do.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.diagnostic.help = Some(help.into());
        self
    }

    /// Marks a second place, such as where a duplicate was first given.
    pub fn also(mut self, span: SourceSpan, label: impl Into<String>) -> Self {
        self.diagnostic
            .labels
            .push(LabeledSpan::new_with_span(Some(label.into()), span));
        self
    }

    /// Finishes the diagnostic.
    pub fn build(self) -> SpecDiagnostic {
        self.diagnostic
    }
}

/// Why an env file (or one of its peers) could not be turned into a `Spec`.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// No env file in the folder or any parent.
    #[error("no `env.kdl` in `{}` or any parent folder", start.display())]
    NotFound {
        /// Where the search started.
        start: PathBuf,
    },
    /// The file could not be read.
    #[error("cannot read `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid env file.
    #[error("{}", invalid_summary(diagnostics))]
    Invalid {
        /// Every error found, in file order; the CLI renders each with its source line.
        diagnostics: Vec<SpecDiagnostic>,
    },
}

fn invalid_summary(diagnostics: &[SpecDiagnostic]) -> String {
    let count = diagnostics.iter().filter(|d| !d.is_warning()).count();
    let mut files: Vec<&str> = Vec::new();
    for diagnostic in diagnostics {
        if !files.contains(&diagnostic.file_name()) {
            files.push(diagnostic.file_name());
        }
    }
    match diagnostics.first() {
        Some(first) if count == 1 => first.message.clone(),
        _ => format!("{count} problems in {}", files.join(", ")),
    }
}

impl SpecError {
    /// Hint shown under the error by the CLI.
    pub fn hint(&self) -> Option<String> {
        match self {
            SpecError::NotFound { .. } => Some(
                "run `env init` to write one here, or pass `-f FILE` to use another file".into(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn line_column_counts_characters_not_bytes() {
        let text = "name \"é\"\nbase x";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, text.find("base").unwrap()), (2, 1));
        assert_eq!(line_column(text, text.find('"').unwrap() + 3), (1, 8));
    }
}
