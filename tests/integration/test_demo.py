"""``exchange demo`` as a new user meets it: every command it prints runs as pasted.

The demo runs as a child process from the project root on a free loopback port, with a
temporary home. Each printed command is run by ``bash -c`` from the project root in an
environment holding only what a new login shell has (PATH, HOME, LANG): no
``EXCHANGE_*`` variable, no activated virtualenv. The demo is stopped with SIGINT, as
Ctrl-C does, and must exit 0; a second run must serve the same data (the printed
``pull`` resumes from its cursor), and ``--fresh`` must start over. Every subprocess has
a timeout, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from pymisp import PyMISP

from exchange.audit.checkpoint import NoteKey
from exchange.cli.demo import GUIDE_END
from exchange.model.tlp import TLP2_IDS
from tests.integration.conftest import TAXII, Misp, free_port

PROJECT = Path(__file__).resolve().parents[2]
TLP2 = {level.value: marking for level, marking in TLP2_IDS.items()}
STARTUP_SECONDS = 180  # init, a few hundred signatures, gunicorn: far less on any machine
COMMAND_SECONDS = 120


@dataclass
class Demo:
    """A running ``exchange demo`` child and what it printed."""

    proc: subprocess.Popen[str]
    lines: list[str]
    stderr: list[str] = field(default_factory=list)

    @property
    def commands(self) -> list[str]:
        """The printed commands: the lines indented by exactly four spaces."""
        return [line[4:] for line in self.lines
                if line.startswith("    ") and not line.startswith("     ")]

    def command(self, phrase: str) -> str:
        found = [c for c in self.commands if phrase in c]
        assert len(found) == 1, (phrase, self.commands)
        return found[0]

    def read_guide(self, end: str) -> None:
        """Read what the demo prints up to the guide's last line ``end`` into :attr:`lines`
        (its standard error into :attr:`stderr`, in the background); fail if it prints no
        guide within :data:`STARTUP_SECONDS` or exits first."""
        sink: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(self.proc.stdout, sink), daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr or []),
                         daemon=True).start()
        while True:
            try:
                line = sink.get(timeout=STARTUP_SECONDS)
            except queue.Empty:
                pytest.fail(f"the demo printed no guide within {STARTUP_SECONDS} s:"
                            f" {self.lines}")
            if line is None:
                self.proc.wait(timeout=30)
                pytest.fail(f"the demo exited with {self.proc.returncode}:"
                            f" {''.join(self.stderr)}")
            self.lines.append(line.rstrip("\n"))
            if self.lines[-1] == end:
                return

    def stop(self) -> tuple[int, str]:
        """Ctrl-C: SIGINT to the demo process; its exit status and standard error."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            pytest.fail("the demo did not stop within 60 s of SIGINT")
        return self.proc.returncode, "".join(self.stderr)


def _pump(stream: object, sink: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sink.put(line)
    sink.put(None)


def _demo_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}


@pytest.fixture
def start(tmp_path: Path) -> Iterator[object]:
    running: list[Demo] = []

    def _start(home: Path, port: int, *extra: str) -> Demo:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exchange", "--home", str(home), "demo", "--port",
             str(port), "--count", "40", *extra],
            cwd=PROJECT, env=_demo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        demo = Demo(proc, [])
        running.append(demo)
        demo.read_guide(GUIDE_END)
        return demo

    yield _start
    for demo in running:
        if demo.proc.poll() is None:
            demo.proc.send_signal(signal.SIGINT)
            try:
                demo.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.proc.kill()
                demo.proc.wait(timeout=30)


def paste(command: str, user_home: Path) -> subprocess.CompletedProcess[str]:
    """Run a printed command as a new shell in the project root would."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(user_home),
           "LANG": "C.UTF-8"}
    return subprocess.run(["bash", "-c", command], cwd=PROJECT, env=env, text=True,
                          capture_output=True, timeout=COMMAND_SECONDS, check=False)


def readme_demo_block() -> str:
    """The first ``sh`` block of the README's "Publishing and pulling" section."""
    text = (PROJECT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Publishing and pulling", 1)[1].split("\n### ", 1)[0]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def _all_indicators(url: str, key: str, user: str = "uz-soc") -> list[dict[str, object]]:
    objects: list[dict[str, object]] = []
    params: dict[str, str] = {"match[type]": "indicator", "limit": "1000"}
    while True:
        r = requests.get(url + "objects/", params=params, auth=(user, key),
                         headers={"Accept": TAXII}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        objects += body.get("objects", [])
        if not body.get("more"):
            return objects
        params["next"] = body["next"]


def test_every_printed_command_runs_as_pasted_and_ctrl_c_exits_0(
        start: object, tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    user_home = tmp_path / "user"
    user_home.mkdir()
    port = free_port()
    before = set(PROJECT.iterdir())
    demo = start(home, port)  # type: ignore[operator]
    guide = "\n".join(demo.lines)
    assert "--sign-key" in guide
    assert "--passphrase-file" in guide
    for secret in ("uz-cert-signing.key", "uz-cert-signing.passphrase", "api-keys/uz-soc.key"):
        assert oct((home / secret).stat().st_mode & 0o777) == "0o600", secret
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    assert not any(c.startswith("exchange ") for c in demo.commands)  # never bare
    # the demo runs under the project's working-group policy, not the built-in baseline
    policies = PROJECT / "policies"
    assert f'policy_dir = "{policies}"' in (home / "exchange.toml").read_text()
    assert "MISP sync is not set up" in guide  # and says how to set it up
    credentials = json.loads((home / "demo-credentials.json").read_text())
    soc_key = credentials["keys"]["uz-soc"]
    jwg = f"http://127.0.0.1:{port}/cx/collections/{credentials['collections']['jwg']}/"

    newest_command = demo.command("curl ")
    for command in demo.commands:
        if command.startswith("curl ") and shutil.which("curl") is None:
            continue
        done = paste(command, user_home)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        if command == newest_command:
            # TAXII lists oldest first: the command labelled "newest" must return the
            # last five the SOC may read, not the first five
            served = [o["id"] for o in json.loads(done.stdout)["objects"]]
            everything = [o["id"] for o in _all_indicators(jwg, soc_key)]
            assert len(everything) > 5
            assert served == everything[-5:]
        elif " pull " in command:
            assert re.match(r"\d+ new objects", done.stdout), done.stdout
            assert int(done.stdout.split()[0]) > 0
        elif " publish " in command:
            assert "2 of 2 objects accepted" in done.stdout, done.stdout
            assert "normalised" not in done.stderr.replace("0 normalised", "")
        elif command.endswith("audit key"):
            NoteKey.parse(done.stdout.strip())
        elif "taxii2client" in command:
            assert done.stdout.strip().endswith("objects")

    # publishing the unchanged IOC list again makes no new version
    again = paste(demo.command(" publish "), user_home)
    assert again.returncode == 0, again.stderr
    assert "2 indicator(s) unchanged" in again.stderr

    code, stderr = demo.stop()
    assert code == 0, stderr
    assert "demo stopped" in stderr
    assert "error" not in stderr.lower()
    assert set(PROJECT.iterdir()) == before  # every file went into the demo home

    # a second run serves the same home: the printed pull resumes from its cursor
    second = start(home, port)  # type: ignore[operator]
    assert second.command(" pull ") == demo.command(" pull ")
    resumed = paste(second.command(" pull "), user_home)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("2 new objects"), resumed.stdout  # the two IOCs

    # the README's "Publishing and pulling" example, as written, against this demo
    script = readme_demo_block().replace(".exchange/demo", shlex.quote(str(home)))
    script = script.replace("127.0.0.1:8421", f"127.0.0.1:{port}")
    done = paste(f"set -euo pipefail\nsource .venv/bin/activate\n{script}", user_home)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "3 indicator(s) unchanged" in done.stderr  # the second publish of iocs.txt
    NoteKey.parse(done.stdout.strip().splitlines()[-1])  # exchange audit key
    feed = [json.loads(line) for line in (home / "feed.jsonl").read_text().splitlines()]
    patterns = " ".join(str(o.get("pattern", "")) for o in feed)
    assert "evil-login.example.com" in patterns
    assert "203.0.113.9" in patterns
    assert set(PROJECT.iterdir()) == before
    code, _ = second.stop()
    assert code == 0

    # --fresh starts over: new collections, and the old feed and cursor are gone
    third = start(home, port, "--fresh")  # type: ignore[operator]
    assert not (home / "jwg.jsonl.cursor").exists()
    assert third.command(" pull ") != demo.command(" pull ")
    fresh_pull = paste(third.command(" pull "), user_home)
    assert fresh_pull.returncode == 0, fresh_pull.stderr
    code, _ = third.stop()
    assert code == 0


def test_the_demo_keeps_two_real_misps_in_sync_and_its_sync_commands_run_as_pasted(
        start: object, tmp_path: Path, misp_uz: Misp, misp_pk: Misp) -> None:
    home = tmp_path / "demo-misp"
    user_home = tmp_path / "user"
    user_home.mkdir()
    args: list[str] = []
    for misp in (misp_uz, misp_pk):
        key_file = tmp_path / f"{misp.name}.key"
        key_file.write_text(misp.key + "\n")
        key_file.chmod(0o600)
        args += ["--misp", misp.url, "--misp-key-file", str(key_file)]
    demo = start(home, free_port(), *args)  # type: ignore[operator]
    guide = "\n".join(demo.lines)
    keys = (misp_uz.key, misp_pk.key)
    assert not any(k in guide for k in keys)
    for target in ("uz-cert-misp", "pk-cert-misp"):
        # created on a new MISP, updated where an earlier demo home left them
        assert re.search(rf"^  - {target} push: ok \(.*pushed \d+", guide, re.M), guide
        assert re.search(rf"^  - {target} pull: ok", guide, re.M), guide
        assert oct((home / f"{target}.key").stat().st_mode & 0o777) == "0o600"
    targets_file = (home / "misp-targets.yaml").read_text()
    assert not any(k in targets_file for k in keys)

    for command in (demo.command(" sync status"), demo.command(" sync run ")):
        done = paste(command, user_home)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert not any(k in done.stdout + done.stderr for k in keys)
        assert "uz-cert-misp" in done.stdout
    status = paste(demo.command(" sync status"), user_home).stdout
    for line in ("uz-cert-misp push: ok", "uz-cert-misp pull: ok", "pk-cert-misp push: ok",
                 "pk-cert-misp pull: ok"):
        assert line in status, status

    # What the demo published to the joint collection at GREEN is on both members'
    # MISPs, by UUID; one member's AMBER+STRICT is on its own MISP only (the agreement's
    # re-share rule keeps it off the other's).
    credentials = json.loads((home / "demo-credentials.json").read_text())
    port = demo.command(" pull ").split("127.0.0.1:", 1)[1].split("/", 1)[0]
    jwg = f"http://127.0.0.1:{port}/cx/collections/{credentials['collections']['jwg']}/"
    producer_of = {identity: org for org, identity in credentials["orgs"].items()}
    found: dict[tuple[str, str], list[str]] = {}
    for indicator in _all_indicators(jwg, credentials["keys"]["uz-analyst"], "uz-analyst"):
        refs = indicator.get("object_marking_refs") or []
        level = next((n for n, i in TLP2.items() if i in refs), None)
        producer = producer_of.get(str(indicator.get("created_by_ref")))
        if level is not None and producer is not None:
            found.setdefault((level, producer), []).append(str(indicator["id"]).split("--")[1])
    green = found.get(("green", "UZ-CERT"), []) + found.get(("green", "PK-CERT"), [])
    assert green
    for misp, owner, other in ((misp_uz, "UZ-CERT", "PK-CERT"),
                               (misp_pk, "PK-CERT", "UZ-CERT")):
        reader = PyMISP(misp.url, misp.key, timeout=30)
        held = reader.search(controller="attributes", uuid=green[:20], pythonify=False)
        assert isinstance(held, dict)
        assert held.get("Attribute"), misp.name
        theirs = found.get(("amber+strict", other), [])
        if theirs:
            held = reader.search(controller="attributes", uuid=theirs, pythonify=False)
            assert isinstance(held, dict)
            assert held.get("Attribute") == [], (misp.name, owner)

    code, stderr = demo.stop()
    assert code == 0, stderr
    assert not any(k in stderr for k in keys)
