"""The `cityshare` command line (Typer + Rich)."""

from cityshare.cli.main import app, main

__all__ = ["app", "main"]
