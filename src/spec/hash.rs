//! The spec's canonical form and its blake3 hash.
//!
//! The hash answers "would this env file give a different image or session?". It covers every
//! field that does, and nothing that does not:
//! - left out: comments, white space, the env file's location (`Origin`, resolved paths), and
//!   the order of `packages`, `vars`, `pass`, `port`, `mount`, `volume`, `peer` and `inputs=`
//!   (all of them are sets or maps to the later stages);
//! - kept in order: `setup` steps, since each runs on top of the one before.
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
