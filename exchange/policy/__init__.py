"""The pure sharing-policy engine: load and validate ``policies/``, decide, explain.

Modules:

* :mod:`~exchange.policy.model`: the loaded policy as frozen values, and its digest;
* :mod:`~exchange.policy.schema`: strict YAML parsing and path-aware value checks;
* :mod:`~exchange.policy.load`: :func:`load_policies` (the only file reading);
* :mod:`~exchange.policy.tlp`: TLP level under a policy (fail closed), RED recipients;
* :mod:`~exchange.policy.engine`: :func:`decide`, :func:`visible_levels`, :func:`explain`;
* :mod:`~exchange.policy.dryrun`: who would receive an unpublished bundle, and why;
* :mod:`~exchange.policy.redact`: a redaction profile applied to an object's properties.

Left to others: where policies live and when they are reloaded (the service keeps the
old set in force when a reload fails), turning a :class:`VisibilityRule` into SQL
(storage), building derived objects for transforms and recording disclosures (service,
audit).

Core floor, pure: imports only ``model`` and ``errors``.
"""

from exchange.policy.dryrun import DryRunEntry, dry_run, format_dry_run
from exchange.policy.engine import (
    CHANNELS,
    Channel,
    Decision,
    ObjectMeta,
    Recipient,
    VisibilityRule,
    decide,
    explain,
    visible_levels,
)
from exchange.policy.load import load_policies, parse_policies
from exchange.policy.model import (
    AnonymiseProducer,
    PolicySet,
    Redact,
    Transform,
    policy_digest,
)
from exchange.policy.redact import redact_properties
from exchange.policy.tlp import (
    RED_RECIPIENTS_EXTENSION_ID,
    inline_markings,
    level_of,
    red_recipients_of,
)

__all__ = [
    "CHANNELS",
    "RED_RECIPIENTS_EXTENSION_ID",
    "AnonymiseProducer",
    "Channel",
    "Decision",
    "DryRunEntry",
    "ObjectMeta",
    "PolicySet",
    "Recipient",
    "Redact",
    "Transform",
    "VisibilityRule",
    "decide",
    "dry_run",
    "explain",
    "format_dry_run",
    "inline_markings",
    "level_of",
    "load_policies",
    "parse_policies",
    "policy_digest",
    "red_recipients_of",
    "redact_properties",
    "visible_levels",
]
