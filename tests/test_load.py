"""Load: 2,000 small sources through 8 workers in one run; every source accounted for, the store consistent."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from extractor.store.state import StateStore
from tests.conftest import git
from tests.drafts import NULL
from tests.fakeopenai import FakeOpenAI, answer
from tests.kbfactory import make_inbox_kb

SOURCES = 2000
WORKERS = 8


class PeakMemory:
    """Samples the resident memory of a process and all its descendants until stopped."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.process = psutil.Process(pid)
        self.every = every
        self.total = 0  # bytes, all processes together
        self.largest = 0  # bytes, the largest single process
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(self.every):
            sizes = []
            for process in [self.process, *self.process.children(recursive=True)]:
                try:
                    sizes.append(process.memory_info().rss)
                except psutil.Error:
                    continue
            self.total = max(self.total, sum(sizes))
            self.largest = max(self.largest, max(sizes, default=0))

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


@pytest.mark.slow
def test_two_thousand_sources_with_eight_workers_are_all_accounted_for(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.default = answer(NULL)
    kb = make_inbox_kb(
        tmp_path / "kb", SOURCES, f"workers = {WORKERS}\nmax_per_cycle = {SOURCES}\nretry_initial_wait = 0.01\n"
    )
    started = time.monotonic()
    run = subprocess.Popen(
        [sys.executable, "-m", "extractor", "run", "--once", "--kb", str(kb)],
        env={**os.environ, "OPENAI_BASE_URL": fake_llm.base_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    memory = PeakMemory(run.pid)
    _, err = run.communicate(timeout=1800)
    memory.stop()
    seconds = time.monotonic() - started
    assert run.returncode == 0, err[-2000:]

    store = StateStore.open(kb)
    rows = store.all_sources()
    assert len(rows) == SOURCES and store.counts() == {"awaiting_review": SOURCES}
    assert all(row.commit_sha and row.branch and 1 <= (row.worker or 0) <= WORKERS for row in rows.values())
    assert len({row.commit_sha for row in rows.values()}) == SOURCES
    workers = Counter(row.worker for row in rows.values())
    db = sqlite3.connect(kb / ".extractor" / "state.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT count(*), count(DISTINCT source_path) FROM llm_calls").fetchone() == (SOURCES, SOURCES)
    branches = git(kb, "for-each-ref", "--format=%(refname)", "refs/heads/extract/").split()
    assert len(branches) == SOURCES and len(fake_llm.requests) == SOURCES
    assert git(kb, "status", "--porcelain") == "" and re.fullmatch(r"[0-9a-f]{40}\n", git(kb, "rev-parse", "main"))
    print(
        f"\nload: {SOURCES} sources, {WORKERS} workers, {seconds:.1f} s in all, {SOURCES / seconds:.1f} sources/s; "
        f"peak memory {memory.total / 2**20:.0f} MiB for all processes together, "
        f"{memory.largest / 2**20:.0f} MiB for the largest; sources per worker {sorted(workers.values())}"
    )
