"""Client-side rate limits, shared by every process that works on one KB.

Eight workers that each respect an API tier's limits alone still break it
together, then back off together. Here they draw from one budget per
endpoint, kept in a SQLite file under the KB's state folder (pyrate-limiter's
SQLite bucket, with a file lock across processes): requests per minute,
spread over the minute as providers enforce it (at most rpm/60 a second,
rounded up), and tokens per minute, counted as the prompt's estimated tokens
plus ``max_tokens``, as providers count them. A 429 pauses every process of the
KB, not only the one that got it, for the time the server asked (or a default),
then slows them all down together: for ``slow_down_seconds`` after the last 429 the
endpoint's requests are spaced out, twice as far apart for each 429 in a row, so
a limit set too high stops hitting the server's instead of bouncing off it.

With ``state_url`` set, the same budgets and pauses live in that Postgres database
(pyrate-limiter's Postgres bucket, whose table lock serialises the processes), so
processes on several machines that share it share the limits too.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, cast

from pyrate_limiter import AbstractBucket, Duration, Limiter, Rate, SQLiteBucket

from extractor.core.errors import ExtractorError
from extractor.core.redact import scrub
from extractor.core.settings import Settings
from extractor.kb.statedb import POSTGRES, SQLITE, Database, Dialect, PostgresDatabase
from extractor.kb.statedir import BUSY_TIMEOUT_MS, ensure_state_dir, immediate_transaction

LIMITS_FILE = "ratelimit.sqlite"
CHARS_PER_TOKEN = 4  # a rough estimate: what matters is not to under-count large prompts
MAX_SPACING = 30.0  # the widest spacing repeated 429s lead to


def estimated_tokens(messages: list[dict[str, str]], max_tokens: int) -> int:
    """What a request counts against a tokens-per-minute limit, before it is sent."""
    return math.ceil(len(json.dumps(messages, ensure_ascii=False)) / CHARS_PER_TOKEN) + max_tokens


def request_rates(per_minute: int) -> list[Rate]:
    """Per minute, and per second where that is tighter (providers enforce the spread, not only the total)."""
    per_second = math.ceil(per_minute / 60)
    if per_second >= per_minute:  # 60 a minute or fewer can't be spread finer than one a second
        return [Rate(per_minute, Duration.MINUTE)]
    return [Rate(per_second, Duration.SECOND), Rate(per_minute, Duration.MINUTE)]


def spacing_after_429(previous: float, slowed_until: float, now: float, per_minute: int | None) -> float:
    """The gap between requests after one more 429: doubled while still slowed, else a fresh start."""
    start = 2 * 60 / per_minute if per_minute else 1.0
    widened = previous * 2 if slowed_until > now and previous > 0 else start
    return min(max(widened, start), MAX_SPACING)


def table_name(kind: str, endpoint: str) -> str:
    """One bucket table per endpoint: the SQLite bucket counts every row of its table."""
    return f"{kind}_{hashlib.sha256(endpoint.encode()).hexdigest()[:16]}"


class LimitsFileError(ExtractorError):
    """The shared rate-limit file cannot be read: one line, and what to do."""


# The tables of pauses and slow-downs after 429s (the buckets make their own).
SCHEMA = [
    "CREATE TABLE IF NOT EXISTS paused (endpoint TEXT PRIMARY KEY, until REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS slowed (endpoint TEXT PRIMARY KEY, spacing REAL NOT NULL, until REAL NOT NULL,"
    " next_slot REAL NOT NULL)",
]


class SharedLimits:
    """The limits of one endpoint for every process of a KB: in its state folder, or its ``state_url``."""

    db: Database
    dialect: Dialect

    def __init__(self, kb_root: Path, settings: Settings) -> None:
        self._lock = threading.Lock()
        self._configure(settings)
        if settings.state_url:
            self._open_postgres(settings.state_url)
            return
        path = ensure_state_dir(kb_root) / LIMITS_FILE
        try:
            self._open(str(path))
        except sqlite3.DatabaseError as exc:
            raise LimitsFileError(f"{path}: cannot read the shared rate limits: {exc}; run `extractor doctor`, "
                                  "which sets a damaged file aside") from None  # fmt: skip

    def _configure(self, settings: Settings) -> None:
        # Stored in the KB's state folder or database: a password in the URL must not be.
        self.endpoint = scrub(settings.endpoint_id or settings.base_url or "default")
        self.default_pause = max(1.0, settings.retry_initial_wait)
        self.tokens_per_minute = settings.tokens_per_minute
        self.requests_per_minute = settings.requests_per_minute
        self.slow_down_seconds = settings.slow_down_seconds
        self.requests: Limiter | None = None
        self.tokens: Limiter | None = None

    def _budgets(self, bucket: Any) -> None:
        """A limiter per budget that is set, its bucket made by ``bucket(kind, rates)``."""
        if self.requests_per_minute:
            self.requests = Limiter(bucket("requests", request_rates(self.requests_per_minute)))
        if self.tokens_per_minute:
            self.tokens = Limiter(bucket("tokens", [Rate(self.tokens_per_minute, Duration.MINUTE)]))

    def _open(self, path: str) -> None:
        def bucket(kind: str, rates: list[Rate]) -> AbstractBucket:
            table = table_name(kind, self.endpoint)
            return SQLiteBucket.init_from_file(rates, table=table, db_path=path, use_file_lock=True)

        self._budgets(bucket)
        # The parts of a long source are asked from threads: they share this connection, one at a time.
        self.db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        self.dialect = SQLITE
        for statement in SCHEMA:
            self.db.execute(statement)

    def _open_postgres(self, url: str) -> None:
        from pyrate_limiter import PostgresBucket

        database = PostgresDatabase(url, lock_name="extractor.ratelimit")
        self.db, self.dialect = database, POSTGRES
        try:
            with database.transaction():  # under the lock: two processes creating a table at once collide
                for statement in SCHEMA:
                    database.executescript(POSTGRES.schema(statement))
            with database.reported("cannot make the shared rate limits' tables"):
                self._budgets(lambda kind, rates: PostgresBucket(database.pool, table_name(kind, self.endpoint), rates))
        except BaseException:
            database.close()
            raise

    def close(self) -> None:
        """Stop the buckets' leaking and close the connections (a process's limits otherwise last as long as it)."""
        for limiter in (self.requests, self.tokens):
            if limiter is not None:
                limiter.close()
        self.db.close()

    def _buckets(self) -> AbstractContextManager[Any]:
        """Around the buckets' own statements: in Postgres, a lost connection is one line, as the store's are."""
        if isinstance(self.db, PostgresDatabase):
            return self.db.reported("the shared rate limits failed")
        return nullcontext()

    def _transaction(self) -> AbstractContextManager[Any]:
        if isinstance(self.db, PostgresDatabase):
            return self.db.transaction()
        return immediate_transaction(cast(sqlite3.Connection, self.db), self._lock)

    def paused_until(self) -> float:
        with self._lock:
            row = self.db.execute("SELECT until FROM paused WHERE endpoint = ?", (self.endpoint,)).fetchone()
        return float(row[0]) if row else 0.0

    def spacing(self) -> float:
        """Seconds between this endpoint's requests while slowed after a 429; 0 when not slowed."""
        with self._lock:
            row = self.db.execute("SELECT spacing, until FROM slowed WHERE endpoint = ?", (self.endpoint,)).fetchone()
        return float(row[0]) if row and row[1] > time.time() else 0.0

    def _wait_out_pause(self) -> None:
        while (pause := self.paused_until() - time.time()) > 0:
            time.sleep(min(pause, 1.0))

    def _take_slot(self) -> float:
        """While slowed, book the next free moment for this request (shared by all processes); returns it.

        Not slowed (the usual case), nothing is booked: no write lock on the shared file for every request.
        """
        if not self.spacing():
            return time.time()
        with self._transaction():
            row = self.db.execute(
                "SELECT spacing, until, next_slot FROM slowed WHERE endpoint = ?", (self.endpoint,)
            ).fetchone()
            now = time.time()
            if row is None or row[1] <= now:
                return now
            slot = max(float(row[2]), now)
            self.db.execute("UPDATE slowed SET next_slot = ? WHERE endpoint = ?", (slot + row[0], self.endpoint))
            return slot

    def wait(self, tokens: int) -> float:
        """Block until a request of ``tokens`` may go; returns the seconds waited."""
        started = time.monotonic()
        self._wait_out_pause()
        if (delay := self._take_slot() - time.time()) > 0:
            time.sleep(delay)
        with self._buckets():
            if self.requests is not None:
                self.requests.try_acquire(self.endpoint, 1)
            if self.tokens is not None and self.tokens_per_minute:
                self.tokens.try_acquire(self.endpoint, min(tokens, self.tokens_per_minute))
        self._wait_out_pause()  # a 429 another process got while this one waited for the bucket holds here too
        return time.monotonic() - started

    def pause(self, seconds: float | None) -> None:
        """A 429: nobody sends to this endpoint for ``seconds`` (the server's Retry-After, or a default),
        and after that requests go spaced out, wider with each 429 in a row."""
        now = time.time()
        until = now + (seconds if seconds is not None else self.default_pause)
        later = self.dialect.greatest
        with self._transaction():
            self.db.execute(
                "INSERT INTO paused (endpoint, until) VALUES (?, ?) "
                f"ON CONFLICT(endpoint) DO UPDATE SET until = {later('paused.until', 'excluded.until')}",
                (self.endpoint, until),
            )
            row = self.db.execute("SELECT spacing, until FROM slowed WHERE endpoint = ?", (self.endpoint,)).fetchone()
            previous, slowed_until = (float(row[0]), float(row[1])) if row else (0.0, 0.0)
            spacing = spacing_after_429(previous, slowed_until, now, self.requests_per_minute)
            self.db.execute(
                "INSERT INTO slowed (endpoint, spacing, until, next_slot) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(endpoint) DO UPDATE SET spacing = excluded.spacing, until = excluded.until,"
                f" next_slot = {later('slowed.next_slot', 'excluded.next_slot')}",
                (self.endpoint, spacing, until + self.slow_down_seconds, until),
            )
