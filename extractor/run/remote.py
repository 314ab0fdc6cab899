"""Workers on other hosts: due sources handed out through a queue in the Postgres state database.

The distribution is procrastinate's (a Postgres task queue): a job per source,
one queued at a time for each source (its queueing lock), retries, workers'
heartbeats, and a periodic task, deferred once across all hosts, that hands a
job whose worker stopped beating (killed, its host gone) to another worker.
Procrastinate needs no broker beside the database the state already lives in,
and it is imported only when ``compute = "queue"``: a SQLite KB never loads it.

The run is the writer (:class:`QueuePool` in place of its local worker
pool): it queues tasks, then takes the workers' results from the state store
(``queued_results``) and plans, commits and records them in order, as it does
its own workers'. A worker (:func:`work`) brings its clone's main branch up to
the task's commit, computes the drafts as a local worker would, and stores the
result, not files. One writer at a time per KB: :func:`writer_lock` (a Postgres
advisory lock) makes a second one wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from extractor.core.records import OutcomeKind, SourceOutcome
from extractor.core.redact import scrub, url_secrets
from extractor.core.settings import Settings
from extractor.kb.gitrepo import git, rev_parse
from extractor.kb.statedb import CONNECT_TIMEOUT, StateConnectionError, advisory_key, redacted_url
from extractor.kb.worktree import GitError
from extractor.run.service import Drafted
from extractor.run.workers import IndexCache, Task, compute
from extractor.store.state import StateStore

log = logging.getLogger("extractor")

TASK = "extractor.extract"
QUEUE = "extract"
UPKEEP_QUEUE = "upkeep"
RESULT = TypeAdapter(Drafted | SourceOutcome)
WRITER_LOCK = "extractor writer"
SCHEMA_LOCK = "extractor procrastinate schema"


class QueuedTask(BaseModel):
    """What a queue job carries: the task, and the token its result is stored under."""

    token: str
    task: Task


def queue_app(settings: Settings, worker: Any = None) -> Any:
    """The procrastinate app on the state database; with ``worker`` (the function that runs a task), its
    tasks registered for a worker process."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=settings.state_url, min_size=1,
                                                                     max_size=4))  # fmt: skip
    stalled_after = 3 * settings.worker_heartbeat
    if worker is not None:
        app.task(name=TASK, queue=QUEUE, pass_context=False)(worker)

        async def hand_on_stalled(timestamp: int) -> None:
            """Jobs whose worker stopped beating go back to the queue for another worker."""
            for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after):
                await app.job_manager.retry_job(job)
                log.info("handed on from a silent worker", extra={"job": job.id, "task": job.task_kwargs})

        every = max(1, round(settings.worker_heartbeat))
        app.periodic(cron=f"* * * * * */{every}", periodic_id="hand_on_stalled")(
            app.task(
                name="extractor.hand_on_stalled",
                queue=UPKEEP_QUEUE,
                queueing_lock="hand_on_stalled",
                pass_context=False,
            )(hand_on_stalled)  # fmt: skip
        )
    return app


@contextlib.contextmanager
def connected(settings: Settings) -> Iterator[Any]:
    """A connection to the state database; one that cannot be made is one line (the password redacted)."""
    import psycopg

    assert settings.state_url is not None
    try:
        connection = psycopg.connect(settings.state_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        raise StateConnectionError(f"{redacted_url(settings.state_url)}: cannot connect to the state database: "
                                   f"{scrub(reason, *url_secrets(settings.state_url))}") from None  # fmt: skip
    with connection:
        yield connection


def ensure_queue_schema(settings: Settings) -> None:
    """Procrastinate's tables in the state database, made once (its schema is not safe to apply twice), under
    an advisory lock so two processes starting together do not both make them."""
    with connected(settings) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (advisory_key(SCHEMA_LOCK),))
        try:
            row = connection.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
            if row is not None and row[0] is not None:
                return
            app = queue_app(settings)
            with app.open():
                app.schema_manager.apply_schema()
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (advisory_key(SCHEMA_LOCK),))


@contextlib.contextmanager
def writer_lock(settings: Settings) -> Iterator[None]:
    """One writer per KB across hosts: a Postgres advisory lock held for the run; a second writer waits for it
    (and says so) rather than racing the first. Nothing to hold without ``state_url``: the KB's run lock is
    the one writer there."""
    if settings.state_url is None:
        yield
        return
    import psycopg

    with connected(settings) as connection:
        key = advisory_key(WRITER_LOCK)
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if not (row and row[0]):
            log.warning("another run is the KB's writer; waiting for it to finish")
            connection.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                connection.execute("SELECT pg_advisory_unlock(%s)", (key,))


class QueuePool:
    """The run's side of the queue, in place of :class:`~extractor.run.workers.WorkerPool`: up to
    ``queue_depth`` sources queued at once (numbered slots, as the local pool's workers are), and the results
    the workers stored."""

    def __init__(self, kb_root: Path, settings: Settings, store: StateStore) -> None:
        from procrastinate import exceptions

        self.kb_root = kb_root
        self.settings = settings
        self.store = store
        self._waiting: list[tuple[int, str]] = []  # results taken from the store, not yet given to the run
        self.numbers = list(range(1, settings.queue_depth + 1))
        self.busy: dict[int, tuple[Task, float]] = {}
        self.jobs: dict[int, tuple[str, int]] = {}  # slot -> (token, job id)
        self._already_queued = exceptions.AlreadyEnqueued
        ensure_queue_schema(settings)
        store.clear_queued_results()  # a late result for an earlier run's task: no one waits for it now
        self.app = queue_app(settings)
        self.app.open()

    def idle(self) -> list[int]:
        return [n for n in self.numbers if n not in self.busy]

    def wait_ready(self, timeout: float = 0.0) -> int:
        return len(self.numbers)

    def submit(self, number: int, task: Task) -> None:
        token = uuid.uuid4().hex
        if task.base is None:  # a worker elsewhere reads the source and the KB at a commit, never a work tree
            task = task.model_copy(update={"base": rev_parse(self.kb_root, self.settings.main_branch)})
        job = self.app.configure_task(TASK, queue=QUEUE, queueing_lock=task.source_path, lock=task.source_path)
        try:
            job_id = job.defer(queued=QueuedTask(token=token, task=task).model_dump(mode="json"))
        except self._already_queued:  # a job for it from a run that stopped: that one's result is not ours
            self._cancel_queued(task.source_path)
            job_id = job.defer(queued=QueuedTask(token=token, task=task).model_dump(mode="json"))
        self.busy[number] = (task, time.monotonic())
        self.jobs[number] = (token, job_id)

    def _cancel_queued(self, source_path: str) -> None:
        for job in self.app.job_manager.list_jobs(queueing_lock=source_path, status="todo"):
            with contextlib.suppress(Exception):
                self.app.job_manager.cancel_job_by_id(job.id, delete_job=True)

    def next_result(self, timeout: float) -> Drafted | SourceOutcome | None:
        deadline = time.monotonic() + timeout
        while not self._waiting:
            by_token = {token: number for number, (token, _) in self.jobs.items()}
            self._waiting += [(by_token[token], text) for token, text in self.store.take_queued_results(list(by_token))]
            if self._waiting or time.monotonic() >= deadline:
                break
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if not self._waiting:
            return None
        number, text = self._waiting.pop(0)
        self.busy.pop(number, None)
        self.jobs.pop(number, None)
        return RESULT.validate_json(text)

    def overdue(self, limit: float) -> list[tuple[int, Task]]:
        """Sources queued longer than ``limit`` and three worker silences: no worker took them, or each that
        did died."""
        now, grace = time.monotonic(), 3 * self.settings.worker_heartbeat
        return [(n, task) for n, (task, since) in self.busy.items() if now - since > limit + grace]

    def dead(self) -> list[tuple[int, Task]]:
        """Sources whose job failed for good (its retries spent) without a result."""
        from procrastinate.jobs import Status

        failed = []
        for number, (_, job_id) in list(self.jobs.items()):
            if self.app.job_manager.get_job_status(job_id) in (Status.FAILED, Status.CANCELLED, Status.ABORTED):
                failed.append((number, self.busy[number][0]))
        return failed

    def withdraw(self) -> list[Task]:
        """The queued tasks no worker has taken yet, cancelled: a stopping run gives them back at once rather
        than waiting for them to be computed."""
        withdrawn = []
        for number, (_, job_id) in list(self.jobs.items()):
            if self.app.job_manager.cancel_job_by_id(job_id, delete_job=True):  # only a job not yet taken
                self.jobs.pop(number)
                withdrawn.append(self.busy.pop(number)[0])
        return withdrawn

    def replace(self, number: int) -> Task | None:
        """Give up on slot ``number``'s job (cancelled if it has not started) and free the slot."""
        token_job = self.jobs.pop(number, None)
        if token_job is not None:
            with contextlib.suppress(Exception):
                self.app.job_manager.cancel_job_by_id(token_job[1], abort=True)
        return self.busy.pop(number, (None, 0.0))[0]

    def close(self, timeout: float = 10.0) -> None:
        for number in list(self.jobs):
            self.replace(number)
        with contextlib.suppress(Exception):
            self.app.close()


def bring_main_to(kb_root: Path, settings: Settings, commit: str | None) -> str | None:
    """The worker's clone brought to the writer's main: fetched when the commit is not here yet, and its main
    moved forward to it when that is a fast-forward (a clone someone changed is left as it is: the drafts are
    computed at the commit anyway). Why the commit is still missing, or None."""
    if commit is None or rev_parse(kb_root, commit) is not None:
        return None
    try:
        git(kb_root, "fetch", "-q", "origin", settings.main_branch)
    except GitError as exc:
        return f"git fetch origin {settings.main_branch} failed: {' '.join(str(exc).split())}"
    with contextlib.suppress(GitError):
        git(kb_root, "merge", "-q", "--ff-only", commit)
    if rev_parse(kb_root, commit) is None:
        return f"origin's {settings.main_branch} does not have it"
    return None


def work(kb_root: Path, settings: Settings, number: int, concurrency: int = 1, once: bool = False) -> None:
    """``extractor worker``: take queued sources and store their results until stopped (``once``: until the
    queue is empty)."""
    from extractor.llm.connect import structured_client
    from extractor.store.state import open_store

    ensure_queue_schema(settings)
    store = open_store(kb_root, settings)
    llm = structured_client(kb_root, settings, cache=store)
    per_thread = threading.local()  # with --concurrency, each thread its own KB index (its own connections)
    host = socket.gethostname()
    fetching = threading.Lock()  # one git fetch and fast-forward of the clone at a time

    def extract(queued: dict[str, Any]) -> None:
        job = QueuedTask.model_validate(queued)
        log.info("taken", extra={"source": job.task.source_path, "worker": number})
        with fetching:
            missing = bring_main_to(kb_root, settings, job.task.base)
        result: Drafted | SourceOutcome
        if missing is not None:  # the worker's clone, not the source: failed (retried), never invalid
            error = f"worker {number}: commit {str(job.task.base)[:12]} is not in its clone {kb_root} ({missing})"
            log.warning(error, extra={"source": job.task.source_path})
            result = SourceOutcome(source_path=job.task.source_path, kind=OutcomeKind.FAILED, worker=number,
                                   error=error)  # fmt: skip
        else:
            if not hasattr(per_thread, "indexes"):
                per_thread.indexes = IndexCache(kb_root, settings)
            result = compute(kb_root, job.task, settings, llm, number, per_thread.indexes)
        store.put_queued_result(job.token, job.task.source_path, number, host, RESULT.dump_json(result).decode())

    app = queue_app(settings, worker=extract)
    options: dict[str, Any] = dict(install_signal_handlers=False, update_heartbeat_interval=settings.worker_heartbeat,
                                   stalled_worker_timeout=3 * settings.worker_heartbeat, wait=not once,
                                   fetch_job_polling_interval=settings.worker_heartbeat)  # fmt: skip

    async def both() -> None:
        # Sync tasks run in the loop's default executor: sized for the work, not for the machine's cores.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=concurrency + 2))
        async with app.open_async():
            loops = [
                asyncio.create_task(app.run_worker_async(queues=[QUEUE], concurrency=concurrency, **options)),
                asyncio.create_task(app.run_worker_async(queues=[UPKEEP_QUEUE], concurrency=1, **options)),
            ]
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (2, 15):  # SIGINT, SIGTERM: finish what is running, then stop
                loop.add_signal_handler(signum, stop.set)
            if once:
                await loops[0]
                loops[1].cancel()
            else:
                await stop.wait()
                for task in loops:
                    task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    try:
        asyncio.run(both())
    finally:
        store.close()
