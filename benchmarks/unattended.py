"""Figures for unattended runs: inbox polls and worker throughput.

Run: .venv/bin/python benchmarks/unattended.py [--sources 10000] [--workers 1 2 4 8] [--postgres]

1. The time of a poll (scan) over an inbox of unchanged sources, after the
   first poll has recorded them: stat only, nothing re-parsed.
2. Throughput of one cycle against N worker processes, with a scripted
   OpenAI-compatible server on 127.0.0.1 that takes 1 second per request.
   Pool start-up is reported apart from the cycle.
3. With --postgres (a throwaway server started as the tests start it): the same
   cycle with the state in Postgres, first with the run's own workers, then with
   N `extractor worker` processes taking the sources through the queue.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from extractor.core.settings import Settings  # noqa: E402
from extractor.run.remote import QueuePool  # noqa: E402
from extractor.run.scheduler import Runner, scan_inbox  # noqa: E402
from extractor.run.workers import Pool, WorkerPool  # noqa: E402
from extractor.store.state import StateStore, open_store  # noqa: E402
from tests.fakeopenai import FakeOpenAI, Reply, answer  # noqa: E402
from tests.kbfactory import make_inbox_kb  # noqa: E402
from tests.postgres import postgres_server  # noqa: E402

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


def throughput(workers: int, per_worker: int, server: FakeOpenAI, state_url: str | None = None,
               queue: bool = False) -> None:  # fmt: skip
    sources = workers * per_worker
    with tempfile.TemporaryDirectory() as tmp:
        kb = make_inbox_kb(Path(tmp) / "kb", sources)
        settings = Settings(base_url=server.base_url, workers=workers, max_per_cycle=sources, timeout=30,
                            state_url=state_url, compute="queue" if queue else "local", queue_depth=2 * workers,
                            worker_heartbeat=2)  # fmt: skip
        store = open_store(kb, settings)
        started = time.perf_counter()
        pool: Pool
        remote: list[subprocess.Popen[bytes]] = []
        if queue:
            pool = QueuePool(kb, settings, store)
            env = {**os.environ, "PYTHONPATH": str(ROOT), "EXTRACTOR_STATE_URL": str(state_url),
                   "OPENAI_BASE_URL": server.base_url}  # fmt: skip
            command = [sys.executable, "-m", "extractor", "worker", "--kb", str(kb), "--number"]
            remote = [subprocess.Popen([*command, str(n)], env=env, stdout=subprocess.DEVNULL)
                      for n in range(1, workers + 1)]  # fmt: skip
            wait_for_queue_workers(str(state_url), workers)  # each imports and connects before the timed cycle
        else:
            local = WorkerPool(workers, kb, settings)
            local.wait_ready()  # each worker imports and connects once before the timed cycle
            pool = local
        runner = Runner(kb, settings, pool, store)
        ready = time.perf_counter() - started
        try:
            started = time.perf_counter()
            report = runner.cycle()
            seconds = time.perf_counter() - started
        finally:
            pool.close()
            for process in remote:
                process.send_signal(signal.SIGTERM)
            for process in remote:
                process.wait(timeout=60)
            store.close()
        done = len(report.outcomes) - len(report.failed)
        rate = done / seconds
        where = "SQLite" if state_url is None else ("Postgres, queue workers" if queue else "Postgres")
        print(f"workers {workers} ({where}): {done}/{sources} sources in {seconds:.1f}s = {rate:.2f}/s "
              f"({rate / workers:.2f} x N; target 0.8 x N); pool start {ready:.1f}s")  # fmt: skip


def wait_for_queue_workers(url: str, workers: int, timeout: float = 120.0) -> None:
    """Until every worker process has registered both its loops (sources, upkeep) with the queue."""
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            row = connection.execute("SELECT COUNT(*) FROM procrastinate_workers").fetchone()
            if row is not None and row[0] >= 2 * workers:
                return
            time.sleep(0.2)
    raise SystemExit(f"the {workers} queue workers did not start within {timeout:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--per-worker", type=int, default=6, help="sources per worker in a throughput run")
    parser.add_argument("--postgres", action="store_true", help="also with the state, and the queue, in Postgres")
    parser.add_argument("--no-poll", action="store_true", help="skip the poll figures")
    args = parser.parse_args()
    if not args.no_poll:
        poll_figures(args.sources)
    server = FakeOpenAI().start()
    server.default = Reply(body=answer(NULL).body, delay=1.0)
    try:
        with contextlib.ExitStack() as stack:
            postgres = stack.enter_context(postgres_server()) if args.postgres else None
            for workers in args.workers:
                throughput(workers, args.per_worker, server)
                if postgres is not None:
                    for queue in (False, True):
                        url = postgres.new_database()
                        throughput(workers, args.per_worker, server, state_url=url, queue=queue)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
