//! Typed access to KDL nodes that records a diagnostic for every mismatch instead of stopping.
//!
//! The node handlers in `parse` ask for "one string argument" or "a boolean `readonly=`"; this
//! module checks arity, types, unknown and repeated properties, stray blocks and type
//! annotations, so every handler gets the same precise errors.

use std::collections::HashMap;

use kdl::{KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;

use super::diagnostic::{DiagnosticBuilder, SourceFile, SpecDiagnostic};
use super::suggest;

/// A value with the span of the text it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: SourceSpan,
}

/// Collects the diagnostics for one file while its nodes are read.
pub struct Reader<'a> {
    pub file: &'a SourceFile,
    pub diagnostics: Vec<SpecDiagnostic>,
}

/// What a property's value must be.
#[derive(Clone, Copy)]
pub enum PropKind {
    String,
    Bool,
    Integer,
}

/// The properties one node accepts.
pub struct PropRule {
    pub key: &'static str,
    pub kind: PropKind,
    /// Whether the property may be given more than once (each adds a value).
    pub repeatable: bool,
}

impl PropRule {
    pub const fn string(key: &'static str) -> Self {
        Self {
            key,
            kind: PropKind::String,
            repeatable: false,
        }
    }
    pub const fn bool(key: &'static str) -> Self {
        Self {
            key,
            kind: PropKind::Bool,
            repeatable: false,
        }
    }
    pub const fn integer(key: &'static str) -> Self {
        Self {
            key,
            kind: PropKind::Integer,
            repeatable: false,
        }
    }
    pub const fn repeated_string(key: &'static str) -> Self {
        Self {
            key,
            kind: PropKind::String,
            repeatable: true,
        }
    }
}

/// A node's properties, checked against its rules.
#[derive(Default)]
pub struct Props {
    values: HashMap<&'static str, Vec<Spanned<KdlValue>>>,
}

impl Props {
    /// The string value of `key`, when given.
    pub fn string(&self, key: &str) -> Option<Spanned<String>> {
        self.strings(key).into_iter().next_back()
    }

    /// Every string value of a repeatable `key`, in order.
    pub fn strings(&self, key: &str) -> Vec<Spanned<String>> {
        self.values
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|v| {
                v.value.as_string().map(|s| Spanned {
                    value: s.to_string(),
                    span: v.span,
                })
            })
            .collect()
    }

    /// The boolean value of `key`, when given.
    pub fn bool(&self, key: &str) -> Option<Spanned<bool>> {
        let v = self.values.get(key)?.last()?;
        v.value.as_bool().map(|b| Spanned {
            value: b,
            span: v.span,
        })
    }

    /// The integer value of `key`, when given.
    pub fn integer(&self, key: &str) -> Option<Spanned<i128>> {
        let v = self.values.get(key)?.last()?;
        v.value.as_integer().map(|i| Spanned {
            value: i,
            span: v.span,
        })
    }
}

/// How to name a KDL value's type in a message.
pub fn describe(value: &KdlValue) -> &'static str {
    match value {
        KdlValue::String(_) => "a string",
        KdlValue::Integer(_) => "an integer",
        KdlValue::Float(_) => "a number with a fraction",
        KdlValue::Bool(_) => "a boolean",
        KdlValue::Null => "#null",
    }
}

impl<'a> Reader<'a> {
    pub fn new(file: &'a SourceFile) -> Self {
        Self {
            file,
            diagnostics: Vec::new(),
        }
    }

    /// Starts an error at `span`; call `.build()` and [`Reader::push`] it.
    pub fn error(
        &self,
        message: impl Into<String>,
        span: SourceSpan,
        label: impl Into<String>,
    ) -> DiagnosticBuilder {
        DiagnosticBuilder::error(self.file, message, span, label)
    }

    pub fn push(&mut self, diagnostic: DiagnosticBuilder) {
        self.diagnostics.push(diagnostic.build());
    }

    /// Records an error with just a message and a label.
    pub fn fail(&mut self, message: impl Into<String>, span: SourceSpan, label: impl Into<String>) {
        let diagnostic = self.error(message, span, label);
        self.push(diagnostic);
    }

    /// The node's positional arguments, after rejecting type annotations on them.
    pub fn arguments<'n>(&mut self, node: &'n KdlNode) -> Vec<&'n KdlEntry> {
        let mut arguments = Vec::new();
        for entry in node.entries() {
            self.reject_annotation_on_entry(entry);
            if entry.name().is_none() {
                arguments.push(entry);
            }
        }
        arguments
    }

    fn reject_annotation_on_entry(&mut self, entry: &KdlEntry) {
        if let Some(ty) = entry.ty() {
            let message = format!("type annotation `({})` is not used by envkit", ty.value());
            let error = self
                .error(message, ty.span(), "remove this")
                .help("env files use plain values; write the value without the `(...)` prefix");
            self.push(error);
        }
    }

    /// Checks the node's properties against `rules`, reporting unknown, repeated and mistyped
    /// ones, and returns the valid ones.
    pub fn properties(&mut self, node: &KdlNode, rules: &[PropRule]) -> Props {
        let node_name = node.name().value();
        let mut props = Props::default();
        for entry in node.entries() {
            let Some(key) = entry.name() else { continue };
            let Some(rule) = rules.iter().find(|rule| rule.key == key.value()) else {
                let allowed: Vec<&str> = rules.iter().map(|rule| rule.key).collect();
                let message = format!("unknown property `{}` on `{node_name}`", key.value());
                let help = if allowed.is_empty() {
                    format!("`{node_name}` takes no properties")
                } else {
                    suggest::hint(key.value(), &allowed)
                };
                let error = self
                    .error(message, key.span(), "unknown property")
                    .help(help);
                self.push(error);
                continue;
            };
            let earlier = props.values.get(rule.key).and_then(|values| values.first());
            if let (false, Some(first)) = (rule.repeatable, earlier) {
                let message = format!("`{}=` is given twice on `{node_name}`", rule.key);
                let error = self
                    .error(message, entry.span(), "given again here")
                    .also(first.span, "first given here");
                self.push(error);
                continue;
            }
            let value = entry.value();
            let fits = match rule.kind {
                PropKind::String => value.is_string(),
                PropKind::Bool => value.is_bool(),
                PropKind::Integer => value.is_integer(),
            };
            if !fits {
                let (expected, example) = match rule.kind {
                    PropKind::String => ("a string", format!("{}=\"...\"", rule.key)),
                    PropKind::Bool => ("#true or #false", format!("{}=#true", rule.key)),
                    PropKind::Integer => ("an integer", format!("{}=5432", rule.key)),
                };
                let message = format!(
                    "`{}=` on `{node_name}` must be {expected}, not {}",
                    rule.key,
                    describe(value)
                );
                let error = self
                    .error(message, entry.span(), format!("expected {expected}"))
                    .help(format!("write it as {example}"));
                self.push(error);
                continue;
            }
            props.values.entry(rule.key).or_default().push(Spanned {
                value: value.clone(),
                span: entry.span(),
            });
        }
        props
    }

    /// Reports a block (`{ ... }`) on a node that takes none.
    pub fn no_children(&mut self, node: &KdlNode) {
        if let Some(children) = node.children() {
            let message = format!("`{}` does not take a block", node.name().value());
            let error = self
                .error(message, children.span(), "unexpected block")
                .help("remove the `{ ... }` part");
            self.push(error);
        }
    }

    /// Reports a type annotation on a node name.
    pub fn no_node_annotation(&mut self, node: &KdlNode) {
        if let Some(ty) = node.ty() {
            let message = format!("type annotation `({})` is not used by envkit", ty.value());
            let error = self.error(message, ty.span(), "remove this");
            self.push(error);
        }
    }

    /// Exactly one string argument, as in `name "api"`.
    pub fn one_string(&mut self, node: &KdlNode, example: &str) -> Option<Spanned<String>> {
        let arguments = self.arguments(node);
        let name = node.name().value();
        match arguments.as_slice() {
            [only] => self.string_value(node, only, example),
            [] => {
                let message = format!("`{name}` needs a value");
                let error = self
                    .error(message, node.name().span(), "no value given")
                    .help(format!("write it as {example}"));
                self.push(error);
                None
            }
            [_, extra, ..] => {
                let message = format!(
                    "`{name}` takes one value, but {} were given",
                    arguments.len()
                );
                let error = self
                    .error(message, extra.span(), "unexpected value")
                    .help(format!("write it as {example}"));
                self.push(error);
                None
            }
        }
    }

    /// One or more string arguments, as in `packages "git" "curl"`.
    pub fn some_strings(&mut self, node: &KdlNode, example: &str) -> Vec<Spanned<String>> {
        let arguments = self.arguments(node);
        if arguments.is_empty() {
            let message = format!("`{}` needs at least one value", node.name().value());
            let error = self
                .error(message, node.name().span(), "no values given")
                .help(format!("write it as {example}"));
            self.push(error);
        }
        arguments
            .into_iter()
            .filter_map(|entry| self.string_value(node, entry, example))
            .collect()
    }

    /// One or more integer arguments, as in `port 80 443`.
    pub fn some_integers(&mut self, node: &KdlNode, example: &str) -> Vec<Spanned<i128>> {
        let arguments = self.arguments(node);
        let name = node.name().value();
        if arguments.is_empty() {
            let message = format!("`{name}` needs at least one value");
            let error = self
                .error(message, node.name().span(), "no values given")
                .help(format!("write it as {example}"));
            self.push(error);
        }
        let mut out = Vec::new();
        for entry in arguments {
            match entry.value() {
                KdlValue::Integer(value) => out.push(Spanned {
                    value: *value,
                    span: entry.span(),
                }),
                other => {
                    let message = format!("`{name}` takes integers, not {}", describe(other));
                    let error = self
                        .error(message, entry.span(), "expected an integer")
                        .help(format!("write it as {example}"));
                    self.push(error);
                }
            }
        }
        out
    }

    /// Exactly one boolean argument, as in `recommends #true`.
    pub fn one_bool(&mut self, node: &KdlNode, example: &str) -> Option<Spanned<bool>> {
        let arguments = self.arguments(node);
        let name = node.name().value();
        match arguments.as_slice() {
            [only] => match only.value() {
                KdlValue::Bool(value) => Some(Spanned {
                    value: *value,
                    span: only.span(),
                }),
                KdlValue::String(text) if text == "true" || text == "false" => {
                    let message =
                        format!("`{name}` takes #true or #false, not the string \"{text}\"");
                    let error = self
                        .error(message, only.span(), "a string, not a boolean")
                        .help(format!("KDL v2 writes booleans as #{text}"));
                    self.push(error);
                    None
                }
                other => {
                    let message =
                        format!("`{name}` takes #true or #false, not {}", describe(other));
                    let error = self
                        .error(message, only.span(), "expected #true or #false")
                        .help(format!("write it as {example}"));
                    self.push(error);
                    None
                }
            },
            [] => {
                let message = format!("`{name}` needs #true or #false");
                let error = self
                    .error(message, node.name().span(), "no value given")
                    .help(format!("write it as {example}"));
                self.push(error);
                None
            }
            [_, extra, ..] => {
                let message = format!(
                    "`{name}` takes one value, but {} were given",
                    arguments.len()
                );
                let error = self.error(message, extra.span(), "unexpected value");
                self.push(error);
                None
            }
        }
    }

    fn string_value(
        &mut self,
        node: &KdlNode,
        entry: &KdlEntry,
        example: &str,
    ) -> Option<Spanned<String>> {
        match entry.value() {
            KdlValue::String(text) => Some(Spanned {
                value: text.clone(),
                span: entry.span(),
            }),
            other => {
                let message = format!(
                    "`{}` takes strings, not {}",
                    node.name().value(),
                    describe(other)
                );
                let error = self
                    .error(message, entry.span(), "expected a string")
                    .help(format!("put the value in quotes: {example}"));
                self.push(error);
                None
            }
        }
    }
}
