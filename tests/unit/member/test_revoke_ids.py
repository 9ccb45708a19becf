"""The ids ``exchange publish --revoke FILE`` reads: an id list or a STIX bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exchange.errors import InvalidInput
from exchange.member.revoke import read_ids

A = "indicator--d81f86b9-975b-4c0b-875e-810c5ad45a4f"
B = "malware--162d917e-766f-4611-b5d6-652791454fca"


def test_one_id_per_line_with_comments_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text(f"# withdrawn after the 2026-11 review\n{A}\n\n{B}  # sinkholed\n{A}\n")
    assert read_ids(path) == [A, B]


def test_a_bundle_gives_its_versionable_objects(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps({"type": "bundle", "objects": [
        {"type": "indicator", "id": A, "modified": "2026-01-01T00:00:00Z"},
        {"type": "ipv4-addr", "id": "ipv4-addr--ff26c055-6336-5bc5-b98d-13d6226742dd"},
        {"type": "malware", "id": B, "modified": "2026-01-01T00:00:00Z"},
    ]}))
    assert read_ids(path) == [A, B]


@pytest.mark.parametrize(("text", "message"), [
    pytest.param(f"{A}\nnot-an-id\n", "line 2: 'not-an-id' is not a STIX id", id="bad-line"),
    pytest.param("# nothing\n\n", "names no object that can be revoked", id="empty"),
    pytest.param('{"type": "bundle"}', "not a STIX bundle", id="no-objects"),
    pytest.param("{broken", "not valid JSON", id="broken-json"),
])
def test_refusals(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "ids"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message):
        read_ids(path)
