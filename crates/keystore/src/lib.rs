//! Secrets at rest (key shares, consensus and DKG keys, L1 signer keys).
//!
//! A key file is JSON: the KDF and cipher parameters in the clear, the secret only as ciphertext. The key is
//! argon2id(passphrase, random salt); the cipher is XChaCha20-Poly1305 with a random 24-byte nonce, and the
//! file's header (format, label, KDF parameters) is authenticated as associated data, so it cannot be swapped
//! or weakened unnoticed. Files are written 0600, atomically (temp file, fsync, rename), and refused when
//! readable by group or others. Plaintexts, derived keys and passphrases are zeroized when dropped and never
//! printed.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

/// The label a threshold-key share file is sealed under (a file of another kind does not open as a share).
pub const SHARE_LABEL: &str = "metis-seq threshold key share";

const FORMAT: &str = "metis-seq-keystore-v1";

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("wrong passphrase, or the key file {0} was altered")]
    Decrypt(PathBuf),
    #[error("key file {path}: {what}")]
    Format { path: PathBuf, what: String },
    #[error("key file {0} is readable by group or others (chmod 600 it)")]
    Permissions(PathBuf),
    #[error("key file {path} holds a {found:?} secret, not {expected:?}")]
    Label {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("passphrase: {0}")]
    Passphrase(String),
    #[error("key derivation: {0}")]
    Kdf(String),
    #[error("system randomness unavailable: {0}")]
    Random(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeystoreError + '_ {
    move |source| KeystoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A passphrase, zeroized on drop and never printed.
pub struct Passphrase(Zeroizing<String>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl Passphrase {
    pub fn new(s: impl Into<String>) -> Result<Self, KeystoreError> {
        let s = Zeroizing::new(s.into());
        if s.is_empty() {
            return Err(KeystoreError::Passphrase("empty passphrase".into()));
        }
        Ok(Self(s))
    }

    /// From an environment variable.
    pub fn from_env(var: &str) -> Result<Self, KeystoreError> {
        let v = std::env::var(var)
            .map_err(|_| KeystoreError::Passphrase(format!("environment variable {var} is not set")))?;
        Self::new(v)
    }

    /// From the first line of a file (a trailing newline is not part of it).
    pub fn from_file(path: &Path) -> Result<Self, KeystoreError> {
        let mut raw = Zeroizing::new(fs::read_to_string(path).map_err(io(path))?);
        let line = raw.lines().next().unwrap_or_default().to_string();
        raw.zeroize();
        Self::new(line)
    }
}

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes: about a quarter second on one core; OWASP's argon2id guidance.
    fn default() -> Self {
        Self {
            m_cost: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Cheap parameters for tests and throwaway devnets only.
    pub fn insecure_fast() -> Self {
        Self {
            m_cost: 8 * 1024,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// The most a key file may ask for: 2 GiB of memory, 32 passes, 16 lanes (the defaults are 64 MiB, 3, 1).
    pub fn ceiling() -> Self {
        Self {
            m_cost: 2 * 1024 * 1024,
            t_cost: 32,
            p_cost: 16,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    format: String,
    label: String,
    kdf: String,
    kdf_params: KdfParams,
    salt: String,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

fn header_aad(format: &str, label: &str, p: &KdfParams, salt: &str) -> Vec<u8> {
    format!(
        "{format}|{label}|argon2id|{}|{}|{}|{salt}|xchacha20poly1305",
        p.m_cost, p.t_cost, p.p_cost
    )
    .into_bytes()
}

fn derive_key(pass: &Passphrase, salt: &[u8], p: &KdfParams) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let params = Params::new(p.m_cost, p.t_cost, p.p_cost, Some(32)).map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pass.0.as_bytes(), salt, key.as_mut())
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    Ok(key)
}

fn random<const N: usize>() -> Result<[u8; N], KeystoreError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| KeystoreError::Random(e.to_string()))?;
    Ok(b)
}

/// Encrypts `secret` under `pass` and writes it to `path` (0600, atomically). `label` says what the secret is
/// and is checked on load.
pub fn save(path: &Path, label: &str, secret: &[u8], pass: &Passphrase, kdf: KdfParams) -> Result<(), KeystoreError> {
    let salt = random::<16>()?;
    let nonce = random::<24>()?;
    let salt_hex = hex::encode(salt);
    let key = derive_key(pass, &salt, &kdf)?;
    let cipher = XChaCha20Poly1305::new_from_slice(key.as_ref()).map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let aad = header_aad(FORMAT, label, &kdf, &salt_hex);
    let nonce_arr = XNonce::try_from(&nonce[..]).map_err(|_| KeystoreError::Random("nonce length".into()))?;
    let ct = cipher
        .encrypt(&nonce_arr, Payload { msg: secret, aad: &aad })
        .map_err(|_| KeystoreError::Kdf("encryption failed".into()))?;
    let file = KeyFile {
        format: FORMAT.into(),
        label: label.into(),
        kdf: "argon2id".into(),
        kdf_params: kdf,
        salt: salt_hex,
        cipher: "xchacha20poly1305".into(),
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ct),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| KeystoreError::Format {
        path: path.into(),
        what: e.to_string(),
    })?;
    write_private(path, &json)
}

/// Writes `data` to `path` with mode 0600 through a temp file in the same directory and a rename.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), KeystoreError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key")
    ));
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
        }
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

/// Reads and decrypts the secret in `path`, which must hold a `label` secret. A wrong passphrase is an error
/// and changes nothing.
pub fn load(path: &Path, label: &str, pass: &Passphrase) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).map_err(io(path))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeystoreError::Permissions(path.into()));
        }
    }
    let raw = fs::read(path).map_err(io(path))?;
    let bad = |what: &str| KeystoreError::Format {
        path: path.into(),
        what: what.into(),
    };
    let file: KeyFile = serde_json::from_slice(&raw).map_err(|e| KeystoreError::Format {
        path: path.into(),
        what: e.to_string(),
    })?;
    if file.format != FORMAT || file.kdf != "argon2id" || file.cipher != "xchacha20poly1305" {
        return Err(bad("unknown format, KDF or cipher"));
    }
    if file.label != label {
        return Err(KeystoreError::Label {
            path: path.into(),
            expected: label.into(),
            found: file.label,
        });
    }
    // Refuse parameters weaker than the cheapest we ever write, so an edited header cannot downgrade the KDF.
    let floor = KdfParams::insecure_fast();
    if file.kdf_params.m_cost < floor.m_cost || file.kdf_params.t_cost < floor.t_cost || file.kdf_params.p_cost == 0 {
        return Err(bad("KDF parameters below the minimum"));
    }
    // And absurd ones, so an edited header cannot make argon2 allocate or spin without bound.
    let ceiling = KdfParams::ceiling();
    if file.kdf_params.m_cost > ceiling.m_cost
        || file.kdf_params.t_cost > ceiling.t_cost
        || file.kdf_params.p_cost > ceiling.p_cost
    {
        return Err(bad("KDF parameters above the maximum"));
    }
    let salt = hex::decode(&file.salt).map_err(|_| bad("salt is not hex"))?;
    let nonce = hex::decode(&file.nonce).map_err(|_| bad("nonce is not hex"))?;
    let ct = hex::decode(&file.ciphertext).map_err(|_| bad("ciphertext is not hex"))?;
    if salt.len() != 16 || nonce.len() != 24 {
        return Err(bad("salt or nonce has the wrong length"));
    }
    let key = derive_key(pass, &salt, &file.kdf_params)?;
    let cipher = XChaCha20Poly1305::new_from_slice(key.as_ref()).map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let aad = header_aad(&file.format, &file.label, &file.kdf_params, &file.salt);
    let nonce_arr = XNonce::try_from(&nonce[..]).map_err(|_| bad("nonce length"))?;
    cipher
        .decrypt(&nonce_arr, Payload { msg: &ct, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| KeystoreError::Decrypt(path.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("metis-keystore-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn roundtrip_with_default_cost() {
        let d = dir("rt");
        let path = d.join("share.json");
        let pass = Passphrase::new("correct horse battery staple").unwrap();
        let secret = b"a 32-byte bls scalar share ......";
        save(&path, "bls-share", secret, &pass, KdfParams::default()).unwrap();
        assert_eq!(load(&path, "bls-share", &pass).unwrap().as_slice(), secret);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // The file never holds the secret in the clear.
        let raw = fs::read(&path).unwrap();
        assert!(!raw.windows(secret.len()).any(|w| w == secret));
        assert!(!String::from_utf8_lossy(&raw).contains(&hex::encode(secret)));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn wrong_passphrase_tampering_label_and_permissions_are_refused() {
        let d = dir("bad");
        let path = d.join("k.json");
        let pass = Passphrase::new("right").unwrap();
        save(
            &path,
            "consensus-ed25519",
            &[7u8; 32],
            &pass,
            KdfParams::insecure_fast(),
        )
        .unwrap();
        let before = fs::read(&path).unwrap();
        let wrong = Passphrase::new("wrong").unwrap();
        assert!(matches!(
            load(&path, "consensus-ed25519", &wrong),
            Err(KeystoreError::Decrypt(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), before, "a failed load touches nothing");
        assert!(matches!(
            load(&path, "bls-share", &pass),
            Err(KeystoreError::Label { .. })
        ));

        // Editing the header (here: the label) breaks authentication even with the right passphrase.
        let mut json: serde_json::Value = serde_json::from_slice(&before).unwrap();
        json["label"] = "bls-share".into();
        write_private(&path, &serde_json::to_vec(&json).unwrap()).unwrap();
        assert!(matches!(
            load(&path, "bls-share", &pass),
            Err(KeystoreError::Decrypt(_))
        ));
        // A weakened KDF is refused outright.
        json["kdf_params"]["m_cost"] = 8.into();
        write_private(&path, &serde_json::to_vec(&json).unwrap()).unwrap();
        assert!(matches!(
            load(&path, "bls-share", &pass),
            Err(KeystoreError::Format { .. })
        ));
        // An absurd one too (4 TiB of memory), before argon2 runs.
        json["kdf_params"]["m_cost"] = (u32::MAX).into();
        write_private(&path, &serde_json::to_vec(&json).unwrap()).unwrap();
        assert!(matches!(
            load(&path, "bls-share", &pass),
            Err(KeystoreError::Format { .. })
        ));
        // Garbage.
        write_private(&path, b"not json").unwrap();
        assert!(matches!(
            load(&path, "bls-share", &pass),
            Err(KeystoreError::Format { .. })
        ));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            save(&path, "x", &[1], &pass, KdfParams::insecure_fast()).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(load(&path, "x", &pass), Err(KeystoreError::Permissions(_))));
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn passphrase_sources_and_redaction() {
        let d = dir("pass");
        let f = d.join("pass.txt");
        fs::write(&f, "s3cret\n").unwrap();
        let p = Passphrase::from_file(&f).unwrap();
        assert_eq!(format!("{p:?}"), "Passphrase(<redacted>)");
        assert!(Passphrase::new("").is_err());
        assert!(Passphrase::from_env("METIS_KEYSTORE_TEST_UNSET_VAR").is_err());
        let _ = fs::remove_dir_all(&d);
    }
}
