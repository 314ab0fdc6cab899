"""Locks on a KB, held with ``filelock`` so the OS drops them when a process dies.

``run`` is held by a running cycle or daemon for its lifetime: a second one
exits at once. ``write`` is held around each commit, so a manual extraction
and a daemon never write the KB at the same moment.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from extractor.core.errors import ConfigurationError
from extractor.kb.statedir import ensure_state_dir

WRITE_LOCK_WAIT = 120.0  # seconds a writer waits for another's commit before giving up


class LockHeldError(ConfigurationError):
    """Another process holds the lock."""


@contextlib.contextmanager
def kb_lock(kb_root: Path, name: str, wait: float = 0.0) -> Iterator[None]:
    folder = ensure_state_dir(kb_root)
    lock = FileLock(folder / f"{name}.lock")
    holder = folder / f"{name}.pid"
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        pid = holder.read_text().strip() if holder.exists() else "?"
        raise LockHeldError(f"another extractor process (pid {pid}) holds the {name} lock on {kb_root}") from None
    try:
        holder.write_text(f"{os.getpid()}\n")
        yield
    finally:
        with contextlib.suppress(OSError):
            holder.unlink()
        lock.release()
