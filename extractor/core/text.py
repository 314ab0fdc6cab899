"""Text made safe for one line of a file or a commit message."""

from __future__ import annotations

import re

# Control characters, and lone surrogates (valid in JSON escapes, but no file can be written with them).
CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def one_line(value: str) -> str:
    """Collapse whitespace (newlines included) and drop control characters."""
    return " ".join(CONTROL.sub(" ", value).split())
