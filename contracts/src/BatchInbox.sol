// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {BLS} from "./BLS.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IGroupKeyRegistry} from "./IGroupKeyRegistry.sol";

/// @title BatchInbox
/// @notice The L2 chain's commitments on L1: a chain of batch headers, each appended only with a valid threshold
/// signature of the sequencer pool's group key. Anyone may submit; the signature is the authorization.
contract BatchInbox {
    /// @notice A batch of consecutive L2 blocks. The payload (the compressed blocks) travels either in the same
    /// transaction's blobs (blobHashes non-empty, checked against BLOBHASH) or in calldata (blobHashes empty,
    /// payloadHash == keccak256(payload)). In blob mode payloadHash commits to the payload bytes inside the blobs
    /// (checked by replicas, not on chain).
    struct BatchHeader {
        uint64 index;
        uint64 l2FirstBlock;
        uint64 l2LastBlock;
        bytes32 parentHash;
        bytes32 txRoot;
        bytes32 stateRoot;
        bytes32 payloadHash;
        bytes32[] blobHashes;
    }

    bytes32 public constant BATCH_TAG = keccak256("metis-seq/BatchInbox.appendBatch/v1");

    IGroupKeyRegistry public immutable registry;

    /// @notice Index the next batch must carry.
    uint64 public nextIndex;
    /// @notice First L2 block the next batch must start at (block 0 is genesis and is in no batch).
    uint64 public nextL2Block = 1;
    /// @notice Hash of each appended batch header (see batchHash); the next header's parentHash is the last one.
    mapping(uint256 => bytes32) public batchHashes;

    /// @notice Emitted per appended batch with the whole header, its hash, and who submitted it.
    event BatchAppended(
        uint256 indexed index, bytes32 indexed batchHash, address indexed submitter, BatchHeader header
    );

    error InvalidIndex(uint64 expected, uint64 got);
    error InvalidL2Range(uint64 expectedFirst, uint64 first, uint64 last);
    error InvalidParentHash(bytes32 expected, bytes32 got);
    error BlobHashMismatch(uint256 i, bytes32 expected, bytes32 got);
    error UnexpectedBlob(uint256 i);
    error PayloadMismatch();
    error EmptyPayload();
    error NoGroupKey();
    error InvalidSignature();
    error ZeroAddress();

    constructor(IGroupKeyRegistry registry_) {
        if (address(registry_) == address(0)) revert ZeroAddress();
        registry = registry_;
    }

    /// @notice Hash of a header, chain-independent: what parentHash links to and what replicas recompute.
    function batchHash(BatchHeader calldata h) public pure returns (bytes32) {
        return keccak256(
            abi.encode(
                h.index,
                h.l2FirstBlock,
                h.l2LastBlock,
                h.parentHash,
                h.txRoot,
                h.stateRoot,
                h.payloadHash,
                keccak256(abi.encodePacked(h.blobHashes))
            )
        );
    }

    /// @notice The Merkle leaf of an L2 transaction in a batch's txRoot (OpenZeppelin StandardMerkleTree style:
    /// double-hashed, so a leaf can never pass for an inner node).
    function txLeaf(uint64 blockNumber, uint32 txIndex, bytes32 txHash) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(blockNumber, txIndex, txHash))));
    }

    /// @notice Whether the L2 transaction `txHash`, at `txIndex` in block `blockNumber`, is in the appended batch
    /// `h`: `h` must be the header stored at its index, the block in its range, and `proof` a path from the leaf
    /// to `h.txRoot` (sorted-pair keccak, as OpenZeppelin's MerkleProof).
    function verifyTx(
        BatchHeader calldata h,
        uint64 blockNumber,
        uint32 txIndex,
        bytes32 txHash,
        bytes32[] calldata proof
    ) external view returns (bool) {
        if (h.index >= nextIndex || batchHashes[h.index] != batchHash(h)) return false;
        if (blockNumber < h.l2FirstBlock || blockNumber > h.l2LastBlock) return false;
        return MerkleProof.verifyCalldata(proof, h.txRoot, txLeaf(blockNumber, txIndex, txHash));
    }

    /// @notice The digest the group key signs for a header (framed by BLS.signingMessage): the header hash bound
    /// to this chain and this contract.
    function signingDigest(BatchHeader calldata h) public view returns (bytes32) {
        return keccak256(abi.encode(BATCH_TAG, block.chainid, address(this), batchHash(h)));
    }

    /// @notice Appends the next batch. `payload` is the batch data in calldata mode and must be empty in blob mode.
    function appendBatch(BatchHeader calldata header, bytes calldata payload, bytes calldata signature) external {
        uint64 index = nextIndex;
        if (header.index != index) revert InvalidIndex(index, header.index);
        uint64 first = nextL2Block;
        if (header.l2FirstBlock != first || header.l2LastBlock < first) {
            revert InvalidL2Range(first, header.l2FirstBlock, header.l2LastBlock);
        }
        bytes32 parent = index == 0 ? bytes32(0) : batchHashes[index - 1];
        if (header.parentHash != parent) revert InvalidParentHash(parent, header.parentHash);

        uint256 nBlobs = header.blobHashes.length;
        if (nBlobs > 0) {
            if (payload.length != 0) revert PayloadMismatch();
            for (uint256 i; i < nBlobs; ++i) {
                bytes32 actual = blobhash(i);
                if (actual != header.blobHashes[i]) revert BlobHashMismatch(i, header.blobHashes[i], actual);
            }
            // Every blob of the transaction must be committed to by the signed header.
            if (blobhash(nBlobs) != bytes32(0)) revert UnexpectedBlob(nBlobs);
        } else {
            if (payload.length == 0) revert EmptyPayload();
            if (keccak256(payload) != header.payloadHash) revert PayloadMismatch();
        }

        bytes32 hash = batchHash(header);
        bytes memory pk = registry.groupPublicKey();
        if (pk.length == 0) revert NoGroupKey();
        bytes32 digest = keccak256(abi.encode(BATCH_TAG, block.chainid, address(this), hash));
        if (!BLS.verifyDigest(pk, signature, digest)) revert InvalidSignature();

        batchHashes[index] = hash;
        nextIndex = index + 1;
        nextL2Block = header.l2LastBlock + 1;
        emit BatchAppended(index, hash, msg.sender, header);
    }
}
