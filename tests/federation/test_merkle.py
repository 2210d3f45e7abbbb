"""The Merkle trees of batch signing: every audit path leads to the root, and nothing else does."""

from __future__ import annotations

import hashlib
import os

import pytest

from federation.merkle import ProofError, leaf_hash, root_from_path, tree


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def leaves(count: int) -> list[bytes]:
    return [leaf_hash(os.urandom(32)) for _ in range(count)]


def test_small_trees_have_the_shape_of_rfc_9162() -> None:
    a, b, c, d, e = leaves(5)
    assert tree([a])[0] == a
    assert tree([a, b])[0] == node(a, b)
    assert tree([a, b, c])[0] == node(node(a, b), c)
    assert tree([a, b, c, d, e])[0] == node(node(node(a, b), node(c, d)), e)
    _root, paths = tree([a, b, c])
    assert paths == [[b, c], [a, c], [node(a, b)]]


def test_leaves_and_interior_nodes_cannot_be_confused() -> None:
    digest = os.urandom(32)
    assert leaf_hash(digest) == hashlib.sha256(b"\x00" + digest).digest()
    assert leaf_hash(digest) != hashlib.sha256(digest).digest()


def test_every_path_of_every_size_leads_to_the_root() -> None:
    for size in range(1, 70):
        items = leaves(size)
        root, paths = tree(items)
        for index in range(size):
            assert root_from_path(index, size, items[index], paths[index]) == root, (size, index)


@pytest.mark.parametrize("size", [2, 3, 7, 8, 9, 33, 256, 1000])
def test_a_changed_leaf_sibling_or_position_leads_elsewhere(size: int) -> None:
    items = leaves(size)
    root, paths = tree(items)
    index = size // 2
    path = paths[index]

    def leads_to_root(position: int, claimed_size: int, leaf: bytes, way: list[bytes]) -> bool:
        try:
            return root_from_path(position, claimed_size, leaf, way) == root
        except ProofError:
            return False

    assert leads_to_root(index, size, items[index], path)
    assert not leads_to_root(index, size, leaf_hash(os.urandom(32)), path)
    for level in range(len(path)):
        bent = list(path)
        bent[level] = bytes([bent[level][0] ^ 1]) + bent[level][1:]
        assert not leads_to_root(index, size, items[index], bent)
    assert not leads_to_root((index + 1) % size, size, items[index], path)
    # (A claimed size can lead to the same root: that is why the signature covers size and root.)


def test_impossible_proofs_are_named() -> None:
    items = leaves(8)
    _, paths = tree(items)
    with pytest.raises(ProofError, match="outside a batch of 8"):
        root_from_path(8, 8, items[0], paths[0])
    with pytest.raises(ProofError, match="shorter"):
        root_from_path(0, 8, items[0], paths[0][:-1])
    with pytest.raises(ProofError, match="longer"):
        root_from_path(0, 8, items[0], [*paths[0], paths[0][0]])
    with pytest.raises(ProofError, match="32 bytes"):
        root_from_path(0, 8, items[0], [paths[0][0][:16], *paths[0][1:]])
