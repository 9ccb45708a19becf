"""Pure domain model: STIX objects, TLP levels, principals, strict parsing and limits.

Core floor, pure: imports only ``errors`` and ``config``.
"""
