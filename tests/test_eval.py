"""``extractor eval``: the corpus's recorded runs replayed through the gates and scored against the labels kept
in tests/data; two prompt folders compared live against a scripted server; the HTML report in a browser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from extractor.cli.main import main
from extractor.extraction.prompts import default_prompts_dir
from tests.fakeopenai import FakeOpenAI, Reply, answer

LABELS = Path(__file__).parent / "data" / "gate_labels.jsonl"


def test_replay_of_the_corpus_keeps_what_people_accepted_and_flags_what_they_missed(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = corpus / "extractions"
    assert main(["eval", str(runs), "--replay", "--labels", str(LABELS), "--quiet"]) == 0
    table = capsys.readouterr().out
    with capsys.disabled():
        print("\n" + table)  # the table, for the record (-s)
    assert main(["eval", str(runs), "--replay", "--labels", str(LABELS), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    totals = data["totals"]
    assert totals["sources"] >= 60 and totals["accepted"] >= 150
    assert totals["recovered_share"] >= 0.9  # committed, with flags where due
    assert totals["reasked_share"] <= 0.15
    assert totals["derived"] > 0 and totals["flagged_items"] > 0
    # Entity notes: 101 of the 103 accepted new notes are drafted at their path (one is filed under its parent's
    # slug, as the schema says, and one has a type the schema lacks); runs with entities alone count as sources.
    assert totals["accepted_entities"] >= 100 and totals["entities_recovered_share"] >= 0.9
    assert totals["sources"] > len([s for s in data["sources"] if s["accepted"]])
    gates = {score["gate"]: score for score in data["gates"]}
    assert {"grounding", "description", "duplicate"} <= set(gates)
    for score in gates.values():
        assert score["false_positive_rate"] <= 0.05, score
    real = sum(score["labelled_real"] for score in gates.values())
    caught = sum(score["caught"] for score in gates.values())
    assert real >= 50 and caught / real >= 0.9, gates


def test_labels_are_judged_decisions_on_real_runs(corpus: Path) -> None:
    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 200 and {row["gate"] for row in rows} == {"grounding", "description", "duplicate"}
    for row in rows:
        assert (corpus / "extractions" / row["run"] / "before.md").is_file(), row["run"]
        assert list((corpus / "extractions" / row["run"] / "added").rglob(f"{row['claim']}.md")), row["claim"]
        assert isinstance(row["real"], bool) and row["note"], row


SOURCE = """---
type: source
title: "{title}"
author: "A. Author"
url: https://example.org/{slug}
date: 2026-03-01
domain: internet-finance
format: report
status: unprocessed
---

## Content

{body}
"""
CLAIM = """---
type: claim
domain: internet-finance
description: "{description}"
confidence: experimental
source: "a report"
created: 2026-03-02
---

# {title}

{argument}

## Evidence
- {evidence}
"""
RUNS = [
    {
        "slug": "2026-03-01-retention-report",
        "title": "Retention in member-owned networks",
        "body": "Member-owned networks kept 12,752 holders while prices fell 65%. Only 600 holders sold.",
        "claim": {
            "title": "Member-owned networks keep holders through price drawdowns",
            "description": "Only 600 of 12,752 holders sold while the price fell 65%.",
            "argument": "Ownership changes how holders respond to a falling price.",
            "evidence": '"Only 600 holders sold" - the report',
        },
    },
    {
        "slug": "2026-03-02-launch-report",
        "title": "Launches on a futarchy platform",
        "body": "The first raise committed $11M against a $50K target. Launch fees were 2% of each raise.",
        "claim": {
            "title": "Permissionless launches attract far more capital than their targets ask for",
            "description": "The first raise committed $11M against a $50K target, 220x oversubscribed.",
            "argument": "Demand for permissionless raises exceeds what founders ask for.",
            "evidence": '"The first raise committed $11M against a $50K target" - the report',
        },
    },
]


def write_runs(folder: Path) -> Path:
    for run in RUNS:
        root = folder / f"{run['slug']}@0000000"
        root.mkdir(parents=True)
        (root / "before.md").write_text(SOURCE.format(**run), encoding="utf-8")
        claim = root / "added" / "domains" / "internet-finance" / "accepted.md"
        claim.parent.mkdir(parents=True)
        claim.write_text(CLAIM.format(**run["claim"]), encoding="utf-8")
    return folder


def drafts_for(request: dict[str, Any]) -> Reply:
    """The accepted claim of whichever run's source the request holds; prompt tokens as sent (4 characters each)."""
    text = json.dumps(request["messages"])
    run = next(run for run in RUNS if run["body"] in text)
    claim = {**run["claim"], "evidence": [run["claim"]["evidence"]], "confidence": "experimental",
             "limitations": ["One report."], "secondary_domains": [], "related": []}  # fmt: skip
    body = {"key_facts": [], "claims": [claim], "enrichments": [], "null_result_reason": None, "notes": ""}
    return answer(body, prompt_tokens=len(text) // 4)


def configs(tmp_path: Path, base_url: str) -> tuple[Path, Path]:
    longer = tmp_path / "prompts-b"
    shutil.copytree(default_prompts_dir(), longer)
    system = longer / "system.md"
    system.write_text(system.read_text(encoding="utf-8") + "\nBe careful. " * 200, encoding="utf-8")
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    common = f'base_url = "{base_url}"\nmodel = "scripted"\ntimeout = 5\nretry_initial_wait = 0.01\n'
    a.write_text(common, encoding="utf-8")
    b.write_text(common + f'prompts_dir = "{longer}"\n', encoding="utf-8")
    return a, b


def test_against_runs_two_prompt_folders_side_by_side(
    tmp_path: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_llm.responder = drafts_for
    runs = write_runs(tmp_path / "runs")
    a, b = configs(tmp_path, fake_llm.base_url)
    assert main(["--config", str(a), "eval", str(runs), "--against", str(b)]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert str(a)[-28:] in header and str(b)[-28:] in header and "difference" in header
    by_label = {row[:36].strip(): row[36:].split() for row in rows if row[:36].strip()}
    assert by_label["accepted claims recovered"] == ["2", "2", "0"]
    first, second, difference = by_label["median prompt tokens, all requests"]
    assert int(second.replace(",", "")) > int(first.replace(",", ""))  # the longer prompts cost more
    assert difference.startswith("+") and int(difference[1:].replace(",", "")) > 500
    assert len(fake_llm.requests) == 4  # each run once per configuration, no re-ask


def test_html_report_opens_with_its_charts(tmp_path: Path, fake_llm: FakeOpenAI, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    fake_llm.responder = drafts_for
    runs = write_runs(tmp_path / "runs")
    a, b = configs(tmp_path, fake_llm.base_url)
    report = tmp_path / "report.html"
    assert main(["--config", str(a), "eval", str(runs), "--against", str(b), "--html", str(report)]) == 0
    browser.get(report.as_uri())
    assert browser.title.startswith("extractor eval:")
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    assert len(charts) >= 3
    for chart in charts:
        assert chart.is_displayed() and chart.size["width"] > 200 and chart.size["height"] > 100
    assert browser.find_elements(By.CSS_SELECTOR, "figure.chart svg path")  # something is drawn in them
    totals = browser.find_element(By.ID, "totals").text
    assert "accepted claims recovered" in totals and "difference" in totals
    assert browser.find_elements(By.TAG_NAME, "script") == []  # self-contained: no code, nothing fetched


def test_bad_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tmp_path / "nowhere"), "--replay"]) == 2
    assert capsys.readouterr().err.strip() == f"extractor: {tmp_path / 'nowhere'}: not a folder of recorded runs"
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(tmp_path / "empty"), "--replay"]) == 2
    assert "no recorded run with an accepted claim or entity note" in capsys.readouterr().err
    (tmp_path / "empty" / "x@1").mkdir()
    (tmp_path / "empty" / "x@1" / "before.md").write_text("---\ntype: claim\n---\nnot a source\n", encoding="utf-8")
    assert main(["eval", str(tmp_path / "empty"), "--replay"]) == 2
    assert "1 left out, first x@1: " in capsys.readouterr().err  # the reason, not only "nothing to do"
    runs = write_runs(tmp_path / "runs")
    labels = tmp_path / "labels.jsonl"
    cases = [("{not json\n", ":1: not JSON: "), ('{"run": "x", "claim": "y"}\n', ":1: not a label: real: "),
             ("\n\xff\xfe\n", ": not UTF-8 text")]  # fmt: skip
    for text, problem in cases:
        labels.write_bytes(text.encode("latin-1"))
        assert main(["eval", str(runs), "--replay", "--labels", str(labels)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"extractor: {labels}{problem}") and err.count("\n") == 1, err
    settings = tmp_path / "binary.toml"
    settings.write_bytes(b"\xff\xfe\x00")
    assert main(["eval", str(runs), "--replay", "--against", str(settings)]) == 2
    assert capsys.readouterr().err == f"extractor: {settings}: invalid TOML: not UTF-8 text (byte 0)\n"


def test_unreadable_claim_files_are_named_not_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = write_runs(tmp_path / "runs")
    broken = next(runs.glob("2026-03-01*")) / "added" / "domains" / "internet-finance" / "broken.md"
    broken.write_text("---\ntype: claim\ndescription: never closed\n", encoding="utf-8")
    assert main(["eval", str(runs), "--replay", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "left out: 2026-03-01-retention-report@0000000/added/domains/internet-finance/broken.md: " in out


def test_judge_model_decides_borderline_matches(
    tmp_path: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    """A draft reworded past the similarity bar is matched only when the judge model says it is the same claim."""
    reworded = "Holders of member-owned tokens rarely sell when the price falls"
    verdicts: list[bool] = []

    def respond(request: dict[str, Any]) -> Reply:
        system = request["messages"][0]["content"]
        if system.startswith("Two claims from a knowledge base"):
            same = "rarely sell" in request["messages"][1]["content"]
            verdicts.append(same)
            return answer({"same": same})
        reply = drafts_for(request)
        body = json.loads(reply.body["choices"][0]["message"]["content"])
        if "12,752" in json.dumps(request["messages"]):
            body["claims"][0]["title"] = reworded
            body["claims"][0]["description"] = "Few of 12,752 holders left in a drawdown, by the report's count."
        return answer(body)

    fake_llm.responder = respond
    runs = write_runs(tmp_path / "runs")
    a, _ = configs(tmp_path, fake_llm.base_url)
    assert main(["--config", str(a), "eval", str(runs), "--json"]) == 0
    without = json.loads(capsys.readouterr().out)["totals"]
    assert main(["--config", str(a), "eval", str(runs), "--json", "--judge"]) == 0
    judged = json.loads(capsys.readouterr().out)["totals"]
    assert (without["recovered"], judged["recovered"]) == (1, 2)
    assert verdicts == [True]  # asked once, about the borderline pair only
