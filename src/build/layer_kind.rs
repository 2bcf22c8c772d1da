//! Which kind a layer is (base, a group of packages, a setup step): what plans name, records
//! keep, and the layer tar rule reads.

use serde::{Deserialize, Serialize};

/// Which kind of layer. Layer records keep it as its [`LayerKind::name`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum LayerKind {
    Base,
    /// A group of the packages layer (from 1).
    Packages(u32),
    /// The n-th `setup` step (from 0).
    Setup(usize),
    /// The n-th `copy` (from 0).
    Copy(usize),
    /// The n-th layer of a registry image the environment starts from (from 1), bottom first.
    Image(u32),
}

impl LayerKind {
    pub fn name(&self) -> String {
        match self {
            LayerKind::Base => "base".into(),
            LayerKind::Packages(group) => format!("packages-{group}"),
            LayerKind::Setup(n) => format!("setup-{}", n + 1),
            LayerKind::Copy(n) => format!("copy-{}", n + 1),
            LayerKind::Image(n) => format!("image-{n}"),
        }
    }

    /// The kind a [`LayerKind::name`] names. `packages` alone, as layers built before the
    /// packages layer was split into groups are recorded, is the one group there was.
    pub fn from_name(name: &str) -> Option<LayerKind> {
        if name == "base" {
            return Some(LayerKind::Base);
        }
        if name == "packages" {
            return Some(LayerKind::Packages(1));
        }
        if let Some(group) = name.strip_prefix("packages-") {
            return group.parse().ok().map(LayerKind::Packages);
        }
        if let Some(layer) = name.strip_prefix("image-") {
            return layer.parse().ok().filter(|n| *n >= 1).map(LayerKind::Image);
        }
        if let Some(copy) = name.strip_prefix("copy-") {
            let copy: usize = copy.parse().ok()?;
            return copy.checked_sub(1).map(LayerKind::Copy);
        }
        let step: usize = name.strip_prefix("setup-")?.parse().ok()?;
        step.checked_sub(1).map(LayerKind::Setup)
    }
}

/// A layer record names a kind envkit does not know.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a kind of layer")]
pub struct UnknownLayerKind(String);

impl From<LayerKind> for String {
    fn from(kind: LayerKind) -> String {
        kind.name()
    }
}

impl TryFrom<String> for LayerKind {
    type Error = UnknownLayerKind;

    fn try_from(name: String) -> Result<LayerKind, UnknownLayerKind> {
        LayerKind::from_name(&name).ok_or(UnknownLayerKind(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_reads_back_from_its_name() {
        for kind in [
            LayerKind::Base,
            LayerKind::Packages(1),
            LayerKind::Packages(12),
            LayerKind::Setup(0),
            LayerKind::Setup(3),
            LayerKind::Image(1),
            LayerKind::Image(7),
        ] {
            assert_eq!(LayerKind::from_name(&kind.name()), Some(kind.clone()));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(serde_json::from_str::<LayerKind>(&json).unwrap(), kind);
        }
        assert_eq!(
            LayerKind::from_name("packages"),
            Some(LayerKind::Packages(1))
        );
        for name in ["", "packages-x", "setup-0", "setup-x", "base-1", "Base"] {
            assert_eq!(LayerKind::from_name(name), None, "{name}");
        }
        assert!(serde_json::from_str::<LayerKind>("\"tools\"").is_err());
    }
}
