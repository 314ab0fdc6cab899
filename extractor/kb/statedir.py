"""The KB's private folder ``.extractor/`` (git-ignored by itself) and what every SQLite file in it shares."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from extractor.core.settings import STATE_DIR as STATE_DIR  # the settings refuse folders inside it

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
            db.execute("COMMIT")
        except BaseException:
            _roll_back(db)
            raise


def _roll_back(db: sqlite3.Connection) -> None:
    """Undo what is left of a failed transaction. SQLite may have rolled it back itself (a full disk), and a
    failed rollback must not hide the error that made it necessary."""
    if db.in_transaction:
        with contextlib.suppress(Exception):
            db.execute("ROLLBACK")
