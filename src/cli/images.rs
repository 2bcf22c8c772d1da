//! `env images`: the images in the store.

use std::io::Write;

use clap::Parser;

use super::Failure;
use crate::build::download::human_bytes;
use crate::ops;

#[derive(Debug, Parser)]
pub struct ImagesArgs {
    /// Print a JSON array on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &ImagesArgs) -> Result<(), Failure> {
    let images = ops::store::images()?;
    let text = if args.json {
        format!("{:#}\n", serde_json::to_value(&images).unwrap_or_default())
    } else {
        let mut out = format!(
            "{:<32} {:<20} {:>7} {:>10}\n",
            "NAME", "ID", "LAYERS", "SIZE"
        );
        for image in &images {
            let id = image.id.trim_start_matches("sha256:");
            let size: u64 = image.layers.iter().map(|l| l.size).sum();
            out.push_str(&format!(
                "{:<32} {:<20} {:>7} {:>10}\n",
                image.name,
                &id[..id.len().min(12)],
                image.layers.len(),
                human_bytes(size)
            ));
        }
        out
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::io("cannot write to stdout", e))
}
