"""Is a model's free text prose a person can read, or debris of its JSON?

A small model fills free-text fields with fragments of the answer's own syntax
(``] } {``), loops and words of no language. Such text must not reach a source's
frontmatter or a commit: it is replaced by the pipeline's own wording.
"""

from __future__ import annotations

import re

from extractor.core.text import one_line

# JSON and markup debris: brackets, escaped newlines, a quoted key, a code fence.
_DEBRIS = re.compile(r'[{}\[\]\\]|":|```')
_EDGE = re.compile(r"^\W+|\W+$")
_POSSESSIVE = re.compile(r"['’]s$")
# Words any note about a source may use though the source does not: function words and the pipeline's own.
COMMON_WORDS = frozenset(
    """a an the of to in on at by for with from as and or nor but if than then so because while though although
    is are was were be been being am it its it's this that these those there here which who whom whose what when
    where why how not no yes all any some each every both either neither one two three four five few many much more
    most less least other another such same only also just very can could may might must shall should will would
    do does did done has have had having i we you he she they them their our your his her my me us him into over
    under about above below after before between through during without within against up down out off again
    further once too own nothing something anything everything none claim claims source sources evidence
    extracted extraction extract notes note reviewer review found find worth new existing knowledge base
    statement statements sentence sentences text article paper report study author authors data results result
    argues argument shows show suggests supports mentions describes discusses says said seen saw see shown
    because however since until unless whether while yet still even well like unlike same different first
    last next main key important relevant useful clear unclear little large small high low good bad long
    short only mostly mainly partly mostly likely unlikely possible impossible year years month months day
    days time times people person group groups work works use uses used using make makes made give gives
    given take takes taken show showed need needs needed way ways part parts point points case cases fact
    facts number numbers figure figures quote quotes quoted title titles link links linked topic topics""".split()
)
KNOWN_SHARE = 0.4
LETTER_SHARE = 0.7
MIN_WORDS = 3
MAX_CHARS = 400


def vocabulary(text: str) -> set[str]:
    """The words of a text, case folded, for :func:`is_prose`'s language check."""
    return {_word(token) for token in text.split()} - {""}


def _word(token: str) -> str:
    return _POSSESSIVE.sub("", _EDGE.sub("", token).casefold())


def _is_letters(word: str) -> bool:
    return word.replace("-", "").replace("'", "").isalpha()


def is_prose(text: str, known: set[str], max_chars: int = MAX_CHARS) -> bool:
    """Readable prose: bounded in length, no JSON or markup debris, mostly words (not symbols or numbers), and
    mostly words of the source's language (those of ``known``, the source's vocabulary, or common ones)."""
    text = one_line(text)
    if not text or len(text) > max_chars or _DEBRIS.search(text):
        return False
    tokens = text.split()
    words = [word for word in (_word(token) for token in tokens) if word and _is_letters(word)]
    if len(words) < MIN_WORDS or len(words) / len(tokens) < LETTER_SHARE:
        return False
    return sum(word in known or word in COMMON_WORDS for word in words) / len(words) >= KNOWN_SHARE


def prose_or(text: str | None, known: set[str], fallback: str, max_chars: int = MAX_CHARS) -> str:
    """``text`` when it is prose, else the pipeline's own ``fallback`` wording."""
    return one_line(text) if text and is_prose(text, known, max_chars) else fallback


SHOWN_MAX = 120


def is_debris(text: str) -> bool:
    """Fragments of the answer's JSON, or no word at all."""
    return bool(_DEBRIS.search(text)) or not any(ch.isalpha() for ch in text)


def shown(text: str, limit: int = SHOWN_MAX) -> str:
    """A model's text as quoted in the pipeline's notes (a dropped title, a link that resolves to nothing):
    on one line, cut to a bounded length, and never its JSON debris."""
    text = one_line(text)
    if not text or is_debris(text):
        return "(unreadable text)"
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
