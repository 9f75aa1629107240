"""Subcommands of the ``fcinv`` CLI: one module per command, each with ``register(subparsers)``."""
