//! Finding the env file, reading it, and following its peers into one `Spec` tree.

use std::path::{Path, PathBuf};

use super::diagnostic::{DiagnosticBuilder, SourceFile, SpecDiagnostic, SpecError};
use super::model::{Peer, Spec};
use super::parse::{self, ParsedSpec, PeerSource};

/// The file name searched for in the current folder and its parents.
pub const ENV_FILE_NAME: &str = "env.kdl";

/// A spec with all its peers, and the warnings met on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: Spec,
    pub warnings: Vec<SpecDiagnostic>,
}

/// `env.kdl` in `start` or its nearest parent.
pub fn discover(start: &Path) -> Result<PathBuf, SpecError> {
    start
        .ancestors()
        .map(|dir| dir.join(ENV_FILE_NAME))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| SpecError::NotFound {
            start: start.to_path_buf(),
        })
}

/// Reads the env file at `path` and every peer it names, validating all of them.
pub fn load(path: &Path) -> Result<Loaded, SpecError> {
    let absolute = absolute(path);
    let text = std::fs::read_to_string(&absolute).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_text(&absolute, &text)
}

/// Like [`load`], with the top file's text already in hand (peers are still read from disk).
pub fn load_text(path: &Path, text: &str) -> Result<Loaded, SpecError> {
    let path = absolute(path);
    let mut loader = Loader::default();
    let file = SourceFile::new(display_name(&path), text);
    let spec = loader.file(&file, &path);
    let mut errors: Vec<SpecDiagnostic> = loader.diagnostics;
    match spec {
        Some(spec) if errors.iter().all(SpecDiagnostic::is_warning) => Ok(Loaded {
            spec,
            warnings: errors,
        }),
        _ => {
            errors.retain(|d| !d.is_warning());
            Err(SpecError::Invalid {
                diagnostics: errors,
            })
        }
    }
}

#[derive(Default)]
struct Loader {
    /// Canonical paths of the files being loaded, outermost first, to catch peer cycles.
    chain: Vec<PathBuf>,
    diagnostics: Vec<SpecDiagnostic>,
}

impl Loader {
    fn file(&mut self, file: &SourceFile, path: &Path) -> Option<Spec> {
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let parsed = match parse::parse(file, path, &dir) {
            Ok(parsed) => parsed,
            Err(diagnostics) => {
                self.diagnostics.extend(diagnostics);
                return None;
            }
        };
        self.chain.push(canonical(path));
        let spec = self.resolve_peers(file, parsed);
        self.chain.pop();
        spec
    }

    fn resolve_peers(&mut self, file: &SourceFile, parsed: ParsedSpec) -> Option<Spec> {
        self.diagnostics.extend(parsed.warnings);
        let mut spec = parsed.spec;
        let mut complete = true;
        for decl in parsed.peers {
            let (peer_spec, peer_file) = match decl.source {
                PeerSource::Inline(inline) => (self.resolve_peers(file, *inline), None),
                PeerSource::File { written, path } => (
                    self.peer_file(file, &written.value, written.span, &path),
                    Some(path),
                ),
            };
            let Some(peer_spec) = peer_spec else {
                complete = false;
                continue;
            };
            // A registry image usually says what it runs (Entrypoint, Cmd); whether this one
            // does is known once it is pulled, and `env up` says so then.
            let image_runs_its_own = matches!(peer_spec.base, crate::spec::Base::Image { .. });
            if peer_spec.service.is_none() && !image_runs_its_own {
                let where_to = peer_file.as_ref().map_or_else(
                    || "to its block".to_string(),
                    |path| format!("to `{}`", display_name(path)),
                );
                let error = DiagnosticBuilder::error(
                    file,
                    format!("peer `{}` has no `service`", decl.name.value),
                    decl.name.span,
                    "runs nothing",
                )
                .help(format!(
                    "a peer runs in the background; add `service \"COMMAND\"` {where_to}"
                ));
                self.diagnostics.push(error.build());
                complete = false;
                continue;
            }
            spec.peers.push(Peer {
                name: decl.name.value,
                file: peer_file,
                spec: Box::new(peer_spec),
            });
        }
        complete.then_some(spec)
    }

    fn peer_file(
        &mut self,
        file: &SourceFile,
        written: &str,
        span: miette::SourceSpan,
        path: &Path,
    ) -> Option<Spec> {
        let canonical_path = canonical(path);
        if let Some(start) = self.chain.iter().position(|p| *p == canonical_path) {
            let mut names: Vec<String> = self.chain[start..]
                .iter()
                .map(|p| display_name(p))
                .collect();
            names.push(display_name(&canonical_path));
            let error = DiagnosticBuilder::error(
                file,
                format!("peer cycle: {}", names.join(" -> ")),
                span,
                "this peer leads back to an environment that needs it",
            )
            .help("peers form a tree: remove one of the `peer` nodes in the chain");
            self.diagnostics.push(error.build());
            return None;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => {
                let (message, label) = if err.kind() == std::io::ErrorKind::NotFound {
                    (format!("peer file `{written}` not found"), "no such file")
                } else {
                    (
                        format!("cannot read peer file `{written}`: {err}"),
                        "unreadable",
                    )
                };
                let error = DiagnosticBuilder::error(file, message, span, label).help(format!(
                    "looked for `{}`; paths are relative to the file that names them",
                    display_name(path)
                ));
                self.diagnostics.push(error.build());
                return None;
            }
        };
        let peer_source = SourceFile::new(display_name(path), text);
        self.file(&peer_source, path)
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// A path as the user would type it: relative to the current folder when inside it.
pub fn display_name(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let relative = cwd.as_deref().and_then(|cwd| path.strip_prefix(cwd).ok());
    match relative {
        Some(relative) if !relative.as_os_str().is_empty() => relative.display().to_string(),
        _ => path.display().to_string(),
    }
}
