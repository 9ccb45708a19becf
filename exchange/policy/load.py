"""Load and validate the policy directory into a :class:`~exchange.policy.model.PolicySet`.

Layout of the directory (``policies/`` in the repository)::

    community.yaml          the community: members, their constituents, operators
    collections.yaml        collection alias -> agreement or community binding
    markings.yaml           (optional) extra marking-definition ids -> TLP level or ignore
    agreements/<id>.yaml    one sharing agreement per file, named by its id
    redaction/<name>.yaml   one redaction profile per file, named by its name
    *.md                    notes; ignored, and not part of the digest

Anything else (a ``.yml`` file, a stray ``agreements/old/x.yaml``) is refused, so a file
that looks like policy is never silently ignored. Hidden files and directories (``.git``,
editor swap files) are skipped.

Only :func:`load_policies` and :func:`read_policy_files` touch the file system;
:func:`parse_policies` is pure and does all the checking: the schema of each file (unknown
keys, wrong types and malformed values are errors naming the file and key path), then the
references between files (agreement parties are community members, redaction profiles
exist, collection bindings name existing agreements or the community, owners are
members). A broken set raises :class:`ConfigError`; the caller keeps the old set in force.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from exchange.errors import ConfigError
from exchange.model.objects import Tlp
from exchange.model.tlp import TLP_MARKING_IDS
from exchange.policy.model import (
    ALL_RECEIVABLE,
    CUSTOM_CONTENT,
    Agreement,
    Attribution,
    CollectionBinding,
    Community,
    OrgEntry,
    OrgKind,
    PolicySet,
    RedactionProfile,
    Reshare,
    frozen_map,
    policy_digest,
)
from exchange.policy.schema import IDENTITY_ID, MARKING_ID, NAME, SLUG, Node, parse_yaml

__all__ = [
    "DEFAULT_COMMUNITY_RESHARE",
    "MAX_POLICY_FILE_BYTES",
    "PROTECTED_FIELDS",
    "load_policies",
    "parse_policies",
    "read_policy_files",
]

MAX_POLICY_FILE_BYTES = 1024 * 1024

#: Re-share rules of community collections when ``community.yaml`` has no ``reshare``.
DEFAULT_COMMUNITY_RESHARE = Reshare(
    misp=frozenset({Tlp.CLEAR, Tlp.GREEN}), peer_exchanges=frozenset({Tlp.CLEAR})
)

#: Properties a redaction profile may not drop or replace: they identify, version or
#: mark the object (attribution is changed only through ``provider_attribution``).
PROTECTED_FIELDS = frozenset({
    "type", "id", "spec_version", "created", "modified", "revoked", "created_by_ref",
    "object_marking_refs", "granular_markings", "extensions",
})

_FIXED_FILES = ("community.yaml", "collections.yaml", "markings.yaml")
_REQUIRED_FILES = ("community.yaml", "collections.yaml")
_LISTED_FILE = re.compile(r"(agreements|redaction)/([^/]+)\.yaml")
_PROPERTY = re.compile(r"[a-z][a-z0-9_]{0,249}")
_ATTRIBUTIONS: tuple[Attribution, ...] = ("may", "must", "must-not")
_LAYOUT_HINT = (
    "policy files are community.yaml, collections.yaml, markings.yaml, agreements/*.yaml"
    " and redaction/*.yaml (notes may be *.md)"
)


def load_policies(directory: Path) -> PolicySet:
    """Read, validate and cross-check the policy files in ``directory``.

    Args:
        directory: The policy directory (``policies/``).

    Returns:
        The policy set, with its digest.

    Raises:
        ConfigError: The directory is missing or unreadable, holds an unexpected file, or
            a file is broken or inconsistent; the message names the file, the key path and
            what is wrong.
    """
    return parse_policies(read_policy_files(directory))


def read_policy_files(directory: Path) -> dict[str, bytes]:
    """The policy files of ``directory``: relative POSIX path -> bytes.

    Raises:
        ConfigError: Not a directory, an unreadable or oversized file, or a file that is
            not part of the layout.
    """
    if not directory.is_dir():
        raise ConfigError(f"policy directory {str(directory)!r} does not exist")
    files: dict[str, bytes] = {}
    try:
        paths = sorted(directory.rglob("*"))
    except OSError as e:
        raise ConfigError(f"cannot list policy directory {str(directory)!r}: "
                          f"{e.strerror}") from None
    for path in paths:
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts) or path.is_dir():
            continue
        name = rel.as_posix()
        if name.endswith(".md"):
            continue
        if name not in _FIXED_FILES and not _LISTED_FILE.fullmatch(name):
            raise ConfigError(f"{name}: unexpected file in the policy directory; {_LAYOUT_HINT}")
        try:
            size = path.stat().st_size
            if size > MAX_POLICY_FILE_BYTES:
                raise ConfigError(f"{name}: {size} bytes is too large for a policy file "
                                  f"(at most {MAX_POLICY_FILE_BYTES})")
            files[name] = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"{name}: cannot read: {e.strerror}") from None
    return files


def parse_policies(files: Mapping[str, bytes]) -> PolicySet:
    """Validate policy files given as bytes and build the policy set (pure).

    Args:
        files: Relative POSIX path -> bytes, as :func:`read_policy_files` returns.

    Returns:
        The policy set; its digest covers exactly ``files``.

    Raises:
        ConfigError: A required file is missing, a file is broken (YAML, duplicate key,
            unknown key, wrong type, bad timestamp or level) or the files contradict each
            other (unknown party, profile, agreement or owner).
    """
    for name in files:
        if name not in _FIXED_FILES and not _LISTED_FILE.fullmatch(name):
            raise ConfigError(f"{name}: unexpected file in the policy directory; {_LAYOUT_HINT}")
    for name in _REQUIRED_FILES:
        if name not in files:
            raise ConfigError(f"{name}: missing; {_LAYOUT_HINT}")

    community = _community(_document("community.yaml", files["community.yaml"]))
    profiles: dict[str, RedactionProfile] = {}
    agreements: dict[str, Agreement] = {}
    for name in sorted(files):
        m = _LISTED_FILE.fullmatch(name)
        if m is None:
            continue
        root = _document(name, files[name])
        if m.group(1) == "redaction":
            profile = _profile(root, m.group(2))
            profiles[profile.name] = profile
        else:
            agreement = _agreement(root, m.group(2))
            agreements[agreement.id] = agreement
    for agreement in agreements.values():
        _check_agreement_refs(agreement, community, profiles)
    markings: Mapping[str, Tlp | None] = frozen_map()
    if "markings.yaml" in files:
        markings = _markings(_document("markings.yaml", files["markings.yaml"]))
    collections = _collections(_document("collections.yaml", files["collections.yaml"]),
                               community, agreements)
    return PolicySet(
        community=community,
        agreements=frozen_map(agreements),
        redaction_profiles=frozen_map(profiles),
        markings=markings,
        collections=collections,
        files=tuple(sorted(files, key=lambda p: p.encode("utf-8"))),
        digest=policy_digest(files),
    )


def _document(name: str, content: bytes) -> Node:
    value = parse_yaml(name, content)
    if value is None:
        raise ConfigError(f"{name}: the file is empty; expected a mapping")
    return Node(value, name)


def _identity(node: Node | None) -> str | None:
    if node is None:
        return None
    return node.optional_string(IDENTITY_ID, "a STIX identity id (identity--<uuid>)")


def _org_name(node: Node) -> str:
    return node.string(NAME, "an organisation name (1-64 letters, digits, spaces, '.',"
                             " '_', '@' or '-', starting with a letter or digit)")


def _reshare(node: Node) -> Reshare:
    f = node.fields(required=("misp", "peer_exchanges"))
    return Reshare(misp=f["misp"].levels(), peer_exchanges=f["peer_exchanges"].levels())


def _community(root: Node) -> Community:
    f = root.fields(required=("name", "members"),
                    optional=("description", "operators", "reshare"))
    name = f["name"].string(SLUG, "a community name (lowercase letters, digits, '.', '_',"
                                  " '-')")
    if "description" in f:
        f["description"].string()
    orgs: dict[str, OrgEntry] = {}
    identities: dict[str, str] = {}

    def add(node: Node, entry: OrgEntry) -> None:
        if entry.name in orgs:
            node.fail(f"organisation {entry.name!r} is named twice in the community")
        if entry.identity is not None:
            if entry.identity in identities:
                node.fail(f"identity {entry.identity} is already used by "
                          f"{identities[entry.identity]!r}")
            identities[entry.identity] = entry.name
        orgs[entry.name] = entry

    members = f["members"].items()
    if not members:
        f["members"].fail("a community needs at least one member")
    for item in members:
        m = item.fields(required=("name",), optional=("identity", "constituents"))
        member = _org_name(m["name"])
        add(m["name"], OrgEntry(member, OrgKind.MEMBER, _identity(m.get("identity"))))
        for sub in m["constituents"].items() if "constituents" in m else []:
            c = sub.fields(required=("name",), optional=("identity",))
            add(c["name"], OrgEntry(_org_name(c["name"]), OrgKind.CONSTITUENT,
                                    _identity(c.get("identity")), parent=member))
    for item in f["operators"].items() if "operators" in f else []:
        o = item.fields(required=("name",), optional=("identity",))
        add(o["name"], OrgEntry(_org_name(o["name"]), OrgKind.OPERATOR,
                                _identity(o.get("identity"))))
    reshare = _reshare(f["reshare"]) if "reshare" in f else DEFAULT_COMMUNITY_RESHARE
    return Community(name=name, orgs=frozen_map(orgs), reshare=reshare)


def _agreement(root: Node, stem: str) -> Agreement:
    f = root.fields(
        required=("id", "title", "parties", "valid_from", "valid_until"),
        optional=("description", "receive", "constituents_may_receive_amber", "embargo_until",
                  "provider_attribution", "reshare", "redaction"),
    )
    agreement_id = f["id"].string(SLUG, "an agreement id (lowercase letters, digits, '.',"
                                        " '_', '-')")
    if agreement_id != stem:
        f["id"].fail(f"{agreement_id!r} does not match the file name; name the file "
                     f"agreements/{agreement_id}.yaml")
    title = f["title"].string()
    if "description" in f:
        f["description"].string()
    parties: list[str] = []
    for item in f["parties"].items():
        party = _org_name(item)
        if party in parties:
            item.fail(f"party {party!r} is listed twice")
        parties.append(party)
    if len(parties) < 2:
        f["parties"].fail("an agreement needs at least two parties")
    valid_from = f["valid_from"].timestamp()
    valid_until = f["valid_until"].timestamp()
    if valid_until <= valid_from:
        f["valid_until"].fail("must be later than valid_from")
    receive: dict[str, frozenset[Tlp]] = {}
    if "receive" in f:
        for party, node in f["receive"].entries():
            if party not in parties:
                node.fail(f"{party!r} is not a party to this agreement")
            receive[party] = node.levels(ALL_RECEIVABLE)
    embargo = None
    if "embargo_until" in f and f["embargo_until"].value is not None:
        embargo = f["embargo_until"].timestamp()
    attribution: Attribution = "may"
    if "provider_attribution" in f:
        text = f["provider_attribution"].string()
        for choice in _ATTRIBUTIONS:
            if text == choice:
                attribution = choice
                break
        else:
            f["provider_attribution"].fail(
                f"{text!r} is not an IEP 2.0 provider_attribution (use may, must or must-not)")
    reshare = _reshare(f["reshare"]) if "reshare" in f else Reshare(frozenset(), frozenset())
    party_redaction: dict[str, str] = {}
    constituent_redaction = None
    if "redaction" in f:
        r = f["redaction"].fields(optional=("parties", "constituents"))
        for party, node in r["parties"].entries() if "parties" in r else []:
            if party not in parties:
                node.fail(f"{party!r} is not a party to this agreement")
            party_redaction[party] = node.string(SLUG, "a redaction profile name")
        if "constituents" in r:
            constituent_redaction = r["constituents"].optional_string(
                SLUG, "a redaction profile name")
    amber = f.get("constituents_may_receive_amber")
    return Agreement(
        id=agreement_id,
        title=title,
        parties=tuple(parties),
        valid_from=valid_from,
        valid_until=valid_until,
        receive=frozen_map(receive),
        constituents_may_receive_amber=amber.boolean() if amber is not None else False,
        embargo_until=embargo,
        provider_attribution=attribution,
        reshare=reshare,
        party_redaction=frozen_map(party_redaction),
        constituent_redaction=constituent_redaction,
        source=root.file,
    )


def _check_agreement_refs(agreement: Agreement, community: Community,
                          profiles: Mapping[str, RedactionProfile]) -> None:
    where = agreement.source
    for party in agreement.parties:
        entry = community.entry(party)
        if entry is None:
            raise ConfigError(f"{where}: parties: {party!r} is not a member of the community"
                              f" {community.name!r} (see community.yaml)")
        if entry.kind is not OrgKind.MEMBER:
            raise ConfigError(f"{where}: parties: {party!r} is a {entry.kind.value} of the"
                              " community, not a member; only members can be parties")
    named = [(f"redaction.parties.{p}", n) for p, n in agreement.party_redaction.items()]
    if agreement.constituent_redaction is not None:
        named.append(("redaction.constituents", agreement.constituent_redaction))
    for key, profile in named:
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(f"{where}: {key}: unknown redaction profile {profile!r} "
                              f"(profiles in redaction/: {known})")


def _profile(root: Node, stem: str) -> RedactionProfile:
    f = root.fields(required=("name",), optional=("description", "drop", "replace"))
    name = f["name"].string(SLUG, "a profile name (lowercase letters, digits, '.', '_', '-')")
    if name != stem:
        f["name"].fail(f"{name!r} does not match the file name; name the file "
                       f"redaction/{name}.yaml")
    description = f["description"].string() if "description" in f else ""
    drop: list[str] = []
    for item in f["drop"].items() if "drop" in f else []:
        prop = item.string(_PROPERTY, "a STIX property name")
        if prop in PROTECTED_FIELDS:
            item.fail(f"{prop!r} cannot be dropped: it identifies, versions or marks the"
                      " object")
        if prop in drop:
            item.fail(f"{prop!r} is listed twice")
        drop.append(prop)
    replace: dict[str, str | int | bool] = {}
    for prop, node in f["replace"].entries() if "replace" in f else []:
        if not _PROPERTY.fullmatch(prop):
            node.fail(f"{prop!r} is not a STIX property name")
        if prop in PROTECTED_FIELDS:
            node.fail(f"{prop!r} cannot be replaced: it identifies, versions or marks the"
                      " object")
        if prop in drop:
            node.fail(f"{prop!r} is both dropped and replaced")
        replace[prop] = node.scalar()
    if not drop and not replace:
        root.fail("a redaction profile must drop or replace at least one property")
    return RedactionProfile(name=name, description=description, drop=tuple(drop),
                            replace=frozen_map(replace))


def _markings(root: Node) -> Mapping[str, Tlp | None]:
    f = root.fields(required=("markings",))
    out: dict[str, Tlp | None] = {}
    for item in f["markings"].items():
        m = item.fields(required=("id", "tlp"), optional=("name", "description"))
        ref = m["id"].string(MARKING_ID, "a marking-definition id (marking-definition--<uuid>)")
        if ref in TLP_MARKING_IDS:
            m["id"].fail(f"{ref} is already a TLP marking ({TLP_MARKING_IDS[ref].value});"
                         " a policy cannot remap it")
        if ref in out:
            m["id"].fail(f"{ref} is named twice")
        for key in ("name", "description"):
            if key in m:
                m[key].string()
        level = m["tlp"]
        out[ref] = None if level.value == "ignore" else level.level()
    return frozen_map(out)


def _collections(root: Node, community: Community, agreements: Mapping[str, Agreement]
                 ) -> Mapping[str, CollectionBinding]:
    f = root.fields(required=("collections",))
    out: dict[str, CollectionBinding] = {}
    for alias, node in f["collections"].entries():
        if not SLUG.fullmatch(alias):
            node.fail(f"{alias!r} is not a collection alias (lowercase letters, digits, '.',"
                      " '_', '-')")
        c = node.fields(optional=("agreement", "community", "owner", "description",
                                  "constituents_may_receive_amber", "require_signatures",
                                  "custom_content"))
        if ("agreement" in c) == ("community" in c):
            node.fail("bind the collection to exactly one of 'agreement' or 'community'")
        if "description" in c:
            c["description"].string()
        signatures = c["require_signatures"].boolean() if "require_signatures" in c else True
        custom = "accept"
        if "custom_content" in c:
            custom = c["custom_content"].string()
            if custom not in CUSTOM_CONTENT:
                c["custom_content"].fail(f"{custom[:40]!r} is not one of "
                                         + ", ".join(CUSTOM_CONTENT))
        if "agreement" in c:
            for key in ("owner", "constituents_may_receive_amber"):
                if key in c:
                    c[key].fail(f"{key!r} applies to community collections only; an "
                                "agreement sets its own parties and constituent rules")
            agreement = c["agreement"].string(SLUG, "an agreement id")
            if agreement not in agreements:
                known = ", ".join(sorted(agreements)) or "none"
                c["agreement"].fail(f"unknown agreement {agreement!r} (agreements/: {known})")
            out[alias] = CollectionBinding(alias=alias, agreement=agreement,
                                           require_signatures=signatures,
                                           custom_content=custom)
            continue
        name = c["community"].string(SLUG, "a community name")
        if name != community.name:
            c["community"].fail(f"unknown community {name!r} (community.yaml defines "
                                f"{community.name!r})")
        owner = None
        if "owner" in c:
            owner = _org_name(c["owner"])
            entry = community.entry(owner)
            if entry is None or entry.kind is not OrgKind.MEMBER:
                c["owner"].fail(f"owner {owner!r} is not a member of the community")
        amber = c.get("constituents_may_receive_amber")
        if amber is not None and owner is None:
            amber.fail("'constituents_may_receive_amber' needs an 'owner'")
        out[alias] = CollectionBinding(
            alias=alias, community=name, owner=owner,
            constituents_may_receive_amber=amber.boolean() if amber is not None else True,
            require_signatures=signatures, custom_content=custom,
        )
    return frozen_map(out)
