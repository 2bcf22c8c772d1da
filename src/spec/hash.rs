//! The spec's canonical form and its blake3 hash.
//!
//! The hash answers "would this env file give a different image or session?". It covers every
//! field that does, and nothing that does not:
//! - left out: comments, white space, the env file's location (`Origin`, resolved paths), and
//!   the order of `packages`, `vars`, `pass`, `port`, `mount`, `volume`, `peer` and `inputs=`
//!   (all of them are sets or maps to the later stages);
//! - kept in order: `setup` steps, since each runs on top of the one before, and `copy` nodes,
//!   since a later one may overwrite an earlier one's files;
//! - left out when absent (`copy`, `command`, added later), so files without them keep the
//!   hash they had.
//! - peers are hashed by content, so moving a peer's file does not change the hash.
//!
//! Bump `CANONICAL_VERSION` whenever the canonical form changes meaning.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{Mirror, Network, Ready, SetupStep, Spec, User};

const CANONICAL_VERSION: &str = "envkit-spec-v1";

#[derive(Serialize)]
struct Canonical<'a> {
    name: Option<&'a str>,
    base: String,
    mirror: Option<CanonicalMirror<'a>>,
    packages: Vec<&'a str>,
    recommends: bool,
    setup: &'a [SetupStep],
    workdir: Option<&'a str>,
    /// `at` -> (source as written, readonly).
    mounts: BTreeMap<&'a str, (&'a str, bool)>,
    /// name -> `at`.
    volumes: BTreeMap<&'a str, &'a str>,
    vars: &'a BTreeMap<String, String>,
    pass: &'a [String],
    /// peer name -> the peer's own hash.
    peers: BTreeMap<&'a str, String>,
    service: Option<&'a str>,
    ports: &'a [u16],
    ready: Option<&'a Ready>,
    user: User,
    network: Network,
    shell: Option<&'a str>,
    /// (source as written, `at`), in order: a later copy may overwrite an earlier one's files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    copies: Vec<(&'a str, &'a str)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a str>,
}

#[derive(Serialize)]
struct CanonicalMirror<'a> {
    url: &'a str,
    keyring: Option<&'a str>,
}

impl<'a> Canonical<'a> {
    fn of(spec: &'a Spec) -> Self {
        let mut packages: Vec<&str> = spec.packages.iter().map(String::as_str).collect();
        packages.sort_unstable();
        Canonical {
            name: spec.name.as_deref(),
            base: spec.base.to_string(),
            mirror: spec
                .mirror
                .as_ref()
                .map(|Mirror { url, keyring, .. }| CanonicalMirror {
                    url,
                    keyring: keyring.as_deref(),
                }),
            packages,
            recommends: spec.recommends,
            setup: &spec.setup,
            workdir: spec.workdir.as_deref(),
            mounts: spec
                .mounts
                .iter()
                .map(|m| (m.at.as_str(), (m.source.as_str(), m.readonly)))
                .collect(),
            volumes: spec
                .volumes
                .iter()
                .map(|v| (v.name.as_str(), v.at.as_str()))
                .collect(),
            vars: &spec.vars,
            pass: &spec.pass,
            peers: spec
                .peers
                .iter()
                .map(|p| (p.name.as_str(), spec_hash(&p.spec)))
                .collect(),
            service: spec.service.as_deref(),
            ports: &spec.ports,
            ready: spec.ready.as_ref(),
            user: spec.user,
            network: spec.network,
            shell: spec.shell.as_deref(),
            copies: spec
                .copies
                .iter()
                .map(|c| (c.source.as_str(), c.at.as_str()))
                .collect(),
            command: spec.command.as_deref(),
        }
    }
}

/// The canonical form as JSON text: stable key order, sets sorted.
pub fn canonical_json(spec: &Spec) -> String {
    // Serialising plain strings, numbers, vectors and string-keyed maps cannot fail.
    serde_json::to_string(&Canonical::of(spec)).unwrap_or_default()
}

/// Hex blake3 of the versioned canonical form.
pub fn spec_hash(spec: &Spec) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(CANONICAL_VERSION.as_bytes());
    hasher.update(b"\0");
    hasher.update(canonical_json(spec).as_bytes());
    hasher.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::spec_hash;
    use crate::spec::parse_str;

    const PACKAGES: &[&str] = &[
        "python3",
        "git",
        "curl",
        "g++",
        "libssl-dev",
        "xz-utils",
        "make",
    ];
    const PORTS: &[u16] = &[80, 443, 5432, 6379, 8080];
    const PASS: &[&str] = &["SSH_AUTH_SOCK", "HTTP_PROXY", "TERM_PROGRAM"];

    /// What an env file says, independent of how it is written.
    #[derive(Debug, Clone)]
    struct Model {
        packages: Vec<&'static str>,
        vars: Vec<(String, String)>,
        ports: Vec<u16>,
        pass: Vec<&'static str>,
        setup: Vec<String>,
        readonly: bool,
    }

    fn model() -> impl Strategy<Value = Model> {
        (
            proptest::sample::subsequence(PACKAGES, 1..PACKAGES.len()),
            proptest::collection::btree_map("[A-Z][A-Z0-9_]{0,6}", "[a-z0-9:/@. ]{0,12}", 0..5),
            proptest::sample::subsequence(PORTS, 0..PORTS.len()),
            proptest::sample::subsequence(PASS, 0..PASS.len()),
            proptest::collection::vec("[a-z]{1,8}( --[a-z]{1,5})?", 0..3),
            any::<bool>(),
        )
            .prop_map(|(packages, vars, ports, pass, setup, readonly)| Model {
                packages,
                vars: vars.into_iter().collect(),
                ports,
                pass,
                setup,
                readonly,
            })
    }

    /// How an env file is written: node order, var order, indentation and comments.
    #[derive(Debug, Clone)]
    struct Layout {
        node_order: Vec<usize>,
        var_order: Vec<usize>,
        decorations: Vec<(usize, bool)>,
    }

    fn layout(nodes: usize, vars: usize) -> impl Strategy<Value = Layout> {
        (
            Just((0..nodes).collect::<Vec<_>>()).prop_shuffle(),
            Just((0..vars).collect::<Vec<_>>()).prop_shuffle(),
            proptest::collection::vec((0usize..4, any::<bool>()), nodes + 1),
        )
            .prop_map(|(node_order, var_order, decorations)| Layout {
                node_order,
                var_order,
                decorations,
            })
    }

    /// Nodes whose relative order carries no meaning, one text each.
    fn unordered_nodes(model: &Model, var_order: &[usize]) -> Vec<String> {
        let mut nodes = vec![
            "name \"app\"".to_string(),
            "base \"debian:bookworm\"".to_string(),
        ];
        nodes.extend(model.packages.iter().map(|p| format!("packages \"{p}\"")));
        nodes.extend(model.ports.iter().map(|p| format!("port {p}")));
        nodes.extend(model.pass.iter().map(|p| format!("pass \"{p}\"")));
        nodes.push(format!(
            "mount \"src\" at=\"/src\" readonly=#{}",
            model.readonly
        ));
        nodes.push("mount \".\" at=\"/work\"".to_string());
        let vars: Vec<String> = var_order
            .iter()
            .filter_map(|&i| model.vars.get(i))
            .map(|(name, value)| format!("    {name} \"{value}\"\n"))
            .collect();
        nodes.push(format!("vars {{\n{}}}", vars.concat()));
        nodes
    }

    fn render(model: &Model, layout: &Layout) -> String {
        let nodes = unordered_nodes(model, &layout.var_order);
        let mut text = String::new();
        for (position, &index) in layout.node_order.iter().enumerate() {
            let (indent, comment) = layout.decorations[position];
            text.push_str(&" ".repeat(indent));
            text.push_str(&nodes[index]);
            if comment {
                text.push_str(" // a comment");
            }
            text.push('\n');
            if indent == 3 {
                text.push('\n');
            }
        }
        // Setup steps keep their order: each runs on top of the one before.
        for command in &model.setup {
            text.push_str(&format!("setup \"{command}\"\n"));
        }
        text
    }

    fn hash_of(name: &str, text: &str) -> String {
        match parse_str(name, text) {
            Ok(spec) => spec_hash(&spec),
            Err(errors) => panic!(
                "{text}\n{:?}",
                errors.iter().map(|e| e.message()).collect::<Vec<_>>()
            ),
        }
    }

    fn model_and_two_layouts() -> impl Strategy<Value = (Model, Layout, Layout)> {
        model().prop_flat_map(|m| {
            let (nodes, vars) = (unordered_nodes(&m, &[]).len(), m.vars.len());
            let (a, b) = (layout(nodes, vars), layout(nodes, vars));
            (Just(m), a, b)
        })
    }

    proptest! {
        #[test]
        fn writing_style_and_location_do_not_change_the_hash((model, a, b) in model_and_two_layouts()) {
            let first = hash_of("env.kdl", &render(&model, &a));
            let second = hash_of("/elsewhere/deeper/project/env.kdl", &render(&model, &b));
            prop_assert_eq!(first, second);
        }

        #[test]
        fn another_package_changes_the_hash((model, a, _) in model_and_two_layouts()) {
            let Some(extra) = PACKAGES.iter().find(|p| !model.packages.contains(p)) else {
                return Ok(());
            };
            let mut bigger = model.clone();
            bigger.packages.push(extra);
            let mut bigger_layout = a.clone();
            bigger_layout.node_order.push(a.node_order.len());
            bigger_layout.decorations.push((0, false));
            prop_assert_ne!(hash_of("env.kdl", &render(&model, &a)), hash_of("env.kdl", &render(&bigger, &bigger_layout)));
        }

        #[test]
        fn a_changed_value_changes_the_hash((model, a, _) in model_and_two_layouts()) {
            let mut flipped = model.clone();
            flipped.readonly = !model.readonly;
            prop_assert_ne!(hash_of("env.kdl", &render(&model, &a)), hash_of("env.kdl", &render(&flipped, &a)));
            if let Some((_, value)) = model.vars.first() {
                let mut changed = model.clone();
                changed.vars[0].1 = format!("{value}x");
                prop_assert_ne!(hash_of("env.kdl", &render(&model, &a)), hash_of("env.kdl", &render(&changed, &a)));
            }
        }

        #[test]
        fn setup_order_changes_the_hash((model, a, _) in model_and_two_layouts()) {
            if model.setup.len() >= 2 && model.setup[0] != model.setup[1] {
                let mut swapped = model.clone();
                swapped.setup.swap(0, 1);
                prop_assert_ne!(hash_of("env.kdl", &render(&model, &a)), hash_of("env.kdl", &render(&swapped, &a)));
            }
        }
    }

    #[test]
    fn peers_are_hashed_by_content() {
        let inline = "base \"debian:bookworm\"\npeer \"db\" {\n base \"debian:bookworm\"\n service \"x\"\n}\n";
        let changed = inline.replace("service \"x\"", "service \"y\"");
        let hash = |text: &str| {
            let loaded =
                crate::spec::load_text(std::path::Path::new("/project/env.kdl"), text).unwrap();
            spec_hash(&loaded.spec)
        };
        assert_ne!(hash(inline), hash(&changed));
        assert_ne!(hash(inline), hash("base \"debian:bookworm\"\n"));
    }
}
