"""``null_results = "commit"``: in branch mode a source with nothing to extract is committed straight onto main,
through the same safe path as main mode and ``review reject``; only sources with drafts wait on a branch.

Real git repositories, the scripted endpoint, the real ``run --once``; a person's work tree, index and branch
are checked before and after.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from extractor.cli.main import main
from extractor.commit.message import parse_message, trailers
from extractor.kb.locks import kb_lock
from extractor.kb.yamlio import split_document
from extractor.store.state import SourceState, StateStore
from tests.conftest import git
from tests.drafts import NULL, source_file
from tests.fakeopenai import FakeOpenAI, Reply, answer
from tests.kbfactory import make_inbox_kb
from tests.test_shared_kb import (
    CLAIM,
    EXTRACTOR_EMAIL,
    SLUG_A,
    SLUG_B,
    SOURCE_A,
    SOURCE_B,
    append_line,
    claim_answer,
    cli_env,
    make_kb,
    wait_for_lock_waiters,
)

CLAIM_BRANCH = f"extract/{SLUG_A}"  # source A yields a claim
NULL_BRANCH = f"extract/{SLUG_B}"  # source B yields nothing
NOTES = "notes/mine.md"
REASON = "The study only restates the disagreement between annotators that the knowledge base already holds."


def by_source(request: dict) -> Reply:
    nothing = {**NULL, "null_result_reason": REASON}
    return answer(claim_answer() if source_file(request).endswith(f"{SLUG_A}.md") else nothing)


@pytest.fixture
def endpoint(fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    fake_llm.responder = by_source
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-null-results")
    monkeypatch.setenv("EXTRACTOR_RETRY_INITIAL_WAIT", "0.01")
    return fake_llm


@pytest.fixture
def kb(tmp_path: Path, endpoint: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Branch mode, null results committed to main (the setting from the environment, so the tree stays clean)."""
    monkeypatch.setenv("EXTRACTOR_NULL_RESULTS", "commit")
    return make_kb(tmp_path / "kb", "branch")


def run_once(kb: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    main(["run", "--once", "--kb", str(kb)])
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def branches(kb: Path) -> list[str]:
    return git(kb, "for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads/extract/").split()


def frontmatter_at(kb: Path, rev: str, path: str) -> dict:
    return split_document(git(kb, "show", f"{rev}:{path}"))[0]


def new_commits(kb: Path, since: str, rev: str = "main") -> list[str]:
    return git(kb, "rev-list", f"{since}..{rev}").split()


def person_state(kb: Path) -> tuple[str, str, str, str]:
    """What a person has in hand: the branch, its commit, the index (staged) and the work tree's changes."""
    return (
        git(kb, "symbolic-ref", "-q", "HEAD").strip(),
        git(kb, "rev-parse", "HEAD").strip(),
        git(kb, "diff", "--cached", "--name-status"),
        git(kb, "diff"),
    )


def stage_a_note(kb: Path) -> None:
    (kb / NOTES).parent.mkdir(exist_ok=True)
    (kb / NOTES).write_text("A note I have staged, not committed.\n", encoding="utf-8")
    git(kb, "add", NOTES)


def assert_null_result_commit(kb: Path, commit: str) -> None:
    """The commit an extraction branch would hold for source B: its status, reason, trailers and author."""
    assert git(kb, "log", "-1", "--format=%an <%ae>", commit).strip() == f"extractor <{EXTRACTOR_EMAIL}>"
    assert git(kb, "show", "--name-only", "--format=", commit).split() == [SOURCE_B]
    meta = frontmatter_at(kb, commit, SOURCE_B)
    assert meta["status"] == "null-result" and meta["notes"] == REASON
    assert meta["processed_by"] == "theseus" and meta["claims_extracted"] == []
    message = git(kb, "log", "-1", "--format=%B", commit)
    info = parse_message(message, "Pentagon-Agent")
    assert info is not None and info.source == SOURCE_B and info.agent == "theseus"
    assert info.runner == "headless extraction cron" and info.model == "scripted-model" and info.prompt_hash
    # The same trailers as the extraction commit on the claim's branch.
    claim_commit = git(kb, "rev-parse", CLAIM_BRANCH).strip()
    assert set(trailers(message)) == set(trailers(git(kb, "log", "-1", "--format=%B", claim_commit)))
    assert trailers(message)["Pentagon-Agent"]


def test_a_null_result_goes_onto_main_and_only_the_claim_waits_on_a_branch(
    kb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On main, with a line of their own in a claim and a note staged: the person keeps both, uncommitted."""
    start = git(kb, "rev-parse", "main").strip()
    append_line(kb / CLAIM, "MY UNCOMMITTED LINE")
    stage_a_note(kb)
    before = person_state(kb)

    lines = run_once(kb, capsys)

    assert lines[-1]["summary"] == "cycle: 2 source(s), 2 done, 0 failed", lines[-1]
    assert branches(kb) == [CLAIM_BRANCH]
    [commit] = new_commits(kb, start)
    assert_null_result_commit(kb, commit)
    assert git(kb, "rev-parse", f"{CLAIM_BRANCH}~1").strip() == start
    # The person: same branch, their staged note still staged and uncommitted, their line still unstaged.
    branch, head, staged, unstaged = person_state(kb)
    assert (branch, staged, unstaged) == (before[0], before[2], before[3]) and head == commit
    assert "MY UNCOMMITTED LINE" in (kb / CLAIM).read_text(encoding="utf-8")
    assert git(kb, "status", "--porcelain", "--", SOURCE_B) == ""  # the work tree holds main's new copy
    assert split_document((kb / SOURCE_B).read_text(encoding="utf-8"))[0]["status"] == "null-result"
    store = StateStore.open(kb)
    try:
        row_b, row_a = store.get(SOURCE_B), store.get(SOURCE_A)
        assert row_b is not None and row_b.state is SourceState.DONE and row_b.commit_sha == commit
        assert row_b.branch is None
        assert row_a is not None and row_a.state is SourceState.AWAITING_REVIEW and row_a.branch == CLAIM_BRANCH
    finally:
        store.close()

    # Nothing is due again, and the review queue holds the claim alone.
    assert run_once(kb, capsys)[-1]["summary"].startswith("cycle: 0 source(s)")
    assert main(["review", "--kb", str(kb), "list", "--json"]) == 0
    assert [item["source"] for item in json.loads(capsys.readouterr().out)] == [SOURCE_A]


def test_a_person_on_another_branch_is_not_touched(kb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On a branch of their own, with the null source itself edited and not committed, and a note staged."""
    start = git(kb, "rev-parse", "main").strip()
    git(kb, "switch", "-qc", "my-work")
    append_line(kb / CLAIM, "COMMITTED ON MY BRANCH")
    git(kb, "commit", "-qam", "my work")
    append_line(kb / SOURCE_B, "MY NOTES ON THE SOURCE")
    stage_a_note(kb)
    before = person_state(kb)
    text_before = (kb / SOURCE_B).read_text(encoding="utf-8")

    lines = run_once(kb, capsys)

    assert lines[-1]["summary"] == "cycle: 2 source(s), 2 done, 0 failed", lines[-1]
    assert person_state(kb) == before
    assert (kb / SOURCE_B).read_text(encoding="utf-8") == text_before
    assert branches(kb) == [CLAIM_BRANCH]
    [commit] = new_commits(kb, start)
    assert_null_result_commit(kb, commit)
    assert "MY NOTES ON THE SOURCE" not in git(kb, "show", f"main:{SOURCE_B}")
    assert run_once(kb, capsys)[-1]["summary"].startswith("cycle: 0 source(s)")


def test_review_keeps_null_results_on_their_own_branch(
    kb: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default: every extraction, null or not, waits for review; main does not move."""
    monkeypatch.setenv("EXTRACTOR_NULL_RESULTS", "review")
    start = git(kb, "rev-parse", "main").strip()
    lines = run_once(kb, capsys)
    assert lines[-1]["summary"] == "cycle: 2 source(s), 2 done, 0 failed", lines[-1]
    assert git(kb, "rev-parse", "main").strip() == start
    assert branches(kb) == [CLAIM_BRANCH, NULL_BRANCH]
    assert frontmatter_at(kb, NULL_BRANCH, SOURCE_B)["status"] == "null-result"


def test_main_mode_is_not_changed_by_the_setting(
    kb: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTRACTOR_COMMIT_MODE", "main")
    start = git(kb, "rev-parse", "main").strip()
    assert run_once(kb, capsys)[-1]["summary"] == "cycle: 2 source(s), 2 done, 0 failed"
    assert branches(kb) == [] and len(new_commits(kb, start)) == 2


def test_an_uncommitted_edit_of_the_null_source_on_main_sends_it_to_review(
    kb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Main cannot take the commit without the person's edit: the null result waits on a branch, and says why."""
    start = git(kb, "rev-parse", "main").strip()
    append_line(kb / SOURCE_B, "MY NOTES ON THE SOURCE")
    before = person_state(kb)

    lines = run_once(kb, capsys)

    assert lines[-1]["summary"] == "cycle: 2 source(s), 2 done, 0 failed", lines[-1]
    assert person_state(kb) == before and git(kb, "rev-parse", "main").strip() == start
    assert branches(kb) == [CLAIM_BRANCH, NULL_BRANCH]
    [why] = [line for line in lines if line["message"] == "null result sent to review"]
    assert why["source"] == SOURCE_B and f"{SOURCE_B} has uncommitted changes" in why["why"], why


def test_main_checked_out_in_another_work_tree_is_not_moved(
    kb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Moving main under another work tree would leave its index behind, to undo the commit with the next
    ``git commit`` there: the null result waits on a branch instead."""
    start = git(kb, "rev-parse", "main").strip()
    git(kb, "switch", "-qc", "my-work")
    other = tmp_path / "main-tree"
    git(kb, "worktree", "add", "-q", str(other), "main")

    lines = run_once(kb, capsys)

    assert git(kb, "rev-parse", "main").strip() == start and git(other, "status", "--porcelain") == ""
    assert branches(kb) == [CLAIM_BRANCH, NULL_BRANCH]
    [why] = [line for line in lines if line["message"] == "null result sent to review"]
    assert "main is checked out in another work tree" in why["why"], why


def test_main_being_rebased_is_not_moved(kb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A person stopped in the middle of rebasing main (``git pull --rebase`` with a conflict, ``rebase -i``):
    moving main now would make their rebase fail at its end. The null result waits on a branch instead."""
    append_line(kb / CLAIM, "MY COMMIT BEING REBASED")
    git(kb, "commit", "-qam", "my commit")
    start = git(kb, "rev-parse", "main").strip()
    git(kb, "-c", "sequence.editor=sed -i 1s/^pick/edit/", "rebase", "-q", "-i", "HEAD~1")
    assert (kb / ".git" / "rebase-merge").is_dir()

    lines = run_once(kb, capsys)

    assert git(kb, "rev-parse", "main").strip() == start and (kb / ".git" / "rebase-merge").is_dir()
    assert branches(kb) == [CLAIM_BRANCH, NULL_BRANCH]
    [why] = [line for line in lines if line["message"] == "null result sent to review"]
    assert "main is being rebased" in why["why"], why
    git(kb, "rebase", "--continue")
    assert git(kb, "symbolic-ref", "HEAD").strip() == "refs/heads/main"


STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture
def cleanup() -> Iterator[None]:
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_a_person_commits_to_main_while_the_cycle_commits_a_null_result(
    kb: Path, endpoint: FakeOpenAI, cleanup: None
) -> None:
    """Two processes: the cycle has its drafts and waits for the write lock while a person commits on main, with
    another file staged and a line unstaged. The null result lands on the person's commit; nothing of theirs is
    lost, committed by the agent, or undone."""
    start = git(kb, "rev-parse", "main").strip()
    held = contextlib.ExitStack()
    taken: list[bool] = []

    def hold_the_lock_then_answer(request: dict) -> Reply:
        # The cycle took and released the write lock for its recovery before asking: from now on, its writes wait.
        # (The scripted server calls this one request at a time.)
        if not taken:
            held.enter_context(kb_lock(kb, "write"))
            taken.append(True)
        return by_source(request)

    endpoint.responder = hold_the_lock_then_answer
    with held:
        cycle = subprocess.Popen(
            [sys.executable, "-m", "extractor", "run", "--once", "--kb", str(kb), "--workers", "2"],
            cwd=kb, env=cli_env(endpoint), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        STARTED.append(cycle)
        wait_for_lock_waiters(endpoint, [cycle, cycle])  # both sources answered, their writes waiting
        append_line(kb / CLAIM, "COMMITTED BY A PERSON")
        git(kb, "commit", "-qam", "a person's commit")
        person_commit = git(kb, "rev-parse", "HEAD").strip()
        stage_a_note(kb)
        append_line(kb / CLAIM, "NOT COMMITTED")
        before = person_state(kb)
    out, err = cycle.communicate(timeout=120)
    assert cycle.returncode == 0, err
    assert "cycle: 2 source(s), 2 done, 0 failed" in out, out

    [commit, mine] = new_commits(kb, start)
    assert mine == person_commit and git(kb, "rev-parse", f"{commit}~1").strip() == person_commit
    assert_null_result_commit(kb, commit)
    branch, head, staged, unstaged = person_state(kb)
    assert (branch, staged, unstaged) == (before[0], before[2], before[3]) and head == commit
    assert "COMMITTED BY A PERSON" in git(kb, "show", f"main:{CLAIM}")
    assert "NOT COMMITTED" not in git(kb, "show", f"main:{CLAIM}")
    assert branches(kb) == [CLAIM_BRANCH]
    assert git(kb, "rev-parse", f"{CLAIM_BRANCH}~1").strip() in (person_commit, commit)


@pytest.mark.parametrize("who", ["a person committing on main", "fetches into main while the person is elsewhere"])
def test_main_moving_all_the_time_loses_neither_its_commits_nor_the_null_results(
    tmp_path: Path, endpoint: FakeOpenAI, cleanup: None, who: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes racing for main: while a cycle commits ten null results, main moves as fast as git allows
    (a person's ``git commit`` in a loop on a checked-out main, or compare-and-swap updates as a fetch makes).
    Every update git accepted stays on main, every null result lands there too, none is sent to review."""
    monkeypatch.setenv("EXTRACTOR_NULL_RESULTS", "commit")
    kb = make_inbox_kb(tmp_path / "kb", 10, settings='commit_mode = "branch"\nmodel = "m"\nmax_per_cycle = 50\n')
    git(kb, "config", "user.name", "Test User")
    git(kb, "config", "user.email", "test@example.com")
    endpoint.responder = lambda request: answer({**NULL, "null_result_reason": REASON})
    on_main = who.startswith("a person")
    if not on_main:
        git(kb, "switch", "-qc", "my-work")
    cycle = subprocess.Popen(
        [sys.executable, "-m", "extractor", "run", "--once", "--kb", str(kb), "--workers", "2"],
        cwd=kb, env=cli_env(endpoint), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    STARTED.append(cycle)
    accepted: list[str] = []
    while cycle.poll() is None:
        subject = f"update {len(accepted)}"
        if on_main:
            if (kb / NOTES).is_file():
                append_line(kb / NOTES, subject)
            else:
                stage_a_note(kb)
            done = subprocess.run(["git", "commit", "-qam", subject], cwd=kb, capture_output=True)
        else:
            tip = git(kb, "rev-parse", "main").strip()
            new = git(kb, "commit-tree", f"{tip}^{{tree}}", "-p", tip, "-m", subject).strip()
            done = subprocess.run(["git", "update-ref", "refs/heads/main", new, tip], cwd=kb, capture_output=True)
        if done.returncode == 0:  # else main moved under this update: git refused it, as it should
            accepted.append(subject)
        time.sleep(0.005)  # as fast as people and fetches could ever go, and then some; the cycle gets a core too
    out, err = cycle.communicate(timeout=120)
    assert cycle.returncode == 0 and "cycle: 10 source(s), 10 done, 0 failed" in out, err or out

    assert len(accepted) > 10, "main hardly moved: the race was not run"
    assert set(accepted) <= set(git(kb, "log", "--format=%s", "main").splitlines())
    sources = git(kb, "ls-tree", "--name-only", "main", "inbox/archive/").split()
    assert len(sources) == 10
    assert [frontmatter_at(kb, "main", path)["status"] for path in sources] == ["null-result"] * 10, out
    assert branches(kb) == [] and "null result sent to review" not in out
    assert git(kb, "status", "--porcelain", "--untracked-files=no") == ""
