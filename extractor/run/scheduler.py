"""Cycles over the inbox: choosing due sources, the worker pool, one writer, the daemon.

The main process scans, hands tasks to workers, and is the only writer: each
result is planned against the KB as it is now and committed, one at a time.
Everything that happens to a source is recorded in the state store.
"""

from __future__ import annotations

import datetime
import fnmatch
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from extractor.commit.apply import recover_interrupted_write
from extractor.commit.message import extraction_branch
from extractor.commit.plan import planning_view
from extractor.core.budget import over_budget, start_of_today
from extractor.core.errors import ExtractorError
from extractor.core.records import OutcomeKind, SourceOutcome
from extractor.core.settings import Settings
from extractor.kb.gitrepo import GitError, git, read_at, require_main_branch, rev_parse
from extractor.kb.locks import WRITE_LOCK_WAIT, kb_lock
from extractor.kb.sources import SourceError, SourceStatus, content_hash, parse_source, read_source_text
from extractor.run.queue import ingest_queue
from extractor.run.service import CYCLE_RUNNER, Drafted, SourceService
from extractor.run.workers import Pool, Task
from extractor.store.state import SourceRow, SourceState, StateCorruptError, StateStore, StoreError

log = logging.getLogger("extractor")


class ScanReport(BaseModel):
    files: int = 0
    parsed: int = 0
    due: list[str] = Field(default_factory=list)
    changed_after_processing: list[str] = Field(default_factory=list)
    invalid: list[str] = Field(default_factory=list)


class CycleReport(BaseModel):
    taken: int = 0
    outcomes: list[SourceOutcome] = Field(default_factory=list)
    scan: ScanReport = Field(default_factory=ScanReport)
    recovered: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    stopped: bool = False
    budget: str | None = None  # why new sources stopped being taken, when a budget did it
    ingested: list[str] = Field(default_factory=list)  # sources the drop folder gave this cycle
    ingest_failed: list[str] = Field(default_factory=list)  # one line per queued item that could not be

    @property
    def failed(self) -> list[SourceOutcome]:
        return [o for o in self.outcomes if not o.ok]


def row_for_file(path: str, text: str | None, error: str | None, stat: os.stat_result) -> SourceRow:
    """A fresh row for a file seen for the first time (or changed, before merging)."""
    if error is not None:
        return SourceRow(path=path, state=SourceState.INVALID, last_error=error,
                         mtime_ns=stat.st_mtime_ns, size=stat.st_size)  # fmt: skip
    assert text is not None
    source = parse_source(Path(path), text)
    state = {
        SourceStatus.UNPROCESSED: SourceState.DUE,
        SourceStatus.PROCESSED: SourceState.DONE,
        SourceStatus.NULL_RESULT: SourceState.DONE,
    }.get(source.status, SourceState.SKIPPED)
    return SourceRow(path=path, state=state, file_status=source.status.value, mtime_ns=stat.st_mtime_ns,
                     size=stat.st_size, content_hash=content_hash(text))  # fmt: skip


def merge_row(old: SourceRow | None, new: SourceRow) -> SourceRow:
    """What a changed file means for a source we already track."""
    if old is None:
        return new
    keep = old.model_copy(update={"mtime_ns": new.mtime_ns, "size": new.size})
    if new.state is SourceState.INVALID:
        if old.state in (SourceState.RUNNING,):
            return keep
        return keep.model_copy(update={"state": SourceState.INVALID, "last_error": new.last_error})
    keep = keep.model_copy(update={"content_hash": new.content_hash, "file_status": new.file_status})
    if old.state in (SourceState.RUNNING, SourceState.PARKED, SourceState.AWAITING_REVIEW, SourceState.BATCHED):
        return keep
    if new.state is SourceState.DONE:
        changed = old.processed_hash is not None and new.content_hash != old.processed_hash
        return keep.model_copy(update={"state": SourceState.DONE, "changed_after_processing": changed})
    if new.state is SourceState.DUE and old.state is SourceState.FAILED:
        return keep  # a failed source waits for its retry time even if edited
    return keep.model_copy(
        update={"state": new.state, "last_error": None if new.state is SourceState.DUE else old.last_error}
    )


def scan_inbox(kb_root: Path, settings: Settings, store: StateStore) -> ScanReport:
    """Bring the store up to date with the inbox; only changed files are read and parsed."""
    known = store.all_sources()
    report = ScanReport()
    changed: list[SourceRow] = []
    inbox = kb_root / settings.inbox_dir
    entries = (
        sorted((e for e in os.scandir(inbox) if e.name.endswith(".md")), key=lambda e: e.name) if inbox.is_dir() else []
    )
    linked = inbox_link_problem(kb_root, settings.inbox_dir)
    for entry in entries:
        report.files += 1
        rel = f"{settings.inbox_dir.rstrip('/')}/{entry.name}"
        stat = entry.stat(follow_symlinks=False)
        old = known.get(rel)
        if old is None or old.mtime_ns != stat.st_mtime_ns or old.size != stat.st_size:
            report.parsed += 1
            try:
                if linked:
                    raise SourceError(rel, linked)
                row = row_for_file(rel, read_source_text(Path(entry.path), settings.max_source_bytes), None, stat)
            except SourceError as exc:
                row = row_for_file(rel, None, exc.problem, stat)
            merged = merge_row(old, row)
            changed.append(merged)
            old = merged
        if old.state is SourceState.INVALID:
            report.invalid.append(rel)
        if old.changed_after_processing:
            report.changed_after_processing.append(rel)
    store.put_many(changed)
    reconcile_review_branches(kb_root, settings, store)
    return report


def inbox_link_problem(kb_root: Path, inbox_dir: str) -> str | None:
    """Why no file of the inbox may be used, if the folder leads out through a symbolic link."""
    root = kb_root.resolve()
    literal = Path(os.path.normpath(root / inbox_dir))
    if literal.resolve() != literal:
        return f"the inbox folder {inbox_dir} goes through a symbolic link; sources must be regular files inside the KB"
    return None


def review_branches(kb_root: Path, main_branch: str = "main") -> set[str]:
    """Extraction branches still awaiting review: not yet merged into the main branch (say, via a PR)."""
    unmerged = [f"--no-merged=refs/heads/{main_branch}"] if rev_parse(kb_root, f"refs/heads/{main_branch}") else []
    try:
        out = git(kb_root, "for-each-ref", *unmerged, "--format=%(refname:lstrip=2)", "refs/heads/extract/")
    except GitError:
        return set()
    return set(out.split())


def reconcile_review_branches(kb_root: Path, settings: Settings, store: StateStore) -> None:
    """A source with an extraction branch awaits review; one whose branch is gone is due or done again."""
    branches = review_branches(kb_root, settings.main_branch)
    for row in store.all_sources().values():
        has_branch = extraction_branch(Path(row.path).stem) in branches
        if has_branch and row.state in (SourceState.DUE, SourceState.FAILED, SourceState.PARKED):
            store.update(row.path, state=SourceState.AWAITING_REVIEW)
        elif not has_branch and row.state is SourceState.AWAITING_REVIEW:
            # Accepted or rejected (done) or deleted to retry (due): main's copy of the source says which.
            try:
                text = read_at(kb_root, settings.main_branch, row.path)
                status = parse_source(Path(row.path), text).status if text is not None else None
            except (SourceError, UnicodeDecodeError):
                status = None
            done = status in (SourceStatus.PROCESSED, SourceStatus.NULL_RESULT)
            store.update(row.path, state=SourceState.DONE if done else SourceState.DUE)


def choose_due(
    store: StateStore,
    limit: int,
    now: float | None = None,
    include_parked: bool = False,
    only: list[str] | None = None,
) -> list[str]:
    """Due sources, plus failed ones whose retry time has come, oldest path first; with ``only``, those
    matching one of its paths or globs (relative to the KB)."""
    now = now if now is not None else time.time()
    states = [SourceState.DUE, SourceState.FAILED] + ([SourceState.PARKED] if include_parked else [])
    rows = store.db.execute(
        f"SELECT path, state, next_retry_at FROM sources WHERE state IN ({', '.join('?' for _ in states)}) "
        "ORDER BY path",
        [s.value for s in states],
    ).fetchall()
    due = [r["path"] for r in rows if r["state"] != SourceState.FAILED or (r["next_retry_at"] or 0) <= now]
    if only is not None:
        due = [path for path in due if matches_any(path, only)]
    return due[:limit]


def matches_any(path: str, patterns: list[str]) -> bool:
    """``path`` (relative to the KB) is one of ``patterns`` or matches one as a shell glob."""
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


class Runner:
    """Runs cycles for one KB: scan, dispatch to workers, write results in order."""

    def __init__(
        self,
        kb_root: Path,
        settings: Settings,
        pool: Pool | None,
        store: StateStore,
        on_outcome: Callable[[SourceOutcome], None] | None = None,
    ) -> None:
        self.kb_root = kb_root
        self.settings = settings
        self.pool = pool
        self.store = store
        self.service = SourceService(kb_root, settings, store, runner=CYCLE_RUNNER, on_outcome=on_outcome)
        self.stop = threading.Event()
        self.cycles = 0
        self.claimed: list[str] = []  # the sources this cycle marked running
        self.unreleased: set[str] = set()  # claims a failed cycle could not give back (the store refused the write)

    def recover(self) -> list[str]:
        notes = []
        with kb_lock(self.kb_root, "write", wait=WRITE_LOCK_WAIT):
            if (note := recover_interrupted_write(self.kb_root)) is not None:
                notes.append(note)
        notes += [f"made due again after a failed cycle: {p}" for p in self.release(sorted(self.unreleased))]
        notes += [f"made due again after a dead run: {p}" for p in self.store.recover_dead_runs()]
        return notes

    def release(self, paths: list[str]) -> list[str]:
        """Those of ``paths`` this process still marks running become due again; the ones released.

        Called when a cycle stops on an error (a full disk, a damaged store): the claims are given back at
        once, and any the store refuses are tried again at the next cycle's start. A claim whose process has
        ended counts as due anyway (:meth:`StateStore.counts`, :meth:`StateStore.recover_dead_runs`).
        """
        released = []
        for path in paths:
            try:
                row = self.store.get(path)
                if row is not None and row.state is SourceState.RUNNING and row.owner_pid == os.getpid():
                    self.store.update(path, state=SourceState.DUE, owner_pid=None)
                    released.append(path)
                self.unreleased.discard(path)
            except StoreError as exc:
                self.unreleased.add(path)
                log.warning(f"{path}: still marked running, to be released at the next cycle: {exc}",
                            extra={"source": path, "error": str(exc)})  # fmt: skip
        return released

    def _budget_reached(self, cycle_started: float) -> str | None:
        settings = self.settings
        if settings.budget_per_cycle is None and settings.budget_per_day is None:
            return None
        return over_budget(
            settings,
            spent_cycle=self.store.spent_since(cycle_started),
            spent_today=self.store.spent_since(start_of_today()),
            # A source in branch mode with a reviewer costs its extraction and its review.
            per_source=self.store.cost_per_source()
            + (self.store.review_cost_per_branch() if settings.reviews else 0.0),
            in_flight=len(self.pool.busy) if self.pool is not None else 0,
        )

    def cycle(
        self,
        force_parked: bool = False,
        on_start: Callable[[int], None] | None = None,
        only: list[str] | None = None,
    ) -> CycleReport:
        """One cycle; a cycle that stops on an error (or a second Ctrl-C) leaves no source marked running."""
        if self.settings.commit_mode == "branch":  # before anything is claimed: branches are made from it
            require_main_branch(self.kb_root, self.settings.main_branch)
        self.claimed = []
        try:
            return self._cycle(force_parked, on_start, only)
        except BaseException:
            self.release(self.claimed)
            raise

    def _cycle(self, force_parked: bool, on_start: Callable[[int], None] | None, only: list[str] | None) -> CycleReport:
        assert self.pool is not None, "a cycle needs workers"
        self.cycles += 1
        started, started_at = time.monotonic(), time.time()
        report = CycleReport(recovered=self.recover())
        if (ingested := ingest_queue(self.kb_root, self.settings, self.store)) is not None:
            report.ingested = [o.path for o in ingested.added if o.path is not None]
            report.ingest_failed = [o.error for o in ingested.failed if o.error is not None]
        report.scan = scan_inbox(self.kb_root, self.settings, self.store)
        self.retry_publishing()
        self.review_branches(started_at)
        chosen = (
            []
            if self.stop.is_set()
            else choose_due(self.store, self.settings.max_per_cycle, include_parked=force_parked, only=only)
        )
        for path in chosen:  # each claim is kept as it is made, so a failure midway gives back the earlier ones
            if self.store.claim(path, os.getpid(), worker=0):
                self.claimed.append(path)
        pending = list(self.claimed)
        report.taken = len(pending)
        if on_start is not None:
            on_start(len(pending))
        if pending:  # a cycle that takes nothing reads no KB
            self.service.load_index()
        base = planning_view(self.kb_root, self.settings)[1] if pending else None
        shutdown_deadline: float | None = None
        while pending or self.pool.busy:
            if self.stop.is_set():
                pending += [task.source_path for task in self.pool.withdraw()]
                if pending:
                    self._requeue(pending, "stopped before it started")
                    pending = []
                if shutdown_deadline is None:
                    shutdown_deadline = time.monotonic() + self.settings.shutdown_grace
                if time.monotonic() > shutdown_deadline:
                    for number in list(self.pool.busy):
                        task = self.pool.replace(number)
                        if task is not None:
                            self._requeue([task.source_path], "stopped while running")
                    break
            for number in self.pool.idle():
                if not pending or self.stop.is_set():
                    break
                if (why := self._budget_reached(started_at)) is not None:
                    report.budget = why
                    log.info("budget reached", extra={"why": why, "requeued": len(pending)})
                    self._requeue(pending, "budget reached")
                    report.taken -= len(pending)
                    pending = []
                    break
                path = pending.pop(0)
                self.store.update(path, worker=number)
                self.pool.submit(number, Task(source_path=path, force=force_parked, base=base, cycle=self.cycles))
            result = self.pool.next_result(timeout=0.2)
            if result is not None:
                report.outcomes.append(self.finish(result).summary())
            for number, task in self.pool.overdue(self.settings.source_timeout) + self.pool.dead():
                self.pool.replace(number)
                error = f"no result within {self.settings.source_timeout:.0f}s (worker {number} replaced)"
                failed = SourceOutcome(
                    source_path=task.source_path, kind=OutcomeKind.FAILED, worker=number, error=error
                )
                report.outcomes.append(self.service.record(failed).summary())
        report.stopped = self.stop.is_set()
        report.seconds = time.monotonic() - started
        return report

    def retry_publishing(self) -> None:
        stage = self.service.reviewer
        for row in self.store.unpublished():
            if row.branch and rev_parse(self.kb_root, f"refs/heads/{row.branch}"):
                self.service.publish(row.path, row.branch, stage.stored_comment(row.branch) if stage else None)

    def review_branches(self, cycle_started: float) -> None:
        """Branches whose tip waits for its fixes or a review (a person's new commit, a review that failed or
        met the budget): reviewed now, and their pull request's comment replaced."""
        stage = self.service.reviewer
        if stage is None:
            return
        stage.budget_since = cycle_started
        for branch in sorted(review_branches(self.kb_root, self.settings.main_branch)):
            if self.stop.is_set() or not stage.pending_work(branch):
                continue
            staged = self.service.review(branch)
            if staged is None or staged.accepted is not None or not staged.source:
                continue
            if staged.reviewed or staged.fix_commit:  # something new to push and to post
                self.service.publish(staged.source, branch, staged.comment(self.settings.review_agents))

    def _requeue(self, paths: list[str], why: str) -> None:
        for path in paths:
            self.store.update(path, state=SourceState.DUE, owner_pid=None, last_error=None)
            log.info("requeued", extra={"source": path, "why": why})

    def finish(self, result: Drafted | SourceOutcome) -> SourceOutcome:
        """A worker's result: a failure is recorded; drafts are planned, committed and recorded."""
        if isinstance(result, SourceOutcome):
            return self.service.record(result)
        return self.service.conclude(result)


def run_daemon(runner: Runner, settings: Settings, cycle: Callable[[], None]) -> None:
    """Poll with APScheduler until ``runner.stop`` is set: one poll at a time, missed polls coalesce.

    A poll that fails is logged and the next one tries again (a full disk may be freed meanwhile), except on a
    damaged state store, which no poll repairs: the daemon stops and raises it, for ``extractor doctor``.
    """
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    idle = threading.Event()
    idle.set()
    fatal: list[StateCorruptError] = []

    def poll() -> None:
        idle.clear()
        try:
            if not runner.stop.is_set():
                cycle()
        except StateCorruptError as exc:
            fatal.append(exc)
            runner.stop.set()
        except ExtractorError as exc:  # expected, and said in one line: no traceback in the log
            log.error(f"poll failed: {exc}", extra={"error": str(exc)})
        except Exception:  # noqa: BLE001 - one bad poll must not end the daemon
            log.exception("poll failed")
        finally:
            idle.set()

    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(1)})
    scheduler.add_job(
        poll,
        IntervalTrigger(minutes=settings.poll_minutes, jitter=settings.poll_jitter_seconds),
        id="poll",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        next_run_time=datetime.datetime.now(datetime.UTC),
    )
    scheduler.start()
    try:
        while not runner.stop.wait(0.5):
            pass
    finally:
        scheduler.shutdown(wait=False)
        idle.wait(settings.shutdown_grace + 30)
    if fatal:
        raise fatal[0]
