"""One sync run of one MISP target in one direction, and the state it leaves behind.

:func:`run_target` is what ``exchange sync run`` and the scheduler's jobs call: it reads
the target's API key, builds the :class:`~exchange.misp.client.MispClient`, calls the push
or pull (``exchange.misp.push.run_push``, ``exchange.misp.pull.run_pull``, found by name
through :data:`RUNNERS` so this module does not depend on them), and records the run as
the target's :class:`~exchange.storage.base.MispSyncState`: the cursor the run reached,
its outcome, counts and reasons, and the count of consecutive failures the scheduler's
backoff reads. A dry run writes nothing, not even the state.

How a run ends (:class:`~exchange.misp.report.Outcome`):

* ``ok`` / ``partial``: what the push or pull said; the cursor becomes its
  ``cursor_after`` (which stops before the first item that failed);
* ``auth-failed``: MISP refused the API key, or the key cannot be read. The scheduler
  stops the job until the key or the targets file changes;
* ``failed``: MISP could not be reached, kept failing (5xx, timeouts, resets after the
  client's retries), or refused the whole run. The cursor stays where it was.

Also here, for the scheduler and the command line: :func:`load_node_targets` (the targets
file of the node's settings, checked against its sharing policy) and :func:`open_node`
(the node with its policy in force). The API key is never logged or stored.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Protocol

from exchange.config import Settings
from exchange.errors import AuthError, ConfigError, ExchangeError, NotFound
from exchange.misp.client import MispClient, read_api_key
from exchange.misp.report import MAX_ITEMS, Outcome, RunReport
from exchange.misp.targets import MispTarget, check_owners, load_targets
from exchange.node.base import now_micros
from exchange.node.policy_source import PolicySource
from exchange.node.service import Exchange
from exchange.storage import open_store
from exchange.storage.base import MispSyncState

__all__ = [
    "DIRECTIONS",
    "RUNNERS",
    "Runner",
    "directions_for",
    "load_node_targets",
    "open_node",
    "run_target",
    "runner_for",
    "summary",
    "target_named",
]

log = logging.getLogger(__name__)

#: The directions one run can take (a target's ``both`` is two runs).
DIRECTIONS = ("push", "pull")


class Runner(Protocol):
    """A push or a pull: ``run_push``/``run_pull``'s signature."""

    def __call__(self, node: Exchange, target: MispTarget, client: MispClient, *,
                 dry_run: bool = False, now: int | None = None) -> RunReport: ...


#: Where each direction's run is: ``"module:function"``, imported on first use, or the
#: function itself (tests put fakes here).
RUNNERS: dict[str, str | Runner] = {
    "push": "exchange.misp.push:run_push",
    "pull": "exchange.misp.pull:run_pull",
}


def runner_for(direction: str, runners: Mapping[str, str | Runner] | None = None
               ) -> Runner:
    """The run function of a direction.

    Args:
        direction: ``push`` or ``pull``.
        runners: Overrides of :data:`RUNNERS` (by direction).

    Raises:
        ConfigError: The direction is unknown, or its module is not installed.
    """
    table = {**RUNNERS, **(runners or {})}
    found = table.get(direction)
    if found is None:
        raise ConfigError(f"unknown sync direction {direction!r} (use push or pull)")
    if not isinstance(found, str):
        return found
    module_name, _, name = found.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise ConfigError(f"MISP {direction} is not available in this installation"
                          f" ({module_name} is missing)") from None
    run: Runner = getattr(module, name)
    return run


def load_node_targets(settings: Settings, node: Exchange | None = None
                      ) -> tuple[MispTarget, ...]:
    """The MISP targets of a node: its ``misp_targets`` file, checked against its policy.

    Args:
        settings: The node's settings.
        node: The node, for the policy in force (else the policy is read from
            ``policy_dir``).

    Raises:
        ConfigError: No targets file is configured, it is broken, there is no sharing
            policy to judge pushes by, or a target's owner is not a member organisation.
    """
    path = settings.misp_targets_path
    if path is None:
        raise ConfigError("no MISP targets: set misp_targets in exchange.toml (or"
                          " EXCHANGE_MISP_TARGETS) to the targets file, e.g."
                          " feeds/misp-targets.yaml")
    targets = load_targets(path)
    if node is not None and node.policy is not None:
        policy = node.policy.current()
    elif settings.policy_path is not None:
        policy = PolicySource(settings.policy_path).load()
    else:
        raise ConfigError("MISP sync needs a sharing policy to judge what each target's"
                          " owner may receive: set policy_dir in exchange.toml")
    check_owners(targets, policy, str(path))
    return targets


@contextmanager
def open_node(settings: Settings) -> Iterator[Exchange]:
    """The node over its store, with its sharing policy in force (closed on exit).

    Raises:
        ConfigError: The schema is not current or the policy files are broken.
        StorageError: The database cannot be reached.
    """
    policy = None
    if settings.policy_path is not None:
        policy = PolicySource(settings.policy_path)
        policy.load()
    store = open_store(settings)
    try:
        store.check_schema()
        node = Exchange(settings, store, policy=policy)
        node.record_policy_in_force()
        yield node
    finally:
        store.close()


def target_named(targets: Sequence[MispTarget], name: str) -> MispTarget:
    """The target called ``name``.

    Raises:
        NotFound: No such target (the message lists the configured ones).
    """
    for target in targets:
        if target.name == name:
            return target
    known = ", ".join(t.name for t in targets) or "none"
    raise NotFound(f"no MISP target {name!r} (configured: {known})")


def directions_for(target: MispTarget, wanted: str = "both") -> list[str]:
    """The directions to run for a target: ``wanted`` narrowed to what it is set up for.

    Raises:
        ConfigError: ``wanted`` is a direction the target is not set up for.
    """
    own = [d for d, on in (("push", target.direction.pushes),
                           ("pull", target.direction.pulls)) if on]
    if wanted == "both":
        return own
    if wanted not in own:
        raise ConfigError(f"target {target.name!r} is set up for {target.direction}, not"
                          f" {wanted}")
    return [wanted]


def summary(report: RunReport) -> str:
    """``created 2, updated 1, skipped 3`` (zero counts left out), or ``nothing to do``."""
    parts = [f"{name} {count}" for name, count in sorted(report.counts.items()) if count]
    return ", ".join(parts) or "nothing to do"


def run_target(node: Exchange, target: MispTarget, direction: str, *,
               dry_run: bool = False, client: MispClient | None = None,
               runners: Mapping[str, str | Runner] | None = None,
               now: int | None = None) -> RunReport:
    """Run one direction of one target and record how it went.

    Args:
        node: The node, with its policy in force.
        target: The target.
        direction: ``push`` or ``pull``.
        dry_run: Only say what would be done; write nothing (no state either).
        client: The client to use (default: one built from the target and its key).
        runners: Overrides of :data:`RUNNERS`.
        now: The time of the run in µs since the epoch (default: the clock).

    Returns:
        The run's report; its outcome says how it ended (errors of the run are caught and
        become ``failed`` or ``auth-failed``).

    Raises:
        ConfigError: ``direction`` is not one the target is set up for.
        StorageError: The state could not be read or saved.
    """
    directions_for(target, direction)
    started = now if now is not None else now_micros()
    store = node.store
    previous = (store.misp_state(target.name, direction)
                or MispSyncState(target.name, direction))
    if not dry_run:
        store.save_misp_state(replace(previous, outcome=Outcome.RUNNING.value,
                                      last_started=started, message="running"))
    report = RunReport(target.name, direction, dry_run=dry_run,
                       cursor_before=previous.cursor)
    key: str | None = None
    try:
        run = runner_for(direction, runners)
        if client is None:
            try:
                key = read_api_key(target)
            except ConfigError as e:
                raise AuthError(e.reason) from None
            client = MispClient(target, key)
        report = run(node, target, client, dry_run=dry_run, now=now)
    except AuthError as e:
        report.outcome = Outcome.AUTH_FAILED
        report.message = (f"{e.reason}; the scheduled job stops until the key or the"
                          " targets file changes")
    except ExchangeError as e:
        report.outcome = Outcome.FAILED
        report.message = e.reason
    except Exception as e:  # a run never takes its scheduler down
        log.exception("MISP %s of %s failed unexpectedly", direction, target.name)
        report.outcome = Outcome.FAILED
        report.message = f"internal error ({type(e).__name__}); see the log"
    if not report.message:
        report.message = summary(report)
    if key:
        report.message = report.message.replace(key, "***")
    log.info("MISP %s of %s%s: %s: %s", direction, target.name,
             " (dry run)" if dry_run else "", report.outcome, report.message)
    if dry_run:
        return report
    finished = now if now is not None else now_micros()
    reasons = [item.as_dict() for item in report.items[:MAX_ITEMS]]
    if key:
        reasons = [{k: v.replace(key, "***") for k, v in r.items()} for r in reasons]
    store.save_misp_state(MispSyncState(
        target=target.name, direction=direction,
        cursor=report.cursor_after if report.cursor_after is not None else previous.cursor,
        last_started=started, last_finished=finished, outcome=report.outcome.value,
        message=report.message, counts={k: v for k, v in report.counts.items() if v},
        reasons=reasons,
        failures=0 if report.outcome is Outcome.OK else previous.failures + 1,
        next_run=previous.next_run))
    return report
