"""Replay: the corpus's recorded runs, their reviewed claims fed back as the LLM's answer over real HTTP.

Each run's ``added/domains`` claims become the scripted server's reply for that
run's ``before.md`` source; the pipeline then extracts as usual (real HTTP,
real SDK), and the gates judge the claims. People reviewed these claims, so
most should pass; the ones that fail are counted by gate, not hidden.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from extractor.core.settings import Settings
from extractor.evaluate.runs import as_answer
from extractor.extraction.answer import ClaimDraft
from extractor.extraction.gates import check_claims
from extractor.extraction.strategy import extract_source
from extractor.kb.claims import ClaimParseError
from extractor.kb.index import KBIndex
from extractor.kb.sources import SourceError, load_source
from extractor.llm.client import StructuredClient, make_client
from tests.fakeopenai import FakeOpenAI, answer


def as_answer_claim(text: str) -> dict:
    return as_answer(text)[2]


def test_recorded_runs_replayed_through_the_gates(corpus: Path, fake_llm: FakeOpenAI) -> None:
    full = KBIndex.load(corpus / "kb")
    # The older job read every source whole; so does the replay (one scripted answer per run).
    settings = Settings(base_url=fake_llm.base_url, model="replay", max_reasks=0, gate_reasks=0, timeout=10,
                        context_tokens=1_000_000)  # fmt: skip
    llm = StructuredClient(make_client(settings), settings)
    runs = claims = passed = 0
    by_gate: Counter[str] = Counter()
    anchored_by: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for run in sorted((corpus / "extractions").iterdir()):
        added = sorted((run / "added" / "domains").rglob("*.md")) if (run / "added" / "domains").is_dir() else []
        if not added:
            continue
        try:
            source = load_source(run / "before.md")
        except SourceError:
            continue
        drafts = []
        for path in added:
            try:
                drafts.append(as_answer_claim(path.read_text(encoding="utf-8")))
            except ClaimParseError:
                by_gate["unreadable"] += 1
        if not drafts:
            continue
        own = {p.stem.casefold() for p in added} | {d["title"].casefold() for d in drafts}
        index = KBIndex(full.root, [c for c in full.claims if c.stem.casefold() not in own and c.title.casefold()
                                    not in own], full.files)  # fmt: skip
        fake_llm.push(answer({"key_facts": [], "claims": drafts, "enrichments": [], "null_result_reason": None,
                              "notes": ""}))  # fmt: skip
        domain = source.domain or "internet-finance"
        result = extract_source(source.model_copy(update={"domain": domain}),
                                f"inbox/archive/{run.name.split('@')[0]}.md", settings, llm, index)  # fmt: skip
        runs += 1
        claims += len(drafts)
        passed += len(result.claims)
        for claim in result.claims:
            assert len(claim.anchors) == len(claim.draft.evidence)
            for anchor in claim.anchors:
                anchored_by[anchor.method] += 1
                if anchor.start is not None:  # the span holds the quote (up to normalising)
                    assert anchor.end is not None and anchor.end > anchor.start
                    assert source.body[anchor.start : anchor.end].strip()
        valid = [ClaimDraft.model_validate(d) for d in drafts if _valid(d)]
        claims_schema_failures = len(drafts) - len(valid)
        by_gate["schema"] += claims_schema_failures
        report = check_claims(valid, source.text, domain, settings.domains, index)
        for position, problems in report.failures.items():
            for gate in {p.gate for p in problems}:
                by_gate[gate] += 1
                examples.setdefault(gate, f"{valid[position].title[:80]}: {problems[0].message}")
    rate = passed / claims
    print(f"\nreplayed {runs} runs, {claims} claims: {passed} passed the gates ({rate:.0%})")
    print("failures by gate:", json.dumps(dict(by_gate.most_common())))
    for gate, note in examples.items():
        print(f"  e.g. {gate}: {note}")
    items = sum(anchored_by.values())
    anchored = items - anchored_by["paraphrase"]
    print(f"evidence items of the claims that passed: {items}, anchored in the source: {anchored} "
          f"({anchored / items:.0%}); by method: {json.dumps(dict(anchored_by.most_common()))}")  # fmt: skip
    assert runs >= 60 and claims >= 150
    assert anchored_by["exact"] > 0 and anchored_by["paraphrase"] > 0  # reviewed claims mix quotes and paraphrase
    # Measured: 158 of 168 (94%) are committed, with what the older job invented flagged in them; before
    # per-item verdicts and derived figures, 85 (51%). What is dropped is counted by gate above.
    assert rate >= 0.9, "see the failures by gate above"


def _valid(draft: dict) -> bool:
    try:
        ClaimDraft.model_validate(draft)
    except ValueError:
        return False
    return True


@pytest.fixture(autouse=True)
def _quiet_bm25(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
