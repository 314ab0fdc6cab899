"""Long sources split into overlapping chunks on good boundaries, and the chunks' answers merged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from extractor.extraction.answer import ExtractionAnswer
from extractor.extraction.chunking import Chunk, merge_answers, split_body
from extractor.extraction.gates import similar_titles
from extractor.kb.sources import SourceError, load_source

# --- splitting: invariants --------------------------------------------------

_PARAGRAPH_END = re.compile(r"\n[ \t]*\n\Z")
_HEADING_START = re.compile(r"#{1,6}(?:[ \t]|\n|\Z)")
_PARAGRAPH_OR_HEADING = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)*|^(?=#{1,6}(?:[ \t]|$))", re.MULTILINE)


def at_paragraph_or_heading(body: str, position: int) -> bool:
    """A cut after a blank line, or before a heading line."""
    heading = (position == 0 or body[position - 1] == "\n") and _HEADING_START.match(body, position) is not None
    return heading or _PARAGRAPH_END.search(body[:position]) is not None


def paragraph_or_heading_within(body: str, low: int, high: int) -> bool:
    """Whether some paragraph or heading boundary p lies in low < p <= high (and inside the body)."""
    ends = (match.end() for match in _PARAGRAPH_OR_HEADING.finditer(body))
    return any(low < end <= high and end < len(body) for end in ends)


def whitespace_boundary_within(body: str, low: int, high: int) -> bool:
    """Whether some position p with low <= p < high follows a whitespace character."""
    return any(body[p - 1].isspace() for p in range(max(low, 1), high))


def check_chunks(body: str, chunks: list[Chunk], max_chars: int, overlap_chars: int) -> None:
    assert chunks and chunks[0].start == 0 and chunks[-1].end == len(body)
    for number, chunk in enumerate(chunks):
        assert chunk.index == number
        assert chunk.text == body[chunk.start : chunk.end]
        assert len(chunk.text) <= max_chars
    for previous, chunk in zip(chunks, chunks[1:], strict=False):
        # no gap (nothing truncated), progress on both ends, overlap within the budget
        assert previous.start < chunk.start <= previous.end < chunk.end
        assert previous.end - chunk.start <= overlap_chars
        # every cut but the last is in the second half of its window
        assert len(previous.text) > max_chars // 2
        if paragraph_or_heading_within(body, previous.start + max_chars // 2, previous.start + max_chars):
            assert at_paragraph_or_heading(body, previous.end)
        low = max(previous.end - overlap_chars, previous.start + 1)
        if whitespace_boundary_within(body, low, previous.end):
            assert chunk.start < previous.end, "a boundary allowed an overlap, but none was made"


words = st.text(alphabet=st.characters(categories=("L", "N")), min_size=1, max_size=12)
sentences = st.lists(words, min_size=1, max_size=12).map(lambda w: " ".join(w) + ".")
paragraphs = st.lists(sentences, min_size=1, max_size=6).map(" ".join)
headings = st.tuples(st.integers(1, 6), st.lists(words, min_size=1, max_size=5)).map(
    lambda t: "#" * t[0] + " " + " ".join(t[1])
)
huge_words = st.integers(50, 3000).map(lambda n: "x" * n)
wild_text = st.text(max_size=300)  # any unicode: whitespace runs, CJK, control characters, surrogates
pieces = st.one_of(paragraphs, paragraphs, headings, huge_words, wild_text)
separators = st.sampled_from(["\n\n", "\n\n", "\n", " ", "", "\n \n\t\n"])


@st.composite
def bodies(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.tuples(pieces, separators), max_size=30))
    return "".join(piece + separator for piece, separator in parts)


@st.composite
def limits(draw: st.DrawFn) -> tuple[int, int]:
    max_chars = draw(st.integers(3, 1500))
    return max_chars, draw(st.integers(0, (max_chars - 1) // 2))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(), limits())
@example("", (10, 2))
@example("y" * 5000, (100, 30))
@example(" " * 5000, (100, 30))
@example("# A\n\n" * 400, (50, 20))
def test_chunks_cover_the_body_within_bounds(body: str, sizes: tuple[int, int]) -> None:
    max_chars, overlap_chars = sizes
    check_chunks(body, split_body(body, max_chars, overlap_chars), max_chars, overlap_chars)


# --- splitting: where the cuts go ---------------------------------------------


def sentences_of(count: int, word: str = "word") -> str:
    return " ".join(f"Sentence {n} has a {word} in it." for n in range(count))


def test_a_body_that_fits_is_one_chunk() -> None:
    body = "Short.\n\nTwo paragraphs."
    assert split_body(body, len(body), 5) == [Chunk(index=0, start=0, end=len(body), text=body)]
    assert split_body("", 10, 0) == [Chunk(index=0, start=0, end=0, text="")]


@pytest.mark.parametrize(("max_chars", "overlap_chars"), [(100, 50), (100, 60), (0, 0), (10, -1)])
def test_limits_that_cannot_progress_are_refused(max_chars: int, overlap_chars: int) -> None:
    with pytest.raises(ValueError, match="overlap_chars"):
        split_body("text " * 100, max_chars, overlap_chars)


def test_a_heading_in_the_second_half_beats_a_later_paragraph_break() -> None:
    body = sentences_of(12) + "\n\n## Results\n\n" + sentences_of(3) + "\n\n" + sentences_of(30)
    heading = body.index("## Results")
    [first, *_] = split_body(body, heading + 200, 50)
    assert first.end == heading


def test_a_paragraph_break_beats_a_later_sentence_end() -> None:
    body = sentences_of(12) + "\n\n" + sentences_of(30)
    paragraph = body.index("\n\n") + 2
    [first, second, *_] = split_body(body, paragraph + 300, 100)
    assert first.end == paragraph and first.text.endswith("in it.\n\n")
    assert second.start < first.end and body[second.start - 2 : second.start] == ". "  # overlap from a sentence


def test_a_boundary_in_the_first_half_is_ignored_for_a_later_weaker_one() -> None:
    body = "# Title\n\nIntro.\n\n" + sentences_of(40)
    [first, *_] = split_body(body, 500, 100)
    assert first.end > 250 and first.text.endswith("in it. ")


def test_without_sentences_a_line_break_then_whitespace_is_used() -> None:
    lines = "\n".join(f"line {n} without a stop" for n in range(60))
    [first, *_] = split_body(lines, 300, 50)
    assert first.text.endswith("\n")
    spaced = " ".join(f"w{n}" for n in range(400))
    [first, second, *_] = split_body(spaced, 300, 50)
    assert first.text.endswith(" ") and 0 < first.end - second.start <= 50 and spaced[second.start - 1] == " "


def test_a_huge_word_is_cut_hard_and_nothing_is_lost() -> None:
    body = "Intro sentence here. " + "z" * 200_000 + " Outro."
    chunks = split_body(body, 12_000, 1_000)
    check_chunks(body, chunks, 12_000, 1_000)
    assert len(chunks) == 17 and "".join(c.text for c in chunks) == body  # no overlap inside the word


def test_overlap_starts_at_a_paragraph() -> None:
    body = "\n\n".join(sentences_of(3, f"topic{n}") for n in range(40))
    chunks = split_body(body, 2000, 400)
    check_chunks(body, chunks, 2000, 400)
    for previous, chunk in zip(chunks, chunks[1:], strict=False):
        assert at_paragraph_or_heading(body, previous.end) and at_paragraph_or_heading(body, chunk.start)
        assert previous.end - chunk.start > 200  # the earliest paragraph start in reach


def test_the_longest_corpus_source_splits_at_paragraphs(corpus: Path) -> None:
    bodies_by_size = []
    for path in (corpus / "inbox" / "archive").glob("*.md"):
        try:
            bodies_by_size.append(load_source(path).body)
        except SourceError:
            continue
    body = max(bodies_by_size, key=len)
    chunks = split_body(body, 12_000, 1_000)
    check_chunks(body, chunks, 12_000, 1_000)
    assert len(body) > 100_000 and len(chunks) > len(body) // 12_000
    cuts = [chunk.end for chunk in chunks[:-1]]
    in_prose = [cut for cut in cuts if body[cut - 1 : cut + 1].strip()]  # not inside a run of blanks
    assert in_prose and all(at_paragraph_or_heading(body, cut) for cut in in_prose)


# --- merging ------------------------------------------------------------------


def claim(title: str, evidence: list[str], **fields: object) -> dict:
    return {
        "evidence": evidence,
        "argument": "The source argues it.",
        "limitations": [],
        "title": title,
        "description": "A claim drawn from one part of the source.",
        "confidence": "likely",
        "secondary_domains": [],
        "related": [],
        **fields,
    }


def answer(
    claims: list[dict] | None = None,
    key_facts: list[str] | None = None,
    enrichments: list[dict] | None = None,
    reason: str | None = None,
    notes: str = "",
) -> ExtractionAnswer:
    return ExtractionAnswer.model_validate(
        {
            "key_facts": key_facts or [],
            "claims": claims or [],
            "enrichments": enrichments or [],
            "null_result_reason": reason,
            "notes": notes,
        }
    )


CREATORS = "Creator content outgrows corporate content by orders of magnitude"
CREATORS_AGAIN = "Creator content outgrows corporate content by several orders of magnitude"
MONOCULTURE = "Mass media monoculture is ending as attention fragments across creators"


def test_near_duplicates_across_chunks_are_combined_into_the_first() -> None:
    first = claim(
        CREATORS,
        ["YouTube gets 500 hours a minute."],
        limitations=["Counts uploads, not views."],
        related=["Attention is scarce"],
        confidence="likely",
    )
    later = claim(
        CREATORS_AGAIN,
        ["youtube gets 500 hours a minute", "Hollywood makes 800 films a year."],
        argument="A longer argument: uploads dwarf studio output, and the gap widens every year.",
        limitations=["Counts uploads, not views.", "Quality differs."],
        related=["Attention is scarce", "Studios consolidate"],
        secondary_domains=["media"],
        confidence="proven",
    )
    merged, report = merge_answers([answer([first]), answer([claim(MONOCULTURE, ["TV ratings fell."]), later])])
    assert [c.title for c in merged.claims] == [CREATORS, MONOCULTURE]
    combined = merged.claims[0]
    assert combined.evidence == ["YouTube gets 500 hours a minute.", "Hollywood makes 800 films a year."]
    assert combined.limitations == ["Counts uploads, not views.", "Quality differs."]
    assert combined.related == ["Attention is scarce", "Studios consolidate"]
    assert combined.secondary_domains == ["media"]
    assert combined.confidence == "likely" and combined.argument == later["argument"]
    assert report.chunks == 2 and report.combined_claims == [CREATORS]


def test_near_duplicates_from_one_chunk_stay_apart() -> None:
    both = answer([claim(CREATORS, ["One."]), claim(CREATORS_AGAIN, ["Two."])])
    merged, report = merge_answers([both, answer(reason="Only sponsorship text in this part.")])
    assert [c.title for c in merged.claims] == [CREATORS, CREATORS_AGAIN]
    assert report.combined_claims == [] and merged.null_result_reason is None
    # another chunk's repeat joins the closest claim, and a claim absorbs one claim per chunk
    assert similar_titles(CREATORS, CREATORS_AGAIN) == 100  # one's words are a subset of the other's: a tie
    merged, report = merge_answers([both, answer([claim(CREATORS_AGAIN, ["Three."]), claim(CREATORS, ["Four."])])])
    assert [c.evidence for c in merged.claims] == [["One.", "Four."], ["Two.", "Three."]]
    assert report.combined_claims == [CREATORS_AGAIN, CREATORS]


def test_distinct_claims_are_kept_in_chunk_order() -> None:
    titles = [MONOCULTURE, "Sponsorships fund most independent newsletters today", CREATORS]
    answers = [answer([claim(title, ["Said in the text."])]) for title in titles]
    merged, report = merge_answers(answers, title_threshold=90)
    assert [c.title for c in merged.claims] == titles and report.combined_claims == []


FACTS = [
    "YouTube has 2.5 billion users.",
    "TikTok launched 2016",
    "Global M&E industry revenue was $2.5 trillion in 2024",
]


def test_key_facts_are_said_once_across_chunks() -> None:
    merged, report = merge_answers(
        [
            answer([claim(CREATORS, ["x is y."])], key_facts=FACTS),
            answer(
                [claim(MONOCULTURE, ["x is y."])],
                key_facts=[
                    "youtube has 2.5 billion users",  # the same once normalised
                    "Global M&E industry revenue was 2.5 trillion in 2024.",  # near-identical
                    "TikTok launched 2017",  # another number: another fact
                    "Global M&E industry revenue was not $2.5 trillion in 2024",  # a negation: another fact
                    "YouTube has 2.5 billion users worldwide and pays creators",
                ],
            ),
        ]
    )
    assert merged.key_facts == [
        *FACTS,
        "TikTok launched 2017",
        "Global M&E industry revenue was not $2.5 trillion in 2024",
        "YouTube has 2.5 billion users worldwide and pays creators",
    ]
    assert report.dropped_facts == 2


def test_an_enrichment_target_is_enriched_once() -> None:
    confirm = {"target": "Attention is scarce", "evidence": "Watch time is flat.", "kind": "confirm"}
    challenge = {"target": "attention is SCARCE", "evidence": "Watch time grew.", "kind": "challenge"}
    other = {"target": "Studios consolidate", "evidence": "Two mergers.", "kind": "extend"}
    merged, report = merge_answers([answer(enrichments=[confirm]), answer(enrichments=[challenge, other])])
    assert [(e.target, e.kind.value) for e in merged.enrichments] == [
        ("Attention is scarce", "confirm"),
        ("Studios consolidate", "extend"),
    ]
    assert report.dropped_enrichments == [
        "part 2: challenge enrichment of 'attention is SCARCE' dropped; part 1 already enriches it"
    ]
    assert merged.null_result_reason is None


def test_null_results_merge_to_the_first_reason() -> None:
    merged, report = merge_answers(
        [answer(reason="Sponsor text only.", notes="ads"), answer(reason="Footnotes only."), answer(reason="x y")]
    )
    assert merged.claims == [] and merged.null_result_reason == "Sponsor text only."
    assert merged.notes == "part 1: ads" and report.chunks == 3
    merged, _ = merge_answers([answer(reason="Sponsor text only."), answer([claim(CREATORS, ["One."])])])
    assert merged.null_result_reason is None and len(merged.claims) == 1


def test_notes_are_joined_by_part_within_a_bound() -> None:
    parts = [answer(reason="r", notes="first"), answer(reason="r"), answer(reason="r", notes="third")]
    merged, _ = merge_answers(parts)
    assert merged.notes == "part 1: first; part 3: third"
    merged, _ = merge_answers([answer(reason="r", notes="n" * 400) for _ in range(5)])
    assert len(merged.notes) <= 600 and merged.notes.startswith("part 1: nnn") and merged.notes.endswith("…")


def test_one_answer_merges_to_itself() -> None:
    alone = answer(
        [claim(CREATORS, ["One."]), claim(CREATORS_AGAIN, ["Two."])],
        key_facts=["TikTok launched 2016", "TikTok launched in 2016"],
        enrichments=[{"target": "Attention is scarce", "evidence": "Flat.", "kind": "confirm"}] * 2,
        notes="n" * 700,
    )
    merged, report = merge_answers([alone])
    assert merged == alone
    assert report.model_dump() == {"chunks": 1, "combined_claims": [], "dropped_facts": 0, "dropped_enrichments": []}


def test_merging_many_chunks_exceeds_one_answers_item_bounds() -> None:
    titles = [CREATORS, MONOCULTURE, "Sponsorships fund most independent newsletters today"]
    later = "Podcast audiences grow faster than cable news audiences"
    merged, _ = merge_answers([answer([claim(t, ["e."]) for t in titles]), answer([claim(later, ["e."])])])
    assert len(merged.claims) == 4  # above the schema's maxItems 3: bounds are for the model, not the merge
    with pytest.raises(ValueError, match="no answers"):
        merge_answers([])
