"""Typed errors raised by the core.

The library raises, the CLI speaks: only :func:`launcher.cli.main` turns these into a printed
line and an exit code.  ``str(error)`` is always a message a user can act on; it may span a few
lines only where the extra lines are a list of things to check.
"""

from __future__ import annotations


class LauncherError(Exception):
    """Base of every error the launcher reports to a user."""

    exit_code = 1


class OptionError(LauncherError):
    """An option is unknown, has a bad value, or cannot be honoured by the chosen backend."""

    exit_code = 2


class ConfigFileError(OptionError):
    """The config file (serve.toml or [tool.serve]) cannot be read or holds a bad value."""


class BackendError(LauncherError):
    """A backend is unknown or its server library is not installed."""

    exit_code = 2


class AppImportError(LauncherError):
    """The app spec could not be turned into a WSGI callable.

    ``part`` names what failed: "spec", "module", "attribute", "callable", "factory-args",
    "factory", "app-run" or "user-import" (the user's own module raised while importing;
    ``__cause__`` then holds the original exception and its traceback).
    """

    exit_code = 4

    def __init__(self, message: str, part: str = "spec") -> None:
        super().__init__(message)
        self.part = part


class BindError(LauncherError):
    """A listening address could not be used (busy port, bad address, missing directory)."""


class ServerError(LauncherError):
    """The server failed while running or could not stop cleanly."""
