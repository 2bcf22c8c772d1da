//! `env push REF` and `env pull REF`: renders what `ops::registry` did.

use std::path::Path;

use clap::Parser;

use super::{Failure, Locking, project};
use crate::build::download::human_bytes;
use crate::build::export::LayerCompression;
use crate::ops::{self, registry::Transport};

#[derive(Debug, Parser)]
pub struct PushArgs {
    /// Where to push: `[REGISTRY/]REPOSITORY[:TAG]` (without a tag, the image's own).
    #[arg(value_name = "REF")]
    reference: String,
    /// Push this peer's image instead of the project's (it must be built: `env up`).
    #[arg(long, value_name = "NAME")]
    peer: Option<String>,
    /// How layers are compressed.
    #[arg(long, value_enum, default_value = "gzip")]
    compression: Compression,
    /// Plain HTTP, for a registry on this machine's loopback only.
    #[arg(long)]
    insecure: bool,
    #[command(flatten)]
    locking: Locking,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Compression {
    Gzip,
    Zstd,
}

pub fn push(args: &PushArgs, file: Option<&Path>) -> Result<(), Failure> {
    let compression = match args.compression {
        Compression::Gzip => LayerCompression::Gzip,
        Compression::Zstd => LayerCompression::Zstd,
    };
    let what = match &args.peer {
        Some(name) => ops::push::Pushing::Peer(name),
        None => ops::push::Pushing::Project,
    };
    let transport = Transport {
        insecure: args.insecure,
    };
    let pushed = ops::push::push(
        &project(file)?,
        what,
        &args.reference,
        (compression, transport),
        args.locking.mode(),
    )?;
    eprintln!(
        "pushed {} to {} ({} layers sent, {}; {} already there)",
        pushed.image,
        pushed.reference,
        pushed.layers_sent,
        human_bytes(pushed.bytes_sent),
        pushed.layers_present
    );
    println!("{}", pushed.digest);
    Ok(())
}

#[derive(Debug, Parser)]
pub struct PullArgs {
    /// What to pull: `[REGISTRY/]REPOSITORY[:TAG|@DIGEST]`, an image `env push` sent.
    #[arg(value_name = "REF")]
    reference: String,
    /// Plain HTTP, for a registry on this machine's loopback only.
    #[arg(long)]
    insecure: bool,
}

pub fn pull(args: &PullArgs) -> Result<(), Failure> {
    let pulled = ops::pull::pull(
        &args.reference,
        Transport {
            insecure: args.insecure,
        },
    )?;
    eprintln!(
        "pulled {} from {} ({} layers fetched, {}; {} already in the store)",
        pulled.image,
        pulled.reference,
        pulled.layers_fetched,
        human_bytes(pulled.bytes_fetched),
        pulled.layers_present
    );
    println!("{}", pulled.image);
    Ok(())
}
