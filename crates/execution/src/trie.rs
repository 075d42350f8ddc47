//! An in-memory Merkle-Patricia trie over 32-byte hashed keys (the state and storage tries) that caches every
//! node's RLP reference. An update clears the cache only on the path to the changed leaf, so the root after a
//! block re-hashes O(changed keys x depth) nodes instead of the whole state.
//!
//! Keys all have 64 nibbles, so branch nodes never carry a value.
//!
//! Subtrees are shared (`Arc`, copy-on-write), so cloning a trie is O(1): a block in progress computes its state
//! root on a clone while the committed trie stays as it was.

use alloy_primitives::{keccak256, B256};
use alloy_rlp::{Encodable, EMPTY_STRING_CODE};
use alloy_trie::{
    nodes::{BranchNodeRef, ExtensionNodeRef, LeafNodeRef, RlpNode},
    Nibbles, TrieMask, EMPTY_ROOT_HASH,
};
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
pub struct Trie {
    root: Node,
    len: usize,
}

#[derive(Clone, Debug, Default)]
enum Node {
    #[default]
    Empty,
    Leaf {
        path: Vec<u8>,
        value: Vec<u8>,
        rlp: Option<RlpNode>,
    },
    Extension {
        path: Vec<u8>,
        child: Arc<Node>,
        rlp: Option<RlpNode>,
    },
    Branch {
        children: Arc<[Node; 16]>,
        rlp: Option<RlpNode>,
    },
}

fn nibbles_of(key: &B256) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (i, b) in key.iter().enumerate() {
        out[2 * i] = b >> 4;
        out[2 * i + 1] = b & 0x0f;
    }
    out
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn leaf(path: &[u8], value: Vec<u8>) -> Node {
    Node::Leaf {
        path: path.to_vec(),
        value,
        rlp: None,
    }
}

/// `prefix` followed by `node`, in canonical form (no extension of an extension, no extension of a leaf).
fn prefixed(prefix: Vec<u8>, node: Node) -> Node {
    if prefix.is_empty() {
        return node;
    }
    match node {
        Node::Empty => Node::Empty,
        Node::Leaf { path, value, .. } => Node::Leaf {
            path: [prefix, path].concat(),
            value,
            rlp: None,
        },
        Node::Extension { path, child, .. } => Node::Extension {
            path: [prefix, path].concat(),
            child,
            rlp: None,
        },
        branch @ Node::Branch { .. } => Node::Extension {
            path: prefix,
            child: Arc::new(branch),
            rlp: None,
        },
    }
}

fn insert(node: Node, path: &[u8], value: Vec<u8>, added: &mut bool) -> Node {
    match node {
        Node::Empty => {
            *added = true;
            leaf(path, value)
        }
        Node::Leaf {
            path: lp,
            value: lv,
            rlp,
        } => {
            if lp == path {
                if lv == value {
                    return Node::Leaf {
                        path: lp,
                        value: lv,
                        rlp,
                    };
                }
                return Node::Leaf {
                    path: lp,
                    value,
                    rlp: None,
                };
            }
            *added = true;
            let common = common_prefix(&lp, path);
            let mut children: [Node; 16] = Default::default();
            children[lp[common] as usize] = leaf(&lp[common + 1..], lv);
            children[path[common] as usize] = leaf(&path[common + 1..], value);
            prefixed(
                path[..common].to_vec(),
                Node::Branch {
                    children: Arc::new(children),
                    rlp: None,
                },
            )
        }
        Node::Extension { path: ep, child, .. } => {
            let common = common_prefix(&ep, path);
            if common == ep.len() {
                let new_child = insert(Arc::unwrap_or_clone(child), &path[common..], value, added);
                return Node::Extension {
                    path: ep,
                    child: Arc::new(new_child),
                    rlp: None,
                };
            }
            *added = true;
            let mut children: [Node; 16] = Default::default();
            children[ep[common] as usize] = prefixed(ep[common + 1..].to_vec(), Arc::unwrap_or_clone(child));
            children[path[common] as usize] = leaf(&path[common + 1..], value);
            prefixed(
                path[..common].to_vec(),
                Node::Branch {
                    children: Arc::new(children),
                    rlp: None,
                },
            )
        }
        Node::Branch { mut children, .. } => {
            let i = path[0] as usize;
            let slots = Arc::make_mut(&mut children);
            slots[i] = insert(std::mem::take(&mut slots[i]), &path[1..], value, added);
            Node::Branch { children, rlp: None }
        }
    }
}

/// Removes `path`; returns the new node and whether anything was removed (unchanged subtrees keep their cache).
fn remove(node: Node, path: &[u8]) -> (Node, bool) {
    match node {
        Node::Empty => (Node::Empty, false),
        Node::Leaf { path: ref lp, .. } if lp.as_slice() == path => (Node::Empty, true),
        leaf @ Node::Leaf { .. } => (leaf, false),
        Node::Extension { path: ep, child, rlp } => {
            if !path.starts_with(&ep) {
                return (Node::Extension { path: ep, child, rlp }, false);
            }
            if !matches!(
                &*child,
                Node::Branch { .. } | Node::Extension { .. } | Node::Leaf { .. }
            ) {
                return (Node::Extension { path: ep, child, rlp }, false);
            }
            let (new_child, removed) = remove(Arc::unwrap_or_clone(child), &path[ep.len()..]);
            if !removed {
                return (
                    Node::Extension {
                        path: ep,
                        child: Arc::new(new_child),
                        rlp,
                    },
                    false,
                );
            }
            (prefixed(ep, new_child), true)
        }
        Node::Branch { mut children, rlp } => {
            let i = path[0] as usize;
            if matches!(children[i], Node::Empty) {
                return (Node::Branch { children, rlp }, false);
            }
            let slots = Arc::make_mut(&mut children);
            let (new_child, removed) = remove(std::mem::take(&mut slots[i]), &path[1..]);
            slots[i] = new_child;
            if !removed {
                return (Node::Branch { children, rlp }, false);
            }
            let mut live = children.iter().enumerate().filter(|(_, c)| !matches!(c, Node::Empty));
            let first = live.next().map(|(i, _)| i);
            let more = live.next().is_some();
            match (first, more) {
                (None, _) => (Node::Empty, true),
                (Some(only), false) => {
                    let child = std::mem::take(&mut Arc::make_mut(&mut children)[only]);
                    (prefixed(vec![only as u8], child), true)
                }
                _ => (Node::Branch { children, rlp: None }, true),
            }
        }
    }
}

impl Node {
    fn cached(&self) -> Option<&RlpNode> {
        match self {
            Node::Empty => None,
            Node::Leaf { rlp, .. } | Node::Extension { rlp, .. } | Node::Branch { rlp, .. } => rlp.as_ref(),
        }
    }

    /// The RLP reference of a shared child: read from its cache, or (copy-on-write) computed and cached.
    fn child_rlp(child: &mut Arc<Node>, buf: &mut Vec<u8>) -> RlpNode {
        if let Some(r) = child.cached() {
            return r.clone();
        }
        Arc::make_mut(child).rlp(buf)
    }

    fn rlp(&mut self, buf: &mut Vec<u8>) -> RlpNode {
        match self {
            Node::Empty => RlpNode::from_rlp(&[EMPTY_STRING_CODE]),
            Node::Leaf { path, value, rlp } => {
                if let Some(r) = rlp {
                    return r.clone();
                }
                buf.clear();
                let r = LeafNodeRef::new(&Nibbles::from_nibbles_unchecked(&path[..]), value).rlp(buf);
                *rlp = Some(r.clone());
                r
            }
            Node::Extension { path, child, rlp } => {
                if let Some(r) = rlp {
                    return r.clone();
                }
                let c = Node::child_rlp(child, buf);
                buf.clear();
                let r = ExtensionNodeRef::new(&Nibbles::from_nibbles_unchecked(&path[..]), &c).rlp(buf);
                *rlp = Some(r.clone());
                r
            }
            Node::Branch { children, rlp } => {
                if let Some(r) = rlp {
                    return r.clone();
                }
                let mut stack = Vec::with_capacity(16);
                let mut mask = TrieMask::default();
                let all_cached = children
                    .iter()
                    .all(|c| c.cached().is_some() || matches!(c, Node::Empty));
                if all_cached {
                    for (i, c) in children.iter().enumerate() {
                        if let Some(r) = c.cached() {
                            stack.push(r.clone());
                            mask.set_bit(i as u8);
                        }
                    }
                } else {
                    for (i, c) in Arc::make_mut(children).iter_mut().enumerate() {
                        if !matches!(c, Node::Empty) {
                            stack.push(c.rlp(buf));
                            mask.set_bit(i as u8);
                        }
                    }
                }
                buf.clear();
                let r = BranchNodeRef::new(&stack, mask).rlp(buf);
                *rlp = Some(r.clone());
                r
            }
        }
    }
}

impl Node {
    /// The reference a parent holds to this node: its cache, or computed on a copy (the trie is not changed).
    fn reference(&self) -> RlpNode {
        match self.cached() {
            Some(r) => r.clone(),
            None => self.clone().rlp(&mut Vec::new()),
        }
    }

    /// This node's own RLP encoding (what a proof lists), its children by their references.
    fn encoding(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        match self {
            Node::Empty => buf.push(EMPTY_STRING_CODE),
            Node::Leaf { path, value, .. } => {
                LeafNodeRef::new(&Nibbles::from_nibbles_unchecked(&path[..]), value).encode(&mut buf)
            }
            Node::Extension { path, child, .. } => {
                let c = child.reference();
                ExtensionNodeRef::new(&Nibbles::from_nibbles_unchecked(&path[..]), &c).encode(&mut buf)
            }
            Node::Branch { children, .. } => {
                let mut stack = Vec::with_capacity(16);
                let mut mask = TrieMask::default();
                for (i, c) in children.iter().enumerate() {
                    if !matches!(c, Node::Empty) {
                        stack.push(c.reference());
                        mask.set_bit(i as u8);
                    }
                }
                BranchNodeRef::new(&stack, mask).encode(&mut buf)
            }
        }
        buf
    }
}

impl Trie {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets `key` (already hashed) to `value` (the leaf's bytes, e.g. an RLP-encoded account).
    pub fn insert(&mut self, key: &B256, value: Vec<u8>) {
        let path = nibbles_of(key);
        let mut added = false;
        self.root = insert(std::mem::take(&mut self.root), &path, value, &mut added);
        if added {
            self.len += 1;
        }
    }

    pub fn remove(&mut self, key: &B256) {
        let path = nibbles_of(key);
        let (root, removed) = remove(std::mem::take(&mut self.root), &path);
        self.root = root;
        if removed {
            self.len -= 1;
        }
    }

    /// The Merkle proof of `key` (present or not), as `eth_getProof` gives it: the encodings of the nodes on
    /// the path from the root, the root always, below it only the nodes referenced by hash (shorter ones are
    /// inside their parent's encoding). An empty trie: the empty node alone.
    pub fn proof(&self, key: &B256) -> Vec<Vec<u8>> {
        let path = nibbles_of(key);
        let mut rest = &path[..];
        let mut node = &self.root;
        let mut out = Vec::new();
        if matches!(node, Node::Empty) {
            // The empty node, as anvil and reth answer (geth answers an empty list; both verify).
            return vec![vec![EMPTY_STRING_CODE]];
        }
        loop {
            if matches!(node, Node::Empty) {
                return out;
            }
            let encoded = node.encoding();
            if out.is_empty() || encoded.len() >= 32 {
                out.push(encoded);
            }
            match node {
                Node::Empty | Node::Leaf { .. } => return out,
                Node::Extension { path, child, .. } => match rest.strip_prefix(&path[..]) {
                    Some(r) => {
                        rest = r;
                        node = child;
                    }
                    None => return out,
                },
                Node::Branch { children, .. } => match rest.split_first() {
                    Some((i, r)) => {
                        rest = r;
                        node = &children[usize::from(*i)];
                    }
                    None => return out,
                },
            }
        }
    }

    /// The root hash; hashes only the nodes changed since the last call.
    pub fn root(&mut self) -> B256 {
        if matches!(self.root, Node::Empty) {
            return EMPTY_ROOT_HASH;
        }
        let mut buf = Vec::with_capacity(600);
        let r = self.root.rlp(&mut buf);
        // The root is always referenced by hash, even when its encoding is shorter than 32 bytes.
        r.as_hash().unwrap_or_else(|| keccak256(r.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_trie::HashBuilder;
    use std::collections::BTreeMap;

    fn reference_root(items: &BTreeMap<B256, Vec<u8>>) -> B256 {
        let mut hb = HashBuilder::default();
        for (k, v) in items {
            hb.add_leaf(Nibbles::unpack(k), v);
        }
        hb.root()
    }

    fn key(i: u64) -> B256 {
        keccak256(i.to_be_bytes())
    }

    #[test]
    fn empty_and_single() {
        let mut t = Trie::new();
        assert_eq!(t.root(), EMPTY_ROOT_HASH);
        t.insert(&key(1), vec![0x01]);
        let mut m = BTreeMap::new();
        m.insert(key(1), vec![0x01]);
        assert_eq!(t.root(), reference_root(&m));
        t.remove(&key(1));
        assert_eq!(t.root(), EMPTY_ROOT_HASH);
        assert!(t.is_empty());
    }

    /// Random inserts, updates and removals, root checked against alloy-trie's HashBuilder after every step
    /// batch: the incremental cache must never diverge from a full rebuild.
    #[test]
    fn matches_hash_builder_under_random_updates() {
        let mut t = Trie::new();
        let mut m: BTreeMap<B256, Vec<u8>> = BTreeMap::new();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..60 {
            for _ in 0..(1 + round * 3) {
                let r = next();
                let k = key(r % 400);
                if r % 5 == 0 {
                    t.remove(&k);
                    m.remove(&k);
                } else {
                    let len = 1 + (r >> 32) as usize % 40;
                    let v: Vec<u8> = (0..len).map(|j| (r >> (j % 8)) as u8).collect();
                    t.insert(&k, v.clone());
                    m.insert(k, v);
                }
            }
            assert_eq!(t.root(), reference_root(&m), "round {round}");
            assert_eq!(t.len(), m.len());
        }
        for k in m.keys().cloned().collect::<Vec<_>>() {
            t.remove(&k);
            m.remove(&k);
        }
        assert_eq!(t.root(), EMPTY_ROOT_HASH);
    }

    #[test]
    fn clones_are_independent() {
        let mut t = Trie::new();
        for i in 0..200 {
            t.insert(&key(i), vec![i as u8 + 1]);
        }
        let before = t.root();
        let mut speculative = t.clone();
        for i in 0..50 {
            speculative.insert(&key(i), vec![0xee]);
            speculative.remove(&key(i + 100));
        }
        let after = speculative.root();
        assert_ne!(before, after);
        assert_eq!(t.root(), before, "the original must not see the clone's changes");
        t.remove(&key(7));
        assert_eq!(speculative.root(), after, "nor the clone the original's");
    }

    /// Proofs of keys present and absent verify against the root with alloy-trie's verifier, in tries with
    /// branches, extensions and leaves short enough to sit inside their parent; a wrong value does not.
    #[test]
    fn proofs_verify_for_present_and_absent_keys() {
        use alloy_primitives::Bytes;
        use alloy_trie::proof::verify_proof;
        let check = |t: &mut Trie, m: &BTreeMap<B256, Vec<u8>>, absent: &[B256]| {
            let root = t.root();
            let proof = |k: &B256| -> Vec<Bytes> { t.proof(k).into_iter().map(Bytes::from).collect() };
            for (k, v) in m {
                verify_proof(root, Nibbles::unpack(k), Some(v.clone()), &proof(k)).unwrap();
                let wrong = [v.clone(), vec![0xff]].concat();
                assert!(verify_proof(root, Nibbles::unpack(k), Some(wrong), &proof(k)).is_err());
            }
            for k in absent {
                verify_proof(root, Nibbles::unpack(k), None, &proof(k)).unwrap();
            }
        };
        let mut t = Trie::new();
        assert_eq!(
            t.proof(&key(1)),
            vec![vec![EMPTY_STRING_CODE]],
            "an empty trie: the empty node"
        );
        check(&mut t, &BTreeMap::new(), &[key(1)]);
        let mut m = BTreeMap::new();
        t.insert(&key(1), vec![0x01]);
        m.insert(key(1), vec![0x01]);
        check(&mut t, &m, &[key(2)]);
        for i in 0..300u64 {
            let v = if i % 3 == 0 {
                vec![i as u8 | 1]
            } else {
                vec![i as u8; 40]
            };
            t.insert(&key(i), v.clone());
            m.insert(key(i), v);
        }
        for i in 0..40u8 {
            let mut k = B256::ZERO;
            k[31] = i;
            k[30] = i / 16;
            t.insert(&k, vec![i | 1]);
            m.insert(k, vec![i | 1]);
        }
        let mut near = B256::ZERO;
        near[31] = 0xfe;
        check(&mut t, &m, &[key(1000), key(1001), key(77_777), near]);
    }

    #[test]
    fn keys_sharing_long_prefixes() {
        // Keys that differ only in the last nibbles exercise extensions and their collapse.
        let mut t = Trie::new();
        let mut m = BTreeMap::new();
        for i in 0..40u8 {
            let mut k = B256::ZERO;
            k[31] = i;
            k[30] = i / 16;
            t.insert(&k, vec![i; 3]);
            m.insert(k, vec![i; 3]);
        }
        assert_eq!(t.root(), reference_root(&m));
        for i in (0..40u8).step_by(3) {
            let mut k = B256::ZERO;
            k[31] = i;
            k[30] = i / 16;
            t.remove(&k);
            m.remove(&k);
            assert_eq!(t.root(), reference_root(&m), "after removing {i}");
        }
    }
}
