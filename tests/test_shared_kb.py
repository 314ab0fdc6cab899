"""People and the pipeline work in the same KB: nothing a person saves, commits or leaves unfinished may be lost.

Every test drives the real ``extractor`` CLI in subprocesses against real git repositories and the scripted
endpoint. Where an extraction must wait for the KB's write lock, the test holds that lock itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from extractor.kb.locks import kb_lock
from tests.conftest import git
from tests.drafts import NULL, source_file
from tests.fakeopenai import FakeOpenAI, Reply, answer

TARGET_TITLE = "Preference-based training compresses diverse human values into a single reward signal"
TARGET_STEM = "preference-based-training-compresses-diverse-human-values-into-a-single-reward-signal"
CLAIM = f"claims/ai-alignment/{TARGET_STEM}.md"
CLAIM_TEXT = f"""---
type: claim
domain: ai-alignment
description: Reward models trained on pairwise preferences learn one scalar score, so disagreement is averaged away.
confidence: likely
source: "Test fixture"
created: 2026-01-01
---

# {TARGET_TITLE}

Reinforcement learning from human feedback fits one reward model to comparisons made by many annotators.

## Evidence

- The standard pipeline trains one reward model from pooled pairwise comparisons.

---

Relevant Notes:
- [[_map]]

Topics:
- [[_map]]
"""

SLUG_A = "2026-01-10-plural-preferences"
SLUG_B = "2026-01-11-annotator-disagreement"
SOURCE_A = f"inbox/archive/{SLUG_A}.md"
SOURCE_B = f"inbox/archive/{SLUG_B}.md"
EVIDENCE_A = "Annotators from different communities rank the same answers in opposite orders."
EVIDENCE_B = "Averaging the rankings of two opposed groups produces a score that neither group endorses."
SOURCE_TEXTS = {
    SOURCE_A: f"""---
type: source
title: "Plural preferences in reward modelling"
author: "A. Author"
date: 2026-01-10
domain: ai-alignment
format: paper
status: unprocessed
---

## Content

Reward models trained on pooled pairwise comparisons flatten the disagreement between annotators.
{EVIDENCE_A} The paper argues that one scalar score hides that disagreement from the policy being trained.
It builds on [[{TARGET_STEM}]].
""",
    SOURCE_B: f"""---
type: source
title: "Annotator disagreement in preference data"
author: "B. Author"
date: 2026-01-11
domain: ai-alignment
format: paper
status: unprocessed
---

## Content

The study collects preference rankings from two groups of annotators with opposed views.
{EVIDENCE_B} The authors conclude that disagreement should be modelled rather than averaged.
It builds on [[{TARGET_STEM}]].
""",
}

NEW_CLAIM_TITLE = "Reward models trained on pooled pairwise comparisons flatten the disagreement between annotators"
NEW_CLAIM = f"claims/ai-alignment/{NEW_CLAIM_TITLE.lower().replace(' ', '-')}.md"

EXTRACTOR_EMAIL = "extractor@localhost"  # the default author of extraction commits
WAIT = 30.0  # seconds any polled condition may take before the test gives up


def enrichment_answer(evidence: str) -> dict:
    return {
        **NULL,
        "enrichments": [{"target": TARGET_TITLE, "evidence": evidence, "kind": "extend"}],
        "null_result_reason": None,
        "notes": "One enrichment.",
    }


def claim_answer(evidence: str = EVIDENCE_A) -> dict:
    claim = {
        "evidence": [evidence],
        "argument": "One scalar score hides the disagreement from the policy being trained.",
        "limitations": ["One paper."],
        "title": NEW_CLAIM_TITLE,
        "description": EVIDENCE_A,
        "confidence": "experimental",
        "secondary_domains": [],
        "related": [],
    }
    return {**NULL, "claims": [claim], "null_result_reason": None, "notes": "One claim."}


def enrich_by_source(request: dict) -> Reply:
    """Each source's answer enriches the same existing claim with a sentence of its own."""
    evidence = EVIDENCE_A if source_file(request).endswith(f"{SLUG_A}.md") else EVIDENCE_B
    return answer(enrichment_answer(evidence))


def make_kb(root: Path, commit_mode: str) -> Path:
    """A git KB with one claim both sources link to and two unprocessed sources, all committed on main."""
    (root / "claims" / "ai-alignment").mkdir(parents=True)
    (root / CLAIM).write_text(CLAIM_TEXT, encoding="utf-8")
    (root / "claims" / "ai-alignment" / "_map.md").write_text("# AI alignment\n", encoding="utf-8")
    (root / "inbox" / "archive").mkdir(parents=True)
    for path, text in SOURCE_TEXTS.items():
        (root / path).write_text(text, encoding="utf-8")
    (root / "extractor.toml").write_text(
        f'commit_mode = "{commit_mode}"\nmodel = "scripted-model"\ntimeout = 5\nmax_attempts = 1\n',
        encoding="utf-8",
    )
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test User")
    git(root, "config", "user.email", "test@example.com")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    return root


def cli_env(server: FakeOpenAI) -> dict[str, str]:
    return {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-shared-kb"}


def extractor(kb: Path, server: FakeOpenAI, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extractor", *args],
        cwd=kb,
        env=cli_env(server),
        capture_output=True,
        text=True,
        timeout=120,
    )


STARTED: list[subprocess.Popen[str]] = []  # extractions started in the background, ended after each test


def start_extract(kb: Path, server: FakeOpenAI, source: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "extractor", "extract", str(kb / source)],
        cwd=kb,
        env=cli_env(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    STARTED.append(process)
    return process


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait for a started extraction; its exit status and stderr."""
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def wait_for_answers(server: FakeOpenAI, processes: list[subprocess.Popen[str]]) -> None:
    """Every process has sent its request and had its answer, and none has ended."""

    def answered() -> bool:
        for process in processes:
            assert process.poll() is None, f"an extraction ended before the lock was released: {process.communicate()}"
        return len(server.requests) >= len(processes) and server.in_flight == 0

    wait_until(answered, "every answer was sent")


def wait_for_lock_waiters(server: FakeOpenAI, processes: list[subprocess.Popen[str]]) -> None:
    """Every process has had its answer, planned its writes, and now waits for the write lock the test holds."""
    wait_for_answers(server, processes)
    time.sleep(1.0)  # planning takes milliseconds; the lock wait is not observable from outside
    for process in processes:
        assert process.poll() is None, f"the extraction did not wait for the write lock: {process.communicate()}"


def append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"\n{line}\n")


def extraction_commits(kb: Path) -> list[str]:
    return git(kb, "log", "--all", f"--author={EXTRACTOR_EMAIL}", "--format=%H").split()


def committed_text(kb: Path, commit: str, path: str) -> str:
    found = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=kb, capture_output=True, text=True)
    return found.stdout if found.returncode == 0 else ""


def assert_refused_for_uncommitted(code: int, err: str, path: str) -> None:
    """The documented refusal: exit 1, one line naming the file with the person's changes, no traceback."""
    assert code == 1, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert f"{path} has uncommitted changes; commit or stash them" in err, err


def source_status(kb: Path, source: str) -> str:
    return next(line for line in (kb / source).read_text(encoding="utf-8").splitlines() if line.startswith("status:"))


@pytest.fixture
def scripted(fake_llm: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake_llm.responder = enrich_by_source
    yield fake_llm
    while STARTED:  # a test that failed early leaves no extraction running
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
        process.communicate()


def extract_while_a_person_edits(kb: Path, server: FakeOpenAI, commit: bool) -> tuple[int, str]:
    """Extract source A while the test holds the write lock; meanwhile a person appends a line to the claim the
    answer enriches (and commits it, if ``commit``). The extraction's exit status and stderr."""
    with kb_lock(kb, "write"):
        process = start_extract(kb, server, SOURCE_A)
        wait_for_lock_waiters(server, [process])
        append_line(kb / CLAIM, "USER EDIT")
        if commit:
            git(kb, "add", CLAIM)
            git(kb, "commit", "-qm", "a person's edit")
    return finish(process)


def test_a_saved_edit_made_while_the_extraction_waits_for_the_lock_survives(
    tmp_path: Path, scripted: FakeOpenAI
) -> None:
    """A person saves a line in a claim while an extraction that enriches it waits: the line must not vanish."""
    kb = make_kb(tmp_path / "kb", "main")
    code, err = extract_while_a_person_edits(kb, scripted, commit=False)

    assert "USER EDIT" in (kb / CLAIM).read_text(encoding="utf-8"), f"the saved edit is gone (extract: {code} {err})"
    for commit in extraction_commits(kb):
        assert "USER EDIT" not in committed_text(kb, commit, CLAIM), f"{commit[:12]} committed the person's edit"
    assert_refused_for_uncommitted(code, err, CLAIM)
    assert source_status(kb, SOURCE_A) == "status: unprocessed" and not extraction_commits(kb)


def test_an_edit_committed_while_the_extraction_waits_for_the_lock_is_kept_in_head(
    tmp_path: Path, scripted: FakeOpenAI
) -> None:
    """A person commits a line in a claim while an extraction that enriches it waits: HEAD must keep both."""
    kb = make_kb(tmp_path / "kb", "main")
    code, err = extract_while_a_person_edits(kb, scripted, commit=True)

    in_head = git(kb, "show", f"HEAD:{CLAIM}")
    assert "USER EDIT" in in_head, f"HEAD lost the person's committed edit (extract: {code} {err})"
    assert "### Additional Evidence" in in_head and f"*Source: [[{SLUG_A}]]" in in_head, (code, err)
    assert code == 0, err


def test_two_extractions_enriching_one_claim_keep_both_blocks(tmp_path: Path, scripted: FakeOpenAI) -> None:
    """Two sources enrich the same claim at once: the second commit must not drop the first one's evidence."""
    kb = make_kb(tmp_path / "kb", "main")
    with kb_lock(kb, "write"):
        processes = [start_extract(kb, scripted, SOURCE_A), start_extract(kb, scripted, SOURCE_B)]
        wait_for_lock_waiters(scripted, processes)
    results = [finish(process) for process in processes]

    assert [code for code, _ in results] == [0, 0], results
    in_head = git(kb, "show", f"HEAD:{CLAIM}")
    missing = [slug for slug in (SLUG_A, SLUG_B) if f"*Source: [[{slug}]]" not in in_head]
    assert not missing, f"HEAD's claim lost the enrichment block of {missing}"
    assert in_head.count("### Additional Evidence") == 2


def test_uncommitted_work_is_not_committed_under_the_agents_name(tmp_path: Path, scripted: FakeOpenAI) -> None:
    """A person's unstaged line in a claim must neither be committed as the agent's work nor be lost."""
    kb = make_kb(tmp_path / "kb", "main")
    append_line(kb / CLAIM, "USER WIP")
    result = extractor(kb, scripted, "extract", str(kb / SOURCE_A))

    added = [line for line in git(kb, "log", "--all", "-p", "--format=%H").splitlines() if line == "+USER WIP"]
    assert not added, f"a commit added the person's uncommitted line (extract: {result.returncode} {result.stderr})"
    assert "USER WIP" in (kb / CLAIM).read_text(encoding="utf-8"), "the person's uncommitted line is gone"
    assert_refused_for_uncommitted(result.returncode, result.stderr, CLAIM)
    assert git(kb, "status", "--porcelain").split() == ["M", CLAIM]  # exactly the person's change, untouched

    # Staged counts too. Once the person commits, the same extraction goes through, from the response cache.
    git(kb, "add", CLAIM)
    staged = extractor(kb, scripted, "extract", str(kb / SOURCE_A))
    assert_refused_for_uncommitted(staged.returncode, staged.stderr, CLAIM)
    git(kb, "commit", "-qm", "my work in progress")
    requests = len(scripted.requests)
    again = extractor(kb, scripted, "extract", str(kb / SOURCE_A))
    assert again.returncode == 0, again.stderr
    assert len(scripted.requests) == requests  # the answer was cached: the refusal cost nothing
    in_head = git(kb, "show", f"HEAD:{CLAIM}")
    assert "USER WIP" in in_head and f"*Source: [[{SLUG_A}]]" in in_head
    assert git(kb, "log", "-1", "--format=%ae", "--", CLAIM).strip() == EXTRACTOR_EMAIL
    assert "+USER WIP" not in git(kb, "show", "HEAD")  # the agent's commit adds its block, not the person's line


def test_a_run_defers_a_source_whose_claim_has_uncommitted_work(tmp_path: Path, scripted: FakeOpenAI) -> None:
    """In a cycle, the source waits (failed, retried later, with the reason in status) and the rest goes on."""
    kb = make_kb(tmp_path / "kb", "main")
    (kb / "extractor.toml").write_text(
        (kb / "extractor.toml").read_text(encoding="utf-8") + "retry_base_seconds = 1\n", encoding="utf-8"
    )
    git(kb, "commit", "-qam", "settings")
    append_line(kb / CLAIM, "USER WIP")
    scripted.responder = lambda request: (
        answer(claim_answer()) if source_file(request).endswith(f"{SLUG_B}.md") else enrich_by_source(request)
    )
    ran = extractor(kb, scripted, "run", "--once")
    assert ran.returncode == 1, ran.stderr
    assert "USER WIP" in (kb / CLAIM).read_text(encoding="utf-8")
    assert "USER WIP" not in git(kb, "show", f"HEAD:{CLAIM}")
    assert source_status(kb, SOURCE_A) == "status: unprocessed"
    assert source_status(kb, SOURCE_B) != "status: unprocessed"  # the other source was not held up
    status = extractor(kb, scripted, "status").stdout
    assert "failed after 1 attempt(s), retried " in status, status
    assert f": {SOURCE_A}: {CLAIM} has uncommitted changes" in status, status

    git(kb, "commit", "-qam", "my work in progress")
    time.sleep(1.1)  # the retry time
    again = extractor(kb, scripted, "run", "--once")
    assert again.returncode == 0, again.stderr
    assert f"*Source: [[{SLUG_A}]]" in git(kb, "show", f"HEAD:{CLAIM}")


def test_review_reject_keeps_uncommitted_edits_to_the_source(tmp_path: Path, scripted: FakeOpenAI) -> None:
    """Rejecting an extraction must not wipe the notes a person is writing in the source, unsaved to git."""
    kb = make_kb(tmp_path / "kb", "branch")
    assert extractor(kb, scripted, "extract", str(kb / SOURCE_A)).returncode == 0
    branch = f"extract/{SLUG_A}"
    assert git(kb, "branch", "--list", branch).strip()
    assert git(kb, "branch", "--show-current").strip() == "main"
    append_line(kb / SOURCE_A, "MY NOTES ON THE SOURCE")

    result = extractor(kb, scripted, "review", "reject", SLUG_A, "--reason", "x")

    assert "MY NOTES ON THE SOURCE" in (kb / SOURCE_A).read_text(encoding="utf-8"), (
        f"review reject wiped the uncommitted edit (exit {result.returncode}: {result.stderr.strip()})"
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{SOURCE_A} has uncommitted changes" in result.stderr, result.stderr
    assert git(kb, "branch", "--list", branch).strip(), "a refused reject deleted the branch"

    # On another branch, the rejection is recorded on main without touching the work tree at all.
    git(kb, "stash", "-q")
    git(kb, "switch", "-qc", "my-work")
    append_line(kb / SOURCE_A, "MY NOTES ON THE SOURCE")
    result = extractor(kb, scripted, "review", "reject", SLUG_A, "--reason", "x")
    assert result.returncode == 0, result.stderr
    assert "MY NOTES ON THE SOURCE" in (kb / SOURCE_A).read_text(encoding="utf-8")
    assert "review: rejected" in git(kb, "show", f"main:{SOURCE_A}") and not git(kb, "branch", "--list", branch)


def test_review_accept_keeps_uncommitted_edits_to_the_source(tmp_path: Path, scripted: FakeOpenAI) -> None:
    """Accepting refuses while the files it would merge hold someone's uncommitted edits, and loses none."""
    kb = make_kb(tmp_path / "kb", "branch")
    assert extractor(kb, scripted, "extract", str(kb / SOURCE_A)).returncode == 0
    append_line(kb / SOURCE_A, "MY NOTES ON THE SOURCE")
    result = extractor(kb, scripted, "review", "accept", SLUG_A)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "MY NOTES ON THE SOURCE" in (kb / SOURCE_A).read_text(encoding="utf-8")
    assert git(kb, "branch", "--list", f"extract/{SLUG_A}").strip()


def test_provenance_names_the_commit_on_main_not_a_stale_remote_branch(tmp_path: Path, scripted: FakeOpenAI) -> None:
    """Provenance must name the reviewed commit that put the claim on main, not an older rejected draft on origin."""
    kb = make_kb(tmp_path / "kb", "branch")
    remote = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True, capture_output=True)
    git(kb, "remote", "add", "origin", str(remote))
    git(kb, "push", "-q", "origin", "main")
    scripted.responder = lambda request: answer(claim_answer())
    branch = f"extract/{SLUG_A}"

    # A first extraction is pushed for review, then rejected and its local branch deleted.
    first = extractor(kb, scripted, "extract", str(kb / SOURCE_A))
    assert first.returncode == 0, first.stderr
    stale = git(kb, "rev-parse", branch).strip()
    assert NEW_CLAIM in git(kb, "show", "--name-only", "--format=", stale).split()
    git(kb, "push", "-q", "origin", branch)
    retried = extractor(kb, scripted, "review", "reject", SLUG_A, "--retry")
    assert retried.returncode == 0, retried.stderr
    assert git(kb, "rev-parse", f"refs/remotes/origin/{branch}").strip() == stale
    assert not git(kb, "branch", "--list", branch).strip()

    # The second extraction of the same source (a later second, so a distinct commit) is accepted onto main.
    stale_time = int(git(kb, "log", "-1", "--format=%ct", stale))
    wait_until(lambda: time.time() >= stale_time + 1, "the clock passed the first extraction's second")
    second = extractor(kb, scripted, "extract", str(kb / SOURCE_A))
    assert second.returncode == 0, second.stderr
    accepted = extractor(kb, scripted, "review", "accept", SLUG_A)
    assert accepted.returncode == 0, accepted.stderr

    on_main = git(kb, "log", "main", "--diff-filter=A", "--format=%H", "--", NEW_CLAIM).split()
    assert len(on_main) == 1 and on_main[0] != stale
    assert subprocess.run(["git", "merge-base", "--is-ancestor", stale, "main"], cwd=kb).returncode == 1
    assert "- Source: " in git(kb, "log", "-1", "--format=%B", stale)  # both look like extraction commits

    result = extractor(kb, scripted, "provenance", NEW_CLAIM)
    assert result.returncode == 0, result.stderr
    commit_lines = [line for line in result.stdout.splitlines() if line.startswith("commit: ")]
    assert commit_lines == [f"commit: {on_main[0]}"], f"main's commit is {on_main[0]}, the stale one {stale}"
    assert "found_on: main" in result.stdout.splitlines()


def test_provenance_of_a_draft_awaiting_review_names_its_branch(tmp_path: Path, scripted: FakeOpenAI) -> None:
    """A claim only on its extraction branch is traced to that branch's commit, and says so."""
    kb = make_kb(tmp_path / "kb", "branch")
    scripted.responder = lambda request: answer(claim_answer())
    assert extractor(kb, scripted, "extract", str(kb / SOURCE_A)).returncode == 0
    branch = f"extract/{SLUG_A}"
    result = extractor(kb, scripted, "provenance", NEW_CLAIM, "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["commit"] == git(kb, "rev-parse", branch).strip()
    assert record["found_on"] == f"pending review on {branch}"
    assert (record["agent"], record["worker"], record["source"]) == ("Theseus <HEADLESS>", 1, SOURCE_A)

    # A KB whose agent trailer has another key reads it from the same setting it writes it with.
    (kb / "extractor.toml").write_text(
        (kb / "extractor.toml").read_text(encoding="utf-8") + 'agent_trailer_key = "Agent"\n', encoding="utf-8"
    )
    scripted.responder = lambda request: answer(claim_answer(EVIDENCE_B))
    assert extractor(kb, scripted, "extract", str(kb / SOURCE_B)).returncode == 0
    (claim_b,) = [p for p in git(kb, "show", "--name-only", "--format=", f"extract/{SLUG_B}").split() if "claims/" in p]
    assert "Agent: Theseus <HEADLESS>" in git(kb, "log", "-1", "--format=%B", f"extract/{SLUG_B}")
    record = json.loads(extractor(kb, scripted, "provenance", claim_b, "--json").stdout)
    assert record["agent"] == "Theseus <HEADLESS>"


def test_a_dry_run_says_what_the_real_run_would_refuse(tmp_path: Path, scripted: FakeOpenAI) -> None:
    """--dry-run on a claim with someone's uncommitted line must not print a plan that includes that line."""
    kb = make_kb(tmp_path / "kb", "main")
    append_line(kb / CLAIM, "USER WIP")
    result = extractor(kb, scripted, "extract", "--dry-run", str(kb / SOURCE_A))
    assert_refused_for_uncommitted(result.returncode, result.stderr, CLAIM)
    assert "USER WIP" not in result.stdout


def test_main_mode_refuses_a_detached_head_or_a_locked_index(tmp_path: Path, scripted: FakeOpenAI) -> None:
    """A commit onto a detached HEAD is orphaned by the next switch; one made while git's index is locked leaves
    the index behind HEAD, so the person's next commit would undo it. Both are refused, with nothing written."""
    kb = make_kb(tmp_path / "kb", "main")
    start = git(kb, "rev-parse", "HEAD").strip()
    git(kb, "switch", "-q", "--detach", "HEAD")
    detached = extractor(kb, scripted, "extract", str(kb / SOURCE_A))
    assert detached.returncode == 1 and detached.stderr.count("\n") == 1, detached.stderr
    assert "HEAD is detached" in detached.stderr and "(nothing was written)" in detached.stderr
    assert git(kb, "rev-parse", "HEAD").strip() == start and git(kb, "status", "--porcelain") == ""

    git(kb, "switch", "-q", "main")
    (kb / ".git" / "index.lock").write_text("")  # left by a git command that was killed
    locked = extractor(kb, scripted, "extract", str(kb / SOURCE_A))
    assert locked.returncode == 1 and "git's index is locked" in locked.stderr, locked.stderr
    assert git(kb, "rev-parse", "HEAD").strip() == start
    (kb / ".git" / "index.lock").unlink()
    assert git(kb, "status", "--porcelain") == ""
    assert extractor(kb, scripted, "extract", str(kb / SOURCE_A)).returncode == 0


def test_a_kb_inside_a_bigger_repository_is_refused(tmp_path: Path, scripted: FakeOpenAI) -> None:
    """Every path is relative to the KB root, so a --kb below the repository's top would commit files at the
    wrong paths: refused before anything is read or written."""
    outer = tmp_path / "outer"
    kb = make_kb(outer / "kb", "main")
    shutil.rmtree(kb / ".git")
    git(outer, "init", "-q", "-b", "main")
    git(outer, "add", "-A")
    git(outer, "-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qm", "initial")
    head = git(outer, "rev-parse", "HEAD").strip()
    for args in (["extract", "--kb", str(kb), str(kb / SOURCE_A)], ["run", "--once", "--kb", str(kb)]):
        result = extractor(outer, scripted, *args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "is not the top of a git work tree" in result.stderr, result.stderr
    assert git(outer, "rev-parse", "HEAD").strip() == head and git(outer, "status", "--porcelain") == ""
    assert not scripted.requests


def test_provenance_of_a_folder_is_refused(tmp_path: Path, scripted: FakeOpenAI) -> None:
    """A folder has no provenance of its own: naming one must not print some claim's record inside it."""
    kb = make_kb(tmp_path / "kb", "main")
    scripted.responder = lambda request: answer(claim_answer())
    assert extractor(kb, scripted, "extract", str(kb / SOURCE_A)).returncode == 0
    result = extractor(kb, scripted, "provenance", "claims/ai-alignment")
    assert result.returncode == 1 and "not a file" in result.stderr and not result.stdout, result


# --- entity notes: the same guarantees for the timelines extractions add to ----------------------------------------

ENTITY = "entities/ai-alignment/reward-modelling-consortium.md"
ENTITY_TEXT = """---
type: entity
entity_type: organization
name: "Reward Modelling Consortium"
domain: ai-alignment
status: active
tracked_by: theseus
created: 2026-01-01
---

# Reward Modelling Consortium

A group of labs that share preference data.

## Timeline

- **2025-06-01** — Founded by three labs
"""


def update_by_source(request: dict) -> Reply:
    """Each source adds one event, dated with its own date, to the same entity note."""
    ours = source_file(request).endswith(f"{SLUG_A}.md")
    event = {"date": "2026-01-10" if ours else "2026-01-11", "text": f"Cited by {'A' if ours else 'B'}. Author"}
    update = {"name": "Reward Modelling Consortium", "status": None, "timeline": [event]}
    return answer({**NULL, "entity_updates": [update], "null_result_reason": None, "notes": "One update."})


def make_entity_kb(root: Path) -> Path:
    kb = make_kb(root, "main")
    (kb / ENTITY).parent.mkdir(parents=True)
    (kb / ENTITY).write_text(ENTITY_TEXT, encoding="utf-8")
    git(kb, "add", ENTITY)
    git(kb, "commit", "-qm", "track the consortium")
    return kb


def test_an_entity_update_never_takes_a_persons_unsaved_edit(tmp_path: Path, scripted: FakeOpenAI) -> None:
    """A person saves a line in an entity note while an extraction that updates it waits for the lock."""
    scripted.responder = update_by_source
    kb = make_entity_kb(tmp_path / "kb")
    with kb_lock(kb, "write"):
        process = start_extract(kb, scripted, SOURCE_A)
        wait_for_lock_waiters(scripted, [process])
        append_line(kb / ENTITY, "USER EDIT")
    code, err = finish(process)

    assert (kb / ENTITY).read_text(encoding="utf-8") == ENTITY_TEXT + "\nUSER EDIT\n"
    assert_refused_for_uncommitted(code, err, ENTITY)
    assert not extraction_commits(kb)


def test_entity_updates_from_two_sources_at_once_keep_a_persons_bullet_and_both_events(
    tmp_path: Path, scripted: FakeOpenAI
) -> None:
    """Two extractions update one note at once while a person commits a bullet of their own: HEAD has all
    three bullets, in date order, and the person's commit keeps its author."""
    scripted.responder = update_by_source
    kb = make_entity_kb(tmp_path / "kb")
    mine = "- **2026-01-05** — Hand-written: joined by a fourth lab"
    with kb_lock(kb, "write"):
        processes = [start_extract(kb, scripted, SOURCE_A), start_extract(kb, scripted, SOURCE_B)]
        wait_for_lock_waiters(scripted, processes)
        text = (kb / ENTITY).read_text(encoding="utf-8")
        (kb / ENTITY).write_text(text.replace("three labs\n", f"three labs\n{mine}\n"), encoding="utf-8")
        git(kb, "commit", "-qam", "a person's bullet")
    results = [finish(process) for process in processes]

    assert [code for code, _ in results] == [0, 0], results
    in_head = git(kb, "show", f"HEAD:{ENTITY}")
    bullets = [line for line in in_head.splitlines() if line.startswith("- **")]
    assert bullets == [
        "- **2025-06-01** — Founded by three labs",
        mine,
        "- **2026-01-10** — Cited by A. Author",
        "- **2026-01-11** — Cited by B. Author",
    ], in_head
    assert git(kb, "log", "-1", "--format=%ae", "--grep=a person's bullet").strip() == "test@example.com"
