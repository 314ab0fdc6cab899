"""Splitting a long source into overlapping chunks, and merging the chunks' answers.

A source whose prompt would not fit the model's context is never truncated:
it is split on the best boundaries available (headings, paragraphs, sentences,
lines, whitespace; a hard cut only inside an absurdly long "word"), each chunk
is extracted on its own, and the answers are merged into one. Both halves are
pure functions: no I/O, no LLM calls.

Cut rule: a chunk ends at the highest-ranked boundary that lies in the second
half of its window (the ``max_chars`` characters from the chunk's start), the
latest one of that rank. Boundaries in the first half are ignored, so a heading
early in the window never makes a tiny chunk when a sentence end lies near the
limit. If the second half holds no boundary at all, the cut is hard, at the
limit. Hence every chunk but the last is longer than ``max_chars // 2``.

Overlap rule: the next chunk starts at a boundary (paragraph or heading, else
sentence end, else line break, else whitespace) in the ``overlap_chars`` before
the previous chunk's end, the earliest one of the best rank, so the text around
a cut is seen twice. A boundary that would give less than half the overlap
budget is taken only when no rank has one that gives more. With no boundary in
reach (inside a huge word) the next chunk starts where the previous ended.
Since ``max_chars > 2 * overlap_chars``, a chunk is always longer than the
overlap, so each chunk starts strictly after the one before and the loop ends.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from enum import IntEnum

from pydantic import BaseModel
from rapidfuzz import fuzz

from extractor.extraction.answer import ClaimDraft, EnrichmentDraft, ExtractionAnswer, unique_items
from extractor.extraction.gates import DUPLICATE_SCORE, normalise, similar_titles

# --- splitting -------------------------------------------------------------


class Boundary(IntEnum):
    """Kinds of places a body can be cut, best first."""

    HEADING = 0
    PARAGRAPH = 1
    SENTENCE = 2
    LINE = 3
    WHITESPACE = 4


# Each pattern's match marks one boundary: the start of a heading line, the end of the rest.
_BOUNDARY_PATTERNS: dict[Boundary, re.Pattern[str]] = {
    Boundary.HEADING: re.compile(r"^#{1,6}(?=[ \t]|$)", re.MULTILINE),
    Boundary.PARAGRAPH: re.compile(r"\n[ \t]*\n(?:[ \t]*\n)*"),
    Boundary.SENTENCE: re.compile(r"[.!?…][\"'”’»)\]]*\s+|[。！？]\s*"),
    Boundary.LINE: re.compile(r"\n"),
    Boundary.WHITESPACE: re.compile(r"\s"),  # after any whitespace character: long runs of blanks occur
}
# Where the next chunk may start within the overlap, best first; a heading line counts as a paragraph.
_OVERLAP_RANKS: tuple[tuple[Boundary, ...], ...] = (
    (Boundary.HEADING, Boundary.PARAGRAPH),
    (Boundary.SENTENCE,),
    (Boundary.LINE,),
    (Boundary.WHITESPACE,),
)


class Chunk(BaseModel):
    """One piece of a body; ``text == body[start:end]``."""

    index: int
    start: int
    end: int
    text: str


def boundaries(body: str) -> dict[Boundary, list[int]]:
    """Sorted positions of every boundary kind: a cut there puts body[:p] and body[p:] apart."""
    found: dict[Boundary, list[int]] = {}
    for kind, pattern in _BOUNDARY_PATTERNS.items():
        positions = (m.start() if kind is Boundary.HEADING else m.end() for m in pattern.finditer(body))
        found[kind] = sorted({p for p in positions if 0 < p < len(body)})
    return found


def _last_in(positions: list[int], low: int, high: int) -> int | None:
    """The last position p with low < p <= high."""
    i = bisect_right(positions, high)
    return positions[i - 1] if i and positions[i - 1] > low else None


def _first_in(positions: list[int], low: int, high: int) -> int | None:
    """The first position p with low <= p < high."""
    i = bisect_left(positions, low)
    return positions[i] if i < len(positions) and positions[i] < high else None


def _cut(found: dict[Boundary, list[int]], start: int, max_chars: int) -> int:
    """Where a chunk starting at ``start`` ends: the best boundary in its window's second half."""
    limit = start + max_chars
    for kind in Boundary:
        cut = _last_in(found[kind], start + max_chars // 2, limit)
        if cut is not None:
            return cut
    return limit


def _next_start(found: dict[Boundary, list[int]], previous_start: int, end: int, overlap_chars: int) -> int:
    """Where the chunk after one ending at ``end`` starts: a boundary at most ``overlap_chars`` back."""
    low = max(end - overlap_chars, previous_start + 1)
    for reach_high in (low + max(overlap_chars // 2, 1), end):
        for ranks in _OVERLAP_RANKS:
            starts = [p for kind in ranks if (p := _first_in(found[kind], low, min(reach_high, end))) is not None]
            if starts:
                return min(starts)
    return end


def split_body(body: str, max_chars: int, overlap_chars: int) -> list[Chunk]:
    """The body in chunks of at most ``max_chars``, covering every character, overlapping near cuts.

    Raises ValueError unless ``max_chars > 2 * overlap_chars`` and ``overlap_chars >= 0``:
    a chunk must be longer than the overlap for the split to move forward.
    """
    if overlap_chars < 0:
        raise ValueError(f"overlap_chars must not be negative (got {overlap_chars})")
    if max_chars <= 2 * overlap_chars:
        raise ValueError(
            f"max_chars ({max_chars}) must be more than twice overlap_chars ({overlap_chars}) so every chunk "
            "moves past the previous one"
        )
    if len(body) <= max_chars:
        return [Chunk(index=0, start=0, end=len(body), text=body)]
    found = boundaries(body)
    chunks: list[Chunk] = []
    start = 0
    while True:
        end = len(body) if len(body) - start <= max_chars else _cut(found, start, max_chars)
        chunks.append(Chunk(index=len(chunks), start=start, end=end, text=body[start:end]))
        if end == len(body):
            return chunks
        start = _next_start(found, start, end, overlap_chars)


# --- merging ---------------------------------------------------------------

FACT_SCORE = 95.0
NOTES_MAX = 600
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NEGATIONS = frozenset("no not never none nor neither without cannot".split())


class MergeReport(BaseModel):
    """What merging the chunks' answers combined or dropped, for the extraction notes."""

    chunks: int
    combined_claims: list[str]
    dropped_facts: int
    dropped_enrichments: list[str]


class _Group(BaseModel):
    """A merged claim and the chunks it came from (two claims of one chunk are never combined)."""

    claim: ClaimDraft
    parts: set[int]


def _combine(kept: ClaimDraft, other: ClaimDraft) -> ClaimDraft:
    """One claim from two near-duplicates: the first's title, description and confidence.

    Evidence, limitations, links and domains are joined in order. The longer
    argument is kept, since it usually carries the reasoning the shorter one
    only gestures at; confidence stays the first's rather than guessing which
    chunk judged better.
    """
    return ClaimDraft.model_validate(
        {
            **kept.model_dump(mode="json"),
            "evidence": unique_items(kept.evidence + other.evidence),
            "limitations": unique_items(kept.limitations + other.limitations),
            "related": unique_items(kept.related + other.related),
            "secondary_domains": unique_items(kept.secondary_domains + other.secondary_domains),
            "argument": other.argument if len(other.argument) > len(kept.argument) else kept.argument,
        }
    )


def _closeness(a: str, b: str) -> tuple[float, float]:
    """The duplicate gate's title score, then plain similarity to choose among ties.

    The gate's token-set score is 100 whenever one title's words contain the
    other's, so several earlier claims can tie; the closest by edit distance wins.
    """
    return similar_titles(a, b), fuzz.ratio(normalise(a), normalise(b))


def _merge_claims(answers: list[ExtractionAnswer], threshold: float) -> tuple[list[ClaimDraft], list[str]]:
    """Claims in chunk order, each joined to the most similar earlier claim from another chunk."""
    groups: list[_Group] = []
    combined: list[str] = []
    for part, answer in enumerate(answers):
        for claim in answer.claims:
            scored = [(_closeness(claim.title, g.claim.title), g) for g in groups if part not in g.parts]
            score, group = max(scored, key=lambda pair: pair[0], default=((0.0, 0.0), None))  # ties: the earliest
            if group is None or score[0] < threshold:
                groups.append(_Group(claim=claim, parts={part}))
                continue
            group.claim = _combine(group.claim, claim)
            group.parts.add(part)
            if group.claim.title not in combined:
                combined.append(group.claim.title)
    return [group.claim for group in groups], combined


def _negations(text: str) -> int:
    return sum(word in _NEGATIONS or word.endswith("n't") for word in re.findall(r"[\w']+", text))


def _same_fact(a: str, b: str) -> bool:
    """Facts that say the same: equal as ``unique_items`` compares them, or near-identical.

    Near-identical (``fuzz.ratio`` at FACT_SCORE or more) also needs the same
    numbers and as many negations: "launched 2016" and "launched 2017", or
    "is worth" and "is not worth", score that high but are different facts.
    """
    if len(unique_items([a, b])) < 2:
        return True
    a, b = normalise(a), normalise(b)
    return (
        _NUMBER.findall(a) == _NUMBER.findall(b) and _negations(a) == _negations(b) and fuzz.ratio(a, b) >= FACT_SCORE
    )


def _merge_facts(answers: list[ExtractionAnswer]) -> tuple[list[str], int]:
    """Key facts in order; a fact some earlier chunk already stated is dropped.

    Within one chunk only exact repeats go (the answer's own validator already
    removed them), so one answer merges to itself.
    """
    kept: list[tuple[int, str]] = []
    dropped = 0
    for part, answer in enumerate(answers):
        for fact in answer.key_facts:
            if any(other != part and _same_fact(fact, seen) for other, seen in kept):
                dropped += 1
            else:
                kept.append((part, fact))
    return [fact for _, fact in kept], dropped


def _merge_enrichments(answers: list[ExtractionAnswer]) -> tuple[list[EnrichmentDraft], list[str]]:
    """One enrichment per target across chunks: the first kept, later chunks' repeats dropped and named.

    The dropped one's evidence is not folded in: an enrichment quotes one
    passage, and a repeat from another chunk may even be of another kind.
    Repeats within one chunk are left to the extraction's own reconciliation.
    """
    first_part: dict[str, int] = {}
    kept: list[EnrichmentDraft] = []
    dropped: list[str] = []
    for part, answer in enumerate(answers):
        for enrichment in answer.enrichments:
            key = enrichment.target.casefold()
            earlier = first_part.setdefault(key, part)
            if earlier == part:
                kept.append(enrichment)
            else:
                dropped.append(
                    f"part {part + 1}: {enrichment.kind.value} enrichment of {enrichment.target!r} dropped; "
                    f"part {earlier + 1} already enriches it"
                )
    return kept, dropped


def _merge_notes(answers: list[ExtractionAnswer]) -> str:
    """Every chunk's notes as "part N: ...", within NOTES_MAX characters; one answer's notes unchanged."""
    if len(answers) == 1:
        return answers[0].notes
    joined = "; ".join(f"part {part + 1}: {a.notes}" for part, a in enumerate(answers) if a.notes)
    return joined if len(joined) <= NOTES_MAX else joined[: NOTES_MAX - 1].rstrip() + "…"


def merge_answers(
    answers: list[ExtractionAnswer], title_threshold: float = DUPLICATE_SCORE
) -> tuple[ExtractionAnswer, MergeReport]:
    """One answer from the answers for a source's chunks, in chunk order.

    Near-duplicate claims from different chunks (``similar_titles`` at or above
    ``title_threshold``, by default the duplicate gate's own score, which would
    otherwise reject the later one as a near-duplicate of another draft) are
    combined into the first. The null result reason survives only when nothing
    was found; then it is the first chunk's. Raises ValueError for no answers.
    """
    if not answers:
        raise ValueError("no answers to merge")
    claims, combined = _merge_claims(answers, title_threshold)
    facts, dropped_facts = _merge_facts(answers)
    enrichments, dropped_enrichments = _merge_enrichments(answers)
    # Entities are judged once more on the merged answer, where drafts of one object from two parts merge.
    entities = [entity.model_dump(mode="json") for answer in answers for entity in answer.entities]
    updates = [update.model_dump(mode="json") for answer in answers for update in answer.entity_updates]
    reasons = [answer.null_result_reason for answer in answers if answer.null_result_reason]
    reason = None if claims or enrichments or entities or updates or not reasons else reasons[0]
    merged = ExtractionAnswer.model_validate(
        {
            "key_facts": facts,
            "claims": [claim.model_dump(mode="json") for claim in claims],
            "enrichments": [enrichment.model_dump(mode="json") for enrichment in enrichments],
            "entities": entities,
            "entity_updates": updates,
            "null_result_reason": reason,
            "notes": _merge_notes(answers),
        }
    )
    report = MergeReport(
        chunks=len(answers),
        combined_claims=combined,
        dropped_facts=dropped_facts,
        dropped_enrichments=dropped_enrichments,
    )
    return merged, report
