"""Errors that reach the user as one line and a non-zero exit code, never a traceback."""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user: a flag, a config value, a file. Exit code 2.

    The message must say what was wrong, where, and what is accepted.
    """

    exit_code = 2


class ScenarioUnsupported(RuntimeError):
    """A valid scenario this machine or framework cannot run (no GPU, no package).

    The CLI reports it with exit code 2; asv turns it into a skipped benchmark.
    """

    exit_code = 2


class DataFormatError(UsageError):
    """A malformed input file; the message names the file and the line."""
