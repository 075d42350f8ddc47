//! `metis-seq keys`: a sequencer's long-term keys, generated once and kept encrypted at rest.
//!
//! - identity (ed25519): signs consensus votes and DKG acks/logs; registered on L1 as `consensusKey`.
//! - dkg (X25519): private DKG dealings are sealed to it; registered on L1 as `dkgKey`.
//! - l1-signer (secp256k1): the sequencer's L1 address (`signer` in lockFor).
//!
//! Each is a metis-keystore file (argon2id + XChaCha20-Poly1305, 0600); the passphrase comes from an
//! environment variable or a file, never from the command line.

use alloy::signers::local::PrivateKeySigner;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use commonware_codec::{DecodeExt, Encode};
use commonware_cryptography::{ed25519, Signer as _};
use commonware_math::algebra::Random;
use metis_keystore::{KdfParams, Passphrase};
use metis_mpc::seal::DkgSecret;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub const IDENTITY_FILE: &str = "identity.key";
pub const DKG_FILE: &str = "dkg.key";
pub const L1_SIGNER_FILE: &str = "l1-signer.key";
const IDENTITY_LABEL: &str = "identity-ed25519";
const DKG_LABEL: &str = "dkg-x25519";
const L1_LABEL: &str = "l1-secp256k1";

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate a sequencer's keys into a directory (refuses to overwrite existing keys).
    Init(KeysArgs),
    /// Print the public halves (what goes to LockingPool.lockFor) as JSON.
    Show(KeysArgs),
}

#[derive(Args)]
pub struct KeysArgs {
    /// Directory holding the key files.
    #[arg(long)]
    dir: PathBuf,
    #[command(flatten)]
    pass: PassphraseArgs,
    /// Cheap key derivation, for throwaway devnets only.
    #[arg(long, hide = true)]
    insecure_fast_kdf: bool,
}

#[derive(Args)]
pub struct PassphraseArgs {
    /// Environment variable holding the key store passphrase.
    #[arg(long, default_value = "METIS_KEYSTORE_PASSPHRASE")]
    passphrase_env: String,
    /// File whose first line is the passphrase (instead of the environment variable).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

impl PassphraseArgs {
    pub fn load(&self) -> Result<Passphrase> {
        Ok(match &self.passphrase_file {
            Some(f) => Passphrase::from_file(f)?,
            None => Passphrase::from_env(&self.passphrase_env)?,
        })
    }
}

/// A sequencer's keys, decrypted.
pub struct SequencerKeys {
    pub identity: ed25519::PrivateKey,
    pub dkg: DkgSecret,
    pub l1_signer: PrivateKeySigner,
}

impl SequencerKeys {
    pub fn load(dir: &Path, pass: &Passphrase) -> Result<Self> {
        let id = metis_keystore::load(&dir.join(IDENTITY_FILE), IDENTITY_LABEL, pass)?;
        let identity = ed25519::PrivateKey::decode(id.to_vec()).context("identity key does not decode")?;
        let dkg = metis_keystore::load(&dir.join(DKG_FILE), DKG_LABEL, pass)?;
        let dkg: [u8; 32] = dkg.as_slice().try_into().context("dkg key is not 32 bytes")?;
        let l1 = metis_keystore::load(&dir.join(L1_SIGNER_FILE), L1_LABEL, pass)?;
        let l1_signer = PrivateKeySigner::from_slice(&l1).context("L1 signer key is not a valid secp256k1 key")?;
        Ok(Self {
            identity,
            dkg: DkgSecret::from_bytes(dkg),
            l1_signer,
        })
    }

    /// The public halves, as LockingPool.lockFor takes them.
    pub fn public_json(&self) -> serde_json::Value {
        serde_json::json!({
            "consensus_key": format!("0x{}", alloy::hex::encode(self.identity.public_key().encode())),
            "dkg_key": format!("0x{}", alloy::hex::encode(self.dkg.public())),
            "signer": self.l1_signer.address(),
        })
    }
}

/// Generates a sequencer's three keys into `dir`, encrypted under `pass`; refuses to overwrite a key.
pub fn generate(dir: &Path, pass: &Passphrase, kdf: KdfParams) -> Result<SequencerKeys> {
    for f in [IDENTITY_FILE, DKG_FILE, L1_SIGNER_FILE] {
        if dir.join(f).exists() {
            bail!("{} already exists: refusing to overwrite a key", dir.join(f).display());
        }
    }
    let identity = ed25519::PrivateKey::random(rand::rng());
    let id_bytes = Zeroizing::new(identity.encode().to_vec());
    let dkg = DkgSecret::generate()?;
    let l1 = PrivateKeySigner::random();
    let l1_bytes = Zeroizing::new(l1.to_bytes().to_vec());
    metis_keystore::save(&dir.join(IDENTITY_FILE), IDENTITY_LABEL, &id_bytes, pass, kdf)?;
    metis_keystore::save(&dir.join(DKG_FILE), DKG_LABEL, dkg.to_bytes().as_ref(), pass, kdf)?;
    metis_keystore::save(&dir.join(L1_SIGNER_FILE), L1_LABEL, &l1_bytes, pass, kdf)?;
    SequencerKeys::load(dir, pass)
}

pub fn run(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Init(a) => {
            let pass = a.pass.load()?;
            let kdf = if a.insecure_fast_kdf {
                KdfParams::insecure_fast()
            } else {
                KdfParams::default()
            };
            generate(&a.dir, &pass, kdf)?;
            let keys = SequencerKeys::load(&a.dir, &pass)?;
            println!("{}", serde_json::to_string_pretty(&keys.public_json())?);
            Ok(())
        }
        KeysCommand::Show(a) => {
            let keys = SequencerKeys::load(&a.dir, &a.pass.load()?)?;
            println!("{}", serde_json::to_string_pretty(&keys.public_json())?);
            Ok(())
        }
    }
}
