"""The one base of every expected error, so a command catches one type and prints one line."""

from __future__ import annotations


class ExtractorError(Exception):
    """A problem with one source, one setting or one command that the user can act on: never a bug.

    Its message is one line that names the file or setting and the problem.
    """
