"""The MISP door: STIX 2.1 <-> MISP for the scheduled sync (issue 19, DESIGN.md decision 7).

Modules so far (pure, no network):

* :mod:`~exchange.misp.targets`: the MISP instances to keep in sync, read from
  ``feeds/misp-targets.yaml`` and validated strictly (:func:`parse_targets`);
* :mod:`~exchange.misp.mapping`: what a target's owner may receive, as MISP event dicts
  (the JSON PyMISP sends) with deterministic UUIDs, TLP tags and distributions
  (:func:`map_for_target`), and a reason for every object it leaves out.

Left to the rest of issue 19: the PyMISP client wrapper (push and pull against real MISP),
sharing-group creation, cursors, the scheduler and the ``exchange sync`` commands.

A door: imports the core (``errors``, ``model``, ``policy``, ``signing``) and ``node``;
never ``member`` or another door (tests/unit/test_layout.py).
"""
