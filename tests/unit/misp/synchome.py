"""An exchange home set up for the MISP sync in tests: the shipped policies/, a targets
file of the test's own, a SQLite database (or a PostgreSQL schema) made by ``init_home``.

Used by the unit tests of the sync and its commands, the fault tests (real MISP) and the
leader test (two scheduler processes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from exchange.config import Settings, load_settings
from exchange.misp.client import MispClient
from exchange.misp.report import RunReport
from exchange.misp.targets import MispTarget
from exchange.node.service import Exchange, init_home

REPO = Path(__file__).resolve().parents[3]
KEY_ENV = "EXCHANGE_MISP_KEY_PK_TEST"


def targets_yaml(pk_url: str = "http://127.0.0.1:9", uz_url: str = "http://127.0.0.1:10",
                 uz_key_file: str = "uz.key", pk_schedule: str = "interval: 900") -> str:
    """Two targets: PK-CERT's (both ways, key in ``$EXCHANGE_MISP_KEY_PK_TEST``) and
    UZ-CERT's (push only, on weekdays every 15 minutes, key in a file)."""
    return f"""version: 1
targets:
  pk-cert-misp:
    url: {pk_url}
    api_key_env: {KEY_ENV}
    owner: PK-CERT
    direction: both
    schedule: {{{pk_schedule}}}
    timeout: 5
  uz-cert-misp:
    url: {uz_url}
    api_key_file: {uz_key_file}
    owner: UZ-CERT
    direction: push
    schedule: {{cron: "*/15 * * * 1-5"}}
"""


def make_home(home: Path, *, database_url: str = "", targets: str | None = None,
              extra: str = "") -> Settings:
    """Create a home whose ``exchange.toml`` names the policies and a targets file.

    Returns:
        Its settings (read with an empty environment).
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / "uz.key").write_text("uz-key-from-a-file-0123456789\n")
    (home / "misp-targets.yaml").write_text(targets if targets is not None
                                            else targets_yaml(uz_key_file=str(home / "uz.key")))
    toml = (f'policy_dir = "{REPO / "policies"}"\nmisp_targets = "misp-targets.yaml"\n'
            + (f'database_url = "{database_url}"\n' if database_url else "") + extra)
    (home / "exchange.toml").write_text(toml)
    init_home(load_settings(home, env={}))
    return load_settings(home, env={})


Run = Callable[..., RunReport]


def fake_run(counts: dict[str, int] | None = None, *, cursor: str | None = "100",
             skipped: int = 0, failed: int = 0, plan: list[str] | None = None,
             error: Exception | None = None, calls: list[str] | None = None,
             direction: str = "push") -> Run:
    """A push or pull stand-in: reports ``counts``, ``skipped`` and ``failed`` items and
    the cursor ``cursor``, or raises ``error``."""

    def run(node: Exchange, target: MispTarget, client: MispClient, *,
            dry_run: bool = False, now: int | None = None) -> RunReport:
        assert isinstance(node, Exchange)
        assert isinstance(client, MispClient)
        if calls is not None:
            calls.append(f"{target.name} dry_run={dry_run}")
        if error is not None:
            raise error
        state = node.store.misp_state(target.name, direction)
        report = RunReport(target.name, direction, dry_run=dry_run,
                           cursor_before=state.cursor if state else None)
        report.counts.update(counts or {})
        for i in range(skipped):
            report.skip(f"indicator--{i:08d}-0000-4000-8000-000000000000", "tlp-ceiling",
                        "TLP:RED is above the target's ceiling amber")
        for i in range(failed):
            report.fail(f"indicator--{i:08d}-1111-4000-8000-000000000000", "misp-refused",
                        "MISP refused the attribute: value is not a valid ip-dst")
        report.plan.extend(plan or [])
        report.cursor_after = cursor
        return report

    return run
