"""Pure domain model: STIX objects, TLP levels, principals, strict parsing and limits."""
