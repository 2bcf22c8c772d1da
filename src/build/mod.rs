//! Stage 3: `Lock` -> `Image`: verified `.deb`s installed into content-addressed layers.
//!
//! Not built yet; `env build` reports that it is not available (see the book's architecture
//! chapter for the plan).
pub mod base;
pub mod deb;
pub mod download;
pub mod export;
pub mod gc;
pub mod image;
pub mod layer_tar;
pub mod layers;
pub mod plan;
pub mod roots;
pub mod store;
