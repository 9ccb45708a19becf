"""Loading policies/: the shipped example, broken files, and the digest scheme."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from exchange.errors import ConfigError
from exchange.model.objects import Tlp
from exchange.policy.load import load_policies, parse_policies, read_policy_files
from exchange.policy.model import OrgKind, policy_digest

SHIPPED = Path(__file__).resolve().parents[3] / "policies"
AGREEMENT = "agreements/uz-pk-jwg-2026.yaml"
PROFILE = "redaction/jwg-constituents.yaml"


def shipped() -> dict[str, bytes]:
    return read_policy_files(SHIPPED)


def test_shipped_policies_load_with_the_demo_names() -> None:
    policy = load_policies(SHIPPED)
    agreement = policy.agreements["uz-pk-jwg-2026"]
    assert agreement.parties == ("UZ-CERT", "PK-CERT")
    assert agreement.constituents_may_receive_amber is True
    assert agreement.provider_attribution == "may"
    assert agreement.reshare.misp == {Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER}
    assert agreement.reshare.peer_exchanges == {Tlp.CLEAR, Tlp.GREEN}
    assert agreement.constituent_redaction == "jwg-constituents"
    assert policy.redaction_profiles["jwg-constituents"].drop == (
        "description", "external_references")
    # valid 2026-01-01 through 2027-12-31 (UTC)
    assert agreement.in_force(1767225600000000)  # 2026-01-01T00:00:00Z
    assert agreement.in_force(1830297599999999)  # 2027-12-31T23:59:59.999999Z
    assert not agreement.in_force(1830297600000000)  # 2028-01-01T00:00:00Z
    assert not agreement.in_force(1767225599999999)
    community = policy.community
    assert community.entry("UZ-SOC") is not None
    assert community.entry("UZ-SOC").parent == "UZ-CERT"  # type: ignore[union-attr]
    assert community.entry("JWG-Operator").kind is OrgKind.OPERATOR  # type: ignore[union-attr]
    assert set(community.members) == {"UZ-CERT", "PK-CERT"}
    assert set(policy.collections) == {"jwg", "uz", "pk"}
    assert policy.collections["jwg"].agreement == "uz-pk-jwg-2026"
    assert policy.collections["uz"].owner == "UZ-CERT"
    assert policy.collections["pk"].owner == "PK-CERT"
    assert "README.md" not in policy.files
    assert policy.files == (AGREEMENT, "collections.yaml", "community.yaml",
                            "markings.yaml", PROFILE)


def test_digest_is_stable_and_follows_the_documented_scheme() -> None:
    first = load_policies(SHIPPED).digest
    assert first == load_policies(SHIPPED).digest
    files = shipped()
    h = hashlib.sha256(b"cx-policy-digest v1\n")
    for path in sorted(files, key=str.encode):
        h.update(struct.pack(">Q", len(path.encode())) + path.encode())
        h.update(struct.pack(">Q", len(files[path])) + files[path])
    assert first == "sha256:" + h.hexdigest()


def test_digest_changes_when_one_byte_changes() -> None:
    files = shipped()
    base = parse_policies(files).digest
    changed = dict(files)
    changed[PROFILE] = files[PROFILE] + b" "
    assert parse_policies(changed).digest != base
    renamed = {("x" + k if k == "markings.yaml" else k): v for k, v in files.items()}
    assert policy_digest(renamed) != base


def test_notes_and_hidden_files_are_not_policy(tmp_path: Path) -> None:
    for name, content in shipped().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    base = load_policies(tmp_path).digest
    (tmp_path / "NOTES.md").write_text("anything")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("[core]")
    (tmp_path / "agreements" / ".uz.yaml.swp").write_bytes(b"\0\1")
    assert load_policies(tmp_path).digest == base


@pytest.mark.parametrize("name", ["agreements/old.yml", "agreements/old/x.yaml", "extra.yaml"])
def test_unexpected_file_is_refused(tmp_path: Path, name: str) -> None:
    for rel, content in shipped().items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(content)
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text("id: x\n")
    with pytest.raises(ConfigError, match=f"{name}: unexpected file"):
        load_policies(tmp_path)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_policies(tmp_path / "nope")


Edit = Callable[[dict[str, bytes]], None]


def sub(path: str, old: str, new: str, count: int = 1) -> Edit:
    def edit(files: dict[str, bytes]) -> None:
        text = files[path].decode()
        assert old in text, f"{old!r} not in {path}"
        files[path] = text.replace(old, new, count).encode()
    return edit


def put(path: str, content: bytes | None) -> Edit:
    def edit(files: dict[str, bytes]) -> None:
        if content is None:
            del files[path]
        else:
            files[path] = content
    return edit


BAD: list[tuple[str, Edit, str]] = [
    ("unknown-top-key", sub(AGREEMENT, "title:", "colour: red\ntitle:"),
     f"{AGREEMENT}: colour: unknown key 'colour'"),
    ("unknown-nested-key", sub(AGREEMENT, "  peer_exchanges:", "  peers:"),
     f"{AGREEMENT}: reshare.peers: unknown key 'peers'"),
    ("missing-required-key", sub(AGREEMENT, "title: UZ", "# title: UZ"),
     f"{AGREEMENT}: top level: missing required key 'title'"),
    ("missing-party", sub(AGREEMENT, "PK-CERT", "KZ-CERT", -1),
     "'KZ-CERT' is not a member of the community"),
    ("constituent-as-party", sub(AGREEMENT, "PK-CERT", "UZ-SOC", -1),
     "'UZ-SOC' is a constituent of the community, not a member"),
    ("bad-timestamp", sub(AGREEMENT, "valid_from: 2026-01-01T00:00:00Z",
                          "valid_from: 2026-01-01"),
     f"{AGREEMENT}: valid_from: '2026-01-01' is not a timestamp"),
    ("timestamp-without-zone", sub(AGREEMENT, "valid_from: 2026-01-01T00:00:00Z",
                                   "valid_from: 2026-01-01T00:00:00"),
     "a zone: Z or +HH:MM"),
    ("impossible-date", sub(AGREEMENT, "valid_from: 2026-01-01T00:00:00Z",
                            "valid_from: 2026-02-30T00:00:00Z"),
     "valid_from: '2026-02-30T00:00:00Z' is not a valid date and time"),
    ("window-backwards", sub(AGREEMENT, "valid_until: 2028-01-01T00:00:00Z",
                             "valid_until: 2025-01-01T00:00:00Z"),
     "valid_until: must be later than valid_from"),
    ("duplicate-key", sub(AGREEMENT, "title:", "title: again\ntitle:"),
     f"{AGREEMENT}: line 5: duplicate key 'title'"),
    ("duplicate-nested-key", sub(AGREEMENT, "  PK-CERT: [clear",
                                 "  UZ-CERT: [clear]\n  PK-CERT: [clear"),
     "duplicate key 'UZ-CERT'"),
    ("broken-yaml", sub(AGREEMENT, "parties: [UZ-CERT, PK-CERT]", "parties: [UZ-CERT, PK-CERT"),
     f"{AGREEMENT}: line"),
    ("broken-yaml-tab", put("community.yaml", b"name: x\n\tmembers: []\n"),
     "community.yaml: line 2, column 1: broken YAML"),
    # Found by tests/fuzz: PyYAML's composer recursed until RecursionError.
    ("nesting-5000-deep", put("community.yaml", b"a: " + b"[" * 5000 + b"]" * 5000),
     "community.yaml: line 1, column 35: nests deeper than 32 levels"),
    ("unknown-redaction-profile", sub(AGREEMENT, "constituents: jwg-constituents",
                                      "constituents: soc-light"),
     f"{AGREEMENT}: redaction.constituents: unknown redaction profile 'soc-light'"),
    ("redaction-for-non-party", sub(AGREEMENT, "parties: {}", "parties: {UZ-SOC: x}"),
     "redaction.parties.UZ-SOC: 'UZ-SOC' is not a party to this agreement"),
    ("unknown-level", sub(AGREEMENT, "misp: [clear, green, amber]", "misp: [clear, orange]"),
     f"{AGREEMENT}: reshare.misp[1]: unknown TLP level 'orange'"),
    ("level-twice", sub(AGREEMENT, "misp: [clear, green, amber]", "misp: [clear, white]"),
     "reshare.misp[1]: TLP level 'clear' is listed twice"),
    ("red-granted-by-agreement", sub(AGREEMENT, "UZ-CERT: [clear, green, amber, amber+strict]",
                                     "UZ-CERT: [clear, red]"),
     "receive.UZ-CERT[1]: TLP level 'red' is not allowed here"),
    ("bad-attribution", sub(AGREEMENT, "\nprovider_attribution: may",
                            "\nprovider_attribution: never"),
     "'never' is not an IEP 2.0 provider_attribution"),
    ("wrong-type", sub(AGREEMENT, "constituents_may_receive_amber: true",
                       "constituents_may_receive_amber: sometimes"),
     "constituents_may_receive_amber: expected true or false, found a string ('sometimes')"),
    ("id-not-file-name", sub(AGREEMENT, "id: uz-pk-jwg-2026", "id: uz-pk-jwg-2027"),
     "name the file agreements/uz-pk-jwg-2027.yaml"),
    ("profile-drops-id", sub(PROFILE, "  - description", "  - id"),
     f"{PROFILE}: drop[0]: 'id' cannot be dropped"),
    ("collection-unknown-agreement", sub("collections.yaml", "agreement: uz-pk-jwg-2026",
                                         "agreement: uz-pk-jwg-2025"),
     "collections.yaml: collections.jwg.agreement: unknown agreement 'uz-pk-jwg-2025'"),
    ("collection-two-bindings", sub("collections.yaml", "agreement: uz-pk-jwg-2026",
                                    "agreement: uz-pk-jwg-2026\n    community: x"),
     "collections.jwg: bind the collection to exactly one"),
    ("collection-owner-not-member", sub("collections.yaml", "owner: UZ-CERT", "owner: UZ-SOC"),
     "collections.uz.owner: owner 'UZ-SOC' is not a member"),
    ("collection-unknown-community", sub("collections.yaml", "community: uz-pk-cert-community",
                                         "community: elsewhere"),
     "unknown community 'elsewhere'"),
    ("marking-remaps-tlp", sub("markings.yaml", "ad15a0cd-55b6-4588-a14c-a66105329b92",
                               "34098fce-860f-48ae-8e50-ebd3cc5e41da"),
     "markings.yaml: markings[0].id: marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
     " is already a TLP marking (green); a policy cannot remap it"),
    ("org-twice", sub("community.yaml", "  - name: PK-CERT", "  - name: UZ-SOC"),
     "organisation 'UZ-SOC' is named twice"),
    ("bad-identity", sub("community.yaml", "  - name: PK-CERT",
                         "  - name: PK-CERT\n    identity: pk-cert"),
     "members[1].identity: 'pk-cert' is not a STIX identity id"),
    ("missing-community", put("community.yaml", None), "community.yaml: missing"),
    ("empty-file", put("collections.yaml", b"# nothing yet\n"),
     "collections.yaml: the file is empty"),
    ("not-utf8", put("markings.yaml", b"markings: []\n# \xff\n"), "markings.yaml: not UTF-8"),
    ("non-string-key", sub("collections.yaml", "  pk:", "  1:"),
     "collections: key 1 is not a string"),
    ("unknown-custom-content", sub("collections.yaml", "    agreement: uz-pk-jwg-2026",
                                   "    agreement: uz-pk-jwg-2026\n    custom_content: some"),
     "collections.jwg.custom_content: 'some' is not one of accept, no-custom-objects,"
     " predefined-only"),
]


def test_custom_content_binding_defaults_to_accept() -> None:
    files = shipped()
    sub("collections.yaml", "    agreement: uz-pk-jwg-2026",
        "    agreement: uz-pk-jwg-2026\n    custom_content: predefined-only")(files)
    collections = parse_policies(files).collections
    assert collections["jwg"].custom_content == "predefined-only"
    assert collections["uz"].custom_content == "accept"


@pytest.mark.parametrize(("edit", "phrase"), [(e, p) for _, e, p in BAD],
                         ids=[case for case, _, _ in BAD])
def test_broken_policy_is_refused_with_a_clear_message(edit: Edit, phrase: str) -> None:
    files = shipped()
    edit(files)
    with pytest.raises(ConfigError) as info:
        parse_policies(files)
    assert phrase in str(info.value)


def test_embargo_and_receive_defaults() -> None:
    files = shipped()
    sub(AGREEMENT, "# embargo_until: 2026-03-01T00:00:00Z",
        "embargo_until: 2026-03-01T00:00:00Z")(files)
    sub(AGREEMENT, "  PK-CERT: [clear, green, amber, amber+strict]\n", "")(files)
    agreement = parse_policies(files).agreements["uz-pk-jwg-2026"]
    assert agreement.embargo_until == 1772323200000000
    assert agreement.embargoed(1772323199999999)
    assert not agreement.embargoed(1772323200000000)
    assert agreement.levels_for("PK-CERT") == {Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER,
                                               Tlp.AMBER_STRICT}
