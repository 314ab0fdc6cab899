"""Replay with a reviewer: recorded runs of the corpus extracted again on a copy of its KB in branch mode, with
``auto_accept = "approved"``; the scripted reviewer flags two known-bad drafts among the good ones, and
exactly those two branches stay pending while the rest are merged."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from extractor.cli.main import main
from extractor.evaluate.runs import as_answer
from tests.conftest import commit_all, git, init_repo
from tests.fakeopenai import FakeOpenAI, Reply, answer
from tests.test_review_model import REVIEWER, review_reply

# Recorded runs whose accepted drafts pass the gates unflagged and stay in their agent's folders.
RUNS = [
    "2021-02-00-mckinsey-facility-to-home-265-billion-shift@44a2f049",
    "2021-02-00-pmc-japan-ltci-past-present-future@06289266",
    "2021-06-29-kaufmann-active-inference-collective-intelligence@3374f1f1",
    "2024-04-00-conitzer-social-choice-guide-alignment@2385f134",
    "2024-08-01-variety-indie-streaming-dropout-nebula-critical-role@b843e3f2",
]
# The two known-bad drafts: a sound recorded claim made to overclaim (a universal title, proven confidence).
BAD = {RUNS[1]: "always", RUNS[4]: "proven"}


def recorded_drafts(run: Path) -> list[dict[str, Any]]:
    return [as_answer(path.read_text(encoding="utf-8"))[2] for path in sorted((run / "added").rglob("*.md"))]


def spoil(draft: dict[str, Any], how: str) -> dict[str, Any]:
    if how == "always":
        return {**draft, "title": "Every " + draft["title"][0].lower() + draft["title"][1:] + " always"}
    return {**draft, "confidence": "proven"}


@pytest.fixture
def replay_kb(tmp_path: Path, corpus: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    runs = corpus / "extractions"
    missing = [name for name in RUNS if not (runs / name).is_dir()]
    if missing:
        pytest.skip(f"recorded runs not in the corpus: {missing}")
    kb = init_repo(tmp_path / "kb")
    for folder in ("domains", "core", "foundations", "schemas"):
        if (corpus / "kb" / folder).is_dir():
            shutil.copytree(corpus / "kb" / folder, kb / folder)
    (kb / "inbox" / "archive").mkdir(parents=True)
    answers: dict[str, dict[str, Any]] = {}
    for name in RUNS:
        run = runs / name
        for added in (run / "added").rglob("*.md"):  # the KB as it was before the run
            for existing in kb.rglob(added.name):
                existing.unlink()
        slug = name.split("@")[0]
        (kb / "inbox" / "archive" / f"{slug}.md").write_text((run / "before.md").read_text(encoding="utf-8"))
        drafts = recorded_drafts(run)
        if name in BAD:
            drafts[0] = spoil(drafts[0], BAD[name])
        answers[slug] = {"key_facts": [], "claims": drafts, "enrichments": [], "null_result_reason": None,
                         "notes": "Replayed."}  # fmt: skip
    (kb / "extractor.toml").write_text(
        f'claims_dir = "domains"\nentities = false\nreview_model = "{REVIEWER}"\nauto_accept = "approved"\n'
        "max_per_cycle = 10\n",
        encoding="utf-8",
    )
    commit_all(kb)
    return kb, answers


def test_the_reviewer_flags_two_known_bad_drafts_and_exactly_those_stay_pending(
    replay_kb: tuple[Path, dict[str, dict[str, Any]]],
    fake_llm: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kb, answers = replay_kb
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("EXTRACTOR_RETRY_INITIAL_WAIT", "0.01")
    flagged_items: list[str] = []

    def verdicts(ident: str, path: str, request: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
        user = request["messages"][-1]["content"]
        item = user.split(f"## {ident}: ", 1)[1].split("\n## ", 1)[0]
        if re.search(r"^# Every .* always$", item, re.M):
            flagged_items.append(path)
            return "request_changes", [{"criterion": "universals", "reason": "'always' is not supported."}]
        if "confidence: proven" in item:
            flagged_items.append(path)
            return "request_changes", [{"criterion": "confidence", "reason": "One study is not proof."}]
        return "approve", []

    def respond(request: dict[str, Any]) -> Reply:
        if request["model"] == REVIEWER:
            return review_reply(request, verdicts)
        text = "\n".join(message["content"] for message in request["messages"])  # re-asks follow the source
        slug = next(slug for slug in answers if f"inbox/archive/{slug}.md" in text)
        return answer(answers[slug])

    fake_llm.responder = respond
    main_before = git(kb, "rev-parse", "main").strip()
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    capsys.readouterr()
    assert main(["review", "--kb", str(kb), "list", "--json"]) == 0
    pending = {item["source"]: item for item in json.loads(capsys.readouterr().out)}
    bad_sources = {f"inbox/archive/{name.split('@')[0]}.md" for name in BAD}
    assert set(pending) == bad_sources
    assert {item["verdict"] for item in pending.values()} == {"changes"}
    assert len(flagged_items) == 2
    merged = git(kb, "log", "--format=%s", f"{main_before}..main", "--first-parent").splitlines()
    assert sorted(line for line in merged if line.startswith("Accept ")) == sorted(
        f"Accept extract/{name.split('@')[0]}" for name in RUNS if name not in BAD
    )
