"""Client-side rate limits, shared by every process that works on one KB.

Eight workers that each respect an API tier's limits alone still break it
together, then back off together. Here they draw from one budget per
endpoint, kept in a SQLite file under the KB's state folder (pyrate-limiter's
SQLite bucket, with a file lock across processes): requests per minute,
spread over the minute as providers enforce it (at most rpm/60 a second,
rounded up), and tokens per minute, counted as the prompt's estimated tokens
plus ``max_tokens``, as providers count them. A 429 pauses every process of the
KB, not only the one that got it, for the time the server asked (or a default).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path

from pyrate_limiter import Duration, Limiter, Rate, SQLiteBucket

from extractor.config import Settings
from extractor.redact import scrub
from extractor.state import BUSY_TIMEOUT_MS, ensure_state_dir

LIMITS_FILE = "ratelimit.sqlite"
CHARS_PER_TOKEN = 4  # a rough estimate: what matters is not to under-count large prompts


def estimated_tokens(messages: list[dict[str, str]], max_tokens: int) -> int:
    """What a request counts against a tokens-per-minute limit, before it is sent."""
    return math.ceil(len(json.dumps(messages, ensure_ascii=False)) / CHARS_PER_TOKEN) + max_tokens


def request_rates(per_minute: int) -> list[Rate]:
    return [Rate(per_minute, Duration.MINUTE), Rate(math.ceil(per_minute / 60), Duration.SECOND)]


class SharedLimits:
    """The limits of one endpoint for every process of a KB."""

    def __init__(self, kb_root: Path, settings: Settings) -> None:
        # Stored in the KB's state folder: a password in the URL must not be.
        self.endpoint = scrub(settings.endpoint_id or settings.base_url or "default")
        self.default_pause = max(1.0, settings.retry_initial_wait)
        self.tokens_per_minute = settings.tokens_per_minute
        path = str(ensure_state_dir(kb_root) / LIMITS_FILE)
        self.requests = self.tokens = None
        if settings.requests_per_minute:
            bucket = SQLiteBucket.init_from_file(
                request_rates(settings.requests_per_minute), table="requests", db_path=path, use_file_lock=True
            )
            self.requests = Limiter(bucket)
        if settings.tokens_per_minute:
            bucket = SQLiteBucket.init_from_file(
                [Rate(settings.tokens_per_minute, Duration.MINUTE)], table="tokens", db_path=path, use_file_lock=True
            )
            self.tokens = Limiter(bucket)
        # The parts of a long source are asked from threads; single statements, so one connection serves them.
        self.db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS paused (endpoint TEXT PRIMARY KEY, until REAL NOT NULL)")

    def paused_until(self) -> float:
        row = self.db.execute("SELECT until FROM paused WHERE endpoint = ?", (self.endpoint,)).fetchone()
        return float(row[0]) if row else 0.0

    def wait(self, tokens: int) -> float:
        """Block until a request of ``tokens`` may go; returns the seconds waited."""
        started = time.monotonic()
        while (pause := self.paused_until() - time.time()) > 0:
            time.sleep(min(pause, 1.0))
        if self.requests is not None:
            self.requests.try_acquire(self.endpoint, 1)
        if self.tokens is not None and self.tokens_per_minute:
            self.tokens.try_acquire(self.endpoint, min(tokens, self.tokens_per_minute))
        return time.monotonic() - started

    def pause(self, seconds: float | None) -> None:
        """A 429: nobody sends to this endpoint for ``seconds`` (the server's Retry-After, or a default)."""
        until = time.time() + (seconds if seconds is not None else self.default_pause)
        self.db.execute(
            "INSERT INTO paused (endpoint, until) VALUES (?, ?) "
            "ON CONFLICT(endpoint) DO UPDATE SET until = max(until, excluded.until)",
            (self.endpoint, until),
        )
