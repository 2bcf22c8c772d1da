//! Where envkit keeps its files (crate `directories`), each overridable for tests and CI.
//!
//! - cache (`ENVKIT_CACHE_DIR`, else the XDG cache dir): downloaded indexes and `.deb`s;
//!   safe to delete.
//! - store (`ENVKIT_STORE_DIR`, else `store` in the XDG data dir): layers and images.
//! - data (`ENVKIT_DATA_DIR`): volumes; runtime (`ENVKIT_RUNTIME_DIR`): sessions and peers.

use std::path::PathBuf;

/// The cache directory.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ENVKIT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    directories::ProjectDirs::from("", "", "envkit")
        .map(|dirs| dirs.cache_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("envkit-cache"))
}

/// The layer store.
pub fn store_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ENVKIT_STORE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    directories::ProjectDirs::from("", "", "envkit")
        .map(|dirs| dirs.data_dir().join("store"))
        .unwrap_or_else(|| std::env::temp_dir().join("envkit-store"))
}

/// Debian's name for the architecture this binary runs on.
pub fn debian_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "arm" => "armhf",
        "powerpc64" => "ppc64el",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64" => "mips64el",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The data directory: volumes live here (`ENVKIT_DATA_DIR`, else the XDG data dir).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ENVKIT_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    directories::ProjectDirs::from("", "", "envkit")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("envkit-data"))
}

/// Named volumes, one folder per project.
pub fn volumes_dir() -> PathBuf {
    data_dir().join("volumes")
}

/// The runtime directory: sessions' throw-away roots, running peers and their logs
/// (`ENVKIT_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/envkit`, else `/run/envkit` for root, else
/// the state dir). Usually a tmpfs, so a session's scratch never touches the disk.
pub fn runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ENVKIT_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("envkit");
    }
    if crate::kernel::userns::invoker().is_root() {
        return PathBuf::from("/run/envkit");
    }
    directories::ProjectDirs::from("", "", "envkit")
        .and_then(|dirs| dirs.state_dir().map(|d| d.join("run")))
        .unwrap_or_else(|| std::env::temp_dir().join("envkit-run"))
}
