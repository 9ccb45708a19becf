"""The MISP door: STIX 2.1 <-> MISP for the scheduled sync (issue 19, DESIGN.md decision 7).

Modules so far (pure, no network):

* :mod:`~exchange.misp.targets`: the MISP instances to keep in sync, read from
  ``feeds/misp-targets.yaml`` and validated strictly (:func:`parse_targets`);
* :mod:`~exchange.node.mispmap`: what a target's owner may receive, as MISP event dicts
  (the JSON PyMISP sends) with deterministic UUIDs, TLP tags and distributions
  (:func:`map_for_target`), and a reason for every object it leaves out.

With the network:

* :mod:`~exchange.misp.client`: PyMISP with every result checked and transient failures
  retried with backoff;
* :mod:`~exchange.misp.sync`: one run of one target and direction (:func:`run_target`),
  recorded as the target's sync state (cursor, outcome, counts, reasons, failures);
* :mod:`~exchange.misp.scheduler`: the APScheduler jobs, one per target and direction,
  in the exchange database, run by one leader among the node's schedulers.

Left to the rest of issue 19: push and pull against real MISP (``push.run_push``,
``pull.run_pull``, found by name by :mod:`~exchange.misp.sync`), sharing-group creation.

A door: imports the core (``errors``, ``model``, ``policy``, ``signing``) and ``node``;
never ``member`` or another door (tests/unit/test_layout.py).
"""
