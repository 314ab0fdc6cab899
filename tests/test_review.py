"""Review in git on real repositories: branches per source, list, show, accept, reject, --force."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from extractor.cli.demo import create_demo_kb
from extractor.cli.main import main
from extractor.kb.yamlio import split_document
from tests.conftest import git
from tests.fakeopenai import FakeOpenAI, Reply, answer
from tests.test_cycle import FULLSTACK, FULLSTACK_ANSWER, NULL, SAMPLES

HANSON = "inbox/archive/2013-00-00-hanson-futarchy-vote-values-bet-beliefs.md"
FULLSTACK_SLUG = "2025-12-00-fullstack-alignment-co-aligning-ai-and-institutions"
HANSON_SLUG = "2013-00-00-hanson-futarchy-vote-values-bet-beliefs"


@pytest.fixture
def kb(tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("EXTRACTOR_RETRY_INITIAL_WAIT", "0.01")
    fake_llm.default = Reply(body=answer(NULL).body, delay=0.2)
    return create_demo_kb(tmp_path / "kb")


def branches(kb: Path) -> list[str]:
    return git(kb, "for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads/extract/").split()


def status_on_main(kb: Path, path: str) -> dict:
    return split_document(git(kb, "show", f"main:{path}"))[0]


def test_concurrent_extractions_make_separate_branches_then_accept_merges_them(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    start = git(kb, "rev-parse", "main").strip()

    def by_source(request: dict) -> Reply:
        chosen = FULLSTACK_ANSWER if "fullstack" in request["messages"][-1]["content"] else NULL
        return Reply(body=answer(chosen).body, delay=0.3)

    fake_llm.responder = by_source
    assert main(["run", "--once", "--kb", str(kb), "--workers", "2"]) == 0
    capsys.readouterr()
    assert len(branches(kb)) == len(SAMPLES)
    for branch in branches(kb):  # each holds exactly its own commit, on main's tip
        assert git(kb, "rev-list", "--count", f"main..{branch}").strip() == "1"
        assert git(kb, "rev-parse", f"{branch}~1").strip() == start
        assert len(git(kb, "diff", "--name-only", "main", branch, "--", "inbox").split()) == 1

    assert main(["review", "--kb", str(kb), "list", "--json"]) == 0
    listed = {item["source"]: item for item in json.loads(capsys.readouterr().out)}
    fullstack = listed[FULLSTACK]
    assert fullstack["agent"] == "theseus" and fullstack["worker"] in (1, 2) and fullstack["model"] == "gpt-4o-mini"
    assert len(fullstack["claims"]) == 1 and len(fullstack["enrichments"]) == 1

    assert main(["review", "--kb", str(kb), "show", FULLSTACK_SLUG]) == 0
    shown = capsys.readouterr().out
    assert "==> claims/ai-alignment/aligning-ai-systems-with-their-operators" in shown
    assert "+### Additional Evidence (challenge)" in shown and "-status: unprocessed" in shown

    assert main(["review", "--kb", str(kb), "accept", FULLSTACK_SLUG, HANSON_SLUG]) == 0
    assert "accepted extract/" in capsys.readouterr().out
    assert status_on_main(kb, FULLSTACK)["status"] == "processed"
    assert status_on_main(kb, HANSON)["status"] == "null-result"
    assert len(branches(kb)) == len(SAMPLES) - 2
    assert git(kb, "status", "--porcelain") == ""  # the checkout (on main) followed the merge
    assert (kb / "claims/ai-alignment").is_dir() and any((kb / "claims/ai-alignment").glob("aligning-ai-systems*"))
    assert main(["run", "--once", "--kb", str(kb)]) == 0  # nothing left to take
    assert "cycle: 0 source(s)" in capsys.readouterr().out


def test_a_conflicting_accept_leaves_main_exactly_as_it_was(kb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extract", str(kb / HANSON)]) == 0
    source = kb / HANSON
    source.write_text(source.read_text().replace("status: unprocessed", "status: processing"))
    git(kb, "commit", "-qam", "someone edits the same line on main")
    before = git(kb, "rev-parse", "main").strip()
    capsys.readouterr()
    assert main(["review", "--kb", str(kb), "accept", HANSON_SLUG]) == 1
    assert "cannot merge extract/" in capsys.readouterr().err
    assert git(kb, "rev-parse", "main").strip() == before
    assert git(kb, "status", "--porcelain") == ""
    assert branches(kb) == [f"extract/{HANSON_SLUG}"]


def test_reject_records_the_reason_and_the_scheduler_skips_the_source(
    kb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["extract", str(kb / HANSON)]) == 0
    assert main(["review", "--kb", str(kb), "reject", HANSON_SLUG, "--reason", "Only restates the paper."]) == 0
    assert branches(kb) == []
    meta = status_on_main(kb, HANSON)
    expected = ("null-result", "rejected", "Rejected in review: Only restates the paper.")
    assert (meta["status"], meta["review"], meta["notes"]) == expected
    capsys.readouterr()
    assert main(["run", "--once", "--kb", str(kb), "--workers", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    taken = [line["source_path"] for line in lines if line["message"] == "source"]
    assert len(taken) == len(SAMPLES) - 1 and HANSON not in taken
    assert f"extract/{HANSON_SLUG}" not in branches(kb)


def test_reject_retry_makes_the_source_due_again(kb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extract", str(kb / HANSON)]) == 0
    assert main(["review", "--kb", str(kb), "reject", HANSON_SLUG, "--retry"]) == 0
    assert branches(kb) == [] and status_on_main(kb, HANSON)["status"] == "unprocessed"
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert f"extract/{HANSON_SLUG}" in branches(kb)


def test_force_replaces_the_branch_instead_of_stacking(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["extract", str(kb / HANSON)]) == 0
    first = git(kb, "rev-parse", f"extract/{HANSON_SLUG}").strip()
    assert main(["extract", str(kb / HANSON)]) == 1
    assert "already awaits review; use --force" in capsys.readouterr().err
    fake_llm.push(answer({**NULL, "null_result_reason": "A second look found nothing either."}))
    assert main(["extract", str(kb / HANSON), "--force", "--no-cache"]) == 0  # the source is unchanged
    second = git(kb, "rev-parse", f"extract/{HANSON_SLUG}").strip()
    assert second != first
    assert git(kb, "rev-list", "--count", f"main..extract/{HANSON_SLUG}").strip() == "1"
    on_branch = split_document(git(kb, "show", f"extract/{HANSON_SLUG}:{HANSON}"))[0]
    assert on_branch["notes"] == "A second look found nothing either."


def test_extraction_leaves_the_users_checkout_and_edits_alone(kb: Path) -> None:
    git(kb, "checkout", "-q", "-b", "my-feature")
    (kb / "claims" / "health" / "draft-in-progress.md").write_text("half written\n")
    notes = kb / FULLSTACK
    notes.write_text(notes.read_text() + "\nmy unsaved note\n")
    before = git(kb, "status", "--porcelain")
    assert main(["extract", str(kb / FULLSTACK)]) == 0
    assert git(kb, "branch", "--show-current").strip() == "my-feature"
    assert git(kb, "status", "--porcelain") == before
    assert "my unsaved note" in notes.read_text()
    on_branch = git(kb, "show", f"extract/{FULLSTACK_SLUG}:{FULLSTACK}")
    assert "my unsaved note" not in on_branch  # planned from main, not from the work tree
    assert git(kb, "rev-parse", f"extract/{FULLSTACK_SLUG}~1").strip() == git(kb, "rev-parse", "main").strip()


def test_a_branch_merged_elsewhere_no_longer_awaits_review(kb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extract", str(kb / HANSON)]) == 0
    git(kb, "merge", "-q", "--no-edit", f"extract/{HANSON_SLUG}")  # as if its pull request was merged and pulled
    capsys.readouterr()
    assert main(["review", "--kb", str(kb), "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    from extractor.store.state import SourceState, StateStore

    assert StateStore.open(kb).get(HANSON).state is SourceState.DONE  # type: ignore[union-attr]


def test_a_source_that_is_not_utf8_on_main_fails_with_a_clear_error(
    kb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (kb / HANSON).write_bytes(b"---\ntitle: \xff\xfe\nstatus: unprocessed\n---\nbody\n")
    git(kb, "commit", "-qam", "a broken source on main")
    assert main(["extract", str(kb / HANSON)]) == 1
    assert capsys.readouterr().err.strip() == f"extractor: {HANSON}: not UTF-8 text (byte 11)"
    assert branches(kb) == []


def test_dropped_items_split_only_between_items() -> None:
    from extractor.review.branches import dropped_items

    notes = (
        "The model says: Dropped: nothing of note. Evidence found in the source: 1 of 2 items; the rest is paraphrase. "
        'Dropped: dropped claim "Costs fall; then rise again over time" (grounding: "12%" is not in the source; '
        "description: repeats the title); unlinked 2 wiki link(s) that resolve to no note"
    )
    assert dropped_items(notes) == [
        'dropped claim "Costs fall; then rise again over time" (grounding: "12%" is not in the source; '
        "description: repeats the title)",
        "unlinked 2 wiki link(s) that resolve to no note",
    ]
    assert dropped_items("Read in 3 overlapping parts.") == []
