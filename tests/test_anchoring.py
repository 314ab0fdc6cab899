"""Evidence anchoring: exact, normalised and fuzzy look-ups, spans in original text, and real sources."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extractor.core.records import Anchor, anchored_share
from extractor.extraction.anchoring import (
    FUZZY_MIN_CHARS,
    FUZZY_THRESHOLD,
    anchor_evidence,
    locate,
    normalise_with_offsets,
    quotes_in,
)
from extractor.extraction.gates import normalise
from extractor.extraction.grounding import SourceFacts, check_quotation, quotations_in
from extractor.kb.claims import parse_claim
from extractor.kb.sources import load_source

REPORT = (
    "Annual Report 2024\n\n"
    "Revenue rose 40% in 2024, driven by subscriptions. Costs fell slightly.\n"
    "The board’s “long-term plan” — approved in March — set out how the firm’s extrac-\n"
    "tion business would grow to 12,500 sites by 2030.\n"
    "Margins    widened\n   sharply   in the second half.\n"
    "Losses were \u22123% in Q4, as the CEO said: ‘we expected worse’.\n"
    "The ﬁnal\u00a0figure… was confirmed in Straße 5.\n"
)


def between(text: str, start: int | None, end: int | None) -> str:
    assert start is not None and end is not None
    return text[start:end]


# --- exact and normalised -------------------------------------------------


def test_exact_quote_is_found_at_its_offsets() -> None:
    [anchor] = anchor_evidence(['"Revenue rose 40% in 2024" — the company\'s annual report'], REPORT)
    assert anchor == Anchor(
        item=0,
        quote="Revenue rose 40% in 2024",
        start=REPORT.index("Revenue"),
        end=REPORT.index(", driven"),
        method="exact",
        score=100.0,
    )


@pytest.mark.parametrize(
    ("quote", "original"),
    [
        # curly quotes and apostrophes, em dashes
        ('The board\'s "long-term plan" - approved in March', "The board’s “long-term plan” — approved in March"),
        # hyphenation across a line break, thousands separator
        ("extraction business would grow to 12500 sites", "extrac-\ntion business would grow to 12,500 sites"),
        # whitespace runs and newlines, case, trailing full stop ignored
        ("MARGINS WIDENED SHARPLY in the second half.", "Margins    widened\n   sharply   in the second half"),
        # the minus sign, curly single quotes
        ("losses were -3% in Q4, as the CEO said: 'we expected worse'",
         "Losses were −3% in Q4, as the CEO said: ‘we expected worse’"),
        # NFKC: a ligature, a no-break space, an ellipsis; case folding of ß
        ("the final figure... was confirmed in strasse 5", "The ﬁnal\u00a0figure… was confirmed in Straße 5"),
    ],
)  # fmt: skip
def test_normalised_match_reports_the_original_span(quote: str, original: str) -> None:
    found = locate(quote, REPORT)
    assert found is not None
    start, end, method, score = found
    assert (method, score) == ("normalised", 100.0)
    assert REPORT[start:end] == original
    assert normalise(REPORT[start:end]).replace("\u2212", "-") == normalise(quote).strip(" .,;:")


def test_the_first_occurrence_wins_and_edges_are_trimmed() -> None:
    text = "Intro. Prices doubled within a year. Later: prices doubled within a year."
    assert locate("  prices doubled within a year.  ", text) == (text.index("prices"), len(text) - 1, "exact", 100.0)
    assert locate("PRICES DOUBLED WITHIN A YEAR;", text) == (7, text.index(". Later"), "normalised", 100.0)


# --- fuzzy ------------------------------------------------------------------

SENTENCE = (
    "Ownership coins kept 95% of their holders through a 65% drawdown,\nwhile governance tokens lost a third of theirs."
)
ARTICLE = (
    "Token markets had a difficult year and most launches traded below their listing price. "
    + SENTENCE
    + " Analysts expect the gap between the two designs to widen as more projects adopt market governance."
)


def test_a_quote_with_changed_words_is_found_fuzzily() -> None:
    quote = "Ownership coins retained 95% of their holders through a 65% drawdown, while governance tokens shed a third"
    found = locate(quote, ARTICLE)
    assert found is not None
    start, end, method, score = found
    assert method == "fuzzy" and FUZZY_THRESHOLD <= score < 100
    assert ARTICLE[start:end] == SENTENCE[: SENTENCE.index(" of theirs")]


def test_a_typo_still_anchors_on_the_whole_sentence() -> None:
    [anchor] = anchor_evidence(["Ownership coins kept 95% of their holders thruogh a 65% drawdown — Messari"], ARTICLE)
    assert anchor.method == "fuzzy" and anchor.score >= FUZZY_THRESHOLD
    assert between(ARTICLE, anchor.start, anchor.end) == SENTENCE[: SENTENCE.index(",")]


def test_fuzzy_matching_needs_a_long_enough_quote_and_a_high_score() -> None:
    assert len(normalise("Revenue rse 40% in")) < FUZZY_MIN_CHARS
    assert locate("Revenue rse 40% in", REPORT) is None
    assert locate("Revenue rse 40% in", REPORT, threshold=0) is None  # short quotes never go fuzzy
    rewritten = "Governance tokens lost a third of their holders while ownership coins kept most of them"
    assert locate(rewritten, ARTICLE) is None
    found = locate(rewritten, ARTICLE, threshold=50)
    assert found is not None and found[2] == "fuzzy" and found[3] < FUZZY_THRESHOLD


# --- items, candidates and odd input -------------------------------------


def test_an_invented_quote_is_a_paraphrase() -> None:
    anchors = anchor_evidence(['The CEO called it "the best year in our history"', "Costs fell slightly"], REPORT)
    assert [a.method for a in anchors] == ["paraphrase", "exact"]
    assert anchors[0] == Anchor(
        item=0, quote="the best year in our history", start=None, end=None, method="paraphrase", score=0.0
    )
    assert anchored_share(anchors) == 0.5


def test_quotes_in_takes_real_quotations_or_the_whole_item() -> None:
    assert quotes_in('Revenue "rose" as “the firm’s extraction business” grew') == ["the firm’s extraction business"]
    assert quotes_in('Called "ownership coins" by Galaxy') == ['Called "ownership coins" by Galaxy']  # a name
    assert quotes_in('"if it had 1 billion tokens... 15 million went to the DAO"') == [
        "if it had 1 billion tokens",
        "15 million went to the DAO",
    ]
    assert quotes_in("Revenue rose 40% in 2024 — the company's annual report") == ["Revenue rose 40% in 2024"]
    assert quotes_in("Revenue rose -- annual report") == ["Revenue rose -- annual report"]  # too short to cut
    assert quotes_in("  ") == [] and quotes_in("") == []


def test_an_item_anchors_on_its_longest_quote_that_is_found() -> None:
    both = 'Report: "Revenue rose 40% in 2024" and "set out how the firm’s extraction business would grow"'
    invented_longest = '"Revenue rose 40% in 2024" but "the board never approved any long-term plan at all"'
    anchors = anchor_evidence([both, invented_longest], REPORT)
    assert anchors[0].quote == "set out how the firm’s extraction business would grow"
    assert anchors[0].method == "normalised"  # the source breaks "extrac-\ntion" across lines
    assert between(REPORT, anchors[0].start, anchors[0].end).endswith("extrac-\ntion business would grow")
    assert (anchors[1].quote, anchors[1].method) == ("Revenue rose 40% in 2024", "exact")


def test_odd_input_gives_paraphrase_never_an_error() -> None:
    anchors = anchor_evidence(["", "   ", '"..."', "x" * 5000], REPORT)
    assert [(a.item, a.method, a.start) for a in anchors] == [(i, "paraphrase", None) for i in range(4)]
    assert [a.method for a in anchor_evidence(["Revenue rose 40% in 2024"], "")] == ["paraphrase"]
    assert locate("Revenue rose", "") is None
    assert locate("", REPORT) is None
    assert locate(" .;: ", REPORT) is None
    assert locate(REPORT + " and more besides", REPORT) is None
    assert anchor_evidence([], REPORT) == []


def test_anchored_share() -> None:
    assert anchored_share([]) == 0.0
    anchors = anchor_evidence(["Revenue rose 40% in 2024", "costs fell SLIGHTLY", "Profits tripled"], REPORT)
    assert [a.method for a in anchors] == ["exact", "normalised", "paraphrase"]
    assert anchored_share(anchors) == pytest.approx(2 / 3)


# --- agreement with the grounding gate's normalise() -----------------------

ODD = [
    "“", "”", "„", "‘", "’", "–", "—", "\u2212", "\u00a0", "…", "ﬁ", "ß", "İ", "\u0301", "e\u0301", "ü",
    "\x1c", "\x85", "\u2028", "\u3000", "１", "Σ", "\u1100", "\u1161", "\u11a8", "＂",
]  # fmt: skip
texts = st.lists(st.sampled_from([*"abcXYZ019 ,.-;:\n\t", *ODD]), max_size=60).map("".join)


@given(texts)
def test_offsets_agree_with_normalise(text: str) -> None:
    normalised = normalise_with_offsets(text)
    assert normalised.text == normalise(text).replace("\u2212", "-")
    assert len(normalised.starts) == len(normalised.ends) == len(normalised.text)
    pairs = list(zip(normalised.starts, normalised.ends, strict=True))
    assert all(0 <= start < end <= len(text) for start, end in pairs)
    assert pairs == sorted(pairs)


@given(texts, st.data())
def test_whole_words_map_back_to_text_that_normalises_to_them(text: str, data: st.DataObject) -> None:
    normalised = normalise_with_offsets(text)
    words = [m.span() for m in re.finditer(r"[^ ]+", normalised.text)]
    if not words:
        return
    first = data.draw(st.integers(0, len(words) - 1))
    last = data.draw(st.integers(first, len(words) - 1))
    start, end = words[first][0], words[last][1]
    original = text[normalised.starts[start] : normalised.ends[end - 1]]
    assert normalise(original).replace("\u2212", "-") == normalised.text[start:end]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(texts, st.data())
def test_every_quotation_the_gate_accepts_is_anchored(text: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(text)))
    quote = text[i : data.draw(st.integers(i, len(text)))]
    if data.draw(st.booleans()):  # as a model might retype it
        quote = quote.replace(" ", "\n").replace("’", "'").replace("—", "-").upper()
    found = locate(quote, text)
    if found is not None:
        assert 0 <= found[0] < found[1] <= len(text)
    if normalise(quote).strip(" .,") in normalise(text) and normalise(quote).strip(" .,;:"):
        assert found is not None and found[2] in ("exact", "normalised")


# --- real sources -------------------------------------------------------------

LONGEST = "shapiro-relentless-creator-economy.md"
SOURCES = [
    LONGEST,
    "2020-00-00-greattransition-humanity-as-superorganism.md",
    "2022-00-00-americanscientist-superorganism-revolution.md",
]
_SENTENCE_END = re.compile(r"(?<=[a-z0-9]\.)\s+(?=[A-Z])")


def plain_sentences(body: str, limit: int = 6) -> list[str]:
    """Prose sentences that occur once in the source (also once normalised), spread over the body."""
    found = []
    once = normalise(body)
    for piece in _SENTENCE_END.split(body):
        sentence = piece.strip()
        if not (60 <= len(sentence) <= 240 and re.fullmatch(r"[A-Z][^#*|`\[\]_…]*[a-z0-9]\.", sentence, re.S)):
            continue
        if "..." not in sentence and once.count(normalise(sentence[:-1])) == 1:
            found.append(sentence)
    step = max(1, len(found) // limit)
    return found[::step][:limit]


def retyped(sentence: str) -> str:
    """The sentence as a model might copy it: curly quotes, a line break, a capitalised word, no full stop."""
    words = sentence[:-1].replace("'", "’").split(" ")
    middle = len(words) // 2
    words[middle] = words[middle].upper()
    return " ".join(words[:middle]) + "\n" + " ".join(words[middle:])


def with_typo(sentence: str) -> str:
    """Two letters swapped in the word nearest the middle where that changes it."""
    words = [m for m in re.finditer(r"\b[a-z]{5,}\b", sentence) if m.group()[1] != m.group()[2]]
    word = min(words, key=lambda m: abs(m.start() - len(sentence) // 2))
    at = word.start() + 1
    return sentence[:at] + sentence[at + 1] + sentence[at] + sentence[at + 2 :]


@pytest.mark.parametrize("name", SOURCES)
def test_real_sentences_anchor_where_they_are(corpus: Path, name: str) -> None:
    body = load_source(corpus / "inbox" / "archive" / name).body
    sentences = plain_sentences(body)
    assert len(sentences) >= 3
    for sentence in sentences:
        start, end = body.index(sentence), body.index(sentence) + len(sentence) - 1  # without the full stop
        assert locate(sentence, body) == (start, end, "exact", 100.0)  # the full stop is trimmed
        assert locate(retyped(sentence), body) == (start, end, "normalised", 100.0)
        [anchor] = anchor_evidence([f"“{with_typo(sentence)}” — {name}"], body)
        assert anchor.method == "fuzzy" and anchor.score >= FUZZY_THRESHOLD
        assert (anchor.start, anchor.end) == (start, end)


def test_extracted_claims_quotations_accepted_by_the_gate_are_anchored(corpus: Path) -> None:
    checked = exact = lost = 0
    for extraction in sorted((corpus / "extractions").iterdir()):
        body = load_source(extraction / "before.md").body
        facts = SourceFacts.of(body)
        for path in sorted((extraction / "added").rglob("*.md")):
            try:
                evidence = parse_claim(path.read_text(encoding="utf-8")).evidence
            except ValueError:
                continue
            for item in evidence:
                for quote in quotations_in(item):  # the quotations, as the gate pairs their marks
                    if len(normalise(quote)) < 12:
                        continue
                    judged = check_quotation(quote, facts)
                    if judged is None or judged.verdict == "unverified":  # a scare quote, or not in the source
                        continue
                    found = locate(quote, body)
                    # The gate compares words (markdown, punctuation and line breaks aside) and allows elisions
                    # and one inflected word, so the anchor may be fuzzy, and rarely missing.
                    checked += 1
                    lost += found is None
                    exact += found is not None and found[2] in ("exact", "normalised")
    print(f"\n{checked} quotations the gate accepts: {exact} anchored exactly or normalised, {lost} not located")
    # measured: 135 quotations, 102 exact or normalised, the rest fuzzy (markdown, elisions) but 2 not located
    assert checked >= 50 and exact >= 0.7 * checked and lost <= 0.02 * checked


def test_locate_is_fast_on_the_longest_source(corpus: Path) -> None:
    body = load_source(corpus / "inbox" / "archive" / LONGEST).body
    assert len(body) > 130_000
    sentence = plain_sentences(body)[-1]
    started = time.perf_counter()
    found = locate(with_typo(sentence), body)
    missing = locate("Ownership coins kept 95% of their holders through a 65% drawdown in 2025", body)
    elapsed = time.perf_counter() - started
    assert found is not None and found[2] == "fuzzy" and missing is None
    assert elapsed < 1.0
