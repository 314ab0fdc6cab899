"""A source body as numbered sentences, for a model that chooses among them rather than writes.

Sentences come from syntok's segmenter, run on the body's prose blocks (markdown
headings, tables and code are not prose); each keeps its place in the body, so what
is chosen is quoted verbatim. Which sentences may be chosen, and how likely each is
to hold a checkable statement, is computed here too: the model's choices are bounded
by the first and its fallbacks ranked by the second.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict
from syntok import segmenter

from extractor.core.text import one_line
from extractor.extraction.answer import letter_words
from extractor.extraction.gates import FINITE_VERBS, has_finite_verb

MIN_WORDS = 6
MAX_WORDS = 80
# Sections a curator or an earlier run wrote: the whole heading names one ("## Links", "## Agent Notes",
# "## Rio's assessment"); a source's own "## Risk Assessment" or "## Links between wages and prices" is its text.
NOT_THE_SOURCE = re.compile(
    r"^(?:(?:agent|curator|extraction|editor|kb)\s+notes?\b.*|notes?|links?|related links|noise\b.*|"
    r"connections?\b.*|relevance\b.*|\S+'s assessment|references|bibliography|key facts|extraction hints?|tags)"
    r"\s*:?\s*$",
    re.IGNORECASE,
)
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+")
_FENCE = re.compile(r"^\s*(```|~~~)")
_TABLE = re.compile(r"^\s*\|")
_FIGURE = re.compile(r"\d")
_URL = re.compile(r"https?://\S+")
# Words that mark a statement someone could check or dispute: findings, comparisons, causes, predictions.
_CLAIM_WORDS = re.compile(
    r"\b(?:more|less|fewer|greater|higher|lower|than|increase[sd]?|decrease[sd]?|reduce[sd]?|improve[sd]?|"
    r"outperform(?:s|ed)?|cause[sd]?|lead(?:s)? to|led to|because|therefore|show(?:s|ed|n)?|f(?:ou|i)nds?|"
    r"found|suggest(?:s|ed)?|predict(?:s|ed)?|must|cannot|will|should|significant(?:ly)?|evidence|"
    r"effect(?:s)?|without|only|most|never|always|fail(?:s|ed)?|require[sd]?|depend(?:s|ed)?)\b",
    re.IGNORECASE,
)


# Verbs a line starts with when it has no subject ("Provides the backbone for...", "Tracks volume across..."):
# notes and list items, not statements.
SUBJECTLESS = frozenset(
    "provides represents tracks shows includes offers enables allows requires creates reduces increases supports "
    "uses covers describes explains lists contains highlights demonstrates suggests notes adds gives makes helps "
    "lets discusses argues proposes introduces presents outlines examines analyzes analyses compares documents "
    "captures reflects confirms extends challenges illustrates measures reports published based written released "
    "authored presented".split()
)


class Sentence(BaseModel):
    """One sentence of the body: its number (from 1), its text on one line, where it sits, and its section."""

    model_config = ConfigDict(frozen=True)

    number: int
    text: str
    start: int
    end: int
    section: str = ""
    block: int = 0  # the prose block (paragraph or list item) it belongs to
    fragment: bool = False  # a list item completing the sentence before it ("five areas:"): not a statement

    @property
    def words(self) -> int:
        return len(self.text.split())


def split_sentences(body: str) -> list[Sentence]:
    """Every sentence of the body's prose, numbered from 1 in reading order."""
    sentences: list[Sentence] = []
    for block, (start, text, section, item) in enumerate(_block_spans(body)):
        for paragraph in segmenter.analyze(text):
            for tokens in paragraph:
                if not tokens:
                    continue
                first, last = tokens[0], tokens[-1]
                begin, end = start + first.offset, start + last.offset + len(last.value)
                sentence = one_line(body[begin:end])
                if sentence:
                    before = sentences[-1] if sentences else None
                    fragment = (
                        item
                        and before is not None
                        and before.section == section  # a heading ends the list a colon opened
                        and (before.fragment or before.text.endswith(":"))
                    )
                    sentences.append(
                        Sentence(
                            number=len(sentences) + 1,
                            text=sentence,
                            start=begin,
                            end=end,
                            section=section,
                            block=block,
                            fragment=fragment,
                        )  # fmt: skip
                    )
    return sentences


def _block_spans(body: str) -> list[tuple[int, str, str, bool]]:
    """(offset, text, section, is a list item) of each prose block, with offsets exact into ``body``."""
    spans: list[tuple[int, str, str, bool]] = []
    section = ""
    in_code = False
    start: int | None = None
    end = 0
    offset = 0
    item_block = False

    def close() -> None:
        nonlocal start
        if start is not None and body[start:end].strip():
            spans.append((start, body[start:end], section, item_block))
        start = None

    for line in body.splitlines(keepends=True):
        stripped = line.strip()
        if _FENCE.match(line):
            close()
            in_code = not in_code
        elif in_code or not stripped or _TABLE.match(line):
            close()
        elif heading := _HEADING.match(line):
            close()
            section = heading.group(2).strip()
        else:
            item = _LIST_ITEM.match(line)
            if item:
                close()
            if start is None:
                start = offset + (item.end() if item else 0)
                item_block = item is not None
            end = offset + len(line)
        offset += len(line)
    close()
    return spans


_AFTER_A_NOUN = frozenset("in of from to for on by with at about among across".split())


def starts_subjectless(text: str) -> bool:
    """Does it start with a verb and no subject ("Proposes a meta-theoretical ontology...")? Not when the word
    is a plural noun with its preposition ("Increases in the minimum wage reduced...")."""
    words = [word.strip("*_").casefold() for word in text.split()[:2]]
    if not words or words[0] not in SUBJECTLESS:
        return False
    return not (words[0].endswith("s") and len(words) > 1 and words[1] in _AFTER_A_NOUN)


def has_plain_verb(text: str) -> bool:
    """A verb no noun is mistaken for: one of the common finite verbs, or a past form."""
    words = [word.strip(".,;:'\"()*") for word in text.split()]
    return any(
        word.casefold() in FINITE_VERBS or (len(word) > 4 and word.endswith("ed") and word.islower()) for word in words
    )  # "United States" is not a past tense


def selectable(sentence: Sentence) -> bool:
    """May the model choose it: a whole statement of the source's own, with a verb, neither a question nor a
    link, and of a length a claim's evidence can quote."""
    text = sentence.text
    if not MIN_WORDS <= sentence.words <= MAX_WORDS or letter_words(text) < MIN_WORDS - 1:
        return False
    if sentence.fragment or NOT_THE_SOURCE.match(sentence.section.strip()) or text.rstrip().endswith(("?", ":")):
        return False
    if starts_subjectless(text):
        return False
    label, colon, rest = text.partition(": ")
    if colon and len(label) <= 60 and (not has_plain_verb(rest) or starts_subjectless(rest)):
        return False  # "Additional data: demographics, wallets, curves": a label and a list, not a statement
    if "[[" in text:
        return False
    if _URL.sub("", text).strip() != text.strip() and letter_words(_URL.sub("", text)) < MIN_WORDS:
        return False
    return has_finite_verb(text)


def checkability(sentence: Sentence) -> float:
    """How likely the sentence states something checkable or arguable: figures, comparisons, causes, findings;
    a mid-length sentence over a very short or very long one. Ranks windows and fallbacks, never decides alone."""
    text = sentence.text
    score = 2.0 if _FIGURE.search(_URL.sub("", text)) else 0.0
    score += min(3, len(_CLAIM_WORDS.findall(text)))
    if 12 <= sentence.words <= 45:
        score += 1.0
    elif sentence.words > 60:
        score -= 1.0
    return score
