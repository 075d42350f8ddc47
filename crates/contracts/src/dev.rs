//! The well-known development accounts (the test mnemonic anvil and hardhat use): the dev chain, the devnet
//! and the tests fund and sign with them. DEVNET ONLY: everyone knows these keys.

use alloy::signers::local::{coins_bip39::English, LocalSignerError, MnemonicBuilder, PrivateKeySigner};

pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";

/// Dev account `i`.
pub fn dev_key(i: u32) -> Result<PrivateKeySigner, LocalSignerError> {
    MnemonicBuilder::<English>::default()
        .phrase(DEV_MNEMONIC)
        .index(i)?
        .build()
}

/// Dev accounts `0..n`.
pub fn dev_keys(n: u32) -> Result<Vec<PrivateKeySigner>, LocalSignerError> {
    (0..n).map(dev_key).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn account_zero_is_anvils() {
        let k = super::dev_key(0).expect("key");
        assert_eq!(k.address().to_string(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    }
}
