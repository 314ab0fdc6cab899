"""The KB's private folder ``.extractor/`` (git-ignored by itself) and what every SQLite file in it shares."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STATE_DIR = ".extractor"
BUSY_TIMEOUT_MS = 10_000


def ensure_state_dir(kb_root: Path) -> Path:
    """The state folder, made git-ignored by a .gitignore of its own."""
    folder = kb_root / STATE_DIR
    folder.mkdir(exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    return folder


@contextmanager
def immediate_transaction(
    db: sqlite3.Connection, lock: threading.Lock | threading.RLock
) -> Iterator[sqlite3.Connection]:
    """One thread of this process at a time (they share ``db``); BEGIN IMMEDIATE keeps other processes out
    until COMMIT, and an error rolls everything back."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
