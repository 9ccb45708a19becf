"""RFC 9162 Merkle tree math: the RFC 6962 reference vectors, a naive oracle, and properties."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.audit.tree import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    fold_right,
    inclusion_proof,
    leaf_hash,
    memory_subtree,
    node_hash,
    root,
    split_range,
    verify_consistency,
    verify_inclusion,
)
from exchange.errors import SignatureError

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "audit" / "rfc6962-merkle.json").read_text()
)
LEAVES = [bytes.fromhex(x) for x in VECTORS["leaves_hex"]]
ROOTS = [bytes.fromhex(x) for x in VECTORS["roots_hex_by_size"]]
SIZE_8_ROOT = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


# -- an independent oracle: the RFC's recursive definitions, written as literally as possible


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(entries: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 section 2.1.1, over the entries themselves."""
    n = len(entries)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + entries[0])
    k = _k(n)
    return _sha(b"\x01" + mth(entries[:k]) + mth(entries[k:]))


def path(m: int, entries: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of section 2.1.3.1."""
    n = len(entries)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, entries[:k]), mth(entries[k:])]
    return [*path(m - k, entries[k:]), mth(entries[:k])]


def subproof(m: int, entries: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of section 2.1.4.1."""
    n = len(entries)
    if m == n:
        return [] if b else [mth(entries)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, entries[:k], b), mth(entries[k:])]
    return [*subproof(m - k, entries[k:], False), mth(entries[:k])]


def entries_for(n: int) -> list[bytes]:
    return [b"entry %d" % i for i in range(n)]


def hashes_of(entries: list[bytes]) -> list[bytes]:
    return [leaf_hash(e) for e in entries]


# -- reference vectors -------------------------------------------------------------------


def test_size_8_root_is_the_published_one() -> None:
    assert root(hashes_of(LEAVES)).hex() == SIZE_8_ROOT


@pytest.mark.parametrize("size", range(9))
def test_roots_of_every_size_match_the_vectors(size: int) -> None:
    assert root(hashes_of(LEAVES[:size])) == ROOTS[size]
    assert mth(LEAVES[:size]) == ROOTS[size]  # the oracle agrees with the vectors too


def test_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == VECTORS["roots_hex_by_size"][0]
    assert Frontier().root() == EMPTY_ROOT


def test_every_complete_subtree_matches_the_vectors() -> None:
    seen: dict[tuple[int, int], bytes] = {}
    frontier = Frontier()
    for h in hashes_of(LEAVES):
        frontier.append(h, lambda level, index, digest: seen.__setitem__((level, index), digest))
    for level, row in enumerate(VECTORS["node_hashes_hex_by_level"]):
        for index, expected in enumerate(row):
            if level == 0:
                assert leaf_hash(LEAVES[index]).hex() == expected
            else:
                assert seen[level, index].hex() == expected
    assert len(seen) == 4 + 2 + 1


def test_frontier_holds_the_reference_compact_ranges() -> None:
    nodes = [[bytes.fromhex(h) for h in row] for row in VECTORS["node_hashes_hex_by_level"]]
    expected = {  # transparency-dev/merkle testonly.CompactTrees
        3: [nodes[1][0], nodes[0][2]],
        6: [nodes[2][0], nodes[1][2]],
        7: [nodes[2][0], nodes[1][2], nodes[0][6]],
        8: [nodes[3][0]],
    }
    frontier = Frontier()
    for size, h in enumerate(hashes_of(LEAVES), start=1):
        frontier.append(h)
        if size in expected:
            assert list(frontier.hashes) == expected[size]


@pytest.mark.parametrize(
    "vector", VECTORS["inclusion_proofs"], ids=lambda v: f"leaf{v['index']}-of-{v['size']}"
)
def test_inclusion_proofs_match_the_vectors(vector: dict[str, Any]) -> None:
    index, size = vector["index"], vector["size"]
    expected = [bytes.fromhex(h) for h in vector["proof_hex"]]
    subtree = memory_subtree(hashes_of(LEAVES[:size]))
    assert inclusion_proof(index, size, subtree) == expected
    verify_inclusion(index, size, leaf_hash(LEAVES[index]), expected, ROOTS[size])


@pytest.mark.parametrize(
    "vector", VECTORS["consistency_proofs"], ids=lambda v: f"{v['old_size']}-to-{v['new_size']}"
)
def test_consistency_proofs_match_the_vectors(vector: dict[str, Any]) -> None:
    old, new = vector["old_size"], vector["new_size"]
    expected = [bytes.fromhex(h) for h in vector["proof_hex"]]
    assert consistency_proof(old, new, memory_subtree(hashes_of(LEAVES[:new]))) == expected
    verify_consistency(old, new, expected, ROOTS[old], ROOTS[new])


# -- the oracle, exhaustively for small trees ------------------------------------------------


def test_every_proof_of_trees_up_to_40_leaves_equals_the_rfc_definition() -> None:
    entries = entries_for(40)
    leaf_hashes = hashes_of(entries)
    subtree = memory_subtree(leaf_hashes)
    for n in range(1, 41):
        assert root(leaf_hashes[:n]) == mth(entries[:n])
        for m in range(n):
            assert inclusion_proof(m, n, subtree) == path(m, entries[:n])
        for m in range(1, n + 1):
            assert consistency_proof(m, n, subtree) == subproof(m, entries[:n], True)


# -- refusals (after the probes of transparency-dev/merkle proof/verify_test.go) -----------------


def _inclusion_corruptions(
    index: int, size: int, leaf: bytes, proof: list[bytes], good_root: bytes
) -> list[tuple[str, Callable[[], None]]]:
    some = bytes.fromhex("abacaba0" + "00" * 24 + "0060061e")
    cases: list[tuple[str, Callable[[], None]]] = [
        ("index-1", lambda: verify_inclusion(index - 1, size, leaf, proof, good_root)),
        ("index+1", lambda: verify_inclusion(index + 1, size, leaf, proof, good_root)),
        ("index^2", lambda: verify_inclusion(index ^ 2, size, leaf, proof, good_root)),
        ("size*2", lambda: verify_inclusion(index, size * 2, leaf, proof, good_root)),
        ("size/2", lambda: verify_inclusion(index, size // 2, leaf, proof, good_root)),
        ("wrong leaf", lambda: verify_inclusion(index, size, some, proof, good_root)),
        ("empty root", lambda: verify_inclusion(index, size, leaf, proof, EMPTY_ROOT)),
        ("random root", lambda: verify_inclusion(index, size, leaf, proof, some)),
        ("short leaf", lambda: verify_inclusion(index, size, b"WrongLeaf", proof, good_root)),
        ("trailing root", lambda: verify_inclusion(index, size, leaf, [*proof, good_root],
                                                   good_root)),
        ("preceding root", lambda: verify_inclusion(index, size, leaf, [good_root, *proof],
                                                    good_root)),
        ("trailing garbage", lambda: verify_inclusion(index, size, leaf, [*proof, b""],
                                                      good_root)),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        cases.append((f"proof[{i}] bit", lambda p=flipped: verify_inclusion(  # type: ignore[misc]
            index, size, leaf, p, good_root)))
    if proof:
        cases.append(("removed", lambda: verify_inclusion(index, size, leaf, proof[:-1],
                                                          good_root)))
    if len(proof) > 1:
        cases.append(("inserted", lambda: verify_inclusion(
            index, size, leaf, [proof[0], some, *proof[1:]], good_root)))
    return cases


@pytest.mark.parametrize("vector", VECTORS["inclusion_proofs"][1:],
                         ids=lambda v: f"leaf{v['index']}-of-{v['size']}")
def test_corrupted_inclusion_proofs_fail(vector: dict[str, Any]) -> None:
    index, size = vector["index"], vector["size"]
    proof = [bytes.fromhex(h) for h in vector["proof_hex"]]
    for name, attempt in _inclusion_corruptions(
        index, size, leaf_hash(LEAVES[index]), proof, ROOTS[size]
    ):
        try:
            attempt()
        except SignatureError:
            continue
        pytest.fail(f"a corrupted inclusion proof verified: {name}")


@pytest.mark.parametrize("vector", VECTORS["consistency_proofs"][1:],
                         ids=lambda v: f"{v['old_size']}-to-{v['new_size']}")
def test_corrupted_consistency_proofs_fail(vector: dict[str, Any]) -> None:
    old, new = vector["old_size"], vector["new_size"]
    proof = [bytes.fromhex(h) for h in vector["proof_hex"]]
    r1, r2 = ROOTS[old], ROOTS[new]
    attempts: list[tuple[int, int, list[bytes], bytes, bytes]] = [
        (old - 1, new, proof, r1, r2),
        (old + 1, new, proof, r1, r2),
        (old ^ 2, new, proof, r1, r2),
        (old, new * 2, proof, r1, r2),
        (old, new // 2, proof, r1, r2),
        (old, new, proof, b"\x00" * 32, r2),
        (old, new, proof, r1, b"\x00" * 32),
        (old, new, proof, r2, r1),
        (old, new, [], r1, r2),
        (old, new, [*proof, r1], r1, r2),
        (old, new, [*proof, r2], r1, r2),
        (old, new, [r1, *proof], r1, r2),
        (old, new, [r2, *proof], r1, r2),
        (old, new, [proof[0], *proof], r1, r2),
        (old, new, proof[:-1], r1, r2),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        attempts.append((old, new, flipped, r1, r2))
    for attempt in attempts:
        with pytest.raises(SignatureError):
            verify_consistency(*attempt)


@pytest.mark.parametrize(
    ("old", "new", "r1", "r2", "proof"),
    [
        pytest.param(0, 0, EMPTY_ROOT, ROOTS[1], [], id="same-size-different-roots"),
        pytest.param(1, 1, ROOTS[1], ROOTS[1], [EMPTY_ROOT], id="same-size-non-empty-proof"),
        pytest.param(0, 1, EMPTY_ROOT, ROOTS[1], [EMPTY_ROOT], id="from-empty-non-empty-proof"),
        pytest.param(1, 0, ROOTS[1], EMPTY_ROOT, [], id="backwards"),
        pytest.param(2, 1, ROOTS[2], ROOTS[1], [], id="backwards-2"),
        pytest.param(1, 2, ROOTS[1], ROOTS[2], [], id="empty-proof"),
    ],
)
def test_consistency_edge_refusals(
    old: int, new: int, r1: bytes, r2: bytes, proof: list[bytes]
) -> None:
    with pytest.raises(SignatureError):
        verify_consistency(old, new, proof, r1, r2)


def test_consistency_edges_that_hold() -> None:
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(0, 5, [], EMPTY_ROOT, ROOTS[5])
    verify_consistency(3, 3, [], ROOTS[3], ROOTS[3])


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (5, 3), (-1, 4)])
def test_inclusion_proof_of_a_leaf_outside_the_tree_is_refused(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(index, size, memory_subtree(hashes_of(LEAVES)))
    with pytest.raises(SignatureError):
        verify_inclusion(index, size, leaf_hash(b""), [], ROOTS[1])


def test_single_leaf_tree() -> None:
    h = leaf_hash(b"data")
    verify_inclusion(0, 1, h, [], h)
    with pytest.raises(SignatureError):
        verify_inclusion(0, 1, h, [], leaf_hash(b"other"))


# -- helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "pieces"),
    [
        (0, 1, [(0, 0)]),
        (0, 8, [(3, 0)]),
        (0, 7, [(2, 0), (1, 2), (0, 6)]),
        (8, 13, [(2, 2), (0, 12)]),
        (16, 32, [(4, 1)]),
    ],
)
def test_split_range(start: int, end: int, pieces: list[tuple[int, int]]) -> None:
    assert split_range(start, end) == pieces


@pytest.mark.parametrize(("start", "end"), [(1, 3), (4, 9), (3, 3), (2, 1), (-2, 0)])
def test_split_range_refuses_ranges_that_are_not_nodes(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="not"):
        split_range(start, end)


def test_node_hash_domain_separation() -> None:
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(left, right) != leaf_hash(left + right)
    assert fold_right([left, right]) == node_hash(left, right)
    with pytest.raises(ValueError, match="nothing"):
        fold_right([])


def test_frontier_round_trips_through_bytes() -> None:
    frontier = Frontier()
    for h in hashes_of(entries_for(13)):
        frontier.append(h)
    again = Frontier.from_bytes(13, frontier.to_bytes())
    assert again.root() == frontier.root() == root(hashes_of(entries_for(13)))
    assert frontier.ranges() == [(0, 8), (8, 12), (12, 13)]
    again.append(leaf_hash(b"x"))
    assert again.size == 14
    assert frontier.size == 13


@pytest.mark.parametrize(("size", "packed"), [(3, b"\x00" * 32), (1, b"\x00" * 31), (-1, b"")])
def test_frontier_refuses_a_state_that_does_not_fit_its_size(size: int, packed: bytes) -> None:
    with pytest.raises(ValueError, match=r"edge hash|multiple of 32"):
        Frontier.from_bytes(size, packed)


# -- properties ---------------------------------------------------------------------------

SIZES = st.integers(min_value=1, max_value=300)


@settings(max_examples=150, deadline=None)
@given(size=SIZES, data=st.data())
def test_every_inclusion_proof_verifies_and_fails_for_a_wrong_leaf_index_or_root(
    size: int, data: st.DataObject
) -> None:
    leaf_hashes = hashes_of(entries_for(size))
    good_root = root(leaf_hashes)
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(index, size, memory_subtree(leaf_hashes))
    verify_inclusion(index, size, leaf_hashes[index], proof, good_root)
    with pytest.raises(SignatureError):
        verify_inclusion(index, size, leaf_hash(b"not an entry"), proof, good_root)
    with pytest.raises(SignatureError):
        verify_inclusion(index, size, leaf_hashes[index], proof, leaf_hash(b"root"))
    if size > 1:
        other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="other")
        with pytest.raises(SignatureError):
            verify_inclusion(other, size, leaf_hashes[index], proof, good_root)
        with pytest.raises(SignatureError):
            verify_inclusion(index, size, leaf_hashes[other], proof, good_root)


@settings(max_examples=150, deadline=None)
@given(new=SIZES, data=st.data())
def test_every_consistency_proof_verifies_and_fails_when_an_earlier_leaf_changes(
    new: int, data: st.DataObject
) -> None:
    leaf_hashes = hashes_of(entries_for(new))
    old = data.draw(st.integers(1, new), label="old")
    proof = consistency_proof(old, new, memory_subtree(leaf_hashes))
    old_root, new_root = root(leaf_hashes[:old]), root(leaf_hashes)
    verify_consistency(old, new, proof, old_root, new_root)
    changed = data.draw(st.integers(0, old - 1), label="changed")
    rewritten = list(leaf_hashes)
    rewritten[changed] = leaf_hash(b"rewritten history")
    # A log that rewrote an earlier leaf: its proof and new root no longer match the old root.
    forged = consistency_proof(old, new, memory_subtree(rewritten))
    with pytest.raises(SignatureError):
        verify_consistency(old, new, forged, old_root, root(rewritten))
    if old < new:
        with pytest.raises(SignatureError):
            verify_consistency(old, new, proof, root(rewritten[:old]), new_root)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=200))
def test_frontier_root_equals_the_rfc_definition(entries: list[bytes]) -> None:
    frontier = Frontier()
    for i, e in enumerate(entries):
        frontier.append(leaf_hash(e))
        assert len(frontier.hashes) == (i + 1).bit_count()
    assert frontier.root() == mth(entries)


def test_a_proof_of_the_wrong_length_for_the_claimed_sizes_never_verifies() -> None:
    """The ``sn`` checks of sections 2.1.3.2 and 2.1.4.2 tie a path's length to the sizes.

    (A path of the right length can fit several sizes; the root, taken from a checkpoint
    signed together with its size, is what ties it to one tree.)
    """
    leaf_hashes = hashes_of(entries_for(24))
    subtree = memory_subtree(leaf_hashes)
    roots = [root(leaf_hashes[:n]) for n in range(25)]
    tried = 0
    for n in range(1, 17):
        for index in range(n):
            proof = inclusion_proof(index, n, subtree)
            for other in range(index + 1, 25):
                if len(inclusion_proof(index, other, subtree)) != len(proof):
                    tried += 1
                    with pytest.raises(SignatureError, match="tree is high"):
                        verify_inclusion(index, other, leaf_hashes[index], proof, roots[n])
        for old in range(1, n):
            proof = consistency_proof(old, n, subtree)
            for other in range(old + 1, 25):
                if len(consistency_proof(old, other, subtree)) != len(proof):
                    tried += 1
                    with pytest.raises(SignatureError):
                        verify_consistency(old, other, proof, roots[old], roots[n])
    assert tried > 1000
