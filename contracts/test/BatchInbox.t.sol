// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Fixture} from "./base/Fixture.sol";
import {BlsTestSigner} from "./base/BlsTestSigner.sol";
import {BatchInbox} from "../src/BatchInbox.sol";
import {IGroupKeyRegistry} from "../src/IGroupKeyRegistry.sol";
import {TxProofFixture} from "./fixtures/TxProofFixture.sol";

contract BatchInboxTest is Fixture {
    function setUp() public override {
        super.setUp();
        _registerGroupKey();
    }

    function _header(uint64 index, uint64 first, uint64 last, bytes32 parent, bytes memory payload)
        internal
        pure
        returns (BatchInbox.BatchHeader memory h)
    {
        h.index = index;
        h.l2FirstBlock = first;
        h.l2LastBlock = last;
        h.parentHash = parent;
        h.txRoot = keccak256(abi.encode("txs", index));
        h.stateRoot = keccak256(abi.encode("state", index));
        h.payloadHash = keccak256(payload);
    }

    function _blobHeader(uint64 index, uint64 first, uint64 last, bytes32 parent, bytes32[] memory blobs)
        internal
        pure
        returns (BatchInbox.BatchHeader memory h)
    {
        h = _header(index, first, last, parent, "in blobs");
        h.blobHashes = blobs;
    }

    function _sign(BatchInbox.BatchHeader memory h) internal view returns (bytes memory) {
        return BlsTestSigner.sign(GROUP_SK, inbox.signingDigest(h));
    }

    function _blobs(uint256 n) internal pure returns (bytes32[] memory b) {
        b = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            b[i] = bytes32(uint256(keccak256(abi.encode("blob", i))) & ~(uint256(0xff) << 248) | (uint256(1) << 248));
        }
    }

    /// A signed header with any one field changed (by any amount) is refused: the signature covers every field.
    function testFuzz_aChangedFieldBreaksTheSignature(uint8 field, uint256 delta) public {
        bytes memory payload = "compressed blocks 1..10";
        BatchInbox.BatchHeader memory h = _header(0, 1, 10, bytes32(0), payload);
        bytes memory sig = _sign(h);
        field = field % 6;
        delta = delta == 0 ? 1 : delta;
        // forge-lint: disable-start(unsafe-typecast) truncation is the point: any different value
        if (field == 0) h.l2FirstBlock = uint64(uint256(h.l2FirstBlock) ^ delta);
        else if (field == 1) h.l2LastBlock = uint64(uint256(h.l2LastBlock) ^ delta);
        // forge-lint: disable-end(unsafe-typecast)
        else if (field == 2) h.parentHash = bytes32(uint256(h.parentHash) ^ delta);
        else if (field == 3) h.txRoot = bytes32(uint256(h.txRoot) ^ delta);
        else if (field == 4) h.stateRoot = bytes32(uint256(h.stateRoot) ^ delta);
        else h.payloadHash = bytes32(uint256(h.payloadHash) ^ delta);
        // A change only above the low 64 bits leaves a block number as it was; nothing changed then.
        if (h.l2FirstBlock == 1 && h.l2LastBlock == 10 && field < 2) return;
        vm.expectRevert();
        inbox.appendBatch(h, payload, sig);
    }

    /// A payload other than the one the header names is refused, whatever it is.
    function testFuzz_anotherPayloadIsRefused(bytes calldata other) public {
        bytes memory payload = "compressed blocks 1..10";
        if (keccak256(other) == keccak256(payload)) return;
        BatchInbox.BatchHeader memory h = _header(0, 1, 10, bytes32(0), payload);
        bytes memory sig = _sign(h);
        vm.expectRevert();
        inbox.appendBatch(h, other, sig);
    }

    function test_appendBatch_calldata_chain() public {
        bytes memory payload = "compressed blocks 1..10";
        BatchInbox.BatchHeader memory h = _header(0, 1, 10, bytes32(0), payload);
        bytes memory sig = _sign(h);
        bytes32 hash = inbox.batchHash(h);
        vm.expectEmit(true, true, true, true, address(inbox));
        emit BatchInbox.BatchAppended(0, hash, address(this), h);
        uint256 g = gasleft();
        inbox.appendBatch(h, payload, sig);
        emit log_named_uint("gas: appendBatch (calldata, first batch, in-call)", g - gasleft());
        assertEq(inbox.batchHashes(0), hash, "stored hash");
        assertEq(inbox.nextIndex(), 1, "next index");
        assertEq(inbox.nextL2Block(), 11, "next block");

        bytes memory payload2 = "compressed blocks 11..12";
        BatchInbox.BatchHeader memory h2 = _header(1, 11, 12, hash, payload2);
        g = gasleft();
        inbox.appendBatch(h2, payload2, _sign(h2));
        emit log_named_uint("gas: appendBatch (calldata, next batch, in-call)", g - gasleft());
        assertEq(inbox.nextIndex(), 2, "next index 2");
    }

    function test_appendBatch_blobs() public {
        bytes32[] memory blobs = _blobs(2);
        BatchInbox.BatchHeader memory h = _blobHeader(0, 1, 5, bytes32(0), blobs);
        bytes memory sig = _sign(h);
        vm.blobhashes(blobs);
        inbox.appendBatch(h, "", sig);
        assertEq(inbox.nextIndex(), 1, "appended");
    }

    function test_appendBatch_rejectsWrongBlobs() public {
        bytes32[] memory blobs = _blobs(2);
        BatchInbox.BatchHeader memory h = _blobHeader(0, 1, 5, bytes32(0), blobs);
        bytes memory sig = _sign(h);
        // A different blob in the transaction.
        bytes32[] memory other = _blobs(3);
        bytes32[] memory swapped = new bytes32[](2);
        (swapped[0], swapped[1]) = (blobs[0], other[2]);
        vm.blobhashes(swapped);
        vm.expectRevert(abi.encodeWithSelector(BatchInbox.BlobHashMismatch.selector, 1, blobs[1], other[2]));
        inbox.appendBatch(h, "", sig);
        // Fewer blobs than the header names.
        bytes32[] memory fewer = new bytes32[](1);
        fewer[0] = blobs[0];
        vm.blobhashes(fewer);
        vm.expectRevert(abi.encodeWithSelector(BatchInbox.BlobHashMismatch.selector, 1, blobs[1], bytes32(0)));
        inbox.appendBatch(h, "", sig);
        // A blob the signed header does not cover.
        bytes32[] memory more = new bytes32[](3);
        (more[0], more[1], more[2]) = (blobs[0], blobs[1], other[2]);
        vm.blobhashes(more);
        vm.expectRevert(abi.encodeWithSelector(BatchInbox.UnexpectedBlob.selector, 2));
        inbox.appendBatch(h, "", sig);
        // Calldata payload together with blobs.
        vm.blobhashes(blobs);
        vm.expectRevert(BatchInbox.PayloadMismatch.selector);
        inbox.appendBatch(h, "x", sig);
    }

    function test_appendBatch_rejectsBadSignatures() public {
        bytes memory payload = "p";
        BatchInbox.BatchHeader memory h = _header(0, 1, 10, bytes32(0), payload);
        bytes memory sig = _sign(h);
        // Signature over a different header (other state root).
        BatchInbox.BatchHeader memory other = _header(0, 1, 10, bytes32(0), payload);
        other.stateRoot = keccak256("forged state");
        vm.expectRevert(BatchInbox.InvalidSignature.selector);
        inbox.appendBatch(other, payload, sig);
        // Signed by a key that is not the group key.
        bytes memory wrongKey = BlsTestSigner.sign(GROUP_SK + 1, inbox.signingDigest(h));
        vm.expectRevert(BatchInbox.InvalidSignature.selector);
        inbox.appendBatch(h, payload, wrongKey);
        // Malformed signatures.
        vm.expectRevert(BatchInbox.InvalidSignature.selector);
        inbox.appendBatch(h, payload, new bytes(128));
        vm.expectRevert(BatchInbox.InvalidSignature.selector);
        inbox.appendBatch(h, payload, new bytes(48));
        bytes memory flipped = abi.encodePacked(sig);
        flipped[100] = bytes1(uint8(flipped[100]) ^ 0x10);
        vm.expectRevert(BatchInbox.InvalidSignature.selector);
        inbox.appendBatch(h, payload, flipped);
        // A signature for another chain.
        vm.chainId(4242);
        vm.expectRevert(BatchInbox.InvalidSignature.selector);
        inbox.appendBatch(h, payload, sig);
    }

    function test_appendBatch_replayRejected() public {
        bytes memory payload = "p";
        BatchInbox.BatchHeader memory h = _header(0, 1, 10, bytes32(0), payload);
        bytes memory sig = _sign(h);
        inbox.appendBatch(h, payload, sig);
        vm.expectRevert(abi.encodeWithSelector(BatchInbox.InvalidIndex.selector, 1, 0));
        inbox.appendBatch(h, payload, sig);
    }

    function test_appendBatch_enforcesChain() public {
        bytes memory payload = "p";
        bytes memory sig;
        BatchInbox.BatchHeader memory h = _header(1, 1, 10, bytes32(0), payload);
        sig = _sign(h);
        vm.expectRevert(abi.encodeWithSelector(BatchInbox.InvalidIndex.selector, 0, 1));
        inbox.appendBatch(h, payload, sig);
        h = _header(0, 2, 10, bytes32(0), payload);
        sig = _sign(h);
        vm.expectRevert(abi.encodeWithSelector(BatchInbox.InvalidL2Range.selector, 1, 2, 10));
        inbox.appendBatch(h, payload, sig);
        h = _header(0, 1, 0, bytes32(0), payload);
        sig = _sign(h);
        vm.expectRevert(abi.encodeWithSelector(BatchInbox.InvalidL2Range.selector, 1, 1, 0));
        inbox.appendBatch(h, payload, sig);
        h = _header(0, 1, 10, keccak256("x"), payload);
        sig = _sign(h);
        vm.expectRevert(abi.encodeWithSelector(BatchInbox.InvalidParentHash.selector, bytes32(0), keccak256("x")));
        inbox.appendBatch(h, payload, sig);

        h = _header(0, 1, 10, bytes32(0), payload);
        inbox.appendBatch(h, payload, _sign(h));
        bytes32 parent = inbox.batchHashes(0);
        BatchInbox.BatchHeader memory h2 = _header(1, 11, 20, keccak256("not the parent"), payload);
        sig = _sign(h2);
        vm.expectRevert(
            abi.encodeWithSelector(BatchInbox.InvalidParentHash.selector, parent, keccak256("not the parent"))
        );
        inbox.appendBatch(h2, payload, sig);
        h2 = _header(1, 10, 20, parent, payload);
        sig = _sign(h2);
        vm.expectRevert(abi.encodeWithSelector(BatchInbox.InvalidL2Range.selector, 11, 10, 20));
        inbox.appendBatch(h2, payload, sig);
    }

    function test_appendBatch_payloadChecks() public {
        BatchInbox.BatchHeader memory h = _header(0, 1, 10, bytes32(0), "p");
        bytes memory sig = _sign(h);
        vm.expectRevert(BatchInbox.PayloadMismatch.selector);
        inbox.appendBatch(h, "q", sig);
        BatchInbox.BatchHeader memory empty = _header(0, 1, 10, bytes32(0), "");
        sig = _sign(empty);
        vm.expectRevert(BatchInbox.EmptyPayload.selector);
        inbox.appendBatch(empty, "", sig);
    }

    function _hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    function test_verifyTx_proofAgainstStoredBatch() public {
        // Three txs: leaves l0, l1, l2; root = H(H(l0, l1), l2).
        bytes32 l0 = inbox.txLeaf(1, 0, keccak256("tx0"));
        bytes32 l1 = inbox.txLeaf(1, 1, keccak256("tx1"));
        bytes32 l2 = inbox.txLeaf(2, 0, keccak256("tx2"));
        bytes32 n01 = _hashPair(l0, l1);
        bytes memory payload = "p";
        BatchInbox.BatchHeader memory h = _header(0, 1, 2, bytes32(0), payload);
        h.txRoot = _hashPair(n01, l2);
        bytes32[] memory proof1 = new bytes32[](2);
        (proof1[0], proof1[1]) = (l0, l2);
        // Not appended yet: false.
        assertTrue(!inbox.verifyTx(h, 1, 1, keccak256("tx1"), proof1), "unappended batch");
        bytes memory sig = _sign(h);
        inbox.appendBatch(h, payload, sig);
        assertTrue(inbox.verifyTx(h, 1, 1, keccak256("tx1"), proof1), "tx1 included");
        bytes32[] memory proof2 = new bytes32[](1);
        proof2[0] = n01;
        assertTrue(inbox.verifyTx(h, 2, 0, keccak256("tx2"), proof2), "tx2 included");
        // Wrong position, wrong tx, block outside the range, or a header that is not the stored one: false.
        assertTrue(!inbox.verifyTx(h, 1, 0, keccak256("tx1"), proof1), "wrong index");
        assertTrue(!inbox.verifyTx(h, 1, 1, keccak256("tx9"), proof1), "wrong tx");
        assertTrue(!inbox.verifyTx(h, 3, 0, keccak256("tx2"), proof2), "block outside the batch");
        BatchInbox.BatchHeader memory forged = h;
        forged.stateRoot = keccak256("other");
        assertTrue(!inbox.verifyTx(forged, 1, 1, keccak256("tx1"), proof1), "header not stored");
    }

    /// Proofs made by the Rust batcher (crates/batcher/tests/solidity_fixture.rs) verify against the root it made.
    function test_verifyTx_rustProofs() public {
        bytes memory payload = "p";
        BatchInbox.BatchHeader memory h = _header(0, 1, 7, bytes32(0), payload);
        h.txRoot = TxProofFixture.ROOT;
        inbox.appendBatch(h, payload, _sign(h));
        for (uint256 i; i < TxProofFixture.COUNT; ++i) {
            (uint64 b, uint32 j, bytes32 txHash) = TxProofFixture.txAt(i);
            bytes32[] memory proof = TxProofFixture.proofAt(i);
            assertTrue(inbox.verifyTx(h, b, j, txHash, proof), "a Rust proof verifies");
            assertTrue(!inbox.verifyTx(h, b, j + 1, txHash, proof), "not at another index");
            // Another transaction's proof does not fit this one.
            bytes32[] memory other = TxProofFixture.proofAt((i + 1) % TxProofFixture.COUNT);
            assertTrue(!inbox.verifyTx(h, b, j, txHash, other), "not with another tx's proof");
        }
    }

    function test_appendBatch_needsGroupKey() public {
        BatchInbox fresh = new BatchInbox(IGroupKeyRegistry(address(new NoKeyRegistry())));
        BatchInbox.BatchHeader memory h = _header(0, 1, 10, bytes32(0), "p");
        vm.expectRevert(BatchInbox.NoGroupKey.selector);
        fresh.appendBatch(h, "p", new bytes(128));
    }
}

contract NoKeyRegistry {
    function groupPublicKey() external pure returns (bytes memory) {
        return "";
    }
}
