"""Sign the objects a member is about to publish, with one report for all of them.

Used by ``exchange sign`` and by ``exchange publish`` when a signing key is configured.
Per object, in order:

* the predefined TLP marking definitions are never signed (they are the standard's
  objects, not the member's) and objects that already carry a cx-sig signature are kept
  as they are: both are passed through and listed in ``kept``;
* authorship is never changed: an object is signed as it is, whether its
  ``created_by_ref`` names the member, a non-member (a vendor's report being relayed) or
  nobody (an SCO, or a report whose author is not named). The signature binds the
  signing member as the object's contributor; the exchange refuses it unless that member
  publishes it (DESIGN.md decision 8);
* with ``normalise``, the object is replaced by
  :func:`~exchange.signing.canonical.normal_form` (what the reference STIX library
  re-emits) and listed in ``normalised`` when that changed it; without it, an object not
  in normal form is refused with the reason;
* it is signed with :func:`~exchange.signing.cxsig.sign_object`.

Nothing is written or sent here; refused objects are reported, never half-signed. Pure
apart from the stix2 round trip the normal-form rule needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exchange.errors import ExchangeError
from exchange.model.tlp import is_standard_tlp_definition
from exchange.signing.canonical import canonical, normal_form
from exchange.signing.cxsig import sign_object, signature_of
from exchange.signing.keys import SigningKey

__all__ = ["SigningReport", "sign_all"]

_NORMALISE_HINT = "; run with --normalise to sign the normal form instead"


@dataclass
class SigningReport:
    """What :func:`sign_all` did.

    Attributes:
        objects: The objects in input order: signed, or kept as they were.
        signed: Ids of the objects signed.
        normalised: Ids of the objects whose normal form differed from the input.
        kept: ``(id, why)`` of objects passed through unsigned by this key.
        refused: ``(id, reason)`` of objects that could not be signed.
    """

    objects: list[dict[str, Any]] = field(default_factory=list)
    signed: list[str] = field(default_factory=list)
    normalised: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def _label(obj: Mapping[str, Any], index: int) -> str:
    identifier = obj.get("id")
    if isinstance(identifier, str) and 0 < len(identifier) <= 120 and identifier.isprintable():
        return identifier
    return f"objects[{index}]"


def sign_all(
    objects: Sequence[Mapping[str, Any]],
    key: SigningKey,
    *,
    normalise: bool,
    signed_at: str | None = None,
) -> SigningReport:
    """Sign every object that can and should be signed: SDOs, SROs and SCOs, with or
    without ``created_by_ref``.

    Args:
        objects: The objects (not modified).
        key: The member's signing key.
        normalise: Sign the normal form of objects that are not in normal form.
        signed_at: The claimed signing time (default: now).

    Returns:
        The report; ``refused`` is empty when every object was signed or kept.
    """
    report = SigningReport()
    for index, original in enumerate(objects):
        label = _label(original, index)
        obj = dict(original)
        try:
            if is_standard_tlp_definition(obj.get("type"), obj.get("id")):
                report.kept.append((label, "predefined TLP marking definition"))
                report.objects.append(obj)
                continue
            if signature_of(obj) is not None:
                report.kept.append((label, "already signed"))
                report.objects.append(obj)
                continue
            if normalise:
                fixed = normal_form(obj)
                if canonical(fixed) != canonical(obj):
                    report.normalised.append(label)
                obj = fixed
            signed = sign_object(obj, key, signed_at=signed_at)
        except ExchangeError as e:
            reason = e.reason.removeprefix(f"{label}: ")
            if not normalise and "not in normal form" in reason:
                reason = reason.removesuffix("; sign normal_form(obj) instead") + _NORMALISE_HINT
            report.refused.append((label, reason))
            report.objects.append(dict(original))
            continue
        report.signed.append(label)
        report.objects.append(signed)
    return report
