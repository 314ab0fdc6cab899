"""Crash trials: SIGKILL the running pipeline during an LLM call, a file write or the commit, then restart.

git runs through a wrapper on PATH that slows down the commands that write
(as a slow or busy disk would), so kills land inside commits, and commands
a killed run had started finish after it died, racing the restart.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from extractor.commit.apply import JOURNAL, Journal, recover_interrupted_write
from extractor.kb.gitrepo import Identity, build_commit, commit_paths
from extractor.kb.statedir import ensure_state_dir
from extractor.store.state import StateStore
from tests.conftest import git
from tests.drafts import grounded_answer, source_body
from tests.fakeopenai import FakeOpenAI, Reply, answer

SLOWED = ("read-tree", "update-index", "write-tree", "hash-object", "commit-tree", "update-ref", "reset")
SYLLABLES = ["ka", "lo", "mi", "ru", "ste", "van", "qui", "dor", "pel", "zan", "bre", "tho", "gul", "fen", "wix"]
SOURCES = 6


def slow_git(folder: Path, marks: Path, seconds: float) -> Path:
    """A ``git`` that marks each writing command while it runs and sleeps before it."""
    real = shutil.which("git")
    folder.mkdir()
    marks.mkdir()
    script = folder / "git"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  {'|'.join(SLOWED)})\n"
        f'    mark="{marks}/$$"; echo "$1" > "$mark"; sleep {seconds}\n'
        # With $STALL set, ref updates stall (a busy disk, a lock held elsewhere): long enough that a
        # restart after a kill reaches its recovery before the dead run's update lands.
        '    if [ "$1" = update-ref ] && [ -n "$STALL" ]; then\n'
        '      echo "update-ref stalled" > "$mark"; sleep "$STALL"\n'
        "    fi\n"
        f'    "{real}" "$@"; status=$?; rm -f "$mark"; exit $status;;\n'
        "esac\n"
        f'exec "{real}" "$@"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return folder


def word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(3))


def make_kb(root: Path, mode: str, rng: random.Random) -> Path:
    """A KB whose sources each say something the scripted model can turn into one distinct claim."""
    inbox = root / "inbox" / "archive"
    inbox.mkdir(parents=True)
    for number in range(SOURCES):
        first, second = (" ".join(word(rng) for _ in range(8)).capitalize() for _ in range(2))
        # Words of their own, so no two sources' claims look like near-duplicates to the gates.
        body = f"{first.replace(' ', ' shows ', 1)}.\n\n{second.replace(' ', ' was ', 1)}.\n"
        (inbox / f"2026-03-{number:02d}-trial-{number}.md").write_text(
            f"---\ntype: source\ntitle: Trial {number}\nauthor: A\ndate: 2026-03-00\ndomain: ai-alignment\n"
            f"status: unprocessed\n---\n\n{body}",
            encoding="utf-8",
        )
    (root / "claims").mkdir()
    (root / "extractor.toml").write_text(
        f'commit_mode = "{mode}"\nworkers = 2\nmax_per_cycle = 20\nretry_base_seconds = 0\n'
        "retry_initial_wait = 0.01\nretry_max_wait = 0.1\ntimeout = 20\n",
        encoding="utf-8",
    )
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "initial"]):
        git(root, "-c", "user.name=T", "-c", "user.email=t@example.com", *command)
    return root


def start_run(kb: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "extractor", "run", "--once", "--kb", str(kb)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def commits_per_source(kb: Path, rev: str = "--all") -> Counter[str]:
    return Counter(re.findall(r"^- Source: (\S+)$", git(kb, "log", rev, "--format=%B"), re.M))


def read_mark(mark: Path) -> str:
    """The git command a mark names; empty when it is gone (the command finished while we looked)."""
    try:
        return mark.read_text().strip()
    except FileNotFoundError:
        return ""


def phase(kb: Path, marks: Path, llm: FakeOpenAI) -> str:
    """What the run was doing, all of it at once: LLM calls, a journalled write, the git commands running."""
    doing = ["LLM call"] if llm.in_flight else []
    if (kb / ".extractor" / JOURNAL).exists():
        doing.append("file write")
    running = sorted({command for mark in marks.glob("*") if (command := read_mark(mark))})
    doing += [f"git {command}" for command in running]
    return " + ".join(doing) or "between steps"


COMMITTING = re.compile(r"commit-tree|update-ref|reset|update-index|write-tree|read-tree")


def kill_moment(target: str, kb: Path, marks: Path, llm: FakeOpenAI, pause: float) -> Callable[[], bool]:
    """When to kill, for each kind of moment a trial aims at."""
    if target == "LLM call":
        return lambda: llm.in_flight > 0
    if target == "file write":
        return lambda: (kb / ".extractor" / JOURNAL).exists() or "hash-object" in phase(kb, marks, llm)
    if target == "commit":
        return lambda: bool(COMMITTING.search(phase(kb, marks, llm)))
    if target == "ref update":
        return lambda: "update-ref stalled" in phase(kb, marks, llm)
    return lambda: time.sleep(pause) or True


def wait_for(condition: Callable[[], bool], seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.002)
    return False


def check_kb(kb: Path, mode: str) -> dict[str, int]:
    """Every source extracted exactly once, nothing stray, git consistent; returns the store's counts."""
    per_source = commits_per_source(kb)
    assert len(per_source) == SOURCES and set(per_source.values()) == {1}, per_source
    assert git(kb, "status", "--porcelain", "--untracked-files=all") == ""
    subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=kb, check=True, capture_output=True)
    git_dir = kb / ".git"
    assert not list(git_dir.rglob("*.lock"))
    assert not (kb / ".extractor" / JOURNAL).exists()
    claims = [p.name for p in (kb / "claims").rglob("*.md")]
    if mode == "main":
        assert len(claims) == SOURCES and not any(re.search(r"-\d+\.md$", n) for n in claims), claims
        assert len(commits_per_source(kb, "HEAD")) == SOURCES
    else:
        assert claims == [] and len(commits_per_source(kb, "HEAD")) == 0  # main untouched
        branches = git(kb, "for-each-ref", "--format=%(refname:short)", "refs/heads/extract/").split()
        assert len(branches) == SOURCES
        for branch in branches:
            assert git(kb, "rev-list", "--count", f"main..{branch}").strip() == "1"
            added = git(kb, "diff", "--name-only", "--diff-filter=A", f"main...{branch}").split()
            assert len(added) == 1 and not re.search(r"-\d+\.md$", added[0]), added
    return StateStore.open(kb).counts()


@pytest.mark.slow
def test_sigkill_at_random_moments_then_restart_extracts_each_source_exactly_once(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    rng = random.Random(20)
    marks = tmp_path / "marks"
    path = slow_git(tmp_path / "bin", marks, 0.05)
    env = {**os.environ, "PATH": f"{path}{os.pathsep}{os.environ['PATH']}", "OPENAI_BASE_URL": fake_llm.base_url}
    fake_llm.responder = lambda request: Reply(body=answer(grounded_answer(source_body(request))).body, delay=0.15)
    targets = ["LLM call", "file write", "commit", "ref update", "anywhere"]
    rows = []
    for trial in range(20):
        mode = "main" if trial % 2 == 0 else "branch"
        target = targets[trial % len(targets)]  # with the mode, every pairing twice
        kb = make_kb(tmp_path / f"kb{trial}", mode, rng)
        victim = start_run(kb, {**env, "STALL": "1.5"} if target == "ref update" else env)
        # Commits to let through first. A stalled ref update is aimed at the last source's commit: with
        # nothing else to commit, the restart is still where the dead run left HEAD when that update lands.
        after = SOURCES - 1 if target == "ref update" else rng.randint(0, 3)
        wait_for(lambda kb=kb, after=after: sum(commits_per_source(kb).values()) >= after)
        hit = wait_for(kill_moment(target, kb, marks, fake_llm, rng.uniform(0, 0.5)), 30)
        moment = phase(kb, marks, fake_llm) if victim.poll() is None else "already finished"
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        before = sum(commits_per_source(kb).values())

        survivor = start_run(kb, env)  # at once: the dead run's last git command may still be running
        out, err = survivor.communicate(timeout=180)
        logged = [json.loads(line) for line in out.splitlines()]
        failed = [line["error"] for line in logged if line["message"] == "source" and not line["ok"]]
        # Only a branch the dead run's last ref update created meanwhile may fail a source here.
        assert all("already exists" in e or "awaits review" in e for e in failed), (trial, failed, err)
        assert survivor.returncode == (1 if failed else 0), (trial, err)
        wait_for(lambda: not any(marks.iterdir()), 15)  # the dead run's orphaned git commands are done
        notes = Counter(
            re.sub(r" (of|after a dead run:) .*", "", line["note"]) for line in logged if line["message"] == "recovered"
        )
        counts = check_kb(kb, mode)
        if counts.get("failed"):  # lost a race with the dead run's last ref update: the next cycle sees its branch
            again = start_run(kb, env)
            assert again.wait(timeout=120) == 0
            counts = check_kb(kb, mode)
        assert counts == {"done" if mode == "main" else "awaiting_review": SOURCES}, counts
        rows.append((trial, mode, target, hit, moment, before, notes))
    print("\ntrial | mode | aimed at | kill landed during | commits before restart | recovery")
    for trial, mode, target, hit, moment, before, notes in rows:
        recovery = ", ".join(f"{note} ×{count}" if count > 1 else note for note, count in notes.items())
        landed = moment if hit else f"missed: {moment}"
        print(f"{trial:5} | {mode:6} | {target:10} | {landed:44} | {before} | {recovery}")
    landed = Counter(kind for row in rows for kind in ("LLM call", "file write", "git") if kind in row[4])
    print("kills that landed during each kind of step (a kill may land during several):", dict(landed))
    assert landed["git"] >= 4 and landed["LLM call"] >= 2  # the trials did reach commits and calls


def test_recovery_finishes_a_commit_whose_ref_had_not_moved(tmp_path: Path) -> None:
    """Killed between making the commit and moving HEAD: every file is in place, so the write is completed."""
    kb = make_kb(tmp_path / "kb", "main", random.Random(1))
    claim, source = "claims/ai-alignment/new.md", "inbox/archive/2026-03-00-trial-0.md"
    original = (kb / source).read_text()
    old_head = git(kb, "rev-parse", "HEAD").strip()
    (kb / "claims/ai-alignment").mkdir()
    (kb / claim).write_text("a claim\n")
    (kb / source).write_text(original.replace("unprocessed", "processed"))
    commit, parent = build_commit(kb, [claim, source], "x: extract\n\n- Source: s\n", Identity(name="n", email="e@x"))
    state = ensure_state_dir(kb)
    (state / JOURNAL).write_text(
        Journal(
            source_path=source, head=parent, originals={claim: None, source: original}, commit=commit
        ).model_dump_json()
    )
    leftover = kb / "claims/ai-alignment/.new.md.abc123.tmp"
    leftover.write_text("half")

    assert recover_interrupted_write(kb) == f"completed the interrupted commit of {source}"
    assert git(kb, "rev-parse", "HEAD").strip() == commit != old_head
    assert git(kb, "status", "--porcelain", "--untracked-files=all") == ""
    assert not leftover.exists() and not (state / JOURNAL).exists()


def test_a_commit_waits_out_a_lock_another_git_holds(tmp_path: Path) -> None:
    """An editor's `git status` holds index.lock for a moment: the commit still lands and the index follows it."""
    kb = make_kb(tmp_path / "kb", "main", random.Random(2))
    claim = "claims/new.md"
    (kb / claim).write_text("a claim\n")
    lock = kb / ".git" / "index.lock"
    lock.write_text("")
    releaser = threading.Timer(0.5, lock.unlink)
    releaser.start()
    commit = commit_paths(kb, [claim], "x: extract\n", Identity(name="n", email="e@x"))
    releaser.join()
    assert git(kb, "rev-parse", "HEAD").strip() == commit
    assert git(kb, "status", "--porcelain", "--untracked-files=all") == ""  # the user's index has the new file
