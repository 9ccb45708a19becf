"""Turn an analyst's file into the STIX objects ``exchange publish`` sends.

Accepted inputs: a STIX 2.1 bundle, a TAXII envelope, a single object or a JSON array of
objects; or a CSV / plain list of IOCs, which become STIX 2.1 indicators created by the
publisher's identity and marked with the chosen TLP level (see :mod:`exchange.member.iocs`).
STIX objects keep the authorship they have: ``created_by_ref`` naming the member, a
non-member (a vendor's report being relayed) or nobody.
Pure apart from reading the one file it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from exchange.errors import InvalidInput
from exchange.member.iocs import iocs_to_objects, parse_ioc_text
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from exchange.model.tlp import parse_level

#: Files larger than this are refused before reading (the server splits nothing).
MAX_INPUT_BYTES = 512 * 1024 * 1024


def objects_in(document: Any, path: Path) -> list[dict[str, Any]]:
    """The objects of a parsed bundle, envelope, list of objects or single object.

    Raises:
        InvalidInput: The document is none of these, or holds a non-object.
    """
    if isinstance(document, list):
        objects = document
    elif isinstance(document, dict) and isinstance(document.get("objects"), list):
        objects = document["objects"]
    elif isinstance(document, dict) and "type" in document:
        objects = [document]
    else:
        raise InvalidInput(f"{path}: expected a STIX bundle, an envelope or STIX objects")
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise InvalidInput(f"{path}: objects[{i}] is not a JSON object")
    return objects


def load_objects(path: Path, *, fmt: str = "auto", tlp: str = "amber",
                 identity: str | Callable[[], str] | None = None,
                 valid_days: int | None = None) -> list[dict[str, Any]]:
    """Read the objects to publish from ``path``.

    STIX input is returned as it is: its authorship (``created_by_ref``, or none) is the
    author's and never changed here. Indicators made from an IOC list are the member's
    own work, authored by ``identity``.

    Args:
        path: The input file.
        fmt: ``stix``, ``csv``, ``list`` or ``auto`` (JSON if it parses as JSON, CSV if
            the first line is a header with a ``value`` column, else a plain list).
        tlp: TLP level for indicators made from IOCs.
        identity: The publisher's identity id, or a function that finds it (asked only
            for IOC input; ``exchange publish`` asks the server).
        valid_days: Optional validity of indicators made from IOCs.

    Raises:
        InvalidInput: Unreadable file, bad JSON, bad IOC lines, missing identity.
        RemoteError: ``identity`` is a function and asking for the identity failed.
    """
    try:
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise InvalidInput(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
        data = path.read_bytes()
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from e
    stripped = data.lstrip()
    if fmt == "stix" or (fmt == "auto" and stripped[:1] in (b"{", b"[")):
        limits = Limits(max_body_bytes=MAX_INPUT_BYTES)
        return objects_in(parse_json(data, limits), path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{path}: not UTF-8 text") from e
    iocs = parse_ioc_text(text, fmt="auto" if fmt == "auto" else fmt)  # type: ignore[arg-type]
    if not iocs:
        raise InvalidInput(f"{path}: no indicators found")
    author = identity() if callable(identity) else identity
    if not author:
        raise InvalidInput(
            "IOC lists need your organisation's identity id: pass --identity or set "
            "EXCHANGE_IDENTITY (see 'exchange org list')"
        )
    return iocs_to_objects(iocs, identity_id=author, tlp=parse_level(tlp),
                           valid_days=valid_days)
