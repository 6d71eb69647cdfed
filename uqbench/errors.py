"""Errors a user can cause and fix: caught once at the top of the CLI (one line, exit 2)."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: an unknown name, a bad value, missing data.

    The CLI prints ``uqbench: error: <message>`` and exits with code 2; real bugs keep
    their traceback.
    """


class DataNotFoundError(UserError, FileNotFoundError):
    """A dataset's files are missing; the message says what to put where."""


class AdapterUnavailableError(UserError):
    """An adapter cannot be loaded: missing optional dependency or a broken plugin."""
