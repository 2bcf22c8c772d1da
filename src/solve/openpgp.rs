//! OpenPGP for Debian's signed indexes: keyrings, and `InRelease` files (cleartext-signed
//! messages) verified against them.
//!
//! rPGP (the `pgp` crate) parses packets and checks the mathematics of one signature against one
//! key; whether that key may vouch for the text is policy, and it lives here:
//!
//! - **Time.** A key is judged as it stood when the signature was made (the signature's creation
//!   time), not now: a key that has expired since still vouches for what it signed while it was
//!   valid, so old snapshots of the archive stay verifiable. Whether the index itself is still
//!   fresh is the `Release` file's `Valid-Until`, not this module's business. apt differs here: it
//!   refuses a key that has expired by today.
//! - **Revocation.** Only revocations the key made itself count (a designated revoker's would need
//!   that revoker's key). A hard revocation (reason "compromised", none, or one we do not know)
//!   voids every signature by the key, whenever made, because a stolen key can backdate; a soft
//!   one ("superseded", "retired") voids only the signatures made at or after it.
//! - **Self-signatures.** The expiry and key flags of a key come from its self-signature in force
//!   at the signature's time: the newest one made at or before it, or else the oldest one, because
//!   keyrings sometimes keep only a renewed self-signature made after the key was first used.
//! - **Subkeys.** A subkey signs only if its binding carries the signing flag and a valid
//!   back-signature (the subkey's own signature over its primary), as gpg demands; the primary
//!   must be valid too. A primary signs unless its self-signature states flags without signing.
//! - **Digests.** The signature over the text must not use MD5, SHA-1 or RIPEMD-160 (apt refuses
//!   them too); binding self-signatures may use SHA-1, which older keys were certified with.
//! - **Signature expiry.** A signature that carries its own expiration time is refused once that
//!   time has passed: unlike a key's expiry, that is the signer's statement about this very text.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{
    PublicKey, PublicSubkey, RevocationCode, Signature, SignatureType, SubpacketData,
};
use pgp::types::{Fingerprint, KeyDetails, KeyId, Tag};

/// Why a keyring could not be loaded or a signed message could not be trusted.
#[derive(Debug, thiserror::Error)]
pub enum OpenPgpError {
    /// The input is not an OpenPGP cleartext-signed message, or is damaged.
    #[error("`InRelease` is not a valid OpenPGP cleartext-signed message: {reason}")]
    Malformed {
        /// What the parser found wrong.
        reason: String,
    },
    /// No signature was made by a key of the keyring.
    #[error("`InRelease` is not signed by any key in {keyring}; signed by {}", issuers.join(", "))]
    UnknownSigner {
        /// The keyring's files, quoted, for the message.
        keyring: String,
        /// Who signed, as the signatures name them: fingerprints, or `0x` key ids, in hex.
        issuers: Vec<String>,
    },
    /// A signature by a known key does not match the text: it was changed after signing.
    #[error("bad signature on `InRelease` by {key}: the text was changed after it was signed")]
    BadSignature {
        /// The fingerprint of the key the signature claims, in hex.
        key: String,
    },
    /// The signature matches, but the key could not vouch for the text when it signed.
    #[error("the signature on `InRelease` by {key} is not accepted: {reason}")]
    KeyNotValid {
        /// The fingerprint of the signing key (or subkey), in hex.
        key: String,
        /// Why: expired, revoked, not allowed to sign, weak digest, ...
        reason: String,
    },
    /// A keyring file could not be read.
    #[error("cannot read the keyring `{}`", path.display())]
    UnreadableKeyring {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A keyring's content is not OpenPGP public keys.
    #[error("{} does not hold OpenPGP public keys: {reason}", describe_origin(path.as_deref()))]
    InvalidKeyring {
        /// The file, when the keyring came from one.
        path: Option<PathBuf>,
        /// What the parser found wrong.
        reason: String,
    },
}

fn describe_origin(path: Option<&Path>) -> String {
    match path {
        Some(path) => format!("the keyring `{}`", path.display()),
        None => "the keyring".to_owned(),
    }
}

/// Keys that Release files may be signed with.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// One entry per primary key: copies of a key from several files are merged, so that a
    /// revocation in one file is not outvoted by a stale copy in another.
    certs: Vec<SignedPublicKey>,
    /// The files the keys came from, for messages.
    sources: Vec<PathBuf>,
}

impl Keyring {
    /// Reads a keyring file: binary (`.gpg`, as `/usr/share/keyrings/debian-archive-keyring.gpg`,
    /// which holds several keys) or ASCII-armored (`.asc`), with one key or several.
    pub fn load(path: &Path) -> Result<Keyring, OpenPgpError> {
        let bytes = std::fs::read(path).map_err(|source| OpenPgpError::UnreadableKeyring {
            path: path.to_owned(),
            source,
        })?;
        let certs = parse_keyring(&bytes).map_err(|reason| OpenPgpError::InvalidKeyring {
            path: Some(path.to_owned()),
            reason,
        })?;
        let mut keyring = Keyring {
            certs: Vec::new(),
            sources: vec![path.to_owned()],
        };
        keyring.add_all(certs);
        Ok(keyring)
    }

    /// Reads a keyring from memory, binary or ASCII-armored.
    pub fn from_bytes(bytes: &[u8]) -> Result<Keyring, OpenPgpError> {
        let certs = parse_keyring(bytes)
            .map_err(|reason| OpenPgpError::InvalidKeyring { path: None, reason })?;
        let mut keyring = Keyring::default();
        keyring.add_all(certs);
        Ok(keyring)
    }

    /// Reads several files (apt's `trusted.gpg.d` style) into one keyring.
    pub fn load_all(paths: &[PathBuf]) -> Result<Keyring, OpenPgpError> {
        let mut keyring = Keyring::default();
        for path in paths {
            let one = Keyring::load(path)?;
            keyring.add_all(one.certs);
            keyring.sources.extend(one.sources);
        }
        Ok(keyring)
    }

    /// Whether the keyring holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// How many primary keys the keyring holds.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// The fingerprints of the primary keys, in hex.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs
            .iter()
            .map(|cert| fingerprint_hex(&cert.primary_key.fingerprint()))
            .collect()
    }

    fn add_all(&mut self, certs: Vec<SignedPublicKey>) {
        for cert in certs {
            let fingerprint = cert.primary_key.fingerprint();
            match self
                .certs
                .iter_mut()
                .find(|known| known.primary_key.fingerprint() == fingerprint)
            {
                Some(known) => merge_cert(known, cert),
                None => self.certs.push(cert),
            }
        }
    }

    fn describe(&self) -> String {
        if self.sources.is_empty() {
            return "the keyring".to_owned();
        }
        let files: Vec<String> = self
            .sources
            .iter()
            .map(|path| format!("`{}`", path.display()))
            .collect();
        files.join(", ")
    }
}

/// Folds a second copy of a key into the first; duplicated signatures change no outcome.
fn merge_cert(into: &mut SignedPublicKey, other: SignedPublicKey) {
    let details = other.details;
    into.details
        .revocation_signatures
        .extend(details.revocation_signatures);
    into.details
        .direct_signatures
        .extend(details.direct_signatures);
    into.details.users.extend(details.users);
    for subkey in other.public_subkeys {
        let fingerprint = subkey.key.fingerprint();
        match into
            .public_subkeys
            .iter_mut()
            .find(|known| known.key.fingerprint() == fingerprint)
        {
            Some(known) => known.signatures.extend(subkey.signatures),
            None => into.public_subkeys.push(subkey),
        }
    }
}

const ARMOR_BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

fn parse_keyring(bytes: &[u8]) -> Result<Vec<SignedPublicKey>, String> {
    let Some(&first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err("it is empty".to_owned());
    };
    let mut certs = Vec::new();
    // The first bit of every binary OpenPGP packet header is set; armor is ASCII.
    if first & 0x80 != 0 {
        let parsed = SignedPublicKey::from_bytes_many(bytes).map_err(|e| e.to_string())?;
        for (index, cert) in parsed.enumerate() {
            certs.push(cert.map_err(|e| format!("key {}: {e}", index + 1))?);
        }
    } else {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| "it is neither binary OpenPGP data nor ASCII armor".to_owned())?;
        // rPGP reads one armor block per call; `.asc` files are often several keys pasted
        // together.
        let blocks: Vec<usize> = text
            .match_indices(ARMOR_BEGIN)
            .map(|(start, _)| start)
            .collect();
        if blocks.is_empty() {
            return Err(format!("no `{ARMOR_BEGIN}` line"));
        }
        for (index, &start) in blocks.iter().enumerate() {
            let end = blocks.get(index + 1).copied().unwrap_or(text.len());
            let block = &text[start..end];
            let (parsed, _headers) =
                SignedPublicKey::from_armor_many(block.as_bytes()).map_err(|e| e.to_string())?;
            for cert in parsed {
                certs.push(cert.map_err(|e| format!("armor block {}: {e}", index + 1))?);
            }
        }
    }
    if certs.is_empty() {
        return Err("it holds no public key".to_owned());
    }
    Ok(certs)
}

/// Verifies a cleartext-signed `InRelease` and returns the signed text: the `Release` body with
/// the dash-escaping undone, `\n` line ends and a final newline (the line break before the
/// signature block is not part of what is signed; a `Release` file ends with one), and trailing
/// blanks of lines dropped as the signature's canonical form drops them.
///
/// The text is returned only if at least one signature verifies and was made by a key (primary
/// or signing subkey) of `keyring` that was valid at the time (see the module's policy).
/// Signatures by keys not in the keyring are ignored as long as one good signature exists:
/// Debian signs with two or three keys, and a keyring usually holds only some of them.
pub fn verify_cleartext(signed: &[u8], keyring: &Keyring) -> Result<String, OpenPgpError> {
    let (message, _headers) =
        CleartextSignedMessage::from_armor(signed).map_err(|e| OpenPgpError::Malformed {
            reason: e.to_string(),
        })?;
    if message.signatures().is_empty() {
        return Err(OpenPgpError::Malformed {
            reason: "it holds no signature".to_owned(),
        });
    }
    let text = message.signed_text();
    let now = unix_now();

    let mut rejections = Vec::new();
    for signature in message.signatures() {
        match check_signature(signature, text.as_bytes(), keyring, now) {
            Ok(()) => return Ok(release_text(&text)),
            Err(rejection) => rejections.push(rejection),
        }
    }
    Err(strongest_error(rejections, keyring))
}

/// The canonical signed text (CRLF line ends, no final line end) as the `Release` file held it.
fn release_text(signed_text: &str) -> String {
    let mut text = signed_text.replace("\r\n", "\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

/// Why one signature did not count.
enum Rejection {
    UnknownKey { issuers: Vec<String> },
    Bad { key: String },
    NotValid { key: String, reason: String },
}

/// A tampered text is the most alarming finding, so it wins over a refused key, which wins over
/// signers that are simply not trusted.
fn strongest_error(rejections: Vec<Rejection>, keyring: &Keyring) -> OpenPgpError {
    let mut not_valid = None;
    let mut issuers = BTreeSet::new();
    for rejection in rejections {
        match rejection {
            Rejection::Bad { key } => return OpenPgpError::BadSignature { key },
            Rejection::NotValid { key, reason } => {
                not_valid.get_or_insert(OpenPgpError::KeyNotValid { key, reason });
            }
            Rejection::UnknownKey { issuers: named } => issuers.extend(named),
        }
    }
    not_valid.unwrap_or_else(|| OpenPgpError::UnknownSigner {
        keyring: keyring.describe(),
        issuers: issuers.into_iter().collect(),
    })
}

/// A key of the keyring a signature may have been made with.
enum Candidate<'a> {
    Primary(&'a SignedPublicKey),
    Subkey(&'a SignedPublicKey, &'a SignedPublicSubKey),
}

impl Candidate<'_> {
    fn fingerprint(&self) -> Fingerprint {
        match self {
            Candidate::Primary(cert) => cert.primary_key.fingerprint(),
            Candidate::Subkey(_, subkey) => subkey.key.fingerprint(),
        }
    }
}

fn check_signature(
    signature: &Signature,
    text: &[u8],
    keyring: &Keyring,
    now: u64,
) -> Result<(), Rejection> {
    let fingerprints = signature.issuer_fingerprint();
    let key_ids = signature.issuer_key_id();
    let anonymous = fingerprints.is_empty() && key_ids.is_empty();
    // A named fingerprint settles who signed; 64-bit key ids can be made to collide.
    let names = |fingerprint: Fingerprint, key_id: KeyId| {
        if !fingerprints.is_empty() {
            fingerprints.contains(&&fingerprint)
        } else {
            anonymous || key_ids.contains(&&key_id)
        }
    };

    let mut candidates = Vec::new();
    for cert in &keyring.certs {
        if names(
            cert.primary_key.fingerprint(),
            cert.primary_key.legacy_key_id(),
        ) {
            candidates.push(Candidate::Primary(cert));
        }
        for subkey in &cert.public_subkeys {
            if names(subkey.key.fingerprint(), subkey.key.legacy_key_id()) {
                candidates.push(Candidate::Subkey(cert, subkey));
            }
        }
    }
    if candidates.is_empty() {
        return Err(Rejection::UnknownKey {
            issuers: issuer_names(signature),
        });
    }

    let mut rejection = None;
    for candidate in candidates {
        let key = fingerprint_hex(&candidate.fingerprint());
        let verified = match candidate {
            Candidate::Primary(cert) => signature.verify(&cert.primary_key, text),
            Candidate::Subkey(_, subkey) => signature.verify(&subkey.key, text),
        };
        let outcome = match verified {
            // Without a name, a mismatch only says that this was not the key.
            Err(_) if anonymous => Rejection::UnknownKey {
                issuers: issuer_names(signature),
            },
            Err(_) => Rejection::Bad { key },
            Ok(()) => match accept(signature, &candidate, now) {
                Ok(()) => return Ok(()),
                Err(reason) => Rejection::NotValid { key, reason },
            },
        };
        // Several candidates only when key ids collide; the most alarming outcome is kept.
        if rejection.is_none() || matches!(outcome, Rejection::Bad { .. }) {
            rejection = Some(outcome);
        }
    }
    Err(rejection.unwrap_or(Rejection::UnknownKey {
        issuers: issuer_names(signature),
    }))
}

fn issuer_names(signature: &Signature) -> Vec<String> {
    let fingerprints = signature.issuer_fingerprint();
    if !fingerprints.is_empty() {
        return fingerprints.into_iter().map(fingerprint_hex).collect();
    }
    let key_ids = signature.issuer_key_id();
    if !key_ids.is_empty() {
        return key_ids
            .into_iter()
            .map(|id| format!("0x{}", hex_upper(id.as_ref())))
            .collect();
    }
    vec!["a key the signature does not name".to_owned()]
}

/// The policy part: may this key vouch for the text, as things stood when it signed?
fn accept(signature: &Signature, candidate: &Candidate<'_>, now: u64) -> Result<(), String> {
    if !matches!(
        signature.typ(),
        Some(SignatureType::Text | SignatureType::Binary)
    ) {
        return Err("it is not a signature over a document".to_owned());
    }
    if let Some(hash) = signature.hash_alg()
        && matches!(
            hash,
            HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Ripemd160
        )
    {
        return Err(format!("it uses the weak digest {hash}"));
    }
    let Some(created) = signature.created() else {
        return Err("it has no creation time".to_owned());
    };
    let at = u64::from(created.as_secs());
    if let Some(valid_for) = signature.signature_expiration_time() {
        let end = at + u64::from(valid_for.as_secs());
        if valid_for.as_secs() != 0 && end <= now {
            return Err(format!("the signature expired on {}", format_time(end)));
        }
    }

    let cert = match candidate {
        Candidate::Primary(cert) | Candidate::Subkey(cert, _) => *cert,
    };
    let binding = primary_valid_at(cert, at)?;
    match candidate {
        Candidate::Primary(_) => {
            if let Some(flags) = stated_key_flags(binding)
                && !flags.sign()
            {
                return Err("the key's flags do not allow signing".to_owned());
            }
            Ok(())
        }
        Candidate::Subkey(cert, subkey) => subkey_valid_at(cert, subkey, at),
    }
}

/// Checks the primary key at time `at` and returns its self-signature in force then.
fn primary_valid_at(cert: &SignedPublicKey, at: u64) -> Result<&Signature, String> {
    let primary = &cert.primary_key;
    let fingerprint = fingerprint_hex(&primary.fingerprint());
    let revocations = cert
        .details
        .revocation_signatures
        .iter()
        .filter(|sig| sig.typ() == Some(SignatureType::KeyRevocation))
        .filter(|sig| sig.verify_key(primary).is_ok());
    check_revocations(revocations, at, &format!("the key {fingerprint}"))?;

    let created = u64::from(primary.created_at().as_secs());
    if at < created {
        return Err(format!(
            "it was made on {}, before the key {fingerprint} was created",
            format_time(at)
        ));
    }
    let self_signatures = cert
        .details
        .users
        .iter()
        .flat_map(|user| {
            user.signatures
                .iter()
                .filter(|sig| {
                    matches!(
                        sig.typ(),
                        Some(
                            SignatureType::CertGeneric
                                | SignatureType::CertPersona
                                | SignatureType::CertCasual
                                | SignatureType::CertPositive
                        )
                    )
                })
                .filter(move |sig| {
                    sig.verify_certification(primary, Tag::UserId, &user.id)
                        .is_ok()
                })
        })
        .chain(
            cert.details
                .direct_signatures
                .iter()
                .filter(|sig| sig.typ() == Some(SignatureType::Key))
                .filter(|sig| sig.verify_key(primary).is_ok()),
        );
    let Some(binding) = in_force(self_signatures, at) else {
        return Err(format!("the key {fingerprint} has no valid self-signature"));
    };
    check_expiry(binding, created, at, &format!("the key {fingerprint}"))?;
    Ok(binding)
}

fn subkey_valid_at(
    cert: &SignedPublicKey,
    subkey: &SignedPublicSubKey,
    at: u64,
) -> Result<(), String> {
    let primary: &PublicKey = &cert.primary_key;
    let key: &PublicSubkey = &subkey.key;
    let what = format!(
        "the subkey {} of {}",
        fingerprint_hex(&key.fingerprint()),
        fingerprint_hex(&primary.fingerprint())
    );
    let revocations = subkey
        .signatures
        .iter()
        .filter(|sig| sig.typ() == Some(SignatureType::SubkeyRevocation))
        .filter(|sig| sig.verify_subkey_binding(primary, key).is_ok());
    check_revocations(revocations, at, &what)?;

    let created = u64::from(key.created_at().as_secs());
    if at < created {
        return Err(format!(
            "it was made on {}, before {what} was created",
            format_time(at)
        ));
    }
    let bindings = subkey
        .signatures
        .iter()
        .filter(|sig| sig.typ() == Some(SignatureType::SubkeyBinding))
        .filter(|sig| sig.verify_subkey_binding(primary, key).is_ok());
    let Some(binding) = in_force(bindings, at) else {
        return Err(format!("{what} is not bound to its primary key"));
    };
    if !binding.key_flags().sign() {
        return Err(format!("{what} is not a signing subkey"));
    }
    let back_signed = binding
        .embedded_signature()
        .is_some_and(|back| back.verify_primary_key_binding(key, primary).is_ok());
    if !back_signed {
        return Err(format!(
            "{what} has no valid back-signature to its primary key"
        ));
    }
    check_expiry(binding, created, at, &what)
}

/// The binding signature in force at `at`: the newest made at or before it, else the oldest.
fn in_force<'a>(signatures: impl Iterator<Item = &'a Signature>, at: u64) -> Option<&'a Signature> {
    let mut newest_before: Option<(u64, &Signature)> = None;
    let mut oldest: Option<(u64, &Signature)> = None;
    for signature in signatures {
        if signature.hash_alg() == Some(HashAlgorithm::Md5) {
            continue;
        }
        let Some(created) = signature.created() else {
            continue;
        };
        let created = u64::from(created.as_secs());
        if created <= at && newest_before.is_none_or(|(time, _)| created >= time) {
            newest_before = Some((created, signature));
        }
        if oldest.is_none_or(|(time, _)| created < time) {
            oldest = Some((created, signature));
        }
    }
    newest_before.or(oldest).map(|(_, signature)| signature)
}

fn check_revocations<'a>(
    revocations: impl Iterator<Item = &'a Signature>,
    at: u64,
    what: &str,
) -> Result<(), String> {
    for revocation in revocations {
        let soft = matches!(
            revocation.revocation_reason_code(),
            Some(
                RevocationCode::KeySuperseded
                    | RevocationCode::KeyRetired
                    | RevocationCode::CertUserIdInvalid
            )
        );
        let since = revocation.created().map(|time| u64::from(time.as_secs()));
        match since {
            Some(since) if soft && at < since => continue,
            Some(since) if soft => {
                return Err(format!(
                    "{what} was retired on {}, before the signature was made",
                    format_time(since)
                ));
            }
            _ => return Err(format!("{what} has been revoked")),
        }
    }
    Ok(())
}

fn check_expiry(binding: &Signature, created: u64, at: u64, what: &str) -> Result<(), String> {
    if let Some(lifetime) = binding.key_expiration_time()
        && lifetime.as_secs() != 0
    {
        let end = created + u64::from(lifetime.as_secs());
        if end <= at {
            return Err(format!(
                "{what} expired on {}, before the signature was made on {}",
                format_time(end),
                format_time(at)
            ));
        }
    }
    Ok(())
}

/// Key flags only when the signature states them: keys from before key flags existed may sign.
fn stated_key_flags(signature: &Signature) -> Option<pgp::packet::KeyFlags> {
    let config = signature.config()?;
    config
        .hashed_subpackets()
        .find_map(|packet| match &packet.data {
            SubpacketData::KeyFlags(flags) => Some(flags.clone()),
            _ => None,
        })
}

fn fingerprint_hex(fingerprint: &Fingerprint) -> String {
    hex_upper(fingerprint.as_bytes())
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02X}")).collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// `2025-05-20 13:04 UTC`.
fn format_time(unix: u64) -> String {
    let (year, month, day, hour, minute, _) = crate::civil_time::civil(unix);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

/// Keys and signed messages for tests elsewhere, made without `gpg` or the network.
#[doc(hidden)]
pub mod test_support {
    use std::time::{SystemTime, UNIX_EPOCH};

    use pgp::composed::{
        ArmorOptions, CleartextSignedMessage, KeyType, SecretKeyParamsBuilder, SignedPublicKey,
        SignedSecretKey, SubkeyParamsBuilder,
    };
    use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
    use pgp::ser::Serialize;
    use pgp::types::{KeyDetails, KeyVersion, Password, SigningKey, Timestamp};
    use rand_core::OsRng;

    /// A secret signing key. Ed25519, as Debian's stable release keys: generated in microseconds.
    #[derive(Debug, Clone)]
    pub struct TestKey {
        pub(super) secret: SignedSecretKey,
        pub(super) public: SignedPublicKey,
        /// Sign with the first subkey rather than the primary, as Debian's archive keys do.
        with_subkey: bool,
    }

    impl TestKey {
        /// A fresh key whose primary signs.
        pub fn generate(user_id: &str) -> TestKey {
            TestKey::build(user_id, false)
        }

        /// A fresh key that certifies only and signs with a subkey (the shape of Debian's
        /// archive keys).
        pub fn generate_with_signing_subkey(user_id: &str) -> TestKey {
            TestKey::build(user_id, true)
        }

        fn build(user_id: &str, with_subkey: bool) -> TestKey {
            let mut params = SecretKeyParamsBuilder::default();
            params
                .version(KeyVersion::V4)
                .key_type(KeyType::Ed25519Legacy)
                .can_certify(true)
                .can_sign(!with_subkey)
                .primary_user_id(user_id.to_owned());
            if with_subkey {
                params.subkey(
                    SubkeyParamsBuilder::default()
                        .version(KeyVersion::V4)
                        .key_type(KeyType::Ed25519Legacy)
                        .can_sign(true)
                        .build()
                        .expect("valid subkey parameters"),
                );
            }
            let secret = params
                .build()
                .expect("valid key parameters")
                .generate(OsRng)
                .expect("key generation");
            let public = secret.to_public_key();
            TestKey {
                secret,
                public,
                with_subkey,
            }
        }

        /// The fingerprint of the key (or subkey) that signs, in upper-case hex.
        pub fn signing_fingerprint(&self) -> String {
            let fingerprint = if self.with_subkey {
                self.secret.secret_subkeys[0].key.fingerprint()
            } else {
                self.secret.primary_key.fingerprint()
            };
            super::fingerprint_hex(&fingerprint)
        }

        /// The fingerprint of the primary key, in upper-case hex.
        pub fn fingerprint(&self) -> String {
            super::fingerprint_hex(&self.public.primary_key.fingerprint())
        }

        /// The public key as a binary keyring file's bytes (what a `keyring=` file holds).
        pub fn public_keyring(&self) -> Vec<u8> {
            self.public.to_bytes().expect("serialize a public key")
        }

        /// The public key, ASCII-armored (an `.asc` file).
        pub fn public_keyring_armored(&self) -> String {
            self.public
                .to_armored_string(ArmorOptions::default())
                .expect("armor a public key")
        }

        /// `body` as a cleartext-signed message, the shape of a Debian `InRelease`: the final
        /// newline of `body` is the line break before the signature block.
        pub fn sign_cleartext(&self, body: &str) -> String {
            self.sign_cleartext_at(body, SystemTime::now())
        }

        /// As [`TestKey::sign_cleartext`], with the signature dated `when`.
        pub fn sign_cleartext_at(&self, body: &str, when: SystemTime) -> String {
            let seconds = when
                .duration_since(UNIX_EPOCH)
                .expect("a time after 1970")
                .as_secs();
            let created = Timestamp::from_secs(u32::try_from(seconds).expect("a time before 2106"));
            let text = body.strip_suffix('\n').unwrap_or(body);
            let message = if self.with_subkey {
                sign_text(&self.secret.secret_subkeys[0].key, text, created)
            } else {
                sign_text(&self.secret.primary_key, text, created)
            };
            message
                .to_armored_string(ArmorOptions::default())
                .expect("armor a signed message")
        }
    }

    fn sign_text(key: &impl SigningKey, text: &str, created: Timestamp) -> CleartextSignedMessage {
        let mut config =
            SignatureConfig::from_key(OsRng, key, SignatureType::Text).expect("signature config");
        config.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(created))
                .expect("creation time subpacket"),
            Subpacket::regular(SubpacketData::IssuerFingerprint(key.fingerprint()))
                .expect("issuer fingerprint subpacket"),
        ];
        config.unhashed_subpackets = vec![
            Subpacket::regular(SubpacketData::IssuerKeyId(key.legacy_key_id()))
                .expect("issuer subpacket"),
        ];
        CleartextSignedMessage::new(text, config, key, &Password::empty()).expect("sign a text")
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime};

    use pgp::composed::SignedPublicKey;
    use pgp::packet::{
        KeyFlags, RevocationCode, SignatureConfig, SignatureType, Subpacket, SubpacketData,
    };
    use pgp::types::{KeyDetails, Password, Tag, Timestamp};

    use super::test_support::TestKey;
    use super::*;

    const RELEASE: &str = "Origin: Test\nLabel: Test\nSuite: stable\nCodename: test\n\
        Date: Sat, 11 Jul 2026 10:17:11 UTC\nArchitectures: amd64\nComponents: main\n\
        SHA256:\n 0ed6d4c8891eb86358b94bb35d9e4da4a7e6c8b2ba0e5a3a8b1e3a3f1a2b3c4d 1484322 main/binary-amd64/Packages\n";

    fn keyring_of(key: &TestKey) -> Keyring {
        Keyring::from_bytes(&key.public_keyring()).unwrap()
    }

    fn ago(seconds: u64) -> SystemTime {
        SystemTime::now() - Duration::from_secs(seconds)
    }

    fn timestamp(time: SystemTime) -> Timestamp {
        let seconds = time.duration_since(UNIX_EPOCH).unwrap().as_secs();
        Timestamp::from_secs(u32::try_from(seconds).unwrap())
    }

    #[test]
    fn round_trip() {
        let started = Instant::now();
        let key = TestKey::generate("Test Archive <test@example.org>");
        assert!(started.elapsed() < Duration::from_secs(1));
        let signed = key.sign_cleartext(RELEASE);
        assert!(signed.starts_with("-----BEGIN PGP SIGNED MESSAGE-----\nHash: "));
        assert!(signed.contains("\n\nOrigin: Test\n"));
        assert!(signed.contains("Packages\n-----BEGIN PGP SIGNATURE-----\n"));
        assert!(signed.ends_with("-----END PGP SIGNATURE-----\n"));
        let text = verify_cleartext(signed.as_bytes(), &keyring_of(&key)).unwrap();
        assert_eq!(text, RELEASE);
    }

    #[test]
    fn armored_keyrings_load_too() {
        let first = TestKey::generate("First <first@example.org>");
        let second = TestKey::generate("Second <second@example.org>");
        let both = format!(
            "{}\n{}",
            first.public_keyring_armored(),
            second.public_keyring_armored()
        );
        let keyring = Keyring::from_bytes(both.as_bytes()).unwrap();
        assert_eq!(keyring.len(), 2);
        let text = verify_cleartext(second.sign_cleartext(RELEASE).as_bytes(), &keyring).unwrap();
        assert_eq!(text, RELEASE);
    }

    #[test]
    fn signing_subkeys_are_accepted() {
        let key = TestKey::generate_with_signing_subkey("Archive <archive@example.org>");
        assert_ne!(key.signing_fingerprint(), key.fingerprint());
        let signed = key.sign_cleartext(RELEASE);
        let text = verify_cleartext(signed.as_bytes(), &keyring_of(&key)).unwrap();
        assert_eq!(text, RELEASE);
    }

    #[test]
    fn tampered_text_is_a_bad_signature() {
        let key = TestKey::generate("Test Archive <test@example.org>");
        let signed = key.sign_cleartext(RELEASE);
        let tampered = signed.replace("1484322", "1484323");
        assert_ne!(signed, tampered);
        let error = verify_cleartext(tampered.as_bytes(), &keyring_of(&key)).unwrap_err();
        assert!(
            matches!(&error, OpenPgpError::BadSignature { key: named } if *named == key.fingerprint()),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .starts_with("bad signature on `InRelease` by ")
        );
    }

    #[test]
    fn another_key_is_named_in_the_error() {
        let trusted = TestKey::generate("Trusted <trusted@example.org>");
        let stranger = TestKey::generate("Stranger <stranger@example.org>");
        let signed = stranger.sign_cleartext(RELEASE);
        let error = verify_cleartext(signed.as_bytes(), &keyring_of(&trusted)).unwrap_err();
        let OpenPgpError::UnknownSigner { issuers, .. } = &error else {
            panic!("expected an unknown signer, got {error}");
        };
        assert_eq!(issuers, &vec![stranger.fingerprint()]);
        assert_eq!(
            error.to_string(),
            format!(
                "`InRelease` is not signed by any key in the keyring; signed by {}",
                stranger.fingerprint()
            )
        );
    }

    #[test]
    fn one_trusted_signature_among_strangers_is_enough() {
        let trusted = TestKey::generate("Trusted <trusted@example.org>");
        let stranger = TestKey::generate("Stranger <stranger@example.org>");
        let by_stranger = stranger.sign_cleartext(RELEASE);
        let by_trusted = trusted.sign_cleartext(RELEASE);
        // Join the two signature blocks into one message with two signatures, as Debian's.
        let (message, _) = CleartextSignedMessage::from_string(&by_stranger).unwrap();
        let (other, _) = CleartextSignedMessage::from_string(&by_trusted).unwrap();
        let both = CleartextSignedMessage::new_many(RELEASE.trim_end_matches('\n'), |_| {
            Ok(vec![
                message.signatures()[0].clone(),
                other.signatures()[0].clone(),
            ])
        })
        .unwrap()
        .to_armored_string(pgp::composed::ArmorOptions::default())
        .unwrap();
        let text = verify_cleartext(both.as_bytes(), &keyring_of(&trusted)).unwrap();
        assert_eq!(text, RELEASE);
    }

    #[test]
    fn garbage_is_malformed_and_never_panics() {
        let key = TestKey::generate("Test Archive <test@example.org>");
        let keyring = keyring_of(&key);
        for input in [
            &b""[..],
            b"hello",
            b"\x00\x01\x02\xff\xfe",
            RELEASE.as_bytes(),
            b"-----BEGIN PGP SIGNED MESSAGE-----\n",
            b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nbody\n",
            b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: NOPE\n\nbody\n-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n",
        ] {
            let error = verify_cleartext(input, &keyring).unwrap_err();
            assert!(matches!(error, OpenPgpError::Malformed { .. }), "{error}");
        }
        // Every cut and every flipped byte of a real message: an error or the text, never a
        // panic, and never a different text.
        let signed = key.sign_cleartext(RELEASE);
        let bytes = signed.as_bytes();
        for end in 0..bytes.len() {
            if let Ok(text) = verify_cleartext(&bytes[..end], &keyring) {
                assert_eq!(text, RELEASE);
            }
        }
        for at in 0..bytes.len() {
            let mut changed = bytes.to_vec();
            changed[at] ^= 0x41;
            if let Ok(text) = verify_cleartext(&changed, &keyring) {
                assert_eq!(text.trim_end(), RELEASE.trim_end());
            }
        }
    }

    #[test]
    fn text_before_or_after_the_message_is_refused() {
        let key = TestKey::generate("Test Archive <test@example.org>");
        let keyring = keyring_of(&key);
        let signed = key.sign_cleartext(RELEASE);
        let before = format!("Origin: Evil\n{signed}");
        assert!(verify_cleartext(before.as_bytes(), &keyring).is_err());
        let after = format!("{signed}Origin: Evil\n");
        assert!(verify_cleartext(after.as_bytes(), &keyring).is_err());
    }

    #[test]
    fn dash_lines_survive_escaping() {
        let key = TestKey::generate("Test Archive <test@example.org>");
        let body = "Origin: Test\n- a line that starts with a dash\n--- three\n\
            -----BEGIN PGP SIGNATURE-----\n-\nDescription: end\n";
        let signed = key.sign_cleartext(body);
        assert!(signed.contains("\n- - a line that starts with a dash\n"));
        assert!(signed.contains("\n- -----BEGIN PGP SIGNATURE-----\n"));
        let text = verify_cleartext(signed.as_bytes(), &keyring_of(&key)).unwrap();
        assert_eq!(text, body);
    }

    #[test]
    fn keyring_errors_name_the_file() {
        let folder = tempfile::tempdir().unwrap();
        let missing = folder.path().join("missing.gpg");
        let error = Keyring::load(&missing).unwrap_err();
        assert!(matches!(error, OpenPgpError::UnreadableKeyring { .. }));
        assert!(error.to_string().contains("missing.gpg"), "{error}");

        let junk = folder.path().join("junk.gpg");
        std::fs::write(&junk, b"not a key").unwrap();
        let error = Keyring::load(&junk).unwrap_err();
        assert!(matches!(error, OpenPgpError::InvalidKeyring { .. }));
        assert!(
            error
                .to_string()
                .starts_with(&format!("the keyring `{}` does not hold", junk.display()))
        );

        let empty = folder.path().join("empty.gpg");
        std::fs::write(&empty, b"").unwrap();
        assert!(Keyring::load(&empty).is_err());
        assert!(Keyring::from_bytes(&[0x99, 0x01]).is_err());
    }

    #[test]
    fn load_all_merges_files() {
        let folder = tempfile::tempdir().unwrap();
        let first = TestKey::generate("First <first@example.org>");
        let second = TestKey::generate_with_signing_subkey("Second <second@example.org>");
        let first_path = folder.path().join("first.gpg");
        let second_path = folder.path().join("second.asc");
        std::fs::write(&first_path, first.public_keyring()).unwrap();
        std::fs::write(&second_path, second.public_keyring_armored()).unwrap();
        let keyring = Keyring::load_all(&[first_path.clone(), second_path.clone()]).unwrap();
        assert_eq!(keyring.len(), 2);
        assert!(Keyring::load_all(&[]).unwrap().is_empty());
        for key in [&first, &second] {
            let text = verify_cleartext(key.sign_cleartext(RELEASE).as_bytes(), &keyring).unwrap();
            assert_eq!(text, RELEASE);
        }
        let stranger = TestKey::generate("Stranger <stranger@example.org>");
        let error =
            verify_cleartext(stranger.sign_cleartext(RELEASE).as_bytes(), &keyring).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(&format!("`{}`", first_path.display())));
        assert!(message.contains(&format!("`{}`", second_path.display())));
    }

    /// Replaces the key's self-signature with one made at `created` that expires `lifetime`
    /// seconds after the key's creation.
    fn with_expiry(key: &TestKey, created: SystemTime, lifetime: u32) -> SignedPublicKey {
        let mut public = key.public.clone();
        let primary = &key.secret.primary_key;
        let mut flags = KeyFlags::default();
        flags.set_sign(true);
        flags.set_certify(true);
        let mut config =
            SignatureConfig::from_key(rand_core::OsRng, primary, SignatureType::CertPositive)
                .unwrap();
        config.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(timestamp(created))).unwrap(),
            Subpacket::regular(SubpacketData::KeyExpirationTime(
                pgp::types::Duration::from_secs(lifetime),
            ))
            .unwrap(),
            Subpacket::regular(SubpacketData::KeyFlags(flags)).unwrap(),
            Subpacket::regular(SubpacketData::IssuerFingerprint(primary.fingerprint())).unwrap(),
        ];
        let signature = config
            .sign_certification(
                primary,
                &key.public.primary_key,
                &Password::empty(),
                Tag::UserId,
                &key.public.details.users[0].id,
            )
            .unwrap();
        public.details.users[0].signatures = vec![signature];
        public
    }

    fn revoked(key: &TestKey, when: SystemTime, code: RevocationCode) -> SignedPublicKey {
        let mut public = key.public.clone();
        let primary = &key.secret.primary_key;
        let mut config =
            SignatureConfig::from_key(rand_core::OsRng, primary, SignatureType::KeyRevocation)
                .unwrap();
        config.hashed_subpackets = vec![
            Subpacket::regular(SubpacketData::SignatureCreationTime(timestamp(when))).unwrap(),
            Subpacket::regular(SubpacketData::RevocationReason(code, "test".into())).unwrap(),
            Subpacket::regular(SubpacketData::IssuerFingerprint(primary.fingerprint())).unwrap(),
        ];
        let signature = config
            .sign_key(primary, &Password::empty(), &key.public.primary_key)
            .unwrap();
        public.details.revocation_signatures.push(signature);
        public
    }

    fn ring(cert: SignedPublicKey) -> Keyring {
        let mut keyring = Keyring::default();
        keyring.add_all(vec![cert]);
        keyring
    }

    #[test]
    fn keys_are_judged_when_they_signed() {
        let key = TestKey::generate("Old <old@example.org>");
        let key_created = key.public.primary_key.created_at().as_secs();
        // Valid for 100 seconds after its creation, so expired long ago.
        let keyring = ring(with_expiry(&key, ago(0), 100));
        let late = key.sign_cleartext_at(RELEASE, SystemTime::now() + Duration::from_secs(200));
        let error = verify_cleartext(late.as_bytes(), &keyring).unwrap_err();
        assert!(matches!(error, OpenPgpError::KeyNotValid { .. }), "{error}");
        assert!(error.to_string().contains("expired on"), "{error}");

        let in_time = UNIX_EPOCH + Duration::from_secs(u64::from(key_created) + 50);
        let early = key.sign_cleartext_at(RELEASE, in_time);
        assert_eq!(
            verify_cleartext(early.as_bytes(), &keyring).unwrap(),
            RELEASE
        );

        let before_key = UNIX_EPOCH + Duration::from_secs(u64::from(key_created) - 50);
        let too_early = key.sign_cleartext_at(RELEASE, before_key);
        assert!(verify_cleartext(too_early.as_bytes(), &keyring).is_err());
    }

    #[test]
    fn revocations_void_signatures() {
        let key = TestKey::generate("Revoked <revoked@example.org>");
        let old = key.sign_cleartext_at(RELEASE, ago(0));
        let new = key.sign_cleartext_at(RELEASE, SystemTime::now() + Duration::from_secs(100));

        let hard = ring(revoked(
            &key,
            SystemTime::now() + Duration::from_secs(50),
            RevocationCode::KeyCompromised,
        ));
        for signed in [&old, &new] {
            let error = verify_cleartext(signed.as_bytes(), &hard).unwrap_err();
            assert!(error.to_string().contains("has been revoked"), "{error}");
        }

        let soft = ring(revoked(
            &key,
            SystemTime::now() + Duration::from_secs(50),
            RevocationCode::KeyRetired,
        ));
        assert_eq!(verify_cleartext(old.as_bytes(), &soft).unwrap(), RELEASE);
        let error = verify_cleartext(new.as_bytes(), &soft).unwrap_err();
        assert!(error.to_string().contains("was retired on"), "{error}");
    }

    #[test]
    fn a_revocation_in_one_file_is_not_outvoted_by_another() {
        let key = TestKey::generate("Revoked <revoked@example.org>");
        let signed = key.sign_cleartext(RELEASE);
        let mut keyring = ring(key.public.clone());
        keyring.add_all(vec![revoked(&key, ago(10), RevocationCode::NoReason)]);
        assert_eq!(keyring.len(), 1);
        assert!(verify_cleartext(signed.as_bytes(), &keyring).is_err());
    }

    #[test]
    fn dates_are_readable() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_time(1_783_765_031), "2026-07-11 10:17 UTC");
    }

    /// Real data: the InRelease files apt fetched, against Debian's own keyring.
    #[test]
    fn debian_in_release_verifies() {
        let must_work = std::env::var("ENVKIT_MUST_WORK").is_ok_and(|value| value == "1");
        let keyring_path = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
        let lists = Path::new("/var/lib/apt/lists");
        let files: Vec<PathBuf> = std::fs::read_dir(lists)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| {
                        path.file_name()
                            .and_then(|name| name.to_str())
                            .is_some_and(|name| {
                                name.contains("debian")
                                    && name.contains("_dists_")
                                    && name.ends_with("_InRelease")
                            })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !keyring_path.exists() || files.is_empty() {
            let reason = format!(
                "needs `{}` and a Debian `*_InRelease` in `{}`",
                keyring_path.display(),
                lists.display()
            );
            assert!(!must_work, "{reason}");
            eprintln!("skipped: {reason}");
            return;
        }
        let keyring = Keyring::load(keyring_path).unwrap();
        assert!(keyring.len() > 1);
        for file in files {
            let signed = std::fs::read(&file).unwrap();
            let started = Instant::now();
            let text = verify_cleartext(&signed, &keyring)
                .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            eprintln!("{}: verified in {:?}", file.display(), started.elapsed());
            assert!(text.starts_with("Origin: Debian\n"), "{text}");
            assert!(text.ends_with('\n'));
            assert!(!text.contains("PGP"));

            // One changed byte in the body is a bad signature.
            let body_at = signed
                .windows(b"\nSHA256:\n".len())
                .position(|window| window == b"\nSHA256:\n")
                .unwrap();
            let mut changed = signed.clone();
            let digit = body_at + b"\nSHA256:\n".len() + 2;
            changed[digit] = if changed[digit] == b'0' { b'1' } else { b'0' };
            let error = verify_cleartext(&changed, &keyring).unwrap_err();
            assert!(
                matches!(error, OpenPgpError::BadSignature { .. }),
                "{error}"
            );
        }
    }
}
