"""LLM faults: every kind the endpoint can throw, one at a time and mixed into a run over corpus sources."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from extractor.cli.main import main
from extractor.core.settings import Settings
from extractor.extraction.answer import ExtractionAnswer
from extractor.kb.claims import parse_claim
from extractor.kb.sources import SourceError, SourceStatus, parse_source
from extractor.kb.yamlio import replace_frontmatter_keys
from extractor.llm.client import LLMError, StructuredClient, make_client
from extractor.store.state import SourceState, StateStore
from tests.conftest import commit_all, git
from tests.drafts import NULL, grounded_answer, source_body, source_file
from tests.fakeopenai import FAULT_KINDS, FakeOpenAI, FaultInjector, answer, fault_reply

# What each fault ends as when a good answer follows it: retried (transport), re-asked, or given up.
EXPECTED = {
    "429-retry-after": "retried",
    "429": "retried",
    "500": "retried",
    "502": "retried",
    "503": "retried",
    "reset": "retried",
    "slow": "retried",
    "truncated": "retried",
    "empty-choices": "retried",
    "invalid-json": "re-asked",
    "schema-invalid": "re-asked",
    "length": "length",
    "refusal": "refusal",
}
SLOW = 1.5  # seconds a "slow" reply takes: longer than the client timeout below
SETTINGS = dict(timeout=0.8, max_attempts=3, max_reasks=1, retry_initial_wait=0.01, retry_max_wait=0.1)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_is_retried_reasked_or_reported(kind: str, fake_llm: FakeOpenAI) -> None:
    assert set(EXPECTED) == set(FAULT_KINDS)
    settings = Settings(base_url=fake_llm.base_url, model="scripted", **SETTINGS)
    client = StructuredClient(make_client(settings), settings)
    fake_llm.push(fault_reply(kind, SLOW), answer(NULL))
    messages = [{"role": "user", "content": "extract"}]
    if EXPECTED[kind] in ("length", "refusal"):
        with pytest.raises(LLMError) as raised:
            client.ask(messages, ExtractionAnswer)
        assert raised.value.kind == EXPECTED[kind] and len(fake_llm.requests) == 1
        return
    reply = client.ask(messages, ExtractionAnswer)
    assert reply.value.null_result_reason == "Nothing new." and reply.attempts == 2
    assert (reply.retries, reply.reasks) == ((1, 0) if EXPECTED[kind] == "retried" else (0, 1))


# --- a run over corpus sources with 30% of replies faulty ----------------------------


def corpus_sources(corpus: Path, wanted: int) -> list[tuple[str, str]]:
    """``wanted`` loadable corpus sources made unprocessed again, plus two that do not load (names and texts)."""
    chosen, broken = [], []
    for path in sorted((corpus / "inbox" / "archive").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        try:
            source = parse_source(path, text)
        except SourceError:
            if len(broken) < 2:
                broken.append((path.name, text))
            continue
        if len(chosen) < wanted and source.domain and len(source.text) < 20_000:
            chosen.append((path.name, replace_frontmatter_keys(text, {"status": "unprocessed"})))
    return chosen + broken


def committed_files_are_valid(kb: Path) -> int:
    """Every file an extraction commit touched parses; returns how many were checked."""
    checked = 0
    for sha in git(kb, "log", "--format=%H", "--grep=^- Source: ").split():
        for path in git(kb, "show", "--name-only", "--format=", sha).split():
            text = git(kb, "show", f"{sha}:{path}")
            if path.startswith("inbox/"):
                source = parse_source(Path(path), text)
                assert source.status in (SourceStatus.PROCESSED, SourceStatus.NULL_RESULT), path
            else:
                document = parse_claim(text)
                document.frontmatter()
                assert document.title and "## Evidence" in text, path
            checked += 1
    return checked


# Patient: transport retries and re-asks absorb most faults. Strict: none, so faults fail sources and park some.
LIMITS = {
    "patient": dict(max_source_attempts=3, gate_reasks=1, **SETTINGS),
    "strict": dict(SETTINGS, max_source_attempts=2, gate_reasks=0, max_attempts=1, max_reasks=0),
}


@pytest.mark.slow
@pytest.mark.parametrize("limits_name", LIMITS)
def test_a_run_with_30_percent_faulty_replies_loses_nothing(
    limits_name: str, corpus_kb: Path, corpus: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = corpus_sources(corpus, 60)
    for name, text in sources:
        (corpus_kb / "inbox" / "archive" / name).write_text(text, encoding="utf-8")
    limits = LIMITS[limits_name]
    (corpus_kb / "extractor.toml").write_text(
        'claims_dir = "domains"\ncommit_mode = "main"\nworkers = 3\nmax_per_cycle = 100\nretry_base_seconds = 0\n'
        + "".join(f"{key} = {value}\n" for key, value in limits.items()),
        encoding="utf-8",
    )
    commit_all(corpus_kb, "add sources")
    injector = FaultInjector(lambda request: answer(grounded_answer(source_body(request))), rate=0.3, seed=30,
                             slow_seconds=SLOW)  # fmt: skip
    fake_llm.responder = injector
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)

    cycles = 0
    store = StateStore.open(corpus_kb)
    while cycles < limits["max_source_attempts"] + 1:
        main(["run", "--once", "--kb", str(corpus_kb)])
        cycles += 1
        if not set(store.counts()) & {SourceState.DUE.value, SourceState.FAILED.value}:
            break

    rows = store.all_sources()
    states = Counter(row.state.value for row in rows.values())
    assert len(rows) == len(sources) >= 50
    assert set(states) <= {"done", "parked", "invalid"}, states  # nothing due, failed-pending or running
    for row in rows.values():
        if row.state is not SourceState.DONE:
            assert row.last_error, row.path
        assert row.attempts <= limits["max_source_attempts"]
    commits = Counter(re.findall(r"^- Source: (\S+)$", git(corpus_kb, "log", "--format=%B"), re.M))
    assert set(commits.values()) <= {1} and len(commits) == states["done"]
    assert git(corpus_kb, "status", "--porcelain") == ""
    checked = committed_files_are_valid(corpus_kb)

    requests = Counter(source_file(r) for r in fake_llm.requests)
    per_ask = limits["max_attempts"] * (limits["max_reasks"] + 1)
    bound = limits["max_source_attempts"] * per_ask * (1 + limits["gate_reasks"])
    assert max(requests.values()) <= bound
    db = sqlite3.connect(corpus_kb / ".extractor" / "state.db")
    outcomes = dict(db.execute("SELECT outcome, count(*) FROM llm_calls GROUP BY outcome").fetchall())
    file_status = Counter(
        parse_source(Path(p), (corpus_kb / p).read_text(encoding="utf-8")).status.value
        for p, row in rows.items()
        if row.state is SourceState.DONE
    )
    print(
        f"\nfault run ({limits_name}: {limits}): {len(rows)} sources, {cycles} cycles, "
        f"{len(fake_llm.requests)} requests "
        f"({injector.answered} answered well)\n"
        f"faults injected by kind: {dict(sorted(injector.injected.items()))}\n"
        f"recorded calls by outcome: {outcomes}\n"
        f"retries (transport failures, retried while attempts remain): {outcomes.get('error', 0)}; "
        f"re-asks (unusable JSON, re-asked while re-asks remain): {outcomes.get('invalid', 0)}\n"
        f"sources by final state: {dict(states)}; done by file status: {dict(file_status)}\n"
        f"most requests for one source: {max(requests.values())} (bound {bound}); files checked: {checked}"
    )
    assert sum(injector.injected.values()) >= 0.2 * len(fake_llm.requests)
    assert len(injector.injected) == len(FAULT_KINDS)  # every kind was exercised
