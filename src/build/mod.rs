//! Stage 3: `Lock` -> `Image`: verified `.deb`s installed into content-addressed layers.
//!
//! [`image::build`] is the entry point: [`plan`] keys the layers, [`download`] fetches the
//! `.deb`s, [`base`] and [`layers`] build what the [`store`] lacks, [`layer_tar`] gives each
//! its diff_id and [`members`] the list of its files. Around it: [`verify`] (a layer's tree
//! against its diff_id, for `env verify`), [`roots`] and [`gc`] (what to keep), [`export`]
//! (OCI archives), [`shortcut`] (a project's image found again without re-planning). Where
//! anything lives in the store and the download cache is [`store`]'s alone to say.
//!
//! [`unpack`] puts a `.deb`'s data into a tree for [`base`]: `crate::debian` reads the `.deb`,
//! [`extract`] writes its tar stream, confined to the tree.
pub mod archive;
pub mod base;
pub mod copy;
pub mod docker_archive;
pub mod download;
pub mod export;
pub mod extract;
pub mod gc;
pub mod image;
pub mod import;
pub mod layer_kind;
pub mod layer_tar;
pub mod layers;
pub mod members;
pub mod plan;
pub mod roots;
pub mod shortcut;
pub mod store;
pub mod unpack;
pub mod verify;
