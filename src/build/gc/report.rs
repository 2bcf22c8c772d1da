//! What a gc deleted (or, in a dry run, would delete), for `env gc` to tell.

use std::path::PathBuf;

/// What a deleted entry was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Image,
    Layer,
    Download,
    /// Stale roots, build leftovers, orphaned logs, partial downloads and records.
    Leftover,
}

/// One entry gc deleted (or would delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub kind: Kind,
    /// For people: `packages layer 0123456789ab`, `image app:0123456789ab`, ...
    pub what: String,
    pub path: PathBuf,
    /// Disk space it took (allocated blocks; hard links counted once).
    pub bytes: u64,
}

/// What a gc did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub removals: Vec<Removal>,
    /// Entries left alone because another process holds their lock.
    pub in_use: Vec<String>,
    /// Things the user should know (a live lock that cannot be read, ...).
    pub warnings: Vec<String>,
}

impl Report {
    pub fn count(&self, kind: Kind) -> usize {
        self.removals.iter().filter(|r| r.kind == kind).count()
    }

    pub fn bytes(&self) -> u64 {
        self.removals.iter().map(|r| r.bytes).sum()
    }

    /// `3 layers, 1 image, 12 downloads: 412.0 MB`, or `None` when nothing was deleted.
    pub fn summary(&self) -> Option<String> {
        if self.removals.is_empty() {
            return None;
        }
        let parts: Vec<String> = [
            (Kind::Layer, "layer", "layers"),
            (Kind::Image, "image", "images"),
            (Kind::Download, "download", "downloads"),
            (Kind::Leftover, "leftover", "leftovers"),
        ]
        .iter()
        .filter_map(|&(kind, one, many)| match self.count(kind) {
            0 => None,
            1 => Some(format!("1 {one}")),
            n => Some(format!("{n} {many}")),
        })
        .collect();
        Some(format!(
            "{}: {}",
            parts.join(", "),
            crate::build::download::human_bytes(self.bytes())
        ))
    }
}
