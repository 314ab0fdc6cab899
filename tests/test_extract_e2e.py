"""``extractor extract`` end to end: corpus files in a real git repo, real HTTP to a scripted server."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from extractor.cli.main import main
from extractor.kb.yamlio import split_document
from tests.conftest import commit_all, git
from tests.fakeopenai import FakeOpenAI, answer, completion

SOURCE = "2025-11-00-sahoo-rlhf-alignment-trilemma.md"
SOURCE_REL = f"inbox/archive/{SOURCE}"
RLHF = (
    "RLHF and DPO both fail at preference diversity because they assume a single reward function "
    "can capture context-dependent human values"
)
ARROW = (
    "universal alignment is mathematically impossible because Arrows impossibility theorem applies "
    "to aggregating diverse human preferences into a single coherent objective"
)
TITLE_1 = "No RLHF system can be representative, tractable and robust at the same time"
TITLE_2 = "Preference collapse and sycophancy are computational necessities of single-reward RLHF"


def claim(title: str, related: list[str], evidence: str = "10^3-10^4 samples are collected") -> dict:
    return {
        "evidence": [evidence, "Omega(2^{d_context}) operations are required"],
        "argument": "The trilemma is proven with complexity theory.\n\n---\n# not a heading",
        "limitations": ["A position paper at a workshop."],
        "title": title,
        "description": "Complexity theory reaches the impossibility that social choice theory reached.",
        "confidence": "likely",
        "secondary_domains": ["collective-intelligence"],
        "related": related,
    }


GOOD = {
    "key_facts": ["Current systems collect 10^3-10^4 samples", "10^7-10^8 samples are needed"],
    "claims": [
        claim(TITLE_1, [ARROW, "a claim that does not exist"]),
        claim(TITLE_2, [RLHF.lower() + ".md"]),
    ],
    "enrichments": [
        {"target": RLHF, "evidence": "Sahoo et al. formalise this as a trilemma.", "kind": "extend"},
    ],
    "null_result_reason": None,
    "notes": "Two claims and one enrichment.",
}


@pytest.fixture
def kb(corpus_kb: Path, corpus: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(corpus / "inbox" / "archive" / SOURCE, corpus_kb / SOURCE_REL)
    (corpus_kb / "extractor.toml").write_text(
        'claims_dir = "domains"\nenrich_dirs = ["core", "foundations"]\nmodel = "scripted-model"\n'
        'commit_mode = "main"\ncontext_tokens = 32768\n'
        "timeout = 2\nretry_initial_wait = 0.01\nretry_max_wait = 0.1\n",
        encoding="utf-8",
    )
    commit_all(corpus_kb, "add source")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    return corpus_kb


def status(repo: Path) -> str:
    return git(repo, "status", "--porcelain", "--untracked-files=all")


def changed_in_head(repo: Path) -> dict[str, str]:
    out = git(repo, "show", "--name-status", "--format=", "HEAD")
    return {line.split("\t", 1)[1]: line.split("\t", 1)[0] for line in out.splitlines() if line}


def test_extract_commits_claims_enrichment_and_source_update(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    # The user's own work in progress must survive untouched.
    (kb / "notes.md").write_text("untracked draft\n")
    staged = kb / "domains" / "health" / "_map.md"
    staged.write_text(staged.read_text() + "\nstaged edit\n")
    git(kb, "add", str(staged))
    unstaged = kb / "core" / "grand-strategy" / "_map.md"
    unstaged.write_text(unstaged.read_text() + "\nunstaged edit\n")
    before_status = status(kb)
    parent = git(kb, "rev-parse", "HEAD").strip()

    fake_llm.push(answer(GOOD))
    assert main(["extract", str(kb / SOURCE_REL), "--worker", "4"]) == 0
    out = capsys.readouterr().out
    assert "processed, 2 claim(s), 1 enrichment(s)" in out

    today = datetime.date.today().isoformat()
    claim_1 = "domains/ai-alignment/no-rlhf-system-can-be-representative-tractable-and-robust-at-the-same-time.md"
    claim_2 = (
        "domains/ai-alignment/preference-collapse-and-sycophancy-are-computational-necessities-of-single-reward-rlhf.md"
    )
    enriched = f"foundations/collective-intelligence/{RLHF}.md"
    assert changed_in_head(kb) == {claim_1: "A", claim_2: "A", enriched: "M", SOURCE_REL: "M"}
    assert git(kb, "rev-parse", "HEAD~1").strip() == parent
    assert status(kb) == before_status  # nothing else changed, user's changes intact
    assert "domains/health/_map.md" in git(kb, "diff", "--cached", "--name-only")

    message = git(kb, "log", "-1", "--format=%B")
    prompt_hash = git(kb, "log", "-1", "--format=%(trailers:key=Extraction-Prompt,valueonly)").strip()
    assert len(prompt_hash) == 16
    assert message.strip() == (
        f"theseus: extract claims from {SOURCE}\n\n"
        f"- Source: {SOURCE_REL}\n"
        "- Domain: ai-alignment\n"
        "- Extracted by: manual extraction (worker 4)\n\n"
        "Pentagon-Agent: Theseus <HEADLESS>\n"
        "Extraction-Model: scripted-model\n"
        f"Extraction-Prompt: {prompt_hash}"
    )
    assert git(kb, "log", "-1", "--format=%(trailers:key=Pentagon-Agent,valueonly)").strip() == "Theseus <HEADLESS>"
    assert git(kb, "log", "-1", "--format=%an <%ae>").strip() == "extractor <extractor@localhost>"

    meta, body = split_document((kb / claim_1).read_text())
    assert meta == {
        "type": "claim",
        "domain": "ai-alignment",
        "description": "Complexity theory reaches the impossibility that social choice theory reached.",
        "confidence": "likely",
        "source": "Subramanyam Sahoo, Aman Chadha, Vinija Jain, Divya Chaudhary, "
        "The Complexity of Perfect AI Alignment: Formalizing the RLHF Trilemma (2025-11-01)",
        "created": today,
        "secondary_domains": ["collective-intelligence"],
    }
    assert body.startswith(f"# {TITLE_1}\n\nThe trilemma is proven with complexity theory.")
    assert "\n---\n# not a heading" not in body  # model text cannot forge structure
    for heading in ("## Evidence\n\n- 10^3-10^4 samples are collected", "## Limitations\n\n- A position paper"):
        assert heading in body
    assert f"Relevant Notes:\n- [[{ARROW}]]\n\nTopics:\n- [[_map]]" in body
    assert "does not exist" not in body

    source_meta, source_body = split_document((kb / SOURCE_REL).read_text())
    assert source_meta["status"] == "processed"
    assert source_meta["processed_by"] == "theseus"
    assert source_meta["processed_date"] == today
    assert source_meta["claims_extracted"] == [TITLE_1, TITLE_2]
    assert source_meta["enrichments_applied"] == [RLHF]
    assert source_meta["extraction_model"] == "scripted-model"
    assert "link to a claim that does not exist" in source_meta["extraction_notes"]
    assert "key_facts" not in source_meta
    assert source_body.endswith(
        "## Key Facts\n- Current systems collect 10^3-10^4 samples\n- 10^7-10^8 samples are needed"
    )
    assert source_meta["tags"][0] == "alignment-trilemma"  # other keys kept
    assert source_body.startswith("## Content")

    enriched_text = (kb / enriched).read_text()
    block = enriched_text.index("### Additional Evidence (extend)")
    assert f"*Source: [[{SOURCE[:-3]}]] | Added: {today} | Extractor: scripted-model*" in enriched_text
    assert block < enriched_text.index("Relevant Notes:")
    diff = git(kb, "diff", "HEAD~1", "HEAD", "--", enriched)
    assert all(not line.startswith("-") or line.startswith("---") for line in diff.splitlines())


def test_already_processed_is_refused_and_force_replaces_the_drafts(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_llm.push(answer(GOOD))
    assert main(["extract", str(kb / SOURCE_REL)]) == 0
    first = git(kb, "rev-parse", "HEAD").strip()

    assert main(["extract", str(kb / SOURCE_REL)]) == 1
    assert "already processed; use --force" in capsys.readouterr().err
    assert git(kb, "rev-parse", "HEAD").strip() == first

    second = json.loads(json.dumps(GOOD))
    second["claims"] = [claim("The RLHF trilemma mirrors the CAP theorem for distributed systems", [])]
    fake_llm.push(answer(second))
    assert main(["extract", str(kb / SOURCE_REL), "--force"]) == 0
    files = sorted(p.name for p in (kb / "domains" / "ai-alignment").glob("*rlhf*"))
    assert files == ["the-rlhf-trilemma-mirrors-the-cap-theorem-for-distributed-systems.md"]
    enriched = (kb / f"foundations/collective-intelligence/{RLHF}.md").read_text()
    assert enriched.count(f"[[{SOURCE[:-3]}]]") == 1
    meta, _ = split_document((kb / SOURCE_REL).read_text())
    assert meta["claims_extracted"] == ["The RLHF trilemma mirrors the CAP theorem for distributed systems"]
    assert (kb / SOURCE_REL).read_text().count("claims_extracted") == 1
    assert (kb / SOURCE_REL).read_text().count("## Key Facts") == 1
    assert git(kb, "rev-list", "--count", f"{first}..HEAD").strip() == "1"
    assert status(kb) == ""


def test_failed_source_leaves_no_trace(kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]) -> None:
    head = git(kb, "rev-parse", "HEAD").strip()
    fake_llm.push(completion("not json"), completion("{}"), completion("[]"))
    assert main(["extract", str(kb / SOURCE_REL)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith(f"extractor: {SOURCE_REL}: LLM failed: invalid:")
    assert len(fake_llm.requests) == 3
    assert git(kb, "rev-parse", "HEAD").strip() == head
    assert status(kb) == ""


def test_a_commit_failure_puts_every_file_back(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    head = git(kb, "rev-parse", "HEAD").strip()
    lock = kb / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text("held by someone else\n")
    fake_llm.push(answer(GOOD))
    assert main(["extract", str(kb / SOURCE_REL)]) == 1
    assert "git update-ref failed" in capsys.readouterr().err
    lock.unlink()
    assert git(kb, "rev-parse", "HEAD").strip() == head
    assert status(kb) == ""
    assert not (
        kb
        / "domains"
        / "ai-alignment"
        / "no-rlhf-system-can-be-representative-tractable-and-robust-at-the-same-time.md"
    ).exists()


def test_dry_run_prints_drafts_and_writes_nothing(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_llm.push(answer(GOOD))
    assert main(["extract", str(kb / SOURCE_REL), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"# {TITLE_1}" in out and "Pentagon-Agent: Theseus <HEADLESS>" in out
    assert status(kb) == ""
    assert git(kb, "log", "-1", "--format=%s").strip() == "add source"


def test_null_result_records_the_reason(kb: Path, fake_llm: FakeOpenAI) -> None:
    empty = {**GOOD, "claims": [], "enrichments": [], "null_result_reason": "Only restates known claims."}
    fake_llm.push(answer(empty))
    assert main(["extract", str(kb / SOURCE_REL)]) == 0
    meta, _ = split_document((kb / SOURCE_REL).read_text())
    assert meta["status"] == "null-result"
    assert meta["notes"] == "Only restates known claims."
    assert meta["claims_extracted"] == []
    assert changed_in_head(kb) == {SOURCE_REL: "M"}


def test_the_model_cannot_set_provenance(kb: Path, fake_llm: FakeOpenAI) -> None:
    sneaky = {**GOOD, "processed_by": "admin", "processed_date": "1999-01-01"}
    fake_llm.push(answer(sneaky), answer(GOOD))
    assert main(["extract", str(kb / SOURCE_REL)]) == 0
    assert "processed_by" in fake_llm.requests[1]["messages"][-1]["content"]  # re-asked
    meta, _ = split_document((kb / SOURCE_REL).read_text())
    assert meta["processed_by"] == "theseus"
    assert meta["processed_date"] == datetime.date.today().isoformat()


def test_console_script_exit_status_and_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.md"
    result = subprocess.run(
        [sys.executable, "-m", "extractor", "extract", str(missing)], capture_output=True, text=True
    )
    assert result.returncode == 2  # a path that names nothing is a usage error
    assert result.stderr.strip() == f"extractor: {missing}: no such file"


def test_force_with_the_same_title_rewrites_the_draft_in_place(kb: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.push(answer(GOOD))
    assert main(["extract", str(kb / SOURCE_REL)]) == 0
    again = json.loads(json.dumps(GOOD))
    again["claims"][0]["description"] = "A second, better description of the trilemma."
    fake_llm.push(answer(again))
    assert main(["extract", str(kb / SOURCE_REL), "--force"]) == 0
    drafts = sorted(p.name for p in (kb / "domains" / "ai-alignment").glob("no-rlhf-system*"))
    assert drafts == ["no-rlhf-system-can-be-representative-tractable-and-robust-at-the-same-time.md"]
    meta, _ = split_document((kb / "domains" / "ai-alignment" / drafts[0]).read_text())
    assert meta["description"] == "A second, better description of the trilemma."
    source_meta, _ = split_document((kb / SOURCE_REL).read_text())
    assert source_meta["claims_extracted"] == [TITLE_1, TITLE_2]
    assert "already in the KB" not in source_meta["extraction_notes"]


def test_a_failing_claim_is_reasked_once_then_dropped_alone(kb: Path, fake_llm: FakeOpenAI) -> None:
    invented = json.loads(json.dumps(GOOD))
    invented["claims"][1]["evidence"] = ["RLHF loses 37% of minority preferences"]  # not in the source
    fake_llm.push(answer(invented), answer(invented))
    assert main(["extract", str(kb / SOURCE_REL)]) == 0
    feedback = fake_llm.requests[1]["messages"][-1]["content"]
    assert TITLE_2[:80] in feedback and "the figure 37% is not in the source" in feedback
    assert TITLE_1[:80] not in feedback  # only the failing claim is asked about
    assert len(fake_llm.requests) == 2  # one re-ask for the gates, no more
    meta, _ = split_document((kb / SOURCE_REL).read_text())
    assert meta["claims_extracted"] == [TITLE_1]
    reason = "grounding: no evidence item is grounded: the figure 37% is not in the source"
    assert f'dropped claim "{TITLE_2}" ({reason})' in meta["extraction_notes"]


def test_a_fixed_claim_survives_the_gate_reask(kb: Path, fake_llm: FakeOpenAI) -> None:
    invented = json.loads(json.dumps(GOOD))
    invented["claims"][1]["evidence"] = ["RLHF loses 37% of minority preferences"]
    fake_llm.push(answer(invented), answer(GOOD))
    assert main(["extract", str(kb / SOURCE_REL)]) == 0
    meta, _ = split_document((kb / SOURCE_REL).read_text())
    assert meta["claims_extracted"] == [TITLE_1, TITLE_2]


def test_every_claim_dropped_is_a_null_result_with_the_reasons(kb: Path, fake_llm: FakeOpenAI) -> None:
    topics = json.loads(json.dumps(GOOD))
    topics["enrichments"] = []
    for draft in topics["claims"]:
        draft["title"] = "The economics of preference learning at global scale"
    fake_llm.push(answer(topics), answer(topics))
    assert main(["extract", str(kb / SOURCE_REL)]) == 0
    meta, _ = split_document((kb / SOURCE_REL).read_text())
    assert meta["status"] == "null-result"
    assert meta["notes"].startswith("No claim passed the checks: dropped claim")
    assert "the title has no verb" in meta["notes"]
    assert changed_in_head(kb) == {SOURCE_REL: "M"}


def test_force_never_deletes_claims_the_source_merely_lists(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source marked processed whose claims_extracted names other people's claims: --force keeps them."""
    source = kb / SOURCE_REL
    listed = sorted((kb / "domains" / "ai-alignment").glob("*.md"))[:2]
    titles = [p.stem for p in listed]
    text = source.read_text(encoding="utf-8").replace("status: unprocessed", "status: processed", 1)
    source.write_text(text.replace("---\n", f"---\nclaims_extracted: {json.dumps(titles)}\n", 1), encoding="utf-8")
    commit_all(kb, "a source that lists claims it did not write")
    before = {p: p.read_bytes() for p in listed}
    fake_llm.push(answer(GOOD))
    assert main(["extract", str(source), "--force"]) == 0
    assert {p: p.read_bytes() for p in listed} == before
    out = capsys.readouterr().out
    assert all(f"kept domains/ai-alignment/{p.name}: no extraction of this source added it" in out for p in listed)
    assert not set(changed_in_head(kb).values()) & {"D"}
