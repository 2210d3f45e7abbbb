"""Merkle trees for batch signing: one signature over many envelopes, each verifiable alone.

The tree is the one of RFC 9162 §2.1.1 (Certificate Transparency): for n leaves, the left
subtree holds the largest power of two below n, the right one the rest. Leaves are
SHA-256(0x00 || digest), interior nodes SHA-256(0x01 || left || right), so that a leaf can
never pass for an interior node. An audit path lists the sibling hashes from a leaf up to the
root; `root_from_path` is the verification of RFC 9162 §2.1.3.2, which also checks that the
path has exactly the length that the leaf's index and the tree's size call for.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha256

HASH_BYTES = 32
# A batch larger than this is refused when verifying: the sender never makes one (it seals in
# groups of a few hundred), and a bound keeps a forged path from costing much.
MAX_SIZE = 1 << 16


class ProofError(ValueError):
    """An audit path that does not fit its index and tree size."""


def leaf_hash(digest: bytes) -> bytes:
    """The leaf of an item whose SHA-256 digest is `digest`."""
    return sha256(b"\x00" + digest).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def tree(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root over `leaves` (leaf hashes) and every leaf's audit path, bottom first."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    paths: list[list[bytes]] = [[] for _ in leaves]

    def build(low: int, high: int) -> bytes:
        if high - low == 1:
            return leaves[low]
        split = 1 << ((high - low - 1).bit_length() - 1)  # largest power of two below the count
        left = build(low, low + split)
        right = build(low + split, high)
        for index in range(low, low + split):
            paths[index].append(right)
        for index in range(low + split, high):
            paths[index].append(left)
        return _node(left, right)

    return build(0, len(leaves)), paths


def root_from_path(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes:
    """The root that `path` leads to from `leaf` at `index` of a tree of `size` leaves.

    Raises ProofError when the index, size or path length cannot belong together; a wrong
    sibling hash gives a different root, which the signature check then refuses.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is outside a batch of {size}")
    if size > MAX_SIZE:
        raise ProofError(f"a batch of {size} is larger than the {MAX_SIZE} any node makes")
    position, last, root = index, size - 1, leaf
    for sibling in path:
        if len(sibling) != HASH_BYTES:
            raise ProofError("a hash of the audit path is not 32 bytes long")
        if last == 0:
            raise ProofError("the audit path is longer than the batch allows")
        if position & 1 or position == last:
            root = _node(sibling, root)
            if not position & 1:
                while position and not position & 1:
                    position >>= 1
                    last >>= 1
        else:
            root = _node(root, sibling)
        position >>= 1
        last >>= 1
    if last != 0:
        raise ProofError("the audit path is shorter than the batch needs")
    return root
