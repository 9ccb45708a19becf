"""WSGI entry point for running under an external gunicorn (deploy/gunicorn.conf.py).

Settings come from EXCHANGE_HOME and EXCHANGE_* in the environment. Building the app
here is deliberate: gunicorn imports this module in each worker after forking.
"""

from exchange.config import load_settings
from exchange.taxii.app import create_app

application = create_app(load_settings())
