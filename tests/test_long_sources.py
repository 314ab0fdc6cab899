"""Long sources: read in overlapping parts that fit the model's context, answers merged, nothing cut off."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from extractor.commit.plan import extraction_notes
from extractor.core.settings import Settings
from extractor.extraction.extract import prepare_request, prepare_requests
from extractor.extraction.strategy import extract_source
from extractor.kb.index import KBIndex
from extractor.kb.sources import Source, SourceError, load_source, parse_source
from extractor.llm.client import LLMError, StructuredClient, make_client
from extractor.llm.contextsize import ContextTooSmallError, context_tokens_for, fits, part_chars
from extractor.llm.ratelimit import estimated_tokens
from extractor.store.state import StateStore
from tests.drafts import NULL, grounded_answer, part_of, source_body
from tests.fakeopenai import FakeOpenAI, answer, completion, error

COMMON = "Shared infrastructure lowers the cost of running many small extraction jobs together"


def long_source(tmp_path: Path, paragraphs: int = 60) -> Source:
    """A source of numbered paragraphs under headings: every paragraph's text is unique, so coverage is checkable."""
    sections = []
    for number in range(paragraphs):
        heading = f"## Section {number // 6}\n\n" if number % 6 == 0 else ""
        sections.append(
            f"{heading}Paragraph {number} reports that the team measured {number + 11} percent more drafts "
            f"in week {number}, which shows that careful review of drafted claims has a cost of its own. "
            + "The reviewers also noted the context of each measurement in their logs. "
            * 6
        )
    text = (
        "---\ntype: source\ntitle: A long field report\nauthor: A. Writer\ndate: 2026-01-00\n"
        "domain: ai-alignment\nstatus: unprocessed\n---\n\n" + "\n\n".join(sections) + "\n"
    )
    path = tmp_path / "inbox" / "archive" / "2026-01-00-long-field-report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return parse_source(path, text)


def empty_index(tmp_path: Path) -> KBIndex:
    return KBIndex(tmp_path, [], [])


def scripted(settings_server: FakeOpenAI, **values: Any) -> tuple[Settings, StructuredClient]:
    settings = Settings(base_url=settings_server.base_url, model="scripted", max_reasks=0, gate_reasks=0,
                        timeout=10, **values)  # fmt: skip
    return settings, StructuredClient(make_client(settings), settings)


def answer_each_part(request: dict[str, Any]) -> Any:
    """A grounded claim from the part's own text, plus one claim every part repeats (merged across parts)."""
    body = source_body(request)
    drafted = grounded_answer(body)
    if drafted is NULL:
        return answer(NULL)
    first = next(line for line in body.split("\n\n") if line.startswith("Paragraph"))
    common = {**drafted["claims"][0], "title": COMMON, "description": "Every part of the report says it.",
              "evidence": [f'"{first.split(",")[0]}" - a measurement this part reports']}  # fmt: skip
    return answer({**drafted, "claims": [drafted["claims"][0], common]})


def test_context_sizes_known_set_and_defaulted(tmp_path: Path) -> None:
    assert context_tokens_for(Settings(model="gpt-4o-mini")) == 128_000
    assert context_tokens_for(Settings(model="gpt-4o-2024-08-06")) == 128_000  # a dated snapshot: its family's
    assert context_tokens_for(Settings(model="gpt-4.1-nano")) == 1_047_576
    assert context_tokens_for(Settings(model="my-local-llama")) == 8192  # unknown: taken to be small
    assert context_tokens_for(Settings(model="anthropic/claude-3.5-sonnet")) == 200_000  # by family, past a prefix
    assert context_tokens_for(Settings(model="meta-llama/Llama-3.3-70B-Instruct")) == 131_072
    assert context_tokens_for(Settings(model="gpt-4-turbo-2024-04-09")) == 128_000
    assert context_tokens_for(Settings(model="my-local-llama", context_tokens=32_768)) == 32_768
    with pytest.raises(ContextTooSmallError, match="raise context_tokens or lower max_tokens"):
        part_chars([{"role": "user", "content": "x" * 20_000}], Settings(model="m", context_tokens=8192))


def test_a_source_that_fits_is_one_request_as_before(tmp_path: Path) -> None:
    source = long_source(tmp_path, paragraphs=3)
    settings = Settings(model="gpt-4o-mini")
    whole = prepare_request(source, "inbox/archive/x.md", settings, empty_index(tmp_path))
    requests, notes = prepare_requests(source, "inbox/archive/x.md", settings, empty_index(tmp_path))
    assert requests == [whole] and notes == [] and whole.part is None


def test_a_long_source_is_read_in_overlapping_parts_that_cover_it_all(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    source = long_source(tmp_path)
    settings, llm = scripted(fake_llm, context_tokens=8192, max_tokens=2048)
    fake_llm.responder = answer_each_part
    assert not fits(prepare_request(source, "s.md", settings, empty_index(tmp_path)).messages, settings)

    result = extract_source(source, "inbox/archive/2026-01-00-long-field-report.md", settings, llm,
                            empty_index(tmp_path))  # fmt: skip

    requests = fake_llm.requests
    parts = [part_of(request) for request in requests]
    assert len(requests) == result.parts > 2 and sorted(p[0] for p in parts) == list(range(1, len(requests) + 1))
    for request in requests:
        user = request["messages"][1]["content"]
        assert "Title: A long field report" in user and "Author: A. Writer" in user  # the metadata, every time
        assert estimated_tokens(request["messages"], settings.max_tokens) <= settings.context_tokens
    # Nothing cut off: every paragraph is whole in some part, and consecutive parts share text.
    bodies = [source_body(request) for request in sorted(requests, key=lambda r: part_of(r)[0])]
    for paragraph in source.body.split("\n\n"):
        assert any(paragraph.strip() in body for body in bodies), paragraph[:60]
    for before, after in zip(bodies, bodies[1:], strict=False):
        assert after[:200] in before or before[-200:] in after  # they overlap
    # The claim every part repeated is one claim, with the evidence of every part.
    titles = [claim.draft.title for claim in result.claims]
    assert titles.count(COMMON) == 1
    common = next(claim for claim in result.claims if claim.draft.title == COMMON)
    assert len(common.draft.evidence) >= 2
    assert f"combined across parts: {COMMON}" in result.part_notes
    notes = extraction_notes(result)
    assert f"Read in {result.parts} overlapping parts." in notes
    items = sum(len(claim.anchors) for claim in result.claims)
    by_claim = ", ".join(f"{len(claim.anchors)} of {len(claim.anchors)}" for claim in result.claims)
    detail = f" (by claim, in order: {by_claim})" if len(result.claims) > 1 else ""
    assert f"Evidence found in the source: {items} of {items} items{detail};" in notes  # every item found
    # With several claims the notes count claim by claim: here a copy whose evidence was all paraphrase.
    first = result.claims[0]
    paraphrased = [anchor.model_copy(update={"method": "paraphrase"}) for anchor in first.anchors]
    unfound = first.model_copy(update={"anchors": paraphrased})
    n = len(first.anchors)
    two = extraction_notes(result.model_copy(update={"claims": [first, unfound]}))
    assert f"Evidence found in the source: {n} of {2 * n} items (by claim, in order: {n} of {n}, 0 of {n});" in two
    # Every evidence item is located in the source body, at text that says it.
    for claim in result.claims:
        assert len(claim.anchors) == len(claim.draft.evidence)
        for anchor in claim.anchors:
            assert anchor.method in ("exact", "normalised"), anchor
            assert source.body[anchor.start : anchor.end].startswith(anchor.quote.strip('" .')[:20])


def test_a_part_that_fails_fails_the_source_and_the_retry_asks_only_for_that_part(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    source = long_source(tmp_path)
    settings = Settings(base_url=fake_llm.base_url, model="scripted", max_reasks=0, gate_reasks=0, timeout=10,
                        context_tokens=8192, max_tokens=2048, max_attempts=1)  # fmt: skip
    store = StateStore.open(tmp_path)
    llm = StructuredClient(make_client(settings), settings, cache=store)
    failing = {"part": 2}

    def second_part_fails(request: dict[str, Any]) -> Any:
        found = part_of(request)
        return error(500, "down") if found and found[0] == failing["part"] else answer_each_part(request)

    fake_llm.responder = second_part_fails
    with pytest.raises(LLMError, match=r"part 2 of \d+") as raised:
        extract_source(source, "s.md", settings, llm, empty_index(tmp_path))
    parts = raised.value.usage.requests
    assert parts == len(fake_llm.requests) > 2  # every part was asked, and each call is accounted for

    failing["part"] = 0
    fake_llm.requests.clear()
    result = extract_source(source, "s.md", settings, llm, empty_index(tmp_path))
    assert [part_of(request)[0] for request in fake_llm.requests] == [2]  # the others come from the cache
    assert result.parts == parts and result.claims
    store.close()


def test_a_part_with_no_usable_answer_is_skipped_and_the_notes_say_so(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    """Asking again later would not fix an unusable answer: the other parts are kept, the gap is named."""
    source = long_source(tmp_path)
    settings, llm = scripted(fake_llm, context_tokens=8192, max_tokens=2048)

    def second_part_unusable(request: dict[str, Any]) -> Any:
        found = part_of(request)
        return completion("no JSON here") if found and found[0] == 2 else answer_each_part(request)

    fake_llm.responder = second_part_unusable
    result = extract_source(source, "s.md", settings, llm, empty_index(tmp_path))
    skipped = [note for note in result.part_notes if note.startswith("skipped part 2 of")]
    assert len(skipped) == 1 and "no usable answer (invalid)" in skipped[0]
    assert result.claims and "skipped part 2 of" in extraction_notes(result)

    fake_llm.responder = lambda request: completion("no JSON here")  # no part answers: the source fails
    fake_llm.requests.clear()
    with pytest.raises(LLMError, match=r"invalid: part 1 of \d+"):
        extract_source(long_source(tmp_path, paragraphs=61), "s.md", settings, llm, empty_index(tmp_path))


def test_what_a_part_drops_is_dropped_and_said_once(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    source = long_source(tmp_path)
    settings, llm = scripted(fake_llm, context_tokens=8192, max_tokens=2048)
    ghost = {"target": "A claim nobody ever wrote down anywhere at all", "evidence": "It says so.", "kind": "extend"}

    def with_a_ghost_enrichment(request: dict[str, Any]) -> Any:
        drafted = json.loads(answer_each_part(request).body["choices"][0]["message"]["content"])
        return answer({**drafted, "enrichments": [ghost]})

    fake_llm.responder = with_a_ghost_enrichment
    result = extract_source(source, "s.md", settings, llm, empty_index(tmp_path))
    ghosts = [item for item in result.dropped if ghost["target"] in item]
    assert len(ghosts) == result.parts and all(item.startswith("part ") for item in ghosts)  # once per part
    assert not result.enrichments and result.claims


def test_parts_are_asked_at_once_where_the_endpoint_allows(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    """Three parts in flight at once, all sharing one response cache (one state store connection)."""
    source = long_source(tmp_path)
    settings, _ = scripted(fake_llm, context_tokens=8192, max_tokens=2048, chunk_concurrency=3)
    store = StateStore.open(tmp_path)
    llm = StructuredClient(make_client(settings), settings, cache=store)
    most = {"in_flight": 0}

    def slow(request: dict[str, Any]) -> Any:
        most["in_flight"] = max(most["in_flight"], fake_llm.in_flight)
        reply = answer_each_part(request)
        reply.delay = 0.3
        return reply

    fake_llm.responder = slow
    first = extract_source(source, "s.md", settings, llm, empty_index(tmp_path))
    assert most["in_flight"] == 3
    asked = len(fake_llm.requests)
    again = extract_source(source, "s.md", settings, llm, empty_index(tmp_path))
    assert len(fake_llm.requests) == asked and again.claims == first.claims  # every part's answer was cached
    store.close()


def test_blank_padding_is_not_sent_and_the_notes_say_so(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    source = long_source(tmp_path, paragraphs=20)
    padded = source.model_copy(update={"body": source.body + "\n\n" + " " * 60_000 + "\n\nThe end of the report."})
    settings, llm = scripted(fake_llm, context_tokens=8192, max_tokens=2048)
    fake_llm.responder = answer_each_part
    result = extract_source(padded, "s.md", settings, llm, empty_index(tmp_path))
    assert any(note.startswith("skipped ") and "blank space" in note for note in result.part_notes)
    assert any("The end of the report." in source_body(request) for request in fake_llm.requests)
    assert all(source_body(request).strip() for request in fake_llm.requests)


def test_every_corpus_source_extracts_with_the_scripted_server(corpus: Path, fake_llm: FakeOpenAI) -> None:
    """Each file of the corpus's inbox/archive, long ones in parts; prints the longest one's time."""
    settings, llm = scripted(fake_llm, context_tokens=8192, max_tokens=2048)
    fake_llm.responder = lambda request: answer(grounded_answer(source_body(request)))
    index = KBIndex.load(corpus / "kb")
    outcomes: dict[str, int] = {}
    refused = 0
    longest: tuple[int, str] = (0, "")
    for path in sorted((corpus / "inbox" / "archive").glob("*.md")):
        try:
            source = load_source(path)
        except SourceError:
            refused += 1  # the corpus's broken files: refused with their reason, as in a run
            continue
        longest = max(longest, (len(source.body), path.name))
        result = extract_source(source, f"inbox/archive/{path.name}", settings, llm, index)
        outcomes[path.name] = result.parts
    assert len(outcomes) > 300 and refused < 20
    assert sum(parts > 1 for parts in outcomes.values()) >= 5 and outcomes[longest[1]] > 1

    source = load_source(corpus / "inbox" / "archive" / longest[1])
    times = []
    for _ in range(3):
        started = time.perf_counter()
        result = extract_source(source, f"inbox/archive/{longest[1]}", settings, llm, index)
        times.append(time.perf_counter() - started)
    print(f"\n{len(outcomes)} corpus sources extracted, {refused} refused as invalid; "
          f"{sum(parts > 1 for parts in outcomes.values())} read in parts. Longest: {longest[1]} "
          f"({longest[0]:,} characters) in {result.parts} parts, {statistics.median(times):.2f} s "
          f"(median of 3; scripted server, no response cache, {result.usage.requests} requests)")  # fmt: skip


def test_a_context_too_small_for_any_part_fails_the_source_with_a_clear_error(
    tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from extractor.cli.main import main
    from tests.kbfactory import make_inbox_kb

    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    kb = make_inbox_kb(tmp_path / "kb", 2, "context_tokens = 4096\nmax_tokens = 4096\nmax_per_cycle = 5\n")
    source = sorted((kb / "inbox" / "archive").glob("*.md"))[0]
    assert main(["extract", str(source), "--kb", str(kb)]) == 1
    err = capsys.readouterr().err
    assert "raise context_tokens or lower max_tokens" in err and "Traceback" not in err
    assert main(["run", "--once", "--kb", str(kb)]) == 1
    row = StateStore.open(kb).get(source.relative_to(kb).as_posix())
    assert row is not None and "raise context_tokens" in (row.last_error or "")
    assert "internal error" not in (row.last_error or "") and fake_llm.requests == []


def test_a_reask_that_would_not_fit_the_context_is_not_sent(fake_llm: FakeOpenAI) -> None:
    from extractor.extraction.answer import ExtractionAnswer

    settings = Settings(base_url=fake_llm.base_url, model="scripted", context_tokens=2048, max_tokens=512,
                        max_reasks=1, timeout=10)  # fmt: skip
    client = StructuredClient(make_client(settings), settings)
    messages = [{"role": "user", "content": "x" * 4000}]  # about 1,000 tokens: fits with a 512-token reply
    fake_llm.push(completion("{'not': json"))
    fake_llm.push(completion(json.dumps(NULL)))
    assert client.ask(messages, ExtractionAnswer).reasks == 1  # a short broken reply: re-asked as usual
    fake_llm.requests.clear()
    fake_llm.push(completion("{'not': json " + "y" * 2400))  # carried back, it would pass the context
    with pytest.raises(LLMError) as raised:
        client.ask(messages, ExtractionAnswer)
    assert raised.value.kind == "invalid" and "would not fit the model's context" in str(raised.value)
    assert len(fake_llm.requests) == 1


def test_each_part_is_offered_the_kb_claims_that_match_its_own_text(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    from extractor.kb.index import ClaimRef

    source = long_source(tmp_path)
    late = "Walrus colonies migrate north earlier when the sea ice thins in spring."
    body = source.body + "\n\n## Appendix\n\n" + (late + " ") * 400 + "\n"  # most of the last part, whatever its size
    source = source.model_copy(update={"body": body, "text": source.text + "\n\n## Appendix\n\n" + (late + " ") * 400})
    claims = [ClaimRef(path=f"claims/ai-alignment/review-{n}.md", title=f"Careful review of drafted claims costs {n}",
                       description="measured drafts in a week of review") for n in range(6)]  # fmt: skip
    claims.append(ClaimRef(path="claims/ai-alignment/walrus.md", title="Walrus colonies migrate north with thin ice",
                           description="sea ice and walrus migration"))  # fmt: skip
    index = KBIndex(tmp_path, claims)
    settings = Settings(base_url=fake_llm.base_url, model="scripted", context_tokens=8192, max_tokens=2048,
                        retrieval_k=3)  # fmt: skip
    requests, _ = prepare_requests(source, "inbox/archive/x.md", settings, index)
    assert len(requests) > 2
    offered = [request.messages[1]["content"] for request in requests]
    assert "Walrus colonies migrate north with thin ice" not in offered[0]
    assert "Walrus colonies migrate north with thin ice" in offered[-1]
    assert all(estimated_tokens(r.messages, settings.max_tokens) <= 8192 * 0.9 for r in requests)
