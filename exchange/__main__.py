"""``python -m exchange`` runs the ``exchange`` command."""

from exchange.cli.main import main

main()
