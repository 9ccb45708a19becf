"""Door: TAXII sources and peer exchange nodes pulled with taxii2-client.

Imports the core and the node; never another door or ``member/``.
"""
