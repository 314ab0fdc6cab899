"""The one base of every expected error, so a command catches one type and prints one line."""

from __future__ import annotations


class ExtractorError(Exception):
    """A problem with one source, one setting or one command that the user can act on: never a bug.

    Its message is one line that names the file or setting and the problem.
    """


class ConfigurationError(ExtractorError):
    """The command cannot start as asked: a usage or configuration problem (bad settings, no KB, a missing
    model or branch). Commands exit 2 for it, and 1 for an operation that started and failed."""
