"""Workers on other hosts (``compute = "queue"``): `extractor worker` processes with clones of their own take
sources through the queue in a real Postgres, and one `extractor run` writes what they computed."""

from __future__ import annotations

import contextlib
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
from tests import postgres
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


def queued_jobs(url: str) -> int:
    """Sources queued and not taken by a worker (0 before the queue's tables exist)."""
    import psycopg

    with contextlib.suppress(psycopg.Error), psycopg.connect(url) as connection:
        row = connection.execute("SELECT COUNT(*) FROM procrastinate_jobs WHERE status = 'todo'").fetchone()
        return int(row[0]) if row is not None else 0
    return 0


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


def test_a_worker_whose_clone_cannot_follow_main_computes_at_the_commit_or_fails_as_itself(
    postgres_url: str, tmp_path: Path, llm: FakeOpenAI
) -> None:
    kb = make_inbox_kb(tmp_path / "kb", 1, SETTINGS)
    env = environment(postgres_url, llm)
    ahead, orphan = tmp_path / "ahead" / "kb", tmp_path / "orphan" / "kb"
    for clone in (ahead, orphan):
        clone.parent.mkdir()
        git(tmp_path, "clone", "-q", str(kb), str(clone))
    (ahead / "local.md").write_text("someone's note in the worker's clone\n", encoding="utf-8")
    git(ahead, "add", "local.md")
    git(ahead, "-c", "user.name=P", "-c", "user.email=p@x", "commit", "-qm", "local")  # its main cannot fast-forward
    git(orphan, "remote", "remove", "origin")  # and this one cannot fetch at all
    (kb / "inbox" / "archive" / "2026-02-01-new.md").write_text(
        "---\ntype: source\ntitle: New\nauthor: A\ndate: 2026-02-01\ndomain: ai-alignment\nstatus: unprocessed\n"
        "---\n\nA new source about alignment.\n", encoding="utf-8")  # fmt: skip
    git(kb, "add", "-A")
    git(kb, "-c", "user.name=P", "-c", "user.email=p@x", "commit", "-qm", "a new source")

    writer = extractor(["run", "--once", "--kb", str(kb)], env, tmp_path / "writer1.log")
    wait_for(lambda: queued_jobs(postgres_url) == 2, 60, "both sources queued")
    assert worker(orphan, 7, env, "--once").wait(timeout=60) == 0
    assert writer.wait(timeout=120) == 1  # a source failed
    lines = [json.loads(line) for line in (tmp_path / "writer1.log").read_text().splitlines() if line.startswith("{")]
    failed = [line for line in lines if line.get("message") == "source" and "2026-02-01-new" in line["source_path"]]
    assert failed and failed[0]["status"] == "failed"  # the worker's clone, not the source: retried, not invalid
    assert "worker 7: commit" in failed[0]["error"] and "not in its clone" in failed[0]["error"]

    subprocess.run([sys.executable, "-m", "extractor", "retry", "--failed", "--kb", str(kb)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    other = worker(ahead, 8, env)
    try:
        writer = extractor(["run", "--once", "--kb", str(kb)], env, tmp_path / "writer2.log")
        assert writer.wait(timeout=120) == 0, (tmp_path / "writer2.log").read_text()
    finally:
        other.send_signal(signal.SIGTERM)
        other.wait(timeout=60)
    assert "(worker 8)" in git(kb, "log", "-1", "--format=%b", "extract/2026-02-01-new")
    assert git(ahead, "log", "-1", "--format=%s") == "local\n"  # the clone's own commit is left where it was


def test_a_wrong_password_or_no_server_is_one_line_from_the_writer_and_the_worker(
    postgres_url: str, tmp_path: Path, llm: FakeOpenAI
) -> None:
    kb = make_inbox_kb(tmp_path / "kb", 1, SETTINGS)
    wrong = postgres_url.replace(postgres.PASSWORD, "not-the-password")
    for url in (wrong, "postgresql://extractor:secret-word@127.0.0.1:1/none"):
        env = environment(url, llm)
        for args in (["run", "--once", "--kb", str(kb)], ["worker", "--once", "--kb", str(kb)]):
            done = subprocess.run([sys.executable, "-m", "extractor", *args], env=env, capture_output=True, text=True,
                                  timeout=120)  # fmt: skip
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert done.returncode == 1 and len(lines) == 1, done.stderr
            assert "cannot connect to the state database" in lines[0] and "Traceback" not in done.stderr
            assert "not-the-password" not in done.stderr and "secret-word" not in done.stderr


def test_a_stopped_writer_takes_back_at_once_what_no_worker_took(
    postgres_url: str, tmp_path: Path, llm: FakeOpenAI
) -> None:
    import psycopg

    kb = make_inbox_kb(tmp_path / "kb", 3, SETTINGS)
    env = environment(postgres_url, llm)
    writer = extractor(["run", "--once", "--kb", str(kb)], env, tmp_path / "writer.log")

    wait_for(lambda: queued_jobs(postgres_url) == 3, 60, "three queued sources")
    stopped = time.monotonic()
    writer.send_signal(signal.SIGTERM)
    writer.wait(timeout=60)
    assert time.monotonic() - stopped < 20  # not the shutdown grace (60 s) a running source would get
    store = StateStore(url=postgres_url)
    try:
        assert store.counts() == {"due": 3}
    finally:
        store.close()
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT COUNT(*) FROM procrastinate_jobs WHERE status = 'todo'").fetchone() == (0,)
    assert "stopped before it started" in (tmp_path / "writer.log").read_text()
