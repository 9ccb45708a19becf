"""Upgrade STIX 2.0 content to STIX 2.1 on the member's side, before signing.

A CERT's archive is full of STIX 2.0 (vendor playbooks, older TAXII 2.0 feeds), and TAXII
2.1 carries STIX 2.1 only, so ``exchange publish`` upgrades it here, where the member can
still sign the result. :func:`upgrade_objects` applies what changed between the two
versions (STIX 2.1, the changes from 2.0 listed in its revision history and the property
tables of sections 4 to 7):

* ``spec_version`` ``"2.1"`` on every object (required for SDOs, SROs and marking
  definitions in 2.1; a 2.0 object carries it only at bundle level);
* ``labels`` of indicator, malware, report, threat-actor and tool held the type in 2.0
  (the ``*-label-ov`` vocabularies); 2.1 moved it to ``indicator_types``,
  ``malware_types``, ``report_types``, ``threat_actor_types`` and ``tool_types`` (the
  ``*-type-ov`` vocabularies). Each label moves, spelled as the 2.1 vocabulary spells it
  when it names one of its values in another case or with spaces or underscores
  (``"Malicious Activity"`` becomes ``malicious-activity``), unchanged otherwise (the
  vocabularies are open);
* indicators gain ``pattern_type`` ``"stix"`` (2.0 knew only STIX patterns);
* malware gains ``is_family`` ``true``: a 2.0 malware object must have a ``name`` and
  describes what 2.1 calls a family;
* hash names in ``hashes`` use the 2.1 spelling (``ssdeep`` is ``SSDEEP``);
* a property the spec defines as one string but given as a one-element list of a string
  (Unit 42's playbooks write ``"identity_class": ["unknown"]``) holds that string;
* timestamps are written in the 2.1 form, in UTC with a ``Z`` and, for ``created`` and
  ``modified``, at least millisecond precision (section 3.2); the instant never changes,
  so ``modified`` still names the same version;
* an id that is not ``<type>--<RFC 4122 UUID>`` gets a deterministic UUIDv5 id, and every
  reference to it in the same document follows; valid ids are kept;
* the predefined TLP 1.0 marking definitions become their 2.1 form, unchanged otherwise.

Nothing is invented: ``created_by_ref`` stays as the source has it (or absent), custom
``x_`` properties and custom objects are kept as they are (STIX 2.1 section 11).

Every upgraded object records the upgrade as provenance: an external reference with
``source_name`` :data:`PROVENANCE_SOURCE`, ``external_id`` ``"stix-2.0"`` and a
description naming what changed. It holds no clock reading, so upgrading the same file
twice gives the same bytes (and re-publishing stores nothing new).

Pure code, no I/O.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from exchange import __version__
from exchange.model.envelope import is_stix20_object
from exchange.model.stixkinds import IDENTIFIER, NonEmptyStr, Str
from exchange.model.stixtypes import TLP1_IDS, TYPE_SPECS

__all__ = [
    "PROVENANCE_SOURCE",
    "UpgradeReport",
    "is_stix20",
    "upgrade_objects",
]

#: ``source_name`` of the external reference recording an upgrade.
PROVENANCE_SOURCE: Final = "cert-exchange-upgrade"

#: Namespace of the UUIDv5 ids given to objects whose 2.0 id is not a valid 2.1 id.
ID_NAMESPACE: Final = uuid.UUID("0f6b1a4e-1f0c-4c55-9a52-3b7c2de0a8f1")

#: 2.0 type -> (2.1 property taking its labels, the 2.1 open vocabulary's values).
LABEL_PROPERTIES: Final[Mapping[str, tuple[str, frozenset[str]]]] = {
    "indicator": ("indicator_types", frozenset({
        "anomalous-activity", "anonymization", "benign", "compromised",
        "malicious-activity", "attribution", "unknown"})),
    "malware": ("malware_types", frozenset({
        "adware", "backdoor", "bot", "bootkit", "ddos", "downloader", "dropper",
        "exploit-kit", "keylogger", "ransomware", "remote-access-trojan",
        "resource-exploitation", "rogue-security-software", "rootkit", "screen-capture",
        "spyware", "trojan", "unknown", "virus", "webshell", "wiper", "worm"})),
    "report": ("report_types", frozenset({
        "attack-pattern", "campaign", "identity", "indicator", "intrusion-set", "malware",
        "observed-data", "threat-actor", "threat-report", "tool", "vulnerability"})),
    "threat-actor": ("threat_actor_types", frozenset({
        "activist", "competitor", "crime-syndicate", "criminal", "hacker",
        "insider-accidental", "insider-disgruntled", "nation-state", "sensationalist",
        "spy", "terrorist", "unknown"})),
    "tool": ("tool_types", frozenset({
        "denial-of-service", "exploitation", "information-gathering", "network-capture",
        "credential-exploitation", "remote-access", "vulnerability-scanning", "unknown"})),
}  # fmt: skip

#: 2.0 hash-algo-ov names whose 2.1 hash-algorithm-ov spelling differs.
HASH_NAMES: Final = {"ssdeep": "SSDEEP"}

#: Properties of STIX 2.0 objects (and of 2.1 ones) that hold timestamps.
TIMESTAMP_PROPERTIES: Final = frozenset({
    "created", "modified", "valid_from", "valid_until", "first_seen", "last_seen",
    "published", "first_observed", "last_observed", "start_time", "stop_time",
})  # fmt: skip
_MILLISECONDS: Final = frozenset({"created", "modified"})

#: RFC 3339 as producers write it: either case of T and Z, an offset, any fraction.
_LOOSE_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_TLP1_NAMES: Final = {identifier: colour for colour, identifier in TLP1_IDS.items()}


@dataclass
class UpgradeReport:
    """What :func:`upgrade_objects` did.

    Attributes:
        objects: The objects in input order, upgraded or passed through.
        upgraded: Ids of the objects upgraded from 2.0.
        changes: How many objects each kind of change touched (``"labels ->
            indicator_types"``, ``"spec_version 2.1"``, ...).
        renamed: Old id -> new id, for 2.0 ids that are not valid 2.1 ids.
    """

    objects: list[dict[str, Any]] = field(default_factory=list)
    upgraded: list[str] = field(default_factory=list)
    changes: Counter[str] = field(default_factory=Counter)
    renamed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the analyst: how many objects, and the changes by count."""
        if not self.upgraded:
            return "no STIX 2.0 objects to upgrade"
        parts = [f"{name} ({count})" for name, count in sorted(
            self.changes.items(), key=lambda item: (-item[1], item[0]))]
        return (f"upgraded {len(self.upgraded)} STIX 2.0 object(s) to STIX 2.1: "
                + ", ".join(parts))


def is_stix20(document: Any, objects: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a parsed document is STIX 2.0 content this module should upgrade.

    True for a bundle whose ``spec_version`` is ``"2.0"``, or when any object is a 2.0
    object (``spec_version`` ``"2.0"``, or none on a type that is not a 2.1 SCO).

    Args:
        document: The parsed file (bundle, envelope, list or single object).
        objects: Its objects.
    """
    if isinstance(document, Mapping) and document.get("spec_version") == "2.0":
        return True
    return any(is_stix20_object(obj) for obj in objects)


def _timestamp(value: str, *, milliseconds: bool) -> str | None:
    """``value`` in the STIX 2.1 form, or None when it is not an RFC 3339 timestamp."""
    m = _LOOSE_TIMESTAMP.fullmatch(value)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    fraction = (fraction or "")[:6]
    try:
        when = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                        int(fraction.ljust(6, "0")), tzinfo=UTC)
        if zone not in ("Z", "z"):
            when = datetime.fromisoformat(
                f"{when.replace(tzinfo=None).isoformat()}{zone}").astimezone(UTC)
    except ValueError:
        return None
    digits = len(fraction)
    if milliseconds:
        digits = max(digits, 3)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{when.microsecond:06d}"[:digits]
    return text + "Z"


def _vocabulary_form(label: str, vocabulary: frozenset[str]) -> str:
    folded = re.sub(r"[\s_]+", "-", label.strip().lower())
    return folded if folded in vocabulary else label


def _fix_hashes(value: Any, changes: set[str]) -> Any:
    """Rename 2.0 hash names in every ``hashes`` dictionary, at any depth."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "hashes" and isinstance(item, dict):
                renamed = {HASH_NAMES.get(name, name): digest for name, digest in item.items()}
                if renamed.keys() != item.keys():
                    changes.add("hash names in 2.1 spelling")
                out[key] = renamed
            else:
                out[key] = _fix_hashes(item, changes)
        return out
    if isinstance(value, list):
        return [_fix_hashes(item, changes) for item in value]
    return value


def _follow_renames(value: Any, renamed: Mapping[str, str]) -> Any:
    """Point every ``*_ref``/``*_refs`` at the new id of a renamed object."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key.endswith("_ref") and isinstance(item, str):
                out[key] = renamed.get(item, item)
            elif key.endswith("_refs") and isinstance(item, list):
                out[key] = [renamed.get(ref, ref) if isinstance(ref, str) else ref
                            for ref in item]
            else:
                out[key] = _follow_renames(item, renamed)
        return out
    if isinstance(value, list):
        return [_follow_renames(item, renamed) for item in value]
    return value


def _new_id(obj: Mapping[str, Any]) -> str | None:
    """A deterministic 2.1 id for an object whose id is not one, else None."""
    obj_type, identifier = obj.get("type"), obj.get("id")
    if not isinstance(obj_type, str) or not isinstance(identifier, str):
        return None
    m = IDENTIFIER.fullmatch(identifier)
    if m is not None and m.group(1) == obj_type:
        return None
    return f"{obj_type}--{uuid.uuid5(ID_NAMESPACE, identifier)}"


def _tlp1_definition(identifier: str) -> dict[str, Any]:
    colour = _TLP1_NAMES[identifier]
    return {
        "type": "marking-definition", "spec_version": "2.1", "id": identifier,
        "created": "2017-01-20T00:00:00.000Z", "definition_type": "tlp",
        "name": f"TLP:{colour.upper()}", "definition": {"tlp": colour},
    }  # fmt: skip


def _upgrade_one(original: Mapping[str, Any], renamed: Mapping[str, str]
                 ) -> tuple[dict[str, Any], set[str]]:
    obj_type = original.get("type")
    identifier = original.get("id")
    if obj_type == "marking-definition" and identifier in _TLP1_NAMES:
        return _tlp1_definition(str(identifier)), {"predefined TLP 1.0 marking in 2.1 form"}
    changes: set[str] = {"spec_version 2.1"}
    obj: dict[str, Any] = {"type": obj_type, "spec_version": "2.1"}
    for key, value in original.items():
        if key not in ("type", "spec_version"):
            obj[key] = value
    if isinstance(identifier, str) and identifier in renamed:
        obj["id"] = renamed[identifier]
        changes.add("invalid id replaced")
    for key in TIMESTAMP_PROPERTIES & obj.keys():
        value = obj[key]
        if isinstance(value, str):
            fixed = _timestamp(value, milliseconds=key in _MILLISECONDS)
            if fixed is not None and fixed != value:
                obj[key] = fixed
                changes.add("timestamps in 2.1 form")
    if isinstance(obj_type, str) and obj_type in LABEL_PROPERTIES and "labels" in obj:
        target, vocabulary = LABEL_PROPERTIES[obj_type]
        labels = obj.pop("labels")
        if isinstance(labels, list):
            moved = list(obj.get(target, [])) if isinstance(obj.get(target), list) else []
            for label in labels:
                value = _vocabulary_form(label, vocabulary) if isinstance(label, str) else label
                if value not in moved:
                    moved.append(value)
            obj[target] = moved
            changes.add(f"labels -> {target}")
        else:  # not a list: leave it for validation to refuse with its reason
            obj["labels"] = labels
    spec = TYPE_SPECS.get(obj_type) if isinstance(obj_type, str) else None
    for key, kind in (spec.properties.items() if spec is not None else ()):
        value = obj.get(key)
        if (isinstance(kind, Str | NonEmptyStr) and isinstance(value, list) and len(value) == 1
                and isinstance(value[0], str)):
            obj[key] = value[0]
            changes.add(f"{key} one-element list -> string")
    if obj_type == "indicator" and "pattern_type" not in obj:
        obj["pattern_type"] = "stix"
        changes.add("pattern_type stix")
    if obj_type == "malware" and "is_family" not in obj:
        obj["is_family"] = True
        changes.add("is_family true")
    obj = _fix_hashes(obj, changes)
    if renamed:
        obj = _follow_renames(obj, renamed)
    return obj, changes


def _record(obj: dict[str, Any], changes: set[str]) -> None:
    references = obj.get("external_references")
    entry = {
        "source_name": PROVENANCE_SOURCE,
        "external_id": "stix-2.0",
        "description": (f"upgraded from STIX 2.0 to 2.1 by cert-exchange {__version__}"
                        f" (exchange publish): {'; '.join(sorted(changes))}"),
    }
    if isinstance(references, list):
        obj["external_references"] = [*references, entry]
    elif references is None:
        obj["external_references"] = [entry]
    # anything else is malformed: validation refuses it with its own reason


def upgrade_objects(objects: Sequence[Mapping[str, Any]]) -> UpgradeReport:
    """Upgrade the STIX 2.0 objects among ``objects`` to STIX 2.1.

    Objects that are already STIX 2.1 (``spec_version`` ``"2.1"``, or a 2.1 SCO without
    it) pass through unchanged, except that references to a renamed id follow it. What
    each upgraded object changes is in the module docstring; what cannot be upgraded
    (a malformed 2.0 object) is left for validation to refuse with its reason.

    Args:
        objects: The objects of one document (not modified).

    Returns:
        The report: the objects in input order, what was upgraded and how.
    """
    report = UpgradeReport()
    for obj in objects:
        if is_stix20_object(obj):
            new_id = _new_id(obj)
            if new_id is not None:
                report.renamed[str(obj["id"])] = new_id
    for original in objects:
        if not is_stix20_object(original):
            kept = dict(original)
            report.objects.append(_follow_renames(kept, report.renamed)
                                  if report.renamed else kept)
            continue
        obj, changes = _upgrade_one(original, report.renamed)
        if not (obj.get("type") == "marking-definition" and obj.get("id") in _TLP1_NAMES):
            _record(obj, changes)
        report.objects.append(obj)
        report.upgraded.append(str(obj.get("id", f"objects[{len(report.objects) - 1}]")))
        report.changes.update(changes)
    return report
