"""Batch mode end to end: submit, status and collect against a local files-and-batches server."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extractor.cli.main import main
from extractor.kb.sources import parse_source
from extractor.store.state import SourceState, StateStore
from tests.conftest import git
from tests.drafts import NULL, grounded_answer, source_body
from tests.fakebatch import FakeBatchAPI
from tests.fakeopenai import answer, completion
from tests.kbfactory import make_inbox_kb

SOURCES = [f"inbox/archive/2026-01-{n:02d}-source-{n:02d}.md" for n in range(4)]
LONG_BODY = (
    "Batch reviewers found that shared rate limits reduce provider throttling across parallel workers.\n\n"
    "The measurements were repeated over several nights with independent teams of operators.\n"
)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBatchAPI]:
    server = FakeBatchAPI().start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    yield server
    server.stop()


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    kb = make_inbox_kb(tmp_path / "kb", 4, 'model = "gpt-4o-mini"\nmax_per_cycle = 10\n')
    first = kb / SOURCES[0]
    first.write_text(first.read_text(encoding="utf-8").split("\n\n")[0] + "\n\n" + LONG_BODY, encoding="utf-8")
    git(kb, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qam", "a longer source")
    return kb


def source_hash(kb: Path, path: str) -> str:
    return hashlib.sha256(parse_source(kb / path, (kb / path).read_text()).text.encode()).hexdigest()


def result_for(request: dict[str, Any]) -> dict[str, Any] | None:
    """Source 0: a claim; source 1: nothing new; source 2: a failed request; source 3: an unusable answer."""
    body = source_body(request)
    number = int(re.search(r"Source file: \S+source-(\d+)\.md", request["messages"][-1]["content"]).group(1))
    if number == 2:
        return None
    reply = completion("{'not': json") if number == 3 else answer(grounded_answer(body) if number == 0 else NULL)
    reply.body["usage"] = {"prompt_tokens": 1_000_000, "completion_tokens": 100_000, "total_tokens": 1_100_000}
    return reply.body


def test_submit_status_collect_writes_results_by_custom_id_and_requeues_the_rest(
    kb: Path, api: FakeBatchAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["batch", "submit", "--kb", str(kb)]) == 0
    assert "submitted batch_1: 4 source(s)" in capsys.readouterr().out
    lines = api.requests("batch_1")
    assert sorted(line["custom_id"] for line in lines) == sorted(
        f"source-{source_hash(kb, path)[:48]}" for path in SOURCES
    )
    assert {line["url"] for line in lines} == {"/v1/chat/completions"}
    assert all(line["body"]["model"] == "gpt-4o-mini" and line["body"]["response_format"] for line in lines)
    store = StateStore.open(kb)
    assert store.counts() == {"batched": 4}
    assert main(["run", "--once", "--kb", str(kb)]) == 0  # batched sources are not taken by a run
    assert store.counts() == {"batched": 4}
    capsys.readouterr()

    assert main(["batch", "status", "--kb", str(kb), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "validating"
    assert main(["batch", "collect", "--kb", str(kb)]) == 0
    assert "batch_1: still running" in capsys.readouterr().out

    api.complete("batch_1", result_for)
    assert main(["batch", "collect", "--kb", str(kb)]) == 0
    out = capsys.readouterr().out
    assert "processed, 1 claim(s)" in out and "null-result" in out
    rows = store.all_sources()
    assert rows[SOURCES[0]].state is rows[SOURCES[1]].state is SourceState.AWAITING_REVIEW
    assert rows[SOURCES[2]].state is rows[SOURCES[3]].state is SourceState.DUE
    assert "the request failed" in (rows[SOURCES[2]].last_error or "") and "server_error" in rows[SOURCES[2]].last_error
    assert "unusable" in (rows[SOURCES[3]].last_error or "")
    branch = f"extract/{Path(SOURCES[0]).stem}"
    added = git(kb, "diff", "--name-only", "--diff-filter=A", f"main...{branch}").split()
    assert len(added) == 1 and "shared-rate-limits" in added[0]  # the claim came back to its own source
    message = git(kb, "log", "-1", "--format=%B", branch)
    assert "- Extracted by: batch extraction (worker 0)" in message and "Extraction-Model: gpt-4o-mini" in message
    calls = store.calls_for(SOURCES[0])
    assert calls[-1]["cost"] == pytest.approx((1_000_000 * 0.15 + 100_000 * 0.60) / 1e6 / 2)  # the batch price
    unusable = store.calls_for(SOURCES[3])  # billed though unusable: counted
    assert [c["outcome"] for c in unusable] == ["invalid"] and unusable[0]["cost"] == pytest.approx(calls[-1]["cost"])
    assert main(["batch", "status", "--kb", str(kb)]) == 0
    assert "no batch awaits collection" in capsys.readouterr().out


def test_a_source_edited_after_submission_goes_back_to_the_queue(
    kb: Path, api: FakeBatchAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["batch", "submit", "--kb", str(kb), "--limit", "2"]) == 0
    edited = kb / SOURCES[1]
    edited.write_text(edited.read_text() + "\nA late correction.\n")
    git(kb, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qam", "edit a batched source")
    api.complete("batch_1", result_for)
    assert main(["batch", "collect", "--kb", str(kb)]) == 0
    row = StateStore.open(kb).get(SOURCES[1])
    assert row is not None and row.state is SourceState.DUE and "changed after it was sent" in (row.last_error or "")
    assert StateStore.open(kb).get(SOURCES[0]).state is SourceState.AWAITING_REVIEW  # type: ignore[union-attr]


def test_batch_mode_needs_an_endpoint(
    kb: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert main(["batch", "submit", "--kb", str(kb)]) == 2
    assert "batch mode needs an endpoint with a Batch API" in capsys.readouterr().err


def test_batch_mode_refuses_the_select_strategy(
    kb: Path, api: FakeBatchAPI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXTRACTOR_STRATEGY", "select")
    code = main(["batch", "submit", "--kb", str(kb)])
    err = capsys.readouterr().err
    assert code != 0 and 'strategy = "draft"' in err and err.strip().count("\n") == 0
    assert not api.files and not api.batches  # nothing was sent


def test_an_expired_batch_sends_every_source_back_to_the_queue(kb: Path, api: FakeBatchAPI) -> None:
    assert main(["batch", "submit", "--kb", str(kb)]) == 0
    api.expire("batch_1")
    assert main(["batch", "collect", "--kb", str(kb)]) == 0
    rows = StateStore.open(kb).all_sources()
    assert {rows[p].state for p in SOURCES} == {SourceState.DUE}
    assert all("no result (failed or expired)" in (rows[p].last_error or "") for p in SOURCES)
    assert git(kb, "branch", "--list", "extract/*") == ""


def test_broken_result_lines_are_left_out_and_a_collect_cut_short_is_not_collected_twice(
    kb: Path, api: FakeBatchAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["batch", "submit", "--kb", str(kb)]) == 0
    api.complete("batch_1", result_for, garbage=True)
    assert main(["batch", "collect", "--kb", str(kb)]) == 0
    store = StateStore.open(kb)
    assert store.get(SOURCES[0]).state is SourceState.AWAITING_REVIEW  # type: ignore[union-attr]
    tip = git(kb, "rev-parse", f"extract/{Path(SOURCES[0]).stem}").strip()
    # As if the collect had died before it recorded the batch as collected: a second collect reads it again.
    store.db.execute("UPDATE batches SET collected_at = NULL")
    store.db.commit()
    capsys.readouterr()
    assert main(["batch", "collect", "--kb", str(kb)]) == 0
    out = capsys.readouterr().out
    assert f"{SOURCES[0]}: result not used: no longer waiting for this batch" in out
    assert git(kb, "rev-parse", f"extract/{Path(SOURCES[0]).stem}").strip() == tip  # one commit, not two
    assert StateStore.open(kb).get(SOURCES[0]).state is SourceState.AWAITING_REVIEW  # type: ignore[union-attr]


def test_submit_sends_only_what_the_daily_budget_allows_counting_batches_not_yet_collected(
    kb: Path, api: FakeBatchAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    # No history: each request is expected to cost at most its prompt plus a full max_tokens reply, at half price.
    (kb / "extractor.toml").write_text('model = "gpt-4o-mini"\nmax_per_cycle = 10\nbudget_per_day = 0.004\n')
    assert main(["batch", "submit", "--kb", str(kb)]) == 0
    out = capsys.readouterr().out
    sent = len(api.requests("batch_1"))
    assert 1 <= sent < 4 and "held back by the budget" in out
    store = StateStore.open(kb)
    assert store.counts() == {"batched": sent, "due": 4 - sent}
    assert 0 < store.pending_batch_cost() <= 0.004
    # The first batch's expected cost is held against today's budget until it is collected.
    assert main(["batch", "submit", "--kb", str(kb)]) == 1
    assert "held back by the budget" in capsys.readouterr().err
    assert len(api.batches) == 1
