"""``exchange publish`` of an IOC list: send an unchanged IOC exactly as before.

The indicators :mod:`exchange.member.iocs` makes have deterministic ids but the run's
timestamps; :class:`~exchange.member.iocstate.IocState` remembers what was sent, so an
unchanged IOC is sent again byte for byte (the exchange stores nothing new), a changed
one becomes a new version of the same object, and only those two kinds and the new
ones are signed in this run. This module wires that into the command; the decisions are
the member module's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from exchange.config import DEFAULT_HOME
from exchange.member.client import PublishReport
from exchange.member.iocstate import STATE_FILE, IocState, Settled
from exchange.member.signer import SigningReport, sign_all
from exchange.signing.keys import SigningKey


def state_path(home: str | None, state_file: str | None) -> Path:
    """The IOC state file: ``--ioc-state``, else ``<home>/published-iocs.sqlite``."""
    if state_file:
        return Path(state_file)
    # the user's home as it is now (DEFAULT_HOME was fixed when the package was imported)
    return (Path(home) if home else Path.home() / DEFAULT_HOME.name) / STATE_FILE


class IocRun:
    """One publish of indicators made from an IOC list."""

    def __init__(self, state: IocState, settled: Settled, kid: str | None) -> None:
        self.state = state
        self.settled = settled
        self.kid = kid

    @classmethod
    def begin(cls, objects: Sequence[dict[str, Any]], *, path: Path,
              valid_days: int | None, key: SigningKey | None) -> IocRun:
        """Settle the generated indicators against what was sent before.

        Raises:
            ConfigError: The state file cannot be opened or read.
        """
        state = IocState(path)
        kid = key.kid if key is not None else None
        try:
            settled = state.settle(objects, valid_days=valid_days, kid=kid)
        except BaseException:
            state.close()
            raise
        return cls(state, settled, kid)

    @property
    def objects(self) -> list[dict[str, Any]]:
        """The indicators to send (unchanged ones as they were sent before)."""
        return self.settled.objects

    def sign(self, key: SigningKey) -> SigningReport:
        """Sign the new indicators and new versions; unchanged ones keep their signature.

        The report's ``objects`` are all of them, in order; ``kept`` stays empty for the
        unchanged ones (they are counted by :meth:`finish` instead).
        """
        fresh = [o for o in self.objects if o["id"] not in self.settled.unchanged]
        report = sign_all(fresh, key, normalise=True)
        signed = iter(report.objects)
        report.objects = [o if o["id"] in self.settled.unchanged else next(signed)
                          for o in self.objects]
        return report

    def finish(self, sent: Sequence[dict[str, Any]], report: PublishReport) -> None:
        """Remember what the server accepted and say what was unchanged.

        Raises:
            ConfigError: The state file cannot be written.
        """
        try:
            self.state.remember(sent, self.settled.digests, kid=self.kid,
                                refused=[i for i, _ in report.failures])
        finally:
            self.state.close()
        unchanged = len(self.settled.unchanged)
        versions = len(self.settled.new_versions)
        if unchanged or versions:
            click.echo(f"{unchanged} indicator(s) unchanged since they were last published"
                       f" (sent as before: the exchange stores nothing new), {versions} new"
                       f" version(s) of earlier indicators", err=True)

    def close(self) -> None:
        """Close the state without remembering anything (the publish did not happen)."""
        self.state.close()
