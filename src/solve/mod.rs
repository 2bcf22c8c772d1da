//! Stage 2: `Spec` -> `Lock`: signed Debian indexes, dependency resolution, `env.lock`.
//!
//! Not built yet; `env lock` reports that it is not available (see the book's architecture
//! chapter for the plan).
