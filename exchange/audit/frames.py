"""The spool's file format: frames of disclosure batches, and how a reader finds them.

Pure: bytes in, records out; :mod:`exchange.audit.spool` does the file I/O. A spool file
is a sequence of frames::

    magic                       4 bytes: b"CXS2" for a batch's first frame, b"CXS1"
                                for the others (and for every frame of a file written
                                before batches were marked)
    length                      4 bytes, big-endian: bytes after the checksum
    crc32                       4 bytes, big-endian: of those bytes
    remaining                   2 bytes: frames after this one in the same batch
    kind                        1 byte: index in exchange.audit.records.Kind, or 0xFF
    time                        8 bytes: microseconds
    then, for a record:
    head, tail                  4-byte length + bytes each
    recipient, producer, object 2-byte length + UTF-8 each (0xFFFF: none)
    or, for kind 0xFF (always a whole batch on its own):
    DisclosureBatch.encode()    the response's disclosures, rendered when sequenced

A batch is the frames of one response, written with one ``write``. What a reader meets:

- **a complete batch**: every frame checks out; it is taken.
- **a batch still being written** (at the end of a file its writer still appends to):
  left for the next read.
- **a torn write**: the prefix of a batch whose ``write`` failed part-way (disk full, an
  I/O error) or whose process was killed mid-write. Its response was never sent, so its
  bytes are skipped: where a complete frame starts inside or right after them, or at
  the end of a file nobody will append to again (``final``). The writer cuts a failed
  write back itself, so a torn region in the middle of a file is left only by a crash
  or by a writer older than this check.
- **corruption**: a complete frame that does not check out, with no sign of a torn
  write (the next frame starts exactly where its length says, or nothing follows it in
  a file that is still written). Reported, never skipped: its response was served.

Errors: :class:`Corrupt` for corruption.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from exchange.audit.records import DisclosureBatch, Kind, Prepared
from exchange.errors import InvalidInput, StorageError

__all__ = ["FIRST", "MAGIC", "Corrupt", "Scan", "decode", "encode", "scan"]

#: The magic of a frame that continues a batch (or of any frame, in older files).
MAGIC: Final = b"CXS1"
#: The magic of a batch's first frame.
FIRST: Final = b"CXS2"
_STEM: Final = b"CXS"
HEADER: Final = struct.Struct(">4sII")
_FIXED = struct.Struct(">HBq")
_NONE: Final = 0xFFFF
#: The kind byte of a frame holding a :class:`DisclosureBatch` (one frame per response).
_COLUMNS: Final = 0xFF
_KINDS: Final = list(Kind)


class Corrupt(Exception):
    """A complete frame in a spool file does not check out."""


def _text(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">H", _NONE)
    data = value.encode("utf-8")
    if len(data) >= _NONE:
        raise StorageError("an audit index value is too long for the spool")
    return struct.pack(">H", len(data)) + data


def encode(records: Sequence[Prepared] | DisclosureBatch) -> bytes:
    """The frames of one batch (the records of one response).

    Raises:
        StorageError: An index value (recipient, producer, object id) is over 64 KiB.
    """
    if isinstance(records, DisclosureBatch):
        body = _FIXED.pack(0, _COLUMNS, records.time) + records.encode()
        return HEADER.pack(FIRST, len(body), zlib.crc32(body)) + body
    out = []
    for index, record in enumerate(records):
        body = b"".join((
            _FIXED.pack(len(records) - index - 1, _KINDS.index(record.kind), record.time),
            struct.pack(">I", len(record.head)), record.head,
            struct.pack(">I", len(record.tail)), record.tail,
            _text(record.recipient_org), _text(record.producer_org), _text(record.object_id),
        ))
        out.append(HEADER.pack(FIRST if index == 0 else MAGIC, len(body), zlib.crc32(body))
                   + body)
    return b"".join(out)


def _read_text(body: bytes, at: int) -> tuple[str | None, int]:
    (size,) = struct.unpack_from(">H", body, at)
    at += 2
    if size == _NONE:
        return None, at
    return body[at:at + size].decode("utf-8"), at + size


def _decode_body(body: bytes) -> tuple[int, list[Prepared]]:
    remaining, kind, when = _FIXED.unpack_from(body, 0)
    at = _FIXED.size
    if kind == _COLUMNS:
        try:
            batch = DisclosureBatch.decode(body[at:])
            if batch.time != when:
                raise InvalidInput("its time differs from its frame's")
            return remaining, batch.records()  # checks every value, as the builder does
        except InvalidInput as e:
            raise Corrupt(f"a disclosure batch that does not check out: {e}") from None
    parts = []
    for _ in range(2):
        (size,) = struct.unpack_from(">I", body, at)
        at += 4
        parts.append(body[at:at + size])
        at += size
    recipient, at = _read_text(body, at)
    producer, at = _read_text(body, at)
    object_id, at = _read_text(body, at)
    if at != len(body) or kind >= len(_KINDS):
        raise Corrupt("malformed frame")
    return remaining, [Prepared(_KINDS[kind], when, parts[0], parts[1], recipient, producer,
                                object_id)]


# What is at a position: a frame that checks out, one not all there yet, or neither.
_WHOLE, _PARTIAL, _BAD = "whole", "partial", "bad"


def _frame_at(data: bytes, at: int) -> tuple[str, int]:
    """The state of the frame at ``at`` and where it ends (by its length field)."""
    available = len(data) - at
    if available < HEADER.size:
        head = data[at:at + len(MAGIC)]
        return (_PARTIAL if head in (MAGIC[:len(head)], FIRST[:len(head)]) else _BAD,
                len(data))
    magic, length, crc = HEADER.unpack_from(data, at)
    end = at + HEADER.size + length
    if magic not in (MAGIC, FIRST):
        return _BAD, end
    if end > len(data):
        return _PARTIAL, end
    if zlib.crc32(data[at + HEADER.size:end]) != crc:
        return _BAD, end
    return _WHOLE, end


def _next_frame(data: bytes, start: int) -> tuple[str, int]:
    """The first position after ``start`` where a frame that checks out begins
    (``_WHOLE``), else where one that may still be written begins (``_PARTIAL``), else
    ``_BAD`` (none)."""
    partial = -1
    at = data.find(_STEM, start)
    while at >= 0:
        state, _ = _frame_at(data, at)
        if state == _WHOLE:
            return _WHOLE, at
        if state == _PARTIAL and partial < 0:
            partial = at
        at = data.find(_STEM, at + 1)
    return (_PARTIAL, partial) if partial >= 0 else (_BAD, -1)


@dataclass(slots=True)
class Scan:
    """What a read of spool bytes found.

    Attributes:
        records: The records of the complete batches, in order.
        consumed: The bytes they span, with any torn region skipped before or among them.
        skipped: The torn regions skipped, as (start, end) byte ranges.
    """

    records: list[Prepared] = field(default_factory=list)
    consumed: int = 0
    skipped: list[tuple[int, int]] = field(default_factory=list)


def scan(data: bytes, limit: int | None = None, *, final: bool = False) -> Scan:
    """The complete batches in ``data`` (bytes of a spool file from a batch boundary).

    Args:
        data: The bytes.
        limit: Stop once this many bytes are taken.
        final: Nothing will be appended after ``data``: an incomplete batch at its end is
            a torn write, not one in progress.

    Raises:
        Corrupt: A complete frame does not check out (see the module docstring).
    """
    out = Scan()
    batch: list[Prepared] = []
    expected = 0  # the ``remaining`` the next frame of the pending batch must carry
    at = 0
    while at < len(data):
        state, end = _frame_at(data, at)
        if state == _WHOLE:
            try:
                remaining, decoded = _decode_body(data[at + HEADER.size:end])
            except (struct.error, UnicodeDecodeError, IndexError) as e:
                raise Corrupt(f"malformed frame at byte {at}") from e
            except Corrupt as e:
                raise Corrupt(f"{e} at byte {at}") from None
            if batch and (data[at:at + 4] == FIRST or remaining != expected):
                # A batch starts before the pending one ended: that one was a write
                # cut off at a frame boundary (never sent).
                out.skipped.append((out.consumed, at))
                batch = []
            batch += decoded
            expected = remaining - 1
            at = end
            if remaining == 0:
                out.records += batch
                batch = []
                out.consumed = at
                if limit is not None and out.consumed >= limit:
                    break
            continue
        following, where = _next_frame(data, at + 1)
        if state == _BAD and end <= len(data) and (
                _frame_at(data, end)[0] == _WHOLE or (following == _WHOLE and where > end)):
            # Whole by its length and followed by more: changed bytes, not a torn write.
            raise Corrupt(f"checksum mismatch at byte {at}")
        if following == _WHOLE:
            # A torn write, then whole frames: skip the torn batch (its response was
            # never sent) and go on at the next frame.
            out.skipped.append((out.consumed, where))
            batch, at, out.consumed = [], where, where
            continue
        if final:
            # The end of a file nobody appends to: a write that never finished.
            out.skipped.append((out.consumed, len(data)))
            out.consumed = len(data)
            break
        if state == _BAD:
            raise Corrupt(f"checksum mismatch at byte {at}"
                          if data[at:at + 4] in (MAGIC, FIRST) else f"no frame at byte {at}")
        break  # a batch still being written: left for the next read
    else:
        if final and out.consumed < len(data):
            # Whole frames of a batch whose last frame was never written.
            out.skipped.append((out.consumed, len(data)))
            out.consumed = len(data)
    return out


def decode(data: bytes, limit: int | None = None) -> tuple[list[Prepared], int]:
    """The complete batches at the start of ``data`` and the bytes they span (a batch
    cut short at the end is left for later; stops early once ``limit`` bytes are taken).

    Raises:
        Corrupt: A complete frame does not check out.
    """
    found = scan(data, limit)
    return found.records, found.consumed
