//! Stage 4: `Image` + `Spec` -> a running session: namespaces, mounts, volumes, peers.
//!
//! Not built yet; `env shell` and `env run` report that they are not available (see the book's
//! architecture chapter for the plan).
