"""Errors that reach the user as one line and a non-zero exit code, never a traceback."""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user: a flag, a config value, a file. Exit code 2.

    The message must say what was wrong, where, and what is accepted.
    """

    exit_code = 2

    def __str__(self) -> str:  # one line, whatever the message was built from
        return " ".join(super().__str__().splitlines())


class ScenarioUnsupported(RuntimeError):
    """A valid scenario this machine or framework cannot run (no GPU, no package).

    The CLI reports it with exit code 2; asv turns it into a skipped benchmark.
    """

    exit_code = 2


class DataFormatError(UsageError):
    """A malformed input file; the message names the file and the line."""


# How much of the user's input any message may quote: a 20 MB field or a million-entry list must not
# be echoed back whole.
MAX_ECHO = 200


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to about ``limit`` characters (saying how long it was), on one line."""
    text = str(text).replace("\r", "\\r").replace("\n", "\\n")
    if len(text) <= limit:
        return text
    return f"{text[: max(limit - 30, 10)]}... ({len(text)} characters)"


def shown(value: object, limit: int = MAX_ECHO) -> str:
    """A value's repr for a message, cheap even for a huge list or string (reprlib), and clipped."""
    import reprlib

    r = reprlib.Repr()
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 8
    r.maxstring = r.maxother = r.maxlong = limit
    r.maxlevel = 3
    try:
        text = r.repr(value)
    except ValueError:  # an int past Python's 4300-digit str limit
        text = f"<{type(value).__name__} too long to print>"
    return clip(text, limit)
