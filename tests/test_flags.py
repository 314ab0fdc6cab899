"""A sound claim with one invented figure in one evidence item: flagged for review in branch mode, the item
removed and named in main mode; never dropped whole, and the flag never written into the claim file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extractor.cli.main import main
from extractor.core.settings import load_settings
from extractor.kb.claims import parse_claim
from extractor.kb.yamlio import split_document
from extractor.review.publish import pull_request_for
from tests.conftest import demo_kb_with, git
from tests.fakeopenai import FakeOpenAI, answer

SLUG = "2026-03-01-cooperative-retention-report"
SOURCE = f"inbox/archive/{SLUG}.md"
SOURCE_TEXT = """---
type: source
title: "Retention in member-owned networks"
author: "A. Author"
url: https://example.org/retention
date: 2026-03-01
domain: internet-finance
format: report
status: unprocessed
---

## Content

Member-owned networks kept 12,752 holders through the year while token prices fell 65%.
Only 600 holders sold during the drawdown, against 4,100 in the comparison group of
governance tokens, which lost holders at seven times the rate.
"""
TITLE = "Member-owned networks keep their holders through price drawdowns better than governance tokens"
INVENTED = "Holder retention improved by 37% after the buyback program"
CLAIM = {
    "title": TITLE,
    "description": "Only 600 of 12,752 holders sold while prices fell 65%, against 4,100 in the comparison group.",
    "confidence": "experimental",
    "evidence": [
        '"Only 600 holders sold during the drawdown" - the report',
        INVENTED,  # no such figure in the source
        "4,100 holders of governance tokens sold, about 7x the rate.",
    ],
    "argument": "Ownership changes how holders respond to a falling price.",
    "limitations": ["One year of data from one report."],
    "secondary_domains": [],
    "related": [],
}
ANSWER = {"key_facts": [], "claims": [CLAIM], "enrichments": [], "null_result_reason": None, "notes": "One claim."}


@pytest.fixture
def kb(tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Path:
    return demo_kb_with(tmp_path / "kb", monkeypatch, fake_llm.base_url, {SOURCE: SOURCE_TEXT})


def extract_in_main_mode(kb: Path, fake_llm: FakeOpenAI, settings: str, push: bool = True) -> None:
    (kb / "extractor.toml").write_text(settings, encoding="utf-8")
    git(kb, "add", "extractor.toml")
    git(kb, "-c", "user.name=Test User", "-c", "user.email=test@example.com", "commit", "-qm", "main mode")
    if push:
        fake_llm.push(answer(ANSWER))
    assert main(["extract", str(kb / SOURCE)]) == 0


def test_branch_mode_commits_the_claim_with_the_item_flagged(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_llm.push(answer(ANSWER))
    assert main(["extract", str(kb / SOURCE)]) == 0
    assert len(fake_llm.requests) == 1  # a flagged evidence item is not worth a re-ask
    capsys.readouterr()
    assert main(["review", "--kb", str(kb), "show", SLUG, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    [claim] = shown["claims"]
    assert claim["title"] == TITLE
    flags = [{key: flag[key] for key in ("gate", "where", "text", "reason")} for flag in claim["flags"]]
    assert flags == [
        {"gate": "grounding", "where": "evidence[1]", "text": "37%", "reason": "the figure 37% is not in the source"}
    ]
    # "7x" is the ratio of two stated counts (4,100 against 600): derived, with its operands, not flagged
    assert [(g["where"], g["text"], g["verdict"]) for g in claim["grounded"]] == [("evidence[2]", "7x", "derived")]
    assert "4100" in claim["grounded"][0]["reason"] and "600" in claim["grounded"][0]["reason"]
    text = git(kb, "show", f"extract/{SLUG}:{claim['path']}")
    assert parse_claim(text).evidence[1] == INVENTED  # kept for the reviewer, and the file holds no flag
    assert "not in the source" not in text
    meta, _ = split_document(git(kb, "show", f"extract/{SLUG}:{SOURCE}"))
    assert (
        f'Flagged for review: "{TITLE}" evidence[1]: the figure 37% is not in the source.' in meta["extraction_notes"]
    )
    capsys.readouterr()
    assert main(["review", "--kb", str(kb), "show", SLUG]) == 0
    assert "flag: evidence[1]: the figure 37% is not in the source (grounding)" in capsys.readouterr().out
    body = pull_request_for(kb, f"extract/{SLUG}", load_settings(kb)).body
    assert f"- `{claim['path']}`\n  - flag: evidence[1]: the figure 37% is not in the source" in body


def test_main_mode_removes_the_item_and_names_it(kb: Path, fake_llm: FakeOpenAI) -> None:
    extract_in_main_mode(kb, fake_llm, 'commit_mode = "main"\n')
    meta, _ = split_document((kb / SOURCE).read_text(encoding="utf-8"))
    [path] = [p for p in (kb / "claims").rglob("*.md") if "member-owned" in p.name]
    evidence = parse_claim(path.read_text(encoding="utf-8")).evidence
    assert INVENTED not in evidence and len(evidence) == 2
    assert f'removed from "{TITLE}" (evidence[1]: the figure 37% is not in the source)' in meta["extraction_notes"]
    assert meta["claims_extracted"] == [TITLE]


def test_a_setting_flags_in_main_mode_too(kb: Path, fake_llm: FakeOpenAI) -> None:
    extract_in_main_mode(kb, fake_llm, 'commit_mode = "main"\nunverified_evidence = "flag"\n')
    [path] = [p for p in (kb / "claims").rglob("*.md") if "member-owned" in p.name]
    assert INVENTED in parse_claim(path.read_text(encoding="utf-8")).evidence


def test_main_mode_removes_an_invented_sentence_of_the_argument(kb: Path, fake_llm: FakeOpenAI) -> None:
    argued = {**CLAIM, "argument": "Ownership changes how holders respond.\n\nLoyalty rose 45% after the buyback. "
              "Owners hold on through a falling price."}  # fmt: skip
    fake_llm.push(answer({**ANSWER, "claims": [argued]}))
    extract_in_main_mode(kb, fake_llm, 'commit_mode = "main"\n', push=False)
    meta, _ = split_document((kb / SOURCE).read_text(encoding="utf-8"))
    [path] = [p for p in (kb / "claims").rglob("*.md") if "member-owned" in p.name]
    argument = parse_claim(path.read_text(encoding="utf-8")).argument
    assert "45%" not in argument
    assert (
        "Ownership changes how holders respond." in argument and "Owners hold on through a falling price." in argument
    )
    assert "argument: the figure 45% is not in the source" in meta["extraction_notes"]


def test_a_claim_without_limitations_gets_no_placeholder_section(kb: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.push(answer({**ANSWER, "claims": [{**CLAIM, "limitations": []}]}))
    extract_in_main_mode(kb, fake_llm, 'commit_mode = "main"\n', push=False)
    [path] = [p for p in (kb / "claims").rglob("*.md") if "member-owned" in p.name]
    text = path.read_text(encoding="utf-8")
    assert "None stated" not in text and "## Limitations" not in text
    assert parse_claim(text).limitations == []
