"""Text made safe for one line of a file or a commit message, and the one normal form texts are compared in."""

from __future__ import annotations

import re
import unicodedata

# Control characters, and lone surrogates (valid in JSON escapes, but no file can be written with them).
CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def one_line(value: str) -> str:
    """Collapse whitespace (newlines included) and drop control characters."""
    return " ".join(CONTROL.sub(" ", value).split())


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_HYPHENATION = re.compile(r"-\s*\n\s*")


def normalise(text: str) -> str:
    """Text for containment checks: NFKC, plain quotes and dashes, no thousands separators, one space."""
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(str.maketrans("“”„‘’–—", '"""\'\'--'))
    text = _THOUSANDS.sub("", text)
    text = _HYPHENATION.sub("", text)  # hyphenation across lines
    return " ".join(text.casefold().split())
