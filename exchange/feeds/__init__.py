"""Door: TAXII sources pulled with taxii2-client (peer exchanges and vendor servers).

:mod:`exchange.feeds.sources` reads ``feeds/sources.yaml`` strictly;
:mod:`exchange.feeds.ingest` pulls one source into a local collection exactly once per
object version, resuming where a failure stopped; :mod:`exchange.feeds.run` records each
run as the source's state for ``exchange sync status`` and the scheduler.
"""
