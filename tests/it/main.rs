//! End-to-end tests: they drive the built `env` binary as a user would.
//!
//! Modules, one per concern:
//! - `passthrough`: `env` keeps behaving as coreutils `env` for non-envkit command lines.
//! - `base_image`: `base image=` with images buildah and podman made from a busybox root, from
//!   `docker-registry`: layers in every compression, whiteouts, an index, credentials, bad input.
//! - `build`: `env build` of real bookworm and trixie images (root, network tier).
//! - `check`: diagnostics for every kind of mistake (snapshots) and valid files.
//! - `inspect`: `env inspect --json` and the canonical hash's location independence.
//! - `init`: `env init` and what it writes.
//! - `lock`: `env lock` on signed fixture repositories, and once on the real mirror.
//! - `envs`: every example in `envs/` passes `env check`.
//! - `docs`: the generated command reference and the book's links.
//! - `layout`: the source tree keeps the architecture chapter's shape (no import cycles, leaves
//!   that import nothing, a CLI without kernel calls, one owner per folder name).
//! - `gc`: `env gc` on an empty store, and after a rebuild (root, network tier).
//! - `export`: `env export` checked with skopeo and umoci (root, network tier).
//! - `run`: `env run` and `env shell` as root: exit codes, signals, stdin, isolation, volumes,
//!   read-only mounts, the throw-away root, a shell on a terminal (root, network tier).
//! - `rootless`: an unprivileged user (made by root) builds the same image and owns what it
//!   creates; without subordinate ids it is told how to get them (root, network tier).
//! - `cli`: help, version and completions.
//! - `peers`: `env up`, `down`, `ps` and `logs` with real PostgreSQL and with two peers on one
//!   port, as root and as an unprivileged user (root, network tier).
//! - `peer_network`: two peers whose services both bind the wildcard address on one port,
//!   reached from every kind of environment through ten up/down cycles, a thousand
//!   connections at once through one link, nothing left after `env down` (root and rootless).
//! - `engines`: podman loads the OCI and Docker archives of an app baked with `copy` and
//!   `command` and runs it as `env run` does; `podman kube play` and `podman-compose` run the
//!   Kubernetes and Compose exports of an app and its PostgreSQL peer, pulled from
//!   `docker-registry`, and the manifests pass kubernetes-validate (root, network tier).
//! - `registry`: `env push` and `env pull` against `docker-registry` on loopback, judged by
//!   skopeo: gzip and zstd, nothing sent twice, a pull into an empty store that runs without
//!   building, a damaged blob refused, a connection dropped mid-upload, Basic credentials,
//!   a credential helper and a token realm, the team cache, the book's CI job (root, network).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test on any setup error"
)]

mod common;

mod base_image;
mod build;
mod check;
mod cli;
mod docs;
mod engines;
mod envs;
mod export;
mod gc;
mod init;
mod inspect;
mod layout;
mod lock;
mod passthrough;
mod peer_network;
mod peers;
mod registry;
mod rootless;
mod run;
