//! One env file's text -> a `Spec` whose peers are still declarations.
//!
//! This layer reads no other file: `peer file=` stays a path for `load` to follow, so the parser
//! can be fuzzed and tested on strings alone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use kdl::{KdlDocument, KdlNode};
use miette::SourceSpan;

use super::diagnostic::{DiagnosticBuilder, SourceFile, SpecDiagnostic};
use super::kdl_reader::{PropRule, Reader, Spanned};
use super::model::{
    Base, CopyFiles, DEFAULT_READY_TIMEOUT_SECS, Mirror, Mount, Network, Origin, Ready, ReadyCheck,
    SetupStep, Spec, TeamCache, User, Volume,
};
use super::{rules, suggest};

/// Every node an env file may hold.
pub const NODE_NAMES: &[&str] = &[
    "name",
    "base",
    "mirror",
    "snapshot",
    "cache",
    "packages",
    "recommends",
    "setup",
    "workdir",
    "mount",
    "volume",
    "vars",
    "pass",
    "peer",
    "service",
    "port",
    "ready",
    "user",
    "network",
    "shell",
    "command",
    "copy",
];

/// Nodes that may appear once per file.
const SINGLE_NODES: &[&str] = &[
    "name",
    "base",
    "mirror",
    "snapshot",
    "cache",
    "recommends",
    "workdir",
    "service",
    "ready",
    "user",
    "network",
    "shell",
    "command",
];

/// A parsed file: its spec (with `peers` still empty) and the peers it declares.
#[derive(Debug, Clone)]
pub struct ParsedSpec {
    pub spec: Spec,
    pub peers: Vec<PeerDecl>,
    pub warnings: Vec<SpecDiagnostic>,
}

/// A `peer` node before its file is read.
#[derive(Debug, Clone)]
pub struct PeerDecl {
    pub name: Spanned<String>,
    pub source: PeerSource,
}

/// Where a peer's environment is described.
#[derive(Debug, Clone)]
pub enum PeerSource {
    /// `file="..."`: as written, and resolved against the declaring file's folder.
    File {
        written: Spanned<String>,
        path: PathBuf,
    },
    /// A `{ ... }` block in the declaring file.
    Inline(Box<ParsedSpec>),
}

/// Parses one env file. `dir` is the folder relative paths are resolved against.
///
/// On failure returns every error found (and the warnings) in file order.
pub fn parse(
    file: &SourceFile,
    path: &Path,
    dir: &Path,
) -> Result<ParsedSpec, Vec<SpecDiagnostic>> {
    let document = match KdlDocument::parse(&file.text) {
        Ok(document) => document,
        Err(error) => return Err(syntax_errors(file, error)),
    };
    let origin = Origin {
        file: path.to_path_buf(),
        dir: dir.to_path_buf(),
    };
    let mut reader = Reader::new(file);
    let parsed = read_document(&mut reader, &document, &origin, document.span());
    let mut diagnostics = reader.diagnostics;
    match parsed {
        Some(mut parsed) if !diagnostics.iter().any(|d| !d.is_warning()) => {
            parsed.warnings.extend(diagnostics);
            Ok(parsed)
        }
        _ => {
            diagnostics.sort_by_key(|d| d.line_column());
            Err(diagnostics)
        }
    }
}

/// Turns kdl's syntax errors into ours, so they name the file and read like the rest.
fn syntax_errors(file: &SourceFile, error: kdl::KdlError) -> Vec<SpecDiagnostic> {
    error
        .diagnostics
        .into_iter()
        .map(|diagnostic| {
            let start = diagnostic.span.offset();
            let written = file.text.get(start..start + diagnostic.span.len()).unwrap_or("");
            if let "true" | "false" | "null" = written {
                let message = format!("KDL syntax error: bare `{written}` is not a value in KDL v2");
                return DiagnosticBuilder::error(file, message, diagnostic.span, "KDL v1 spelling")
                    .help(format!("write #{written}"))
                    .build();
            }
            let message = diagnostic.message.unwrap_or_else(|| "invalid KDL".into());
            let label = diagnostic.label.unwrap_or_else(|| "here".into());
            let help = diagnostic.help.unwrap_or_else(|| {
                "env.kdl is KDL v2: strings in double quotes, booleans as #true/#false, `//` comments".into()
            });
            DiagnosticBuilder::error(file, format!("KDL syntax error: {message}"), diagnostic.span, label)
                .help(help)
                .build()
        })
        .collect()
}

/// Builds a spec from one document (a whole file or an inline peer block).
fn read_document(
    reader: &mut Reader<'_>,
    document: &KdlDocument,
    origin: &Origin,
    whole: SourceSpan,
) -> Option<ParsedSpec> {
    let mut draft = Draft::default();
    for node in document.nodes() {
        reader.no_node_annotation(node);
        let name = node.name().value();
        if SINGLE_NODES.contains(&name) {
            if let Some(first) = draft.seen.get(name) {
                let error = reader
                    .error(
                        format!("`{name}` is given twice"),
                        node.name().span(),
                        "given again here",
                    )
                    .also(*first, "first given here")
                    .help(format!("keep one `{name}` node"));
                reader.push(error);
                continue;
            }
            draft.seen.insert(name.to_string(), node.name().span());
        }
        match name {
            "name" => draft.name(reader, node),
            "base" => draft.base(reader, node),
            "mirror" => draft.mirror(reader, node, origin),
            "snapshot" => draft.snapshot(reader, node),
            "cache" => draft.cache(reader, node),
            "packages" => draft.packages(reader, node),
            "recommends" => draft.recommends(reader, node),
            "setup" => draft.setup(reader, node),
            "workdir" => draft.workdir(reader, node),
            "mount" => draft.mount(reader, node, origin),
            "volume" => draft.volume(reader, node),
            "vars" => draft.vars(reader, node),
            "pass" => draft.pass(reader, node),
            "peer" => draft.peer(reader, node, origin),
            "service" => draft.service(reader, node),
            "port" => draft.port(reader, node),
            "ready" => draft.ready(reader, node),
            "user" => draft.user(reader, node),
            "network" => draft.network(reader, node),
            "shell" => draft.shell(reader, node),
            "command" => draft.command(reader, node),
            "copy" => draft.copy(reader, node, origin),
            unknown => {
                // `FROM "debian:..."` is a misspelt base: one error is enough.
                if suggest::did_you_mean(unknown, NODE_NAMES) == Some("base") {
                    draft.base_given = true;
                }
                let error = reader
                    .error(
                        format!("unknown node `{unknown}`"),
                        node.name().span(),
                        "not an env.kdl node",
                    )
                    .help(suggest::hint(unknown, NODE_NAMES));
                reader.push(error);
            }
        }
    }
    draft.finish(reader, origin, whole)
}

/// What a document has said so far; `finish` checks what needs the whole document.
#[derive(Default)]
struct Draft {
    seen: HashMap<String, SourceSpan>,
    name: Option<String>,
    base: Option<Base>,
    base_given: bool,
    mirror: Option<Mirror>,
    snapshot: Option<String>,
    cache: Option<TeamCache>,
    packages: Vec<Spanned<String>>,
    recommends: bool,
    setup: Vec<SetupStep>,
    workdir: Option<String>,
    mounts: Vec<Mount>,
    volumes: Vec<Spanned<Volume>>,
    /// Where each path inside the environment was claimed, by a mount or a volume.
    targets: HashMap<String, SourceSpan>,
    vars: BTreeMap<String, String>,
    var_spans: HashMap<String, SourceSpan>,
    pass: Vec<String>,
    peers: Vec<PeerDecl>,
    service: Option<String>,
    ports: Vec<u16>,
    ready: Option<Ready>,
    user: User,
    network: Network,
    shell: Option<String>,
    command: Option<String>,
    copies: Vec<CopyFiles>,
}

impl Draft {
    fn name(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        reader.properties(node, &[]);
        reader.no_children(node);
        if let Some(name) = reader.one_string(node, "name \"api\"") {
            match rules::host_name("environment", &name.value) {
                Ok(()) => self.name = Some(name.value),
                Err(broken) => report(reader, broken, name.span, "invalid name"),
            }
        }
    }

    fn base(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        let props = reader.properties(node, &[PropRule::string("image")]);
        reader.no_children(node);
        // Even an invalid base counts as given: it is reported where it was written.
        self.base_given = true;
        if let Some(image) = props.string("image") {
            if let Some(extra) = reader.arguments(node).first() {
                return reader.fail(
                    "`base` takes a Debian release or `image=`, not both",
                    extra.span(),
                    "remove this, or the `image=`",
                );
            }
            return match rules::image_reference(&image.value) {
                Ok(()) => {
                    self.base = Some(Base::Image {
                        reference: image.value,
                    })
                }
                Err(broken) => report(reader, broken, image.span, "not an image reference"),
            };
        }
        if let Some(text) = reader.one_string(
            node,
            "base \"debian:bookworm\" or base image=\"postgres:16\"",
        ) {
            match rules::base(&text.value) {
                Ok(base) => self.base = Some(base),
                Err(broken) => report(reader, broken, text.span, "unsupported base"),
            }
        }
    }

    fn mirror(&mut self, reader: &mut Reader<'_>, node: &KdlNode, origin: &Origin) {
        let props = reader.properties(node, &[PropRule::string("keyring")]);
        reader.no_children(node);
        let Some(url) = reader.one_string(node, "mirror \"https://deb.example/debian\"") else {
            return;
        };
        let url = match rules::mirror_url(&url.value) {
            Ok(url) => url,
            Err(broken) => return report(reader, broken, url.span, "not a usable URL"),
        };
        let keyring = props.string("keyring");
        if let Some(keyring) = &keyring
            && keyring.value.is_empty()
        {
            return reader.fail("`keyring=` is empty", keyring.span, "name a keyring file");
        }
        self.mirror = Some(Mirror {
            url,
            keyring_path: keyring.as_ref().map(|k| resolve(&origin.dir, &k.value)),
            keyring: keyring.map(|k| k.value),
        });
    }

    fn snapshot(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        reader.properties(node, &[]);
        reader.no_children(node);
        let Some(url) = reader.one_string(node, "snapshot \"https://snapshot.example\"") else {
            return;
        };
        match rules::mirror_url(&url.value) {
            Ok(url) => self.snapshot = Some(url),
            Err(broken) => report(reader, broken, url.span, "not a usable URL"),
        }
    }

    fn cache(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        let props = reader.properties(node, &[PropRule::bool("insecure")]);
        reader.no_children(node);
        let example = "cache \"ghcr.io/acme/envkit-cache\"";
        let Some(reference) = reader.one_string(node, example) else {
            return;
        };
        if let Err(broken) = rules::cache_repository(&reference.value) {
            return report(reader, broken, reference.span, "not a registry repository");
        }
        self.cache = Some(TeamCache {
            repository: reference.value,
            insecure: props.bool("insecure").is_some_and(|i| i.value),
        });
    }

    fn packages(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        reader.properties(node, &[]);
        reader.no_children(node);
        for package in reader.some_strings(node, "packages \"git\" \"curl\"") {
            if let Err(broken) = rules::package_name(&package.value) {
                report(reader, broken, package.span, "invalid package name");
                continue;
            }
            if let Some(first) = self.packages.iter().find(|p| p.value == package.value) {
                let warning = reader
                    .error(
                        format!("package `{}` is listed twice", package.value),
                        package.span,
                        "listed again here",
                    )
                    .also(first.span, "first listed here")
                    .warning();
                reader.push(warning);
                continue;
            }
            self.packages.push(package);
        }
    }

    fn recommends(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        reader.properties(node, &[]);
        reader.no_children(node);
        if let Some(value) = reader.one_bool(node, "recommends #true") {
            self.recommends = value.value;
        }
    }

    fn setup(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        let props = reader.properties(node, &[PropRule::repeated_string("inputs")]);
        let mut inputs = props.strings("inputs");
        if let Some(children) = node.children() {
            for child in children.nodes() {
                if child.name().value() != "inputs" {
                    let error = reader
                        .error(
                            format!("unknown node `{}` in `setup`", child.name().value()),
                            child.name().span(),
                            "not allowed here",
                        )
                        .help("a `setup` block holds only `inputs \"file\" \"glob\"...`");
                    reader.push(error);
                    continue;
                }
                reader.properties(child, &[]);
                reader.no_children(child);
                inputs.extend(reader.some_strings(child, "inputs \"requirements.txt\" \"src/**\""));
            }
        }
        let Some(command) = reader.one_string(node, "setup \"make deps\" inputs=\"Makefile\"")
        else {
            return;
        };
        if command.value.trim().is_empty() {
            return reader.fail("`setup` command is empty", command.span, "nothing to run");
        }
        let mut patterns = Vec::new();
        for input in inputs {
            match rules::input_pattern(&input.value) {
                Ok(()) => patterns.push(input.value),
                Err(broken) => report(reader, broken, input.span, "invalid input"),
            }
        }
        patterns.sort();
        patterns.dedup();
        self.setup.push(SetupStep {
            command: command.value,
            inputs: patterns,
        });
    }

    fn workdir(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        reader.properties(node, &[]);
        reader.no_children(node);
        if let Some(path) = reader.one_string(node, "workdir \"/work\"") {
            match rules::container_path(&path.value) {
                Ok(path) => self.workdir = Some(path),
                Err(broken) => report(reader, broken, path.span, "must be absolute"),
            }
        }
    }

    fn mount(&mut self, reader: &mut Reader<'_>, node: &KdlNode, origin: &Origin) {
        let props = reader.properties(node, &[PropRule::string("at"), PropRule::bool("readonly")]);
        reader.no_children(node);
        let source = reader.one_string(node, "mount \".\" at=\"/work\"");
        let Some(at) = self.target(reader, node, props.string("at"), "mount \".\" at=\"/work\"")
        else {
            return;
        };
        let Some(source) = source else { return };
        if source.value.is_empty() {
            return reader.fail(
                "mount source is empty",
                source.span,
                "name a host folder, e.g. \".\"",
            );
        }
        self.mounts.push(Mount {
            host_path: resolve(&origin.dir, &source.value),
            source: source.value,
            at,
            readonly: props.bool("readonly").is_some_and(|r| r.value),
        });
    }

    fn volume(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        let props = reader.properties(node, &[PropRule::string("at")]);
        reader.no_children(node);
        let name = reader.one_string(node, "volume \"cache\" at=\"/root/.cache\"");
        let at = self.target(
            reader,
            node,
            props.string("at"),
            "volume \"cache\" at=\"/root/.cache\"",
        );
        let (Some(name), Some(at)) = (name, at) else {
            return;
        };
        if let Err(broken) = rules::volume_name(&name.value) {
            return report(reader, broken, name.span, "invalid volume name");
        }
        if let Some(first) = self.volumes.iter().find(|v| v.value.name == name.value) {
            let error = reader
                .error(
                    format!("volume `{}` is declared twice", name.value),
                    name.span,
                    "declared again here",
                )
                .also(first.span, "first declared here")
                .help("give each volume its own name");
            return reader.push(error);
        }
        self.volumes.push(Spanned {
            value: Volume {
                name: name.value,
                at,
            },
            span: name.span,
        });
    }

    /// Checks an `at=` path: present, absolute, not reserved, and not already taken.
    fn target(
        &mut self,
        reader: &mut Reader<'_>,
        node: &KdlNode,
        at: Option<Spanned<String>>,
        example: &str,
    ) -> Option<String> {
        let Some(at) = at else {
            let message = format!(
                "`{}` needs `at=`, the path inside the environment",
                node.name().value()
            );
            let error = reader
                .error(message, node.name().span(), "no `at=` given")
                .help(format!("write it as {example}"));
            reader.push(error);
            return None;
        };
        let normalized = match rules::mount_target(&at.value) {
            Ok(path) => path,
            Err(broken) => {
                report(reader, broken, at.span, "invalid path");
                return None;
            }
        };
        if let Some(first) = self.targets.get(&normalized) {
            let error = reader
                .error(
                    format!("two mounts or volumes at `{normalized}`"),
                    at.span,
                    "this one",
                )
                .also(*first, "already used here")
                .help("each path inside the environment can hold one mount or volume");
            reader.push(error);
            return None;
        }
        self.targets.insert(normalized.clone(), at.span);
        Some(normalized)
    }

    fn vars(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        reader.properties(node, &[]);
        for extra in reader.arguments(node) {
            let error = reader
                .error(
                    "`vars` takes a block, not values",
                    extra.span(),
                    "unexpected value",
                )
                .help("write it as vars { NAME \"value\" }");
            reader.push(error);
        }
        let Some(children) = node.children() else {
            let error = reader
                .error("`vars` needs a block", node.name().span(), "no block given")
                .help("write it as vars { NAME \"value\" }");
            return reader.push(error);
        };
        for child in children.nodes() {
            reader.no_node_annotation(child);
            reader.properties(child, &[]);
            reader.no_children(child);
            let name = child.name().value().to_string();
            let span = child.name().span();
            if let Err(broken) = rules::variable_name(&name) {
                report(reader, broken, span, "invalid name");
                continue;
            }
            let Some(value) = var_value(reader, child) else {
                continue;
            };
            if let Some(first) = self.var_spans.get(&name) {
                let error = reader
                    .error(
                        format!("variable `{name}` is set twice"),
                        span,
                        "set again here",
                    )
                    .also(*first, "first set here");
                reader.push(error);
                continue;
            }
            self.var_spans.insert(name.clone(), span);
            self.vars.insert(name, value);
        }
    }

    fn pass(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        reader.properties(node, &[]);
        reader.no_children(node);
        for name in reader.some_strings(node, "pass \"SSH_AUTH_SOCK\" \"HTTP_PROXY\"") {
            match rules::variable_name(&name.value) {
                Ok(()) => self.pass.push(name.value),
                Err(broken) => report(reader, broken, name.span, "invalid name"),
            }
        }
    }

    fn peer(&mut self, reader: &mut Reader<'_>, node: &KdlNode, origin: &Origin) {
        let props = reader.properties(node, &[PropRule::string("file")]);
        let Some(name) = reader.one_string(node, "peer \"db\" file=\"envs/postgres.kdl\"") else {
            return;
        };
        if let Err(broken) = rules::host_name("peer", &name.value) {
            return report(reader, broken, name.span, "invalid peer name");
        }
        if let Some(first) = self.peers.iter().find(|p| p.name.value == name.value) {
            let error = reader
                .error(
                    format!("peer `{}` is declared twice", name.value),
                    name.span,
                    "declared again here",
                )
                .also(first.name.span, "first declared here")
                .help("give each peer its own name");
            return reader.push(error);
        }
        let source = match (props.string("file"), node.children()) {
            (Some(file), None) => {
                if file.value.is_empty() {
                    return reader.fail("`file=` is empty", file.span, "name the peer's env file");
                }
                PeerSource::File {
                    path: resolve(&origin.dir, &file.value),
                    written: file,
                }
            }
            (None, Some(block)) => match read_document(reader, block, origin, block.span()) {
                Some(parsed) => PeerSource::Inline(Box::new(parsed)),
                None => return,
            },
            (Some(file), Some(_)) => {
                let error = reader
                    .error(
                        format!("peer `{}` has both `file=` and a block", name.value),
                        file.span,
                        "file given here",
                    )
                    .help("describe the peer in its own file or inline, not both");
                return reader.push(error);
            }
            (None, None) => {
                let error = reader
                    .error(format!("peer `{}` says nothing about its environment", name.value), node.name().span(), "no `file=` and no block")
                    .help("write peer \"db\" file=\"envs/postgres.kdl\", or describe it inline in a { ... } block");
                return reader.push(error);
            }
        };
        self.peers.push(PeerDecl { name, source });
    }

    fn service(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        reader.properties(node, &[]);
        reader.no_children(node);
        if let Some(command) = reader.one_string(node, "service \"redis-server --port 6379\"") {
            if command.value.trim().is_empty() {
                return reader.fail("`service` command is empty", command.span, "nothing to run");
            }
            self.service = Some(command.value);
        }
    }

    fn port(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        reader.properties(node, &[]);
        reader.no_children(node);
        for port in reader.some_integers(node, "port 5432") {
            match rules::port(port.value) {
                Ok(port) => self.ports.push(port),
                Err(broken) => report(reader, broken, port.span, "out of range"),
            }
        }
    }

    fn ready(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        let props = reader.properties(
            node,
            &[
                PropRule::integer("tcp"),
                PropRule::string("cmd"),
                PropRule::integer("timeout"),
            ],
        );
        reader.no_children(node);
        for extra in reader.arguments(node) {
            let error = reader
                .error(
                    "`ready` takes properties, not values",
                    extra.span(),
                    "unexpected value",
                )
                .help("write ready tcp=5432 or ready cmd=\"pg_isready\"");
            reader.push(error);
        }
        let timeout_secs = match props.integer("timeout") {
            None => DEFAULT_READY_TIMEOUT_SECS,
            Some(t) => match u32::try_from(t.value) {
                Ok(secs) if secs > 0 => secs,
                _ => {
                    return reader.fail(
                        format!("timeout {} is out of range", t.value),
                        t.span,
                        "seconds, at least 1",
                    );
                }
            },
        };
        let check = match (props.integer("tcp"), props.string("cmd")) {
            (Some(port), None) => match rules::port(port.value) {
                Ok(port) => ReadyCheck::Tcp(port),
                Err(broken) => return report(reader, broken, port.span, "out of range"),
            },
            (None, Some(cmd)) if !cmd.value.trim().is_empty() => ReadyCheck::Cmd(cmd.value),
            (None, Some(cmd)) => return reader.fail("`cmd=` is empty", cmd.span, "nothing to run"),
            (Some(port), Some(cmd)) => {
                let error = reader
                    .error(
                        "`ready` takes `tcp=` or `cmd=`, not both",
                        cmd.span,
                        "second probe",
                    )
                    .also(port.span, "first probe")
                    .help("choose one probe");
                return reader.push(error);
            }
            (None, None) => {
                let error = reader
                    .error(
                        "`ready` needs `tcp=PORT` or `cmd=\"...\"`",
                        node.name().span(),
                        "no probe given",
                    )
                    .help("write ready tcp=5432 or ready cmd=\"pg_isready\"");
                return reader.push(error);
            }
        };
        self.ready = Some(Ready {
            check,
            timeout_secs,
        });
    }

    fn user(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        if let Some(value) = keyword(reader, node, &["host", "root"], "user \"root\"") {
            self.user = if value == "root" {
                User::Root
            } else {
                User::Host
            };
        }
    }

    fn network(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        if let Some(value) = keyword(
            reader,
            node,
            &["host", "private", "none"],
            "network \"private\"",
        ) {
            self.network = match value {
                "private" => Network::Private,
                "none" => Network::None,
                _ => Network::Host,
            };
        }
    }

    fn shell(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        reader.properties(node, &[]);
        reader.no_children(node);
        if let Some(shell) = reader.one_string(node, "shell \"zsh\"") {
            if shell.value.trim().is_empty() {
                return reader.fail("`shell` is empty", shell.span, "name a program");
            }
            self.shell = Some(shell.value);
        }
    }

    fn command(&mut self, reader: &mut Reader<'_>, node: &KdlNode) {
        reader.properties(node, &[]);
        reader.no_children(node);
        if let Some(command) = reader.one_string(node, "command \"python3 -m app\"") {
            if command.value.trim().is_empty() {
                return reader.fail(
                    "`command` is empty",
                    command.span,
                    "name what the image runs",
                );
            }
            self.command = Some(command.value);
        }
    }

    fn copy(&mut self, reader: &mut Reader<'_>, node: &KdlNode, origin: &Origin) {
        let props = reader.properties(node, &[PropRule::string("at")]);
        reader.no_children(node);
        let example = "copy \".\" at=\"/app\"";
        let source = reader.one_string(node, example);
        let Some(at) = props.string("at") else {
            return reader.fail(
                "`copy` needs `at=`: where the files go in the image",
                node.name().span(),
                "no `at=`",
            );
        };
        let Some(source) = source else { return };
        if let Err(broken) = rules::copy_source(&source.value) {
            return report(reader, broken, source.span, "not a path in the project");
        }
        let at_path = match rules::container_path(&at.value) {
            Ok(path) => path,
            Err(broken) => return report(reader, broken, at.span, "must be absolute"),
        };
        self.copies.push(CopyFiles {
            source_path: resolve(&origin.dir, &source.value),
            source: source.value,
            at: at_path,
        });
    }

    fn finish(
        self,
        reader: &mut Reader<'_>,
        origin: &Origin,
        whole: SourceSpan,
    ) -> Option<ParsedSpec> {
        if self.base.is_none() && !self.base_given {
            let start = SourceSpan::new(whole.offset().into(), 0);
            let error = reader
                .error(
                    "missing `base`: which Debian release the environment starts from",
                    start,
                    "no `base` in this environment",
                )
                .help("add a line such as: base \"debian:bookworm\"");
            reader.push(error);
        }
        if let Some(Ready {
            check: ReadyCheck::Tcp(port),
            ..
        }) = &self.ready
            && !self.ports.is_empty()
            && !self.ports.contains(port)
            && let Some(span) = self.seen.get("ready")
        {
            let warning = reader
                .error(
                    format!("`ready tcp={port}` probes a port not listed in `port`"),
                    *span,
                    "probe",
                )
                .warning()
                .help(format!(
                    "add `port {port}` so other environments can reach it"
                ));
            reader.push(warning);
        }
        let base = self.base?;
        let mut pass = self.pass;
        pass.sort();
        pass.dedup();
        let mut ports = self.ports;
        ports.sort_unstable();
        ports.dedup();
        let spec = Spec {
            name: self.name,
            base,
            mirror: self.mirror,
            snapshot: self.snapshot,
            cache: self.cache,
            packages: self.packages.into_iter().map(|p| p.value).collect(),
            recommends: self.recommends,
            setup: self.setup,
            workdir: self.workdir,
            mounts: self.mounts,
            volumes: self.volumes.into_iter().map(|v| v.value).collect(),
            vars: self.vars,
            pass,
            peers: Vec::new(),
            service: self.service,
            ports,
            ready: self.ready,
            user: self.user,
            network: self.network,
            shell: self.shell,
            command: self.command,
            copies: self.copies,
            origin: origin.clone(),
        };
        Some(ParsedSpec {
            spec,
            peers: self.peers,
            warnings: Vec::new(),
        })
    }
}

/// A variable's value: a string, or a number written bare (`PORT 8080`).
fn var_value(reader: &mut Reader<'_>, node: &KdlNode) -> Option<String> {
    let arguments = reader.arguments(node);
    let name = node.name().value();
    let example = format!("{name} \"value\"");
    match arguments.as_slice() {
        [only] => match only.value() {
            kdl::KdlValue::String(text) => Some(text.clone()),
            kdl::KdlValue::Integer(number) => Some(number.to_string()),
            kdl::KdlValue::Float(number) => Some(number.to_string()),
            other => {
                let message = format!(
                    "variable `{name}` must be a string, not {}",
                    super::kdl_reader::describe(other)
                );
                let error = reader
                    .error(message, only.span(), "expected a string")
                    .help(format!("write it as {example}"));
                reader.push(error);
                None
            }
        },
        _ => {
            let error = reader
                .error(
                    format!("variable `{name}` needs exactly one value"),
                    node.name().span(),
                    "one value expected",
                )
                .help(format!("write it as {example}"));
            reader.push(error);
            None
        }
    }
}

/// One string argument that must be one of `allowed`.
fn keyword<'k>(
    reader: &mut Reader<'_>,
    node: &KdlNode,
    allowed: &[&'k str],
    example: &str,
) -> Option<&'k str> {
    reader.properties(node, &[]);
    reader.no_children(node);
    let value = reader.one_string(node, example)?;
    if let Some(found) = allowed.iter().find(|a| **a == value.value) {
        return Some(found);
    }
    let message = format!("`{}` cannot be `{}`", node.name().value(), value.value);
    let error = reader
        .error(message, value.span, "unknown value")
        .help(suggest::hint(&value.value, allowed));
    reader.push(error);
    None
}

fn report(reader: &mut Reader<'_>, broken: rules::Broken, span: SourceSpan, label: &str) {
    let error = reader.error(broken.message, span, label).help(broken.help);
    reader.push(error);
}

/// Resolves a path written in the env file against its folder, without touching the disk.
pub fn resolve(dir: &Path, written: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for component in dir.join(written).components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
