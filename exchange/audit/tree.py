"""RFC 9162 Merkle tree math: hashes, roots, inclusion and consistency proofs, the frontier.

Pure code over SHA-256, no I/O. The tree is the one of Certificate Transparency 2.0
(RFC 9162 section 2.1, unchanged from RFC 6962 section 2.1 for SHA-256):

* a leaf hashes as ``SHA-256(0x00 || data)`` and an interior node as
  ``SHA-256(0x01 || left || right)`` (section 2.1.1), so no leaf can pass for a node;
* the root of ``n`` leaves, ``MTH(D[n])``, splits them at ``k``, the largest power of two
  smaller than ``n``; the empty tree's root is ``SHA-256()`` (section 2.1.1);
* an inclusion proof is ``PATH(m, D[n])`` (section 2.1.3.1), checked by the algorithm of
  section 2.1.3.2 (:func:`verify_inclusion`);
* a consistency proof is ``PROOF(m, D[n])`` (section 2.1.4.1), checked by the algorithm
  of section 2.1.4.2 (:func:`verify_consistency`).

Proof generation asks a callback for the hash of a subtree, so the same code serves an
in-memory list (:func:`memory_subtree`) and the database (:mod:`exchange.audit.ledger`).
Every subtree a proof needs is a node of the tree: ``[start, end)`` with ``start`` a
multiple of a power of two that is at least ``end - start``. :func:`split_range` breaks
such a range into complete (perfect) subtrees, whose hashes folded from the right give
the node's hash.

:class:`Frontier` is the right edge of the tree: the hashes of the complete subtrees that
make up ``[0, n)``, one per set bit of ``n``. Appending a leaf costs O(1) hashes amortised
and the root O(log n), in O(log n) memory, which is what keeps the ledger's appends cheap
and its full verification flat in memory.

Errors: :class:`~exchange.errors.SignatureError` when a proof does not verify (the reason
says why); ``ValueError`` for impossible arguments from the caller (a leaf index outside
the tree, a range that is not a node).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from exchange.errors import SignatureError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "NodeCallback",
    "SubtreeHash",
    "consistency_proof",
    "fold_right",
    "inclusion_proof",
    "leaf_hash",
    "memory_subtree",
    "node_hash",
    "root",
    "split_range",
    "verify_consistency",
    "verify_inclusion",
]

#: Bytes in a SHA-256 hash, the only hash of the audit log.
HASH_SIZE: Final = 32

#: ``MTH({}) = SHA-256()``, the root of the empty tree (RFC 9162 section 2.1.1).
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"

#: ``subtree(start, end)`` -> the hash of the tree node covering leaves ``[start, end)``.
SubtreeHash = Callable[[int, int], bytes]

#: ``on_node(level, index, hash)``: a complete subtree of ``2**level`` leaves, the
#: ``index``-th at its level, has just been formed.
NodeCallback = Callable[[int, int, bytes], None]


def leaf_hash(data: bytes) -> bytes:
    """The hash of a leaf: ``SHA-256(0x00 || data)`` (RFC 9162 section 2.1.1).

    Args:
        data: The leaf's entry (for the audit log, a record's canonical bytes).

    Returns:
        32 bytes.
    """
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: ``SHA-256(0x01 || left || right)`` (section 2.1.1).

    Args:
        left: The left child's hash.
        right: The right child's hash.

    Returns:
        32 bytes.
    """
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split_point(n: int) -> int:
    """``k``, the largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """Combine the hashes of adjacent complete subtrees, left to right, into one node.

    ``fold_right([a, b, c]) == node_hash(a, node_hash(b, c))``: the shape of ``MTH`` when
    the subtrees are the pieces :func:`split_range` (or :class:`Frontier`) produce.

    Args:
        hashes: At least one hash, leftmost subtree first.

    Returns:
        The hash of the node they make up.

    Raises:
        ValueError: ``hashes`` is empty.
    """
    if not hashes:
        raise ValueError("nothing to fold")
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def split_range(start: int, end: int) -> list[tuple[int, int]]:
    """The complete subtrees that make up the tree node covering leaves ``[start, end)``.

    Args:
        start: The first leaf, a multiple of the smallest power of two that is at least
            ``end - start`` (true of every node of an RFC 9162 tree).
        end: One past the last leaf; greater than ``start``.

    Returns:
        ``(level, index)`` pairs, left to right: the subtree of ``2**level`` leaves
        starting at leaf ``index * 2**level``. Their hashes, folded with
        :func:`fold_right`, give the node's hash.

    Raises:
        ValueError: ``[start, end)`` is empty or is not a node of any tree.
    """
    width = end - start
    if start < 0 or width <= 0:
        raise ValueError(f"[{start}, {end}) is not a range of leaves")
    if start % (1 << (width - 1).bit_length()):
        raise ValueError(f"[{start}, {end}) is not a node of an RFC 9162 tree")
    pieces = []
    position = start
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            pieces.append((level, position >> level))
            position += 1 << level
    return pieces


def root(leaf_hashes: Iterable[bytes]) -> bytes:
    """``MTH`` of the leaves whose hashes are given (RFC 9162 section 2.1.1).

    Args:
        leaf_hashes: The leaf hashes (:func:`leaf_hash` of each entry), in order; any
            iterable, consumed once in O(log n) memory.

    Returns:
        The root hash; :data:`EMPTY_ROOT` for no leaves.
    """
    frontier = Frontier()
    for h in leaf_hashes:
        frontier.append(h)
    return frontier.root()


def memory_subtree(leaf_hashes: Sequence[bytes]) -> SubtreeHash:
    """A :data:`SubtreeHash` over leaf hashes held in memory (tests, small trees).

    Args:
        leaf_hashes: All leaf hashes of the tree, in order.

    Returns:
        A callback computing the hash of ``[start, end)`` in O(end - start).
    """

    def subtree(start: int, end: int) -> bytes:
        return root(leaf_hashes[start:end])

    return subtree


def inclusion_proof(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """``PATH(index, D[size])``: the audit path of one leaf (RFC 9162 section 2.1.3.1).

    Args:
        index: The leaf, ``0 <= index < size``.
        size: The tree size the proof is for.
        subtree: Gives the hash of any node of that tree.

    Returns:
        The sibling hashes from the leaf up to the root (empty for a one-leaf tree).

    Raises:
        ValueError: ``index`` is not a leaf of a tree of ``size`` leaves.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    path = []
    start, end = 0, size
    while end - start > 1:
        k = _split_point(end - start)
        if index < start + k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, subtree: SubtreeHash) -> list[bytes]:
    """``PROOF(old_size, D[new_size])`` (RFC 9162 section 2.1.4.1).

    Args:
        old_size: The earlier tree size, ``0 <= old_size <= new_size``.
        new_size: The later tree size.
        subtree: Gives the hash of any node of the later tree.

    Returns:
        The proof's hashes; empty when ``old_size`` is 0 or equals ``new_size``.

    Raises:
        ValueError: ``old_size`` is negative or larger than ``new_size``.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    path = []
    start, end, m = 0, new_size, old_size
    old_root_is_a_node = True  # SUBPROOF's b: the old root is itself a node of the new tree
    while m != end - start:
        k = _split_point(end - start)
        if m <= k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start += k
            m -= k
            old_root_is_a_node = False
    if not old_root_is_a_node:
        path.append(subtree(start, end))
    path.reverse()
    return path


def _check_hashes(what: str, hashes: Iterable[bytes]) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise SignatureError(f"{what}: a hash is {len(h)} bytes, not {HASH_SIZE}")


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """Check an inclusion proof (RFC 9162 section 2.1.3.2).

    Args:
        index: The leaf's index.
        size: The tree size the proof is for.
        leaf: The leaf's hash (:func:`leaf_hash` of the entry).
        proof: The audit path, as :func:`inclusion_proof` returns it.
        expected_root: The root of the tree of ``size`` leaves (from a checkpoint).

    Raises:
        SignatureError: The proof does not lead from the leaf to the root: wrong leaf,
            index, size, root or path, or a path of the wrong length.
    """
    _check_hashes("inclusion proof", [leaf, expected_root, *proof])
    if not 0 <= index < size:
        raise SignatureError(f"inclusion proof: leaf {index} is not in a tree of {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise SignatureError("inclusion proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise SignatureError("inclusion proof is shorter than the tree is high")
    if r != expected_root:
        raise SignatureError(
            f"inclusion proof of leaf {index} does not lead to the root of size {size}"
        )


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Check that the tree of ``new_size`` leaves extends that of ``old_size`` (section 2.1.4.2).

    Args:
        old_size: The earlier size.
        new_size: The later size.
        proof: The consistency proof, as :func:`consistency_proof` returns it.
        old_root: The earlier root (from the earlier checkpoint).
        new_root: The later root.

    Raises:
        SignatureError: The sizes go backwards, the proof is malformed, or the earlier tree
            is not a prefix of the later one (history was rewritten).
    """
    _check_hashes("consistency proof", [old_root, new_root, *proof])
    if old_size < 0 or new_size < old_size:
        raise SignatureError(f"the log went from size {old_size} back to size {new_size}")
    if old_size == new_size:
        if proof:
            raise SignatureError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise SignatureError(f"two different roots for the same size {old_size}")
        return
    if old_size == 0:
        if proof:
            raise SignatureError("a consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise SignatureError(f"empty consistency proof from size {old_size} to {new_size}")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise SignatureError("consistency proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise SignatureError("consistency proof is shorter than the tree is high")
    if fr != old_root or sr != new_root:
        raise SignatureError(
            f"the tree of size {new_size} does not extend the tree of size {old_size}"
        )


class Frontier:
    """The right edge of a tree: its complete subtrees, enough to append and to get the root.

    For ``n`` leaves it holds one hash per set bit of ``n``, largest subtree first, so at
    most 64 hashes for any tree that fits a 64-bit size.

    Attributes:
        size: The number of leaves appended so far.
    """

    __slots__ = ("_hashes", "size")

    def __init__(self) -> None:
        self.size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def restore(cls, size: int, hashes: Sequence[bytes]) -> Frontier:
        """Rebuild a frontier from what :attr:`hashes` returned.

        Args:
            size: The tree size.
            hashes: The complete subtrees' hashes, largest first.

        Returns:
            The frontier.

        Raises:
            ValueError: The number of hashes is not the number of set bits of ``size``,
                or a hash is not 32 bytes.
        """
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {max(size, 0).bit_count()} edge hashes")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("an edge hash is not 32 bytes")
        frontier = cls()
        frontier.size = size
        frontier._hashes = list(hashes)
        return frontier

    @classmethod
    def from_bytes(cls, size: int, packed: bytes) -> Frontier:
        """Rebuild a frontier from :meth:`to_bytes`.

        Raises:
            ValueError: ``packed`` does not hold one 32-byte hash per set bit of ``size``.
        """
        if len(packed) % HASH_SIZE:
            raise ValueError("packed edge hashes are not a multiple of 32 bytes")
        hashes = [packed[i : i + HASH_SIZE] for i in range(0, len(packed), HASH_SIZE)]
        return cls.restore(size, hashes)

    def to_bytes(self) -> bytes:
        """The edge hashes, concatenated, largest subtree first."""
        return b"".join(self._hashes)

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The complete subtrees' hashes, largest (leftmost) first."""
        return tuple(self._hashes)

    def ranges(self) -> list[tuple[int, int]]:
        """The leaves ``[start, end)`` each of :attr:`hashes` covers."""
        spans = []
        start = 0
        for level in range(self.size.bit_length() - 1, -1, -1):
            if self.size >> level & 1:
                spans.append((start, start + (1 << level)))
                start += 1 << level
        return spans

    def copy(self) -> Frontier:
        """An independent copy."""
        return Frontier.restore(self.size, self._hashes)

    def append(self, leaf: bytes, on_node: NodeCallback | None = None) -> None:
        """Add one leaf.

        Args:
            leaf: The leaf's hash (:func:`leaf_hash` of its entry), 32 bytes.
            on_node: Called with ``(level, index, hash)`` for each complete subtree of two
                or more leaves the new leaf completes, lowest first.
        """
        hashes = self._hashes
        hashes.append(leaf)
        n = self.size
        level = 0
        while n & 1:
            right = hashes.pop()
            node = hashlib.sha256(_NODE_PREFIX + hashes.pop() + right).digest()
            hashes.append(node)
            n >>= 1
            level += 1
            if on_node is not None:
                on_node(level, ((self.size + 1) >> level) - 1, node)
        self.size += 1

    def root(self) -> bytes:
        """``MTH`` of the leaves appended so far (O(log n) hashes)."""
        if not self._hashes:
            return EMPTY_ROOT
        return fold_right(self._hashes)
