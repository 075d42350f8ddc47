//! The batch payload: the batch's blocks (header and transactions) RLP-encoded and zstd-compressed, carried in
//! calldata or in EIP-4844 blobs. Replicas decode it to re-execute every block; decoding is bounded, so a hostile
//! payload cannot exhaust memory.

use alloy_consensus::{Header, TxEnvelope};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_eips::eip4844::builder::{SidecarBuilder, SidecarCoder, SimpleCoder};
use alloy_eips::eip7594::BlobTransactionSidecarEip7594;
use alloy_primitives::{keccak256, Bytes, B256};
use alloy_rlp::{Decodable, Encodable, Header as RlpHeader};
use std::io::Read;

/// Version byte in front of the compressed data.
pub const PAYLOAD_VERSION: u8 = 1;
/// Largest decompressed payload accepted (a batch of ~ 2,000 full 30M-gas blocks of calldata fits easily).
pub const MAX_DECOMPRESSED: usize = 128 * 1024 * 1024;
/// zstd level: a good ratio at a speed far above the block rate.
pub const ZSTD_LEVEL: i32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("unknown payload version {0}")]
    Version(u8),
    #[error("empty payload")]
    Empty,
    #[error("compression: {0}")]
    Compress(String),
    #[error("decompression: {0}")]
    Decompress(String),
    #[error("payload decompresses to more than {MAX_DECOMPRESSED} bytes")]
    TooLarge,
    #[error("malformed block list: {0}")]
    Rlp(String),
    #[error("building blobs: {0}")]
    Blobs(String),
    #[error("blobs do not decode to a payload")]
    BadBlobs,
}

/// One block as a batch carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchBlock {
    pub header: Header,
    pub transactions: Vec<TxEnvelope>,
}

/// Appends one block's encoding (the payload before compression is these, concatenated).
pub fn encode_block(b: &BatchBlock, out: &mut Vec<u8>) {
    let txs: Vec<Bytes> = b.transactions.iter().map(|t| Bytes::from(t.encoded_2718())).collect();
    let payload_len = b.header.length() + txs.length();
    RlpHeader {
        list: true,
        payload_length: payload_len,
    }
    .encode(out);
    b.header.encode(out);
    txs.encode(out);
}

/// Encodes and compresses `blocks`.
pub fn encode(blocks: &[BatchBlock]) -> Result<Vec<u8>, PayloadError> {
    Ok(encode_measured(blocks)?.0)
}

/// Encodes and compresses `blocks`; also returns the size before compression.
pub fn encode_measured(blocks: &[BatchBlock]) -> Result<(Vec<u8>, usize), PayloadError> {
    let mut raw = Vec::new();
    for b in blocks {
        encode_block(b, &mut raw);
    }
    Ok((compress(&raw)?, raw.len()))
}

/// The payload of already encoded blocks (see [`encode_block`]).
pub fn compress(raw: &[u8]) -> Result<Vec<u8>, PayloadError> {
    let mut out = vec![PAYLOAD_VERSION];
    out.extend(zstd::bulk::compress(raw, ZSTD_LEVEL).map_err(|e| PayloadError::Compress(e.to_string()))?);
    Ok(out)
}

/// Decompresses (bounded) and decodes a payload.
pub fn decode(payload: &[u8]) -> Result<Vec<BatchBlock>, PayloadError> {
    let (&version, compressed) = payload.split_first().ok_or(PayloadError::Empty)?;
    if version != PAYLOAD_VERSION {
        return Err(PayloadError::Version(version));
    }
    let mut raw = Vec::new();
    let decoder = zstd::stream::read::Decoder::new(compressed).map_err(|e| PayloadError::Decompress(e.to_string()))?;
    let read = decoder
        .take(MAX_DECOMPRESSED as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| PayloadError::Decompress(e.to_string()))?;
    if read > MAX_DECOMPRESSED {
        return Err(PayloadError::TooLarge);
    }
    let mut buf = raw.as_slice();
    let mut blocks = Vec::new();
    while !buf.is_empty() {
        let h = RlpHeader::decode(&mut buf).map_err(|e| PayloadError::Rlp(e.to_string()))?;
        if !h.list || h.payload_length > buf.len() {
            return Err(PayloadError::Rlp("block is not a list of the stated length".into()));
        }
        let (mut item, rest) = buf.split_at(h.payload_length);
        buf = rest;
        let header = Header::decode(&mut item).map_err(|e| PayloadError::Rlp(e.to_string()))?;
        let txs = Vec::<Bytes>::decode(&mut item).map_err(|e| PayloadError::Rlp(e.to_string()))?;
        if !item.is_empty() {
            return Err(PayloadError::Rlp("trailing bytes in a block".into()));
        }
        let transactions = txs
            .iter()
            .map(|t| {
                let mut s = t.as_ref();
                let tx = TxEnvelope::decode_2718(&mut s).map_err(|e| PayloadError::Rlp(e.to_string()))?;
                if !s.is_empty() {
                    return Err(PayloadError::Rlp("trailing bytes in a transaction".into()));
                }
                Ok(tx)
            })
            .collect::<Result<_, _>>()?;
        blocks.push(BatchBlock { header, transactions });
    }
    Ok(blocks)
}

/// The payload commitment the batch header carries.
pub fn payload_hash(payload: &[u8]) -> B256 {
    keccak256(payload)
}

/// The payload in EIP-4844 blobs with EIP-7594 cell proofs.
pub fn to_blobs(payload: &[u8]) -> Result<BlobTransactionSidecarEip7594, PayloadError> {
    SidecarBuilder::<SimpleCoder>::from_slice(payload)
        .build_7594()
        .map_err(|e| PayloadError::Blobs(e.to_string()))
}

/// Blobs one L1 transaction may carry (EIP-7594, Fusaka): a payload needing more goes in calldata.
pub const MAX_BLOBS_PER_TX: usize = alloy_eips::eip7594::MAX_BLOBS_PER_TX_FUSAKA as usize;

/// The payload split into blobs (the same split [`to_blobs`] makes), without any commitment.
pub fn blobs_of(payload: &[u8]) -> Vec<alloy_eips::eip4844::Blob> {
    SidecarBuilder::<SimpleCoder>::from_slice(payload).take()
}

/// The versioned hashes of the blobs carrying `payload`: what a blob-mode header commits to. Only the KZG
/// commitments are computed (no proofs), so every node can afford it at each cut.
pub fn blob_hashes(payload: &[u8]) -> Result<Vec<B256>, PayloadError> {
    use alloy_eips::eip4844::env_settings::EnvKzgSettings;
    use alloy_eips::eip4844::{kzg_to_versioned_hash, AsCkzg};
    let settings = EnvKzgSettings::Default.get();
    blobs_of(payload)
        .iter()
        .map(|b| {
            let c = settings
                .blob_to_kzg_commitment(b.as_ckzg())
                .map_err(|e| PayloadError::Blobs(e.to_string()))?;
            Ok(kzg_to_versioned_hash(c.to_bytes().as_slice()))
        })
        .collect()
}

/// Checks each blob against the versioned hash the header claims for it (blobs from an untrusted source).
pub fn check_blobs(blobs: &[alloy_eips::eip4844::Blob], hashes: &[B256]) -> Result<(), PayloadError> {
    use alloy_eips::eip4844::env_settings::EnvKzgSettings;
    use alloy_eips::eip4844::{kzg_to_versioned_hash, AsCkzg};
    if blobs.len() != hashes.len() {
        return Err(PayloadError::BadBlobs);
    }
    let settings = EnvKzgSettings::Default.get();
    for (b, h) in blobs.iter().zip(hashes) {
        let c = settings
            .blob_to_kzg_commitment(b.as_ckzg())
            .map_err(|e| PayloadError::Blobs(e.to_string()))?;
        if kzg_to_versioned_hash(c.to_bytes().as_slice()) != *h {
            return Err(PayloadError::BadBlobs);
        }
    }
    Ok(())
}

/// The payload back from raw blobs.
pub fn from_raw_blobs(blobs: &[alloy_eips::eip4844::Blob]) -> Result<Vec<u8>, PayloadError> {
    let parts = SimpleCoder::default().decode_all(blobs).ok_or(PayloadError::BadBlobs)?;
    Ok(parts.concat())
}

/// The payload back from its blobs.
pub fn from_blobs(sidecar: &BlobTransactionSidecarEip7594) -> Result<Vec<u8>, PayloadError> {
    let parts = SimpleCoder::default()
        .decode_all(&sidecar.blobs)
        .ok_or(PayloadError::BadBlobs)?;
    Ok(parts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A payload read from L1 (arbitrary bytes, or a real one with a byte changed) is refused or decodes;
        /// no panic (the decompression bound has its own test below).
        #[test]
        fn any_payload_is_refused_or_decodes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
            at in proptest::prelude::any::<usize>(),
            flip in 1u8..,
        ) {
            let _ = decode(&bytes);
            let mut real = compress(&encode(&blocks(2, 2)).unwrap()).unwrap();
            let i = at % real.len();
            real[i] ^= flip;
            let _ = decode(&real);
        }
    }
    use alloy_consensus::{SignableTransaction, TxEip1559};
    use alloy_primitives::{Signature, TxKind, U256};

    fn blocks(n: u64, txs_per_block: u64) -> Vec<BatchBlock> {
        (1..=n)
            .map(|number| BatchBlock {
                header: Header {
                    number,
                    gas_limit: 30_000_000,
                    timestamp: 1000 + number,
                    ..Default::default()
                },
                transactions: (0..txs_per_block)
                    .map(|i| {
                        let tx = TxEip1559 {
                            chain_id: 59902,
                            nonce: number * 100 + i,
                            gas_limit: 21_000,
                            max_fee_per_gas: 2_000_000_000,
                            max_priority_fee_per_gas: 1,
                            to: TxKind::Call(alloy_primitives::Address::repeat_byte(i as u8)),
                            value: U256::from(i),
                            input: Bytes::new(),
                            access_list: Default::default(),
                        };
                        // A fixed signature is enough for the codec (no recovery here).
                        let sig = Signature::new(U256::from(1 + i), U256::from(2 + i), false);
                        TxEnvelope::from(tx.into_signed(sig))
                    })
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn roundtrip_and_compression() {
        let b = blocks(20, 50);
        let p = encode(&b).unwrap();
        assert_eq!(decode(&p).unwrap(), b);
        let raw_len: usize = b
            .iter()
            .map(|x| {
                let mut v = Vec::new();
                encode_block(x, &mut v);
                v.len()
            })
            .sum();
        assert!(p.len() < raw_len, "compressed {} vs raw {raw_len}", p.len());
        assert_eq!(decode(&encode(&[]).unwrap()).unwrap(), vec![]);
    }

    #[test]
    fn blobs_roundtrip() {
        let p = encode(&blocks(5, 200)).unwrap();
        let sidecar = to_blobs(&p).unwrap();
        assert!(!sidecar.blobs.is_empty());
        assert_eq!(from_blobs(&sidecar).unwrap(), p);
        // The header's hashes (commitments only) are the sidecar's, and the blobs check against them.
        let hashes = blob_hashes(&p).unwrap();
        assert_eq!(hashes, sidecar.versioned_hashes().collect::<Vec<_>>());
        check_blobs(&sidecar.blobs, &hashes).unwrap();
        let mut tampered = sidecar.blobs.clone();
        tampered[0].0[100] ^= 1;
        assert!(check_blobs(&tampered, &hashes).is_err());
        assert_eq!(from_raw_blobs(&sidecar.blobs).unwrap(), p);
    }

    #[test]
    fn hostile_payloads_are_refused() {
        assert!(matches!(decode(&[]), Err(PayloadError::Empty)));
        assert!(matches!(decode(&[9, 1, 2]), Err(PayloadError::Version(9))));
        assert!(decode(&[PAYLOAD_VERSION, 1, 2, 3]).is_err());
        // Valid zstd of garbage RLP.
        let mut junk = vec![PAYLOAD_VERSION];
        junk.extend(zstd::bulk::compress(&[0xc5, 1, 2], 1).unwrap());
        assert!(matches!(decode(&junk), Err(PayloadError::Rlp(_))));
        // A decompression bomb: 200 MiB of zeros compress to a few KiB.
        let mut bomb = vec![PAYLOAD_VERSION];
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..200 {
            std::io::Write::write_all(&mut enc, &zeros).unwrap();
        }
        bomb.extend(enc.finish().unwrap());
        assert!(bomb.len() < 1 << 20);
        assert!(matches!(decode(&bomb), Err(PayloadError::TooLarge)));
    }
}
