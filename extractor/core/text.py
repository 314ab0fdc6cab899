"""Text made safe for one line of a file or a commit message, and the one normal form texts are compared in."""

from __future__ import annotations

import re
import unicodedata

# Control characters (C0 and C1), and lone surrogates (valid in JSON escapes, but no file can be written with them).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_JOINERS = "\u200c\u200d"


def visible(text: str) -> str:
    """The text without invisible format characters (Unicode category Cf): bidi overrides and isolates,
    zero-width spaces, word joiners, byte order marks, soft hyphens, tag characters.

    They make a title read otherwise than it is written, or two names that look alike differ. A zero-width
    joiner or non-joiner between two non-ASCII characters stays: emoji sequences and Persian or Indic words
    are spelt with it; beside ASCII, at an end or beside a space it only hides.
    """
    if text.isascii():
        return text
    kept = []
    last = len(text) - 1
    for position, char in enumerate(text):
        joining = char in _JOINERS and 0 < position < last and _joins(text[position - 1]) and _joins(text[position + 1])
        if joining or unicodedata.category(char) != "Cf":
            kept.append(char)
    return "".join(kept)


def _joins(char: str) -> bool:
    return not char.isascii() and not char.isspace() and unicodedata.category(char) != "Cf"


def one_line(value: str) -> str:
    """Collapse whitespace (newlines included), drop control characters and invisible format characters."""
    return " ".join(visible(CONTROL.sub(" ", value)).split())


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_HYPHENATION = re.compile(r"-\s*\n\s*")


def normalise(text: str) -> str:
    """Text for containment checks: NFKC, plain quotes and dashes, no thousands separators, one space."""
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(str.maketrans("“”„‘’–—", '"""\'\'--'))
    text = _THOUSANDS.sub("", text)
    text = _HYPHENATION.sub("", text)  # hyphenation across lines
    return " ".join(text.casefold().split())
