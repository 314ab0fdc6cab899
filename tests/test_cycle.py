"""``extractor run --once`` and ``extractor demo`` over the sample inbox, with a scripted endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extractor.cli.demo import create_demo_kb
from extractor.cli.main import main
from extractor.kb.yamlio import split_document
from extractor.store.state import SourceState, StateStore
from tests.conftest import git
from tests.fakeopenai import FakeOpenAI, answer, completion

FULLSTACK = "inbox/archive/2025-12-00-fullstack-alignment-co-aligning-ai-and-institutions.md"
SAMPLES = sorted(p.name for p in (Path(__file__).parent.parent / "inbox" / "archive").glob("*.md"))

NULL = {"key_facts": [], "claims": [], "enrichments": [], "null_result_reason": "Nothing new.", "notes": ""}
FULLSTACK_ANSWER = {
    "key_facts": ["The paper sketches five areas where thick models of value would be used."],
    "claims": [
        {
            "evidence": ["An assistant can do exactly what one company asks and still feed harmful institutions."],
            "argument": "Aligning each system with its operator leaves institutions misaligned.",
            "limitations": ["The paper reports no experiment."],
            "title": "Aligning AI systems with their operators is not enough without aligning institutions",
            "description": "Full-stack alignment co-aligns AI systems and the institutions that deploy them.",
            "confidence": "speculative",
            "secondary_domains": ["mechanisms"],
            "related": ["AI alignment is a coordination problem not only a technical problem"],
        }
    ],
    "enrichments": [
        {
            "target": "preference-based training compresses diverse human values into a single reward signal",
            "evidence": "Thick models of value are proposed to replace single reward numbers.",
            "kind": "challenge",
        }
    ],
    "null_result_reason": None,
    "notes": "One claim, one enrichment.",
}


@pytest.fixture
def endpoint(fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("EXTRACTOR_RETRY_INITIAL_WAIT", "0.01")
    return fake_llm


def test_sample_inbox_is_unprocessed_sources_that_link_to_sample_claims(tmp_path: Path) -> None:
    assert 3 <= len(SAMPLES) <= 5
    kb = create_demo_kb(tmp_path / "kb")
    from extractor.extraction.extract import candidates_for
    from extractor.kb.index import KBIndex
    from extractor.kb.sources import SourceStatus, load_source

    index = KBIndex.load(kb, exclude=["inbox/archive"])
    assert len(index.claims) >= 3
    for name in SAMPLES:
        source = load_source(kb / "inbox" / "archive" / name)
        assert source.status is SourceStatus.UNPROCESSED
        assert candidates_for(source, index), f"{name} links to no sample claim"


def test_one_cycle_commits_each_source_and_reports_failures(
    tmp_path: Path, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = create_demo_kb(tmp_path / "kb")
    start = git(kb, "rev-parse", "HEAD").strip()
    # Sorted order: hanson, baicker, bai (broken three times), fullstack, the long report.
    endpoint.push(answer(NULL), answer(NULL), *[completion("not json")] * 3, answer(FULLSTACK_ANSWER), answer(NULL))
    assert main(["run", "--once", "--kb", str(kb)]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1]["message"] == "cycle" and lines[-1]["summary"] == "cycle: 5 source(s), 4 done, 1 failed"
    failed = [line for line in lines if line["message"] == "source" and not line["ok"]]
    assert [f["source_path"] for f in failed] == [
        "inbox/archive/2022-12-00-bai-constitutional-ai-harmlessness-from-ai-feedback.md"
    ]
    assert failed[0]["status"] == "failed" and failed[0]["error"].startswith("LLM failed: invalid")

    # Branch mode (the default): one branch per source, each holding exactly its own commit on main's tip.
    assert git(kb, "rev-parse", "HEAD").strip() == start and git(kb, "branch", "--show-current").strip() == "main"
    assert git(kb, "status", "--porcelain") == ""
    branches = git(kb, "for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads/extract/").split()
    assert len(branches) == 4
    for branch in branches:
        assert git(kb, "rev-list", "--count", f"main..{branch}").strip() == "1"
        assert git(kb, "rev-parse", f"{branch}~1").strip() == start
    fullstack_branch = "extract/2025-12-00-fullstack-alignment-co-aligning-ai-and-institutions"
    assert "Extracted by: headless extraction cron (worker 1)" in git(kb, "log", "-1", "--format=%B", fullstack_branch)
    on_branch, _ = split_document(git(kb, "show", f"{fullstack_branch}:{FULLSTACK}"))
    assert on_branch["status"] == "processed"
    assert on_branch["enrichments_applied"] == [
        "Preference-based training compresses diverse human values into a single reward signal"
    ]
    on_main, _ = split_document((kb / FULLSTACK).read_text())
    assert on_main["status"] == "unprocessed"  # the work tree is untouched
    store = StateStore.open(kb)
    assert store.get(FULLSTACK).state is SourceState.AWAITING_REVIEW  # type: ignore[union-attr]
    bai = "inbox/archive/2022-12-00-bai-constitutional-ai-harmlessness-from-ai-feedback.md"
    assert store.get(bai).state is SourceState.FAILED  # type: ignore[union-attr]

    # Awaiting review is not due; the failed source waits for its retry time.
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert "cycle: 0 source(s)" in capsys.readouterr().out


def test_demo_runs_twice_and_never_touches_other_folders(
    tmp_path: Path, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "demo"
    for _ in range(2):
        endpoint.push(answer(NULL), answer(NULL), answer(NULL), answer(FULLSTACK_ANSWER), answer(NULL))
        assert main(["demo", "--dir", str(target)]) == 0
        out = capsys.readouterr().out
        assert "Pentagon-Agent: Theseus <HEADLESS>" in out
        assert "==> claims/ai-alignment/aligning-ai-systems-with-their-operators-is-not-enough" in out
        assert len(git(target, "log", "--branches", "--format=%h").split()) == 6
    precious = tmp_path / "my-kb"
    precious.mkdir()
    (precious / "keep.md").write_text("mine")
    assert main(["demo", "--dir", str(precious)]) == 2
    assert "is not a demo knowledge base" in capsys.readouterr().err
    assert (precious / "keep.md").read_text() == "mine"
