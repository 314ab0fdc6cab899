"""Worker processes: they compute extractions and never touch the KB's files or git.

Each worker keeps its number (1..N) for life, so provenance names it. A
worker that hangs past the per-source limit is killed and replaced under the
same number; the parent decides what happens to its source.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import queue
import signal
import sys
import time
import traceback
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from extractor.core.records import OutcomeKind, SourceOutcome
from extractor.core.redact import register_settings, scrub
from extractor.core.settings import Settings
from extractor.kb.gitrepo import head
from extractor.kb.index import KBIndex
from extractor.llm.client import StructuredClient
from extractor.llm.connect import structured_client
from extractor.run.service import Drafted, draft
from extractor.store.state import open_store


class Task(BaseModel):
    source_path: str  # relative to the KB root
    force: bool = False
    base: str | None = None  # branch mode: read the source as it is in this commit
    cycle: int = 0  # a worker reloads its KB index at least once per cycle


class Ready(BaseModel):
    """A worker's first message: imported, connected, waiting for tasks."""

    worker: int


STARTUP_GRACE = 120.0  # seconds a fresh worker may take to start before its task's clock runs anyway


class IndexCache:
    """The KB index a worker keeps between tasks.

    Loading it is most of a task's cost on a large KB. It is loaded again when
    the commit the task is based on changes (in branch mode, main's tip; in
    main mode, main, which every commit moves) and once per cycle. It is the
    index of that commit, kept under the state folder for every process of the
    KB: a reload reads only what the commits since changed.
    """

    def __init__(self, kb_root: Path, settings: Settings) -> None:
        self.kb_root = kb_root
        self.settings = settings
        self.index: KBIndex | None = None
        self.key: tuple[str | None, int] | None = None

    def for_task(self, task: Task) -> KBIndex:
        key = (task.base or head(self.kb_root), task.cycle)
        if self.index is None or key != self.key:
            self.index = KBIndex.load(self.kb_root, exclude=[self.settings.inbox_dir], previous=self.index,
                                       at=task.base or self.settings.main_branch)  # fmt: skip
            self.key = key
        return self.index


def compute(
    kb_root: Path,
    task: Task,
    settings: Settings,
    llm: StructuredClient,
    worker: int,
    indexes: IndexCache | None = None,
) -> Drafted | SourceOutcome:
    """One task's drafts, as data; every failure is reported, none raised."""
    started = time.monotonic()
    cache = indexes or IndexCache(kb_root, settings)
    try:
        return draft(kb_root, task.source_path, settings, llm, lambda: cache.for_task(task), worker=worker,
                     base=task.base, force=task.force)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - a bug must fail one source, not the worker
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return SourceOutcome(source_path=task.source_path, kind=OutcomeKind.FAILED, worker=worker,
                             error=f"internal error: {type(exc).__name__}: {exc} ({where.filename}:{where.lineno})",
                             seconds=time.monotonic() - started)  # fmt: skip


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def worker_main(number: int, kb_root: Path, settings: Settings, tasks: Any, results: Any) -> None:
    """A worker process's loop: take a task, put a result, until told to stop.

    A failure outside a task's own handling (the store, the queue) ends the
    worker; its traceback is redacted first, since Python's default one would
    print the settings it holds, and the parent replaces the worker.
    """
    register_settings(settings)  # a spawned worker starts without the parent's list of secrets
    try:
        _work(number, kb_root, settings, tasks, results)
    except Exception:  # noqa: BLE001 - the process ends here either way
        sys.stderr.write(scrub(traceback.format_exc()))
        sys.stderr.flush()
        sys.exit(1)


def _work(number: int, kb_root: Path, settings: Settings, tasks: Any, results: Any) -> None:
    if sys.platform.startswith("linux"):
        _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    llm = structured_client(kb_root, settings, cache=open_store(kb_root, settings))
    indexes = IndexCache(kb_root, settings)
    results.put(Ready(worker=number))
    while True:
        task = tasks.get()
        if task is None:
            return
        results.put(compute(kb_root, task, settings, llm, number, indexes))


class Pool(Protocol):
    """What a run hands its sources to: numbered slots that take a task each and give back its result."""

    busy: dict[int, tuple[Task, float]]

    def idle(self) -> list[int]: ...

    def submit(self, number: int, task: Task) -> None: ...

    def next_result(self, timeout: float) -> Drafted | SourceOutcome | None: ...

    def overdue(self, limit: float) -> list[tuple[int, Task]]: ...

    def dead(self) -> list[tuple[int, Task]]: ...

    def replace(self, number: int) -> Task | None: ...

    def withdraw(self) -> list[Task]:
        """Tasks handed over but not started, taken back (a stopping run requeues them)."""
        ...

    def close(self, timeout: float = 10.0) -> None: ...


class WorkerPool:
    """N worker processes, each with its own task queue and a shared result queue."""

    def __init__(self, size: int, kb_root: Path, settings: Settings, context: BaseContext | None = None) -> None:
        self.size = size
        self.kb_root = kb_root
        self.settings = settings
        self.context: Any = context or mp.get_context("spawn")  # BaseContext's stubs lack Process and Queue
        self.results: Any = self.context.Queue()
        self.processes: dict[int, Any] = {}
        self.task_queues: dict[int, Any] = {}
        self.busy: dict[int, tuple[Task, float]] = {}
        self.ready: set[int] = set()
        self.ready_at: dict[int, float] = {}
        self.numbers = list(range(1, size + 1))  # a worker starts when first given a task: a cycle with nothing
        # due spawns no process (each imports the whole extraction stack)

    def _start(self, number: int) -> None:
        tasks = self.context.Queue()
        process = self.context.Process(
            target=worker_main,
            args=(number, self.kb_root, self.settings, tasks, self.results),
            name=f"extractor-worker-{number}",
            daemon=True,
        )
        process.start()
        self.processes[number] = process
        self.task_queues[number] = tasks

    def idle(self) -> list[int]:
        return [n for n in self.numbers if n not in self.busy]

    def submit(self, number: int, task: Task) -> None:
        if number not in self.processes:
            self._start(number)
        self.busy[number] = (task, time.monotonic())
        self.task_queues[number].put(task)

    def wait_ready(self, timeout: float = 120.0) -> int:
        """Start every worker and block until each is ready (or the timeout); returns how many are."""
        for number in self.numbers:
            if number not in self.processes:
                self._start(number)
        deadline = time.monotonic() + timeout
        while len(self.ready) < self.size and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self._take(self.results.get(timeout=0.1))
        return len(self.ready)

    def _take(self, message: Drafted | SourceOutcome | Ready) -> Drafted | SourceOutcome | None:
        if isinstance(message, Ready):
            self.ready.add(message.worker)
            self.ready_at[message.worker] = time.monotonic()
            return None
        self.busy.pop(message.worker, None)
        return message

    def next_result(self, timeout: float) -> Drafted | SourceOutcome | None:
        try:
            return self._take(self.results.get(timeout=timeout))
        except queue.Empty:
            return None

    def overdue(self, limit: float) -> list[tuple[int, Task]]:
        """Tasks past ``limit`` seconds of work. A worker's start-up (a fresh one imports everything, slowly on a
        busy machine) is not the source's time: its clock starts when the worker is ready, or after
        ``STARTUP_GRACE`` seconds of waiting for that."""
        now = time.monotonic()
        overdue = []
        for number, (task, since) in self.busy.items():
            ready_at = self.ready_at.get(number) if number in self.ready else None
            began = since + STARTUP_GRACE if ready_at is None else max(since, ready_at)
            if now - began > limit:
                overdue.append((number, task))
        return overdue

    def dead(self) -> list[tuple[int, Task]]:
        return [(n, task) for n, (task, _) in self.busy.items() if not self.processes[n].is_alive()]

    def withdraw(self) -> list[Task]:
        """None: a worker process starts its task as it receives it."""
        return []

    def replace(self, number: int) -> Task | None:
        """Kill worker ``number`` (hung or dead) and start a fresh one under the same number."""
        process = self.processes[number]
        if process.is_alive():
            process.kill()
        process.join(timeout=10)
        task = self.busy.pop(number, (None, 0.0))[0]
        self.ready.discard(number)
        self.ready_at.pop(number, None)
        self._start(number)
        return task

    def close(self, timeout: float = 10.0) -> None:
        for number, tasks in self.task_queues.items():
            if self.processes[number].is_alive():
                with contextlib.suppress(Exception):
                    tasks.put(None)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
