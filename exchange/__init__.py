"""cert-exchange: a TAXII 2.1 threat-intelligence exchange for national CERTs.

The map: three floors, imports point down (tests/unit/test_layout.py keeps it so).
  core   errors, config; model/ (STIX, TLP, limits), signing/ (cx-sig, keys),
         policy/ (decide, explain), audit/ (the Merkle ledger), storage/ (SQL Store)
  node/  what one node does over its store: members, publish, read and disclose,
         explain, its ledger and key, the policy in force; imports the core only
  member/  what a member CERT runs on its side: client, files to STIX, signing,
         offline verification; imports the core only
  doors  taxii/ (the server), cli/ (the command; may import everything); the
         adapters misp/, feeds/, scheduler, web/ join here; doors import core and node
"""

__version__ = "0.1.0"
