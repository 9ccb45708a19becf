"""Turn an analyst's file into the STIX objects ``exchange publish`` sends.

Accepted inputs: a STIX 2.1 or 2.0 bundle, a TAXII envelope, a single object or a JSON
array of objects (STIX 2.0 is upgraded to 2.1 by :mod:`exchange.member.upgrade`); STIX 1.x
XML through the optional stix2-elevator (:mod:`exchange.member.stix1`); or a CSV / plain
list of IOCs, which become STIX 2.1 indicators created by the publisher's identity and
marked with the chosen TLP level (see :mod:`exchange.member.iocs`). STIX objects keep the
authorship they have: ``created_by_ref`` naming the member, a non-member (a vendor's
report being relayed) or nobody. Pure apart from reading the one file it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from exchange.errors import InvalidInput
from exchange.member.iocs import iocs_to_objects, read_ioc_text
from exchange.member.stix1 import elevate_xml
from exchange.member.upgrade import UpgradeReport, is_stix20, upgrade_objects
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from exchange.model.tlp import parse_level

#: Files larger than this are refused before reading (the server splits nothing).
MAX_INPUT_BYTES = 512 * 1024 * 1024

#: How many bad IOC lines a refusal lists (the count is always complete).
MAX_LISTED_BAD_LINES: Final = 100


@dataclass
class Loaded:
    """What :func:`read_publishable` read.

    Attributes:
        objects: The STIX 2.1 objects to publish.
        source: ``stix2.1``, ``stix2.0``, ``stix1`` or ``iocs``.
        upgrade: For STIX 2.0 input, what the upgrade did.
        notes: One line each for the analyst (what was converted).
        bad_lines: ``(line, reason)`` of the IOC lines skipped (only with
            ``skip_bad_lines``).
    """

    objects: list[dict[str, Any]]
    source: str
    upgrade: UpgradeReport | None = None
    notes: list[str] = field(default_factory=list)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)

    @property
    def from_iocs(self) -> bool:
        """Made from an IOC list or CSV: indicators this tool generated."""
        return self.source == "iocs"


def describe_bad_lines(bad_lines: list[tuple[int, str]]) -> list[str]:
    """One ``line N: reason`` per bad line, at most :data:`MAX_LISTED_BAD_LINES`."""
    shown = [f"line {line}: {reason}" for line, reason in bad_lines[:MAX_LISTED_BAD_LINES]]
    if len(bad_lines) > MAX_LISTED_BAD_LINES:
        shown.append(f"... and {len(bad_lines) - MAX_LISTED_BAD_LINES} more")
    return shown


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
    """Read the objects to publish from ``path``, refusing an IOC list with a bad line.

    Raises:
        InvalidInput: As for :func:`read_publishable`.
    """
    return read_publishable(path, fmt=fmt, tlp=tlp, identity=identity,
                            valid_days=valid_days).objects


def read_publishable(path: Path, *, fmt: str = "auto", tlp: str = "amber",
                     identity: str | Callable[[], str] | None = None,
                     valid_days: int | None = None, skip_bad_lines: bool = False) -> Loaded:
    """Read the objects to publish from ``path``, as STIX 2.1.

    STIX input is returned as it is: its authorship (``created_by_ref``, or none) is the
    author's and never changed here. Indicators made from an IOC list are the member's
    own work, authored by ``identity``.

    Args:
        path: The input file.
        fmt: ``stix``, ``csv``, ``list`` or ``auto`` (JSON if it starts like JSON, STIX
            1.x XML if it starts with ``<``, CSV if the first line is a header with a
            ``value`` column, else a plain list).
        tlp: TLP level for indicators made from IOCs.
        identity: The publisher's identity id, or a function that finds it (asked only
            for IOC input; ``exchange publish`` asks the server).
        valid_days: Optional validity of indicators made from IOCs.
        skip_bad_lines: Make indicators of the valid lines of an IOC list and report the
            bad ones in :attr:`Loaded.bad_lines`, instead of refusing the whole list.

    Raises:
        InvalidInput: Unreadable file, bad JSON, missing identity, an unusable CSV
            header, an IOC list without one valid IOC, or (without ``skip_bad_lines``)
            any bad IOC line: the reason then lists every bad line with its number; STIX
            1.x XML without the ``stix1`` extra installed, or that it cannot convert.
        RemoteError: ``identity`` is a function and asking for the identity failed.
    """
    try:
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise InvalidInput(f"{path}: larger than {MAX_INPUT_BYTES} bytes")
        data = path.read_bytes()
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror}") from e
    stripped = data.lstrip()
    limits = Limits(max_body_bytes=MAX_INPUT_BYTES)
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:].lstrip()
    if fmt in ("stix", "auto") and stripped[:1] == b"<":
        objects = elevate_xml(data, path, limits)
        return Loaded(objects, "stix1", notes=[
            f"converted STIX 1.x XML to {len(objects)} STIX 2.1 object(s) with stix2-elevator"])
    if fmt == "stix" or (fmt == "auto" and stripped[:1] in (b"{", b"[")):
        document = parse_json(data, limits)
        objects = objects_in(document, path)
        if not is_stix20(document, objects):
            return Loaded(objects, "stix2.1")
        upgrade = upgrade_objects(objects)
        return Loaded(upgrade.objects, "stix2.0", upgrade=upgrade, notes=[upgrade.summary()])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{path}: not UTF-8 text") from e
    parsed = read_ioc_text(text, fmt="auto" if fmt == "auto" else fmt)  # type: ignore[arg-type]
    bad = parsed.bad_lines
    if bad and not skip_bad_lines:
        noun = "line is" if len(bad) == 1 else "lines are"
        valid = len(parsed.iocs)
        hint = (f"pass --skip-bad-lines to publish the {valid} valid IOC(s) and skip them"
                if valid else "no line holds a valid IOC")
        raise InvalidInput("\n  ".join(
            [f"{path}: {len(bad)} {noun} not a valid IOC, so nothing was published"
             f" (fix them, or {hint}):", *describe_bad_lines(bad)]))
    if not parsed.iocs:
        raise InvalidInput(f"{path}: no indicators found")
    author = identity() if callable(identity) else identity
    if not author:
        raise InvalidInput(
            "IOC lists need your organisation's identity id: pass --identity or set "
            "EXCHANGE_IDENTITY (see 'exchange org list')"
        )
    objects = iocs_to_objects(parsed.iocs, identity_id=author, tlp=parse_level(tlp),
                              valid_days=valid_days)
    return Loaded(objects, "iocs", bad_lines=list(bad))
