"""Door: the ``exchange`` command (:mod:`.main`), with its groups ``audit``, ``keys``,
``policy`` and the ``demo``; thin over the node, the member's tools and the server.

The top floor: may import every other package; nothing imports it but ``__main__``.
"""
