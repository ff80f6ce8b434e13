"""Subcommands of the ``ninep`` command line, one module each."""
