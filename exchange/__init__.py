"""cert-exchange: a TAXII 2.1 threat-intelligence exchange for national CERTs."""

__version__ = "0.1.0"
