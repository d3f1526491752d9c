"""Entry point for `python -m devaipod`."""

from devaipod.cli import main

main()
