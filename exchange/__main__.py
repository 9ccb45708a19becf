"""``python -m exchange`` runs the ``exchange`` command."""

from exchange.cli import main

main()
