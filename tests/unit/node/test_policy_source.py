"""Policy reload: a changed directory takes effect; a broken change is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from exchange.errors import ConfigError
from exchange.node.policy_source import PolicySource

SHIPPED = Path(__file__).resolve().parents[3] / "policies"


def test_reload_applies_good_changes_and_keeps_the_old_set_on_broken_ones(
        tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    shutil.copytree(SHIPPED, directory)
    source = PolicySource(directory, interval=0)
    first = source.load()
    assert source.current().digest == first.digest

    community = directory / "community.yaml"
    good = community.read_text()
    community.write_text(good + "\n# a comment changes the digest, not the meaning\n")
    second = source.current()
    assert second.digest != first.digest

    community.write_text("name: [broken\n")
    assert source.current().digest == second.digest
    assert source.last_error is not None
    assert "community.yaml" in source.last_error

    community.write_text(good)
    assert source.current().digest == first.digest
    assert source.last_error is None


def test_a_broken_policy_refuses_to_start(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    shutil.copytree(SHIPPED, directory)
    (directory / "collections.yaml").write_text("collections:\n  jwg:\n    agreement: nope\n")
    with pytest.raises(ConfigError, match="nope"):
        PolicySource(directory).load()
