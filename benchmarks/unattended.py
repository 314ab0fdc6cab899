"""Figures for unattended runs: inbox polls and worker throughput.

Run: .venv/bin/python benchmarks/unattended.py [--sources 10000] [--workers 1 2 4 8]

1. The time of a poll (scan) over an inbox of unchanged sources, after the
   first poll has recorded them: stat only, nothing re-parsed.
2. Throughput of one cycle against N worker processes, with a scripted
   OpenAI-compatible server on 127.0.0.1 that takes 1 second per request.
   Pool start-up is reported apart from the cycle.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extractor.core.settings import Settings  # noqa: E402
from extractor.run.scheduler import Runner, scan_inbox  # noqa: E402
from extractor.run.workers import WorkerPool  # noqa: E402
from extractor.store.state import StateStore  # noqa: E402
from tests.fakeopenai import FakeOpenAI, Reply, answer  # noqa: E402
from tests.kbfactory import make_inbox_kb  # noqa: E402

NULL = {"key_facts": [], "claims": [], "enrichments": [], "null_result_reason": "Nothing new.", "notes": ""}


def poll_figures(sources: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        kb = make_inbox_kb(Path(tmp) / "kb", sources)
        store = StateStore.open(kb)
        settings = Settings()
        started = time.perf_counter()
        first = scan_inbox(kb, settings, store)
        first_seconds = time.perf_counter() - started
        times = []
        for _ in range(5):
            started = time.perf_counter()
            again = scan_inbox(kb, settings, store)
            times.append(time.perf_counter() - started)
            assert again.parsed == 0
        print(f"poll over {sources} sources: first (parses all {first.parsed}) {first_seconds:.2f}s; "
              f"unchanged: median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
              f"(0 files re-parsed)")  # fmt: skip


def throughput(workers: int, per_worker: int, server: FakeOpenAI) -> None:
    sources = workers * per_worker
    with tempfile.TemporaryDirectory() as tmp:
        kb = make_inbox_kb(Path(tmp) / "kb", sources)
        settings = Settings(base_url=server.base_url, workers=workers, max_per_cycle=sources, timeout=30)
        store = StateStore.open(kb)
        started = time.perf_counter()
        pool = WorkerPool(workers, kb, settings)
        runner = Runner(kb, settings, pool, store)
        # Warm the pool: each worker imports and connects once before the timed cycle.
        pool.wait_ready()
        ready = time.perf_counter() - started
        try:
            started = time.perf_counter()
            report = runner.cycle()
            seconds = time.perf_counter() - started
        finally:
            pool.close()
        done = len(report.outcomes) - len(report.failed)
        rate = done / seconds
        print(f"workers {workers}: {done}/{sources} sources in {seconds:.1f}s = {rate:.2f}/s "
              f"({rate / workers:.2f} x N; target 0.8 x N); pool start {ready:.1f}s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--per-worker", type=int, default=6, help="sources per worker in a throughput run")
    args = parser.parse_args()
    poll_figures(args.sources)
    server = FakeOpenAI().start()
    server.default = Reply(body=answer(NULL).body, delay=1.0)
    try:
        for workers in args.workers:
            throughput(workers, args.per_worker, server)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
