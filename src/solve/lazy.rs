//! Packages that stay encoded until first used.
//!
//! A cached index holds every package of a release (63,000 for bookworm), but a solve reads a
//! few hundred. Decoding all of them would cost a million small allocations on every
//! `env lock`; instead each package keeps its encoded bytes and is decoded once, on first
//! access. An index built from `Packages` text starts fully decoded.

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A list of records (the index's packages), each decoded on first access.
#[derive(Debug, Clone)]
pub struct LazyPackages<Package> {
    cells: Vec<OnceLock<Package>>,
    /// The encoded packages, shared between clones; empty for an index built from text.
    encoded: Arc<[u8]>,
    /// Start of each package's bytes in `encoded`, plus the end of the last one.
    offsets: Vec<u32>,
}

impl<Package> Default for LazyPackages<Package> {
    fn default() -> Self {
        LazyPackages {
            cells: Vec::new(),
            encoded: Arc::from(Vec::new()),
            offsets: Vec::new(),
        }
    }
}

impl<Package: Serialize + DeserializeOwned> LazyPackages<Package> {
    /// Packages encoded by [`LazyPackages::encode`]; `None` when the offsets do not fit.
    pub fn from_encoded(encoded: Arc<[u8]>, offsets: Vec<u32>) -> Option<Self> {
        let ordered = offsets.windows(2).all(|w| w[0] <= w[1]);
        let inside = offsets
            .last()
            .is_none_or(|end| *end as usize <= encoded.len());
        if offsets.is_empty() || !ordered || !inside {
            return None;
        }
        let cells = (1..offsets.len()).map(|_| OnceLock::new()).collect();
        Some(LazyPackages {
            cells,
            encoded,
            offsets,
        })
    }

    /// Every package encoded, and the offsets to find each.
    pub fn encode(&self) -> (Vec<u8>, Vec<u32>) {
        let mut bytes = Vec::new();
        let mut offsets = vec![0];
        for index in 0..self.cells.len() {
            // Plain data of strings, numbers and vectors: serialising cannot fail.
            bytes.extend(postcard::to_stdvec(self.get(index)).unwrap_or_default());
            offsets.push(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        }
        (bytes, offsets)
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn push(&mut self, package: Package) {
        self.cells.push(OnceLock::from(package));
    }

    pub fn get(&self, index: usize) -> &Package {
        self.cells[index].get_or_init(|| {
            let bytes =
                &self.encoded[self.offsets[index] as usize..self.offsets[index + 1] as usize];
            // The cache file's checksum was verified when it was loaded, so these are the
            // bytes envkit itself encoded; failing to decode them is a bug in envkit.
            postcard::from_bytes(bytes).expect("a checksum-verified index entry decodes")
        })
    }

    pub fn get_mut(&mut self, index: usize) -> &mut Package {
        self.get(index);
        self.cells[index].get_mut().expect("decoded just above")
    }

    /// Puts `package` at `index` and returns what was there.
    pub fn replace(&mut self, index: usize, package: Package) -> Package {
        std::mem::replace(self.get_mut(index), package)
    }
}
