"""Production gunicorn settings for cert-exchange (``gunicorn -c deploy/gunicorn.conf.py``).

The app factory reads its settings from EXCHANGE_HOME / EXCHANGE_* in the environment of
the service (see exchange-taxii.service). Put a TLS-terminating reverse proxy in front
(deploy/nginx.conf); bind gunicorn to loopback only.

The worker is the front door (exchange/taxii/front.py): gthread's threads, but every
request is read whole in the event loop first, under request_header_timeout and
request_body_timeout (exchange.toml), and refusals are TAXII JSON. That is what makes
gunicorn alone tolerable on a LAN; nginx adds TLS, per-address connection limits and
disk buffering of bodies.
"""

import multiprocessing

wsgi_app = "exchange.taxii.wsgi:application"
bind = "127.0.0.1:8421"
workers = max(2, multiprocessing.cpu_count())
worker_class = "exchange.taxii.front.FrontDoorWorker"
threads = 4
# open connections per worker, requests being read included (each costs a socket and at
# most the bytes it has sent; the worker holds at most 64 MiB of unfinished requests)
worker_connections = 1000
timeout = 60
graceful_timeout = 20
keepalive = 5
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 16384
accesslog = "-"
# never log the Authorization header: the default fields below do not include it
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s'
errorlog = "-"
forwarded_allow_ips = "127.0.0.1"
