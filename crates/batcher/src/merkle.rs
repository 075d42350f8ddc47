//! The transaction Merkle tree of a batch and inclusion proofs.

use alloy_primitives::{keccak256, B256};
use alloy_sol_types::SolValue;

/// The leaf of transaction `tx_hash` at `index` in L2 block `block` (BatchInbox.txLeaf).
pub fn tx_leaf(block: u64, index: u32, tx_hash: B256) -> B256 {
    keccak256(keccak256((block, index, tx_hash).abi_encode()))
}

/// Inner node: keccak256 of the two children in ascending order (OpenZeppelin's commutative hash).
pub fn hash_pair(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

/// Verifies that `leaf` is under `root` along `proof` (the siblings from the leaf up).
pub fn verify(root: B256, leaf: B256, proof: &[B256]) -> bool {
    proof.iter().fold(leaf, |acc, sibling| hash_pair(acc, *sibling)) == root
}

/// A batch's transaction tree. Levels are built pairwise; an odd node at the end of a level moves up unchanged.
/// A batch without transactions (only empty blocks) has the zero root.
#[derive(Clone, Debug)]
pub struct TxTree {
    levels: Vec<Vec<B256>>,
}

impl TxTree {
    /// Builds the tree over the leaves in batch order.
    pub fn new(leaves: Vec<B256>) -> Self {
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let prev = levels.last().map(Vec::as_slice).unwrap_or_default();
            let next: Vec<B256> = prev
                .chunks(2)
                .map(|c| if c.len() == 2 { hash_pair(c[0], c[1]) } else { c[0] })
                .collect();
            levels.push(next);
        }
        Self { levels }
    }

    pub fn root(&self) -> B256 {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or(B256::ZERO)
    }

    pub fn len(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The proof for leaf `i` (siblings from the bottom up), `None` if there is no such leaf.
    pub fn proof(&self, mut i: usize) -> Option<Vec<B256>> {
        if i >= self.len() {
            return None;
        }
        let mut proof = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if sibling < level.len() {
                proof.push(level[sibling]);
            }
            i /= 2;
        }
        Some(proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<B256> {
        (0..n)
            .map(|i| tx_leaf(1 + i as u64 / 3, (i % 3) as u32, keccak256(i.to_be_bytes())))
            .collect()
    }

    #[test]
    fn every_leaf_proves_for_every_size() {
        for n in 1..=33 {
            let l = leaves(n);
            let t = TxTree::new(l.clone());
            for (i, leaf) in l.iter().enumerate() {
                let p = t.proof(i).unwrap();
                assert!(verify(t.root(), *leaf, &p), "n={n} i={i}");
                assert!(p.len() <= 6);
            }
            assert!(t.proof(n).is_none());
        }
    }

    #[test]
    fn wrong_leaf_or_path_fails() {
        let l = leaves(10);
        let t = TxTree::new(l.clone());
        let p = t.proof(4).unwrap();
        assert!(!verify(t.root(), l[5], &p));
        let mut bad = p.clone();
        bad[0] = B256::repeat_byte(1);
        assert!(!verify(t.root(), l[4], &bad));
        assert!(!verify(t.root(), l[4], &p[1..]));
    }

    #[test]
    fn small_trees_match_the_definition() {
        assert_eq!(TxTree::new(vec![]).root(), B256::ZERO);
        let l = leaves(3);
        assert_eq!(TxTree::new(l.clone()).root(), hash_pair(hash_pair(l[0], l[1]), l[2]));
        assert_eq!(TxTree::new(vec![l[0]]).root(), l[0]);
    }
}
