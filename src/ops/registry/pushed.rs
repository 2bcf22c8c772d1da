//! Where each image was last pushed: `env push` records it, and the Kubernetes and Compose
//! exports name the image by it, pinned by digest, as the engines will pull it.

use serde::{Deserialize, Serialize};

use crate::build::store::Store;
use crate::registry::Reference;

/// What `pushed-v1/<NAME>/<TAG>.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedRecord {
    /// `host/repository:tag`, as pushed to.
    pub reference: String,
    /// `sha256:` of the index the tag named once pushed.
    pub digest: String,
}

impl PushedRecord {
    /// `host/repository@sha256:...`: what an engine pulls, whatever the tag names later.
    pub fn pinned(&self) -> String {
        match Reference::parse(&self.reference) {
            Ok(mut reference) => {
                reference.tag = None;
                reference.digest = Some(self.digest.clone());
                reference.to_string()
            }
            Err(_) => format!("{}@{}", self.reference, self.digest),
        }
    }
}

fn record_path(store: &Store, image_name: &str) -> std::path::PathBuf {
    let (repository, tag) = crate::build::image::split_name(image_name);
    store.pushed_record(repository, tag)
}

/// Best effort: without the record, an export asks for the push again.
pub fn remember(store: &Store, image_name: &str, record: &PushedRecord) {
    if let Ok(bytes) = serde_json::to_vec_pretty(record) {
        let _ = crate::fetch::write_bytes_atomically(&record_path(store, image_name), &bytes);
    }
}

/// Where the image named `image_name` (`NAME:TAG`) was last pushed, if it was.
pub fn lookup(store: &Store, image_name: &str) -> Option<PushedRecord> {
    let bytes = std::fs::read(record_path(store, image_name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_pins_the_reference_by_its_digest() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::new(store_dir.path());
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(lookup(&store, "api:0123"), None);
        let record = PushedRecord {
            reference: "127.0.0.1:5000/team/api:v1".into(),
            digest: digest.clone(),
        };
        remember(&store, "api:0123", &record);
        let found = lookup(&store, "api:0123").unwrap();
        assert_eq!(found, record);
        assert_eq!(found.pinned(), format!("127.0.0.1:5000/team/api@{digest}"));
        assert_eq!(lookup(&store, "api:4567"), None);
    }
}
