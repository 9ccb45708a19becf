"""The node: what one exchange does over its store. Members, accounts and keys; publish;
read and disclose; explain; its ledger, its own key, the policy in force, derived copies.

Middle floor: imports the core only, never :mod:`exchange.member` or a door. The doors
(:mod:`exchange.taxii`, :mod:`exchange.cli`) call :class:`~exchange.node.service.Exchange`.
"""
