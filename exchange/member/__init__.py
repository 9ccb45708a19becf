"""The member's side: what a member CERT runs against any exchange. The TAXII client,
loading files and IOC lists as STIX, signing, offline verification, ``pull --verify``.

Beside the node, not above it: imports the core only (a member needs no node code), and
only :mod:`exchange.cli` imports it.
"""
