"""Errors of the ``conveyor`` command line, shared by every subcommand module."""

from __future__ import annotations


class UsageError(Exception):
    """Raised when the command line asks for something impossible; exits with status 2."""


class MissingExtra(Exception):
    """Raised when a command needs an extra of the distribution that is not installed."""

    def __init__(self, command: str, extra: str, missing: str | None) -> None:
        super().__init__(
            f"{command} needs the {extra!r} extra ({missing or 'a module'} is not installed):"
            f" pip install 'conveyor[{extra}]'"
        )
