"""Grounding: is each figure and quotation of a drafted claim supported by its source?

A reviewer trusts a gate only if it does not cry wolf. Analysts compute figures
from a source (a percent change, a ratio, a difference, a rounding) and quote it
with other quotation marks or with elisions; all of that is grounded. So a
figure passes when the source states it (after normalising markdown, thousands
separators, units and scale words) and is *derived* when arithmetic on the
source's figures gives it, with the operands named in its reason so a reviewer checks it
in one look. A quotation passes when its words occur in the source (pieces
around ``...`` and ``[insertions]`` in order), and is *near* when it differs by
one inflected word. Everything else is *unverified*, with the reason.

All functions here are pure; :class:`SourceFacts` is built once per source.
"""

from __future__ import annotations

import bisect
import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from extractor.core.text import normalise

Verdict = Literal["pass", "derived", "near", "unverified"]

# --- normalising --------------------------------------------------------------

_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*\)")
_URL = re.compile(r"(?:https?://|www\.)\S+")
_WIKI_LINK = re.compile(r"\[\[[^\]\n]*\]\]")  # another note's title: its figures are that note's
_SPACED_THOUSANDS = re.compile(r"(?<=[$€£]\d)(\d{0,2}), (?=\d{3}\b)")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!$%&~|<>])")
_EMPHASIS = re.compile(r"(?<![\w*_])(\*{1,3}|_{1,3})(?=\S)(.+?)(?<=\S)\1(?![\w*_])", re.DOTALL)
_CODE = re.compile(r"`([^`\n]*)`")
_QUOTE_MARKS = re.compile(r"[\"'“”‘’„‚«»]")


def plain(text: str) -> str:
    """Markdown's markup removed: links to their text, emphasis and code to their content, escapes resolved."""
    text = _LINK.sub(r"\1", text)
    text = _URL.sub(" ", text)  # a link's digits are not figures
    text = _WIKI_LINK.sub(" ", text)
    text = _SPACED_THOUSANDS.sub(r"\1,", text)  # "$11, 777" is a typo for $11,777
    text = _CODE.sub(r"\1", text)
    for _ in range(2):  # nested emphasis: **_x_**
        text = _EMPHASIS.sub(r"\2", text)
    return _ESCAPE.sub(r"\1", text)


def grounding_text(text: str) -> str:
    """The form figures and quotations are compared in: markup removed, then :func:`normalise`."""
    return normalise(plain(text))


# --- figures ------------------------------------------------------------------

SCALE = {"k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "mm": 1e6, "million": 1e6, "b": 1e9, "bn": 1e9,
         "billion": 1e9, "t": 1e12, "tn": 1e12, "trillion": 1e12}  # fmt: skip
PERCENT = ("%", "percent", "per cent", "pct")
POINTS = ("pp", "ppt", "percentage points", "percentage point", "points", "point", "bps")
TIMES = ("x", "×", "times", "fold")
TIME_UNITS = ("years", "year", "yrs", "yr", "months", "month", "mo", "weeks", "week", "days", "day", "hours", "hour",
              "minutes", "minute", "seconds", "second", "decades", "decade")  # fmt: skip
CURRENCY_BEFORE = r"(?:[$€£¥₹]|usd|eur|gbp|us\$)"
CURRENCY_AFTER = r"(?:usd|usdc|usdt|eur|gbp|sol|eth|btc|dollars)"

_UNIT = "|".join(
    sorted(
        [re.escape(u) for u in (*PERCENT, *POINTS, *TIMES, *TIME_UNITS, *SCALE)] + [CURRENCY_AFTER],
        key=len,
        reverse=True,
    )
)
# A figure: optional currency, digits (thousands separators already removed by normalise), optional decimals,
# optional unit or scale word. A range "52-78m" is two figures; the unit of the second applies to the first.
_FIGURE = re.compile(
    rf"(?<![\w.])(?:{CURRENCY_BEFORE}\s?)?(\d+(?:\.\d+)?)(?:\s?(?:-|to)\s?{CURRENCY_BEFORE}?\s?(\d+(?:\.\d+)?))?"
    rf"(?P<plus_before>\+(?=\s?[^\W\d_]))?"  # "6+ months": a bound, its unit after the plus
    rf"(?:(?:\s?|-)(?P<unit>{_UNIT})(?![^\W_]))?(?:\s?(?P<currency>{CURRENCY_AFTER})(?![^\W_]))?(?P<plus>\+)?(?![^\W_])",
)
_YEAR_RANGE = (1900.0, 2100.0)


@dataclass(frozen=True)
class Figure:
    """A number as written, its value with any scale word applied, its kind and the precision it was shown at."""

    written: str
    value: float
    kind: str  # "%", "pp", "x", "t" (a span of time) or "" (a count or an amount)
    precision: float  # the place of the last digit shown, in the value's units (11.4M: 100,000)
    checked: bool  # worth checking: a unit, a decimal point, or two or more digits
    start: int = 0  # offset in the normalised text
    money: bool = False  # written with a currency: only combined with other amounts of money
    qualifier: str = ""  # "about", "at least" or "at most": an estimate or a bound, not an exact figure
    end: int = 0  # where the figure as written ends in the normalised text

    @property
    def is_year(self) -> bool:
        return (
            self.kind == ""
            and not self.money
            and self.precision >= 1.0  # "2100.00" is an amount
            and self.value.is_integer()
            and _YEAR_RANGE[0] <= self.value <= _YEAR_RANGE[1]
        )


def _kind(unit: str) -> str:
    if unit in PERCENT:
        return "%"
    if unit in POINTS:
        return "pp"
    if unit in TIMES:
        return "x"
    if unit in TIME_UNITS:
        return "t"
    return ""


def _precision(digits: str, scale: float) -> float:
    """The place of the last digit shown: "11.4" million is shown to 100,000; "20,000" to 1,000 (two significant
    digits are taken as meant, so "20,000" is not a rounding of 15,000)."""
    if "." in digits:
        return 10.0 ** -len(digits.split(".")[1]) * scale
    significant = digits.lstrip("0") or "0"
    zeros = len(significant) - len(significant.rstrip("0"))
    kept = max(0, min(zeros, len(significant) - 2))
    return 10.0**kept * scale


# Words before a figure that make it an estimate or a bound, as analysts write them.
_APPROXIMATE = re.compile(
    r"(?:~|≈|\b(?:about|around|approximately|approx\.|roughly|nearly|almost|some|circa|an estimated"
    r"|close to|of the order of))\s?$"
)
_AT_LEAST = re.compile(r"(?:>|≥|\b(?:over|more than|above|at least|exceeding|exceeds?|upwards of|north of))\s?$")
_AT_MOST = re.compile(r"(?:<|≤|\b(?:under|less than|below|up to|at most|fewer than))\s?$")
_LIST_GAP = re.compile(r"^\s*(?:,|,? and|,? or)\s*$")


def _qualifier(text: str, start: int, plus: bool) -> str:
    before = text[max(0, start - 24) : start]
    if plus or _AT_LEAST.search(before):
        return "at least"
    if _AT_MOST.search(before):
        return "at most"
    if _APPROXIMATE.search(before):
        return "about"
    return ""


def figures_in(text: str, normalised: bool = False) -> list[Figure]:
    """Every figure in a text (normalised here unless ``normalised``), ranges as two figures.

    A list of bare numbers ending in one with a unit shares it ("5.0, 4.7 and 3.4 percentage points").
    """
    text = text if normalised else grounding_text(text)
    found: list[Figure] = []
    for match in _FIGURE.finditer(text):
        first, second, unit, currency = (
            match.group(1),
            match.group(2),
            match.group("unit") or "",
            match.group("currency") or "",
        )
        end = match.end()
        if second is not None and _is_year_digits(first) and not _is_year_digits(second):
            second, unit, currency = None, "", ""  # "in 2015 to $84 billion" is a year, then another figure
            end = match.end(1)
        unit = unit.strip()
        scale = SCALE.get(unit, 1.0)
        kind = _kind(unit)
        money = bool(currency or re.match(CURRENCY_BEFORE, match.group(0)))
        has_unit = bool(unit) or money
        plus = (bool(match.group("plus")) and end == match.end()) or bool(match.group("plus_before"))
        qualifier = _qualifier(text, match.start(), plus)
        if second is None:
            pieces = [(first, match.start(), end, text[match.start() : end].strip())]
        else:
            pieces = [(first, match.start(), match.end(1), f"{first}{_unit_suffix(unit)}"),
                      (second, match.start(2), end, f"{second}{_unit_suffix(unit)}")]  # fmt: skip
        for digits, start, stop, written in pieces:
            value = float(digits) * scale
            checked = has_unit or "." in digits or len(digits) >= 2
            precision = _precision(digits, scale)
            found.append(Figure(written, value, kind, precision, checked, start, money, qualifier, stop))
    return _share_list_units(text, found)


def _is_year_digits(digits: str) -> bool:
    return len(digits) == 4 and digits.isdigit() and _YEAR_RANGE[0] <= int(digits) <= _YEAR_RANGE[1]


def _unit_suffix(unit: str) -> str:
    return unit if unit in ("%", "x", "×", "k", "m", "mn", "b", "bn", "t", "tn") else f" {unit}" if unit else ""


def _share_list_units(text: str, figures: list[Figure]) -> list[Figure]:
    shared = list(figures)
    for position in range(len(shared) - 2, -1, -1):
        figure, following = shared[position], shared[position + 1]
        gap = text[figure.end : following.start]
        if figure.kind == "" and not figure.money and following.kind in ("%", "pp", "t") and _LIST_GAP.match(gap):
            shared[position] = replace(figure, kind=following.kind, checked=True)
    return shared


def _close(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance + 1e-9 * max(abs(a), abs(b), 1.0)


@dataclass
class SourceFacts:
    """What a source offers to ground a claim: its normalised text and its figures, indexed by value."""

    text: str
    figures: list[Figure]
    values: list[float] = field(init=False)
    by_value: list[Figure] = field(init=False)
    quote_text: str = field(init=False)

    def __post_init__(self) -> None:
        ordered = sorted(self.figures, key=lambda f: f.value)
        self.by_value = ordered
        self.values = [f.value for f in ordered]
        self.quote_text = _unquoted(self.text)

    @classmethod
    def of(cls, source_text: str) -> SourceFacts:
        text = grounding_text(source_text)
        return cls(text=text, figures=figures_in(text, normalised=True))

    def near(self, value: float, tolerance: float) -> Iterator[Figure]:
        """The source's figures within ``tolerance`` of ``value``."""
        low = bisect.bisect_left(self.values, value - tolerance - 1e-9 * max(abs(value), 1.0))
        for figure in self.by_value[low:]:
            if figure.value > value + tolerance + 1e-9 * max(abs(value), 1.0):
                return
            yield figure


# Two figures combine only when the source states them close together: arithmetic over every pair of a long
# report's hundred figures would "derive" almost any number, and an invented figure must stay unverified.
OPERAND_WINDOW = 600


@dataclass(frozen=True)
class FigureCheck:
    figure: Figure
    verdict: Verdict
    reason: str


def _compatible(claim_kind: str, source_kind: str) -> bool:
    """A source figure can be the claim's: same kind, or a bare number in the claim for a source's unit (a
    "65%" grounds "65 of 100"), or a percentage for percentage points."""
    return claim_kind == source_kind or claim_kind == "" or (claim_kind == "pp" and source_kind == "%")


def check_figure(figure: Figure, facts: SourceFacts) -> FigureCheck:
    """Stated, a rounding of a stated figure, an estimate or bound of one, derived from two, or unverified."""
    for found in facts.near(figure.value, 0.0):
        if _compatible(figure.kind, found.kind):
            return FigureCheck(figure, "pass", "in the source")
    if figure.is_year:  # a year is not rounded, and only derived from the source's date and a span
        return _year(figure, facts) or _unverified(figure)
    for found in facts.near(figure.value, figure.precision / 2):
        if _compatible(figure.kind, found.kind) and found.precision < figure.precision:
            return FigureCheck(figure, "derived", f"rounded from {found.written}")
    bounded = _bounded(figure, facts)
    if bounded is not None:
        return bounded
    if figure.kind == "t" and figure.value.is_integer():
        spanned = _span_of_years(figure, facts)
        if spanned is not None:
            return spanned
    return _derivation(figure, facts) or _unverified(figure)


def _unverified(figure: Figure) -> FigureCheck:
    return FigureCheck(figure, "unverified", f"the figure {figure.written} is not in the source")


# How far an estimate ("about 400x") may be from the figure it estimates, and a bound ("over $100M") from the
# figure it bounds.
ESTIMATE_SHARE = 0.1
BOUND_FACTOR = 1.5


def _bounded(figure: Figure, facts: SourceFacts) -> FigureCheck | None:
    if figure.qualifier == "about":
        low, high = figure.value * (1 - ESTIMATE_SHARE), figure.value * (1 + ESTIMATE_SHARE)
    elif figure.qualifier == "at least":
        low, high = figure.value, figure.value * BOUND_FACTOR
    elif figure.qualifier == "at most":
        low, high = figure.value / BOUND_FACTOR, figure.value
    else:
        return None
    middle, half = (low + high) / 2, (high - low) / 2
    for found in facts.near(middle, half):
        if _compatible(figure.kind, found.kind):
            return FigureCheck(figure, "derived", f"{figure.qualifier} {found.written}")
    for a, b in _pairs(facts):
        for value, how, money in _combinations(a, b, figure.kind):
            if low <= value <= high and (money or not figure.money):
                reason = f"{figure.qualifier} {how} of {a.written} and {b.written}"
                return FigureCheck(figure, "derived", reason)
    return None


# A ratio ("a 400x gap") is said loosely: from 54% and 0.13% (415) people write 400x.
RATIO_SHARE = 0.05


# An amount per period turned into a yearly one: "$300k/month" is "$3.6M a year".
PERIODS_PER_YEAR = {"month": 12, "quarter": 4, "week": 52, "day": 365}


def _derivation(figure: Figure, facts: SourceFacts) -> FigureCheck | None:
    share = RATIO_SHARE if figure.kind == "x" else 0.005
    tolerance = max(figure.precision / 2, abs(figure.value) * share)
    target = figure.value
    if figure.money:
        for period, times in PERIODS_PER_YEAR.items():
            for found in facts.near(target / times, tolerance / times):
                if found.money and period in facts.text[found.end : found.end + 12]:
                    return FigureCheck(figure, "derived", f"{found.written} a {period}, annualised")
    for a, b in _pairs(facts):
        for value, how, money in _combinations(a, b, figure.kind):
            if figure.money and not money:
                continue
            if _close(value, target, tolerance):
                return FigureCheck(figure, "derived", f"{how} of {a.written} and {b.written}")
    return None


def _pairs(facts: SourceFacts) -> Iterator[tuple[Figure, Figure]]:
    figures = [f for f in facts.figures if f.checked and not f.is_year]
    for i, a in enumerate(figures):
        for b in figures[i + 1 :]:
            if b.start - a.start > OPERAND_WINDOW:
                break
            yield a, b


def _combinations(a: Figure, b: Figure, kind: str) -> Iterator[tuple[float, str, bool]]:
    """What a claim of ``kind`` may compute from two source figures, how it is said, and whether it is money.

    Only like with like: two percentages, two amounts of money, two counts; a percentage of an amount; a
    quantity at a price.
    """
    if a.kind == b.kind and a.money == b.money:
        high, low = (a, b) if a.value >= b.value else (b, a)
        if kind in ("", "pp") or (kind == "%" and a.kind == "%"):
            yield high.value - low.value, "the difference", a.money
        if kind == "" and a.kind in ("", "t"):
            yield a.value + b.value, "the sum", a.money
        if kind == "%" and low.value and a.kind in ("", "%"):
            yield (high.value - low.value) / low.value * 100, "the percent change", False
            yield (high.value - low.value) / high.value * 100, "the percent change", False
        if kind in ("x", "") and low.value:
            yield high.value / low.value, "the ratio", False
        if kind == "%" and a.kind == "" and low.value:
            yield low.value / high.value * 100, "the share", False
    if kind == "" and {a.kind, b.kind} == {"%", ""}:
        percent, amount = (a, b) if a.kind == "%" else (b, a)
        yield percent.value / 100 * amount.value, "the product", amount.money
    if kind == "" and a.kind == b.kind == "" and a.money != b.money:
        yield a.value * b.value, "the product", True  # a quantity at a price: "13.7M tokens at $0.12"


def _span_of_years(figure: Figure, facts: SourceFacts) -> FigureCheck | None:
    """A span in years between two years the source names: "in 16 years" from 2007 and 2023."""
    years = sorted({f.value for f in facts.figures if f.is_year})
    for position, early in enumerate(years):
        for late in years[position + 1 :]:
            if late - early == figure.value:
                reason = f"the years between {int(early)} and {int(late)}"
                return FigureCheck(figure, "derived", reason)
    return None


def _year(figure: Figure, facts: SourceFacts) -> FigureCheck | None:
    """A year inferred from a dated source: "by 2028" from a 2026 source saying "within 2 years"."""
    years = {f.value for f in facts.figures if f.is_year}
    spans = {f.value for f in facts.figures if f.kind == "t" and f.value.is_integer() and f.value <= 100}
    for year in sorted(years):
        for span in sorted(spans):
            if year + span == figure.value or year - span == figure.value:
                return FigureCheck(figure, "derived", f"{int(year)} and {int(span)} years")
    return None


# --- quotations ---------------------------------------------------------------

# Opening mark -> its closing marks. Straight marks close themselves; curly ones pair left with right.
PAIRS = {'"': '"', "“": "”", "„": "“”", "«": "»", "'": "'", "‘": "’", "‚": "‘’"}
SINGLE = frozenset("'‘‚")
SCARE_WORDS = 2  # quotations of up to this many words are names or scare quotes, not checked
_ELISION = re.compile(r"\s*(?:\[\s*(?:\.\.\.|…)\s*\]|\.\.\.|…|\[[^\]\n]{1,60}\])\s*")


def quotations_in(text: str) -> list[str]:
    """The outermost quotations of a text, with marks paired properly (nested quotations stay inside theirs)."""
    return [quote for _, quote in quotations_with_offsets(text)]


def quotations_with_offsets(text: str) -> list[tuple[int, str]]:
    """:func:`quotations_in` with where each opening mark stands.

    A straight single mark between letters is an apostrophe (don't, Teleo's), never a quotation mark; a
    mark opens only after a space, an opening bracket or the start, and closes only before a space,
    punctuation or the end.
    """
    quotes: list[tuple[int, str]] = []
    position = 0
    while position < len(text):
        char = text[position]
        if char in PAIRS and _opens(text, position):
            end = _closing(text, position)
            if end is not None:
                quotes.append((position, text[position + 1 : end]))
                position = end + 1
                continue
        position += 1
    return quotes


def _opens(text: str, at: int) -> bool:
    before = text[at - 1] if at else " "
    after = text[at + 1] if at + 1 < len(text) else " "
    return not before.isalnum() and not after.isspace()


def _closes(text: str, at: int) -> bool:
    before = text[at - 1] if at else " "
    after = text[at + 1] if at + 1 < len(text) else " "
    return not before.isspace() and not after.isalnum()


def _closing(text: str, start: int) -> int | None:
    closers = PAIRS[text[start]]
    position = start + 1
    while position < len(text):
        char = text[position]
        if text[position] == "\n" and text[position + 1 : position + 2] == "\n":
            return None  # a quotation does not run across paragraphs
        if char in closers and _closes(text, position) and not (char in SINGLE and _inner_apostrophe(text, position)):
            return position
        if char in PAIRS and char not in closers and _opens(text, position):
            inner = _closing(text, position)  # a nested quotation: skip over it
            if inner is not None:
                position = inner + 1
                continue
        position += 1
    return None


def _inner_apostrophe(text: str, at: int) -> bool:
    """A straight single mark after an s (the holders' view) closes nothing when a word follows directly."""
    return text[at] == "'" and at + 1 < len(text) and text[at + 1].isalpha()


_WORDS = re.compile(r"[^\W_]+(?:[.,'’][^\W_]+)*")


def _unquoted(normalised: str) -> str:
    """The words alone: quotation marks, dashes, bullets, colons and line breaks differ between a source and a
    faithful quotation of it (a list flattened into a sentence, an em dash for a comma)."""
    return " ".join(_WORDS.findall(_QUOTE_MARKS.sub(" ", normalised)))


@dataclass(frozen=True)
class QuoteCheck:
    quote: str
    verdict: Verdict
    reason: str


def check_quotation(quote: str, facts: SourceFacts) -> QuoteCheck | None:
    """None for a scare quote; otherwise whether the source holds the quotation, in pieces if elided."""
    pieces = [_unquoted(grounding_text(piece)) for piece in _ELISION.split(quote)]
    pieces = [piece for piece in pieces if piece]
    if sum(len(piece.split()) for piece in pieces) <= SCARE_WORDS:
        return None
    short = quote if len(quote) <= 80 else quote[:77] + "..."
    position = 0
    for piece in pieces:
        found = _find_words(facts.quote_text, piece, position)
        if found < 0:
            break
        position = found + len(piece)
    else:
        return QuoteCheck(quote, "pass", "in the source" if len(pieces) == 1 else "in the source, elided")
    whole = " ".join(pieces)
    near = _near(whole, facts.quote_text)
    if near is not None:
        return QuoteCheck(quote, "near", f'close to the source\'s "{near if len(near) <= 120 else near[:117] + "..."}"')
    return QuoteCheck(quote, "unverified", f'the quotation "{short}" is not in the source')


def _find_words(text: str, words: str, start: int) -> int:
    """Where ``words`` occur in ``text`` from ``start`` on, at word boundaries, or -1."""
    position = text.find(words, start)
    while position >= 0:
        end = position + len(words)
        if (position == 0 or text[position - 1] == " ") and (end == len(text) or text[end] == " "):
            return position
        position = text.find(words, position + 1)
    return -1


# Small words a faithful quotation may drop or add ("a majority of the startups" quoted as "majority of startups").
FUNCTION_WORDS = frozenset("a an the of and that which who are is was were to in on for as".split())
# A quotation may leave out a short stretch of its passage without marking it, if what is left out negates nothing.
OMITTED_WORDS = 20


def _near(quote: str, source: str) -> str | None:
    """The source's words when the quotation differs from them in one small way: one inflected word, one small
    word dropped or added, or a short stretch left out between two found pieces; else None."""
    words = quote.split()
    if len(words) < 3:
        return None
    return _one_word_off(quote, words, source) or _stretch_left_out(words, source)


def _one_word_off(quote: str, words: list[str], source: str) -> str | None:
    found = fuzz.partial_ratio_alignment(quote, source, score_cutoff=80)
    if found is None:
        return None
    start = source.rfind(" ", 0, max(0, found.dest_start - 20)) + 1
    end = source.find(" ", min(len(source), found.dest_end + 20))
    window = source[start : end if end >= 0 else len(source)].split()
    for size in (len(words), len(words) - 1, len(words) + 1):
        for offset in range(max(1, len(window) - size + 1)):
            theirs = window[offset : offset + size]
            if len(theirs) == size and _one_edit(words, theirs):
                return " ".join(theirs)
    return None


def _one_edit(ours: list[str], theirs: list[str]) -> bool:
    if len(ours) == len(theirs):
        differing = [(a, b) for a, b in zip(ours, theirs, strict=True) if a != b]
        return len(differing) == 1 and _inflected(*differing[0])
    longer, shorter = (ours, theirs) if len(ours) > len(theirs) else (theirs, ours)
    for position, word in enumerate(longer):
        if longer[:position] + longer[position + 1 :] == shorter:
            return word in FUNCTION_WORDS
    return False


def _stretch_left_out(words: list[str], source: str) -> str | None:
    """The quotation's first and last parts found in order, a few words apart, with no negation in between."""
    for cut in range(len(words) - 2, 0, -1):
        head, tail = " ".join(words[:cut]), " ".join(words[cut:])
        if len(words) - cut < 3:
            continue
        at = _find_words(source, head, 0)
        while at >= 0:
            after = at + len(head)
            rest = _find_words(source, tail, after)
            if rest >= 0:
                gap = source[after:rest].split()
                # a left-out "not" reverses what is left; a left-out sentence that holds one does not
                if 0 < len(gap) <= OMITTED_WORDS and (len(gap) > 3 or not NOT_INFLECTIONS.intersection(gap)):
                    return f"{head} [{' '.join(gap)}] {tail}"
                break
            at = _find_words(source, head, at + 1)
    return None


# Words whose change changes a sentence's meaning however alike they look ("is now"/"is not").
NOT_INFLECTIONS = frozenset("not no now nor never none more most less least can cannot will would should could may "
                            "might must won".split())  # fmt: skip


def _inflected(a: str, b: str) -> bool:
    """Two forms of one word: "increase"/"increased", "gives"/"giving", "fell"/"fallen"."""
    a, b = a.strip(".,;:!?"), b.strip(".,;:!?")
    if a == b or not (a.isalpha() and b.isalpha()) or a in NOT_INFLECTIONS or b in NOT_INFLECTIONS:
        return False
    if min(len(a), len(b)) >= 3 and a[:3] == b[:3] and abs(len(a) - len(b)) <= 4:
        return True
    return min(len(a), len(b)) >= 4 and a[0] == b[0] and Levenshtein.distance(a, b) <= 3


# --- one text -----------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One figure or quotation of a claim's text and its verdict."""

    kind: Literal["figure", "quotation"]
    text: str
    verdict: Verdict
    reason: str


# Before a quotation in prose, what attributes it to someone: only then is it presented as their words. An
# unattributed short quotation in an argument is a phrase held up for discussion ("solve alignment once").
_ATTRIBUTED = re.compile(
    r"(?:\b(?:says?|said|writes?|wrote|written|states|stated|noted|calls?|called|describes?|described|"
    r"argues?|argued|puts? it|according to|in the words of|quotes?|quoted|claimed|explains?|explained|"
    r"warns?|warned|concludes?|concluded|reported|known as|referred to as|termed|labelled|labeled|"
    r"characteri[sz]es?|characteri[sz]ed|frames?|framed)\b[^.\n]{0,40}|:\s*)$",
    re.IGNORECASE,
)
PROSE_QUOTE_WORDS = 10  # an unattributed quotation this long in prose is still taken as the source's words


def _presented_as_quotation(text: str, start: int, quote: str, prose: bool) -> bool:
    if re.search(r"\b[XYZ]\b", quote):
        return False  # a template ("the trade-off between X and Y"), not anyone's words
    if not prose:
        return True
    return len(quote.split()) >= PROSE_QUOTE_WORDS or bool(_ATTRIBUTED.search(text[max(0, start - 60) : start]))


def check_text(text: str, facts: SourceFacts, prose: bool = False) -> list[Finding]:
    """Each checked figure and each quotation of ``text``, once.

    ``prose`` (a title, description or argument, in the model's own words) checks only the quotations it
    attributes to someone (or long ones); evidence checks them all. A question in quotation marks that the
    source does not hold is one posed, not quoted. Figures inside a quotation are judged with it.
    """
    findings: list[Finding] = []
    seen: set[str] = set()
    readable = plain(text)
    quoted_spans: list[str] = []
    for start, quote in quotations_with_offsets(readable):
        quoted_spans.append(grounding_text(quote))
        if quote in seen or not _presented_as_quotation(readable, start, quote, prose):
            continue
        result = check_quotation(quote, facts)
        if result is None or (result.verdict == "unverified" and quote.rstrip().endswith("?")):
            continue
        seen.add(quote)
        findings.append(Finding("quotation", quote, result.verdict, result.reason))
    for figure in figures_in(text):
        if not figure.checked or figure.written in seen or any(figure.written in span for span in quoted_spans):
            continue
        seen.add(figure.written)
        judged = check_figure(figure, facts)
        findings.append(Finding("figure", figure.written, judged.verdict, judged.reason))
    return findings


# --- dates ----------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],  # fmt: skip
        start=1,
    )
    for name in names
}
_MONTH = r"(" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_ISO_DATE = re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)")
_MONTH_DAY_YEAR = re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+(\d{{4}})\b", re.IGNORECASE)
_DAY_MONTH_YEAR = re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+(\d{{4}})\b", re.IGNORECASE)


def _iso(year: str, month: int | str, day: str) -> str | None:
    try:
        return datetime.date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return None


_MONTH_DAY = re.compile(rf"\b{_MONTH}\s+{_DAY}\b(?!,?\s+\d{{4}})", re.IGNORECASE)
_DAY_MONTH = re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}(?![\w.]*,?\s+\d{{4}})", re.IGNORECASE)


def dates_in(text: str, year: int | None = None) -> set[str]:
    """The calendar dates a text states, as YYYY-MM-DD: ISO and slashed forms, "March 5, 2024", "5 March 2024";
    with ``year`` (the source's own), also dates written without one ("Friday, Feb 9th")."""
    found = {_iso(y, m, d) for y, m, d in _ISO_DATE.findall(text)}
    found |= {_iso(y, _MONTHS[m.casefold()], d) for m, d, y in _MONTH_DAY_YEAR.findall(text)}
    found |= {_iso(y, _MONTHS[m.casefold()], d) for d, m, y in _DAY_MONTH_YEAR.findall(text)}
    if year is not None:
        found |= {_iso(str(year), _MONTHS[m.casefold()], d) for m, d in _MONTH_DAY.findall(text)}
        found |= {_iso(str(year), _MONTHS[m.casefold()], d) for d, m in _DAY_MONTH.findall(text)}
    return {date for date in found if date}
