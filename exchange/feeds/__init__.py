"""Door: TAXII sources pulled with taxii2-client (peer exchanges and vendor servers).

:mod:`exchange.feeds.sources` reads ``feeds/sources.yaml`` strictly;
:mod:`exchange.feeds.ingest` pulls one source into a local collection exactly once per
object version, resuming where a failure stopped; :mod:`exchange.feeds.run` records each
run as the source's state for ``exchange sync status``; :mod:`exchange.feeds.schedule`
makes each source a scheduler job. :mod:`exchange.feeds.peers` pins peer nodes' signed
registries and verifies their objects: the verifier of ``peer`` sources.

A door: imports the core and ``node``; never ``member`` or another door
(tests/unit/test_layout.py).
"""
