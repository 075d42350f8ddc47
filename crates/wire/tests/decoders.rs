//! Every decoder that takes bytes from the network, fed arbitrary input (proptest, on stable): it never panics,
//! it never allocates far beyond its input, and what it accepts encodes back to what it read (one canonical
//! encoding).

use bytes::Bytes;
use malachitebft_codec::Codec;
use malachitebft_core_consensus::{LivenessMsg, ProposedValue, SignedConsensusMsg};
use malachitebft_core_types::PolkaCertificate;
use malachitebft_engine::util::streaming::StreamMessage;
use metis_wire::evidence::Evidence;
use metis_wire::types::{MetisContext, ProposalPart};
use metis_wire::{BlockData, WireCodec};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the bytes live on this test binary's heap and their peak, so a decoder's allocations can be bounded.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; the counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same layout as asked.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: allocated above with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs decoder `f` on `input` and checks the heap grew by at most a fixed slack plus a small multiple of the
/// input. (Tests of one binary share the heap: decoders are run one at a time.)
fn within_bound<T>(input: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f(input);
    let grew = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    let bound = 4 * 1024 * 1024 + 64 * input.len();
    assert!(
        grew <= bound,
        "{} input bytes made the heap grow by {grew}",
        input.len()
    );
    out
}

/// Decodes with the network codec; if accepted, the encoding is the input again.
fn canonical<T>(bytes: &[u8])
where
    WireCodec: Codec<T>,
{
    let decoded = within_bound(bytes, |b| WireCodec.decode(Bytes::copy_from_slice(b)));
    if let Ok(v) = decoded {
        let again = WireCodec.encode(&v).expect("what decodes encodes");
        assert_eq!(again.as_ref(), bytes, "a non-canonical encoding was accepted");
    }
}

fn arbitrary() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 0..4096),
        // Length prefixes that claim a lot: a u32 near the top first.
        (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..256)).prop_map(|(n, rest)| {
            let mut v = (n | 0xf000_0000).to_le_bytes().to_vec();
            v.extend(rest);
            v
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn consensus_messages(bytes in arbitrary()) {
        canonical::<SignedConsensusMsg<MetisContext>>(&bytes);
        canonical::<LivenessMsg<MetisContext>>(&bytes);
        canonical::<PolkaCertificate<MetisContext>>(&bytes);
        canonical::<ProposedValue<MetisContext>>(&bytes);
    }

    #[test]
    fn proposal_parts_and_streams(bytes in arbitrary()) {
        canonical::<ProposalPart>(&bytes);
        canonical::<StreamMessage<ProposalPart>>(&bytes);
    }

    #[test]
    fn sync_messages(bytes in arbitrary()) {
        canonical::<malachitebft_sync::Status<MetisContext>>(&bytes);
        canonical::<malachitebft_sync::Request<MetisContext>>(&bytes);
        let _ = within_bound(&bytes, |b| {
            <WireCodec as Codec<malachitebft_sync::Response<MetisContext>>>::decode(&WireCodec, Bytes::copy_from_slice(b))
        });
    }

    /// A valid part with one byte changed, cut short or extended: near-misses reach deeper than noise.
    #[test]
    fn mutated_proposal_parts(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        at in any::<usize>(),
        flip in 1u8..,
        cut in any::<bool>(),
    ) {
        let valid = WireCodec.encode(&ProposalPart::Data(data)).expect("encodes").to_vec();
        canonical::<ProposalPart>(&valid);
        let mut m = valid.clone();
        let i = at % m.len();
        m[i] ^= flip;
        canonical::<ProposalPart>(&m);
        canonical::<StreamMessage<ProposalPart>>(&m);
        if cut {
            canonical::<ProposalPart>(&valid[..i]);
        } else {
            m.extend_from_slice(&valid);
            canonical::<ProposalPart>(&m);
        }
    }

    #[test]
    fn block_data(bytes in arbitrary()) {
        if let Ok(d) = within_bound(&bytes, BlockData::decode) {
            prop_assert!(d.txs.len() <= bytes.len());
        }
    }

    #[test]
    fn evidence(bytes in arbitrary()) {
        if let Ok(e) = within_bound(&bytes, Evidence::from_bytes) {
            prop_assert_eq!(e.to_bytes().expect("encodes"), bytes);
        }
    }
}
