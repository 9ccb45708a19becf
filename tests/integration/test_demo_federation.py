"""``exchange demo --federation`` as a new user meets it: two nodes, a pull, its proof.

The demo runs as a child process from the project root on free loopback ports with a
temporary home; every command it prints runs as pasted (``bash -c`` in the project root,
no ``EXCHANGE_*`` variable); SIGINT (Ctrl-C) stops both nodes and exits 0.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from exchange.cli.demo_federation import GUIDE_END
from tests.integration.conftest import free_port
from tests.integration.test_demo import PROJECT, Demo, _demo_env, paste


def _two_free_ports() -> int:
    for _ in range(20):
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    pytest.fail("no two consecutive free ports")


def test_two_nodes_federate_and_the_indicator_verifies_at_the_other(tmp_path: Path) -> None:
    port = _two_free_ports()
    home = tmp_path / "federation"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exchange", "--home", str(home), "demo", "--federation",
         "--port", str(port)],
        cwd=PROJECT, env=_demo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    demo = Demo(proc, [])
    try:
        demo.read_guide(GUIDE_END)
        lines = demo.lines
        text = "\n".join(lines)
        assert "UZ pulled PK's jwg: 3 imported, 0 refused" in text
        assert "signed by the author PK-CERT" in text
        [verified] = [x for x in lines if x.startswith("at UZ")]
        found = re.search(r": valid\s+(indicator--\S+)\s+signed by the author PK-CERT", verified)
        assert found, verified
        disclosed = [x for x in lines if x.strip().startswith("peer:get_objects")]
        assert len(disclosed) == 3
        assert all(" uz-node " in x and "TLP:GREEN" in x for x in disclosed)
        assert found.group(1) in text.split("disclosures to UZ-CERT:")[1]
        assert "PK pulled UZ's jwg: 1 imported (UZ-CERT's own indicator" in text

        commands = demo.commands
        assert len(commands) == 10
        user_home = tmp_path / "user"
        user_home.mkdir()
        out: dict[str, str] = {}
        for command in commands:
            done = paste(command, user_home)
            assert done.returncode == 0, (command, done.stderr)
            out[command] = done.stdout
        [status] = [out[c] for c in commands if c.endswith("sync status")]
        # the peer source is in UZ's sources file, and its run mirrored PK-CERT's key
        assert "pk (TAXII source): ok" in status, status
        assert "PK-CERT's keys mirrored from the peer's registry: registered" in status
        [keys] = [out[c] for c in commands if c.endswith("keys list --org PK-CERT")]
        assert "PK-CERT" in keys, keys
        assert "active" in keys, keys
        # the IOC PK-CERT published after the demo arrived at UZ with the next run
        [pulled] = [out[c] for c in commands if c.endswith("sync run pk")]
        assert "source pk: ok" in pulled, pulled
        assert "1 created in jwg" in pulled, pulled
        listed = paste(commands[0].replace("peer list", "peer list --json"), user_home)
        trusted = json.loads(listed.stdout)["trusted"]
        assert [t["name"] for t in trusted] == ["pk"]
        registry = paste(commands[-1], user_home).stdout
        assert json.loads(registry)["payloadType"].startswith(
            "application/vnd.cti-exchange.member-registry+json")
    finally:
        if proc.poll() is None:
            demo.stop()
    assert proc.returncode == 0, "".join(demo.stderr)
    assert "federation demo stopped" in "".join(demo.stderr)
