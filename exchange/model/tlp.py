"""TLP marking normalisation: every known TLP marking-definition id maps to one level.

Sources of the ids (research/mission-anchors.md part c):

* TLP 1.0, the four marking definitions predefined by STIX 2.1 section 7.2.1.4
  (WHITE is read as CLEAR);
* TLP 2.0, the OASIS common-objects extension
  ``extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d``;
* OpenCTI's own AMBER+STRICT id.

An object carrying two different TLP levels is refused (fail closed): which one the
producer meant cannot be guessed. An object carrying no TLP marking gets ``None`` here;
the service holds it at its collection's default level (AMBER unless configured), never
CLEAR. Pure code, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from exchange.errors import InvalidObject
from exchange.model.objects import Tlp

TLP2_EXTENSION_ID = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"

TLP_MARKING_IDS: dict[str, Tlp] = {
    # TLP 1.0, STIX 2.1 predefined (section 7.2.1.4)
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": Tlp.CLEAR,  # WHITE
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": Tlp.GREEN,
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": Tlp.AMBER,
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": Tlp.RED,
    # TLP 2.0, OASIS cti-stix-common-objects extension
    "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": Tlp.CLEAR,
    "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": Tlp.GREEN,
    "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": Tlp.AMBER,
    "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": Tlp.AMBER_STRICT,
    "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": Tlp.RED,
    # OpenCTI's own AMBER+STRICT (opencti-graphql identifier.js)
    "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37": Tlp.AMBER_STRICT,
}

#: The id the exchange writes when it marks an object itself (TLP 2.0 ids).
TLP2_IDS: dict[Tlp, str] = {
    Tlp.CLEAR: "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    Tlp.GREEN: "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    Tlp.AMBER: "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    Tlp.AMBER_STRICT: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    Tlp.RED: "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}


def is_standard_tlp_definition(object_type: object, object_id: object) -> bool:
    """Whether an object is one of the well-known TLP marking definitions above.

    Their content is fixed by the standards, so no member signs them and no collection
    requires them to be signed.
    """
    return object_type == "marking-definition" and object_id in TLP_MARKING_IDS


def parse_level(text: str) -> Tlp:
    """Parse a level name such as ``amber+strict``, ``TLP:GREEN`` or ``white``.

    Raises:
        InvalidObject: The name is not a TLP level.
    """
    name = text.strip().lower().removeprefix("tlp:")
    if name == "white":
        return Tlp.CLEAR
    try:
        return Tlp(name)
    except ValueError:
        raise InvalidObject(
            f"unknown TLP level {text!r}; use clear, green, amber, amber+strict or red"
        ) from None


def tlp_of(marking_refs: Iterable[str], granular: Iterable[str] = ()) -> Tlp | None:
    """The TLP level of an object: its ``object_marking_refs`` must agree on one level,
    and the object is held at the strictest level found anywhere in it, granular
    markings included (the exchange serves objects whole).

    Args:
        marking_refs: The object's marking references (non-TLP markings are ignored).
        granular: The ``marking_ref`` of each granular marking.

    Returns:
        The level, or None when no TLP marking is present.

    Raises:
        InvalidObject: Two different TLP levels among the object-level markings.
    """
    levels = {TLP_MARKING_IDS[ref] for ref in marking_refs if ref in TLP_MARKING_IDS}
    if len(levels) > 1:
        names = ", ".join(sorted(level.value.upper() for level in levels))
        raise InvalidObject(f"conflicting TLP markings on one object: {names}")
    levels |= {TLP_MARKING_IDS[ref] for ref in granular if ref in TLP_MARKING_IDS}
    return max(levels, key=lambda level: level.rank, default=None)
