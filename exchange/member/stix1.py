"""STIX 1.x XML to STIX 2.1 objects through stix2-elevator, an optional extra.

CERTs still hold STIX 1.x packages (older TAXII 1.1 feeds, national archives). The OASIS
stix2-elevator converts them; it pulls in the STIX 1.x and CybOX libraries and lxml, so it
is not a dependency of the exchange but the ``stix1`` extra
(``pip install 'cert-exchange[stix1]'``). Without it, :func:`elevate_xml` says exactly
that.

The elevator's own console output (a banner and validator warnings) is captured, not
shown; what it converted goes on through the same path as any STIX 2.1 file (validation,
signing, publishing). Every object it produced, the predefined TLP markings apart,
records the conversion as provenance, the same way :mod:`exchange.member.upgrade` does.

Pure apart from the elevator's global options, which it resets on each call.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from exchange.errors import InvalidInput
from exchange.member.upgrade import PROVENANCE_SOURCE
from exchange.model.jsonparse import parse_json
from exchange.model.limits import Limits
from exchange.model.tlp import is_standard_tlp_definition

__all__ = ["INSTALL_HINT", "elevate_xml", "elevator_version"]

INSTALL_HINT: Final = "pip install 'cert-exchange[stix1]'"


def elevator_version() -> str | None:
    """The installed stix2-elevator version, or None when the extra is not installed."""
    try:
        return metadata.version("stix2-elevator")
    except metadata.PackageNotFoundError:
        return None


def _record(obj: dict[str, Any], version: str) -> None:
    entry = {
        "source_name": PROVENANCE_SOURCE,
        "external_id": "stix-1.x",
        "description": f"converted from STIX 1.x XML by stix2-elevator {version}"
                       " (exchange publish)",
    }
    references = obj.get("external_references")
    if isinstance(references, list):
        obj["external_references"] = [*references, entry]
    elif references is None:
        obj["external_references"] = [entry]


def elevate_xml(data: bytes, path: Path, limits: Limits) -> list[dict[str, Any]]:
    """Convert one STIX 1.x XML document to STIX 2.1 objects.

    Args:
        data: The XML document.
        path: Where it came from (for messages).
        limits: The caps for reading the elevator's JSON output.

    Returns:
        The STIX 2.1 objects, each recording the conversion in an external reference.

    Raises:
        InvalidInput: The ``stix1`` extra is not installed (the message says what to
            install), or the elevator could not convert the document.
    """
    version = elevator_version()
    try:
        from stix2elevator import elevate  # noqa: PLC0415 - optional extra
        from stix2elevator.options import initialize_options  # noqa: PLC0415
    except ImportError:
        version = None
    if version is None:
        raise InvalidInput(
            f"{path}: STIX 1.x XML needs the optional stix2-elevator; install it with"
            f" {INSTALL_HINT} (or convert the file to STIX 2.1 first)"
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{path}: the XML is not UTF-8") from e
    captured = io.StringIO()
    quiet = logging.getLogger("stix2elevator")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            initialize_options(options={"spec_version": "2.1", "silent": True,
                                        "validator_args": "--version 2.1"})
            result = elevate(text)
    except Exception as e:  # noqa: BLE001 - the elevator raises anything on bad input
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise InvalidInput(f"{path}: stix2-elevator could not convert it: {detail}") from None
    finally:
        quiet.setLevel(level)
    if not result:
        raise InvalidInput(f"{path}: stix2-elevator could not convert it (is it STIX 1.x XML?)")
    document = parse_json(result.encode("utf-8"), limits)
    objects = document.get("objects") if isinstance(document, dict) else None
    if not isinstance(objects, list) or not objects:
        raise InvalidInput(f"{path}: stix2-elevator found no STIX objects in it")
    out: list[dict[str, Any]] = []
    for obj in objects:
        if not isinstance(obj, dict):
            raise InvalidInput(f"{path}: stix2-elevator produced a non-object")
        if not is_standard_tlp_definition(obj.get("type"), obj.get("id")):
            _record(obj, version)
        out.append(obj)
    return out
