"""The shipped systemd units: valid for systemd, and the commands they run exist and
accept the flags they are given (with only the install prefix replaced)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exchange.config import load_settings
from exchange.node.service import init_home

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = ["exchange-taxii.service", "exchange-audit-sequencer.service"]


def _installed(unit: str, where: Path) -> Path:
    """The unit with /opt/cert-exchange replaced by this checkout and its venv."""
    text = (DEPLOY / unit).read_text()
    assert "/opt/cert-exchange/venv/bin/" in text
    text = text.replace("/opt/cert-exchange/venv", sys.prefix).replace(
        "/opt/cert-exchange/deploy", str(DEPLOY))
    path = where / unit
    path.write_text(text)
    return path


def _exec_start(path: Path) -> list[str]:
    line = next(x for x in path.read_text().splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("systemd-analyze is not installed")
        pytest.skip("systemd-analyze is not installed")
    path = _installed(unit, tmp_path)
    result = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True,
                            timeout=60, check=False)
    # an unknown key or a missing command is only a warning line to systemd: none allowed
    assert result.returncode == 0, result.stderr
    assert not (result.stdout + result.stderr).strip()


def test_taxii_unit_command_loads_the_app(tmp_path: Path) -> None:
    command = _exec_start(_installed("exchange-taxii.service", tmp_path))
    assert Path(command[0]).is_file()
    home = tmp_path / "home"
    init_home(load_settings(home, env={}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env.update(EXCHANGE_HOME=str(home), EXCHANGE_AUDIT_SEQUENCE_MS="0")
    result = subprocess.run([*command, "--check-config"], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


def test_sequencer_unit_command_accepts_its_flags(tmp_path: Path) -> None:
    command = _exec_start(_installed("exchange-audit-sequencer.service", tmp_path))
    assert Path(command[0]).is_file()
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "--watch" in result.stdout
