"""Anchor each evidence item of a drafted claim to its place in the source text.

A reviewer checking a claim wants to see which sentence of the source each
evidence item came from. Evidence items are plain strings, often a quotation
plus an attribution (``"Revenue rose 40% in 2024" — the annual report``) and
sometimes a bare sentence. For each item we look for its quoted text in the
source and record the character span in the *original* source text, or mark
the item as the model's paraphrase when the quote is nowhere to be found.

The look-up runs in three steps, each looser than the last:

1. ``exact``: the quote occurs verbatim.
2. ``normalised``: it occurs once both sides are normalised the way the
   grounding gate normalises them (:func:`extractor.validate.normalise`), so
   every quotation the gate accepted is anchored at least here.
3. ``fuzzy``: a rapidfuzz partial match on the normalised strings scores at
   least :data:`FUZZY_THRESHOLD` (a word or two changed by the model).

Spans are always in the coordinates of the text given, so a normalised match
is mapped back through an offset map built by :func:`normalise_with_offsets`.
All functions are pure and never raise on odd input.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import NamedTuple

from rapidfuzz import fuzz

from extractor.core.records import Anchor

# Fuzzy matches must score at least this (rapidfuzz partial_ratio, 0-100). One changed word in a
# sentence-length quote scores 93-97 and two in a 100-character quote about 92, while a quote the model
# rewrote in its own words stays well below (the same bar as validate.PARAPHRASE_SCORE).
FUZZY_THRESHOLD = 90.0
# Fuzzy matching only for quotes of at least this many normalised characters: at 90 a shorter string
# tolerates a changed word in a handful of letters and so matches common phrases all over a long source.
FUZZY_MIN_CHARS = 20
# A quoted segment counts as a quotation (rather than a name or scare quote) with at least this many
# normalised characters, the floor the grounding gate uses for the quotations it checks, and ...
MIN_QUOTE_CHARS = 12
# ... at least this many words: "ownership coins" occurs all over a source, so anchoring on it would point
# the reviewer at its first mention, not at the sentence the evidence came from.
MIN_QUOTE_WORDS = 3
# A fuzzy window's edges are moved onto the quote's first/last EDGE_CHARS characters when those occur
# within EDGE_SLACK (plus a tenth of the quote's length) of the edge.
EDGE_CHARS = 10
EDGE_SLACK = 8


class Normalised(NamedTuple):
    """A normalised text with, for each of its characters, the original span it came from.

    ``text[i]`` was produced by ``original[starts[i]:ends[i]]``. A NamedTuple rather than a pydantic
    model: it holds two offsets per source character (280,000 for a long source), built on every
    look-up, and validating those would cost more than the look-up itself.
    """

    text: str
    starts: list[int]
    ends: list[int]


# --- normalising with an offset map ----------------------------------------
# The steps and their order are those of extractor.validate.normalise, so that
# normalise_with_offsets(t).text == normalise(t) (up to the minus sign, see _POST).

_ASCII_PREFIXED_RUN = re.compile(r"[\x00-\x7f]?[^\x00-\x7f]+")
_NON_ASCII_CHAR = re.compile(r"[^\x00-\x7f]")
_QUOTES_AND_DASHES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "–": "-", "—": "-"})
# Applied to the finished text, one character for one, so it can only make more quotes match than the gate
# does (a substring stays a substring under a character map), never fewer.
_POST = str.maketrans({"\u2212": "-"})
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_HYPHENATION = re.compile(r"-\s*\n\s*")
_WHITESPACE = re.compile(r"\s{2,}|[^\S ]")  # runs to squeeze; a single plain space is already right
_EDGE = " .,;:"  # stripped from a quote's edges: the model's own punctuation around a quotation
_VERBATIM_EDGES = re.compile(r"^[\s.,;:]+|[\s.,;:]+$")

# What a substitution puts in place of a match: None (leave it), a string (maps to the whole match), or
# (piece, width) pairs, each piece mapping to the next `width` characters of the match.
Replacement = str | list[tuple[str, int]] | None


def _sub(
    pattern: re.Pattern[str],
    replace: Callable[[str], Replacement],
    text: str,
    starts: list[int],
    ends: list[int],
    between: Callable[[str], str] | None = None,
) -> tuple[str, list[int], list[int]]:
    """Substitute ``pattern`` in ``text`` while carrying each character's original span along.

    ``replace`` gets the matched string and returns a :data:`Replacement`. ``between`` transforms the
    untouched stretches, one character for one.
    """
    pieces: list[str] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    last = 0
    for match in pattern.finditer(text):
        replacement = replace(match.group())
        if replacement is None:
            continue
        a, b = match.span()
        pieces.append(text[last:a])
        new_starts += starts[last:a]
        new_ends += ends[last:a]
        if isinstance(replacement, str):
            pieces.append(replacement)
            new_starts += [starts[a]] * len(replacement)
            new_ends += [ends[b - 1]] * len(replacement)
        else:
            pieces.append("".join(piece for piece, _ in replacement))
            for piece, width in replacement:
                new_starts += [starts[a]] * len(piece)
                new_ends += [ends[a + width - 1]] * len(piece)
                a += width
        last = b
    if not pieces:
        return (between(text) if between else text), starts, ends
    pieces.append(text[last:])
    new_starts += starts[last:]
    new_ends += ends[last:]
    if between is None:
        return "".join(pieces), new_starts, new_ends
    # Only the untouched stretches (even indices) are transformed; replacements are final.
    return "".join(between(p) if i % 2 == 0 else p for i, p in enumerate(pieces)), new_starts, new_ends


def _nfkc(chunk: str) -> Replacement:
    """NFKC of a chunk that starts and ends at safe boundaries, in the smallest pieces that give the same text.

    Chunks begin before an ASCII character (which never composes with what precedes it) and end before
    one, so normalising them one by one equals normalising the whole text. Within a chunk a character
    joins the piece before it when it is a combining mark or composes with it ("e" + acute → "é"), so
    the offset map stays fine-grained ("…" → "..." maps to the one "…"). Should the pieces ever disagree
    with the whole, the whole chunk is the span.
    """
    whole = _nfkc_of(chunk)
    if whole == chunk:
        return None
    pieces: list[tuple[str, int]] = []
    segment = chunk[0]
    for char in chunk[1:]:
        if unicodedata.combining(char) or _nfkc_of(segment + char) != _nfkc_of(segment) + _nfkc_of(char):
            segment += char
        else:
            pieces.append((_nfkc_of(segment), len(segment)))
            segment = char
    pieces.append((_nfkc_of(segment), len(segment)))
    return pieces if "".join(piece for piece, _ in pieces) == whole else whole


def _nfkc_of(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _casefold(char: str) -> Replacement:
    """Case folding is per character; only the few that fold to several characters ("ß" → "ss") need a map."""
    folded = char.casefold()
    return folded if len(folded) != 1 else None


def normalise_with_offsets(text: str) -> Normalised:
    """``extractor.validate.normalise(text)`` (minus sign → "-" as well), with each character's original span.

    Why one function: the grounding gate checks quotations against the normalised source, and a reviewer
    needs the span in the original; building the map alongside the very same steps keeps the two in step.
    """
    starts = list(range(len(text)))
    ends = list(range(1, len(text) + 1))
    if not unicodedata.is_normalized("NFKC", text):
        text, starts, ends = _sub(_ASCII_PREFIXED_RUN, _nfkc, text, starts, ends)
    text = text.translate(_QUOTES_AND_DASHES)  # one character for one: the map is unchanged
    text, starts, ends = _sub(_THOUSANDS, lambda _: "", text, starts, ends)
    text, starts, ends = _sub(_HYPHENATION, lambda _: "", text, starts, ends)
    folded = text.casefold()
    if len(folded) == len(text):
        text = folded
    else:
        text, starts, ends = _sub(_NON_ASCII_CHAR, _casefold, text, starts, ends, between=str.casefold)
    text, starts, ends = _sub(_WHITESPACE, lambda _: " ", text, starts, ends)
    head = len(text) - len(text.lstrip(" "))
    tail = len(text.rstrip(" "))
    return Normalised(text[head:tail].translate(_POST), starts[head:tail], ends[head:tail])


def _trimmed(normalised: str) -> str:
    return normalised.strip(_EDGE)


# --- finding quotes ----------------------------------------------------------

_QUOTED = re.compile(r'["“”„＂]([^"“”„＂]+)["“”„＂]')
_ELISION = re.compile(r"\s*(?:\[(?:\.\.\.|…)\]|\.\.\.|…)\s*")
_ATTRIBUTION = re.compile(r" (?:—|--) ")


def _is_quotation(segment: str) -> bool:
    normalised = _trimmed(normalise_with_offsets(segment).text)
    return len(normalised) >= MIN_QUOTE_CHARS and len(normalised.split()) >= MIN_QUOTE_WORDS


def quotes_in(item: str) -> list[str]:
    """The verbatim candidates in one evidence item, in the order they appear.

    The segments between double quotes (straight or curly, paired left to right) that are long enough to be
    a quotation: :data:`MIN_QUOTE_CHARS` normalised characters and :data:`MIN_QUOTE_WORDS` words. A quotation
    the model shortened with "..." or "[…]" is not verbatim as a whole, so its pieces are the candidates
    (each held to the same length rule). With none, the whole item is the candidate, without a trailing
    attribution after the last " — " or " -- " (``Revenue rose 40% in 2024 — the annual report``) when
    what precedes it is long enough to be a quotation itself. An empty item has no candidate.
    """
    pieces = (piece for m in _QUOTED.finditer(item) for piece in _ELISION.split(m.group(1)))
    quotes = [piece.strip() for piece in pieces if _is_quotation(piece)]
    if quotes:
        return quotes
    whole = item.strip()
    if not whole:
        return []
    separators = list(_ATTRIBUTION.finditer(whole))
    if separators:
        last = separators[-1]
        head = whole[: last.start()].strip()
        if _is_quotation(head):
            return [head]
    return [whole]


def _span(normalised: Normalised, start: int, end: int) -> tuple[int, int]:
    """Original span of ``normalised.text[start:end]``: first character's start to last character's end."""
    return normalised.starts[start], normalised.ends[end - 1]


def _locate(
    quote: str, text: str, normalise_source: Callable[[], Normalised], threshold: float
) -> tuple[int, int, str, float] | None:
    """:func:`locate` with the source's normalisation passed in, made only when an exact match fails."""
    verbatim = _VERBATIM_EDGES.sub("", quote)
    if not verbatim or not text:
        return None
    position = text.find(verbatim)
    if position >= 0:
        return position, position + len(verbatim), "exact", 100.0
    normalised = normalise_source()
    wanted = _trimmed(normalise_with_offsets(quote).text)
    if not wanted or len(wanted) > len(normalised.text):
        return None
    position = normalised.text.find(wanted)
    if position >= 0:
        return *_span(normalised, position, position + len(wanted)), "normalised", 100.0
    if len(wanted) < FUZZY_MIN_CHARS:
        return None
    # partial_ratio aligns the quote with its best window of the source; with a score cutoff rapidfuzz
    # prunes hopeless windows itself, so searching a whole 140,000-character source takes a few
    # milliseconds and needs no narrowing (normalising that source, ~30 ms, is the larger cost).
    found = fuzz.partial_ratio_alignment(wanted, normalised.text, score_cutoff=threshold)
    if found is None:
        return None
    start, end = _fit(normalised.text, wanted, found.dest_start, found.dest_end)
    return *_span(normalised, start, end), "fuzzy", float(found.score)


def _fit(text: str, wanted: str, start: int, end: int) -> tuple[int, int]:
    """Move a fuzzy window's edges onto the quote's own first and last characters.

    partial_ratio's window is exactly as long as the quote, so when the source has a few more characters
    (a markdown escape, an extra word) it cuts the match short or starts mid-word. Where the quote's
    first (last) few characters occur near the window's edge, the edge moves there; otherwise it is
    widened to the whole word it cuts, and spaces at the edges are dropped.
    """
    window_start, window_end = start, end
    size = min(EDGE_CHARS, len(wanted) // 2)
    slack = EDGE_SLACK + len(wanted) // 10
    start = _edge(text, wanted[:size], start, slack, at_end=False)
    end = _edge(text, wanted[-size:], end, slack, at_end=True)
    while start < end and text[start] == " ":
        start += 1
    while end > start and text[end - 1] == " ":
        end -= 1
    return (start, end) if start < end else (window_start, window_end)


def _edge(text: str, piece: str, edge: int, slack: int, at_end: bool) -> int:
    """One edge of a fuzzy window: onto the nearest occurrence of ``piece``, else out to the whole word it cuts."""
    low = max(0, edge - slack)
    found = [(m.end() if at_end else m.start()) + low for m in re.finditer(re.escape(piece), text[low : edge + slack])]
    if found:
        return min(found, key=lambda at: abs(at - edge))
    step = 1 if at_end else -1
    while 0 < edge < len(text) and text[edge - 1].isalnum() and text[edge].isalnum():
        edge += step
    return edge


def locate(quote: str, text: str, threshold: float = FUZZY_THRESHOLD) -> tuple[int, int, str, float] | None:
    """Find ``quote`` in ``text``: ``(start, end, method, score)`` with offsets into ``text``, or ``None``.

    Tries an exact match, then a match of the normalised forms (as the grounding gate compares them),
    then a fuzzy match scoring at least ``threshold`` for quotes of :data:`FUZZY_MIN_CHARS` or more
    normalised characters. Spaces and ``.,;:`` at the quote's edges are ignored throughout. The first
    occurrence wins.
    """
    if not quote or not text:
        return None
    return _locate(quote, text, lambda: normalise_with_offsets(text), threshold)


def anchor_evidence(items: list[str], text: str) -> list[Anchor]:
    """One :class:`Anchor` per evidence item, in order.

    An item is anchored on the longest of its candidates (:func:`quotes_in`) that can be located; when
    none can, it is the model's paraphrase and the anchor names the longest candidate.
    """
    return anchor_claims([items], text)[0]


def anchor_claims(evidence: list[list[str]], text: str) -> list[list[Anchor]]:
    """:func:`anchor_evidence` for each claim's evidence list, normalising the source at most once."""
    cache: list[Normalised] = []

    def normalised() -> Normalised:  # the source is normalised once, and only if some quote needs it
        if not cache:
            cache.append(normalise_with_offsets(text))
        return cache[0]

    return [[_anchor(index, item, text, normalised) for index, item in enumerate(items)] for items in evidence]


def _anchor(index: int, item: str, text: str, normalised: Callable[[], Normalised]) -> Anchor:
    candidates = sorted(quotes_in(item), key=len, reverse=True)
    for candidate in candidates:
        found = _locate(candidate, text, normalised, FUZZY_THRESHOLD)
        if found is not None:
            start, end, method, score = found
            return Anchor(item=index, quote=candidate, start=start, end=end, method=method, score=score)
    quote = candidates[0] if candidates else item
    return Anchor(item=index, quote=quote, start=None, end=None, method="paraphrase", score=0.0)
