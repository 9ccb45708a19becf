"""TAXII 2.1 adapter: medallion's views on our app, our backend, auth and error bodies."""
