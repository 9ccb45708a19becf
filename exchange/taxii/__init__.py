"""Door: the TAXII 2.1 server (medallion's views on our app, our backend, auth and error
bodies), the auditor API beside it, and the gunicorn runner.

Imports the core and :mod:`exchange.node`; never :mod:`exchange.member` or another door.
"""
