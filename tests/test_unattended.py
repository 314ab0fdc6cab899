"""Unattended operation: workers, locks, crashes, backoff, status, the daemon."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from extractor.cli.main import main
from extractor.commit.apply import recover_interrupted_write
from extractor.core.settings import Settings
from extractor.kb.locks import kb_lock
from extractor.run.scheduler import scan_inbox
from extractor.run.service import retry_delay
from extractor.store.state import SourceState, StateStore
from tests.conftest import git
from tests.fakeopenai import FakeOpenAI, Reply, answer, completion
from tests.kbfactory import make_inbox_kb

NULL = {"key_facts": [], "claims": [], "enrichments": [], "null_result_reason": "Nothing new.", "notes": ""}


def make_kb(root: Path, sources: int, settings: str = "") -> Path:
    base = 'retry_initial_wait = 0.01\nretry_max_wait = 0.1\ntimeout = 20\ncommit_mode = "main"\n'
    return make_inbox_kb(root, sources, base + settings)


def commits_per_source(kb: Path) -> Counter[str]:
    log = git(kb, "log", "--format=%B%x00")
    return Counter(re.findall(r"^- Source: (\S+)$", log, re.M))


def workers_in_log(kb: Path) -> dict[str, int]:
    found = {}
    for message in git(kb, "log", "--format=%B%x00").split("\0"):
        source = re.search(r"^- Source: (\S+)$", message, re.M)
        worker = re.search(r"\(worker (\d+)\)", message)
        if source and worker:
            found[source.group(1)] = int(worker.group(1))
    return found


def run_once(kb: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "extractor", "run", "--once", "--kb", str(kb), *extra],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def slow_llm(fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    fake_llm.default = Reply(body=answer(NULL).body, delay=0.3)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    return fake_llm


def test_n_workers_process_m_sources_once_with_their_numbers(
    tmp_path: Path, slow_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = make_kb(tmp_path / "kb", 9, "max_per_cycle = 20\n")
    assert main(["run", "--once", "--kb", str(kb), "--workers", "3"]) == 0
    per_source = commits_per_source(kb)
    assert len(per_source) == 9 and set(per_source.values()) == {1}
    workers = workers_in_log(kb)
    assert set(workers.values()) <= {1, 2, 3} and len(set(workers.values())) >= 2
    store = StateStore.open(kb)
    for path, worker in workers.items():
        row = store.get(path)
        assert row is not None and row.state is SourceState.DONE and row.worker == worker
        assert row.commit_sha and row.model
    assert len(store.calls_for(next(iter(workers)))) == 1
    assert git(kb, "status", "--porcelain") == ""
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(1 for line in lines if line["message"] == "source") == 9


def test_two_concurrent_runs_never_process_a_source_twice(tmp_path: Path, slow_llm: FakeOpenAI) -> None:
    kb = make_kb(tmp_path / "kb", 6, "max_per_cycle = 20\nworkers = 2\n")
    first, second = run_once(kb), run_once(kb)
    results = [p.communicate(timeout=120) for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    assert codes == [0, 2], results
    refused = results[0] if first.returncode == 2 else results[1]
    assert "holds the run lock" in refused[1]
    assert set(commits_per_source(kb).values()) == {1} and len(commits_per_source(kb)) == 6


def test_sigkill_mid_cycle_then_restart_processes_each_source_exactly_once(
    tmp_path: Path, slow_llm: FakeOpenAI
) -> None:
    rng = random.Random(7)
    trials = []
    for trial in range(5):
        kb = make_kb(tmp_path / f"kb{trial}", 8, "max_per_cycle = 20\nworkers = 2\n")
        victim = run_once(kb)
        # Kill after a random number of commits, at a random moment: during calls or writes.
        wanted, deadline = rng.randint(0, 6), time.monotonic() + 60
        while sum(commits_per_source(kb).values()) < wanted and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.3))
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        before = sum(commits_per_source(kb).values())
        survivor = run_once(kb)
        out, err = survivor.communicate(timeout=120)
        assert survivor.returncode == 0, err
        per_source = commits_per_source(kb)
        trials.append((before, sum(per_source.values())))
        assert len(per_source) == 8 and set(per_source.values()) == {1}, per_source
        assert git(kb, "status", "--porcelain") == ""
        subprocess.run(["git", "fsck", "--strict"], cwd=kb, check=True, capture_output=True)
    print("\ncommits before restart / after, per trial:", trials)


def test_failures_back_off_then_park_until_force(
    tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    kb = make_kb(tmp_path / "kb", 1, "retry_base_seconds = 0\nmax_source_attempts = 2\nmax_reasks = 0\n")
    path = "inbox/archive/2026-01-00-source-00.md"
    fake_llm.push(completion("broken"))
    assert main(["run", "--once", "--kb", str(kb)]) == 1
    store = StateStore.open(kb)
    row = store.get(path)
    assert row and row.state is SourceState.FAILED and row.attempts == 1 and "invalid" in (row.last_error or "")
    assert row.next_retry_at is not None
    assert store.calls_for(path)[0]["raw_reply"] == "broken"

    fake_llm.push(completion("broken again"))
    assert main(["run", "--once", "--kb", str(kb)]) == 1
    assert store.get(path).state is SourceState.PARKED  # type: ignore[union-attr]

    assert main(["run", "--once", "--kb", str(kb)]) == 0  # parked: not taken
    assert len(fake_llm.requests) == 2
    capsys.readouterr()
    assert main(["status", "--kb", str(kb), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == {"parked": 1}
    assert status["recent_failures"][0]["path"] == path and status["recent_failures"][0]["attempts"] == 2
    assert status["totals"]["calls"] == 2 and status["last_cycle"]["taken"] == 0

    fake_llm.push(answer(NULL))
    assert main(["run", "--once", "--kb", str(kb), "--force"]) == 0
    assert store.get(path).state is SourceState.DONE  # type: ignore[union-attr]


def test_backoff_grows_and_is_capped() -> None:
    settings = Settings(retry_base_seconds=10, retry_cap_seconds=100)
    assert [retry_delay(n, settings) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 80, 100]


def test_a_held_lock_refuses_and_a_dead_holders_lock_does_not(tmp_path: Path, slow_llm: FakeOpenAI) -> None:
    kb = make_kb(tmp_path / "kb", 1)
    with kb_lock(kb, "run"):
        held = run_once(kb)
        _, err = held.communicate(timeout=60)
    assert held.returncode == 2 and f"(pid {os.getpid()}) holds the run lock" in err
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from extractor.kb.locks import kb_lock\n"
         f"with kb_lock(Path({str(kb)!r}), 'run'):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    after = run_once(kb)
    _, err = after.communicate(timeout=60)
    assert after.returncode == 0, err


def test_a_hung_source_hits_the_time_limit_and_the_worker_is_replaced(
    tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    kb = make_kb(tmp_path / "kb", 2, "source_timeout = 2\nmax_per_cycle = 5\n")
    fake_llm.push(Reply(body=answer(NULL).body, delay=40), answer(NULL))
    started = time.monotonic()
    assert main(["run", "--once", "--kb", str(kb)]) == 1
    # Cut off long before the hung reply came (the replacement worker's start-up is not counted as work, so
    # on a busy machine the second source still gets its full 2 s).
    assert time.monotonic() - started < 30
    store = StateStore.open(kb)
    hung = store.get("inbox/archive/2026-01-00-source-00.md")
    assert hung and hung.state is SourceState.FAILED and "no result within 2s" in (hung.last_error or "")
    assert store.get("inbox/archive/2026-01-01-source-01.md").state is SourceState.DONE  # type: ignore[union-attr]


def test_rescans_read_only_changed_files_and_report_edits_after_processing(
    tmp_path: Path, slow_llm: FakeOpenAI
) -> None:
    kb = make_kb(tmp_path / "kb", 3, "max_per_cycle = 5\n")
    settings = Settings(inbox_dir="inbox/archive")
    store = StateStore.open(kb)
    assert scan_inbox(kb, settings, store).parsed == 3
    assert scan_inbox(kb, settings, store).parsed == 0
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert scan_inbox(kb, settings, store).parsed == 0  # the writer recorded what it wrote
    processed = kb / "inbox/archive/2026-01-01-source-01.md"
    processed.write_text(processed.read_text() + "\nA late edit.\n")
    report = scan_inbox(kb, settings, store)
    assert report.parsed == 1 and report.changed_after_processing == ["inbox/archive/2026-01-01-source-01.md"]
    requests = len(slow_llm.requests)
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert len(slow_llm.requests) == requests  # reported, not re-extracted


def test_an_interrupted_write_is_undone_or_completed(tmp_path: Path) -> None:
    kb = make_kb(tmp_path / "kb", 1)
    source = kb / "inbox/archive/2026-01-00-source-00.md"
    original = source.read_text()
    from extractor.commit.apply import Journal
    from extractor.kb.statedir import ensure_state_dir

    head = git(kb, "rev-parse", "HEAD").strip()
    journal = ensure_state_dir(kb) / "journal.json"
    journal.write_text(Journal(source_path="inbox/archive/2026-01-00-source-00.md", head=head,
                               originals={"inbox/archive/2026-01-00-source-00.md": original,
                                          "claims/ai-alignment/new.md": None}).model_dump_json())  # fmt: skip
    source.write_text(original.replace("unprocessed", "processed"))
    (kb / "claims/ai-alignment").mkdir(parents=True)
    (kb / "claims/ai-alignment/new.md").write_text("half a claim")
    assert recover_interrupted_write(kb).startswith("undid")
    assert source.read_text() == original and not (kb / "claims/ai-alignment/new.md").exists()
    assert not journal.exists()


def test_daemon_polls_picks_up_new_sources_and_stops_cleanly_on_sigterm(tmp_path: Path, slow_llm: FakeOpenAI) -> None:
    kb = make_kb(tmp_path / "kb", 2, "poll_minutes = 0.01\npoll_jitter_seconds = 0\nworkers = 2\n")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "extractor", "run", "--kb", str(kb)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(commits_per_source(kb)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        new = kb / "inbox/archive/2026-02-01-late-arrival.md"
        new.write_text(new_source := "---\ntype: source\ntitle: Late\ndomain: health\nstatus: unprocessed\n---\nb\n")
        assert new_source
        while len(commits_per_source(kb)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(commits_per_source(kb)) == 3
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    messages = [json.loads(line)["message"] for line in out.splitlines()]
    assert messages[0] == "started" and messages[-1] == "stopped" and "stopping" in messages
    assert messages.count("cycle") >= 2
    assert "vida: extract claims from 2026-02-01-late-arrival.md" in git(kb, "log", "-1", "--format=%s")


def test_sigterm_during_a_cycle_finishes_in_flight_work_and_requeues_the_rest(
    tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    fake_llm.default = Reply(body=answer(NULL).body, delay=1.5)
    kb = make_kb(tmp_path / "kb", 6, "max_per_cycle = 10\nworkers = 2\n")
    run = run_once(kb)
    deadline = time.monotonic() + 60
    while len(fake_llm.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    done = commits_per_source(kb)
    assert 2 <= len(done) < 6 and set(done.values()) == {1}
    assert git(kb, "status", "--porcelain") == ""
    store = StateStore.open(kb)
    assert store.counts() == {"done": len(done), "due": 6 - len(done)}


def test_manual_extract_leaves_a_source_another_process_is_running(
    tmp_path: Path, slow_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = make_kb(tmp_path / "kb", 1)
    path = "inbox/archive/2026-01-00-source-00.md"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store = StateStore.open(kb)
        assert store.claim(path, sleeper.pid, worker=3)
        assert main(["extract", str(kb / path)]) == 1
        assert f"being extracted by another process (pid {sleeper.pid})" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()
    assert main(["extract", str(kb / path)]) == 0  # its holder is gone
    row = store.get(path)
    assert row is not None and row.state is SourceState.DONE and row.commit_sha
