"""``python -m usm_bridge`` runs the CLI."""

from .cli import main

main()
