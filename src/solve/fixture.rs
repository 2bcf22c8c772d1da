//! Small signed Debian repositories on disk, for tests: a `file://` mirror with `InRelease`
//! signed by a throw-away key and `Packages.gz` indexes, no network and no gpg needed.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::openpgp::test_support::TestKey;
use crate::fetch::sha256_hex;

/// A repository being written under a folder.
pub struct FixtureRepository {
    pub root: PathBuf,
    key: TestKey,
    date: String,
    /// Lines added to every Release written afterwards (`Valid-Until: ...`).
    extra_fields: String,
}

impl FixtureRepository {
    /// An empty repository under `root`, signed by a fresh key.
    pub fn new(root: &Path) -> Self {
        FixtureRepository {
            root: root.to_path_buf(),
            key: TestKey::generate("envkit test archive <test@envkit.invalid>"),
            date: "Sat, 01 Nov 2025 00:00:00 UTC".into(),
            extra_fields: String::new(),
        }
    }

    /// The mirror URL to put in `mirror "..."`.
    pub fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    /// Writes the public key where a `keyring=` can name it; returns its path.
    pub fn write_keyring(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.key.public_keyring()).expect("write keyring");
        path.to_path_buf()
    }

    /// Sets the `Date:` of suites written afterwards.
    pub fn date(mut self, date: &str) -> Self {
        self.date = date.to_string();
        self
    }

    /// Adds `NAME: VALUE` to the Release of suites written afterwards.
    pub fn release_field(mut self, name: &str, value: &str) -> Self {
        self.extra_fields.push_str(&format!("{name}: {value}\n"));
        self
    }

    /// Writes `dists/SUITE/` with a `Packages.gz` for amd64 holding `packages` (deb822 text),
    /// and a signed `InRelease` that lists it. Returns the InRelease path.
    pub fn suite(&self, suite: &str, packages: &str) -> PathBuf {
        let dists = self.root.join("dists").join(suite);
        let index_dir = dists.join("main/binary-amd64");
        std::fs::create_dir_all(&index_dir).expect("mkdir");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(packages.as_bytes()).expect("gzip");
        let compressed = encoder.finish().expect("gzip");
        std::fs::write(index_dir.join("Packages.gz"), &compressed).expect("write Packages.gz");
        let release = format!(
            "Origin: envkit-test\nSuite: {suite}\nCodename: {suite}\nDate: {}\n{}Architectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages.gz\n",
            self.date,
            self.extra_fields,
            sha256_hex(&compressed),
            compressed.len()
        );
        let in_release = dists.join("InRelease");
        std::fs::write(&in_release, self.key.sign_cleartext(&release)).expect("write InRelease");
        in_release
    }

    /// Writes a stand-in `.deb` at `pool/NAME_VERSION_amd64.deb` and returns the control
    /// stanza that describes it (with `extra` control lines, e.g. `Depends: x`).
    pub fn package(&self, name: &str, version: &str, extra: &str) -> String {
        let content = format!("stand-in for {name} {version}\n");
        self.deb(name, version, content.as_bytes(), extra)
    }

    /// Writes `bytes` as the `.deb` of NAME VERSION at `pool/NAME_VERSION_amd64.deb` and
    /// returns the control stanza that describes it (with `extra` control lines).
    pub fn deb(&self, name: &str, version: &str, bytes: &[u8], extra: &str) -> String {
        let file = format!("pool/{name}_{}_amd64.deb", version.replace(':', "%3a"));
        let mut stanza = format!("Package: {name}\nVersion: {version}\nArchitecture: amd64\n");
        for line in extra.lines().map(str::trim).filter(|l| !l.is_empty()) {
            stanza.push_str(line);
            stanza.push('\n');
        }
        stanza.push_str(&self.serve(&file, bytes));
        stanza.push('\n');
        stanza
    }

    /// Writes `bytes` at `file` (below the root) and returns the `Filename`, `Size` and
    /// `SHA256` lines an index gives it.
    pub fn serve(&self, file: &str, bytes: &[u8]) -> String {
        let path = self.root.join(file);
        std::fs::create_dir_all(path.parent().unwrap_or(&self.root)).expect("mkdir pool");
        std::fs::write(&path, bytes).expect("write deb");
        format!(
            "Filename: {file}\nSize: {}\nSHA256: {}\n",
            bytes.len(),
            sha256_hex(bytes)
        )
    }
}

/// The smallest archive a base set can be resolved from: an essential shell, a required awk
/// provider, and apt with a library.
pub fn minimal_archive(repository: &FixtureRepository) -> String {
    [
        repository.package("base-files", "12.4", "Essential: yes\nPriority: required"),
        repository.package(
            "bash",
            "5.2.15-2",
            "Essential: yes\nPriority: required\nPre-Depends: libc6 (>= 2.36)",
        ),
        repository.package("libc6", "2.36-9", "Priority: optional\nMulti-Arch: same"),
        repository.package("mawk", "1.3.4", "Priority: required\nProvides: awk"),
        repository.package(
            "apt",
            "2.6.1",
            "Priority: important\nDepends: libapt-pkg6.0 (>= 2.6.1)",
        ),
        repository.package("libapt-pkg6.0", "2.6.1", "Priority: optional"),
    ]
    .concat()
}

/// A bookworm lock for amd64 holding just `packages`, as tests of later stages need one.
pub fn bookworm_lock(packages: Vec<super::lockfile::LockedPackage>) -> super::lockfile::Lock {
    super::lockfile::Lock {
        release: "bookworm".into(),
        architecture: "amd64".into(),
        recommends: false,
        requested: vec![],
        indexes: vec![],
        image: None,
        packages,
    }
}
