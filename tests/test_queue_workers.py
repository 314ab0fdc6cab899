"""Workers on other hosts (``compute = "queue"``): `extractor worker` processes with clones of their own take
sources through the queue in a real Postgres, and one `extractor run` writes what they computed."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from extractor.store.state import StateStore
from tests.conftest import git
from tests.drafts import NULL, source_body
from tests.fakeopenai import FakeOpenAI, Reply, answer
from tests.kbfactory import make_inbox_kb

ROOT = Path(__file__).resolve().parent.parent
SLOW = "Body of source 5 about"  # the source a worker is killed in the middle of
SETTINGS = (
    'compute = "queue"\nqueue_depth = 6\nworker_heartbeat = 1\nmax_per_cycle = 100\nretry_initial_wait = 0.01\n'
    "cache = false\n"
)


def environment(url: str, llm: FakeOpenAI) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "EXTRACTOR_STATE_URL": url, "OPENAI_BASE_URL": llm.base_url}


def extractor(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``extractor ARGS`` in the background, its output (JSON log lines) in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "extractor", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip


def worker(clone: Path, number: int, env: dict[str, str], *more: str) -> subprocess.Popen[bytes]:
    return extractor(["worker", "--kb", str(clone), "--number", str(number), *more], env,
                     clone.parent / f"w{number}.log")  # fmt: skip


def taken_by(logs: dict[int, Path], marker: str) -> int | None:
    """The worker whose log says it took the source whose file name holds ``marker``."""
    for number, log in logs.items():
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{") and json.loads(line).get("message") == "taken" and marker in line:
                return number
    return None


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def branches(kb: Path) -> dict[str, list[str]]:
    """Each extraction branch's commits on top of main, by message's first line and its worker line."""
    found = {}
    for branch in git(kb, "for-each-ref", "--format=%(refname:short)", "refs/heads/extract/").split():
        found[branch] = git(kb, "log", "--format=%s%n%b%x00", f"main..{branch}").strip("\n\x00").split("\x00")
    return found


@pytest.fixture
def llm(fake_llm: FakeOpenAI) -> FakeOpenAI:
    def respond(request: dict[str, Any]) -> Reply:
        reply = answer(NULL)
        reply.delay = 6.0 if SLOW in source_body(request) else 0.2
        return reply

    fake_llm.responder = respond
    return fake_llm


def test_two_workers_on_their_own_clones_and_one_writer_commit_every_source_once(
    postgres_url: str, tmp_path: Path, llm: FakeOpenAI
) -> None:
    kb = make_inbox_kb(tmp_path / "kb", 40, SETTINGS)
    env = environment(postgres_url, llm)
    clones = {number: tmp_path / f"host{number}" / "kb" for number in (1, 2, 3)}
    for clone in clones.values():
        clone.parent.mkdir()
        git(tmp_path, "clone", "-q", str(kb), str(clone))
    workers = {number: worker(clones[number], number, env) for number in (1, 2)}
    logs = {number: clones[number].parent / f"w{number}.log" for number in (1, 2)}
    try:
        writer = extractor(["run", "--once", "--kb", str(kb)], env, tmp_path / "writer.log")
        wait_for(lambda: taken_by(logs, "source-05") is not None, 120, "a worker to take source 5")
        # A second writer (another host's clone of the KB) waits for the first instead of racing it.
        second = extractor(["run", "--once", "--kb", str(clones[3])], env, tmp_path / "second.log")
        killed = taken_by(logs, "source-05")
        assert killed is not None
        time.sleep(1.0)  # well into the source's 6 s answer
        workers[killed].send_signal(signal.SIGKILL)
        survivor = 3 - killed
        assert writer.wait(timeout=240) == 0, (tmp_path / "writer.log").read_text()
        first_done, first_done_at = time.time(), time.monotonic()
        assert second.wait(timeout=240) == 0, (tmp_path / "second.log").read_text()
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in workers.values():
            process.wait(timeout=60)
    assert workers[survivor].returncode == 0  # a worker told to stop finishes what it holds and stops

    made = branches(kb)
    assert len(made) == 40 and all(len(commits) == 1 for commits in made.values())  # each source exactly once
    slow = made["extract/2026-01-05-source-05"][0]
    assert f"(worker {survivor})" in slow  # finished by the worker that lived
    workers_seen = {n for commits in made.values() for n in (1, 2) if f"(worker {n})" in commits[0]}
    assert workers_seen == {1, 2}
    assert "another run is the KB's writer; waiting" in (tmp_path / "second.log").read_text()
    # It began only once the first had finished: nothing it committed in its clone is older than that.
    times = git(clones[3], "log", "--all", "--format=%ct", "--not", "main").split()
    assert all(int(t) >= int(first_done) - 1 for t in times)
    store = StateStore(url=postgres_url)
    try:
        assert store.counts() == {"awaiting_review": 40}
        assert store.db.execute("SELECT COUNT(*) FROM queued_results").fetchone()[0] == 0
    finally:
        store.close()
    asked = [at for request, at in zip(llm.requests, llm.request_times, strict=True) if SLOW in source_body(request)]
    assert len([at for at in asked if at < first_done_at]) == 2  # asked once more after the kill, no more


def test_the_shared_rate_limit_holds_across_two_worker_processes(
    postgres_url: str, tmp_path: Path, llm: FakeOpenAI
) -> None:
    kb = make_inbox_kb(tmp_path / "kb", 8, SETTINGS + "requests_per_minute = 60\n")
    env = environment(postgres_url, llm)
    clones = [tmp_path / f"host{number}" / "kb" for number in (1, 2)]
    for clone in clones:
        clone.parent.mkdir()
        git(tmp_path, "clone", "-q", str(kb), str(clone))
    llm.responder = lambda request: answer(NULL)
    workers = [worker(clones[0], 1, env), worker(clones[1], 2, env, "--concurrency", "2")]  # threads share a limit
    try:
        writer = extractor(["run", "--once", "--kb", str(kb)], env, tmp_path / "writer.log")
        assert writer.wait(timeout=180) == 0, (tmp_path / "writer.log").read_text()
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            process.wait(timeout=60)
    assert len(branches(kb)) == 8
    times = sorted(llm.request_times)
    assert len(times) == 8
    # 60 a minute is one a second, shared: two processes together never ask twice within ~a second.
    assert min(b - a for a, b in itertools.pairwise(times)) > 0.8
    logs = {n: clone.parent / f"w{n}.log" for n, clone in enumerate(clones, start=1)}
    assert all(taken_by({n: log}, "source-") is not None for n, log in logs.items())  # both took sources
