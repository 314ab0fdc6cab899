"""Every extraction's report in the state store: where each evidence item sits in the source, and the share found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extractor.cli.demo import create_demo_kb
from extractor.cli.main import main
from extractor.kb.sources import parse_source
from extractor.kb.yamlio import split_document
from extractor.store.state import StateStore
from tests.conftest import git
from tests.fakeopenai import FakeOpenAI, Reply, answer
from tests.test_cycle import FULLSTACK, FULLSTACK_ANSWER, NULL

QUOTED = "A thick model separates lasting values from passing preferences, records the social setting"
CLAIM = {
    **FULLSTACK_ANSWER["claims"][0],
    "evidence": [
        f'"{QUOTED}" - what the paper means by a thick model',  # verbatim across a line break
        "The authors think institutions matter as much as models.",  # the model's paraphrase
    ],
}


@pytest.fixture
def kb(tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)

    def by_source(request: dict) -> Reply:
        chosen = {**FULLSTACK_ANSWER, "claims": [CLAIM]} if "fullstack" in request["messages"][-1]["content"] else NULL
        return answer(chosen)

    fake_llm.responder = by_source
    return create_demo_kb(tmp_path / "kb")


def test_a_cycle_records_each_evidence_span_and_the_share_found(kb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    branch = "extract/2025-12-00-fullstack-alignment-co-aligning-ai-and-institutions"
    commit = git(kb, "rev-parse", branch).strip()
    notes = split_document(git(kb, "show", f"{branch}:{FULLSTACK}"))[0]["extraction_notes"]
    assert "Evidence found in the source: 1 of 2 items; the rest is paraphrase." in notes

    store = StateStore.open(kb)
    report = store.extraction_for(commit)
    store.close()
    assert report is not None and report.branch == branch and report.source_path == FULLSTACK
    assert report.worker == 1 and report.agent == "theseus" and report.model == "gpt-4o-mini"
    (claim,) = report.claims
    assert claim.path.startswith("claims/ai-alignment/") and claim.anchored_share == 0.5 and "grounding" in claim.gates
    found, paraphrase = claim.anchors
    body = parse_source(kb / FULLSTACK, git(kb, "show", f"main:{FULLSTACK}")).body
    assert found.method == "normalised" and " ".join(body[found.start : found.end].split()) == QUOTED
    assert (paraphrase.method, paraphrase.start, paraphrase.end) == ("paraphrase", None, None)

    capsys.readouterr()
    assert main(["status", "--kb", str(kb)]) == 0
    assert "evidence found in its source: last cycle 1 of 2, all 1 of 2 (50%)" in capsys.readouterr().out
    assert main(["status", "--kb", str(kb), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["evidence_anchored"] == {"last_cycle": [1, 2], "all": [1, 2]}


def test_a_manual_extraction_records_its_report_too(kb: Path) -> None:
    assert main(["extract", str(kb / FULLSTACK)]) == 0
    commit = git(kb, "rev-parse", "extract/2025-12-00-fullstack-alignment-co-aligning-ai-and-institutions").strip()
    store = StateStore.open(kb)
    report = store.extraction_for(commit)
    store.close()
    assert report is not None and [a.method for a in report.claims[0].anchors] == ["normalised", "paraphrase"]
