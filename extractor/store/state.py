"""The state store: an embedded SQLite database under the KB (``.extractor/state.db``), or a Postgres database.

It remembers, per source, where it is in its life (due, running, done, failed,
parked, awaiting review, invalid), what each attempt cost and produced, and
every LLM call with its raw reply. WAL mode and a busy timeout let the status
command read while a run writes. Schema changes are numbered migrations,
applied in order and recorded in ``PRAGMA user_version``. Error text and raw
replies are redacted (``extractor.redact``) before they are written, so no
secret reaches the file.

With ``state_url`` set (:func:`open_store`), the same tables live in that Postgres database: the migrations
are the same scripts, their types translated (:meth:`PostgresDialect.schema`), the version kept in a
``schema_version`` table and the migrating serialised by an advisory lock. Each method's SQL is written once,
in SQLite's spelling; ``extractor.kb.statedb`` carries it to Postgres.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from filelock import FileLock

from extractor.core.records import BranchReview, CallRecord, ExtractionReport, Record
from extractor.core.redact import scrub
from extractor.core.settings import Settings
from extractor.kb.statedb import (
    POSTGRES,
    SQLITE,
    Database,
    Dialect,
    PostgresDatabase,
    StoreError,
    upsert,
)
from extractor.kb.statedb import StateConnectionError as StateConnectionError  # the store's errors, all here
from extractor.kb.statedir import BUSY_TIMEOUT_MS, STATE_DIR, ensure_state_dir, immediate_transaction

STATE_FILE = "state.db"

MIGRATIONS: list[str] = [
    # 1: sources, LLM calls, cycles
    """
    CREATE TABLE sources (
        path TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        file_status TEXT,
        mtime_ns INTEGER,
        size INTEGER,
        content_hash TEXT,
        processed_hash TEXT,
        changed_after_processing INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        next_retry_at REAL,
        owner_pid INTEGER,
        worker INTEGER,
        started_at REAL,
        finished_at REAL,
        duration REAL,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        cost REAL,
        commit_sha TEXT,
        model TEXT,
        prompt_hash TEXT,
        updated_at REAL NOT NULL
    );
    CREATE INDEX sources_state ON sources(state);
    CREATE TABLE llm_calls (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        source_path TEXT,
        worker INTEGER,
        model TEXT,
        request_hash TEXT,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        latency REAL,
        outcome TEXT NOT NULL,
        error TEXT,
        raw_reply TEXT
    );
    CREATE INDEX llm_calls_source ON llm_calls(source_path);
    CREATE TABLE cycles (
        id INTEGER PRIMARY KEY,
        started_at REAL NOT NULL,
        finished_at REAL,
        mode TEXT NOT NULL,
        taken INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        note TEXT
    );
    """,
    # 2: publishing extraction branches (push, pull request)
    """
    ALTER TABLE sources ADD COLUMN branch TEXT;
    ALTER TABLE sources ADD COLUMN published INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sources ADD COLUMN publish_error TEXT;
    ALTER TABLE sources ADD COLUMN pull_request TEXT;
    """,
    # 3: costs per call, and the response cache
    """
    ALTER TABLE llm_calls ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE llm_calls ADD COLUMN cost REAL;
    ALTER TABLE llm_calls ADD COLUMN agent TEXT;
    CREATE INDEX llm_calls_at ON llm_calls(at);
    CREATE TABLE response_cache (
        key TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        model TEXT NOT NULL,
        content TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        cost REAL
    );
    """,
    # 4: Batch API jobs
    """
    CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        status TEXT NOT NULL,
        input_file_id TEXT NOT NULL,
        output_file_id TEXT,
        error_file_id TEXT,
        items TEXT NOT NULL,
        collected_at REAL
    );
    """,
    # 5: what each extraction wrote, with its evidence anchored in the source
    """
    CREATE TABLE extractions (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        source_path TEXT NOT NULL,
        commit_sha TEXT NOT NULL,
        branch TEXT,
        worker INTEGER,
        parts INTEGER NOT NULL DEFAULT 1,
        evidence_items INTEGER NOT NULL DEFAULT 0,
        anchored_items INTEGER NOT NULL DEFAULT 0,
        report TEXT NOT NULL
    );
    CREATE INDEX extractions_source ON extractions(source_path);
    CREATE INDEX extractions_commit ON extractions(commit_sha);
    """,
    # 6: what a batch job is expected to cost, held against the daily budget until it is collected
    """
    ALTER TABLE batches ADD COLUMN estimated_cost REAL NOT NULL DEFAULT 0;
    """,
    # 7: the reviewer model: its reviews of each branch commit, the mechanical fixes made, calls by stage
    """
    CREATE TABLE reviews (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        source_path TEXT NOT NULL,
        branch TEXT NOT NULL,
        commit_sha TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        model TEXT NOT NULL,
        verdict TEXT NOT NULL,
        review TEXT NOT NULL
    );
    CREATE INDEX reviews_commit ON reviews(commit_sha);
    CREATE INDEX reviews_source ON reviews(source_path);
    CREATE TABLE review_fixes (
        branch TEXT NOT NULL,
        for_commit TEXT NOT NULL,
        fix_commit TEXT,
        at REAL NOT NULL,
        PRIMARY KEY (branch, for_commit)
    );
    CREATE TABLE review_failures (
        branch TEXT NOT NULL,
        commit_sha TEXT NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        at REAL NOT NULL,
        PRIMARY KEY (branch, commit_sha)
    );
    ALTER TABLE llm_calls ADD COLUMN stage TEXT NOT NULL DEFAULT 'extract';
    ALTER TABLE sources ADD COLUMN pull_number INTEGER;
    """,
    """
    CREATE TABLE feed_entries (
        feed TEXT NOT NULL,
        entry TEXT NOT NULL,
        path TEXT,
        at REAL NOT NULL,
        PRIMARY KEY (feed, entry)
    );
    """,
    """
    ALTER TABLE llm_calls ADD COLUMN endpoint TEXT;
    """,
    # 12: drafts computed by workers on other hosts, waiting for the writer (state_url, compute = "queue")
    """
    CREATE TABLE queued_results (
        token TEXT PRIMARY KEY,
        source_path TEXT NOT NULL,
        at REAL NOT NULL,
        worker INTEGER,
        host TEXT,
        result TEXT NOT NULL
    );
    """,
]


BATCH_COLUMNS = ("id", "created_at", "status", "input_file_id", "output_file_id", "error_file_id", "items",
                 "collected_at", "estimated_cost")  # fmt: skip
CACHE_COLUMNS = ("key", "created_at", "model", "content", "prompt_tokens", "completion_tokens", "cost")

# Columns holding text from outside (errors, the forge's answers): redacted before they are written.
FREE_TEXT = ("last_error", "publish_error", "pull_request")


def _redacted(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: scrub(v) if k in FREE_TEXT and isinstance(v, str) else v for k, v in changes.items()}


class SourceState(StrEnum):
    DUE = "due"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # will be retried after next_retry_at
    PARKED = "parked"  # failed too often; waits for --force
    AWAITING_REVIEW = "awaiting_review"
    INVALID = "invalid"  # the file cannot be parsed; re-read when it changes
    SKIPPED = "skipped"  # a status the pipeline does not act on (processing, unknown)
    BATCHED = "batched"  # sent in a Batch API job; waits for batch collect


class SourceRow(Record):
    path: str
    state: SourceState
    file_status: str | None = None
    mtime_ns: int | None = None
    size: int | None = None
    content_hash: str | None = None
    processed_hash: str | None = None
    changed_after_processing: bool = False
    attempts: int = 0
    last_error: str | None = None
    next_retry_at: float | None = None
    owner_pid: int | None = None
    worker: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    commit_sha: str | None = None
    model: str | None = None
    prompt_hash: str | None = None
    branch: str | None = None
    published: bool = False
    publish_error: str | None = None
    pull_request: str | None = None
    pull_number: int | None = None
    updated_at: float = 0.0


def state_path(kb_root: Path) -> Path:
    return kb_root / STATE_DIR / STATE_FILE


def migrate(db: sqlite3.Connection) -> int:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with db:
            db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    return len(MIGRATIONS)


def migrate_postgres(db: PostgresDatabase) -> int:
    """The same migrations in a Postgres database, each in a transaction with its version, under the store's
    advisory lock: processes opening a new database together apply each migration once."""
    with db.transaction():
        db.executescript("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            db.execute("INSERT INTO schema_version (version) VALUES (0)")
        version = int(row[0]) if row else 0
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with db.transaction():
            if db.execute("SELECT version FROM schema_version").fetchone()[0] >= number:
                continue  # another process applied it meanwhile
            db.executescript(POSTGRES.schema(script))
            db.execute("UPDATE schema_version SET version = ?", (number,))
    return len(MIGRATIONS)


def schema_version(store: StateStore) -> int:
    """The number of migrations applied to the store's database."""
    if store.dialect is POSTGRES:
        return int(store.db.execute("SELECT version FROM schema_version").fetchone()[0])
    return int(store.db.execute("PRAGMA user_version").fetchone()[0])


DOCTOR_HINT = "run `extractor doctor` to rebuild it from git"


class StateCorruptError(StoreError):
    """The state database is damaged (not a database, a malformed page): git holds every outcome that matters,
    so ``extractor doctor`` rebuilds it."""


class StateWriteError(StoreError):
    """A write to the state database failed (a full disk, an I/O error, a read-only file)."""


class StateBusyError(StoreError):
    """Another process held the state database past the busy timeout."""


# SQLite's primary result codes (the low byte of an extended one) that say what is wrong with the file itself.
_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_UNWRITABLE = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY}
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def store_error(path: Path, exc: sqlite3.Error, doing: str | None = None) -> StoreError | None:
    """The one-line error for a problem with the state file (naming it, and what to do); None for any other
    SQLite error, which is a bug and keeps its traceback."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in _DAMAGED:
        return StateCorruptError(f"{path}: {doing or 'the state store is damaged'}: {exc}; {DOCTOR_HINT}")
    if code in _UNWRITABLE:
        return StateWriteError(f"{path}: {doing or 'cannot write the state store'}: {exc}")
    if code in _BUSY:
        return StateBusyError(f"{path}: {doing or 'the state store stayed locked by another process'}: {exc}")
    return None


@contextmanager
def _reported(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        error = store_error(path, exc)
        if error is None:
            raise
        raise error from exc


class _Cursor(sqlite3.Cursor):
    """A cursor whose statements and fetches report a damaged or unwritable state file as a :class:`StoreError`."""

    def _path(self) -> Path:
        connection = self.connection
        return connection.state_file if isinstance(connection, _Connection) else Path("?")

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        with _reported(self._path()):
            super().execute(sql, parameters)
        return self

    def executemany(self, sql: str, parameters: Any, /) -> _Cursor:
        with _reported(self._path()):
            super().executemany(sql, parameters)
        return self

    def executescript(self, script: str, /) -> _Cursor:
        with _reported(self._path()):
            super().executescript(script)
        return self

    def fetchone(self) -> Any:
        with _reported(self._path()):
            return super().fetchone()

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        with _reported(self._path()):
            return super().fetchmany(size if size is not None else self.arraysize)

    def fetchall(self) -> list[Any]:
        with _reported(self._path()):
            return super().fetchall()

    def __next__(self) -> Any:
        with _reported(self._path()):
            return super().__next__()


class _Connection(sqlite3.Connection):
    """The state database's connection: wherever a statement runs (a query in the scheduler, a transaction in a
    thread), a damaged file, a failed write or a lock held too long ends as one :class:`StoreError` line naming
    the file, never as a raw ``sqlite3`` traceback."""

    state_file = Path("?")

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or _Cursor)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        return self.cursor().executemany(sql, parameters)

    def executescript(self, script: str, /) -> Any:
        return self.cursor().executescript(script)

    def commit(self) -> None:
        with _reported(self.state_file):
            super().commit()


class StateStore:
    """Typed access to the state database; one connection per process (SQLite), or a pool (Postgres)."""

    db: Database
    dialect: Dialect
    path: Path | None  # the SQLite file (None in Postgres)
    where: str  # the file, or the database's URL with its password redacted: what messages name

    def __init__(self, path: Path | None = None, *, url: str | None = None) -> None:
        """The SQLite file at ``path``, or the Postgres database at ``url``."""
        # Shared by threads: the daemon polls in a scheduler thread, and the parts of a long source are asked
        # from threads that read and fill the response cache. Transactions hold the lock, so one thread's
        # statements never land inside another's transaction.
        self.lock = threading.RLock()
        if url is not None:
            self._open_postgres(url)
            return
        if path is None:
            raise ValueError("a state store needs the path of its file or the URL of its database")
        self.path = path
        self.where = str(path)
        self.dialect = SQLITE
        try:
            self.db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False,
                factory=_Connection,
            )  # fmt: skip
            self.db.state_file = path
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA synchronous = NORMAL")
            # Two processes opening a new store must not both migrate it, nor both switch it to WAL: SQLite
            # answers a journal-mode change that meets another process's lock with "database is locked" at
            # once, without waiting. The mode stays in the file, so only the first opening switches it.
            with FileLock(f"{path}.migrate.lock"):
                if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self.db.execute("PRAGMA journal_mode = WAL")
                migrate(self.db)
        except (sqlite3.Error, StoreError) as exc:
            if hasattr(self, "db"):
                self.db.close()
            cause = exc.__cause__ if isinstance(exc, StoreError) else exc
            if not isinstance(cause, sqlite3.Error):
                raise
            raise store_error(path, cause, "cannot open the state store") or StoreError(
                f"{path}: cannot open the state store: {cause}"
            ) from cause

    def _open_postgres(self, url: str) -> None:
        self.path = None
        self.dialect = POSTGRES
        database = PostgresDatabase(url, lock_name="extractor.state")
        self.db, self.where = database, database.where
        try:
            migrate_postgres(database)
        except BaseException:
            database.close()
            raise

    @classmethod
    def open(cls, kb_root: Path) -> StateStore:
        """The KB's SQLite file under ``.extractor/`` (:func:`open_store` picks the backend from the settings)."""
        ensure_state_dir(kb_root)
        return cls(state_path(kb_root))

    def close(self) -> None:
        self.db.close()

    def transaction(self) -> AbstractContextManager[Any]:
        """An exclusive transaction: no other process writes until it ends (SQLite's BEGIN IMMEDIATE, or the
        store's advisory lock in Postgres)."""
        if isinstance(self.db, PostgresDatabase):
            return self.db.transaction()
        return immediate_transaction(cast(sqlite3.Connection, self.db), self.lock)

    # sources

    def get(self, path: str) -> SourceRow | None:
        row = self.db.execute("SELECT * FROM sources WHERE path = ?", (path,)).fetchone()
        return SourceRow.model_validate(dict(row)) if row else None

    def all_sources(self) -> dict[str, SourceRow]:
        rows = self.db.execute("SELECT * FROM sources").fetchall()
        return {row["path"]: SourceRow.model_validate(dict(row)) for row in rows}

    def put(self, row: SourceRow) -> None:
        self.put_many([row])

    def put_many(self, rows: list[SourceRow]) -> None:
        if not rows:
            return
        now = time.time()
        fields = list(SourceRow.model_fields)
        sql = (
            f"INSERT INTO sources ({', '.join(fields)}) VALUES ({', '.join('?' for _ in fields)}) "
            f"ON CONFLICT(path) DO UPDATE SET {', '.join(f'{f} = excluded.{f}' for f in fields if f != 'path')}"
        )
        values = []
        for row in rows:
            data = _redacted(row.model_dump(mode="json"))
            data["updated_at"] = now
            values.append([data[f] for f in fields])
        with self.transaction() as db:
            db.executemany(sql, values)

    def update(self, path: str, **changes: Any) -> None:
        changes = _redacted(changes)
        changes["updated_at"] = time.time()
        assignments = ", ".join(f"{key} = ?" for key in changes)
        values = [v.value if isinstance(v, StrEnum) else v for v in changes.values()]
        self.db.execute(f"UPDATE sources SET {assignments} WHERE path = ?", [*values, path])

    def update_or_insert(self, path: str, **changes: Any) -> None:
        if self.get(path) is None:
            self.put(SourceRow(path=path, state=changes.get("state", SourceState.DUE)))
        self.update(path, **changes)

    def restore(self, path: str, row: SourceRow | None) -> None:
        """Put a source's row back as it was (or forget it) after a run that changed nothing."""
        if row is None:
            self.db.execute("DELETE FROM sources WHERE path = ?", (path,))
        else:
            self.put(row)

    def unpublished(self) -> list[SourceRow]:
        rows = self.db.execute(
            "SELECT * FROM sources WHERE state = ? AND branch IS NOT NULL AND published = 0",
            (SourceState.AWAITING_REVIEW,),
        ).fetchall()
        return [SourceRow.model_validate(dict(row)) for row in rows]

    def changed_after_processing(self) -> list[str]:
        rows = self.db.execute("SELECT path FROM sources WHERE changed_after_processing = 1 ORDER BY path")
        return [row["path"] for row in rows.fetchall()]

    def claim(self, path: str, pid: int, worker: int) -> bool:
        """Mark a source running for ``pid`` unless someone else already runs it."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT state, owner_pid, started_at FROM sources WHERE path = ?", (path,)).fetchone()
            running = row is not None and row["state"] == SourceState.RUNNING
            if running and run_alive(row["owner_pid"], row["started_at"]):
                return False
            if row is None:
                db.execute(
                    "INSERT INTO sources (path, state, updated_at) VALUES (?, ?, ?)", (path, SourceState.DUE, now)
                )
            db.execute(
                "UPDATE sources SET state = ?, owner_pid = ?, worker = ?, started_at = ?, updated_at = ? "
                "WHERE path = ?",
                (SourceState.RUNNING, pid, worker, now, now, path),
            )
        return True

    def dead_runs(self) -> list[str]:
        """Sources marked running by a process that is gone (see :func:`run_alive`)."""
        rows = self.db.execute("SELECT path, owner_pid, started_at FROM sources WHERE state = ?",
                               (SourceState.RUNNING,)).fetchall()  # fmt: skip
        return [row["path"] for row in rows if not run_alive(row["owner_pid"], row["started_at"])]

    def recover_dead_runs(self) -> list[str]:
        """Sources left running by a process that no longer exists become due again."""
        stale = self.dead_runs()
        for path in stale:
            self.update(path, state=SourceState.DUE, owner_pid=None)
        return stale

    def counts(self) -> dict[str, int]:
        """Sources by state, as a run would find them: one left running by a dead process counts as due (the
        next run's recovery makes it so), never as running."""
        rows = self.db.execute("SELECT state, COUNT(*) AS n FROM sources GROUP BY state").fetchall()
        counts = {row["state"]: row["n"] for row in rows}
        if counts.get(SourceState.RUNNING):
            dead = len(self.dead_runs())
            counts[SourceState.DUE.value] = counts.get(SourceState.DUE.value, 0) + dead
            counts[SourceState.RUNNING.value] -= dead
        return {state: n for state, n in counts.items() if n}

    def recent_failures(self, limit: int = 10) -> list[SourceRow]:
        rows = self.db.execute(
            "SELECT * FROM sources WHERE state IN (?, ?, ?) ORDER BY updated_at DESC LIMIT ?",
            (SourceState.FAILED, SourceState.PARKED, SourceState.INVALID, limit),
        ).fetchall()
        return [SourceRow.model_validate(dict(row)) for row in rows]

    def totals(self) -> dict[str, float]:
        """Tokens and cost over every logged call (failed ones too; cost where the price is known)."""
        calls = self.db.execute(
            "SELECT COUNT(*) AS calls, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens, "
            "COALESCE(SUM(completion_tokens), 0) AS completion_tokens, COALESCE(SUM(cost), 0) AS cost FROM llm_calls"
        ).fetchone()
        return dict(calls)

    def spent_since(self, since: float) -> float:
        """Dollars the logged calls since ``since`` (a timestamp) cost, where their price is known."""
        row = self.db.execute("SELECT COALESCE(SUM(cost), 0) FROM llm_calls WHERE at >= ?", (since,)).fetchone()
        return float(row[0])

    def cost_per_source(self, recent: int = 20) -> float:
        """The average cost of the last ``recent`` sources whose cost is known: the estimate for the next one."""
        row = self.db.execute(
            "SELECT AVG(cost) FROM (SELECT cost FROM sources WHERE cost IS NOT NULL AND finished_at IS NOT NULL "
            "ORDER BY finished_at DESC LIMIT ?) AS recent",
            (recent,),
        ).fetchone()
        return float(row[0] or 0.0)

    def put_queued_result(self, token: str, source_path: str, worker: int, host: str, result: str) -> None:
        """A worker's result for the task ``token`` (a task run again after its worker died replaces it)."""
        with self.transaction() as db:
            db.execute(upsert("queued_results", ("token", "source_path", "at", "worker", "host", "result"),
                              key=("token",)), (token, source_path, time.time(), worker, host, result))  # fmt: skip

    def clear_queued_results(self) -> None:
        """Drop every stored result: at a writer's start, none belongs to a task it waits for."""
        with self.transaction() as db:
            db.execute("DELETE FROM queued_results")

    def take_queued_results(self, tokens: list[str]) -> list[tuple[str, str]]:
        """The results waiting for these tasks, as (token, result), removed as they are taken."""
        if not tokens:
            return []
        marks = ",".join("?" * len(tokens))
        with self.transaction() as db:
            rows = db.execute(f"SELECT token, result FROM queued_results WHERE token IN ({marks})", tokens).fetchall()
            db.executemany("DELETE FROM queued_results WHERE token = ?", [(row[0],) for row in rows])
        return [(str(row[0]), str(row[1])) for row in rows]

    def cost_report(self, by: str, since: float | None = None) -> list[dict[str, Any]]:
        """Calls, cache hits, tokens and cost grouped by day (local), model, agent, source, stage or endpoint."""
        group = {
            "day": self.dialect.local_day("at"),
            "model": "COALESCE(model, '?')",
            "agent": "COALESCE(agent, '?')",
            "source": "COALESCE(source_path, '?')",
            "stage": "stage",
            "endpoint": "COALESCE(endpoint, '(the one endpoint)')",
        }[by]
        rows = self.db.execute(
            f"SELECT {group} AS {by}, COUNT(*) AS calls, SUM(CASE WHEN outcome = 'cached' THEN 1 ELSE 0 END) "
            "AS cache_hits, SUM(prompt_tokens) AS prompt_tokens, SUM(cached_tokens) AS cached_tokens, "
            "SUM(completion_tokens) AS completion_tokens, COALESCE(SUM(cost), 0) AS cost, "
            "SUM(CASE WHEN cost IS NULL AND outcome != 'cached' "
            "AND COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0) > 0 THEN 1 ELSE 0 END) AS unpriced_calls "
            f"FROM llm_calls WHERE at >= ? GROUP BY 1 ORDER BY {'1' if by == 'day' else 'cost DESC, 1'}",
            (since or 0,),
        ).fetchall()
        return [dict(row) for row in rows]

    # LLM calls and cycles

    def log_calls(
        self, source_path: str, worker: int | None, calls: list[CallRecord], agent: str | None = None,
        stage: str = "extract",
    ) -> None:  # fmt: skip
        """Log LLM calls; ``stage`` (extract, review) keeps each stage's spending apart in ``costs``."""
        if not calls:
            return
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO llm_calls (at, source_path, worker, model, request_hash, prompt_tokens, "
                "completion_tokens, latency, outcome, error, raw_reply, cached_tokens, cost, agent, stage, endpoint) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (c.at, source_path, worker, c.model, c.request_hash, c.prompt_tokens, c.completion_tokens,
                     c.latency, c.outcome, c.error and scrub(c.error), c.raw_reply and scrub(c.raw_reply),
                     c.cached_tokens, c.cost, agent, stage, c.endpoint)
                    for c in calls
                ],
            )  # fmt: skip

    # feeds: the entries already ingested, so a feed gives only its new ones

    def seen_feed_entries(self, feed: str) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT entry FROM feed_entries WHERE feed = ?", (feed,))}

    def remember_feed_entry(self, feed: str, entry: str, path: str | None) -> None:
        with self.transaction() as db:
            db.execute(
                upsert("feed_entries", ("feed", "entry", "path", "at"), key=("feed", "entry")),
                (feed, entry, path, time.time()),
            )

    # reviews by the reviewer model, and the mechanical fixes made on branches

    def record_review(self, review: BranchReview) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO reviews (at, source_path, branch, commit_sha, reviewer, model, verdict, review) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (review.at or time.time(), review.source_path, review.branch, review.commit, review.reviewer,
                 review.model, review.verdict, scrub(review.model_dump_json())),
            )  # fmt: skip

    def reviews_for(self, commit: str) -> list[BranchReview]:
        """The latest review of ``commit`` by each reviewer persona."""
        rows = self.db.execute("SELECT review FROM reviews WHERE commit_sha = ? ORDER BY id", (commit,)).fetchall()
        latest = {(review := BranchReview.model_validate_json(row[0])).reviewer: review for row in rows}
        return list(latest.values())

    def latest_reviews(self, source_path: str) -> list[BranchReview]:
        """The reviews of the last commit of ``source_path`` that was reviewed (for provenance, once merged)."""
        row = self.db.execute(
            "SELECT commit_sha FROM reviews WHERE source_path = ? ORDER BY id DESC LIMIT 1", (source_path,)
        ).fetchone()
        return self.reviews_for(row[0]) if row else []

    def review_cost_per_branch(self, recent: int = 20) -> float:
        """The average cost of the recent reviews whose cost is known: the estimate for the next one."""
        rows = self.db.execute("SELECT review FROM reviews ORDER BY id DESC LIMIT ?", (recent,)).fetchall()
        costs = [c for row in rows if (c := BranchReview.model_validate_json(row[0]).usage.cost) is not None]
        return sum(costs) / len(costs) if costs else 0.0

    def review_failures(self, branch: str, commit: str) -> int:
        """How often reviewing ``commit`` of ``branch`` failed: past ``max_source_attempts`` it waits for a new
        commit instead of paying for the same failure every cycle."""
        row = self.db.execute(
            "SELECT failures FROM review_failures WHERE branch = ? AND commit_sha = ?", (branch, commit)
        ).fetchone()
        return int(row[0]) if row else 0

    def record_review_failure(self, branch: str, commit: str, error: str) -> None:
        self.db.execute(
            "INSERT INTO review_failures (branch, commit_sha, failures, last_error, at) VALUES (?, ?, 1, ?, ?) "
            "ON CONFLICT(branch, commit_sha) DO UPDATE SET failures = review_failures.failures + 1, "
            "last_error = excluded.last_error, "
            "at = excluded.at",
            (branch, commit, scrub(error), time.time()),
        )

    def fix_recorded(self, branch: str, commit: str) -> bool:
        """Whether the mechanical fixes of ``commit`` on ``branch`` were already looked for (made or not)."""
        row = self.db.execute(
            "SELECT 1 FROM review_fixes WHERE branch = ? AND (for_commit = ? OR fix_commit = ?)",
            (branch, commit, commit),
        ).fetchone()
        return row is not None

    def record_fix(self, branch: str, for_commit: str, fix_commit: str | None) -> None:
        self.db.execute(
            upsert("review_fixes", ("branch", "for_commit", "fix_commit", "at"), key=("branch", "for_commit")),
            (branch, for_commit, fix_commit, time.time()),
        )

    # Batch API jobs

    def save_batch(self, batch: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(upsert("batches", BATCH_COLUMNS, key=("id",)), [batch[column] for column in BATCH_COLUMNS])

    def pending_batch_cost(self) -> float:
        """What the batches not yet collected are expected to cost: spent, as far as budgets go."""
        row = self.db.execute("SELECT COALESCE(SUM(estimated_cost), 0) FROM batches WHERE collected_at IS NULL")
        return float(row.fetchone()[0])

    def batches(self, open_only: bool = False) -> list[dict[str, Any]]:
        where = " WHERE collected_at IS NULL" if open_only else ""
        return [dict(row) for row in self.db.execute(f"SELECT * FROM batches{where} ORDER BY created_at").fetchall()]

    # the response cache

    def cached_answer(self, key: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT content FROM response_cache WHERE key = ?", (key,)).fetchone()
        return row["content"] if row else None

    def cache_answer(self, key: str, model: str, content: str, prompt_tokens: int, completion_tokens: int,
                     cost: float | None) -> None:  # fmt: skip
        with self.transaction() as db:
            db.execute(
                upsert("response_cache", CACHE_COLUMNS, key=("key",)),
                (key, time.time(), model, scrub(content), prompt_tokens, completion_tokens, cost),
            )

    def start_cycle(self, mode: str) -> int:
        sql = "INSERT INTO cycles (started_at, mode) VALUES (?, ?)"
        return self.dialect.insert_id(self.db, sql, (time.time(), mode))

    def finish_cycle(self, cycle: int, taken: int, done: int, failed: int, note: str | None = None) -> None:
        self.db.execute(
            "UPDATE cycles SET finished_at = ?, taken = ?, done = ?, failed = ?, note = ? WHERE id = ?",
            (time.time(), taken, done, failed, note, cycle),
        )

    def last_cycle(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM cycles ORDER BY id DESC LIMIT 1").fetchone()
        return dict(row) if row else None

    def record_extraction(self, report: ExtractionReport) -> None:
        self.db.execute(
            "INSERT INTO extractions (at, source_path, commit_sha, branch, worker, parts, evidence_items, "
            "anchored_items, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (time.time(), report.source_path, report.commit, report.branch, report.worker, report.parts,
             report.evidence_items, report.anchored_items, report.model_dump_json()),
        )  # fmt: skip

    def extraction_for(self, commit: str) -> ExtractionReport | None:
        """The report of the extraction that made ``commit``; None for commits the store did not see."""

        row = self.db.execute(
            "SELECT report FROM extractions WHERE commit_sha = ? ORDER BY id DESC LIMIT 1", (commit,)
        ).fetchone()
        return ExtractionReport.model_validate_json(row[0]) if row else None

    def anchored_share_since(self, since: float) -> tuple[int, int]:
        """Evidence items anchored in their source, and all evidence items, of extractions since ``since``."""
        row = self.db.execute(
            "SELECT COALESCE(SUM(anchored_items), 0), COALESCE(SUM(evidence_items), 0) FROM extractions WHERE at >= ?",
            (since,),
        ).fetchone()
        return int(row[0]), int(row[1])

    def calls_for(self, source_path: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM llm_calls WHERE source_path = ? ORDER BY id", (source_path,))
        return [dict(row) for row in rows.fetchall()]


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; it only waits to be reaped
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return True


def run_alive(pid: int | None, started_at: float | None) -> bool:
    """Whether the process that marked a source running at ``started_at`` still runs: ``pid`` is alive and
    is not a later process that was given the same number (it must have started before the claim)."""
    if not pid_alive(pid):
        return False
    began = process_start(pid) if pid else None
    return began is None or started_at is None or began <= started_at + PROCESS_START_SLACK


PROCESS_START_SLACK = 2.0  # seconds: the boot time and the process's start are known to a clock tick or a second


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), where /proc tells (Linux); None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22, starttime, in clock ticks since boot
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))  # fmt: skip
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def open_store(kb_root: Path, settings: Settings | None = None) -> StateStore:
    """The KB's state store where its settings keep it: the Postgres database of ``state_url``, else the SQLite
    file under ``.extractor/``. Without ``settings``, the KB's own are read (its file and the environment)."""
    if settings is None:
        from extractor.core.settings import load_settings

        settings = load_settings(kb_root)
    if settings.state_url:
        return StateStore(url=settings.state_url)
    return StateStore.open(kb_root)
