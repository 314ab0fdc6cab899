"""Quality gates: every drafted claim passes them before anything is written.

Each gate is a pure function that returns the problems it found, as short
messages the model can act on when re-asked and a reviewer can read in
``extraction_notes``. The same checks, where they apply to stored files, lint
a KB (``extractor validate``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from pydantic import BaseModel
from rapidfuzz import fuzz

from extractor.extraction.answer import ClaimDraft, letter_words
from extractor.kb.claims import WIKI_LINK, Confidence
from extractor.kb.index import KBIndex

_WORD = re.compile(r"[^\W\d_]{4,}")
STOPWORDS = frozenset(
    "that this with from have their they them than then there these those which while where when what would "
    "could should will into more most also only other such some many much because about over under between "
    "being been were does each every very just make makes made like".split()
)
STEM = 5
ON_TOPIC_SHARE = 0.4
TITLE_MAX = 260
DUPLICATE_SCORE = 85.0
PARAPHRASE_SCORE = 90.0

# Words that make "This note argues that <title>" a sentence when no other verb form shows.
FINITE_VERBS = frozenset(
    "is are was were be been being am has have had do does did can could will would shall should may might "
    "must need needs cannot won't isn't aren't doesn't don't didn't can't wasn't weren't hasn't haven't "
    "outperform outperforms beat beats lead leads drive drives cause causes fail fails require requires "
    "remain remains become becomes make makes create creates reduce reduces increase increases lower lowers "
    "raise raises enable enables prevent prevents shift shifts depend depends explain explains show shows "
    "mean means grow grows win wins lose loses emerge emerges work works hold holds produce produces "
    "applies implies relies varies carries supplies justifies amplifies identifies satisfies intensifies "
    "qualifies modifies simplifies signifies clarifies specifies diversifies multiplies occupies embodies "
    "denies defies unifies "
    # irregular past forms and frequent base forms after plural subjects
    "grew rose fell became won lost led drove took gave saw found built left began brought kept ran spent sold "
    "paid bought cut set put hit outgrew confirm confirms excel excels prove proves suggest suggests "
    "predict predicts determine determines matter matters differ differs compete competes".split()
)
NOT_VERBS_ENDING_S = ("ss", "us", "is", "ics", "ous", "ies")


class GateFailure(BaseModel):
    gate: str
    message: str

    def __str__(self) -> str:
        return f"{self.gate}: {self.message}"


def content_stems(text: str) -> set[str]:
    """Word stems that carry meaning: lower case, 4+ letters, no stopwords, cut to 5 letters."""
    return {w[:STEM] for w in (m.group(0).casefold() for m in _WORD.finditer(text)) if w not in STOPWORDS}


def normalise(text: str) -> str:
    """Text for containment checks: NFKC, plain quotes and dashes, no thousands separators, one space."""
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(str.maketrans("“”„‘’–—", '"""\'\'--'))
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"-\s*\n\s*", "", text)  # hyphenation across lines
    return " ".join(text.casefold().split())


# --- single-claim gates ---------------------------------------------------


def has_finite_verb(title: str) -> bool:
    words = [w.casefold().strip(".,;:'\"()") for w in re.split(r"[\s-]+", title)]
    for position, word in enumerate(words):
        if word in FINITE_VERBS:
            return True
        if position == 0 or len(word) < 4 or not word.isalpha():
            continue
        if word.endswith("ed") or (word.endswith("s") and not word.endswith(NOT_VERBS_ENDING_S)):
            return True
    return False


def gate_title(title: str) -> list[GateFailure]:
    problems = []
    if letter_words(title.replace("-", " ")) < 4:
        problems.append("is a bare topic: write a complete proposition someone could disagree with")
    elif not has_finite_verb(title):
        problems.append('has no verb: "This note argues that <title>" must read as a sentence')
    if len(title) > TITLE_MAX:
        problems.append(f"is {len(title)} characters; keep it under {TITLE_MAX}")
    if title.rstrip().endswith("?"):
        problems.append("is a question, not a proposition")
    return [GateFailure(gate="title", message=f"the title {p}") for p in problems]


def gate_description(title: str, description: str) -> list[GateFailure]:
    new = content_stems(description) - content_stems(title)
    paraphrase = fuzz.token_set_ratio(normalise(title), normalise(description)) >= PARAPHRASE_SCORE
    if letter_words(description) < 3:
        return [GateFailure(gate="description", message="the description must be a sentence")]
    if paraphrase or len(new) < 2:
        return [GateFailure(gate="description", message="the description restates the title; add new information")]
    return []


def gate_evidence(draft: ClaimDraft) -> list[GateFailure]:
    if not any(item.strip() for item in draft.evidence):
        return [GateFailure(gate="evidence", message="the claim has no evidence item")]
    return []


_NUMBER = re.compile(
    r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)(\s?(?:%|percent\b|per cent\b|x\b|×|times\b|bn\b|billion\b|million\b|"
    r"mn\b|thousand\b|trillion\b|tn\b|k\b|m\b|b\b|t\b))?",
    re.IGNORECASE,
)
_QUOTED = re.compile(r'"([^"\n]{12,}?)"')
SCALE = {"k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "million": 1e6, "b": 1e9, "bn": 1e9, "billion": 1e9,
         "t": 1e12, "tn": 1e12, "trillion": 1e12}  # fmt: skip
KIND = {"%": "%", "percent": "%", "per cent": "%", "x": "x", "×": "x", "times": "x"}


class Figure(BaseModel, frozen=True):
    """A number as written, and its value with any scale word applied (90K and 90,000 are one figure)."""

    written: str
    value: float
    kind: str  # "%", "x" or ""
    checked: bool  # worth checking: a unit, a decimal point, or two or more digits


def figures_in(text: str) -> list[Figure]:
    found = []
    for match in _NUMBER.finditer(normalise(text)):
        digits, unit = match.group(1).rstrip(",."), (match.group(2) or "").strip().casefold()
        try:
            value = float(digits.replace(",", ""))
        except ValueError:
            continue
        value *= SCALE.get(unit, 1.0)
        checked = bool(unit) or "." in digits or len(digits.replace(",", "")) >= 2
        found.append(Figure(written=match.group(0).strip(), value=value, kind=KIND.get(unit, ""), checked=checked))
    return found


def _known(figures: list[Figure]) -> set[tuple[float, str]]:
    known = set()
    for figure in figures:
        known.add((round(figure.value, 6), figure.kind))
        if figure.kind:  # "65%" also grounds a bare 65 ("65 of 100", "fell 65 points")
            known.add((round(figure.value, 6), ""))
    return known


def gate_grounding(texts: Iterable[str], source_text: str) -> list[GateFailure]:
    """Every figure and every quoted span must occur in the source: invented numbers fail here."""
    source = normalise(source_text)
    known = _known(figures_in(source_text))
    problems = []
    for text in texts:
        for figure in figures_in(text):
            if figure.checked and (round(figure.value, 6), figure.kind) not in known:
                problems.append(
                    GateFailure(gate="grounding", message=f"the figure {figure.written} is not in the source")
                )
        for quote in _QUOTED.findall(normalise(text)):
            if quote.strip(" .,") not in source:
                short = quote if len(quote) <= 60 else quote[:57] + "..."
                problems.append(GateFailure(gate="grounding", message=f'the quotation "{short}" is not in the source'))
    return list({p.message: p for p in problems}.values())


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def gate_degenerate(draft: ClaimDraft) -> list[GateFailure]:
    problems = []
    sentences = [" ".join(s.casefold().split()) for s in _SENTENCE.split(draft.argument) if len(s.split()) >= 4]
    if len(sentences) != len(set(sentences)):
        problems.append("the argument repeats a sentence")
    if not draft.argument.strip():
        problems.append("the argument is empty")
    if any(not item.strip() for item in [*draft.evidence, *draft.limitations]):
        problems.append("a list item is empty")
    words = draft.argument.casefold().split()
    if any(len(set(words[i : i + 4])) == 1 for i in range(max(0, len(words) - 3))):
        problems.append("the argument repeats a word in a loop")
    return [GateFailure(gate="degenerate", message=p) for p in problems]


def gate_allowed(draft: ClaimDraft, domain: str, domains: list[str]) -> list[GateFailure]:
    problems = []
    if draft.confidence not in set(Confidence):
        problems.append(GateFailure(gate="allowed", message=f"confidence {draft.confidence!r} is not allowed"))
    if domain not in domains:
        problems.append(GateFailure(gate="allowed", message=f"domain {domain!r} is not one of the KB's domains"))
    return problems


def gate_on_topic(draft: ClaimDraft, source_stems: set[str], threshold: float = ON_TOPIC_SHARE) -> list[GateFailure]:
    stems = content_stems(" ".join([draft.title, *draft.evidence]))
    share = len(stems & source_stems) / len(stems) if stems else 0.0
    if share < threshold:
        return [GateFailure(gate="off-topic", message=f"only {share:.0%} of the claim's words occur in the source")]
    return []


def similar_titles(a: str, b: str) -> float:
    return fuzz.token_set_ratio(normalise(a), normalise(b))


def gate_duplicate(title: str, index: KBIndex, earlier: list[str], ignore: set[str]) -> list[GateFailure]:
    """Near-duplicates of a KB claim (BM25 finds the candidates) or of an earlier draft."""
    for ref in index.related(title, 5):
        if ref.path not in ignore and similar_titles(title, ref.title) >= DUPLICATE_SCORE:
            return [GateFailure(gate="duplicate", message=f"near-duplicate of the existing claim: {ref.title}")]
    for other in earlier:
        if similar_titles(title, other) >= DUPLICATE_SCORE:
            return [GateFailure(gate="duplicate", message=f"near-duplicate of another draft: {other}")]
    return []


# --- all gates over an answer ----------------------------------------------


# Every gate a drafted claim passes before it is written, in the order they run.
GATES = ("title", "description", "evidence", "grounding", "degenerate", "allowed", "off-topic", "duplicate")


class GateReport(BaseModel):
    failures: dict[int, list[GateFailure]]

    def feedback(self, drafts: list[ClaimDraft]) -> str:
        lines = [
            f'claims[{i}] ("{drafts[i].title[:80]}"): ' + "; ".join(f.message for f in problems)
            for i, problems in sorted(self.failures.items())
        ]
        return (
            "Some claims failed the knowledge base's checks:\n- " + "\n- ".join(lines) + "\n"
            "Fix those claims (use only figures and quotations that appear in the source) or remove them, "
            "and reply with the whole corrected JSON object."
        )


def check_claims(
    drafts: list[ClaimDraft],
    source_text: str,
    domain: str,
    domains: list[str],
    index: KBIndex,
    replaced: set[str] | None = None,
) -> GateReport:
    """Run every gate on every drafted claim; failures by the claim's position."""
    source_stems = content_stems(source_text)
    failures: dict[int, list[GateFailure]] = {}
    earlier: list[str] = []
    for position, draft in enumerate(drafts):
        problems = [
            *gate_title(draft.title),
            *gate_description(draft.title, draft.description),
            *gate_evidence(draft),
            *gate_grounding([draft.argument, *draft.evidence], source_text),
            *gate_degenerate(draft),
            *gate_allowed(draft, domain, domains),
            *gate_on_topic(draft, source_stems),
            *gate_duplicate(draft.title, index, earlier, replaced or set()),
        ]
        if problems:
            failures[position] = problems
        else:
            earlier.append(draft.title)
    return GateReport(failures=failures)


def unlink_unresolved(text: str, index: KBIndex) -> tuple[str, int]:
    """Strip the brackets of wiki links that resolve to no file; returns the text and how many."""
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if index.resolve_link(target)[0] is not None:
            return match.group(0)
        count += 1
        return label or target

    return WIKI_LINK.sub(replace, text), count
